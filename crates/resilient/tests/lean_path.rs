//! The lean path: a call of `execute` on a pipeline without an observer runs a small
//! state machine instead of the phased engine. It must decide exactly as the engine does.

use std::future::{Future, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry, RetryBudget};
use tokio::time::Instant;

/// Calls `p` with an operation that always fails at once; the result and the attempts made.
async fn always_down(p: &Pipeline) -> (Result<(), Error<&'static str>>, u32) {
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await;
    (r, calls.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "current_thread")]
async fn a_zero_delay_retry_loop_gives_control_back_to_the_scheduler() {
    // An operation that fails without ever awaiting, retried with no delay and no end: the
    // call must still give control back (a unit of coop budget per retry), or nothing else
    // on this thread would ever run again.
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(u32::MAX))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let task = tokio::spawn(async move {
        p.execute(|| {
            seen.fetch_add(1, Ordering::Relaxed);
            ready(Err::<(), _>("down"))
        })
        .await
    });
    tokio::task::yield_now().await;
    let made = calls.load(Ordering::Relaxed);
    assert!(made > 1, "{made} attempts before the first yield");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

/// Retry alone: 3 attempts, 100 ms apart (no jitter).
fn three_attempts_100ms_apart() -> Pipeline {
    Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(100))
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn lean_retries_wait_their_delays_and_count_their_attempts() {
    let p = three_attempts_100ms_apart();
    let start = Instant::now();
    let (r, calls) = always_down(&p).await;
    assert!(
        matches!(
            r,
            Err(Error::RetriesExhausted {
                attempts: 3,
                last: "down"
            })
        ),
        "{r:?}"
    );
    assert_eq!(calls, 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));

    // Success on the second attempt: one wait.
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            ready(if n == 1 { Err("down") } else { Ok(n) })
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_plain_call_whose_first_attempt_is_pending_or_failed_goes_on_as_a_lean_call() {
    // Retry alone: the call's first poll runs the first attempt with no lean state set up,
    // which it sets up only when that attempt does not end the call at once.
    let p = three_attempts_100ms_apart();
    for (pending, fails) in [
        (false, 0),
        (true, 0),
        (true, 1),
        (false, 1),
        (true, 2),
        (true, 3),
    ] {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r = p
            .execute(|| {
                let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    if pending {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if n <= fails { Err("down") } else { Ok(n) }
                }
            })
            .await;
        let made = calls.load(Ordering::Relaxed);
        let case = format!("pending {pending}, {fails} failures: {r:?}");
        if fails < 3 {
            assert_eq!(r.unwrap(), fails + 1, "{case}");
        } else {
            assert!(
                matches!(
                    r,
                    Err(Error::RetriesExhausted {
                        attempts: 3,
                        last: "down"
                    })
                ),
                "{case}"
            );
        }
        assert_eq!(made, (fails + 1).min(3), "{case}");
        let slept = if pending { 10 * made } else { 0 };
        let waited = 100 * (made - 1);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(u64::from(slept + waited)),
            "{case}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn immediate_retries_of_a_plain_call_count_every_attempt_wherever_one_is_pending() {
    // Retry alone with no delay: retries whose attempts end at once run in the call's
    // first poll with no lean state; an attempt that is pending hands the call over to the
    // lean path with its attempt number and last delay. Every pattern of pending attempts
    // over four, with every number of failures: the same attempts, result and retry
    // events as if nothing were pending.
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(4).on_retry(move |e| {
            seen.lock().unwrap().push((e.attempt, e.delay));
        }))
        .build()
        .unwrap();
    for pending in 0..16u32 {
        for fails in 0..=4u32 {
            events.lock().unwrap().clear();
            let calls = AtomicU32::new(0);
            let r = p
                .execute(|| {
                    let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
                    let wait = pending & (1 << (n - 1)) != 0;
                    async move {
                        if wait {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if n <= fails { Err("down") } else { Ok(n) }
                    }
                })
                .await;
            let made = calls.load(Ordering::Relaxed);
            let case = format!("pending {pending:04b}, {fails} failures: {r:?}");
            if fails < 4 {
                assert_eq!(r.unwrap(), fails + 1, "{case}");
            } else {
                assert!(
                    matches!(
                        r,
                        Err(Error::RetriesExhausted {
                            attempts: 4,
                            last: "down"
                        })
                    ),
                    "{case}"
                );
            }
            assert_eq!(made, (fails + 1).min(4), "{case}");
            let retried: Vec<_> = (1..made).map(|a| (a, Duration::ZERO)).collect();
            assert_eq!(*events.lock().unwrap(), retried, "{case}");
        }
    }
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "polled after it completed")]
async fn a_plain_call_polled_after_it_completed_panics() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let mut call = std::pin::pin!(p.execute(|| ready(Ok::<_, ()>(1))));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(matches!(
        call.as_mut().poll(&mut cx),
        std::task::Poll::Ready(Ok(1))
    ));
    let _ = call.as_mut().poll(&mut cx);
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_stops_at_max_elapsed_and_when_its_budget_is_spent() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(100))
                .attempts(10)
                .jitter(resilient::Jitter::None)
                .max_elapsed(Duration::from_millis(250)),
        )
        .build()
        .unwrap();
    let (r, calls) = always_down(&p).await;
    // Attempts at 0, 100 and 200 ms; a third wait would end past 250 ms.
    assert_eq!(calls, 3);
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );

    // A budget with a ratio of 0 and no reserve allows no retry at all.
    let p = Pipeline::builder()
        .retry(
            Retry::immediate()
                .attempts(5)
                .budget(RetryBudget::builder(0.0).min_per_sec(0).build().unwrap()),
        )
        .build()
        .unwrap();
    let (r, calls) = always_down(&p).await;
    assert_eq!(calls, 1);
    assert!(matches!(r, Err(Error::Inner("down"))), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_dropped_while_waiting_makes_no_further_attempt() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_secs(1))
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let call = p.execute(|| {
        calls.fetch_add(1, Ordering::Relaxed);
        ready(Err::<(), _>("down"))
    });
    let cut = tokio::time::timeout(Duration::from_millis(500), call).await;
    assert!(cut.is_err());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

