//! Whatever `Pipeline::builder()` accepts runs: for configurations drawn with extreme
//! values (zero and `Duration::MAX` durations, 0, 1 and `u32::MAX` attempts, factors of 0,
//! huge or NaN, tiny budget ratios, bulkheads with huge queues and waits), every
//! configuration that builds runs 1,000 seeded calls (successes, failures, server-directed
//! delays, hangs, panics, cancellations and aborts; async and blocking) on tokio's paused
//! clock without a panic other than the operation's own (propagated to the caller, as the
//! crate does) and without a call outliving its request timeout.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};
use std::time::Duration;

use proptest::prelude::*;
use resilient::testing::{ManualClock, SeededRandom};
use resilient::{
    AllErrors, Bulkhead, CancellationToken, Classify, FailedAttempt, HonorRetryAfter, Jitter,
    Pipeline, PipelineBuilder, RandomSource, Retry, RetryAfter, RetryBudget, RetryEvent, Timeout,
};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);
const CALLS: usize = 1_000;
/// Configurations drawn (some are rejected by `build()` and skipped).
const CASES: u32 = 128;
/// Calls run this many at a time (so that bulkheads queue).
const BATCH: usize = 8;
/// Every async call is abandoned after this long (a hung operation without timeouts
/// legitimately hangs); a call with a shorter request timeout must have ended before.
const OUTER: Duration = Duration::from_secs(30 * 86_400);

/// The operation's own panic: the only one allowed to reach the caller.
#[derive(Debug)]
struct OpPanic;

/// The operation's error, possibly asking for a delay before the next attempt.
#[derive(Debug)]
struct Fail(Option<Duration>);

impl RetryAfter for Fail {
    fn retry_after(&self) -> Option<Duration> {
        self.0
    }
}

fn extreme_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => prop::sample::select(vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            MS,
            Duration::from_secs(1),
            Duration::from_secs(3_600),
            // either side of the engine's hundred-year horizon
            Duration::from_secs(99 * 365 * 86_400),
            Duration::from_secs(200 * 365 * 86_400),
            Duration::from_secs(i64::MAX as u64),
            Duration::MAX,
        ]),
        1 => (0u64..5_000).prop_map(Duration::from_millis),
    ]
}

fn maybe_duration() -> impl Strategy<Value = Option<Duration>> {
    prop::option::weighted(0.5, extreme_duration())
}

#[derive(Debug, Clone)]
enum Schedule {
    Immediate,
    Constant(Duration),
    Linear(Duration, Duration),
    Exponential(Duration, f64),
    /// 0: always 1 ms; 1: stops after two retries; 2: `Duration::MAX`.
    Custom(u8),
}

#[derive(Debug, Clone)]
struct RetrySpec {
    schedule: Schedule,
    attempts: u32,
    jitter: Jitter,
    max_delay: Option<Duration>,
    max_elapsed: Option<Duration>,
    max_server_delay: Option<Duration>,
    /// ratio, min_per_sec, ttl
    budget: Option<(f64, u32, Duration)>,
    retry_rejected: bool,
    retry_on_timeout: bool,
    untyped_hook: bool,
}

#[derive(Debug, Clone)]
struct BulkheadSpec {
    max_concurrent: usize,
    queue: usize,
    max_wait: Option<Duration>,
    per_attempt: bool,
}

#[derive(Debug, Clone)]
struct Config {
    request: Option<Duration>,
    operation: Option<Duration>,
    retry: Option<RetrySpec>,
    bulkhead: Option<BulkheadSpec>,
    typed_hook: bool,
    seed: u64,
}

fn factor() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.0, 1.0, 1.5, 2.0, 1e300, f64::INFINITY, f64::NAN])
}

fn schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        Just(Schedule::Immediate),
        extreme_duration().prop_map(Schedule::Constant),
        (extreme_duration(), extreme_duration()).prop_map(|(i, s)| Schedule::Linear(i, s)),
        (extreme_duration(), factor()).prop_map(|(i, f)| Schedule::Exponential(i, f)),
        (0u8..3).prop_map(Schedule::Custom),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, f64::NAN]).prop_map(Jitter::Proportional),
    ]
}

