//! Server-side rate limiting per key for HTTP services (features `http` and `tower`): a
//! tower layer for axum, hyper or any `Service<http::Request<B>>` that limits each client
//! under a key read from the request ([`key`]: client IP, a header, an API key) and
//! answers `429 Too Many Requests` itself, with `Retry-After` and the IETF `RateLimit` /
//! `RateLimit-Policy` fields (plus `X-RateLimit-*`); admitted responses carry the same
//! fields, so clients can pace themselves before they are refused.
//!
//! A request without a key (the extractor returns `None`) is not limited and gets no
//! fields. Unlike [`KeyedLayer`](crate::ratelimit::KeyedLayer), which fails with
//! [`Error::RateLimited`](crate::Error::RateLimited) for the application to map, this
//! layer speaks HTTP: its service's error is the inner service's.
//!
//! ```
//! use std::sync::Arc;
//! use resilient::http::server::{RateLimitLayer, key};
//! use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter = KeyedLimiter::builder(Gcra::new(Rate::per_minute(1)).unwrap()).build().unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(Arc::new(limiter), key::header("x-api-key")))
//!     .service(service_fn(|_: ::http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(::http::Response::new(String::from("hi")))
//!     }));
//! let req = || ::http::Request::builder().header("x-api-key", "k1").body(String::new()).unwrap();
//! let ok = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(ok.status(), 200);
//! assert!(ok.headers().contains_key("ratelimit"));
//! let over = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(over.status(), 429);
//! assert!(over.headers().contains_key("retry-after"));
//! # }
//! ```

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use ::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::ratelimit::algorithm::Algorithm;
use crate::ratelimit::headers::{HeaderLimit, write_headers};
use crate::ratelimit::keyed::KeyedLimiter;

/// Key extractors for [`RateLimitLayer`].
pub mod key {
    use std::net::{IpAddr, SocketAddr};

    use ::http::Request;

    /// The client's IP address: the peer address the server put in the request's
    /// extensions (axum's `ConnectInfo<SocketAddr>` with feature `axum`, or a bare
    /// `SocketAddr` inserted by your accept loop). Forwarding headers are not trusted.
    ///
    /// ```
    /// use resilient::http::server::key;
    /// let mut req = ::http::Request::new(());
    /// req.extensions_mut().insert(std::net::SocketAddr::from(([10, 0, 0, 1], 4000)));
    /// assert_eq!(key::client_ip(&req), Some([10, 0, 0, 1].into()));
    /// ```
    pub fn client_ip<B>(req: &Request<B>) -> Option<IpAddr> {
        #[cfg(feature = "axum")]
        if let Some(info) = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(info.0.ip());
        }
        req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
    }

    /// The value of header `name` (requests without it are not limited).
    ///
    /// ```
    /// use resilient::http::server::key;
    /// let req = ::http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
    /// assert_eq!(key::header("x-tenant")(&req).as_deref(), Some("acme"));
    /// ```
    pub fn header<B>(name: &'static str) -> impl Fn(&Request<B>) -> Option<String> + Clone {
        move |req| Some(req.headers().get(name)?.to_str().ok()?.to_owned())
    }

    /// The API key: an `Authorization: Bearer` token, else the `x-api-key` header.
    ///
    /// ```
    /// use resilient::http::server::key;
    /// let req = ::http::Request::builder().header("authorization", "Bearer abc").body(()).unwrap();
    /// assert_eq!(key::api_key(&req).as_deref(), Some("abc"));
    /// ```
    pub fn api_key<B>(req: &Request<B>) -> Option<String> {
        let bearer = req
            .headers()
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let key = bearer.or_else(|| req.headers().get("x-api-key")?.to_str().ok())?;
        (!key.is_empty()).then(|| key.to_owned())
    }
}

/// A tower layer limiting each request under the key `key(&request)` (see [the module
/// documentation](self)).
pub struct RateLimitLayer<K, A, F, S = std::collections::hash_map::RandomState> {
    limiter: Arc<KeyedLimiter<K, A, S, 1>>,
    key: F,
    name: Arc<str>,
}

