//! Observability: an event for every transition and every call outcome, delivered to
//! [`CircuitObserver`]s (loggers, metrics exporters, tests).

use std::fmt;
use std::time::Duration;

use super::health::HealthState;
use super::state::CircuitState;
use crate::engine::telemetry::TransitionSink;

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate reached its threshold.
    FailureRate,
    /// The slow-call rate reached its threshold.
    SlowCallRate,
    /// The consecutive-failures limit was reached.
    ConsecutiveFailures,
    /// The break duration elapsed; probing starts.
    BreakElapsed,
    /// The health check reported the dependency unhealthy.
    Unhealthy,
    /// The required half-open probes succeeded.
    ProbesSucceeded,
    /// A half-open probe failed (or was slow).
    ProbeFailed,
    /// The half-open phase exceeded its maximum wait.
    HalfOpenTimeout,
    /// A manual call (`isolate`, `disable`, `metrics_only`, `reset`).
    Manual,
    /// The breaker's [`RemoteStore`](crate::circuit::RemoteStore) moved it to a phase
    /// decided elsewhere (another process, or the store's own policy).
    Shared,
}

/// Something that happened in a breaker.
///
/// A slow call produces [`CircuitEvent::SlowCall`] followed by its
/// [`CircuitEvent::Success`] or [`CircuitEvent::Failure`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CircuitEvent {
    /// The state changed.
    StateTransition {
        /// The previous state.
        from: CircuitState,
        /// The new state.
        to: CircuitState,
        /// Why.
        reason: TransitionReason,
    },
    /// A call succeeded.
    Success {
        /// How long it took.
        duration: Duration,
    },
    /// A call failed.
    Failure {
        /// How long it took.
        duration: Duration,
    },
    /// A call took at least the slow-call duration.
    SlowCall {
        /// How long it took.
        duration: Duration,
        /// Whether it also failed.
        failed: bool,
    },
    /// A call's result was classified as ignored: not counted.
    Ignored {
        /// How long it took.
        duration: Duration,
    },
    /// A call was dropped before it finished (cancelled): not counted.
    Cancelled {
        /// Whether it was a half-open probe (its permit went back).
        probe: bool,
    },
    /// A call was rejected.
    Rejected {
        /// The state that rejected it.
        state: CircuitState,
        /// How long the breaker expects to stay open, if known.
        retry_after: Option<Duration>,
    },
    /// Metrics-only: a trip condition was reached, so a normal breaker would have opened
    /// now (the shadow roll-out's signal). Emitted when the condition is first reached and
    /// again only after a recorded call found it no longer met.
    ThresholdExceeded {
        /// Which condition: [`TransitionReason::FailureRate`],
        /// [`TransitionReason::SlowCallRate`] or [`TransitionReason::ConsecutiveFailures`].
        reason: TransitionReason,
    },
    /// The health check changed its verdict.
    HealthChanged {
        /// The previous verdict.
        from: HealthState,
        /// The new verdict.
        to: HealthState,
    },
}

/// Receives every [`CircuitEvent`] of the breakers it is attached to.
///
/// Called synchronously on the calling thread, so keep it cheap (count, enqueue). A panic
/// in an observer is caught and discarded: it never reaches the call. Closures
/// `Fn(&str, &CircuitEvent)` are observers.
///
/// ```
/// use resilient::{CircuitBreaker, CircuitEvent, CircuitState};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let breaker = CircuitBreaker::consecutive_failures(1)
///     .name("payments")
///     .observer(move |name: &str, e: &CircuitEvent| {
///         log.lock().unwrap().push(format!("{name}: {e:?}"))
///     })
///     .build()
///     .unwrap();
/// breaker.isolate();
/// assert!(seen.lock().unwrap()[0].starts_with("payments: StateTransition"));
/// ```
pub trait CircuitObserver: Send + Sync + 'static {
    /// One event of the breaker named `breaker`.
    fn on_event(&self, breaker: &str, event: &CircuitEvent);
}

impl<F> CircuitObserver for F
where
    F: Fn(&str, &CircuitEvent) + Send + Sync + 'static,
{
    fn on_event(&self, breaker: &str, event: &CircuitEvent) {
        self(breaker, event)
    }
}

pub(crate) struct Observers(pub(crate) Box<[std::sync::Arc<dyn CircuitObserver>]>);

impl Observers {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[inline]
    pub(crate) fn emit(&self, name: &str, event: impl FnOnce() -> CircuitEvent) {
        if self.0.is_empty() {
            return;
        }
        let e = event();
        for o in self.0.iter() {
            // An observer must not be able to break calls (it runs on the caller's path,
            // sometimes while a permit is being accounted for): its panic is contained.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                o.on_event(name, &e);
            }));
        }
    }
}

/// The pipelines' transition sinks (see [`crate::Guard::observe_transitions`]): added
/// when a pipeline with an observer is built, read only when the state changes.
#[derive(Default)]
pub(crate) struct TransitionSinks(std::sync::RwLock<Vec<TransitionSink>>);

impl TransitionSinks {
    pub(crate) fn add(&self, sink: TransitionSink) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sink);
    }

    pub(crate) fn emit(&self, name: &str, from: CircuitState, to: CircuitState) {
        let sinks = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in sinks.iter() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s(name, from.label(), to.label())
            }));
        }
    }
}

impl fmt::Debug for TransitionSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransitionSinks")
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} observer(s)", self.0.len())
    }
}
