//! Retry behaviour of the pipeline engine, on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::testing::{ManualClock, Script, SeededRandom};
use resilient::{
    Error, FailedAttempt, HonorRetryAfter, Jitter, Outcome, Pipeline, Retry, RetryAfter,
    RetryBudget, RetryEvent, RetryReason, Timeout, WithDelay,
};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_exponential_waits() {
    let p = Pipeline::builder()
        .retry(Retry::exponential(MS * 100).attempts(4))
        .build()
        .unwrap();
    let script = Script::new([Err("a"), Err("b"), Ok(42)]);
    let start = Instant::now();
    let r = p.execute(|| script.next()).await;
    assert_eq!(r.unwrap(), 42);
    assert_eq!(script.calls(), 3);
    // waits of 100 ms and 200 ms, nothing else
    assert_eq!(start.elapsed(), MS * 300);
}

#[tokio::test(start_paused = true)]
async fn exhaustion_reports_attempts_and_last_error() {
    let p = Pipeline::builder()
        .retry(Retry::linear(MS * 10, MS * 10).attempts(3))
        .build()
        .unwrap();
    let script: Script<(), &str> = Script::new([Err("first"), Err("second"), Err("third")]);
    let start = Instant::now();
    match p.execute(|| script.next()).await {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert_eq!(last, "third");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), MS * 30); // 10 + 20
}

#[tokio::test(start_paused = true)]
async fn without_retry_the_error_is_inner() {
    let p = Pipeline::builder().build().unwrap();
    let r: Result<(), _> = p.execute(|| async { Err("nope") }).await;
    assert!(matches!(r, Err(Error::Inner("nope"))));
}

