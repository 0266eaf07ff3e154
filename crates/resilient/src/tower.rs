//! tower adapter: any [`Pipeline`] as a `Layer` around a `Service`.
//!
//! The wrapped service must be `Clone` (each attempt drives its own clone to readiness) and
//! so must the request (it is re-sent on retry).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::{Classify, Error, Pipeline};

/// A `Layer` that runs requests through a pipeline. Made by [`Pipeline::layer`].
#[derive(Debug, Clone)]
pub struct PipelineLayer<C> {
    pipeline: Pipeline<C>,
}

/// The `Service` made by [`PipelineLayer`].
#[derive(Debug, Clone)]
pub struct PipelineService<S, C> {
    inner: S,
    pipeline: Pipeline<C>,
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

impl<S, C> Layer<S> for PipelineLayer<C> {
    type Service = PipelineService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        PipelineService {
            inner,
            pipeline: Pipeline::clone(&self.pipeline),
        }
    }
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

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per attempt inside the pipeline, so that guards (and waits)
        // come first and a retried attempt gets a ready service too.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let svc = self.inner.clone();
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
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
        })
    }
}
