//! The breaker as a tower `Layer` of its own: no pipeline, no boxing, one future per call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::CircuitBreaker;
use super::machine::Admit;
use crate::engine::error::Error;
use crate::engine::guard::Rejection;
use crate::engine::outcome::{AllErrors, Classify, Outcome};

/// A tower `Layer` that puts a [`CircuitBreaker`] in front of a service. Made by
/// [`CircuitBreaker::layer`] or [`CircuitBreaker::layer_classified`]; every service it makes
/// shares the breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = AllErrors> {
    breaker: CircuitBreaker,
    classify: C,
}

/// The `Service` made by [`CircuitBreakerLayer`]: rejected calls fail fast with
/// [`Error::CircuitOpen`], the service's own errors come back as [`Error::Inner`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = AllErrors> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
}

impl CircuitBreaker {
    /// This breaker as a tower `Layer`; every `Err` counts as a failure.
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Error};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(breaker.layer())
    ///     .service(service_fn(|x: u32| async move {
    ///         if x == 0 { Err(std::io::Error::other("zero")) } else { Ok(x) }
    ///     }));
    /// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    /// assert!(matches!(svc.ready().await.unwrap().call(0).await, Err(Error::Inner(_))));
    /// assert!(matches!(svc.ready().await.unwrap().call(1).await, Err(Error::CircuitOpen { .. })));
    /// # }
    /// ```
    pub fn layer(&self) -> CircuitBreakerLayer {
        self.layer_classified(AllErrors)
    }

    /// This breaker as a tower `Layer` that judges responses with `classify`.
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Outcome};
    /// use tower::ServiceBuilder;
    /// let breaker = CircuitBreaker::consecutive_failures(5).build().unwrap();
    /// let only_5xx = |r: &Result<u16, std::io::Error>| match r {
    ///     Ok(status) if *status >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure,
    /// };
    /// let _builder = ServiceBuilder::new().layer(breaker.layer_classified(only_5xx));
    /// ```
    pub fn layer_classified<C: Clone>(&self, classify: C) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer {
            breaker: self.clone(),
            classify,
        }
    }

    /// The former name of [`CircuitBreaker::layer_classified`].
    #[deprecated(since = "0.1.0", note = "renamed to `layer_classified`")]
    pub fn layer_with<C: Clone>(&self, classify: C) -> CircuitBreakerLayer<C> {
        self.layer_classified(classify)
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let token = match self.breaker.inner.try_acquire() {
            Ok(Admit::Token(t)) => Some(t),
            Ok(Admit::Free) => None,
            Err(rejection) => {
                return ResponseFuture {
                    fut: None,
                    rejected: Some(rejection),
                    held: None,
                    classify: self.classify.clone(),
                };
            }
        };
        let b = &self.breaker.inner;
        let held = token.map(|token| Held {
            breaker: self.breaker.clone(),
            token: Some(token),
            started: b.measures_duration().then(|| b.clock.now()),
            finished: false,
        });
        ResponseFuture {
            fut: Some(self.inner.call(req)),
            rejected: None,
            held,
            classify: self.classify.clone(),
        }
    }
}

/// A call's admission; released as cancelled if the future is dropped first.
#[derive(Debug)]
struct Held {
    breaker: CircuitBreaker,
    token: Option<u64>,
    started: Option<Duration>,
    /// The inner future finished: a panic from here on (the classifier's) releases the
    /// admission uncounted.
    finished: bool,
}

impl Held {
    fn record(&mut self, outcome: Outcome) {
        if let Some(t) = self.token.take() {
            let b = &self.breaker.inner;
            let took = self
                .started
                .map_or(Duration::ZERO, |s| b.clock.now().saturating_sub(s));
            b.release(t, Some((outcome, took)));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            let b = &self.breaker.inner;
            let outcome = if self.finished {
                None
            } else {
                b.dropped(self.started)
            };
            b.release(t, outcome);
        }
    }
}

/// Armed around polling the inner service's future: should the poll panic, the admission
/// is released as a failure during the unwind. Defused with `mem::forget`.
struct PollPanic<'a>(&'a mut Option<Held>);

impl Drop for PollPanic<'_> {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

pin_project! {
    /// The future of a [`CircuitBreakerService`] call.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        fut: Option<F>,
        rejected: Option<Rejection>,
        held: Option<Held>,
        classify: C,
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, Error<E>>;

    // Always inline: an out-of-line poll returns its 32-byte answer through memory, which
    // the awaiting code copies at once with loads wider than the stores that wrote it (a
    // store-forwarding stall on every call).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(r) = this.rejected.take() {
            return Poll::Ready(Err(r.into()));
        }
        let fut = this
            .fut
            .as_pin_mut()
            .expect("ResponseFuture polled after completion");
        let armed = PollPanic(&mut *this.held);
        let polled = fut.poll(cx);
        std::mem::forget(armed);
        let out = ready!(polled);
        if let Some(mut held) = this.held.take() {
            held.finished = true;
            held.record(this.classify.classify(&out));
        }
        Poll::Ready(out.map_err(Error::Inner))
    }
}
