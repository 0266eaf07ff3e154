//! The event model every strategy reports through, and the observer seam of a pipeline
//! (public as `resilient::telemetry`).
//!
//! A pipeline built with an observer ([`PipelineBuilder::observer`](crate::PipelineBuilder::observer))
//! reports each call's phases as [`Event`]s; one built without pays nothing for it: no
//! allocation, no clock read, one branch per phase.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::time::Duration;
use tokio::time::Instant;

use crate::engine::attempt::RetryReason;
use crate::engine::error::TimeoutScope;
use crate::engine::guard::Rejection;

/// How a call (or an attempt) ended, as telemetry labels it (`outcome`).
///
/// ```
/// use resilient::telemetry::CallOutcome;
/// assert_eq!(CallOutcome::Success.as_str(), "success");
/// assert_eq!(CallOutcome::Rejected.as_str(), "rejected");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The result was judged a success (or ignored).
    Success,
    /// The result was judged a failure.
    Failure,
    /// A timeout (operation, request or inherited) ended it.
    Timeout,
    /// A guard (breaker, limiter, bulkhead) rejected it.
    Rejected,
    /// The caller cancelled it.
    Cancelled,
}

impl CallOutcome {
    /// Every outcome, in label order.
    pub const ALL: [CallOutcome; 5] = [
        CallOutcome::Success,
        CallOutcome::Failure,
        CallOutcome::Timeout,
        CallOutcome::Rejected,
        CallOutcome::Cancelled,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened. Strategy names (`strategy`) are the guards' names: `circuit_breaker`,
/// `rate_limiter`, `bulkhead`, or a custom guard's.
///
/// ```
/// use resilient::telemetry::EventKind;
/// let e = EventKind::Queued { strategy: "bulkhead" };
/// assert_eq!(e.name(), "queued");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// A call started; `deadline` is the time it has, if bounded.
    CallStarted {
        /// Time left until the call's deadline, if any.
        deadline: Option<Duration>,
    },
    /// A call ended.
    CallFinished {
        /// How it ended.
        outcome: CallOutcome,
        /// Attempts it made (0 if a per-call guard rejected it).
        attempts: u32,
        /// How long it took.
        duration: Duration,
    },
    /// An attempt ended.
    AttemptFinished {
        /// Its number, from 1.
        attempt: u32,
        /// How it ended.
        outcome: CallOutcome,
        /// How long it took (including per-attempt guards' waits).
        duration: Duration,
    },
    /// A retry was scheduled after a failed attempt.
    RetryScheduled {
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next one.
        delay: Duration,
        /// Why it is retried.
        reason: RetryReason,
    },
    /// The retry budget refused a retry (the call ends with its last result).
    BudgetExhausted {
        /// The attempt that would have been retried.
        attempt: u32,
    },
    /// A timeout fired.
    TimeoutFired {
        /// Which one.
        scope: TimeoutScope,
        /// How long the call (or, for `Operation`, the attempt) had run.
        elapsed: Duration,
    },
    /// A guard admitted the call (or attempt).
    Admitted {
        /// The guard.
        strategy: &'static str,
        /// How long the guard made it wait (`None`: admitted at once).
        waited: Option<Duration>,
    },
    /// A guard made the call wait (a bulkhead's queue, a limiter's wait).
    Queued {
        /// The guard.
        strategy: &'static str,
    },
    /// A guard rejected the call (or attempt).
    Rejected {
        /// The guard.
        strategy: &'static str,
        /// Why.
        rejection: &'a Rejection,
        /// How long it waited before being rejected, if it waited.
        waited: Option<Duration>,
    },
    /// A circuit breaker of the pipeline changed state. States are the `state` label
    /// values: `closed`, `open`, `half_open`, `isolated`, `disabled`, `metrics_only`.
    BreakerTransition {
        /// The breaker's name.
        breaker: &'a str,
        /// The previous state.
        from: &'static str,
        /// The new state.
        to: &'static str,
    },
    /// A fallback alternative was used.
    FallbackUsed {
        /// The fallback chain's name.
        fallback: &'a str,
        /// Which alternative, from 1.
        alternative: usize,
    },
    /// A hedged attempt was started.
    HedgeFired {
        /// The hedge's number (1 for the first hedge).
        attempt: u32,
    },
}

impl EventKind<'_> {
    /// The event's name (the `event` field of tracing events).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CallStarted { .. } => "call_started",
            EventKind::CallFinished { .. } => "call_finished",
            EventKind::AttemptFinished { .. } => "attempt_finished",
            EventKind::RetryScheduled { .. } => "retry_scheduled",
            EventKind::BudgetExhausted { .. } => "budget_exhausted",
            EventKind::TimeoutFired { .. } => "timeout_fired",
            EventKind::Admitted { .. } => "admitted",
            EventKind::Queued { .. } => "queued",
            EventKind::Rejected { .. } => "rejected",
            EventKind::BreakerTransition { .. } => "breaker_transition",
            EventKind::FallbackUsed { .. } => "fallback_used",
            EventKind::HedgeFired { .. } => "hedge_fired",
        }
    }
}