#[tokio::test(start_paused = true)]
async fn ignored_errors_are_not_retried() {
    let classify = |r: &Result<u8, u16>| match r {
        Ok(_) => Outcome::Success,
        Err(code) if *code >= 500 => Outcome::Failure,
        Err(_) => Outcome::Ignored,
    };
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(5))
        .classify(classify)
        .build()
        .unwrap();
    let script = Script::new([Err(503), Err(404), Ok(1)]);
    let r = p.execute(|| script.next()).await;
    assert!(matches!(r, Err(Error::Inner(404))));
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ok_results_can_count_as_failures() {
    // "HTTP 503 is a failure" even though the transport returned Ok.
    let classify = |r: &Result<u16, ()>| match r {
        Ok(503) => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .classify(classify)
        .build()
        .unwrap();
    let script = Script::new([Ok(503), Ok(200)]);
    assert_eq!(p.execute(|| script.next()).await.unwrap(), 200);
    // when every attempt is a failed Ok, the last one is handed back
    let script = Script::new([Ok(503)]);
    assert_eq!(p.execute(|| script.next()).await.unwrap(), 503);
    assert_eq!(script.calls(), 3);
}

#[derive(Debug, Clone, PartialEq)]
struct Throttled(Duration);

impl RetryAfter for Throttled {
    fn retry_after(&self) -> Option<Duration> {
        Some(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn server_directed_delay_replaces_backoff_and_is_bounded() {
    let p = Pipeline::builder()
        .retry(
            Retry::constant(MS * 10)
                .attempts(3)
                .max_server_delay(Duration::from_secs(5)),
        )
        .classify(HonorRetryAfter(resilient::AllErrors))
        .build()
        .unwrap();
    let script = Script::new([Err(Throttled(Duration::from_secs(2))), Ok(1)]);
    let start = Instant::now();
    assert_eq!(p.execute(|| script.next()).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    // a server asking for more than the bound stops the retries at once
    let script = Script::new([Err(Throttled(Duration::from_secs(60))), Ok(1)]);
    let start = Instant::now();
    let r = p.execute(|| script.next()).await;
    assert!(matches!(r, Err(Error::Inner(_))));
    assert_eq!(script.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn error_aware_custom_delay() {
    let delay = |attempt: u32, e: &&str| (*e == "slow").then(|| MS * (100 * attempt));
    let p = Pipeline::builder()
        .retry(Retry::constant(MS).attempts(4))
        .classify(WithDelay::new(resilient::AllErrors, delay))
        .build()
        .unwrap();
    let script = Script::new([Err("slow"), Err("slow"), Err("fast"), Ok(())]);
    let start = Instant::now();
    p.execute(|| script.next()).await.unwrap();
    // 100 ms, 200 ms, then the plain 1 ms backoff
    assert_eq!(start.elapsed(), MS * 301);
}

#[tokio::test(start_paused = true)]
async fn custom_schedule_can_stop_retrying() {
    let p = Pipeline::builder()
        .retry(Retry::custom(|n| (n <= 1).then_some(MS * 5)).attempts(10))
        .build()
        .unwrap();
    let script: Script<(), &str> = Script::new([Err("x")]);
    let r = p.execute(|| script.next()).await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 2, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_caps_total_time_including_waits() {
    let clock = ManualClock::new();
    let p = Pipeline::builder()
        .retry(
            Retry::constant(Duration::from_secs(1))
                .attempts(100)
                .max_elapsed(Duration::from_millis(3500)),
        )
        .build()
        .unwrap();
    let _ = clock; // the engine's default clock follows tokio's paused time
    let script: Script<(), &str> = Script::new([Err("x")]);
    let start = Instant::now();
    let r = p.execute(|| script.next()).await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 4, .. })
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn on_retry_reports_attempt_delay_and_reason() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let p = Pipeline::builder()
        .name("fetch")
        .retry(Retry::exponential(MS * 10).attempts(3).on_retry(move |ev| {
            log.lock().unwrap().push((
                ev.operation.map(str::to_owned),
                ev.attempt,
                ev.delay,
                ev.reason,
            ));
        }))
        .build()
        .unwrap();
    let script: Script<(), &str> = Script::new([Err("x")]);
    let _ = p.execute(|| script.next()).await;
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            (Some("fetch".to_owned()), 1, MS * 10, RetryReason::Error),
            (Some("fetch".to_owned()), 2, MS * 20, RetryReason::Error),
        ]
    );
}

/// The typed hook sees the failed attempt itself: the error, the failed `Ok`, or the timeout.
#[tokio::test(start_paused = true)]
async fn typed_on_retry_sees_the_error_or_the_timeout() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let classify = |r: &Result<u16, String>| match r {
        Ok(503) | Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    };
    let p = Pipeline::builder()
        .retry(Retry::constant(MS * 10).attempts(5))
        .timeout(Timeout::operation(MS * 100))
        .classify(classify)
        .on_retry(
            move |ev: &RetryEvent<'_>, failed: FailedAttempt<'_, u16, String>| {
                let what = match failed {
                    FailedAttempt::Error(e) => format!("error {e}"),
                    FailedAttempt::FailedResult(code) => format!("result {code}"),
                    FailedAttempt::Timeout(after) => format!("timeout after {after:?}"),
                    _ => "other".to_owned(),
                };
                log.lock()
                    .unwrap()
                    .push((ev.attempt, ev.delay, ev.reason, what));
            },
        )
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                match n {
                    1 => Err("refused".to_owned()),
                    2 => std::future::pending().await,
                    3 => Ok(503),
                    _ => Ok(200),
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            (1, MS * 10, RetryReason::Error, "error refused".to_owned()),
            (
                2,
                MS * 10,
                RetryReason::Timeout,
                "timeout after 100ms".to_owned()
            ),
            (
                3,
                MS * 10,
                RetryReason::FailedResult,
                "result 503".to_owned()
            ),
        ]
    );
}

/// Both hooks fire, the untyped one first; the typed one also serves blocking calls.
#[test]
fn typed_on_retry_fires_for_blocking_calls_with_the_untyped_hook() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b) = (seen.clone(), seen.clone());
    let p = Pipeline::builder()
        .retry(
            Retry::immediate()
                .attempts(2)
                .on_retry(move |ev| a.lock().unwrap().push(format!("untyped {}", ev.attempt))),
        )
        .on_retry(
            move |ev: &RetryEvent<'_>, failed: FailedAttempt<'_, (), &str>| {
                let e = failed.error().copied().unwrap_or("none");
                b.lock().unwrap().push(format!("typed {} {e}", ev.attempt));
            },
        )
        .build()
        .unwrap();
    let r = p.execute_blocking(|| Err::<(), _>("nope"));
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 2, .. })
    ));
    assert_eq!(*seen.lock().unwrap(), ["untyped 1", "typed 1 nope"]);
}

