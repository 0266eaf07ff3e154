//! The pipeline builder's entry for each strategy: `.circuit_breaker(..)`,
//! `.rate_limit(..)` and `.bulkhead(..)`. Each takes the built strategy (by value or by
//! reference, to share it) or its builder, so one `build()` validates everything.

use crate::bulkhead::IntoBulkhead;
use crate::circuit::IntoCircuitBreaker;
use crate::health::HealthAware;
use crate::pipeline::PipelineBuilder;
use crate::ratelimit::IntoRateLimiter;

impl<C> PipelineBuilder<C> {
    /// Adds a circuit breaker at the current position: before `.retry(..)` it counts each
    /// logical call once, after it each attempt. Pass `&breaker` to keep a handle (for
    /// snapshots, manual control or sharing between pipelines).
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Pipeline, Timeout};
    /// use std::time::Duration;
    ///
    /// let err = Pipeline::builder()
    ///     .timeout(Timeout::circuit(Duration::from_secs(10)))
    ///     .circuit_breaker(CircuitBreaker::failure_rate(0.5).open_for(Duration::from_secs(60)))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "circuit.open_for");
    /// ```
    pub fn circuit_breaker(self, breaker: impl IntoCircuitBreaker) -> Self {
        let (guard, known) = breaker.into_known_guard();
        self.push_guard(guard, known)
    }

    /// Adds a rate limiter at the current position (per call before `.retry(..)`, per
    /// attempt after it): a built limiter (a cheap handle: clones share its state), a
    /// reference to one, or its builder (whose validation error then fails this
    /// pipeline's `build`, one validation point for both). A
    /// [`KeyedLimiter`](crate::ratelimit::KeyedLimiter) over `u64` keys (by value or in an
    /// `Arc`) limits each call under the key it gives with
    /// [`Call::key`](crate::Call::key).
    ///
    /// ```
    /// use resilient::Pipeline;
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let p = Pipeline::builder()
    ///     .rate_limit(RateLimiter::gcra(Rate::per_second(100)).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(p.stages(), ["rate_limiter(per call)"]);
    /// ```
    pub fn rate_limit(self, limiter: impl IntoRateLimiter) -> Self {
        let (guard, known) = limiter.into_known_guard();
        self.push_guard(guard, known)
    }

    /// Adds a bulkhead at the current position (per call before `.retry(..)`, per attempt
    /// after it): a built bulkhead (a cheap handle: clones share its slots), a reference
    /// to one, or its builder (whose validation error then fails this pipeline's `build`).
    ///
    /// ```
    /// use resilient::{Bulkhead, Pipeline};
    /// use std::time::Duration;
    /// let bulkhead = Bulkhead::builder(10).queue(100).max_wait(Duration::from_secs(1)).build().unwrap();
    /// let p = Pipeline::builder().bulkhead(&bulkhead).build().unwrap();
    /// assert_eq!(p.stages(), ["bulkhead(per call)"]);
    /// // a builder is validated with the pipeline
    /// let err = Pipeline::builder().bulkhead(Bulkhead::builder(0)).build().unwrap_err();
    /// assert_eq!(err.field(), "bulkhead.max_concurrent");
    /// ```
    pub fn bulkhead(self, bulkhead: impl IntoBulkhead) -> Self {
        let (guard, known) = bulkhead.into_known_guard();
        self.push_guard(guard, known)
    }

    /// Adds a health-aware guard at the current position (per call before `.retry(..)`,
    /// per attempt after it): while its background check says the dependency is
    /// unhealthy, calls are rejected fast with [`Error::Unhealthy`](crate::Error::Unhealthy)
    /// without running, and a [`fallback`](Self::fallback) step answers them instead. Pass
    /// `&health` to keep a handle (clones share the verdict).
    ///
    /// ```
    /// use resilient::fallback::Fallback;
    /// use resilient::health::HealthAware;
    /// use resilient::Pipeline;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let health = HealthAware::builder(Duration::from_secs(30), || async { false })
    ///     .unhealthy_after(1)
    ///     .build()
    ///     .unwrap();
    /// let p = Pipeline::builder()
    ///     .health_aware(&health)
    ///     .fallback(Fallback::builder().or_value("cached").build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(p.stages(), ["fallback(outermost)", "health_aware(per call)"]);
    /// tokio::time::sleep(Duration::from_secs(31)).await; // the probe failed
    /// let mut ran = false;
    /// let r = p.execute(|| { ran = true; async { Ok::<_, ()>("live") } }).await;
    /// assert_eq!(r.unwrap(), "cached"); // sent to the fallback, never attempted
    /// assert!(!ran);
    /// # }
    /// ```
    pub fn health_aware(self, health: impl std::borrow::Borrow<HealthAware>) -> Self {
        self.guard(health.borrow().clone())
    }
}
