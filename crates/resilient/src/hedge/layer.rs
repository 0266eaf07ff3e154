//! Hedging as a tower `Layer`, for services whose requests can be cloned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::Hedge;
use crate::engine::error::Error;

/// Hedges every request to the wrapped service (see [`Hedge::layer`]).
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    hedge: Hedge,
}

/// The service made by [`HedgeLayer`].
#[derive(Debug, Clone)]
pub struct HedgeService<S> {
    inner: S,
    hedge: Hedge,
}

impl Hedge {
    /// This policy as a tower `Layer`: each request is sent to a clone of the wrapped
    /// service, and hedges send clones of the request to further clones (the service and
    /// the request must be `Clone`; only for idempotent requests). The first success wins;
    /// the other calls are dropped at once. The service's errors come back as
    /// `Error::Inner`.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use std::time::Duration;
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(Hedge::delayed(Duration::from_millis(50)).build().unwrap().layer())
    ///     .service(service_fn(|ms: u64| async move {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         Ok::<_, std::io::Error>(ms)
    ///     }));
    /// assert_eq!(svc.ready().await.unwrap().call(10).await.unwrap(), 10);
    /// # }
    /// ```
    pub fn layer(&self) -> HedgeLayer {
        HedgeLayer {
            hedge: self.clone(),
        }
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = HedgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeService {
            inner,
            hedge: self.hedge.clone(),
        }
    }
}

impl<S, Req> Service<Req> for HedgeService<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Error<S::Error>>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // the ready service takes the original call; hedges go to fresh clones, made
        // ready first
        let first = self.inner.call(req.clone());
        let mut first = Some(first);
        let inner = self.inner.clone();
        let hedge = self.hedge.clone();
        Box::pin(async move {
            hedge
                .call(move |attempt| {
                    let primary = if attempt == 0 { first.take() } else { None };
                    let mut svc = inner.clone();
                    let req = req.clone();
                    async move {
                        match primary {
                            Some(f) => f.await,
                            None => {
                                std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                                svc.call(req).await
                            }
                        }
                    }
                })
                .await
        })
    }
}
