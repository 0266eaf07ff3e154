//! Per-attempt request headers on the tower path (feature `tower`): the attempt number and
//! the time left before the deadline, written into each attempt's request by a layer
//! *below* a pipeline layer.
//!
//! - [`replay_request`]: a [`clone_request`](crate::tower::PipelineLayer::clone_request)
//!   hook for `http::Request<B>` with a `Clone` body (method, URI, version, headers,
//!   extensions and body are copied); a body that is not `Clone` (a stream) cannot be
//!   replayed: use a hook returning `None` for it, and the request is sent once.
//! - [`CountAttemptsLayer`], *above* the pipeline, gives each request a shared
//!   [`AttemptCounter`] in its extensions, which the copies share.
//! - [`AttemptHeadersLayer`], *below* the pipeline, counts the attempt and writes its
//!   number and the remaining deadline (the pipeline's timeouts, read through
//!   [`inherited_deadline`]) as headers.
//!
//! ```
//! use resilient::http::attempts::{AttemptHeadersLayer, CountAttemptsLayer, replay_request};
//! use resilient::{Pipeline, Retry, Timeout};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .timeout(Timeout::request(Duration::from_secs(5)))
//!     .retry(Retry::immediate().attempts(3))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(CountAttemptsLayer)
//!     .layer(pipeline.layer().clone_request(replay_request::<String>))
//!     .layer(AttemptHeadersLayer::new().attempt("x-attempt").deadline_ms("x-request-deadline-ms"))
//!     .service(service_fn(|req: ::http::Request<String>| async move {
//!         let n = req.headers()["x-attempt"].to_str().unwrap().to_owned();
//!         if n == "3" { Ok(n) } else { Err(std::io::Error::other("busy")) }
//!     }));
//! let req = ::http::Request::new(String::from("body"));
//! assert_eq!(svc.ready().await.unwrap().call(req).await.unwrap(), "3");
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};

use ::http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use tokio::time::Instant;

use crate::engine::context::inherited_deadline;

/// A copy of `req` for another attempt: method, URI, version, headers, extensions and a
/// clone of the body. For [`PipelineLayer::clone_request`](crate::tower::PipelineLayer::clone_request).
///
/// ```
/// let req = ::http::Request::builder().uri("/x").header("a", "1").body(String::from("b")).unwrap();
/// let copy = resilient::http::attempts::replay_request(&req).unwrap();
/// assert_eq!((copy.uri(), &copy.headers()["a"], copy.body().as_str()), (req.uri(), &req.headers()["a"], "b"));
/// ```
pub fn replay_request<B: Clone>(req: &Request<B>) -> Option<Request<B>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

/// Attempts made so far for one request, shared by its copies (an extension inserted by
/// [`CountAttemptsLayer`]).
///
/// ```
/// let c = resilient::http::attempts::AttemptCounter::default();
/// assert_eq!(c.next(), 1);
/// assert_eq!(c.clone().next(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    /// Counts one more attempt and returns its number (1-based).
    pub fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Inserts an [`AttemptCounter`] into each request (put it above the pipeline layer).
///
/// ```
/// let _ = resilient::http::attempts::CountAttemptsLayer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountAttemptsLayer;

impl<S> Layer<S> for CountAttemptsLayer {
    type Service = CountAttempts<S>;
    fn layer(&self, inner: S) -> CountAttempts<S> {
        CountAttempts(inner)
    }
}

/// The service made by [`CountAttemptsLayer`].
#[derive(Debug, Clone)]
pub struct CountAttempts<S>(S);

impl<S: Service<Request<B>>, B> Service<Request<B>> for CountAttempts<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        req.extensions_mut().insert(AttemptCounter::default());
        self.0.call(req)
    }
}

/// Writes per-attempt headers (put it below the pipeline layer): the attempt number (with
/// a [`CountAttemptsLayer`] above the pipeline) and the milliseconds left before the
/// pipeline's deadline (when it has a timeout).
///
/// ```
/// use resilient::http::attempts::AttemptHeadersLayer;
/// let _ = AttemptHeadersLayer::new().attempt("x-attempt").deadline_ms("x-request-deadline-ms");
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttemptHeadersLayer {
    attempt: Option<HeaderName>,
    deadline: Option<HeaderName>,
}

impl AttemptHeadersLayer {
    /// A layer writing no header yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the attempt's number (1-based) in header `name`.
    pub fn attempt(mut self, name: &'static str) -> Self {
        self.attempt = Some(HeaderName::from_static(name));
        self
    }

    /// Writes the milliseconds left before the deadline in header `name`.
    pub fn deadline_ms(mut self, name: &'static str) -> Self {
        self.deadline = Some(HeaderName::from_static(name));
        self
    }
}

impl<S> Layer<S> for AttemptHeadersLayer {
    type Service = AttemptHeaders<S>;
    fn layer(&self, inner: S) -> AttemptHeaders<S> {
        AttemptHeaders {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AttemptHeadersLayer`].
#[derive(Debug, Clone)]
pub struct AttemptHeaders<S> {
    inner: S,
    layer: AttemptHeadersLayer,
}

impl<S: Service<Request<B>>, B> Service<Request<B>> for AttemptHeaders<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if let Some(name) = &self.layer.attempt
            && let Some(n) = req.extensions().get::<AttemptCounter>().map(|c| c.next())
        {
            req.headers_mut().insert(name.clone(), HeaderValue::from(n));
        }
        if let Some(name) = &self.layer.deadline
            && let Some(at) = inherited_deadline()
        {
            let left = at.saturating_duration_since(Instant::now());
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            req.headers_mut()
                .insert(name.clone(), HeaderValue::from(ms));
        }
        self.inner.call(req)
    }
}