/// A per-call guard that logs its admissions and releases. With `labels` it says it reads
/// the context's labels, which keeps its pipelines off the lean path: the same scenario
/// run both ways must leave the same log.
#[derive(Debug)]
struct Logged {
    labels: bool,
    /// Admit at once, make the caller wait, or reject.
    mode: &'static str,
    log: std::sync::Mutex<Vec<String>>,
}

impl Logged {
    fn new(labels: bool, mode: &'static str) -> Arc<Self> {
        Arc::new(Self {
            labels,
            mode,
            log: Default::default(),
        })
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl resilient::Guard for Logged {
    fn name(&self) -> &'static str {
        "logged"
    }

    fn acquire<'a>(&'a self, ctx: &resilient::Context) -> resilient::Acquire<'a> {
        self.log
            .lock()
            .unwrap()
            .push(format!("acquire attempt {}", ctx.attempt()));
        match self.mode {
            "wait" => resilient::Acquire::Wait(Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(resilient::Permit::new(self, 7))
            })),
            "reject" => resilient::Acquire::Ready(Err(resilient::Rejection::BulkheadFull)),
            _ => resilient::Acquire::Ready(Ok(resilient::Permit::new(self, 7))),
        }
    }

    fn on_release(&self, token: u64, outcome: Option<(resilient::Outcome, Duration)>) {
        self.log
            .lock()
            .unwrap()
            .push(format!("release {token} {outcome:?}"));
    }

    fn reads_labels(&self) -> bool {
        self.labels
    }

    fn measures_duration(&self) -> bool {
        true
    }
}

