//! Races on a multi-thread runtime: exactly N half-open probes, no permit leak when probe
//! futures are cancelled, and no drift in the window's counters under contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::circuit::Window;
use resilient::{
    Acquire, CircuitBreaker, CircuitState, Context, Error, Guard, ManualClock, Outcome,
};
use tokio::sync::Notify;

const PROBES: u32 = 3;
const TASKS: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A breaker that has just reached half-open (the break elapsed on its manual clock).
fn half_open() -> CircuitBreaker {
    let clock = ManualClock::new();
    let b = CircuitBreaker::consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_probes(PROBES)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    b.call_blocking(|| Err::<(), _>("down")).unwrap_err();
    clock.advance(Duration::from_secs(1));
    b
}

#[test]
fn exactly_n_probes_and_cancelled_probes_release_their_permits() {
    let rt = runtime();
    for round in 0..50 {
        rt.block_on(async {
            let breaker = half_open();
            let entered = Arc::new(AtomicU32::new(0));
            let never = Arc::new(Notify::new());
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let (b, entered, never) = (breaker.clone(), entered.clone(), never.clone());
                tasks.push(tokio::spawn(async move {
                    b.call(|| async move {
                        entered.fetch_add(1, Ordering::SeqCst);
                        never.notified().await; // hangs until cancelled
                        Ok::<_, ()>(())
                    })
                    .await
                }));
            }
            // Settle: every task is either rejected (finished) or inside its probe.
            let mut settled = false;
            for _ in 0..1_000_000 {
                let finished = tasks.iter().filter(|t| t.is_finished()).count() as u32;
                if finished + entered.load(Ordering::SeqCst) == TASKS as u32 {
                    settled = true;
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(settled, "round {round}: tasks did not settle");
            assert_eq!(
                entered.load(Ordering::SeqCst),
                PROBES,
                "round {round}: exactly N probes"
            );
            assert_eq!(breaker.snapshot().probes_in_flight, PROBES);
            let (done, probes): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|t| t.is_finished());
            for t in done {
                let r = t.await.unwrap();
                assert!(matches!(r, Err(Error::CircuitOpen { .. })), "{r:?}");
            }
            // Cancel the hanging probes: their permits must come back.
            for t in &probes {
                t.abort();
            }
            for t in probes {
                assert!(t.await.unwrap_err().is_cancelled());
            }
            let s = breaker.snapshot();
            assert_eq!(
                s.state,
                CircuitState::HalfOpen,
                "cancelled probes count as nothing"
            );
            assert_eq!(s.probes_in_flight, 0, "round {round}: no leaked permit");
            // The freed permits admit new probes, which close the breaker.
            for _ in 0..PROBES {
                breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
            }
            assert_eq!(breaker.state(), CircuitState::Closed);
        });
    }
}

#[test]
fn racing_probes_through_the_guard_never_exceed_n() {
    for _ in 0..50 {
        let breaker = half_open();
        let admitted = AtomicU32::new(0);
        let all_tried = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let mut held = Vec::new();
                    for _ in 0..100 {
                        if let Acquire::Ready(Ok(p)) = breaker.acquire(&Context::new()) {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            held.push(p);
                        }
                    }
                    // Hold the permits until every thread has tried, then drop them
                    // unrecorded: cancelled, released.
                    all_tried.wait();
                    drop(held);
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), PROBES);
        assert_eq!(breaker.snapshot().probes_in_flight, 0);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
}

#[test]
fn window_counters_do_not_drift_under_contention() {
    let breaker = CircuitBreaker::failure_rate(0.5)
        .window(Window::count(16))
        .build()
        .unwrap();
    breaker.metrics_only(); // record everything, never trip
    for _ in 0..20 {
        std::thread::scope(|s| {
            for t in 0..8 {
                let b = &breaker;
                s.spawn(move || {
                    for i in 0..2_000 {
                        let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
                            panic!("metrics-only never rejects")
                        };
                        let outcome = if (i + t) % 3 == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        p.record(outcome, Duration::ZERO);
                    }
                });
            }
        });
        let s = breaker.snapshot();
        assert_eq!(s.buffered_calls, 16);
        assert!(s.failed_calls <= 16);
        // Overwrite the whole ring with successes: the failure count must return to 0.
        for _ in 0..16 {
            breaker.call_blocking(|| Ok::<_, ()>(())).unwrap();
        }
        let s = breaker.snapshot();
        assert_eq!((s.buffered_calls, s.failed_calls), (16, 0));
    }
}

