//! A pipeline's call with a fallback chain around it (the outermost phase).

use std::future::Future;

use crate::engine::error::Error;
use crate::engine::outcome::Classify;
use crate::fallback::Fallback;
use crate::pipeline::Pipeline;

impl<C> Pipeline<C> {
    /// Runs `op` through this pipeline and, if the call ends in a failure `fallback`
    /// handles, its alternatives in order. The fallback is the outermost phase: it runs
    /// after the request timeout, the retries and every guard have given up, so the
    /// caller still gets an answer.
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
        fallback.run(self.execute(op)).await
    }
}
