//! A fallback chain as a tower `Layer`, around any service whose error is a resilient
//! [`Error`] (a pipeline's layer, a breaker's, a limiter's).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::Fallback;
use crate::engine::error::Error;

/// Wraps a service so that its handled failures are answered by the chain (see
/// [`Fallback::layer`]).
#[derive(Debug, Clone)]
pub struct FallbackLayer<T, E> {
    fallback: Fallback<T, E>,
}

/// The service made by [`FallbackLayer`].
#[derive(Debug, Clone)]
pub struct FallbackService<S, T, E> {
    inner: S,
    fallback: Fallback<T, E>,
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
            fallback: self.clone(),
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
    S::Future: Send + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    type Response = T;
    type Error = Error<E>;
    type Future = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let primary = self.inner.call(req);
        let fallback = self.fallback.clone();
        Box::pin(async move { fallback.run(primary).await })
    }
}
