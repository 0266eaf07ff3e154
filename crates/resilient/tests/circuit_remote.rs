//! The remote-store seam (`RemoteStore`): breakers on different clocks share phases whose
//! deadlines are on the store's time base, share the failed-recovery count, and never
//! consult the store on the admission path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::circuit::{Proposal, RemoteStore, RemoteSync, SharedPhase, TransitionReason};
use resilient::{CircuitBreaker, CircuitEvent, CircuitState, ManualClock};

/// A "remote" store in memory with its own clock (the shared time base): it relays every
/// proposal to every other attached breaker at once, and counts how often it was asked.
#[derive(Debug, Default)]
struct Relay {
    server_time: Mutex<Duration>,
    syncs: Mutex<Vec<RemoteSync>>,
    proposals: Mutex<Vec<Proposal>>,
    now_reads: AtomicU64,
    failures: AtomicU64,
    successes: AtomicU64,
}

/// One breaker's handle on the relay (so the relay knows who proposed).
#[derive(Debug)]
struct Member {
    relay: Arc<Relay>,
    index: Mutex<Option<usize>>,
}

impl RemoteStore for Member {
    fn now(&self) -> Duration {
        self.relay.now_reads.fetch_add(1, Ordering::Relaxed);
        *self.relay.server_time.lock().unwrap()
    }
    fn propose(&self, p: Proposal) {
        self.relay.proposals.lock().unwrap().push(p);
        let me = *self.index.lock().unwrap();
        let others: Vec<RemoteSync> = self
            .relay
            .syncs
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me)
            .map(|(_, s)| s.clone())
            .collect();
        for s in others {
            s.adopt(p.phase);
        }
    }
    fn attach(&self, sync: RemoteSync) {
        let mut syncs = self.relay.syncs.lock().unwrap();
        *self.index.lock().unwrap() = Some(syncs.len());
        syncs.push(sync);
    }
    fn record(&self, failed: bool) {
        let c = if failed {
            &self.relay.failures
        } else {
            &self.relay.successes
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

type Log = Arc<Mutex<Vec<CircuitEvent>>>;

fn member(relay: &Arc<Relay>, clock: &ManualClock, log: &Log) -> CircuitBreaker {
    let sink = log.clone();
    CircuitBreaker::consecutive_failures(3)
        .open_for(Duration::from_secs(30))
        .break_backoff(2.0, Duration::from_secs(600))
        .clock(Arc::new(clock.clone()))
        .observer(move |_: &str, e: &CircuitEvent| sink.lock().unwrap().push(e.clone()))
        .remote_store(Arc::new(Member {
            relay: relay.clone(),
            index: Mutex::new(None),
        }))
        .build()
        .unwrap()
}

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        let _ = b.call_blocking(|| Err::<(), _>("down"));
    }
}

fn retry_after(b: &CircuitBreaker) -> Duration {
    b.snapshot().retry_after.expect("open")
}

#[test]
fn deadlines_travel_on_the_stores_time_base_and_recoveries_are_shared() {
    let relay = Arc::new(Relay::default());
    *relay.server_time.lock().unwrap() = Duration::from_secs(1_700_000_000);
    // Two processes whose clocks count from different origins.
    let (ca, cb) = (ManualClock::new(), ManualClock::new());
    ca.set(Duration::from_secs(5));
    cb.set(Duration::from_secs(86_400));
    let (la, lb) = (Log::default(), Log::default());
    let a = member(&relay, &ca, &la);
    let b = member(&relay, &cb, &lb);

    // a trips; b follows with the same break, though its clock reads a day later.
    fail(&a, 3);
    assert_eq!(a.state(), CircuitState::Open);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(retry_after(&a), Duration::from_secs(30));
    assert_eq!(retry_after(&b), Duration::from_secs(30));
    assert!(lb.lock().unwrap().iter().any(|e| matches!(
        e,
        CircuitEvent::StateTransition {
            to: CircuitState::Open,
            reason: TransitionReason::Shared,
            ..
        }
    )));
    let p = relay.proposals.lock().unwrap()[0];
    assert_eq!(p.reason, TransitionReason::ConsecutiveFailures);
    assert_eq!(
        p.phase,
        SharedPhase::new(
            CircuitState::Open,
            Some(Duration::from_secs(1_700_000_030)),
            0
        )
    );

    // 30 s later on every clock: b probes, the probe fails, the longer break and the
    // failed-recovery count reach a.
    for c in [&ca, &cb] {
        c.advance(Duration::from_secs(30));
    }
    *relay.server_time.lock().unwrap() += Duration::from_secs(30);
    fail(&b, 1);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.snapshot().failed_recoveries, 1);
    assert_eq!(retry_after(&b), Duration::from_secs(60), "backed off");
    assert_eq!(a.snapshot().failed_recoveries, 1, "shared");
    assert_eq!(a.state(), CircuitState::Open);
    assert_eq!(retry_after(&a), Duration::from_secs(60));

    // The next recovery succeeds on a: both close, and the count resets everywhere.
    for c in [&ca, &cb] {
        c.advance(Duration::from_secs(60));
    }
    *relay.server_time.lock().unwrap() += Duration::from_secs(60);
    assert!(a.call_blocking(|| Ok::<_, ()>(())).is_ok());
    assert_eq!(a.state(), CircuitState::Closed);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().failed_recoveries, 0);
}

