//! The instruments both metric backends export (features `prometheus` and
//! `opentelemetry`): one set of names, units and labels.
//!
//! | instrument | kind | unit | labels | what |
//! |---|---|---|---|---|
//! | `resilient_calls` | counter | `{call}` | `pipeline`, `outcome` | calls by outcome |
//! | `resilient_attempts` | counter | `{attempt}` | `pipeline`, `outcome` | attempts by outcome |
//! | `resilient_call_attempts` | histogram | `{attempt}` | `pipeline` | attempts per call |
//! | `resilient_call_duration_seconds` | histogram | `s` | `pipeline`, `outcome` | call duration |
//! | `resilient_attempt_duration_seconds` | histogram | `s` | `pipeline`, `outcome` | attempt duration |
//! | `resilient_retries` | counter | `{retry}` | `pipeline` | retries scheduled |
//! | `resilient_retry_budget_exhausted` | counter | `{retry}` | `pipeline` | retries the budget refused |
//! | `resilient_retry_budget_level` | gauge | `{retry}` | `pipeline` | retries the budget has left |
//! | `resilient_timeouts` | counter | `{timeout}` | `pipeline`, `scope` | timeouts fired (`operation`, `request`, `inherited`) |
//! | `resilient_admissions` | counter | `{call}` | `pipeline`, `strategy` | guard admissions (limiter, bulkhead, breaker) |
//! | `resilient_rejections` | counter | `{call}` | `pipeline`, `strategy` | guard rejections |
//! | `resilient_wait_duration_seconds` | histogram | `s` | `pipeline`, `strategy` | time a guard made a call wait (limiter wait, bulkhead queue) |
//! | `resilient_breaker_state` | gauge | `1` | `pipeline`, `state` | 1 for the breaker's current state, 0 for the others |
//! | `resilient_breaker_failure_rate` | gauge | `1` | `pipeline` | the breaker window's failure rate (0 to 1) |
//! | `resilient_breaker_transitions` | counter | `{transition}` | `pipeline`, `state` | transitions, by the state entered |
//! | `resilient_bulkhead_in_flight` | gauge | `{call}` | `pipeline` | calls holding a bulkhead slot |
//! | `resilient_bulkhead_queued` | gauge | `{call}` | `pipeline` | calls waiting for a slot |
//! | `resilient_fallbacks` | counter | `{call}` | `pipeline` | fallback alternatives used |
//! | `resilient_hedges` | counter | `{attempt}` | `pipeline` | hedged attempts started |
//!
//! Label values: `outcome` is a [`CallOutcome`](crate::telemetry::CallOutcome) (`success`,
//! `failure`, `timeout`, `rejected`, `cancelled`); `strategy` a guard's name
//! (`rate_limiter`, `bulkhead`, `circuit_breaker`); `state` a breaker state (`closed`,
//! `open`, `half_open`, `isolated`, `disabled`, `metrics_only`). Pipeline tags are added as
//! labels too. In Prometheus' text format counters carry the `_total` suffix
//! (`resilient_calls_total`) and histograms their `_bucket`, `_sum` and `_count` series.

/// The kind of an instrument.
///
/// ```
/// use resilient::telemetry::metrics::{Kind, INSTRUMENTS};
/// assert_eq!(INSTRUMENTS[0].kind, Kind::Counter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count.
    Counter,
    /// A distribution.
    Histogram,
    /// A value read at collection time.
    Gauge,
}

/// One documented instrument.
///
/// ```
/// use resilient::telemetry::metrics::INSTRUMENTS;
/// let calls = INSTRUMENTS.iter().find(|i| i.name == "resilient_calls").unwrap();
/// assert_eq!(calls.prometheus_name(), "resilient_calls_total");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instrument {
    /// The name (the same in both backends).
    pub name: &'static str,
    /// What it is.
    pub kind: Kind,
    /// The unit (UCUM, as OpenTelemetry takes it).
    pub unit: &'static str,
    /// Its labels (besides the pipeline's tags).
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

