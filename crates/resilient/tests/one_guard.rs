//! `execute` on a pipeline whose only per-call strategy is one guard (a bulkhead, a breaker
//! or a rate limiter, with or without a retry) asks the guard and runs the first attempt
//! with the permit held in the call's first poll, and builds the lean path's state only
//! when the attempt is pending or retried. It must answer exactly as the engine does: each
//! script of answers runs, for each state of the guard (free, full, queued, open,
//! half-open, timing calls, empty), on such a pipeline and on the same pipeline with an
//! observer (whose calls take the phased engine), and both must agree on the result, the
//! time it took, the attempts made, and the guard's state when the call ends and a second
//! later.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use resilient::bulkhead::Aimd;
use resilient::circuit::{CircuitEvent, Window};
use resilient::ratelimit::{Mode, Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, PipelineBuilder, Retry};
use tokio::time::Instant;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The guard, and the state it is in when the call starts.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// A bulkhead of one free slot.
    Free,
    /// A bulkhead of one slot, taken for 1.5 s, no queue.
    Full,
    /// A bulkhead of one slot taken for 60 ms, a queue of one, 200 ms of waiting at most.
    Handed,
    /// An adaptive bulkhead (it times calls).
    Adaptive,
    /// A breaker that opens at the first failure, closed, with an observer (it times calls).
    Closed,
    /// A breaker that opens at the first failure, without an observer, opened by a failure.
    Open,
    /// The breaker of `Closed`, opened by a failure 100 ms ago: the call is its probe.
    HalfOpen,
    /// A breaker counting calls of 50 ms or more as slow.
    Slow,
    /// A rejecting rate limiter with one unit of its burst of two left.
    Limiter,
    /// The same limiter with none left.
    Limited,
    /// A rate limiter that waits (at most 200 ms) with none left: the next unit in 100 ms.
    LimiterWaits,
}

const SETUPS: [Setup; 11] = [
    Setup::Free,
    Setup::Full,
    Setup::Handed,
    Setup::Adaptive,
    Setup::Closed,
    Setup::Open,
    Setup::HalfOpen,
    Setup::Slow,
    Setup::Limiter,
    Setup::Limited,
    Setup::LimiterWaits,
];

enum Guard {
    Bulkhead(Bulkhead),
    Breaker(CircuitBreaker),
    Limiter(RateLimiter),
}

/// What the call's operation does, each attempt.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// Each attempt answers after this long (0: at its first poll).
    delay: u64,
    /// The first attempt fails (the others succeed).
    first_fails: bool,
    /// Every attempt fails.
    fails: bool,
}

/// The retry around the guard, if any.
#[derive(Debug, Clone, Copy)]
enum Retried {
    No,
    Immediate,
    After10ms,
}

/// The events the breakers' observers saw (so that both paths' calls are compared on them).
type Log = Arc<Mutex<Vec<String>>>;

