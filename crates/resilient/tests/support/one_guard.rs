//! Guards in given states at a call's start, for the tests of calls under one guard
//! (`tower_one_guard.rs`, `one_guard.rs`): each test runs the same scripts through the
//! same guard states on the paths it compares.
#![allow(dead_code)] // each test uses its part

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::bulkhead::Aimd;
use resilient::circuit::{CircuitEvent, Window};
use resilient::ratelimit::{Mode, Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, CircuitBreakerBuilder, Pipeline, PipelineBuilder};
use tokio::time::Instant;

/// What happened, when (ms from the call's start), in order.
pub type Log = Arc<Mutex<Vec<String>>>;

pub fn ms_since(start: Instant) -> u64 {
    u64::try_from(Instant::now().saturating_duration_since(start).as_millis()).unwrap()
}

/// The guard's state, as a line of the log.
pub type Probe = Arc<dyn Fn() -> String + Send + Sync>;

/// A guard in a given state at the call's start.
#[derive(Debug, Clone, Copy)]
pub enum Setup {
    /// A bulkhead of one free slot.
    Free,
    /// A bulkhead of one slot, taken for 1.5 s (past the end of a call's log), no queue.
    Full,
    /// A bulkhead of one slot taken for 60 ms, a queue of one, 200 ms of waiting at most.
    Handed,
    /// As `Handed`, the slot taken for 500 ms: the wait ends first.
    WaitEnds,
    /// An adaptive bulkhead (it times calls).
    Adaptive,
    /// A breaker that opens at the first failure, closed, with an observer (it times calls).
    Closed,
    /// The same breaker, opened by a failure.
    Open,
    /// A breaker that opens at the first failure, closed, with no observer (it does not
    /// time calls).
    Quiet,
    /// The same breaker, opened by a failure 100 ms ago: the call is its probe.
    HalfOpen,
    /// A breaker counting calls of 50 ms or more as slow.
    Slow,
    /// A rate limiter (rejecting) with one unit of its burst of two left.
    Limiter,
    /// The same limiter with none left.
    Limited,
    /// A rate limiter that waits (at most 200 ms) with none left: the next unit in 100 ms.
    /// (Its calls take the engine's path, which holds its wait.)
    LimiterWaits,
}

pub const SETUPS: [Setup; 13] = [
    Setup::Free,
    Setup::Full,
    Setup::Handed,
    Setup::WaitEnds,
    Setup::Adaptive,
    Setup::Closed,
    Setup::Open,
    Setup::Quiet,
    Setup::HalfOpen,
    Setup::Slow,
    Setup::Limiter,
    Setup::Limited,
    Setup::LimiterWaits,
];

/// A fresh guard of `setup`, its probe, and the pipeline builder with it added; its state
/// is set up when `prepare` runs.
pub enum Guard {
    Bulkhead(Bulkhead),
    Breaker(CircuitBreaker),
    Limiter(RateLimiter),
}

fn breaker(b: CircuitBreakerBuilder, log: &Log, start: Arc<Mutex<Instant>>) -> CircuitBreaker {
    let log = log.clone();
    b.observer(move |_: &str, e: &CircuitEvent| {
        let at = ms_since(*start.lock().unwrap());
        log.lock().unwrap().push(format!("{at} breaker {e:?}"));
    })
    .build()
    .unwrap()
}

pub fn guard(setup: Setup, log: &Log, start: Arc<Mutex<Instant>>) -> Guard {
    let ms = Duration::from_millis;
    match setup {
        Setup::Free | Setup::Full => Guard::Bulkhead(Bulkhead::builder(1).build().unwrap()),
        Setup::Handed | Setup::WaitEnds => Guard::Bulkhead(
            Bulkhead::builder(1)
                .queue(1)
                .max_wait(ms(200))
                .build()
                .unwrap(),
        ),
        Setup::Adaptive => Guard::Bulkhead(
            Bulkhead::builder(2)
                .adaptive(Aimd::new(2, 1, 2))
                .build()
                .unwrap(),
        ),
        Setup::Closed | Setup::Open | Setup::HalfOpen => Guard::Breaker(breaker(
            CircuitBreaker::consecutive_failures(1).open_for(ms(100)),
            log,
            start,
        )),
        Setup::Quiet => Guard::Breaker(
            CircuitBreaker::consecutive_failures(1)
                .open_for(ms(100))
                .build()
                .unwrap(),
        ),
        Setup::Slow => Guard::Breaker(breaker(
            CircuitBreaker::failure_rate(1.0)
                .slow_calls(ms(50), 0.5)
                .window(Window::count(10))
                .minimum_calls(1),
            log,
            start,
        )),
        Setup::Limiter | Setup::Limited => Guard::Limiter(
            RateLimiter::gcra_with_burst(Rate::per_second(1), 2)
                .build()
                .unwrap(),
        ),
        Setup::LimiterWaits => Guard::Limiter(
            RateLimiter::gcra_with_burst(Rate::per_second(10), 1)
                .mode(Mode::Wait(ms(200)))
                .build()
                .unwrap(),
        ),
    }
}

impl Guard {
    pub fn probe(&self) -> Probe {
        match self {
            Guard::Bulkhead(b) => {
                let b = b.clone();
                Arc::new(move || {
                    format!(
                        "in flight {}, queued {}, limit {}",
                        b.in_flight(),
                        b.queued(),
                        b.limit()
                    )
                })
            }
            Guard::Breaker(b) => {
                let b = b.clone();
                Arc::new(move || {
                    let s = b.snapshot();
                    format!(
                        "{:?}, {} calls, {} failed, {} slow, {} rejected, {} probing",
                        s.state,
                        s.buffered_calls,
                        s.failed_calls,
                        s.slow_calls,
                        s.rejected_calls,
                        s.probes_in_flight
                    )
                })
            }
            // (A limiter's state is read after the call: see `call`.)
            Guard::Limiter(_) => Arc::new(String::new),
        }
    }

    /// What the limiter says to one more request (after the call).
    pub fn allows_another(&self) -> Option<bool> {
        match self {
            Guard::Limiter(l) => Some(l.allow().is_ok()),
            _ => None,
        }
    }

    pub fn add(&self, p: PipelineBuilder) -> PipelineBuilder {
        match self {
            Guard::Bulkhead(b) => p.bulkhead(b),
            Guard::Breaker(b) => p.circuit_breaker(b),
            Guard::Limiter(l) => p.rate_limit(l),
        }
    }

    /// Puts the guard in `setup`'s state.
    pub async fn prepare(&self, setup: Setup) {
        let hold = |b: &Bulkhead, ms: u64| {
            let p = Pipeline::builder().bulkhead(b).build().unwrap();
            tokio::spawn(async move {
                p.execute(|| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, ()>(())
                })
                .await
            });
        };
        match (self, setup) {
            (Guard::Bulkhead(b), Setup::Full) => hold(b, 1_500),
            (Guard::Bulkhead(b), Setup::Handed) => hold(b, 60),
            (Guard::Bulkhead(b), Setup::WaitEnds) => hold(b, 500),
            (Guard::Breaker(b), Setup::Open | Setup::HalfOpen) => {
                let _ = b.call(|| async { Err::<(), _>(()) }).await;
                if let Setup::HalfOpen = setup {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            (Guard::Limiter(l), Setup::Limiter | Setup::LimiterWaits) => assert!(l.allow().is_ok()),
            (Guard::Limiter(l), Setup::Limited) => assert!(l.allow().is_ok() && l.allow().is_ok()),
            _ => {}
        }
        // (The holder takes its slot.)
        tokio::task::yield_now().await;
    }
}