fn budget() -> impl Strategy<Value = (f64, u32, Duration)> {
    (
        prop::sample::select(vec![0.0, 1e-7, 1e-6, 0.0004, 0.1, 1.0, 1000.0, f64::NAN]),
        prop::sample::select(vec![0, 1, 10, u32::MAX]),
        prop::sample::select(vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(3_600),
            Duration::MAX,
        ]),
    )
}

fn retry_spec() -> impl Strategy<Value = RetrySpec> {
    (
        schedule(),
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX), 2u32..6,],
        jitter(),
        (maybe_duration(), maybe_duration(), maybe_duration()),
        prop::option::weighted(0.4, budget()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                schedule,
                attempts,
                jitter,
                (max_delay, max_elapsed, max_server_delay),
                budget,
                flags,
            )| {
                RetrySpec {
                    schedule,
                    attempts,
                    jitter,
                    max_delay,
                    max_elapsed,
                    max_server_delay,
                    budget,
                    retry_rejected: flags.0,
                    retry_on_timeout: flags.1,
                    untyped_hook: flags.2,
                }
            },
        )
}

fn bulkhead_spec() -> impl Strategy<Value = BulkheadSpec> {
    (
        prop::sample::select(vec![0usize, 1, 2, usize::MAX]),
        prop::sample::select(vec![0usize, 1, 4, usize::MAX]),
        maybe_duration(),
        any::<bool>(),
    )
        .prop_map(
            |(max_concurrent, queue, max_wait, per_attempt)| BulkheadSpec {
                max_concurrent,
                queue,
                max_wait,
                per_attempt,
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        maybe_duration(),
        maybe_duration(),
        prop::option::weighted(0.8, retry_spec()),
        prop::option::weighted(0.5, bulkhead_spec()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(request, operation, retry, bulkhead, typed_hook, seed)| Config {
                request,
                operation,
                retry,
                bulkhead,
                typed_hook,
                seed,
            },
        )
}

fn make_retry(spec: &RetrySpec, seed: u64) -> Option<Retry> {
    let mut r = match spec.schedule {
        Schedule::Immediate => Retry::immediate(),
        Schedule::Constant(d) => Retry::constant(d),
        Schedule::Linear(i, s) => Retry::linear(i, s),
        Schedule::Exponential(i, f) => Retry::exponential(i).factor(f),
        Schedule::Custom(0) => Retry::custom(|_| Some(MS)),
        Schedule::Custom(1) => Retry::custom(|n| (n <= 2).then_some(MS * 5)),
        Schedule::Custom(_) => Retry::custom(|_| Some(Duration::MAX)),
    };
    r = r
        .attempts(spec.attempts)
        .jitter(spec.jitter)
        .retry_rejected(spec.retry_rejected)
        .retry_on_timeout(spec.retry_on_timeout)
        .rng(Arc::new(SeededRandom::new(seed)));
    if let Some(d) = spec.max_delay {
        r = r.max_delay(d);
    }
    if let Some(d) = spec.max_elapsed {
        r = r.max_elapsed(d);
    }
    if let Some(d) = spec.max_server_delay {
        r = r.max_server_delay(d);
    }
    if let Some((ratio, min_per_sec, ttl)) = spec.budget {
        // an invalid budget is the budget builder's error, not the pipeline's
        let budget = RetryBudget::builder(ratio)
            .min_per_sec(min_per_sec)
            .ttl(ttl)
            .build()
            .ok()?;
        r = r.budget(budget);
    }
    if spec.untyped_hook {
        r = r.on_retry(|ev| assert!(ev.attempt >= 1));
    }
    Some(r)
}

/// The builder for `cfg`, or `None` when a part built on its own (a budget, a bulkhead)
/// is rejected.
fn builder(
    cfg: &Config,
    clock: Option<&ManualClock>,
) -> Option<PipelineBuilder<HonorRetryAfter<AllErrors>>> {
    let mut b = Pipeline::builder().classify(HonorRetryAfter(AllErrors));
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    if let Some(d) = cfg.request {
        b = b.timeout(Timeout::request(d));
    }
    let bulkhead = match &cfg.bulkhead {
        Some(s) => {
            let mut bh = Bulkhead::builder(s.max_concurrent).queue(s.queue);
            if let Some(w) = s.max_wait {
                bh = bh.max_wait(w);
            }
            Some((bh.build().ok()?, s.per_attempt))
        }
        None => None,
    };
    let mut bulkhead = bulkhead;
    if let Some((bh, false)) = bulkhead.take_if(|(_, per_attempt)| !*per_attempt) {
        b = b.guard(bh);
    }
    if let Some(spec) = &cfg.retry {
        b = b.retry(make_retry(spec, cfg.seed)?);
    }
    if let Some((bh, _)) = bulkhead {
        b = b.guard(bh);
    }
    if let Some(d) = cfg.operation {
        b = b.timeout(Timeout::operation(d));
    }
    Some(b)
}

/// What one attempt does.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ok,
    OkAfter(Duration),
    FailNow,
    FailAfter(Duration),
    /// Fails asking for a delay (extreme ones included).
    FailRetryAfter(Duration),
    Hang,
    /// Panics when called (before returning a future) or when polled.
    Panic(bool),
}

fn pick(rng: &SeededRandom) -> Step {
    let ms = |n: u64| Duration::from_millis(rng.next_u64() % n);
    match rng.next_u64() % 100 {
        0..=24 => Step::Ok,
        25..=39 => Step::OkAfter(ms(50)),
        40..=54 => Step::FailNow,
        55..=74 => Step::FailAfter(ms(50)),
        75..=82 => Step::FailRetryAfter(
            [
                Duration::ZERO,
                MS * 3,
                Duration::from_secs(1),
                Duration::MAX,
            ][(rng.next_u64() % 4) as usize],
        ),
        83..=94 => Step::Hang,
        _ => Step::Panic(rng.next_u64().is_multiple_of(2)),
    }
}

fn async_op(
    rng: Arc<SeededRandom>,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<u32, Fail>> + Send>> + Send + 'static
{
    move || {
        let step = pick(&rng);
        if let Step::Panic(true) = step {
            std::panic::panic_any(OpPanic);
        }
        Box::pin(async move {
            match step {
                Step::Ok => Ok(1),
                Step::OkAfter(d) => {
                    sleep(d).await;
                    Ok(2)
                }
                Step::FailNow => Err(Fail(None)),
                Step::FailAfter(d) => {
                    sleep(d).await;
                    Err(Fail(None))
                }
                Step::FailRetryAfter(d) => Err(Fail(Some(d))),
                Step::Hang => std::future::pending().await,
                Step::Panic(_) => std::panic::panic_any(OpPanic),
            }
        })
    }
}

fn blocking_op(rng: Arc<SeededRandom>, clock: ManualClock) -> impl FnMut() -> Result<u32, Fail> {
    move || match pick(&rng) {
        Step::Ok => Ok(1),
        Step::OkAfter(d) => {
            clock.advance(d);
            Ok(2)
        }
        Step::FailNow => Err(Fail(None)),
        Step::FailAfter(d) => {
            clock.advance(d);
            Err(Fail(None))
        }
        Step::FailRetryAfter(d) => Err(Fail(Some(d))),
        // a blocking call cannot hang here: it takes an hour of the pipeline's clock
        Step::Hang => {
            clock.advance(Duration::from_secs(3_600));
            Err(Fail(None))
        }
        Step::Panic(_) => std::panic::panic_any(OpPanic),
    }
}

/// Lets the operation's panic through, and fails on any other.
fn check_panic(payload: Box<dyn std::any::Any + Send>) {
    if payload.downcast_ref::<OpPanic>().is_none() {
        std::panic::resume_unwind(payload);
    }
}

/// Keeps the operation's expected panics out of the test output.
fn quiet_op_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<OpPanic>().is_none() {
                default(info);
            }
        }));
    });
}

