//! The pipeline builder's entry for each strategy: `.circuit_breaker(..)`,
//! `.rate_limit(..)` and `.bulkhead(..)`. Each takes the built strategy (by value or by
//! reference, to share it) or its builder, so one `build()` validates everything.

use crate::bulkhead::IntoBulkhead;
use crate::circuit::IntoCircuitBreaker;
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
        self.guard_arc(breaker.into_guard())
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
        self.guard_arc(limiter.into_guard())
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
        self.guard_arc(bulkhead.into_guard())
    }
}