#[test]
fn the_admission_path_never_consults_the_store() {
    let relay = Arc::new(Relay::default());
    let clock = ManualClock::new();
    let log = Log::default();
    let a = member(&relay, &clock, &log);
    for i in 0..100 {
        let r = a.call_blocking(|| if i % 3 == 0 { Err("x") } else { Ok(()) });
        let _ = r;
    }
    assert_eq!(a.state(), CircuitState::Closed);
    assert_eq!(relay.now_reads.load(Ordering::Relaxed), 0, "no clock read");
    assert!(relay.proposals.lock().unwrap().is_empty(), "no transition");
    // Outcomes are handed over (an atomic increment each), for stores that aggregate.
    assert_eq!(
        (
            relay.successes.load(Ordering::Relaxed),
            relay.failures.load(Ordering::Relaxed)
        ),
        (66, 34)
    );
}

#[test]
fn a_store_can_end_a_shared_phase_and_a_dropped_breaker_is_reported() {
    let relay = Arc::new(Relay::default());
    *relay.server_time.lock().unwrap() = Duration::from_secs(1_000);
    let clock = ManualClock::new();
    let log = Log::default();
    let a = member(&relay, &clock, &log);
    let sync = relay.syncs.lock().unwrap()[0].clone();
    assert!(sync.adopt(SharedPhase::new(
        CircuitState::Open,
        Some(Duration::from_secs(1_010)),
        4
    )));
    assert_eq!(a.state(), CircuitState::Open);
    assert_eq!(retry_after(&a), Duration::from_secs(10));
    // The same state again: only its deadline and count are adopted (no transition).
    let moves = log.lock().unwrap().len();
    assert!(sync.adopt(SharedPhase::new(
        CircuitState::Open,
        Some(Duration::from_secs(1_020)),
        5
    )));
    assert_eq!(log.lock().unwrap().len(), moves);
    assert_eq!(retry_after(&a), Duration::from_secs(20));
    assert_eq!(a.snapshot().failed_recoveries, 5);
    // Closed elsewhere: closed here, with nothing proposed back.
    assert!(sync.adopt(SharedPhase::new(CircuitState::Closed, None, 0)));
    assert_eq!(a.state(), CircuitState::Closed);
    assert!(relay.proposals.lock().unwrap().is_empty());
    assert_eq!(sync.state(), Some(CircuitState::Closed));
    // A state forced by hand here stays until released by hand (or forced elsewhere).
    a.isolate();
    let open = SharedPhase::new(CircuitState::Open, Some(Duration::from_secs(1_030)), 0);
    assert!(sync.adopt(open));
    assert_eq!(a.state(), CircuitState::Isolated);
    assert!(sync.adopt(SharedPhase::new(CircuitState::Disabled, None, 0)));
    assert_eq!(a.state(), CircuitState::Disabled);
    drop(a);
    assert!(!sync.adopt(SharedPhase::new(CircuitState::Closed, None, 0)));
    assert_eq!(sync.state(), None);
}

#[test]
fn a_second_remote_store_is_refused() {
    let relay = Arc::new(Relay::default());
    let a = member(&relay, &ManualClock::new(), &Log::default());
    let again = Arc::new(Member {
        relay: relay.clone(),
        index: Mutex::new(None),
    });
    assert_eq!(
        a.attach_remote_store(again).unwrap_err().field(),
        "circuit.remote_store"
    );
    assert_eq!(relay.syncs.lock().unwrap().len(), 1);
}