/// Runs `scenario` on a pipeline of the guard, a retry of 3 attempts 10 ms apart, and
/// returns the guard's log, the result and the time taken.
async fn through(
    labels: bool,
    mode: &'static str,
    script: &'static [Result<u32, &'static str>],
) -> (Vec<String>, Result<u32, Error<&'static str>>, Duration, u32) {
    let guard = Logged::new(labels, mode);
    let p = Pipeline::builder()
        .guard_arc(guard.clone())
        .retry(
            Retry::constant(Duration::from_millis(10))
                .attempts(3)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) as usize;
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                script[n]
            }
        })
        .await;
    (
        guard.log(),
        r,
        start.elapsed(),
        calls.load(Ordering::Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn per_call_guards_see_the_same_call_on_the_lean_and_the_phased_path() {
    let scripts: [&'static [Result<u32, &'static str>]; 3] = [
        &[Ok(1)],
        &[Err("a"), Err("b"), Ok(3)],
        &[Err("a"), Err("b"), Err("c")],
    ];
    for mode in ["ready", "wait", "reject"] {
        for script in scripts {
            let lean = through(false, mode, script).await;
            let phased = through(true, mode, script).await;
            assert_eq!(
                format!("{lean:?}"),
                format!("{phased:?}"),
                "{mode} {script:?}"
            );
        }
    }
    // And what they see: one admission and one release per logical call, after retries,
    // with the call's outcome and its duration since admission.
    let (log, r, took, calls) = through(false, "wait", &[Err("a"), Ok(2)]).await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(calls, 2);
    assert_eq!(took, Duration::from_millis(5 + 1 + 10 + 1));
    assert_eq!(
        log,
        ["acquire attempt 1", "release 7 Some((Success, 12ms))"]
    );
    let (log, r, _, calls) = through(false, "reject", &[Ok(1)]).await;
    assert!(matches!(r, Err(Error::BulkheadFull)), "{r:?}");
    assert_eq!(calls, 0, "a rejected call never runs the operation");
    assert_eq!(log, ["acquire attempt 1"]);
}

/// Two per-call guards, `first` then `second`, each admitting at once, making the caller
/// wait or rejecting, around an operation that fails once, then succeeds; `labels` keeps
/// the pipeline off the lean path. Returns the result, both guards' logs and the number of
/// operation calls.
async fn two_guards(labels: bool, first: &'static str, second: &'static str) -> String {
    let (a, b) = (Logged::new(labels, first), Logged::new(false, second));
    let p = Pipeline::builder()
        .guard_arc(a.clone())
        .guard_arc(b.clone())
        .retry(
            Retry::constant(Duration::from_millis(10))
                .attempts(2)
                .jitter(resilient::Jitter::None),
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if n == 0 { Err("a") } else { Ok(n) }
            }
        })
        .await;
    format!(
        "{r:?} {:?} {:?} {}",
        a.log(),
        b.log(),
        calls.load(Ordering::Relaxed)
    )
}