#[test]
fn classify_after_a_typed_hook_is_a_config_error() {
    let e = Pipeline::builder()
        .retry(Retry::immediate())
        .on_retry(|_: &RetryEvent<'_>, _: FailedAttempt<'_, (), ()>| {})
        .classify(|_: &Result<(), ()>| Outcome::Failure)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "on_retry");
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_reproducible_and_bounded() {
    async fn run(seed: u64) -> Vec<Duration> {
        let delays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = delays.clone();
        let p = Pipeline::builder()
            .retry(
                Retry::exponential(MS * 100)
                    .attempts(6)
                    .jitter(Jitter::Full)
                    .rng(Arc::new(SeededRandom::new(seed)))
                    .on_retry(move |ev| log.lock().unwrap().push(ev.delay)),
            )
            .build()
            .unwrap();
        let _ = p.execute(|| async { Err::<(), _>("x") }).await;
        delays.lock().unwrap().clone()
    }
    let a = run(9).await;
    assert_eq!(a, run(9).await);
    assert_ne!(a, run(10).await);
    for (i, d) in a.iter().enumerate() {
        assert!(*d <= MS * (100 << i), "retry {i}: {d:?}");
    }
}

/// 1000 calls to a dependency that always fails, 3 attempts each, behind a 10% budget:
/// without the budget that is 3000 attempts; with it, about 1000 + 100 + the reserve.
#[tokio::test(start_paused = true)]
async fn retry_budget_bounds_a_storm() {
    let clock = ManualClock::new();
    let budget = RetryBudget::builder(0.1)
        .min_per_sec(5)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3).budget(budget))
        .build()
        .unwrap();
    let attempts = AtomicU32::new(0);
    for _ in 0..1000 {
        let _ = p
            .execute(|| {
                attempts.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("down") }
            })
            .await;
    }
    let total = attempts.load(Ordering::Relaxed);
    // 1000 first attempts + 100 budgeted retries + 5 from the one-second reserve
    assert!(total <= 1000 + 100 + 5, "{total} attempts");
    assert!(
        total >= 1000 + 95,
        "the budget should still allow retries: {total}"
    );
}

/// An hour of healthy traffic must not bank an hour of retries: deposits expire after the
/// budget's ttl, so the storm that follows an outage is bounded by `ratio` of the calls
/// made within the ttl plus the reserve, however long the service was healthy before.
#[tokio::test(start_paused = true)]
async fn retry_budget_forgets_deposits_older_than_its_ttl() {
    let clock = ManualClock::new();
    // production clocks read far past zero
    clock.set(Duration::from_secs(100_000));
    let budget = RetryBudget::builder(0.1)
        .min_per_sec(5)
        .ttl(Duration::from_secs(10))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3).budget(budget.clone()))
        .build()
        .unwrap();
    // one healthy hour: 10 calls a second
    for _ in 0..3600 {
        for _ in 0..10 {
            p.execute(|| async { Ok::<_, &str>(()) }).await.unwrap();
        }
        clock.advance(Duration::from_secs(1));
    }
    // what is left: the last ttl's deposits (100 calls at 10%) plus the full reserve
    // (min_per_sec * ttl)
    let left = budget.available();
    assert!(left <= 10 + 50, "{left} retries banked");
    // the outage: 1000 failing calls at once, 3 attempts each
    let attempts = AtomicU32::new(0);
    for _ in 0..1000 {
        let _ = p
            .execute(|| {
                attempts.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("down") }
            })
            .await;
    }
    let retries = attempts.load(Ordering::Relaxed) - 1000;
    // ratio * (calls within ttl: 100 healthy + 1000 failing) + reserve (5/s * 10 s)
    assert!(retries <= 110 + 50, "{retries} retries");
    assert!(
        retries >= 100,
        "the budget should still allow retries: {retries}"
    );
    // once the ttl has passed with no traffic, nothing is left but the reserve
    clock.advance(Duration::from_secs(11));
    assert_eq!(budget.available(), 50);
}