/// One event of a pipeline: the pipeline's name and tags and what happened.
///
/// ```
/// use resilient::telemetry::{Event, EventKind};
/// let e = Event { pipeline: "users", tags: &[], kind: EventKind::HedgeFired { attempt: 1 } };
/// assert_eq!(e.pipeline, "users");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// The pipeline's name (`""` if unnamed).
    pub pipeline: &'a str,
    /// The pipeline's tags.
    pub tags: &'a [(String, String)],
    /// What happened.
    pub kind: EventKind<'a>,
}

/// Point-in-time state of a pipeline's strategies, read when metrics are collected (a
/// scrape), never on the call path.
///
/// ```
/// use resilient::telemetry::GuardGauges;
/// let g = GuardGauges::default();
/// assert_eq!(g.in_flight, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct GuardGauges {
    /// A breaker's state (a `state` label value).
    pub state: Option<&'static str>,
    /// A breaker's failure rate over its window (0 to 1).
    pub failure_rate: Option<f64>,
    /// Calls holding a slot (a bulkhead).
    pub in_flight: Option<u64>,
    /// Calls waiting for a slot (a bulkhead).
    pub queued: Option<u64>,
}

impl GuardGauges {
    /// A breaker's gauges.
    ///
    /// ```
    /// let g = resilient::telemetry::GuardGauges::breaker("open", Some(0.5));
    /// assert_eq!(g.state, Some("open"));
    /// ```
    pub fn breaker(state: &'static str, failure_rate: Option<f64>) -> Self {
        Self {
            state: Some(state),
            failure_rate,
            ..Self::default()
        }
    }

    /// A bulkhead's gauges.
    ///
    /// ```
    /// let g = resilient::telemetry::GuardGauges::bulkhead(3, 1);
    /// assert_eq!((g.in_flight, g.queued), (Some(3), Some(1)));
    /// ```
    pub fn bulkhead(in_flight: u64, queued: u64) -> Self {
        Self {
            in_flight: Some(in_flight),
            queued: Some(queued),
            ..Self::default()
        }
    }
}

/// The gauges of one pipeline at one moment (see [`Observer::attach`]).
///
/// ```
/// use resilient::telemetry::Gauges;
/// let g = Gauges::default();
/// assert!(g.strategies.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Gauges {
    /// Each guard's name and gauges, in pipeline order.
    pub strategies: Vec<(&'static str, GuardGauges)>,
    /// The retry budget's tokens left, if the retry has a budget.
    pub retry_budget: Option<u64>,
}

/// A source of a pipeline's [`Gauges`], handed to observers when they are attached.
///
/// ```
/// use resilient::telemetry::{GaugeSource, Gauges};
/// struct Nothing;
/// impl GaugeSource for Nothing {
///     fn pipeline(&self) -> &str { "none" }
///     fn tags(&self) -> &[(String, String)] { &[] }
///     fn gauges(&self) -> Gauges { Gauges::default() }
/// }
/// assert_eq!(Nothing.pipeline(), "none");
/// ```
pub trait GaugeSource: Send + Sync + 'static {
    /// The pipeline's name (`""` if unnamed).
    fn pipeline(&self) -> &str;
    /// The pipeline's tags.
    fn tags(&self) -> &[(String, String)];
    /// The gauges now.
    fn gauges(&self) -> Gauges;
}

/// Receives the [`Event`]s of the pipelines it is attached to (see
/// [`PipelineBuilder::observer`](crate::PipelineBuilder::observer)).
///
/// Called synchronously on the calling task, so keep it cheap (count, enqueue). A panic in
/// an observer is caught and discarded: it never reaches the call. Closures
/// `Fn(&Event<'_>)` are observers.
///
/// ```
/// use resilient::telemetry::{Event, EventKind};
/// use resilient::{Pipeline, Retry};
/// use std::sync::{Arc, Mutex};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let p = Pipeline::builder()
///     .name("users")
///     .retry(Retry::immediate().attempts(2))
///     .observer(move |e: &Event<'_>| log.lock().unwrap().push(e.kind.name()))
///     .build()
///     .unwrap();
/// let mut first = true;
/// let _ = p.execute(|| {
///     let fail = std::mem::take(&mut first);
///     async move { if fail { Err("flaky") } else { Ok(1) } }
/// }).await;
/// assert_eq!(
///     *seen.lock().unwrap(),
///     ["call_started", "attempt_finished", "retry_scheduled", "attempt_finished", "call_finished"]
/// );
/// # }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &Event<'_>);

    /// Called once for each pipeline built with this observer, with a source of its
    /// gauges (breaker state, bulkhead occupancy, retry budget) to read at collection
    /// time. Hold it weakly to let the pipeline go. The default ignores it.
    fn attach(&self, source: std::sync::Weak<dyn GaugeSource>) {
        let _ = source;
    }

    /// Whether pipelines with this observer open a tracing span per call and per attempt
    /// (feature `tracing`; the default is `false`).
    fn spans(&self) -> bool {
        false
    }
}

