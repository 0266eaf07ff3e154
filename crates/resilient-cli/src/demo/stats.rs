//! What the run records (every call, every breaker transition) and the figures drawn from
//! it: per-group success rates, latency percentiles, attempts per call, time series.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient::CircuitState;
use serde::Serialize;
use tokio::time::Instant;

/// The two client groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Plain HTTP calls, no protection.
    Unprotected,
    /// The same calls through the pipeline.
    Protected,
}

impl Group {
    /// Both, unprotected first.
    pub const ALL: [Group; 2] = [Group::Unprotected, Group::Protected];

    /// The name shown.
    pub fn name(self) -> &'static str {
        match self {
            Group::Unprotected => "unprotected",
            Group::Protected => "protected",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `200 OK`.
    Ok,
    /// A 5xx answer.
    ServerError,
    /// A 429 answer.
    Throttled,
    /// No answer (connection or protocol error).
    Transport,
    /// A timeout of the pipeline.
    Timeout,
    /// Rejected by the open breaker.
    CircuitOpen,
    /// Rejected by the client-side rate limiter.
    RateLimited,
    /// Rejected by the full bulkhead.
    BulkheadFull,
    /// Anything else.
    Other,
}

impl CallKind {
    /// Every kind, in the order shown.
    pub const ALL: [CallKind; 9] = [
        CallKind::Ok,
        CallKind::ServerError,
        CallKind::Throttled,
        CallKind::Transport,
        CallKind::Timeout,
        CallKind::CircuitOpen,
        CallKind::RateLimited,
        CallKind::BulkheadFull,
        CallKind::Other,
    ];

    /// The name used in the summary.
    pub fn name(self) -> &'static str {
        match self {
            CallKind::Ok => "ok",
            CallKind::ServerError => "server_error",
            CallKind::Throttled => "throttled",
            CallKind::Transport => "transport",
            CallKind::Timeout => "timeout",
            CallKind::CircuitOpen => "circuit_open",
            CallKind::RateLimited => "rate_limited",
            CallKind::BulkheadFull => "bulkhead_full",
            CallKind::Other => "other",
        }
    }
}

/// One finished call.
#[derive(Debug, Clone, Copy)]
pub struct CallRecord {
    /// Its group.
    pub group: Group,
    /// When it started, from the start of the run.
    pub start: Duration,
    /// How long the caller waited.
    pub latency: Duration,
    /// How it ended.
    pub kind: CallKind,
    /// Requests it sent.
    pub attempts: u32,
}

/// One change of the breaker's state.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    /// When, from the start of the run.
    pub at: Duration,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
}

/// Everything recorded during a run; shared by the clients, the breaker's observer and the
/// views.
pub struct Recorder {
    start: Instant,
    calls: Mutex<Vec<CallRecord>>,
    transitions: Mutex<Vec<Transition>>,
    started: [AtomicU64; 2],
}

fn slot(group: Group) -> usize {
    match group {
        Group::Unprotected => 0,
        Group::Protected => 1,
    }
}

impl Recorder {
    /// An empty recorder whose clock starts at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            calls: Mutex::new(Vec::new()),
            transitions: Mutex::new(Vec::new()),
            started: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Time since the start of the run.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Counts a call started.
    pub fn started(&self, group: Group) {
        self.started[slot(group)].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls started so far.
    pub fn started_calls(&self, group: Group) -> u64 {
        self.started[slot(group)].load(Ordering::Relaxed)
    }

    /// Records a finished call.
    pub fn call(&self, record: CallRecord) {
        self.calls.lock().expect("not poisoned").push(record);
    }

    /// Records a breaker transition, now.
    pub fn transition(&self, from: CircuitState, to: CircuitState) {
        let at = self.now();
        self.transitions
            .lock()
            .expect("not poisoned")
            .push(Transition { at, from, to });
    }

    /// A copy of the finished calls.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().expect("not poisoned").clone()
    }

    /// A copy of the transitions.
    pub fn transitions(&self) -> Vec<Transition> {
        self.transitions.lock().expect("not poisoned").clone()
    }
}

/// The figures of one group over some calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupStats {
    /// Calls finished.
    pub calls: usize,
    /// Of which `200 OK`.
    pub ok: usize,
    /// `ok / calls` (0 without calls).
    pub success_rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The slowest call, ms.
    pub max_ms: f64,
    /// Requests sent per call.
    pub attempts_per_call: f64,
    /// Calls by how they ended.
    pub outcomes: std::collections::BTreeMap<&'static str, usize>,
}

/// The `q` quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

