//! A fallback chain as the pipeline's outermost phase: the builder's `.fallback(..)` step
//! (a classifier wrapper, [`WithFallback`], whose [`Classify::recover`] runs the chain) and
//! [`Pipeline::execute_with_fallback`] for a chain given per call.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use crate::engine::attempt::{FailedAttempt, RetryEvent};
use crate::engine::error::Error;
use crate::engine::outcome::{Classify, Outcome, Recovery};
use std::sync::{Arc, OnceLock};

use crate::fallback::{Fallback, FallbackReport};
use crate::pipeline::{Pipeline, PipelineBuilder};

/// A classifier with a fallback chain: judging, retry decisions and hooks are the inner
/// classifier's; a call the pipeline gave up on is answered by the chain (see
/// [`PipelineBuilder::fallback`]).
pub struct WithFallback<C, T, E> {
    inner: C,
    fallback: Fallback<T, E>,
    /// The pipeline's observer, set by `build()` when it has one.
    report: Arc<OnceLock<FallbackReport>>,
    _types: PhantomData<fn(T, E)>,
}

impl<C, T, E> fmt::Debug for WithFallback<C, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithFallback")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<T, E, C> Classify<T, E> for WithFallback<C, T, E>
where
    C: Classify<T, E>,
    T: Clone + Send + Sync + 'static,
    E: Send + 'static,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.inner.classify(result)
    }

    #[inline]
    fn should_retry(&self, result: &Result<T, E>, outcome: Outcome) -> bool {
        self.inner.should_retry(result, outcome)
    }

    #[inline]
    fn retry_after(&self, attempt: u32, result: &Result<T, E>) -> Option<std::time::Duration> {
        self.inner.retry_after(attempt, result)
    }

    #[inline]
    fn on_retry(&self, event: &RetryEvent<'_>, failed: FailedAttempt<'_, T, E>) {
        self.inner.on_retry(event, failed);
    }

    fn recover(&self, failure: Error<E>) -> Result<Recovery<T, E>, Error<E>> {
        // an inner chain (a second `.fallback(..)`) answers first
        let failure = match self.inner.recover(failure) {
            Ok(recovery) => {
                let outer = self.fallback.clone();
                let report = self.report.get().cloned();
                return Ok(Box::pin(async move {
                    outer.run_reporting(recovery, report).await
                }));
            }
            Err(failure) => failure,
        };
        if !self.fallback.handles(&failure) {
            return Err(failure);
        }
        let fallback = self.fallback.clone();
        let report = self.report.get().cloned();
        Ok(Box::pin(async move {
            fallback.run_reporting(async { Err(failure) }, report).await
        }))
    }
}

impl<C> PipelineBuilder<C> {
    /// Adds a fallback chain as the pipeline's **outermost phase**, outside the request
    /// timeout, the per-call guards and the retry loop, wherever the call is written: when
    /// the pipeline gives up on a call (its retries exhausted, a timeout, a rejection by a
    /// breaker, limiter, bulkhead or health check) and the chain handles that failure, its
    /// alternatives answer in order (see [`Fallback`]). [`stages`](Pipeline::stages) shows
    /// it first, as `fallback(outermost)`.
    ///
    /// To place a fallback elsewhere (around each attempt, say), run an inner pipeline that
    /// has it from the outer pipeline's operation: the inner call is then one attempt.
    ///
    /// It fixes the pipeline's result type to `Result<T, E>` and wraps the classifier, so
    /// it comes after [`classify`](Self::classify). Blocking calls
    /// ([`Pipeline::execute_blocking`]) do not run it: its alternatives are awaited.
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// use resilient::{Error, Pipeline, Retry, Timeout};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .timeout(Timeout::request(Duration::from_secs(1)))
    ///     .retry(Retry::immediate().attempts(2))
    ///     .fallback(Fallback::builder().or_value("cached".to_string()).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pipeline.stages()[0], "fallback(outermost)");
    /// // the request timeout fires; the fallback, outside it, still answers
    /// let r: Result<String, Error<()>> = pipeline
    ///     .execute(|| std::future::pending())
    ///     .await;
    /// assert_eq!(r.unwrap(), "cached");
    /// # }
    /// ```
    pub fn fallback<T, E>(self, fallback: Fallback<T, E>) -> PipelineBuilder<WithFallback<C, T, E>>
    where
        T: Clone + Send + Sync + 'static,
        E: Send + 'static,
    {
        let report = self.fallback_report.clone();
        let mut b = self.wrap_classify(|inner| WithFallback {
            inner,
            fallback,
            report,
            _types: PhantomData,
        });
        b.stages.insert(0, "fallback(outermost)".into());
        b
    }
}

impl<C> Pipeline<C> {
    /// Runs `op` through this pipeline and, if the call ends in a failure `fallback`
    /// handles, its alternatives in order. The fallback is the outermost phase: it runs
    /// after the request timeout, the retries and every guard have given up, so the
    /// caller still gets an answer. (To make a chain part of the pipeline itself, use the
    /// builder's [`fallback`](PipelineBuilder::fallback) step.)
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// use resilient::{CircuitBreaker, Error, Pipeline};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// let pipeline = Pipeline::builder().circuit_breaker(&breaker).build().unwrap();
    /// let fallback = Fallback::builder().or_value("stale price".to_string()).build().unwrap();
    /// // the first call fails and opens the breaker; the second is rejected by it: both
    /// // get the fallback value
    /// for _ in 0..2 {
    ///     let price = pipeline
    ///         .execute_with_fallback(&fallback, || async { Err::<String, _>("down") })
    ///         .await;
    ///     assert_eq!(price.unwrap(), "stale price");
    /// }
    /// # }
    /// ```
    pub async fn execute_with_fallback<T, E, F, Fut>(
        &self,
        fallback: &Fallback<T, E>,
        op: F,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        T: Clone + Send + 'static,
        E: Send + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let report = self.inner.fallback_report.clone();
        fallback.run_reporting(self.execute(op), report).await
    }
}