impl Instrument {
    /// The series name in Prometheus' text format (`_total` for counters).
    pub fn prometheus_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

const fn i(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Instrument {
    Instrument {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Name of the calls counter.
pub const CALLS: &str = "resilient_calls";
/// Name of the attempts counter.
pub const ATTEMPTS: &str = "resilient_attempts";
/// Name of the attempts-per-call histogram.
pub const CALL_ATTEMPTS: &str = "resilient_call_attempts";
/// Name of the call duration histogram.
pub const CALL_DURATION: &str = "resilient_call_duration_seconds";
/// Name of the attempt duration histogram.
pub const ATTEMPT_DURATION: &str = "resilient_attempt_duration_seconds";
/// Name of the retries counter.
pub const RETRIES: &str = "resilient_retries";
/// Name of the refused-retries counter.
pub const BUDGET_EXHAUSTED: &str = "resilient_retry_budget_exhausted";
/// Name of the retry budget gauge.
pub const BUDGET_LEVEL: &str = "resilient_retry_budget_level";
/// Name of the timeouts counter.
pub const TIMEOUTS: &str = "resilient_timeouts";
/// Name of the admissions counter.
pub const ADMISSIONS: &str = "resilient_admissions";
/// Name of the rejections counter.
pub const REJECTIONS: &str = "resilient_rejections";
/// Name of the wait histogram.
pub const WAIT_DURATION: &str = "resilient_wait_duration_seconds";
/// Name of the breaker state gauge.
pub const BREAKER_STATE: &str = "resilient_breaker_state";
/// Name of the breaker failure-rate gauge.
pub const BREAKER_FAILURE_RATE: &str = "resilient_breaker_failure_rate";
/// Name of the breaker transitions counter.
pub const BREAKER_TRANSITIONS: &str = "resilient_breaker_transitions";
/// Name of the bulkhead in-flight gauge.
pub const BULKHEAD_IN_FLIGHT: &str = "resilient_bulkhead_in_flight";
/// Name of the bulkhead queue gauge.
pub const BULKHEAD_QUEUED: &str = "resilient_bulkhead_queued";
/// Name of the fallbacks counter.
pub const FALLBACKS: &str = "resilient_fallbacks";
/// Name of the hedges counter.
pub const HEDGES: &str = "resilient_hedges";

const P: &[&str] = &["pipeline"];
const PO: &[&str] = &["pipeline", "outcome"];
const PS: &[&str] = &["pipeline", "strategy"];

/// Every instrument, as documented in [this module](self).
pub const INSTRUMENTS: &[Instrument] = &[
    i(CALLS, Kind::Counter, "{call}", PO, "Calls by outcome"),
    i(
        ATTEMPTS,
        Kind::Counter,
        "{attempt}",
        PO,
        "Attempts by outcome.",
    ),
    i(
        CALL_ATTEMPTS,
        Kind::Histogram,
        "{attempt}",
        P,
        "Attempts per call.",
    ),
    i(CALL_DURATION, Kind::Histogram, "s", PO, "Call duration"),
    i(
        ATTEMPT_DURATION,
        Kind::Histogram,
        "s",
        PO,
        "Attempt duration.",
    ),
    i(RETRIES, Kind::Counter, "{retry}", P, "Retries scheduled"),
    i(
        BUDGET_EXHAUSTED,
        Kind::Counter,
        "{retry}",
        P,
        "Retries the retry budget refused.",
    ),
    i(
        BUDGET_LEVEL,
        Kind::Gauge,
        "{retry}",
        P,
        "Retries the retry budget has left.",
    ),
    i(
        TIMEOUTS,
        Kind::Counter,
        "{timeout}",
        &["pipeline", "scope"],
        "Timeouts fired.",
    ),
    i(
        ADMISSIONS,
        Kind::Counter,
        "{call}",
        PS,
        "Calls admitted by a guard.",
    ),
    i(
        REJECTIONS,
        Kind::Counter,
        "{call}",
        PS,
        "Calls rejected by a guard.",
    ),
    i(
        WAIT_DURATION,
        Kind::Histogram,
        "s",
        PS,
        "Time a guard made a call wait.",
    ),
    i(
        BREAKER_STATE,
        Kind::Gauge,
        "1",
        &["pipeline", "state"],
        "1 for the breaker's current state.",
    ),
    i(
        BREAKER_FAILURE_RATE,
        Kind::Gauge,
        "1",
        P,
        "The breaker window's failure rate.",
    ),
    i(
        BREAKER_TRANSITIONS,
        Kind::Counter,
        "{transition}",
        &["pipeline", "state"],
        "Breaker transitions by state entered.",
    ),
    i(
        BULKHEAD_IN_FLIGHT,
        Kind::Gauge,
        "{call}",
        P,
        "Calls holding a bulkhead slot.",
    ),
    i(
        BULKHEAD_QUEUED,
        Kind::Gauge,
        "{call}",
        P,
        "Calls waiting for a bulkhead slot.",
    ),
    i(
        FALLBACKS,
        Kind::Counter,
        "{call}",
        P,
        "Fallback alternatives used.",
    ),
    i(
        HEDGES,
        Kind::Counter,
        "{attempt}",
        P,
        "Hedged attempts started.",
    ),
];

/// Every breaker state label value.
pub const BREAKER_STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "isolated",
    "disabled",
    "metrics_only",
];