impl GroupStats {
    /// The figures of `group` over `calls`.
    pub fn of<'a>(group: Group, calls: impl IntoIterator<Item = &'a CallRecord>) -> GroupStats {
        let mine: Vec<&CallRecord> = calls.into_iter().filter(|c| c.group == group).collect();
        let mut latencies: Vec<Duration> = mine.iter().map(|c| c.latency).collect();
        latencies.sort();
        let ok = mine.iter().filter(|c| c.kind == CallKind::Ok).count();
        let attempts: u64 = mine.iter().map(|c| u64::from(c.attempts)).sum();
        let n = mine.len();
        let mut outcomes = std::collections::BTreeMap::new();
        for kind in CallKind::ALL {
            let count = mine.iter().filter(|c| c.kind == kind).count();
            if count > 0 {
                outcomes.insert(kind.name(), count);
            }
        }
        GroupStats {
            calls: n,
            ok,
            success_rate: if n == 0 { 0.0 } else { ok as f64 / n as f64 },
            p50_ms: ms(quantile(&latencies, 0.5)),
            p99_ms: ms(quantile(&latencies, 0.99)),
            max_ms: ms(latencies.last().copied().unwrap_or_default()),
            attempts_per_call: if n == 0 {
                0.0
            } else {
                attempts as f64 / n as f64
            },
            outcomes,
        }
    }

    /// Calls that ended with `kind`.
    pub fn count(&self, kind: CallKind) -> usize {
        self.outcomes.get(kind.name()).copied().unwrap_or(0)
    }
}

/// One point of a time series: the calls that started in `[start, start + width)`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// The bucket's middle, seconds from the start.
    pub t_s: f64,
    /// Success rate, percent.
    pub success_pct: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Success rate and p99 of `group` in `buckets` equal buckets over `duration` (empty
/// buckets are left out).
pub fn series(calls: &[CallRecord], group: Group, duration: Duration, buckets: u32) -> Vec<Point> {
    let width = duration / buckets;
    (0..buckets)
        .filter_map(|i| {
            let from = width * i;
            let to = from + width;
            let inside: Vec<CallRecord> = calls
                .iter()
                .filter(|c| c.group == group && c.start >= from && c.start < to)
                .copied()
                .collect();
            (!inside.is_empty()).then(|| {
                let s = GroupStats::of(group, &inside);
                Point {
                    t_s: (from + width / 2).as_secs_f64(),
                    success_pct: s.success_rate * 100.0,
                    p99_ms: s.p99_ms,
                }
            })
        })
        .collect()
}

/// The spans during which the breaker was open (an open breaker at `end` stays open to
/// `end`).
pub fn open_periods(transitions: &[Transition], end: Duration) -> Vec<(Duration, Duration)> {
    let mut spans = Vec::new();
    let mut opened = None;
    for t in transitions {
        if t.to == CircuitState::Open {
            opened.get_or_insert(t.at);
        } else if let Some(from) = opened.take() {
            spans.push((from, t.at));
        }
    }
    if let Some(from) = opened {
        spans.push((from, end.max(from)));
    }
    spans
}

/// The breaker's state at `t`.
pub fn state_at(transitions: &[Transition], t: Duration) -> CircuitState {
    transitions
        .iter()
        .take_while(|tr| tr.at <= t)
        .last()
        .map_or(CircuitState::Closed, |tr| tr.to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(group: Group, start_ms: u64, latency_ms: u64, kind: CallKind) -> CallRecord {
        CallRecord {
            group,
            start: Duration::from_millis(start_ms),
            latency: Duration::from_millis(latency_ms),
            kind,
            attempts: if kind == CallKind::Ok { 1 } else { 3 },
        }
    }

    #[test]
    fn group_stats_count_rates_percentiles_and_attempts() {
        let mut calls: Vec<CallRecord> = (1..=100)
            .map(|i| call(Group::Protected, i, i, CallKind::Ok))
            .collect();
        calls.push(call(Group::Unprotected, 0, 5000, CallKind::ServerError));
        calls[0].kind = CallKind::CircuitOpen;
        calls[0].attempts = 3;
        let s = GroupStats::of(Group::Protected, &calls);
        assert_eq!(s.calls, 100);
        assert_eq!(s.ok, 99);
        assert!((s.success_rate - 0.99).abs() < 1e-9);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.attempts_per_call - 1.02).abs() < 1e-9);
        assert_eq!(s.count(CallKind::CircuitOpen), 1);
        let u = GroupStats::of(Group::Unprotected, &calls);
        assert_eq!((u.calls, u.ok, u.max_ms), (1, 0, 5000.0));
    }

    #[test]
    fn open_periods_and_states_follow_the_transitions() {
        use CircuitState::*;
        let tr = |ms: u64, from, to| Transition {
            at: Duration::from_millis(ms),
            from,
            to,
        };
        let log = [
            tr(100, Closed, Open),
            tr(200, Open, HalfOpen),
            tr(210, HalfOpen, Open),
            tr(400, Open, HalfOpen),
            tr(405, HalfOpen, Closed),
            tr(900, Closed, Open),
        ];
        let d = Duration::from_millis;
        assert_eq!(
            open_periods(&log, d(1000)),
            vec![(d(100), d(200)), (d(210), d(400)), (d(900), d(1000))]
        );
        assert_eq!(state_at(&log, d(50)), Closed);
        assert_eq!(state_at(&log, d(300)), Open);
        assert_eq!(state_at(&log, d(500)), Closed);
    }
}