/// The lean path's first poll asks the first per-call guard before it builds the call's
/// state (a call rejected at once builds none): whatever each of two guards does, the
/// guards see the same call, and the caller the same result, as on the phased engine.
#[tokio::test(start_paused = true)]
async fn two_per_call_guards_see_the_same_call_on_the_lean_and_the_phased_path() {
    for first in ["ready", "wait", "reject"] {
        for second in ["ready", "wait", "reject"] {
            let lean = two_guards(false, first, second).await;
            let phased = two_guards(true, first, second).await;
            assert_eq!(lean, phased, "{first} then {second}");
        }
    }
    // The first guard rejects: the second is never asked, the operation never runs.
    assert_eq!(
        two_guards(false, "reject", "ready").await,
        r#"Err(BulkheadFull) ["acquire attempt 1"] [] 0"#
    );
    // The first admits and the second rejects: the first's permit goes back unrecorded.
    assert_eq!(
        two_guards(false, "ready", "reject").await,
        r#"Err(BulkheadFull) ["acquire attempt 1", "release 7 None"] ["acquire attempt 1"] 0"#
    );
    // Both admit (the first after a wait): one admission and one release each, with the
    // call's outcome and its time since each admission.
    assert_eq!(
        two_guards(false, "wait", "ready").await,
        r#"Ok(1) ["acquire attempt 1", "release 7 Some((Success, 12ms))"] ["acquire attempt 1", "release 7 Some((Success, 12ms))"] 2"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_that_panics_records_a_failure_and_one_dropped_records_nothing() {
    let guard = Logged::new(false, "ready");
    let p = Arc::new(
        Pipeline::builder()
            .guard_arc(guard.clone())
            .retry(Retry::immediate().attempts(2))
            .build()
            .unwrap(),
    );
    let q = p.clone();
    let panicked = tokio::spawn(async move {
        q.execute(|| async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), ()>(())
        })
        .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(
        guard.log(),
        ["acquire attempt 1", "release 7 Some((Failure, 0ns))"]
    );

    let guard = Logged::new(false, "ready");
    let p = Pipeline::builder()
        .guard_arc(guard.clone())
        .build()
        .unwrap();
    let cut = tokio::time::timeout(
        Duration::from_millis(1),
        p.execute(std::future::pending::<Result<(), ()>>),
    )
    .await;
    assert!(cut.is_err());
    assert_eq!(guard.log(), ["acquire attempt 1", "release 7 None"]);
}

/// In `timed`'s `takes`: the attempt fails at once.
const FAILS: u64 = u64::MAX;

/// Runs an operation whose attempts take `takes` milliseconds each (or end at once for
/// zero; fail at once for [`FAILS`]) under an operation timeout of 10 ms and 3 attempts
/// 5 ms apart, on the lean path or (with an observer) the phased one; returns the result,
/// the attempts made, the time taken and the deadlines the operation inherited.
async fn timed(
    phased: bool,
    takes: &'static [u64],
    retry_on_timeout: bool,
) -> (String, u32, Duration, Vec<Option<Duration>>) {
    let mut b = Pipeline::builder()
        .timeout(resilient::Timeout::operation(Duration::from_millis(10)))
        .retry(
            Retry::constant(Duration::from_millis(5))
                .attempts(3)
                .jitter(resilient::Jitter::None)
                .retry_on_timeout(retry_on_timeout),
        );
    if phased {
        b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
    }
    let p = b.build().unwrap();
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let seen = std::sync::Mutex::new(Vec::new());
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) as usize;
            seen.lock()
                .unwrap()
                .push(resilient::inherited_deadline().map(|d| d - start));
            let ms = takes[n.min(takes.len() - 1)];
            async move {
                // A nested pipeline inside the attempt sees the attempt's deadline.
                let inherited = resilient::inherited_deadline().map(|d| d - start);
                if ms == FAILS {
                    return Err((n, inherited));
                }
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Ok((n, inherited))
            }
        })
        .await;
    let made = calls.load(Ordering::Relaxed);
    let seen = seen.into_inner().unwrap();
    (format!("{r:?}"), made, start.elapsed(), seen)
}

#[tokio::test(start_paused = true)]
async fn the_operation_timeout_on_the_lean_path_matches_the_engine() {
    for (takes, again) in [
        (&[0u64][..], true),
        (&[3][..], true),
        (&[50, 50, 2][..], true),
        (&[50][..], true),
        (&[50][..], false),
        // attempts that fail at once, before one that ends at once, one that is cut and
        // one that ends in time, or as the last attempt
        (&[FAILS, 0][..], true),
        (&[FAILS, 50, 2][..], true),
        (&[FAILS, FAILS, 3][..], false),
        (&[FAILS][..], true),
        (&[FAILS][..], false),
        (&[3, FAILS, 0][..], true),
    ] {
        let lean = timed(false, takes, again).await;
        let phased = timed(true, takes, again).await;
        assert_eq!(lean, phased, "{takes:?} {again}");
    }
    // What that is: two attempts cut at 10 ms, 5 ms apart, then one that ends in 2 ms; the
    // attempt's future sees its own deadline (10 ms after the attempt's start).
    let (r, made, took, _) = timed(false, &[50, 50, 2], true).await;
    assert_eq!(made, 3);
    assert_eq!(took, Duration::from_millis(10 + 5 + 10 + 5 + 2));
    assert_eq!(r, "Ok((2, Some(40ms)))");
    let (r, made, took, _) = timed(false, &[50], false).await;
    assert_eq!(made, 1);
    assert_eq!(took, Duration::from_millis(10));
    assert!(r.contains("Timeout") && r.contains("Operation"), "{r}");
    // A first attempt that fails at once is retried 5 ms later, under a deadline of its own.
    let (r, made, took, seen) = timed(false, &[FAILS, 50, 2], true).await;
    assert_eq!(made, 3);
    assert_eq!(took, Duration::from_millis(5 + 10 + 5 + 2));
    assert_eq!(r, "Ok((2, Some(30ms)))");
    assert_eq!(seen, [None, None, None]);
    let (r, made, _, _) = timed(false, &[FAILS], true).await;
    assert_eq!(made, 3);
    assert_eq!(
        r,
        "Err(RetriesExhausted { attempts: 3, last: (2, Some(20ms)) })"
    );
}