/// Runs the seeded calls through `p` (async) and `blocking` (blocking, manual clock).
async fn run_calls<C>(cfg: &Config, p: Pipeline<C>, blocking: Pipeline<C>, clock: ManualClock)
where
    C: Classify<u32, Fail> + Send + Sync + 'static,
{
    let rng = Arc::new(SeededRandom::new(cfg.seed));
    // a call must end within its request timeout, if that is shorter than OUTER
    let bound = cfg.request.filter(|r| *r < OUTER).map(|r| r + MS * 2);
    let mut done = 0;
    while done < CALLS {
        let mut tasks = Vec::new();
        for _ in 0..BATCH.min(CALLS - done) {
            done += 1;
            let kind = rng.next_u64() % 10;
            let op_rng = Arc::new(SeededRandom::new(rng.next_u64()));
            let after = Duration::from_millis(rng.next_u64() % 100);
            let (p, blocking, clock) = (p.clone(), blocking.clone(), clock.clone());
            let abort = kind == 9;
            let task = tokio::spawn(async move {
                let start = Instant::now();
                match kind {
                    // blocking, on the manual clock
                    0 => {
                        let _ = blocking.execute_blocking(blocking_op(op_rng, clock));
                        return None;
                    }
                    // cancelled by the caller's token
                    1 => {
                        let token = CancellationToken::new();
                        let cancel = token.clone();
                        tokio::spawn(async move {
                            sleep(after).await;
                            cancel.cancel();
                        });
                        let r = tokio::time::timeout(
                            OUTER,
                            p.execute_cancellable(&token, async_op(op_rng)),
                        )
                        .await;
                        assert!(r.is_ok(), "a cancelled call ends");
                    }
                    // dropped by an enclosing timeout
                    2 => {
                        let _ = tokio::time::timeout(after, p.execute(async_op(op_rng))).await;
                        return None;
                    }
                    _ => {
                        let _ = tokio::time::timeout(OUTER, p.execute(async_op(op_rng))).await;
                    }
                }
                Some(start.elapsed())
            });
            tasks.push((task, abort.then_some(after)));
        }
        for (task, abort) in &tasks {
            if let Some(after) = abort {
                let handle = task.abort_handle();
                let after = *after;
                tokio::spawn(async move {
                    sleep(after).await;
                    handle.abort();
                });
            }
        }
        for (task, abort) in tasks {
            match task.await {
                Ok(Some(took)) => {
                    if let Some(bound) = bound {
                        assert!(
                            took <= bound,
                            "a call took {took:?} with a request timeout of {:?}",
                            cfg.request
                        );
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_panic() => check_panic(e.into_panic()),
                Err(e) => assert!(e.is_cancelled() && abort.is_some(), "{e:?}"),
            }
        }
    }
}

fn typed_hook(ev: &RetryEvent<'_>, failed: FailedAttempt<'_, u32, Fail>) {
    assert!(ev.attempt >= 1);
    let _ = failed.error();
}

proptest! {
    // seeded, so every run checks the same configurations
    #![proptest_config(ProptestConfig {
        cases: CASES,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_accepted_configuration_runs(cfg in config()) {
        quiet_op_panics();
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(86_400));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        // The pipelines are built in the paused runtime, as tests of one's own build them:
        // their default clocks then follow its time (see `FastClock`), not the real time
        // that passes meanwhile (on a busy machine, enough to miss a 1 ns request timeout's
        // bound).
        let _entered = rt.enter();
        let (Some(async_b), Some(blocking_b)) = (builder(&cfg, None), builder(&cfg, Some(&clock)))
        else {
            return Ok(());
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if cfg.typed_hook {
                let (Ok(p), Ok(b)) = (async_b.on_retry(typed_hook).build(), blocking_b.on_retry(typed_hook).build())
                else { return };
                rt.block_on(run_calls(&cfg, p, b, clock));
            } else {
                let (Ok(p), Ok(b)) = (async_b.build(), blocking_b.build()) else { return };
                rt.block_on(run_calls(&cfg, p, b, clock));
            }
        }));
        if let Err(payload) = outcome {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            prop_assert!(false, "panicked with {:?}: {}", cfg, msg);
        }
    }
}
