//! A point-in-time view of a breaker, for dashboards, readiness endpoints and tests.

use std::time::Duration;

use super::health::HealthState;
use super::state::CircuitState;

/// What a breaker looks like right now (see [`crate::CircuitBreaker::snapshot`]).
///
/// Window figures cover the current sliding window; they are reset when the breaker
/// closes, so while open they still show the calls that tripped it.
///
/// ```
/// use resilient::{CircuitBreaker, CircuitState};
/// let b = CircuitBreaker::failure_rate(0.5).build().unwrap();
/// let s = b.snapshot();
/// assert_eq!(s.state, CircuitState::Closed);
/// assert_eq!(s.buffered_calls, 0);
/// assert_eq!(s.failure_rate, None);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitSnapshot {
    /// The state.
    pub state: CircuitState,
    /// Failed share of the calls in the window (`None` without calls or window).
    pub failure_rate: Option<f64>,
    /// Slow share of the calls in the window (`None` without calls or window).
    pub slow_call_rate: Option<f64>,
    /// Calls in the window.
    pub buffered_calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Calls rejected since the breaker was built.
    pub rejected_calls: u64,
    /// The current run of failures (when consecutive-failure counting is on).
    pub consecutive_failures: u32,
    /// While open: how long until probing starts (`None` in other states).
    pub retry_after: Option<Duration>,
    /// Failed recoveries in a row (drives break backoff; reset on close).
    pub failed_recoveries: u32,
    /// Half-open probes running now.
    pub probes_in_flight: u32,
    /// The health check's verdict, if one is configured.
    pub health: Option<HealthState>,
}
