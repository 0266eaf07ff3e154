//! Health-aware calls as a tower `Layer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::HealthAware;
use crate::engine::error::Error;

/// Rejects requests fast while the check says unhealthy (see [`HealthAware::layer`]).
#[derive(Debug, Clone)]
pub struct HealthAwareLayer {
    health: HealthAware,
}

/// The service made by [`HealthAwareLayer`].
#[derive(Debug, Clone)]
pub struct HealthAwareService<S> {
    inner: S,
    health: HealthAware,
}

impl HealthAware {
    /// This check as a tower `Layer`: while it says unhealthy, requests are answered with
    /// [`Error::Unhealthy`] at once, without reaching the wrapped service; its own errors
    /// come back as `Error::Inner`. Put a fallback's layer outside it to answer instead.
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let health = HealthAware::builder(Duration::from_secs(30), || async { true }).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(health.layer())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) }));
    /// assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
    /// # }
    /// ```
    pub fn layer(&self) -> HealthAwareLayer {
        HealthAwareLayer {
            health: self.clone(),
        }
    }
}

impl<S> Layer<S> for HealthAwareLayer {
    type Service = HealthAwareService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HealthAwareService {
            inner,
            health: self.health.clone(),
        }
    }
}

impl<S, Req> Service<Req> for HealthAwareService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if !self.health.admits() {
            return ResponseFuture {
                fut: None,
                rejected: Some(self.health.rejection()),
            };
        }
        ResponseFuture {
            fut: Some(self.inner.call(req)),
            rejected: None,
        }
    }
}

pin_project! {
    /// The future of a [`HealthAwareService`] call.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        fut: Option<F>,
        rejected: Option<crate::engine::guard::Rejection>,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(r) = this.rejected.take() {
            return Poll::Ready(Err(r.into()));
        }
        let fut = this
            .fut
            .as_pin_mut()
            .expect("ResponseFuture polled after completion");
        Poll::Ready(ready!(fut.poll(cx)).map_err(Error::Inner))
    }
}