#[test]
fn time_window_totals_do_not_drift_while_buckets_recycle() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(500_000));
    let breaker = CircuitBreaker::failure_rate(0.5)
        .window(Window::time_buckets(Duration::from_millis(40), 4))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    breaker.metrics_only();
    for _ in 0..20 {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // time moves while calls are recorded: buckets recycle under the recorders
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    clock.advance(Duration::from_millis(3));
                    std::thread::yield_now();
                }
            });
            let recorders: Vec<_> = (0..4)
                .map(|t| {
                    let b = &breaker;
                    s.spawn(move || {
                        for i in 0..3_000 {
                            let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
                                panic!("metrics-only never rejects")
                            };
                            let outcome = if (i + t) % 3 == 0 {
                                Outcome::Failure
                            } else {
                                Outcome::Success
                            };
                            p.record(outcome, Duration::ZERO);
                        }
                    })
                })
                .collect();
            for r in recorders {
                r.join().unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        let s = breaker.snapshot();
        assert!(s.failed_calls <= s.buffered_calls, "{s:?}");
        // Once the window has passed, every bucket was recycled: the totals must be 0.
        clock.advance(Duration::from_millis(40));
        let s = breaker.snapshot();
        assert_eq!((s.buffered_calls, s.failed_calls), (0, 0), "{s:?}");
        for _ in 0..7 {
            breaker.call_blocking(|| Err::<(), _>(())).unwrap_err();
        }
        let s = breaker.snapshot();
        assert_eq!((s.buffered_calls, s.failed_calls), (7, 7));
    }
}

/// Probe results (successes, failures, cancellations) race new admissions while time moves
/// the breaker through open / half-open / closed over and over: never more than N probes
/// of one half-open phase at once, and no permit leaked at the end.
#[test]
fn racing_probe_results_against_admissions_keep_the_probe_invariant() {
    const SLOTS: usize = 1 << 12;
    for _ in 0..10 {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(300_000));
        let breaker = CircuitBreaker::consecutive_failures(1)
            .open_for(Duration::from_millis(1))
            .half_open_probes(PROBES)
            .required_successes(2)
            // time passes only to end breaks: no half-open phase times out
            .max_half_open_wait(Duration::from_secs(3600))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        // probes held per half-open phase (by epoch)
        let held: Vec<AtomicU32> = (0..SLOTS).map(|_| AtomicU32::new(0)).collect();
        let probes_seen = AtomicU32::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..6u64)
                .map(|t| {
                    let (b, held, probes_seen, clock) = (&breaker, &held, &probes_seen, &clock);
                    s.spawn(move || {
                        let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                        for _ in 0..3_000 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
                                // rejected: let time pass (ends breaks, times nothing out)
                                clock.advance(Duration::from_micros(200));
                                continue;
                            };
                            let token = p.token();
                            let probe = token & 7 == 2; // admitted in half-open
                            let slot = &held[(token >> 3) as usize % SLOTS];
                            if probe {
                                probes_seen.fetch_add(1, Ordering::Relaxed);
                                let n = slot.fetch_add(1, Ordering::SeqCst) + 1;
                                assert!(n <= PROBES, "{n} probes in one half-open phase");
                                std::thread::yield_now();
                                slot.fetch_sub(1, Ordering::SeqCst);
                            }
                            match x % 10 {
                                0..=5 => p.record(Outcome::Success, Duration::ZERO),
                                6..=8 => p.record(Outcome::Failure, Duration::ZERO),
                                _ => drop(p), // cancelled
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
        });
        assert!(
            probes_seen.load(Ordering::Relaxed) > 0,
            "half-open was exercised"
        );
        assert_eq!(breaker.snapshot().probes_in_flight, 0, "no leaked permit");
        // and the breaker can still recover
        for _ in 0..10 {
            clock.advance(Duration::from_millis(1));
            let _ = breaker.call_blocking(|| Ok::<_, ()>(()));
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
