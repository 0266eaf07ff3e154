//! Timeout hierarchies: per attempt (`operation`), per logical call (`request`) and the
//! breaker's time scale (`circuit`).
//!
//! `operation <= request <= circuit` is checked when the pipeline is built. The engine
//! enforces `operation` around each attempt and `request` around the whole call, including
//! retries, backoff waits and queueing in guards; nested pipelines inherit the tighter
//! deadline.

use std::time::Duration;

pub use crate::engine::timeouts::Timeouts;

#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
pub use self::layer::{TimeoutFuture, TimeoutLayer, TimeoutService};

/// One level of the timeout hierarchy.
///
/// Any positive duration is accepted, `Duration::MAX` included: a timeout longer than about
/// a hundred years never fires and counts as none (no deadline in the
/// [`Context`](crate::Context), no timer), so deadline sums never overflow at call time.
///
/// ```
/// use resilient::{Pipeline, Timeout};
/// use std::time::Duration;
/// let p = Pipeline::builder()
///     .timeout(Timeout::request(Duration::from_secs(30)))
///     .timeout(Timeout::operation(Duration::from_secs(5)))
///     .build()
///     .unwrap();
/// assert_eq!(p.timeouts().operation, Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Bounds one attempt.
    Operation(Duration),
    /// Bounds the whole logical call, retries and waits included.
    Request(Duration),
    /// The circuit breaker's time scale (its window and longest open time).
    Circuit(Duration),
}

impl Timeout {
    /// A per-attempt timeout.
    pub fn operation(d: Duration) -> Self {
        Timeout::Operation(d)
    }

    /// A whole-call timeout.
    pub fn request(d: Duration) -> Self {
        Timeout::Request(d)
    }

    /// The breaker's time scale.
    pub fn circuit(d: Duration) -> Self {
        Timeout::Circuit(d)
    }
}

impl Timeout {
    /// Sets this level of `timeouts`.
    pub(crate) fn apply(self, timeouts: &mut Timeouts) {
        match self {
            Timeout::Operation(d) => timeouts.operation = Some(d),
            Timeout::Request(d) => timeouts.request = Some(d),
            Timeout::Circuit(d) => timeouts.circuit = Some(d),
        }
    }
}