/// A per-call guard that notes, when its permit comes back, whether the operation's future
/// was already dropped.
#[derive(Debug, Default)]
struct DropOrder {
    dropped: Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Mutex<Vec<bool>>,
}

impl resilient::Guard for DropOrder {
    fn name(&self) -> &'static str {
        "drop_order"
    }

    fn acquire<'a>(&'a self, _ctx: &resilient::Context) -> resilient::Acquire<'a> {
        resilient::Acquire::Ready(Ok(resilient::Permit::new(self, 0)))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(resilient::Outcome, Duration)>) {
        self.seen
            .lock()
            .unwrap()
            .push(self.dropped.load(Ordering::SeqCst));
    }

    fn reads_labels(&self) -> bool {
        false
    }
}

/// Sets its flag when dropped.
struct Flag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_drops_its_attempt_before_giving_back_its_permits() {
    // With an operation timeout too: the attempt then runs with its timer armed.
    for (phased, timed) in [(false, false), (true, false), (false, true), (true, true)] {
        let guard = Arc::new(DropOrder::default());
        let mut b = Pipeline::builder().guard_arc(guard.clone());
        if phased {
            b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
        }
        if timed {
            b = b.timeout(resilient::Timeout::operation(Duration::from_secs(1)));
        }
        let p = b.build().unwrap();
        let dropped = guard.dropped.clone();
        let cut = tokio::time::timeout(
            Duration::from_millis(1),
            p.execute(|| {
                let flag = Flag(dropped.clone());
                async move {
                    let _flag = flag;
                    std::future::pending::<Result<(), ()>>().await
                }
            }),
        )
        .await;
        assert!(cut.is_err());
        assert_eq!(
            *guard.seen.lock().unwrap(),
            [true],
            "phased: {phased}, timed: {timed}"
        );
    }
}

