//! Failover as a tower `Layer`: each request goes to the wrapped service together with
//! the region it is sent to.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::Failover;
use crate::engine::error::Error;

/// A request routed to one region: the region's value (a base URL, a client) and a copy
/// of the request. What the service wrapped by a [`FailoverLayer`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<R, Req> {
    /// The region's value (see [`Region::new`](super::Region::new)).
    pub region: R,
    /// The request.
    pub request: Req,
}

/// Sends each request to the active region (see [`Failover::layer`]).
#[derive(Debug, Clone)]
pub struct FailoverLayer<R> {
    failover: Failover<R>,
}

/// The service made by [`FailoverLayer`].
#[derive(Debug, Clone)]
pub struct FailoverService<S, R> {
    inner: S,
    failover: Failover<R>,
}

impl<R> Failover<R> {
    /// This failover as a tower `Layer`: the wrapped service receives each request as
    /// [`Routed`] (the region's value and a copy of the request) on a ready clone of
    /// itself, region after region as [`Failover::call`] tries them (its breakers, health
    /// gates, failback and events apply). The service, the request and the region values
    /// must be `Clone`. Errors come back as `resilient::Error<S::Error>`
    /// ([`Error::Fallback`] with each region's failure when all failed).
    ///
    /// ```
    /// use resilient::failover::{Failover, Region, Routed};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let failover = Failover::builder()
    ///     .region(Region::new("eu", "https://eu.example.com"))
    ///     .region(Region::new("us", "https://us.example.com"))
    ///     .build()
    ///     .unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(failover.layer())
    ///     .service(service_fn(|r: Routed<&'static str, u32>| async move {
    ///         if r.region.contains("eu") { Err("eu is down") } else { Ok(format!("{}/users/{}", r.region, r.request)) }
    ///     }));
    /// let answer = svc.ready().await.unwrap().call(7).await.unwrap();
    /// assert_eq!(answer, "https://us.example.com/users/7");
    /// assert_eq!(failover.active(), "us");
    /// # }
    /// ```
    pub fn layer(&self) -> FailoverLayer<R> {
        FailoverLayer {
            failover: self.clone(),
        }
    }
}

impl<S, R> Layer<S> for FailoverLayer<R> {
    type Service = FailoverService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        FailoverService {
            inner,
            failover: self.failover.clone(),
        }
    }
}

impl<S, R, Req> Service<Req> for FailoverService<S, R>
where
    S: Service<Routed<R, Req>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    R: Clone + Send + Sync + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Error<S::Error>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // Each region's call waits for its own clone of the service to be ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let failover = self.failover.clone();
        let svc = self.inner.clone();
        Box::pin(async move {
            failover
                .call(move |region: &R| {
                    let mut svc = svc.clone();
                    let routed = Routed {
                        region: region.clone(),
                        request: req.clone(),
                    };
                    async move {
                        poll_fn(|cx| svc.poll_ready(cx)).await?;
                        svc.call(routed).await
                    }
                })
                .await
        })
    }
}
