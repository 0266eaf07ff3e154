//! The breaker as a pipeline [`Guard`], a builder shortcut and a tower layer.

use std::sync::Arc;
use std::time::Duration;

use super::machine::Admit;
use super::{CircuitBreaker, CircuitBreakerBuilder};
use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard, Invalid, Permit, Rejection};
use crate::engine::outcome::Outcome;
use crate::engine::telemetry::{GuardGauges, TransitionSink};
use crate::engine::timeouts::Timeouts;

impl Guard for CircuitBreaker {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "circuit_breaker"
    }

    #[inline]
    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        Acquire::Ready(self.acquire_now(ctx))
    }

    /// A breaker never makes a caller wait: the same answer as [`Guard::acquire`], without
    /// the [`Acquire`] around it (blocking execution asks this).
    #[inline]
    fn acquire_now(&self, _ctx: &Context) -> Result<Permit<'_>, Rejection> {
        match self.inner.try_acquire() {
            Ok(Admit::Token(t)) => Ok(Permit::new(self, t)),
            Ok(Admit::Free) => Ok(Permit::none()),
            Err(r) => Err(r),
        }
    }

    #[inline]
    fn on_release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
        self.inner.release(token, outcome);
    }

    fn measures_duration(&self) -> bool {
        self.inner.measures_duration()
    }

    /// Checks that a time window and the base break fit inside the pipeline's `circuit`
    /// timeout.
    fn check(&self, timeouts: &Timeouts) -> Result<(), ConfigError> {
        self.inner.check(timeouts)
    }

    /// Takes the pipeline's `circuit` timeout as the longest break.
    fn attach(&self, timeouts: &Timeouts) {
        self.inner.attach(timeouts);
    }

    /// The state and the window's failure rate.
    fn gauges(&self) -> Option<GuardGauges> {
        let s = self.snapshot();
        Some(GuardGauges::breaker(s.state.label(), s.failure_rate))
    }

    fn observe_transitions(&self, sink: TransitionSink) {
        self.inner.transitions.add(sink);
    }
}

/// What [`PipelineBuilder::circuit_breaker`](crate::PipelineBuilder::circuit_breaker) accepts: a built breaker (shared, by value
/// or by reference) or a builder (its validation error fails the pipeline's `build`).
pub trait IntoCircuitBreaker {
    /// The breaker as a shareable guard.
    fn into_guard(self) -> Arc<dyn Guard>;

    /// The guard, and whether it is this crate's own breaker (`false` unless overridden):
    /// the engine then knows how its permits and waits behave (it runs a call of a
    /// pipeline whose only strategy it is in place, in a tower service's future). Only
    /// this crate's conversions override it.
    #[doc(hidden)]
    fn into_known_guard(self) -> (Arc<dyn Guard>, bool)
    where
        Self: Sized,
    {
        (self.into_guard(), false)
    }
}

impl IntoCircuitBreaker for CircuitBreaker {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self)
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}

impl IntoCircuitBreaker for &CircuitBreaker {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self.clone())
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}

impl IntoCircuitBreaker for CircuitBreakerBuilder {
    fn into_guard(self) -> Arc<dyn Guard> {
        match self.build() {
            Ok(b) => Arc::new(b),
            Err(e) => Arc::new(Invalid::new("circuit_breaker", e)),
        }
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}
