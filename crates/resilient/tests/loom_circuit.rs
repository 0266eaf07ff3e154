//! A loom model of the breaker's half-open permit path: concurrent callers race to end the
//! break and take probe permits while others settle or cancel theirs.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p resilient --release --test loom_circuit`.
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use resilient::{
    Acquire, CircuitBreaker, CircuitState, Context, Guard, ManualClock, Outcome, Permit,
};

const PROBES: usize = 2;

fn admit(b: &CircuitBreaker) -> Option<Permit<'_>> {
    match b.acquire(&Context::new()) {
        Acquire::Ready(r) => r.ok(),
        Acquire::Wait(_) => panic!("a breaker never makes callers wait"),
    }
}

/// A breaker whose break has just elapsed: the next caller ends it.
fn open_and_elapsed() -> CircuitBreaker {
    let clock = ManualClock::new();
    let b = CircuitBreaker::consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_probes(PROBES as u32)
        .required_successes(PROBES as u32)
        .max_half_open_wait(Duration::from_secs(3600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    admit(&b).unwrap().record(Outcome::Failure, Duration::ZERO);
    assert_eq!(b.state(), CircuitState::Open);
    clock.advance(Duration::from_secs(1));
    b
}

/// One caller: takes a probe permit if it can, then settles it (`Some(outcome)`) or drops
/// it (cancelled). Counts the permits it holds in `held`, which must never exceed N.
fn caller(b: &CircuitBreaker, held: &AtomicUsize, settle: Option<Outcome>) -> bool {
    let Some(p) = admit(b) else { return false };
    let n = held.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(n <= PROBES, "{n} probes held at once");
    held.fetch_sub(1, Ordering::SeqCst);
    match settle {
        Some(o) => p.record(o, Duration::ZERO),
        None => drop(p),
    }
    true
}

#[test]
fn half_open_admits_at_most_n_probes_and_releases_each_once() {
    loom::model(|| {
        let b = open_and_elapsed();
        let held = Arc::new(AtomicUsize::new(0));
        let spawn = |settle| {
            let (b, held) = (b.clone(), held.clone());
            thread::spawn(move || caller(&b, &held, settle))
        };
        let t1 = spawn(Some(Outcome::Success));
        let t2 = spawn(None);
        caller(&b, &held, Some(Outcome::Success));
        t1.join().unwrap();
        t2.join().unwrap();
        // No permit leaked, none released twice, and the breaker is not stuck.
        let snap = b.snapshot();
        assert_eq!(snap.probes_in_flight, 0, "{snap:?}");
        match b.state() {
            CircuitState::Closed => {}
            CircuitState::HalfOpen => {
                // the remaining successes can still be had
                while b.state() == CircuitState::HalfOpen {
                    admit(&b)
                        .expect("a free probe permit")
                        .record(Outcome::Success, Duration::ZERO);
                }
                assert_eq!(b.state(), CircuitState::Closed);
            }
            other => panic!("stuck in {other:?}"),
        }
    });
}

#[test]
fn a_failed_probe_racing_admissions_reopens_once() {
    loom::model(|| {
        let b = open_and_elapsed();
        let held = Arc::new(AtomicUsize::new(0));
        let (b1, h1) = (b.clone(), held.clone());
        let t1 = thread::spawn(move || caller(&b1, &h1, Some(Outcome::Failure)));
        caller(&b, &held, Some(Outcome::Success));
        t1.join().unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.probes_in_flight, 0, "{snap:?}");
        // the failing probe always gets a permit (a success keeps its own), and its
        // failure reopens the breaker exactly once
        assert_eq!(snap.failed_recoveries, 1, "{snap:?}");
        assert_eq!(b.state(), CircuitState::Open);
    });
}