#[tokio::test(start_paused = true)]
async fn budget_is_shared_by_clones() {
    let budget = RetryBudget::builder(0.5)
        .min_per_sec(0)
        .clock(Arc::new(ManualClock::new()))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(2).budget(budget.clone()))
        .build()
        .unwrap();
    let q = p.clone();
    let ok = || async { Ok::<_, ()>(()) };
    p.execute(ok).await.unwrap();
    q.execute(ok).await.unwrap();
    assert_eq!(budget.available(), 1);
}

/// Fails at once, without awaiting; past `limit` calls it panics, which would only happen
/// if the retry loop never gave the runtime a chance to stop it.
fn fails_without_awaiting(
    calls: &Arc<AtomicU32>,
    limit: u32,
) -> impl FnMut() -> std::future::Ready<Result<(), &'static str>> + Send + 'static {
    let calls = calls.clone();
    move || {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        assert!(n < limit, "{n} immediate retries without yielding");
        std::future::ready(Err("down"))
    }
}

/// Immediate retries of an operation that never awaits still yield to the runtime now and
/// then, so an enclosing `tokio::time::timeout` can fire.
#[tokio::test(start_paused = true)]
async fn an_enclosing_timeout_stops_immediate_retries() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(u32::MAX))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let op = fails_without_awaiting(&calls, 100_000);
    // the deadline is set now, at t = 0
    let call = tokio::time::timeout(Duration::from_secs(1), async move { p.execute(op).await });
    let task = tokio::spawn(call);
    // time passes the enclosing timeout's deadline before the task first runs
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = task.await.expect("the call must not run away");
    assert!(r.is_err(), "the enclosing timeout fired");
    assert!(calls.load(Ordering::Relaxed) >= 1);
}

/// ... and an aborted task stops.
#[tokio::test(start_paused = true)]
async fn an_aborted_task_stops_immediate_retries() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(u32::MAX))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let op = fails_without_awaiting(&calls, 100_000);
    let task = tokio::spawn(async move { p.execute(op).await });
    // let it start, then abort it from this task, which must get to run again
    tokio::task::yield_now().await;
    assert!(calls.load(Ordering::Relaxed) >= 1);
    task.abort();
    let err = task.await.unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    let stopped_at = calls.load(Ordering::Relaxed);
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::Relaxed), stopped_at);
}

/// The success path never yields: a call that succeeds at once completes in one poll (no
/// yield before the first attempt).
#[tokio::test(start_paused = true)]
async fn a_first_attempt_success_completes_in_one_poll() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(u32::MAX))
        .build()
        .unwrap();
    let mut fut = std::pin::pin!(p.execute(|| std::future::ready(Ok::<_, ()>(1))));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
}

fn budget_on(ratio: f64, clock: &ManualClock) -> Result<Arc<RetryBudget>, resilient::ConfigError> {
    RetryBudget::builder(ratio)
        .min_per_sec(0)
        .ttl(Duration::from_secs(10))
        .clock(Arc::new(clock.clone()))
        .build()
}

fn retries_bought(budget: &RetryBudget, calls: u64) -> u64 {
    for _ in 0..calls {
        budget.deposit();
    }
    let available = budget.available();
    let mut withdrawn = 0;
    while budget.try_withdraw() {
        withdrawn += 1;
    }
    assert_eq!(
        withdrawn, available,
        "available() matches what can be withdrawn"
    );
    withdrawn
}

