//! A timeout as a tower `Layer` of its own: no pipeline, no allocation, and no timer for a
//! response that is ready at once.
//!
//! The limit counts from the response future's first poll (as a pipeline's timeouts count
//! from the call's first poll). That poll reads the clock once; a timer is armed only if
//! the inner future is not ready, at the deadline read then.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::Timeout;
use crate::engine::context::within_horizon;
use crate::engine::error::{Error, TimeoutScope};

/// A tower `Layer` that bounds how long each response takes. Made by [`Timeout::layer`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    /// `None`: too long to ever fire (no timer).
    limit: Option<Duration>,
    scope: TimeoutScope,
}

/// The `Service` made by [`TimeoutLayer`]: a response slower than the limit fails with
/// [`Error::Timeout`] (and the inner future is dropped); the service's own errors come
/// back as [`Error::Inner`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    limit: Option<Duration>,
    scope: TimeoutScope,
}

impl Timeout {
    /// This timeout as a tower `Layer` around a service's responses. An operation timeout
    /// reports [`TimeoutScope::Operation`]; a request (or circuit) timeout
    /// [`TimeoutScope::Request`]. The limit counts from the response future's first poll,
    /// on tokio's clock (so paused time drives it).
    ///
    /// ```
    /// use resilient::{Error, Timeout, TimeoutScope};
    /// use std::time::Duration;
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(Timeout::operation(Duration::from_secs(1)).layer())
    ///     .service(service_fn(|ms: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         Ok::<_, std::io::Error>(ms)
    ///     }));
    /// assert_eq!(svc.ready().await.unwrap().call(10).await.unwrap(), 10);
    /// let slow = svc.ready().await.unwrap().call(5_000).await;
    /// assert!(matches!(slow, Err(Error::Timeout { scope: TimeoutScope::Operation, .. })));
    /// # }
    /// ```
    pub fn layer(self) -> TimeoutLayer {
        let (limit, scope) = match self {
            Timeout::Operation(d) => (d, TimeoutScope::Operation),
            Timeout::Request(d) | Timeout::Circuit(d) => (d, TimeoutScope::Request),
        };
        TimeoutLayer {
            limit: within_horizon(Some(limit)),
            scope,
        }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            limit: self.limit,
            scope: self.scope,
        }
    }
}

impl<S, Req> Service<Req> for TimeoutService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        TimeoutFuture {
            fut: self.inner.call(req),
            sleep: None,
            started: None,
            limit: self.limit,
            scope: self.scope,
        }
    }
}

pin_project! {
    /// The future of a [`TimeoutService`] call.
    #[derive(Debug)]
    pub struct TimeoutFuture<F> {
        #[pin]
        fut: F,
        // armed when `fut` first returns `Pending`
        #[pin]
        sleep: Option<Sleep>,
        started: Option<Instant>,
        limit: Option<Duration>,
        scope: TimeoutScope,
    }
}

impl<F, T, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    // Always inline, with every answer built here (the timer is armed and polled out of
    // line, and reports back in registers): an out-of-line poll returns its 32-byte answer
    // through memory, which the awaiting code copies at once with loads wider than the
    // stores that wrote it (a store-forwarding stall on every call).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(limit) = *this.limit else {
            return this.fut.poll(cx).map_err(Error::Inner);
        };
        let started = *this.started.get_or_insert_with(Instant::now);
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(out.map_err(Error::Inner));
        }
        match expired(this.sleep, started, limit, cx) {
            Some(elapsed) => Poll::Ready(Err(Error::Timeout {
                scope: *this.scope,
                elapsed,
            })),
            None => Poll::Pending,
        }
    }
}

/// Whether the timer of a call `started` with `limit` has fired (armed at the call's first
/// `Pending`): how long the call ran when it has.
#[inline(never)]
fn expired(
    mut sleep: Pin<&mut Option<Sleep>>,
    started: Instant,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Option<Duration> {
    if sleep.is_none() {
        sleep.set(Some(tokio::time::sleep_until(started + limit)));
    }
    let sleep = sleep.as_pin_mut().expect("armed above");
    match sleep.poll(cx) {
        Poll::Ready(()) => Some(Instant::now().saturating_duration_since(started)),
        Poll::Pending => None,
    }
}
