//! `execute` on a pipeline whose only per-call strategy is one guard (a bulkhead, a breaker
//! or a rate limiter, with or without a retry) asks the guard and runs the first attempt
//! with the permit held in the call's first poll, and builds the lean path's state only
//! when the attempt is pending or retried. It must answer exactly as the engine does: each
//! script of answers runs, for each state of the guard (free, full, queued, open,
//! half-open, timing calls, empty), on such a pipeline and on the same pipeline with an
//! observer (whose calls take the phased engine), and both must agree on the result, the
//! time it took, the attempts made, and the guard's state when the call ends and a second
//! later.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry};
use tokio::time::Instant;

#[path = "support/one_guard.rs"]
mod guards;
use guards::{Log, SETUPS, Setup, guard};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

/// One call of `script` through a fresh guard in `setup`'s state, on the first-poll path
/// (`phased` false) or the phased engine (an observer on the pipeline): the result, the
/// attempts made, and what happened, when (ms from the call's start).
async fn call(setup: Setup, retried: Retried, script: Script, phased: bool) -> String {
    let log: Log = Arc::default();
    let start = Arc::new(Mutex::new(Instant::now()));
    let guard = guard(setup, &log, start.clone());
    guard.prepare(setup).await;
    let probe = guard.probe();
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
    let answered = probe();
    let allows = guard.allows_another();
    tokio::time::sleep(Duration::from_secs(1)).await;
    format!(
        "{r:?} after {took} ms, {} attempts; at the answer: {answered}; allows another: \
         {allows:?}; a second later: {}; {:?}",
        attempts.load(Ordering::Relaxed),
        probe(),
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
        "Ok(0) after 0 ms, 1 attempts; at the answer: in flight 0, queued 0, limit 1; \
         allows another: None; a second later: in flight 0, queued 0, limit 1; []"
    );
    assert_eq!(
        call(Setup::Full, Retried::Immediate, ok_at_once, false).await,
        "Err(BulkheadFull) after 0 ms, 0 attempts; at the answer: in flight 1, queued 0, \
         limit 1; allows another: None; a second later: in flight 1, queued 0, limit 1; []"
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
