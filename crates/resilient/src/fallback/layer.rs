//! A fallback chain as a tower `Layer`, around any service whose error is a resilient
//! [`Error`] (a pipeline's layer, a breaker's, a limiter's).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;

use tower_layer::Layer;
use tower_service::Service;

use super::Fallback;
use crate::engine::error::Error;

/// Wraps a service so that its handled failures are answered by the chain (see
/// [`Fallback::layer`]).
#[derive(Debug, Clone)]
pub struct FallbackLayer<T, E> {
    fallback: Arc<Fallback<T, E>>,
}

/// The service made by [`FallbackLayer`].
#[derive(Debug, Clone)]
pub struct FallbackService<S, T, E> {
    inner: S,
    fallback: Arc<Fallback<T, E>>,
}

impl<T, E> Fallback<T, E> {
    /// This chain as a tower `Layer`: the wrapped service's handled failures (its error is
    /// `resilient::Error<E>`) are answered by the alternatives in order. Put it outermost.
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// use resilient::{CircuitBreaker, Error};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(Fallback::builder().or_value("cached".to_string()).build().unwrap().layer())
    ///     .layer(breaker.layer())
    ///     .service(service_fn(|_: u32| async { Err::<String, &str>("down") }));
    /// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "cached");
    /// // the breaker is open now: its rejection is answered too
    /// assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "cached");
    /// # }
    /// ```
    pub fn layer(&self) -> FallbackLayer<T, E> {
        FallbackLayer {
            fallback: Arc::new(self.clone()),
        }
    }
}

impl<S, T, E> Layer<S> for FallbackLayer<T, E> {
    type Service = FallbackService<S, T, E>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService {
            inner,
            fallback: self.fallback.clone(),
        }
    }
}

impl<S, Req, T, E> Service<Req> for FallbackService<S, T, E>
where
    S: Service<Req, Response = T, Error = Error<E>>,
    T: Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    type Response = T;
    type Error = Error<E>;
    type Future = ResponseFuture<S::Future, T, E>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            state: State::Primary {
                fut: self.inner.call(req),
                fallback: Some(self.fallback.clone()),
            },
        }
    }
}

/// The chain running after the primary's handled failure.
type Chain<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

pin_project! {
    /// The future of a [`FallbackService`] call: the wrapped service's response, and only
    /// after a handled failure the chain (boxed then).
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        state: State<F, T, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T, E> {
        Primary {
            #[pin]
            fut: F,
            fallback: Option<Arc<Fallback<T, E>>>,
        },
        Chain {
            chain: Chain<T, E>,
        },
        Done,
    }
}

impl<F, T, E> fmt::Debug for ResponseFuture<F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Primary { .. } => "primary",
            State::Chain { .. } => "fallback",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F, T, E>
where
    F: Future<Output = Result<T, Error<E>>>,
    T: Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Primary { fut, fallback } => {
                    let failure = match ready!(fut.poll(cx)) {
                        Ok(v) => {
                            state.set(State::Done);
                            return Poll::Ready(Ok(v));
                        }
                        Err(e) => e,
                    };
                    let fallback = fallback.take().expect("the primary holds the chain");
                    if !fallback.handles(&failure) {
                        state.set(State::Done);
                        return Poll::Ready(Err(failure));
                    }
                    let chain: Chain<T, E> =
                        Box::pin(async move { fallback.after(failure, None).await });
                    state.set(State::Chain { chain });
                }
                StateProj::Chain { chain } => {
                    let out = ready!(chain.as_mut().poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
