//! tower adapter: any [`Pipeline`] as a `Layer` around a `Service`.
//!
//! The wrapped service must be `Clone` (each attempt drives its own clone to readiness) and
//! so must the request (it is re-sent on retry).
//!
//! # Readiness
//!
//! A pipeline service is always ready: `poll_ready` returns `Ready(Ok(()))` at once, and
//! each attempt drives a fresh clone of the inner service to readiness before calling it.
//! Readiness then comes *after* the pipeline's guards and waits (a retried attempt gets a
//! ready service too), and the time the inner service takes to become ready counts
//! towards the attempt's and the request's timeouts. The flip side: layers above this one
//! see no backpressure from the inner service, so put load shedding below the pipeline, or
//! use the pipeline's own bulkhead and rate limiter.
//!
//! # Errors
//!
//! The service's error is [`Error<S::Error>`](Error). In stacks that pass
//! [`BoxError`]s around (tower's own middleware expects `S::Error: Into<BoxError>`),
//! use [`PipelineLayer::boxed_errors`]: the inner service's errors come out as themselves
//! and the strategies' verdicts as `Error<BoxedError>` (see [`Error::into_boxed`]).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::bulkhead::Bulkhead;
use crate::engine::error::{BoxError, Error};
use crate::engine::outcome::{AllErrors, Classify};
use crate::pipeline::Pipeline;
use crate::ratelimit::RateLimiter;

/// A `Layer` that runs requests through a pipeline. Made by [`Pipeline::layer`].
#[derive(Debug)]
pub struct PipelineLayer<C> {
    pipeline: Pipeline<C>,
}

impl<C> Clone for PipelineLayer<C> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
        }
    }
}

/// The `Service` made by [`PipelineLayer`].
#[derive(Debug)]
pub struct PipelineService<S, C> {
    inner: S,
    pipeline: Pipeline<C>,
}

impl<S: Clone, C> Clone for PipelineService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

/// A `Layer` like [`PipelineLayer`] whose services return [`BoxError`]s. Made by
/// [`PipelineLayer::boxed_errors`].
#[derive(Debug)]
pub struct BoxedPipelineLayer<C> {
    pipeline: Pipeline<C>,
}

impl<C> Clone for BoxedPipelineLayer<C> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
        }
    }
}

/// The `Service` made by [`BoxedPipelineLayer`]: a [`PipelineService`] whose errors are
/// converted with [`Error::into_boxed`].
#[derive(Debug)]
pub struct BoxedPipelineService<S, C> {
    inner: S,
    pipeline: Pipeline<C>,
}

impl<S: Clone, C> Clone for BoxedPipelineService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

impl<C: Send + Sync + 'static> Pipeline<C> {
    /// This pipeline as a tower `Layer`. Clones share the pipeline's state.
    ///
    /// ```
    /// use resilient::{Pipeline, Retry};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
    /// let out = svc.ready().await.unwrap().call(21).await.unwrap();
    /// assert_eq!(out, 42);
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<C> {
        PipelineLayer {
            pipeline: self.clone(),
        }
    }
}

impl<C> PipelineLayer<C> {
    /// The same layer with [`BoxError`] as its services' error, for stacks whose other
    /// layers expect `S::Error: Into<BoxError>`, including inner services whose error is
    /// already a `BoxError` (`Error<BoxError>` is no `std::error::Error`).
    ///
    /// ```
    /// use resilient::{BoxError, BoxedError, Error, Pipeline, Retry};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().boxed_errors())
    ///     .service(service_fn(|_: u32| async { Err::<u32, BoxError>("down".into()) }));
    /// let err: BoxError = svc.ready().await.unwrap().call(1).await.unwrap_err();
    /// let verdict = err.downcast_ref::<Error<BoxedError>>().unwrap();
    /// assert!(matches!(verdict, Error::RetriesExhausted { attempts: 2, .. }));
    /// # }
    /// ```
    pub fn boxed_errors(self) -> BoxedPipelineLayer<C> {
        BoxedPipelineLayer {
            pipeline: self.pipeline,
        }
    }
}

impl<S, C> Layer<S> for PipelineLayer<C> {
    type Service = PipelineService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PipelineService {
            inner,
            pipeline: Pipeline::clone(&self.pipeline),
        }
    }
}

impl<S, C> Layer<S> for BoxedPipelineLayer<C> {
    type Service = BoxedPipelineService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BoxedPipelineService {
            inner,
            pipeline: Pipeline::clone(&self.pipeline),
        }
    }
}

/// Runs `req` through `pipeline`, each attempt on its own ready clone of `svc`.
async fn run<S, C, Req>(
    pipeline: Pipeline<C>,
    svc: S,
    req: Req,
) -> Result<S::Response, Error<S::Error>>
where
    S: Service<Req> + Clone,
    Req: Clone,
    C: Classify<S::Response, S::Error>,
{
    pipeline
        .execute(move || {
            let mut svc = svc.clone();
            let req = req.clone();
            async move {
                poll_fn(|cx| svc.poll_ready(cx)).await?;
                svc.call(req).await
            }
        })
        .await
}

impl<S, C, Req> Service<Req> for PipelineService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    /// Always ready: see [the module documentation](self#readiness).
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        Box::pin(run(self.pipeline.clone(), self.inner.clone(), req))
    }
}

impl<S, C, Req> Service<Req> for BoxedPipelineService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Into<BoxError> + Send,
    Req: Clone + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    /// Always ready: see [the module documentation](self#readiness).
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = run(self.pipeline.clone(), self.inner.clone(), req);
        Box::pin(async move { fut.await.map_err(Error::into_boxed) })
    }
}

impl RateLimiter {
    /// This limiter as a `Clone` tower `Layer` (a one-guard [`crate::Pipeline`]).
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = RateLimiter::gcra(Rate::per_second(1)).build().unwrap().layer();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(layer.clone())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    /// assert!(svc.ready().await.unwrap().call(8).await.unwrap_err().retry_after().is_some());
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<AllErrors> {
        Pipeline::builder()
            .rate_limit(self)
            .build()
            .expect("a pipeline of one guard is always valid")
            .layer()
    }
}

impl Bulkhead {
    /// This bulkhead as a `Clone` tower `Layer` (a one-guard [`Pipeline`]); every service
    /// made by the layer shares its slots.
    ///
    /// ```
    /// use resilient::{Bulkhead, Error};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bulkhead = Bulkhead::builder(1).build().unwrap();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(bulkhead.layer())
    ///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<AllErrors> {
        Pipeline::builder()
            .bulkhead(self)
            .build()
            .expect("a pipeline of one guard is always valid")
            .layer()
    }
}