impl<F> Observer for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// A shared observer.
pub type SharedObserver = Arc<dyn Observer>;

/// Where a guard with states reports its transitions (see
/// [`Guard::observe_transitions`](crate::Guard::observe_transitions)): called with the
/// guard's name and the `state` label values it moved from and to.
pub type TransitionSink = Arc<dyn Fn(&str, &'static str, &'static str) + Send + Sync>;

/// Delivers `event` to `observer`, containing a panic.
#[inline]
pub(crate) fn deliver(observer: &dyn Observer, event: &Event<'_>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.on_event(event)));
}

/// Fans events out to several observers (what [`PipelineBuilder::observer`](crate::PipelineBuilder::observer)
/// builds when called more than once).
pub(crate) struct Fanout(pub(crate) Vec<SharedObserver>);

impl Observer for Fanout {
    fn on_event(&self, event: &Event<'_>) {
        for o in &self.0 {
            deliver(&**o, event);
        }
    }

    fn attach(&self, source: std::sync::Weak<dyn GaugeSource>) {
        for o in &self.0 {
            o.attach(source.clone());
        }
    }

    fn spans(&self) -> bool {
        self.0.iter().any(|o| o.spans())
    }
}

/// What a pipeline with an observer reports through: its observer, name and tags.
pub(crate) struct Sink {
    pub(crate) observer: SharedObserver,
    pub(crate) name: Arc<str>,
    pub(crate) tags: Arc<[(String, String)]>,
    /// Whether calls and attempts open tracing spans (see [`Observer::spans`]).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) spans: bool,
}

impl Sink {
    #[inline]
    pub(crate) fn emit(&self, kind: EventKind<'_>) {
        deliver(
            &*self.observer,
            &Event {
                pipeline: &self.name,
                tags: &self.tags,
                kind,
            },
        );
    }
}

/// One observed call's telemetry state, carried in its [`Context`](crate::Context).
pub(crate) struct Probe {
    pub(crate) sink: Arc<Sink>,
    /// Attempts started so far.
    attempts: AtomicU32,
    /// When the call started (tokio's time).
    origin: Instant,
    /// When the current attempt started, in nanoseconds since `origin` (kept here rather
    /// than in the engine's futures, which stay the size they are without an observer).
    attempt_start: AtomicU64,
    /// When the current guard started making the call wait, likewise.
    wait_start: AtomicU64,
}

impl Probe {
    pub(crate) fn new(sink: Arc<Sink>) -> Arc<Self> {
        Arc::new(Self {
            sink,
            attempts: AtomicU32::new(0),
            origin: Instant::now(),
            attempt_start: AtomicU64::new(0),
            wait_start: AtomicU64::new(0),
        })
    }

    fn since_origin(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn elapsed_since(&self, mark: &AtomicU64) -> Duration {
        Duration::from_nanos(
            self.since_origin()
                .saturating_sub(mark.load(Ordering::Relaxed)),
        )
    }

    /// Attempt `attempt` starts now.
    pub(crate) fn attempt_started(&self, attempt: u32) {
        self.attempts.store(attempt, Ordering::Relaxed);
        self.attempt_start
            .store(self.since_origin(), Ordering::Relaxed);
    }

    /// How long the current attempt has run.
    pub(crate) fn attempt_elapsed(&self) -> Duration {
        self.elapsed_since(&self.attempt_start)
    }

    /// A guard starts making the call wait now.
    pub(crate) fn wait_started(&self) {
        self.wait_start
            .store(self.since_origin(), Ordering::Relaxed);
    }

    /// How long the current guard has made the call wait.
    pub(crate) fn waited(&self) -> Duration {
        self.elapsed_since(&self.wait_start)
    }

    /// How long the call has run.
    pub(crate) fn call_elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    #[inline]
    pub(crate) fn emit(&self, kind: EventKind<'_>) {
        self.sink.emit(kind)
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("pipeline", &self.sink.name)
            .field("attempts", &self.attempts())
            .finish()
    }
}

/// How an error ended a call, as the `outcome` label says it.
pub(crate) fn error_outcome<E>(e: &crate::engine::error::Error<E>) -> CallOutcome {
    use crate::engine::error::Error;
    match e {
        Error::Timeout { .. } => CallOutcome::Timeout,
        Error::Cancelled => CallOutcome::Cancelled,
        Error::CircuitOpen { .. }
        | Error::RateLimited { .. }
        | Error::BulkheadFull
        | Error::Rejected { .. } => CallOutcome::Rejected,
        _ => CallOutcome::Failure,
    }
}