/// Runs a hedged call whose attempts (in the order they start) take `script`'s times and
/// give its results, on the lean path or (with an observer) the phased one. Returns the
/// result, when each attempt started and which attempts' futures were dropped unfinished,
/// and the call's duration.
async fn hedged(
    phased: bool,
    hedge: resilient::hedge::Hedge,
    script: &'static [(u64, Result<u32, &'static str>)],
) -> String {
    let mut b = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_millis(5))
                .attempts(2)
                .jitter(resilient::Jitter::None),
        )
        .hedge(hedge)
        .idempotent(true);
    if phased {
        b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
    }
    let p = b.build().unwrap();
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) as usize;
            let (ms, out) = script[n.min(script.len() - 1)];
            let log = log.clone();
            log.lock()
                .unwrap()
                .push(format!("start {n} at {:?}", start.elapsed()));
            struct Unfinished(usize, Arc<std::sync::Mutex<Vec<String>>>, bool);
            impl Drop for Unfinished {
                fn drop(&mut self) {
                    if !self.2 {
                        self.1.lock().unwrap().push(format!("dropped {}", self.0));
                    }
                }
            }
            async move {
                let mut guard = Unfinished(n, log, false);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                guard.2 = true;
                out
            }
        })
        .await;
    let log = log.lock().unwrap().join(", ");
    format!("{r:?} after {:?}: {log}", start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn hedged_calls_on_the_lean_path_match_the_engine() {
    let delayed = || {
        resilient::hedge::Hedge::delayed(Duration::from_millis(20))
            .max_hedges(2)
            .build()
            .unwrap()
    };
    let scripts: [&'static [(u64, Result<u32, &'static str>)]; 6] = [
        // answered at once; within the delay; a hedge wins; the first fails at once
        &[(0, Ok(1))],
        &[(10, Ok(1))],
        &[(100, Ok(1)), (10, Ok(2)), (10, Ok(3))],
        &[(0, Err("a")), (10, Ok(2))],
        // everything fails: a retry round, hedged again
        &[(30, Err("a")), (30, Err("b")), (5, Err("c")), (0, Ok(4))],
        &[
            (100, Err("a")),
            (100, Err("b")),
            (100, Err("c")),
            (1, Err("d")),
        ],
    ];
    for script in scripts {
        for hedge in [
            delayed(),
            resilient::hedge::Hedge::parallel()
                .max_hedges(1)
                .build()
                .unwrap(),
            resilient::hedge::Hedge::fallback()
                .max_hedges(1)
                .build()
                .unwrap(),
        ] {
            let lean = hedged(false, hedge.clone(), script).await;
            let phased = hedged(true, hedge, script).await;
            assert_eq!(lean, phased, "{script:?}");
        }
    }
    // What that is, for a hedge that wins: the first attempt dropped when it won.
    let out = hedged(false, delayed(), &[(100, Ok(1)), (10, Ok(2))]).await;
    assert_eq!(
        out,
        "Ok(2) after 30ms: start 0 at 0ns, start 1 at 20ms, dropped 0"
    );
}

/// A guard that notes in a shared log what it sees: its admissions (with the attempt and the
/// call's deadline, from the scenario's start) and its releases (with the outcome).
#[derive(Debug)]
struct Tagged {
    name: &'static str,
    /// `ready`, `wait` (admits after 5 ms), `reject`, `late-reject` (rejects after 5 ms)
    /// or `hang` (never answers).
    mode: &'static str,
    start: Instant,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl resilient::Guard for Tagged {
    fn name(&self) -> &'static str {
        self.name
    }

    fn acquire<'a>(&'a self, ctx: &resilient::Context) -> resilient::Acquire<'a> {
        self.log.lock().unwrap().push(format!(
            "{} acquire attempt {} deadline {:?} at {:?}",
            self.name,
            ctx.attempt(),
            ctx.deadline().map(|d| d - self.start),
            self.start.elapsed()
        ));
        let later = |ok: bool| -> resilient::Acquire<'a> {
            resilient::Acquire::Wait(Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if ok {
                    Ok(resilient::Permit::new(self, 1))
                } else {
                    Err(resilient::Rejection::BulkheadFull)
                }
            }))
        };
        match self.mode {
            "wait" => later(true),
            "late-reject" => later(false),
            "hang" => resilient::Acquire::Wait(Box::pin(std::future::pending())),
            "reject" => resilient::Acquire::Ready(Err(resilient::Rejection::BulkheadFull)),
            _ => resilient::Acquire::Ready(Ok(resilient::Permit::new(self, 1))),
        }
    }

    fn on_release(&self, _token: u64, outcome: Option<(resilient::Outcome, Duration)>) {
        self.log.lock().unwrap().push(format!(
            "{} release {outcome:?} at {:?}",
            self.name,
            self.start.elapsed()
        ));
    }

    fn reads_labels(&self) -> bool {
        false
    }

    fn measures_duration(&self) -> bool {
        true
    }
}

/// One pipeline's layout for [`layered`].
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The per-call guard's mode, if it has one.
    call: Option<&'static str>,
    /// The two per-attempt guards' modes (the first always admits at once), if it has them.
    attempt: Option<&'static str>,
    request_ms: Option<u64>,
    operation_ms: Option<u64>,
}