fn guard(setup: Setup, log: &Log, start: Arc<Mutex<Instant>>) -> Guard {
    let observed = |b: resilient::CircuitBreakerBuilder| {
        let log = log.clone();
        let start = start.clone();
        b.observer(move |_: &str, e: &CircuitEvent| {
            let at = Instant::now().saturating_duration_since(*start.lock().unwrap());
            log.lock()
                .unwrap()
                .push(format!("{} breaker {e:?}", at.as_millis()));
        })
        .build()
        .unwrap()
    };
    match setup {
        Setup::Free | Setup::Full => Guard::Bulkhead(Bulkhead::builder(1).build().unwrap()),
        Setup::Handed => Guard::Bulkhead(
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
        Setup::Closed | Setup::HalfOpen => Guard::Breaker(observed(
            CircuitBreaker::consecutive_failures(1).open_for(ms(100)),
        )),
        Setup::Open => Guard::Breaker(
            CircuitBreaker::consecutive_failures(1)
                .open_for(ms(100))
                .build()
                .unwrap(),
        ),
        Setup::Slow => Guard::Breaker(observed(
            CircuitBreaker::failure_rate(1.0)
                .slow_calls(ms(50), 0.5)
                .window(Window::count(10))
                .minimum_calls(1),
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
    fn add(&self, p: PipelineBuilder) -> PipelineBuilder {
        match self {
            Guard::Bulkhead(b) => p.bulkhead(b),
            Guard::Breaker(b) => p.circuit_breaker(b),
            Guard::Limiter(l) => p.rate_limit(l),
        }
    }

    /// The guard's state, as a line.
    fn probe(&self) -> String {
        match self {
            Guard::Bulkhead(b) => format!(
                "in flight {}, queued {}, limit {}",
                b.in_flight(),
                b.queued(),
                b.limit()
            ),
            Guard::Breaker(b) => {
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
            }
            // What the limiter says to one more request (it takes the unit, if any: read
            // once, after the call).
            Guard::Limiter(l) => format!("allows another: {}", l.allow().is_ok()),
        }
    }

    /// Puts the guard in `setup`'s state.
    async fn prepare(&self, setup: Setup) {
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
            (Guard::Breaker(b), Setup::Open | Setup::HalfOpen) => {
                let _ = b.call(|| async { Err::<(), _>(()) }).await;
                if let Setup::HalfOpen = setup {
                    tokio::time::sleep(ms(100)).await;
                }
            }
            (Guard::Limiter(l), Setup::Limiter | Setup::LimiterWaits) => assert!(l.allow().is_ok()),
            (Guard::Limiter(l), Setup::Limited) => {
                assert!(l.allow().is_ok() && l.allow().is_ok())
            }
            _ => {}
        }
        // (The holder takes its slot.)
        tokio::task::yield_now().await;
    }
}

/// One call of `script` through a fresh guard in `setup`'s state, on the first-poll path
/// (`phased` false) or the phased engine (an observer on the pipeline): the result, the
/// attempts made, and what happened, when (ms from the call's start).
async fn call(setup: Setup, retried: Retried, script: Script, phased: bool) -> String {
    let log: Log = Arc::default();
    let start = Arc::new(Mutex::new(Instant::now()));
    let guard = guard(setup, &log, start.clone());
    guard.prepare(setup).await;
    let mut b = guard.add(Pipeline::builder());
    b = match retried {
        Retried::No => b,
        Retried::Immediate => b.retry(Retry::immediate().attempts(2)),
        Retried::After10ms => b.retry(
            Retry::constant(ms(10))
                .attempts(2)
                .jitter(resilient::Jitter::None),
        ),
    };
    if phased {
        b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
    }
    let p = b.build().unwrap();
    let now = Instant::now();
    *start.lock().unwrap() = now;
    log.lock().unwrap().clear();
    let attempts = AtomicU32::new(0);
    let r: Result<u32, Error<u32>> = p
        .execute(|| {
            let n = attempts.fetch_add(1, Ordering::Relaxed);
            async move {
                if script.delay > 0 {
                    tokio::time::sleep(ms(script.delay)).await;
                }
                if script.fails || (script.first_fails && n == 0) {
                    Err(n)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    let took = now.elapsed().as_millis();
    let answered = guard.probe();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = match guard {
        // (A limiter's state was read once.)
        Guard::Limiter(_) => String::new(),
        _ => guard.probe(),
    };
    format!(
        "{r:?} after {took} ms, {} attempts; at the answer: {answered}; a second later: \
         {later}; {:?}",
        attempts.load(Ordering::Relaxed),
        log.lock().unwrap()
    )
}

fn scripts() -> Vec<Script> {
    let mut all = Vec::new();
    for delay in [0, 40, 100] {
        for (first_fails, fails) in [(false, false), (true, false), (false, true)] {
            all.push(Script {
                delay,
                first_fails,
                fails,
            });
        }
    }
    all
}

#[tokio::test(start_paused = true)]
async fn a_call_under_one_guard_answers_as_the_engine_does() {
    for setup in SETUPS {
        for retried in [Retried::No, Retried::Immediate, Retried::After10ms] {
            for script in scripts() {
                let first_poll = call(setup, retried, script, false).await;
                let phased = call(setup, retried, script, true).await;
                assert_eq!(first_poll, phased, "{setup:?} {retried:?} {script:?}");
            }
        }
    }
    // What the first-poll path answers, spelled out for a few: a free bulkhead's slot is
    // back when the call answers; a full one rejects without calling the operation, and so
    // does an open breaker; a breaker timing slow calls records the call's duration.
    let ok_at_once = Script {
        delay: 0,
        first_fails: false,
        fails: false,
    };
    let slow = Script {
        delay: 100,
        ..ok_at_once
    };
    assert_eq!(
        call(Setup::Free, Retried::No, ok_at_once, false).await,
        "Ok(0) after 0 ms, 1 attempts; at the answer: in flight 0, queued 0, limit 1; a \
         second later: in flight 0, queued 0, limit 1; []"
    );
    assert_eq!(
        call(Setup::Full, Retried::Immediate, ok_at_once, false).await,
        "Err(BulkheadFull) after 0 ms, 0 attempts; at the answer: in flight 1, queued 0, \
         limit 1; a second later: in flight 1, queued 0, limit 1; []"
    );
    let open = call(Setup::Open, Retried::No, ok_at_once, false).await;
    assert!(
        open.starts_with("Err(CircuitOpen { retry_after: Some(")
            && open.contains(" after 0 ms, 0 attempts; at the answer: Open, 0 calls, 0 failed, 0 slow, 1 rejected"),
        "{open}"
    );
    // (A slow call rate of 1 of 1 opens it.)
    let slow = call(Setup::Slow, Retried::No, slow, false).await;
    assert!(
        slow.starts_with(
            "Ok(0) after 100 ms, 1 attempts; at the answer: Open, 1 calls, 0 failed, 1 slow"
        ) && slow.contains("SlowCall { duration: 100ms, failed: false }"),
        "{slow}"
    );
}

/// A per-call guard that notes, when its permit comes back, whether the operation's future
/// was already dropped.
#[derive(Debug, Default)]
struct DropOrder {
    dropped: Arc<AtomicBool>,
    seen: Mutex<Vec<String>>,
}

impl resilient::Guard for DropOrder {
    fn name(&self) -> &'static str {
        "drop_order"
    }

    fn acquire<'a>(&'a self, _ctx: &resilient::Context) -> resilient::Acquire<'a> {
        resilient::Acquire::Ready(Ok(resilient::Permit::new(self, 0)))
    }

    fn on_release(&self, _token: u64, outcome: Option<(resilient::Outcome, Duration)>) {
        self.seen.lock().unwrap().push(format!(
            "dropped first: {}, {:?}",
            self.dropped.load(Ordering::SeqCst),
            outcome.map(|(o, _)| o)
        ));
    }

    fn reads_labels(&self) -> bool {
        false
    }
}

/// Sets its flag when dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An operation's future that panics when polled, holding a [`Flag`] (a field: not dropped
/// as the panic unwinds out of `poll`, as an `async` block's locals would be, but with the
/// future).
struct Boom(#[allow(dead_code)] Flag);

impl std::future::Future for Boom {
    type Output = Result<(), ()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        panic!("boom")
    }
}

#[tokio::test(start_paused = true)]
async fn an_operation_that_panics_at_its_first_poll_goes_before_its_permit() {
    // Alone, with a retry, and (for reference) on the phased engine: the permit is given
    // back as a failure, once, after the operation's future is dropped.
    for (retry, phased) in [(false, false), (true, false), (false, true)] {
        let guard = Arc::new(DropOrder::default());
        let mut b = Pipeline::builder().guard_arc(guard.clone());
        if retry {
            b = b.retry(Retry::immediate().attempts(3));
        }
        if phased {
            b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
        }
        let p = b.build().unwrap();
        let dropped = guard.dropped.clone();
        let panicked =
            tokio::spawn(async move { p.execute(|| Boom(Flag(dropped.clone()))).await }).await;
        assert!(panicked.unwrap_err().is_panic());
        assert_eq!(
            *guard.seen.lock().unwrap(),
            ["dropped first: true, Some(Failure)"],
            "retry: {retry}, phased: {phased}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_pending_at_its_first_poll_keeps_its_permit_until_it_ends_or_is_dropped() {
    // The permit moves into the call's state: recorded once when the attempt ends...
    let guard = Arc::new(DropOrder::default());
    let p = Pipeline::builder()
        .guard_arc(guard.clone())
        .build()
        .unwrap();
    let r = p
        .execute(|| async {
            tokio::time::sleep(ms(10)).await;
            Ok::<_, ()>(1)
        })
        .await;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(
        *guard.seen.lock().unwrap(),
        ["dropped first: false, Some(Success)"]
    );
    // ...and given back unrecorded, after the attempt, when the call is dropped.
    let guard = Arc::new(DropOrder::default());
    let p = Pipeline::builder()
        .guard_arc(guard.clone())
        .build()
        .unwrap();
    let dropped = guard.dropped.clone();
    let cut = tokio::time::timeout(
        ms(5),
        p.execute(|| {
            let flag = Flag(dropped.clone());
            async move {
                let _flag = flag;
                tokio::time::sleep(ms(10)).await;
                Ok::<_, ()>(1)
            }
        }),
    )
    .await;
    assert!(cut.is_err());
    assert_eq!(*guard.seen.lock().unwrap(), ["dropped first: true, None"]);
}