/// Small ratios are kept exactly enough: 0.0004 buys 4 retries in 10,000 calls (it used to
/// round to zero), and 0.0015 buys 15 (not 20).
#[test]
fn small_budget_ratios_are_not_rounded_away() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let cases = [
        (0.0004, 10_000, 4),
        (0.0015, 10_000, 15),
        (0.000_001, 3_000_000, 3),
    ];
    for (ratio, calls, retries) in cases {
        let b = budget_on(ratio, &clock).unwrap();
        assert_eq!(retries_bought(&b, calls), retries, "ratio {ratio}");
    }
}

/// What cannot be represented is rejected, naming the field and the rule.
#[test]
fn budget_ratios_too_small_to_represent_are_rejected() {
    let clock = ManualClock::new();
    for ratio in [1e-7, 9.99e-7, f64::MIN_POSITIVE] {
        let e = budget_on(ratio, &clock).unwrap_err();
        assert_eq!(e.field(), "retry.budget.ratio");
        assert!(e.to_string().contains("0.000001"), "{e}");
    }
    assert!(budget_on(0.0, &clock).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// For any accepted ratio r, N calls buy floor(r * N) retries, give or take the
    /// representation's relative error (at most 0.05% of r) and one retry.
    #[test]
    fn a_budget_buys_ratio_times_calls(exp in -6.0f64..3.0, calls in 1u64..20_000) {
        let ratio = 10f64.powf(exp).clamp(1e-6, 1000.0);
        // keep the number of withdrawals small
        let calls = calls.min((20_000.0 / ratio) as u64).max(1);
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(86_400));
        let b = budget_on(ratio, &clock).unwrap();
        let bought = retries_bought(&b, calls) as f64;
        let expected = ratio * calls as f64;
        let tolerance = expected * 0.0005 + 1.0;
        proptest::prop_assert!(
            (bought - expected).abs() <= tolerance,
            "ratio {} over {} calls: {} retries, expected {}", ratio, calls, bought, expected
        );
    }
}

/// As documented on `PipelineBuilder::clock`: an async pipeline waits on tokio's timer
/// whatever its clock, while `max_elapsed` is measured on the pipeline's clock.
#[tokio::test(start_paused = true)]
async fn async_waits_run_on_tokio_time_and_max_elapsed_on_the_pipeline_clock() {
    let clock = ManualClock::new();
    let p = Pipeline::builder()
        .clock(Arc::new(clock.clone()))
        .retry(
            Retry::constant(MS * 100)
                .attempts(10)
                .max_elapsed(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    let mut n = 0;
    let r = p
        .execute(|| {
            n += 1;
            // each attempt takes 400 ms on the manual clock, none in tokio time
            clock.advance(MS * 400);
            async { Err::<(), _>("down") }
        })
        .await;
    // the waits passed in tokio time, not on the manual clock
    assert_eq!(resilient::Clock::now(&clock), MS * 400 * n);
    assert_eq!(start.elapsed(), MS * 100 * (n - 1));
    // after the second attempt 800 ms have passed on the manual clock, after the third
    // 1,200: another wait would end past max_elapsed
    assert_eq!(n, 3, "{r:?}");
}

/// The cooperative yield needs no tokio runtime: polled by another executor (here, by
/// hand), immediate retries run to the end.
#[test]
fn immediate_retries_run_outside_a_tokio_runtime() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(300))
        .build()
        .unwrap();
    let mut n = 0;
    let mut fut = std::pin::pin!(p.execute(|| {
        n += 1;
        std::future::ready(if n < 300 { Err("down") } else { Ok(n) })
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    let r = loop {
        polls += 1;
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r;
        }
        assert!(polls < 1_000, "never completes");
    };
    assert_eq!(r.unwrap(), 300);
}