/// Runs a call on a pipeline of `layout` (with a retry of 3 attempts 10 ms apart that
/// retries timeouts and rejections), on the lean path or (with an observer) the phased
/// one, with attempts that take `script`'s times and give its results; the caller gives
/// up after `cut_ms`. Returns the guards' log, the result, the attempts made, the time
/// taken and the deadlines each attempt saw.
async fn layered(
    phased: bool,
    layout: Layout,
    script: &'static [(u64, Result<u32, &'static str>)],
    cut_ms: u64,
) -> (Vec<String>, String, u32, Duration, Vec<String>) {
    let start = Instant::now();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let guard = |name, mode| -> Arc<dyn resilient::Guard> {
        Arc::new(Tagged {
            name,
            mode,
            start,
            log: log.clone(),
        })
    };
    let mut b = Pipeline::builder();
    if let Some(mode) = layout.call {
        b = b.guard_arc(guard("call", mode));
    }
    if let Some(ms) = layout.request_ms {
        b = b.timeout(resilient::Timeout::request(Duration::from_millis(ms)));
    }
    if let Some(ms) = layout.operation_ms {
        b = b.timeout(resilient::Timeout::operation(Duration::from_millis(ms)));
    }
    b = b.retry(
        Retry::constant(Duration::from_millis(10))
            .attempts(3)
            .jitter(resilient::Jitter::None)
            .retry_on_timeout(true)
            .retry_rejected(true),
    );
    if let Some(mode) = layout.attempt {
        b = b
            .guard_arc(guard("first", "ready"))
            .guard_arc(guard("second", mode));
    }
    if phased {
        b = b.observer(|_: &resilient::telemetry::Event<'_>| {});
    }
    let p = b.build().unwrap();
    let calls = AtomicU32::new(0);
    let seen = std::sync::Mutex::new(Vec::new());
    let call = p.execute(|| {
        let n = calls.fetch_add(1, Ordering::Relaxed) as usize;
        let at_call = resilient::inherited_deadline().map(|d| d - start);
        let (ms, result) = script[n.min(script.len() - 1)];
        let seen = &seen;
        async move {
            // What a nested pipeline inside the attempt would inherit.
            let inside = resilient::inherited_deadline().map(|d| d - start);
            seen.lock()
                .unwrap()
                .push(format!("attempt {n}: {at_call:?} {inside:?}"));
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            result
        }
    });
    let r = tokio::time::timeout(Duration::from_millis(cut_ms), call).await;
    let log = log.lock().unwrap().clone();
    let seen = seen.into_inner().unwrap();
    (
        log,
        format!("{r:?}"),
        calls.load(Ordering::Relaxed),
        start.elapsed(),
        seen,
    )
}

#[tokio::test(start_paused = true)]
async fn guards_and_timeouts_at_every_level_match_the_engine_on_the_lean_path() {
    let scripts: [&'static [(u64, Result<u32, &'static str>)]; 5] = [
        &[(0, Ok(1))],
        &[(2, Ok(1))],
        &[(0, Err("a")), (3, Err("b")), (1, Ok(3))],
        &[(12, Err("a")), (12, Err("b")), (12, Err("c"))],
        &[(40, Ok(1))],
    ];
    let calls = [
        None,
        Some("ready"),
        Some("wait"),
        Some("reject"),
        Some("hang"),
    ];
    let attempts = [
        None,
        Some("ready"),
        Some("wait"),
        Some("reject"),
        Some("late-reject"),
        Some("hang"),
    ];
    let mut runs = 0;
    for call in calls {
        for attempt in attempts {
            for request_ms in [None, Some(25), Some(200)] {
                for operation_ms in [None, Some(8)] {
                    for script in scripts {
                        for cut_ms in [17, 1_000] {
                            let layout = Layout {
                                call,
                                attempt,
                                request_ms,
                                operation_ms,
                            };
                            let lean = layered(false, layout, script, cut_ms).await;
                            let phased = layered(true, layout, script, cut_ms).await;
                            assert_eq!(lean, phased, "{layout:?} {script:?} cut {cut_ms}");
                            runs += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs, 5 * 6 * 3 * 2 * 5 * 2);
}

#[tokio::test(start_paused = true)]
async fn a_lean_call_under_guards_and_a_request_timeout_does_what_the_engine_says() {
    let layout = Layout {
        call: Some("ready"),
        attempt: Some("ready"),
        request_ms: Some(25),
        operation_ms: Some(8),
    };
    // Two attempts cut by the operation timeout at 8 ms, 10 ms apart; the third would
    // start at 36 ms, past the request's 25 ms: the call gives up after the second.
    let (log, r, calls, took, seen) =
        layered(false, layout, &[(12, Err("a")), (12, Err("b"))], 1_000).await;
    assert_eq!(calls, 2);
    assert_eq!(took, Duration::from_millis(8 + 10 + 7));
    assert!(r.contains("Timeout") && r.contains("Request"), "{r}");
    // Each attempt is made under the request's deadline and runs under the tighter one.
    assert_eq!(
        seen,
        [
            "attempt 0: Some(25ms) Some(8ms)",
            "attempt 1: Some(25ms) Some(25ms)"
        ]
    );
    assert_eq!(
        log,
        [
            "call acquire attempt 1 deadline Some(25ms) at 0ns",
            "first acquire attempt 1 deadline Some(25ms) at 0ns",
            "second acquire attempt 1 deadline Some(25ms) at 0ns",
            "first release Some((Failure, 8ms)) at 8ms",
            "second release Some((Failure, 8ms)) at 8ms",
            "first acquire attempt 2 deadline Some(25ms) at 18ms",
            "second acquire attempt 2 deadline Some(25ms) at 18ms",
            // the request deadline cuts the second attempt: its permits go as failures
            // (of the call's time so far), then the call's
            "first release Some((Failure, 25ms)) at 25ms",
            "second release Some((Failure, 25ms)) at 25ms",
            "call release Some((Failure, 25ms)) at 25ms",
        ]
    );
}

/// Runs `calls` calls of `p` in a task of their own, each failing at once `failures` times
/// (then succeeding) in a retry with no delay, and says whether the task gave control back
/// meanwhile: a task spawned after it, which sets a flag, has then run.
async fn yields_over(p: Pipeline, calls: u32, failures: u32, path: &'static str) -> bool {
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = ran.clone();
    let task = tokio::spawn(async move {
        for _ in 0..calls {
            let mut n = 0;
            let mut op = move || {
                n += 1;
                ready(if n > failures { Ok(n) } else { Err("down") })
            };
            let r = match path {
                "plain" | "guarded" => p.execute(&mut op).await,
                _ => p.execute_with(|_| op()).await,
            };
            assert!(r.is_ok(), "{path}: {r:?}");
        }
        seen.load(Ordering::Relaxed)
    });
    tokio::spawn(async move { ran.store(true, Ordering::Relaxed) });
    task.await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_calls_first_immediate_retry_spends_no_coop_budget_and_the_next_ones_do() {
    // 300 calls that retry once with no delay stay within the task's coop budget (128
    // units): the first retry of a call spends none. 300 that retry twice spend a unit on
    // each second retry, and the task yields when the budget is spent. On every path: a
    // plain pipeline, one with a guard (the lean path's retry loop), and a call that reads
    // its context (the phased engine).
    let pipelines = |path| match path {
        "guarded" => Pipeline::builder()
            .bulkhead(resilient::Bulkhead::builder(4))
            .retry(Retry::immediate().attempts(3))
            .build()
            .unwrap(),
        _ => Pipeline::builder()
            .retry(Retry::immediate().attempts(3))
            .build()
            .unwrap(),
    };
    for path in ["plain", "guarded", "phased"] {
        assert!(
            !yields_over(pipelines(path), 300, 1, path).await,
            "{path}: one retry per call"
        );
        assert!(
            yields_over(pipelines(path), 300, 2, path).await,
            "{path}: two retries per call"
        );
    }
}