impl<K, A, F: Clone, S> Clone for RateLimitLayer<K, A, F, S> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            name: self.name.clone(),
        }
    }
}

impl<K, A, F, S> std::fmt::Debug for RateLimitLayer<K, A, F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, A, F, S> RateLimitLayer<K, A, F, S> {
    /// Limits requests under `key(&request)` with `limiter`; the policy is named
    /// `"default"` in the headers.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use resilient::http::server::{RateLimitLayer, key};
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let limiter = Arc::new(KeyedLimiter::builder(Gcra::new(Rate::per_second(5)).unwrap()).build::<std::net::IpAddr>().unwrap());
    /// let layer = RateLimitLayer::new(limiter, key::client_ip::<axum::body::Body>);
    /// # let _ = layer;
    /// ```
    pub fn new(limiter: Arc<KeyedLimiter<K, A, S, 1>>, key: F) -> Self {
        Self {
            limiter,
            key,
            name: Arc::from("default"),
        }
    }

    /// The policy's name in the `RateLimit` and `RateLimit-Policy` fields.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use resilient::http::server::{RateLimitLayer, key};
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let limiter = Arc::new(KeyedLimiter::builder(Gcra::new(Rate::per_second(5)).unwrap()).build::<String>().unwrap());
    /// let layer = RateLimitLayer::new(limiter, key::api_key::<()>).name("per-key");
    /// # let _ = layer;
    /// ```
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }
}

impl<Svc, K, A, F: Clone, S> Layer<Svc> for RateLimitLayer<K, A, F, S> {
    type Service = RateLimitService<Svc, K, A, F, S>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RateLimitService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
pub struct RateLimitService<Svc, K, A, F, S = std::collections::hash_map::RandomState> {
    inner: Svc,
    layer: RateLimitLayer<K, A, F, S>,
}

impl<Svc: Clone, K, A, F: Clone, S> Clone for RateLimitService<Svc, K, A, F, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<Svc, K, A, F, S> std::fmt::Debug for RateLimitService<Svc, K, A, F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("name", &self.layer.name)
            .finish_non_exhaustive()
    }
}

fn insert_all(headers: &mut ::http::HeaderMap, fields: Vec<(&'static str, String)>) {
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(lower(name)), value);
        }
    }
}

/// The lower-case form `HeaderName::from_static` needs, of the fields `write_headers` writes.
fn lower(name: &'static str) -> &'static str {
    match name {
        "RateLimit" => "ratelimit",
        "RateLimit-Policy" => "ratelimit-policy",
        "X-RateLimit-Limit" => "x-ratelimit-limit",
        "X-RateLimit-Remaining" => "x-ratelimit-remaining",
        "X-RateLimit-Reset" => "x-ratelimit-reset",
        "Retry-After" => "retry-after",
        _ => "x-ratelimit-other",
    }
}

impl<Svc, K, A, F, S, ReqB, ResB> Service<Request<ReqB>> for RateLimitService<Svc, K, A, F, S>
where
    Svc: Service<Request<ReqB>, Response = Response<ResB>>,
    Svc::Future: Send + 'static,
    Svc::Error: Send + 'static,
    ResB: Default + Send + 'static,
    K: Hash + Eq + Clone,
    A: Algorithm,
    S: BuildHasher,
    F: Fn(&Request<ReqB>) -> Option<K>,
{
    type Response = Response<ResB>;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let Some(key) = (self.layer.key)(&req) else {
            return Box::pin(self.inner.call(req));
        };
        let limiter = &self.layer.limiter;
        let decision = limiter.check(&key);
        let fields = write_headers(&[HeaderLimit {
            name: &self.layer.name,
            policy: limiter.algorithm().policy(),
            decision,
        }])
        .unwrap_or_default();
        if !decision.allowed {
            let mut response = Response::new(ResB::default());
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            insert_all(response.headers_mut(), fields);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut response = fut.await?;
            insert_all(response.headers_mut(), fields);
            Ok(response)
        })
    }
}
