//! The attribute macros, end to end: what the generated functions do on tokio's paused
//! clock (no real sleeps).

#![cfg(feature = "macros")]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use resilient::{CircuitBreaker, Classify, Error, Outcome, RetryAfter, TimeoutScope};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn retry_reruns_a_flaky_fn_with_the_configured_waits() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 4, backoff = exponential("100ms"))]
    async fn flaky(id: u64) -> Result<u64, String> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            return Err(format!("attempt {n} failed"));
        }
        Ok(id * 10)
    }

    let start = Instant::now();
    assert_eq!(flaky(4).await.unwrap(), 40);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    // waits of 100 ms and 200 ms, nothing else
    assert_eq!(start.elapsed(), MS * 300);
}

#[tokio::test(start_paused = true)]
async fn retry_exhaustion_reports_attempts_and_the_last_error() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = linear("10ms", "10ms"), max_delay = "15ms")]
    async fn always_fails() -> Result<(), u32> {
        Err(CALLS.fetch_add(1, Ordering::SeqCst) + 1)
    }

    let start = Instant::now();
    match always_fails().await {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert_eq!(last, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), MS * 25); // 10, then 20 capped to 15
}

#[tokio::test(start_paused = true)]
async fn question_mark_and_early_return_end_the_attempt() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = constant("1s"))]
    async fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            let _: u32 = "not a number".parse()?;
        }
        if n == 1 {
            return Ok(99);
        }
        Ok(text.parse()?)
    }

    assert_eq!(parse("5").await.unwrap(), 99);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn arguments_are_fresh_clones_on_every_attempt() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate)]
    async fn push(mut log: Vec<u32>, (a, b): (u32, u32), _: u8) -> Result<Vec<u32>, ()> {
        log.push(a + b);
        if CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(());
        }
        Ok(log)
    }

    // Each attempt starts from the caller's vector, not from the previous attempt's.
    assert_eq!(push(vec![1], (2, 3), 0).await.unwrap(), vec![1, 5]);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn stacked_retry_and_timeout_are_one_pipeline() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    // The first attempt overruns the operation timeout and is retried by the same pipeline.
    #[resilient::retry(attempts = 3, backoff = constant("100ms"))]
    #[resilient::timeout(operation = "1s", request = "10s")]
    async fn slow_then_fast() -> Result<u32, ()> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            sleep(Duration::from_secs(5)).await;
        }
        Ok(n)
    }

    let start = Instant::now();
    assert_eq!(slow_then_fast().await.unwrap(), 2);
    assert_eq!(start.elapsed(), MS * 1100);
}

#[tokio::test(start_paused = true)]
async fn request_timeout_bounds_all_attempts_whatever_the_stacking_order() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    // timeout written first this time: it takes over the retry below it
    #[resilient::timeout(operation = "1s", request = "2500ms")]
    #[resilient::retry(attempts = 10, backoff = constant("100ms"))]
    async fn hangs() -> Result<(), ()> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    let start = Instant::now();
    match hangs().await {
        Err(Error::Timeout { scope, elapsed }) => {
            assert_eq!(scope, TimeoutScope::Request);
            assert_eq!(elapsed, MS * 2500);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(start.elapsed(), MS * 2500);
    // attempts at 0 s, 1.1 s and 2.2 s; the third is cut by the request timeout
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn operation_timeout_alone_applies_per_call() {
    #[resilient::timeout(operation = "50ms")]
    async fn slow() -> Result<(), ()> {
        sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    let start = Instant::now();
    assert!(matches!(
        slow().await,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
    assert_eq!(start.elapsed(), MS * 50);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_state_is_shared_by_all_calls() {
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    #[resilient::bulkhead(max_concurrent = 2, queue = 1)]
    async fn work(n: u32) -> Result<u32, ()> {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        sleep(Duration::from_secs(1)).await;
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(n)
    }

    let start = Instant::now();
    // Two run, one queues, the fourth finds no room.
    let (a, b, c, d) = tokio::join!(work(1), work(2), work(3), work(4));
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (1, 2, 3));
    assert!(matches!(d, Err(Error::BulkheadFull)));
    assert_eq!(PEAK.load(Ordering::SeqCst), 2);
    // the queued call ran after a slot freed
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_is_per_call_outside_the_retry_loop() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    // One slot: if the bulkhead were per attempt the retry would still get it back, but a
    // second concurrent call must be rejected while the first is retrying.
    #[resilient::retry(attempts = 3, backoff = constant("1s"))]
    #[resilient::bulkhead(max_concurrent = 1, max_wait = "10ms", queue = 5)]
    async fn retried(fail: bool) -> Result<(), ()> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if fail { Err(()) } else { Ok(()) }
    }

    let second = async {
        sleep(MS * 500).await; // the first call is between attempts now
        retried(false).await
    };
    let (first, second) = tokio::join!(retried(true), second);
    assert!(matches!(
        first,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert!(matches!(second, Err(Error::BulkheadFull)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
}

#[test]
fn blocking_functions_run_through_execute_blocking() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate)]
    fn read(path: &str) -> std::io::Result<String> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(std::io::Error::other("busy"));
        }
        Ok(format!("contents of {path}"))
    }

    // `io::Result<T>` becomes `Result<T, resilient::Error<io::Error>>`.
    let r: Result<String, Error<std::io::Error>> = read("a.txt");
    assert_eq!(r.unwrap(), "contents of a.txt");
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

struct Client {
    calls: AtomicU32,
    base: String,
}

impl Client {
    #[resilient::retry(attempts = 3, backoff = constant("10ms"), jitter = none)]
    #[resilient::timeout(request = "1s")]
    async fn get(&self, id: u64) -> Result<String, String> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("first call fails".into());
        }
        Ok(Self::url(&self.base, id))
    }

    fn url(base: &str, id: u64) -> String {
        format!("{base}/{id}")
    }

    #[resilient::retry(attempts = 2, backoff = immediate)]
    fn get_blocking(&self) -> Result<u32, String> {
        Ok(self.calls.fetch_add(1, Ordering::SeqCst))
    }
}

#[tokio::test(start_paused = true)]
async fn shared_ref_self_methods() {
    let client = Client {
        calls: AtomicU32::new(0),
        base: "https://api".into(),
    };
    let start = Instant::now();
    assert_eq!(client.get(7).await.unwrap(), "https://api/7");
    assert_eq!(start.elapsed(), MS * 10);
    assert_eq!(client.get_blocking().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn generic_functions_share_one_pipeline() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 2, backoff = immediate)]
    async fn echo<T: Clone + std::fmt::Debug>(value: T) -> Result<T, String> {
        if CALLS.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            return Err(format!("{value:?} failed once"));
        }
        Ok(value)
    }

    assert_eq!(echo(1u8).await.unwrap(), 1);
    assert_eq!(echo("x").await.unwrap(), "x");
}

#[tokio::test(start_paused = true)]
async fn generated_futures_are_send() {
    #[resilient::retry(attempts = 2, backoff = immediate)]
    #[resilient::bulkhead(max_concurrent = 1)]
    async fn job(name: String) -> Result<usize, std::io::Error> {
        sleep(MS).await;
        Ok(name.len())
    }

    let handle = tokio::spawn(job("abc".to_string()));
    assert_eq!(handle.await.unwrap().unwrap(), 3);
}

/// An `async fn` with owned arguments returns the engine's future directly (see the
/// attributes' documentation); one with a reference argument stays an `async fn`. Either
/// way, nothing of the body runs until the future is polled, and a future dropped unpolled
/// never runs it.
#[tokio::test(start_paused = true)]
async fn async_fns_run_their_body_only_once_awaited() {
    static OWNED: AtomicU32 = AtomicU32::new(0);
    static BORROWED: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 2, backoff = immediate)]
    async fn owned(x: u32) -> Result<u32, ()> {
        OWNED.fetch_add(1, Ordering::SeqCst);
        Ok(x + 1)
    }

    #[resilient::retry(attempts = 2, backoff = immediate)]
    async fn borrowed(x: &str) -> Result<usize, ()> {
        BORROWED.fetch_add(1, Ordering::SeqCst);
        Ok(x.len())
    }

    let a = owned(1);
    let b = borrowed("ab");
    assert_eq!(OWNED.load(Ordering::SeqCst), 0);
    assert_eq!(BORROWED.load(Ordering::SeqCst), 0);
    drop((a, b));
    assert_eq!(OWNED.load(Ordering::SeqCst), 0);
    assert_eq!(BORROWED.load(Ordering::SeqCst), 0);
    assert_eq!(owned(1).await, Ok(2));
    assert_eq!(borrowed("ab").await, Ok(2));
    assert_eq!(OWNED.load(Ordering::SeqCst), 1);
    assert_eq!(BORROWED.load(Ordering::SeqCst), 1);
    // The owned form's future is `'static`: it can be spawned as it is.
    assert_eq!(tokio::spawn(owned(5)).await.unwrap(), Ok(6));
}

mod imported {
    use resilient::retry;

    // An imported short name works as the outermost attribute; the attributes it takes
    // over below it are spelled `resilient::NAME`.
    #[retry(attempts = 2, backoff = immediate)]
    #[resilient::timeout(operation = "1s")]
    pub async fn short_names() -> Result<u8, ()> {
        Ok(1)
    }
}

#[tokio::test(start_paused = true)]
async fn imported_short_names_stack_too() {
    assert_eq!(imported::short_names().await.unwrap(), 1);
}

#[test]
fn configuration_errors_the_macro_cannot_see_panic_on_every_call() {
    // A breaker of the user's whose break (60 s) exceeds the circuit timeout (10 s):
    // PipelineBuilder::build rejects it when the function is first called.
    static LONG_BREAK: LazyLock<CircuitBreaker> = LazyLock::new(|| {
        CircuitBreaker::consecutive_failures(1)
            .open_for(Duration::from_secs(60))
            .build()
            .unwrap()
    });

    #[resilient::circuit(breaker = LONG_BREAK)]
    #[resilient::timeout(circuit = "10s")]
    fn misconfigured() -> Result<(), ()> {
        Ok(())
    }

    // An `async fn` returning the engine's future looks its pipeline up when called.
    #[resilient::circuit(breaker = LONG_BREAK)]
    #[resilient::timeout(circuit = "10s")]
    async fn misconfigured_async(x: u8) -> Result<u8, ()> {
        Ok(x)
    }

    // Every call panics with the configuration error (not with a poisoned `LazyLock` after
    // the first).
    let calls: [(&str, fn()); 2] = [
        ("misconfigured", || drop(misconfigured())),
        ("misconfigured_async", || drop(misconfigured_async(1))),
    ];
    for (name, call) in calls {
        for _ in 0..3 {
            let panic = std::panic::catch_unwind(call).unwrap_err();
            let message = panic.downcast_ref::<String>().expect("a formatted message");
            assert!(
                message.starts_with(&format!(
                    "invalid resilience configuration on `macros::{name}`: invalid \
                     configuration: `circuit.open_for` (60s) must not exceed timeout.circuit \
                     (10s)"
                )),
                "{message}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn factor_and_max_delay_shape_the_waits() {
    #[resilient::retry(
        attempts = 4,
        backoff = exponential("10ms"),
        factor = 3,
        max_delay = "50ms",
        jitter = none
    )]
    async fn always_fails() -> Result<(), ()> {
        Err(())
    }

    let start = Instant::now();
    assert!(always_fails().await.is_err());
    assert_eq!(start.elapsed(), MS * 90); // 10 + 30 + min(90, 50)
}

#[tokio::test(start_paused = true)]
async fn every_documented_setting_compiles() {
    #[::resilient::retry]
    async fn defaults() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::retry(
        attempts = 5,
        backoff = linear("10ms", "5ms"),
        max_delay = "1s",
        max_elapsed = "2m",
        jitter = proportional(0.2)
    )]
    #[resilient::timeout(operation = "250us", request = "1.5s", circuit = "1h")]
    #[resilient::bulkhead(max_concurrent = 3, queue = 1, max_wait = "0ms")]
    async fn everything() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::retry(
        attempts = 2,
        backoff = immediate,
        max_server_delay = "1s",
        retry_on_timeout = true,
        retry_rejected = false,
        honour_retry_after = false
    )]
    #[resilient::timeout(operation = "1s")]
    #[resilient::circuit(
        failure_rate = 0.5,
        consecutive_failures = 5,
        window = 20,
        minimum_calls = 20,
        open_for = "1s",
        max_open_for = "1m",
        break_jitter = 0.2,
        half_open_probes = 3,
        required_successes = 2,
        max_half_open_wait = "10s",
        slow_call = "2s",
        slow_rate = 0.8,
        scope = call
    )]
    #[resilient::rate_limit(rate = 10, burst = 20, cost = 2, max_wait = "1s", scope = attempt)]
    async fn every_new_key() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::retry(backoff = constant("1ms"), jitter = full)]
    async fn full() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::retry(backoff = exponential("1ms"), jitter = equal)]
    async fn equal() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::retry(backoff = immediate, jitter = decorrelated)]
    async fn decorrelated() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::bulkhead(max_concurrent = 1)]
    async fn bulkhead_only() -> Result<(), ()> {
        Ok(())
    }

    defaults().await.unwrap();
    everything().await.unwrap();
    every_new_key().await.unwrap();
    full().await.unwrap();
    equal().await.unwrap();
    decorrelated().await.unwrap();
    bulkhead_only().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn circuit_opens_after_failures_and_rejects_without_calling() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::circuit(consecutive_failures = 2, open_for = "10s")]
    async fn down() -> Result<(), &'static str> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err("down")
    }

    assert!(matches!(down().await, Err(Error::Inner("down"))));
    assert!(matches!(down().await, Err(Error::Inner("down"))));
    match down().await {
        Err(Error::CircuitOpen { retry_after }) => {
            let left = retry_after.expect("an open breaker knows its retry_after");
            // the breaker keeps its deadlines at microsecond resolution
            assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(10) - MS);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "an open circuit does not call"
    );
}

#[tokio::test(start_paused = true)]
async fn circuit_per_call_counts_a_retried_call_once() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate)]
    #[resilient::circuit(consecutive_failures = 2, window = "60s", open_for = "1s")]
    async fn flaky() -> Result<u32, &'static str> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(3) {
            Ok(n)
        } else {
            Err("flaky")
        }
    }

    // each call fails twice, then succeeds: three attempts, but one logical success
    for _ in 0..4 {
        assert!(flaky().await.is_ok());
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_rejects_the_call_over_the_limit_with_retry_after() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::rate_limit(rate = 2, per = "1s")]
    async fn limited(x: u32) -> Result<u32, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(x)
    }

    assert_eq!(limited(1).await.unwrap(), 1);
    assert_eq!(limited(2).await.unwrap(), 2);
    // GCRA at 2/s: the third unit is due 500 ms from now.
    match limited(3).await {
        Err(Error::RateLimited { retry_after, .. }) => assert_eq!(retry_after, Some(MS * 500)),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "the rejected call never ran"
    );
    sleep(MS * 500).await;
    assert_eq!(limited(4).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_in_wait_mode_delays_instead_of_rejecting() {
    #[resilient::rate_limit(rate = 1, per = "100ms", max_wait = "250ms")]
    async fn paced(x: u32) -> Result<u32, String> {
        Ok(x)
    }

    let start = Instant::now();
    assert_eq!(paced(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(paced(2).await.unwrap(), 2);
    assert_eq!(start.elapsed(), MS * 100);
    assert_eq!(paced(3).await.unwrap(), 3);
    assert_eq!(start.elapsed(), MS * 200);
    // Three callers at once: the third would wait 300 ms > max_wait, so it is rejected
    // at once with the time it would have had to wait.
    let (a, b, c) = tokio::join!(paced(4), paced(5), paced(6));
    assert_eq!((a.unwrap(), b.unwrap()), (4, 5));
    assert!(matches!(c, Err(Error::RateLimited { retry_after: Some(d), .. }) if d == MS * 300));
    assert_eq!(start.elapsed(), MS * 400);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_scope_decides_whether_retries_use_up_the_rate() {
    static PER_ATTEMPT: AtomicU32 = AtomicU32::new(0);
    static PER_CALL: AtomicU32 = AtomicU32::new(0);

    // Default scope = attempt: each attempt takes a unit; the third attempt within the
    // window is rejected by the limiter, which ends the call.
    #[resilient::rate_limit(algorithm = fixed_window, rate = 2, per = "1s")]
    #[resilient::retry(attempts = 3, backoff = immediate)]
    async fn per_attempt() -> Result<u32, String> {
        let n = PER_ATTEMPT.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(format!("attempt {n}"))
        } else {
            Ok(n)
        }
    }

    // scope = call: the call takes one unit, however many attempts it makes.
    #[resilient::rate_limit(algorithm = gcra, rate = 1, per = "1s", scope = call)]
    #[resilient::retry(attempts = 3, backoff = immediate)]
    async fn per_call() -> Result<u32, String> {
        let n = PER_CALL.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(format!("attempt {n}"))
        } else {
            Ok(n)
        }
    }

    let start = Instant::now();
    let r = per_attempt().await;
    assert_eq!(
        PER_ATTEMPT.load(Ordering::SeqCst),
        2,
        "the third attempt was limited"
    );
    assert!(
        matches!(
            r,
            Err(Error::RateLimited {
                retry_after: Some(_),
                ..
            })
        ),
        "{r:?}"
    );

    assert_eq!(per_call().await.unwrap(), 3);
    assert_eq!(PER_CALL.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(
        matches!(per_call().await, Err(Error::RateLimited { retry_after: Some(d), .. }) if d == MS * 1000)
    );
}

#[tokio::test(start_paused = true)]
async fn guards_of_a_phase_run_in_the_same_order_whatever_the_attribute_order() {
    // Per call, the breaker comes before the bulkhead: with the breaker open and the
    // bulkhead full, a call is told the circuit is open, whichever attribute is on top.
    fn breaker() -> CircuitBreaker {
        CircuitBreaker::consecutive_failures(1).build().unwrap()
    }
    static ONE: LazyLock<CircuitBreaker> = LazyLock::new(breaker);
    static TWO: LazyLock<CircuitBreaker> = LazyLock::new(breaker);

    #[resilient::circuit(breaker = ONE)]
    #[resilient::bulkhead(max_concurrent = 1)]
    async fn circuit_on_top(hold: bool) -> Result<(), ()> {
        if hold {
            sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    #[resilient::bulkhead(max_concurrent = 1)]
    #[resilient::circuit(breaker = TWO)]
    async fn bulkhead_on_top(hold: bool) -> Result<(), ()> {
        if hold {
            sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    // the second call comes once the first holds the only slot, and the breaker is open
    let (first, second) = tokio::join!(circuit_on_top(true), async {
        sleep(MS * 10).await;
        ONE.isolate();
        circuit_on_top(false).await
    });
    assert!(first.is_ok());
    assert!(
        matches!(second, Err(Error::CircuitOpen { .. })),
        "{second:?}"
    );
    let (first, second) = tokio::join!(bulkhead_on_top(true), async {
        sleep(MS * 10).await;
        TWO.isolate();
        bulkhead_on_top(false).await
    });
    assert!(first.is_ok());
    assert!(
        matches!(second, Err(Error::CircuitOpen { .. })),
        "{second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_does_not_use_up_the_rate_whatever_the_attribute_order() {
    fn breaker() -> CircuitBreaker {
        CircuitBreaker::consecutive_failures(1).build().unwrap()
    }
    static ONE: LazyLock<CircuitBreaker> = LazyLock::new(breaker);
    static TWO: LazyLock<CircuitBreaker> = LazyLock::new(breaker);

    #[resilient::rate_limit(rate = 1, per = "1h", scope = call)]
    #[resilient::circuit(breaker = ONE)]
    async fn limit_on_top() -> Result<(), ()> {
        Ok(())
    }

    #[resilient::circuit(breaker = TWO)]
    #[resilient::rate_limit(rate = 1, per = "1h", scope = call)]
    async fn circuit_on_top() -> Result<(), ()> {
        Ok(())
    }

    ONE.isolate();
    TWO.isolate();
    assert!(matches!(
        limit_on_top().await,
        Err(Error::CircuitOpen { .. })
    ));
    assert!(matches!(
        circuit_on_top().await,
        Err(Error::CircuitOpen { .. })
    ));
    ONE.reset();
    TWO.reset();
    // the rejected calls took no unit: the only one of the hour is still there
    assert!(limit_on_top().await.is_ok());
    assert!(circuit_on_top().await.is_ok());
    assert!(matches!(
        limit_on_top().await,
        Err(Error::RateLimited { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_not_retried_with_retry_on_timeout_false() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate, retry_on_timeout = false)]
    #[resilient::timeout(operation = "100ms")]
    async fn charge() -> Result<(), String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    let start = Instant::now();
    assert!(matches!(
        charge().await,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn rejected_attempts_are_retried_after_the_rejections_retry_after() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    static CAPPED: AtomicU32 = AtomicU32::new(0);

    // The limiter (per attempt) admits one attempt a second: the second attempt is
    // rejected, and retried once the limiter says it may be.
    #[resilient::retry(attempts = 3, backoff = immediate, retry_rejected = true)]
    #[resilient::rate_limit(rate = 1, per = "1s")]
    async fn paced() -> Result<u32, String> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 { Err("first".into()) } else { Ok(n) }
    }

    // The same, but the limiter's 1 s exceeds `max_server_delay`: retrying stops.
    #[resilient::retry(
        attempts = 3,
        backoff = immediate,
        retry_rejected = true,
        max_server_delay = "500ms"
    )]
    #[resilient::rate_limit(rate = 1, per = "1s")]
    async fn capped() -> Result<u32, String> {
        let n = CAPPED.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 { Err("first".into()) } else { Ok(n) }
    }

    let start = Instant::now();
    assert_eq!(paced().await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(matches!(capped().await, Err(Error::RateLimited { .. })));
    assert_eq!(CAPPED.load(Ordering::SeqCst), 1);
}

#[derive(Debug)]
struct Throttled(Duration);

impl RetryAfter for Throttled {
    fn retry_after(&self) -> Option<Duration> {
        Some(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn honor_retry_after_lets_the_error_direct_the_wait() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 2, backoff = constant("10s"), honor_retry_after = true)]
    async fn throttled() -> Result<u32, Throttled> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Throttled(MS * 250));
        }
        Ok(7)
    }

    let start = Instant::now();
    assert_eq!(throttled().await.unwrap(), 7);
    assert_eq!(start.elapsed(), MS * 250);
}

#[derive(Debug, Clone, PartialEq)]
enum Failure {
    Transient,
    Permanent,
}

/// Only transient failures count (and are retried).
#[derive(Default)]
struct OnlyTransient;

impl<T> Classify<T, Failure> for OnlyTransient {
    fn classify(&self, r: &Result<T, Failure>) -> Outcome {
        match r {
            Ok(_) => Outcome::Success,
            Err(Failure::Transient) => Outcome::Failure,
            Err(Failure::Permanent) => Outcome::Ignored,
        }
    }
}

fn only_transient(r: &Result<u8, Failure>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(Failure::Transient) => Outcome::Failure,
        Err(Failure::Permanent) => Outcome::Ignored,
    }
}

/// `classify =` also takes a function path or a closure that captures nothing.
#[tokio::test(start_paused = true)]
async fn classify_takes_a_function_or_a_closure() {
    static FN_CALLS: AtomicU32 = AtomicU32::new(0);
    static CLOSURE_CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate, classify = only_transient)]
    async fn by_fn(fail: Failure) -> Result<u8, Failure> {
        FN_CALLS.fetch_add(1, Ordering::SeqCst);
        Err(fail)
    }

    #[resilient::retry(
        attempts = 3,
        backoff = immediate,
        honor_retry_after = false,
        classify = |r| match r {
            Err(Failure::Transient) => Outcome::Failure,
            Err(Failure::Permanent) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
        }
    )]
    fn by_closure(fail: Failure) -> Result<u8, Failure> {
        CLOSURE_CALLS.fetch_add(1, Ordering::SeqCst);
        Err(fail)
    }

    assert!(matches!(
        by_fn(Failure::Permanent).await,
        Err(Error::Inner(Failure::Permanent))
    ));
    assert_eq!(FN_CALLS.load(Ordering::SeqCst), 1);
    assert!(matches!(
        by_fn(Failure::Transient).await,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(FN_CALLS.load(Ordering::SeqCst), 4);

    assert!(matches!(
        by_closure(Failure::Permanent),
        Err(Error::Inner(Failure::Permanent))
    ));
    assert_eq!(CLOSURE_CALLS.load(Ordering::SeqCst), 1);
    assert!(matches!(
        by_closure(Failure::Transient),
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(CLOSURE_CALLS.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn classify_decides_which_errors_are_retried_and_counted() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate, classify = OnlyTransient)]
    #[resilient::circuit(consecutive_failures = 1, open_for = "1m")]
    async fn call(fail: Failure) -> Result<(), Failure> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err(fail)
    }

    // A permanent error is neither retried nor counted by the breaker.
    assert!(matches!(
        call(Failure::Permanent).await,
        Err(Error::Inner(Failure::Permanent))
    ));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert!(matches!(
        call(Failure::Permanent).await,
        Err(Error::Inner(Failure::Permanent))
    ));
    // A transient one is retried, and the failed call opens the breaker.
    assert!(matches!(
        call(Failure::Transient).await,
        Err(Error::RetriesExhausted {
            attempts: 3,
            last: Failure::Transient
        })
    ));
    assert_eq!(CALLS.load(Ordering::SeqCst), 5);
    assert!(matches!(
        call(Failure::Permanent).await,
        Err(Error::CircuitOpen { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn circuit_trips_on_either_condition_and_can_count_attempts() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    // A failure rate that needs 100 calls, and 2 failures in a row: the second trips it.
    #[resilient::circuit(
        failure_rate = 1.0,
        window = 100,
        minimum_calls = 100,
        consecutive_failures = 2
    )]
    async fn down() -> Result<(), ()> {
        Err(())
    }

    // Per attempt: the two failed attempts of one call open the breaker, which rejects
    // the third attempt.
    #[resilient::retry(attempts = 3, backoff = immediate)]
    #[resilient::circuit(consecutive_failures = 2, scope = attempt)]
    async fn flaky() -> Result<u32, ()> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 { Err(()) } else { Ok(n) }
    }

    assert!(matches!(down().await, Err(Error::Inner(()))));
    assert!(matches!(down().await, Err(Error::Inner(()))));
    assert!(matches!(down().await, Err(Error::CircuitOpen { .. })));
    assert!(matches!(flaky().await, Err(Error::CircuitOpen { .. })));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_cost_takes_several_units_per_call() {
    #[resilient::rate_limit(rate = 10, per = "1s", cost = 4)]
    async fn heavy() -> Result<(), ()> {
        Ok(())
    }

    assert!(heavy().await.is_ok());
    assert!(heavy().await.is_ok());
    // 8 of the 10 units are used: a third call of 4 must wait 200 ms
    assert!(
        matches!(heavy().await, Err(Error::RateLimited { retry_after: Some(d), .. }) if d == MS * 200)
    );
}

static RETRIES_SEEN: AtomicU32 = AtomicU32::new(0);

fn count_retry(ev: &resilient::RetryEvent<'_>) {
    assert!(ev.attempt >= 1);
    RETRIES_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// `on_retry =` takes a function path or a closure, called before each retry wait.
#[tokio::test(start_paused = true)]
async fn on_retry_takes_a_function_or_a_closure() {
    static CLOSURE_SEEN: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 3, backoff = immediate, on_retry = count_retry)]
    async fn by_fn() -> Result<(), ()> {
        Err(())
    }

    #[resilient::retry(
        attempts = 4,
        backoff = immediate,
        on_retry = |ev| {
            assert_eq!(ev.reason, resilient::RetryReason::Error);
            CLOSURE_SEEN.fetch_add(1, Ordering::SeqCst);
        }
    )]
    fn by_closure() -> Result<(), ()> {
        Err(())
    }

    assert!(by_fn().await.is_err());
    assert_eq!(RETRIES_SEEN.load(Ordering::SeqCst), 2);
    assert!(by_closure().is_err());
    assert_eq!(CLOSURE_SEEN.load(Ordering::SeqCst), 3);
}

/// `key = arg`: one keyed limiter for the function, each key limited on its own.
#[tokio::test(start_paused = true)]
async fn rate_limit_with_a_key_limits_each_key_on_its_own() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::rate_limit(rate = 2, per = "1s", key = user)]
    async fn search(user: &str, q: String) -> Result<usize, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(user.len() + q.len())
    }

    assert_eq!(search("ada", "x".into()).await.unwrap(), 4);
    assert_eq!(search("ada", "yy".into()).await.unwrap(), 5);
    // the same key is limited, with the key's limit state
    let over = search("ada", "z".into()).await.unwrap_err();
    assert_eq!(over.retry_after(), Some(MS * 500));
    let info = over.rate_limit_info().expect("the key's state");
    assert_eq!((info.limit, info.remaining, info.quota), (2, 0, 2));
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "the rejected call never ran"
    );
    // another key is not
    assert_eq!(search("bob", "x".into()).await.unwrap(), 4);
    assert_eq!(search("bob", "x".into()).await.unwrap(), 4);
    assert!(matches!(
        search("bob", "x".into()).await,
        Err(Error::RateLimited { .. })
    ));
    // a `String` of the same text is the same key
    let ada = String::from("ada");
    assert!(search(&ada, "z".into()).await.is_err());
    sleep(MS * 500).await;
    assert!(search(&ada, "z".into()).await.is_ok());
}

/// Any `Hash` argument is a key (here an integer, and a field of an argument); a key
/// takes `cost`, waits in wait mode, and blocking functions are limited too.
#[tokio::test(start_paused = true)]
async fn rate_limit_keys_take_any_hash_value_cost_and_wait() {
    #[derive(Clone)]
    struct Req {
        tenant: u64,
        body: &'static str,
    }

    #[resilient::rate_limit(algorithm = fixed_window, rate = 10, per = "1s", cost = 4, key = tenant)]
    fn blocking(tenant: u64) -> Result<u64, ()> {
        Ok(tenant)
    }

    #[resilient::rate_limit(rate = 1, per = "100ms", max_wait = "250ms", key = req.tenant,
                            max_keys = 1000)]
    async fn paced(req: Req) -> Result<&'static str, ()> {
        Ok(req.body)
    }

    assert_eq!(blocking(1).unwrap(), 1);
    assert_eq!(blocking(1).unwrap(), 1);
    assert!(matches!(blocking(1), Err(Error::RateLimited { .. })));
    assert_eq!(blocking(2).unwrap(), 2);

    let req = |tenant, body| Req { tenant, body };
    let start = Instant::now();
    assert_eq!(paced(req(1, "a")).await.unwrap(), "a");
    assert_eq!(paced(req(2, "b")).await.unwrap(), "b");
    assert_eq!(start.elapsed(), Duration::ZERO);
    // tenant 1 waits for its next slot; tenant 2's call did not use it
    assert_eq!(paced(req(1, "c")).await.unwrap(), "c");
    assert_eq!(start.elapsed(), MS * 100);
    // three more of tenant 1 at once: the third would wait 300 ms > 250 ms
    let (a, b, c) = tokio::join!(paced(req(1, "d")), paced(req(1, "e")), paced(req(1, "f")));
    assert_eq!((a.unwrap(), b.unwrap()), ("d", "e"));
    assert!(matches!(c, Err(Error::RateLimited { retry_after: Some(d), .. }) if d == MS * 300));
}

/// A keyed limiter follows `scope` like the unkeyed one: per attempt by default, once per
/// call with `scope = call`.
#[tokio::test(start_paused = true)]
async fn rate_limit_key_scope_decides_whether_retries_use_up_the_keys_rate() {
    static PER_ATTEMPT: AtomicU32 = AtomicU32::new(0);
    static PER_CALL: AtomicU32 = AtomicU32::new(0);

    #[resilient::rate_limit(algorithm = fixed_window, rate = 2, per = "1s", key = user)]
    #[resilient::retry(attempts = 3, backoff = immediate)]
    async fn per_attempt(user: u32) -> Result<u32, String> {
        let n = PER_ATTEMPT.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(format!("attempt {n}"))
        } else {
            Ok(user)
        }
    }

    #[resilient::rate_limit(rate = 1, per = "1s", key = user, scope = call)]
    #[resilient::retry(attempts = 3, backoff = immediate)]
    async fn per_call(user: u32) -> Result<u32, String> {
        let n = PER_CALL.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 3 {
            Err(format!("attempt {n}"))
        } else {
            Ok(user)
        }
    }

    // the third attempt is over user 7's limit of 2
    assert!(matches!(
        per_attempt(7).await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(PER_ATTEMPT.load(Ordering::SeqCst), 2);
    // user 8 has its own limit: admitted (and the body, on its third run, succeeds)
    assert_eq!(per_attempt(8).await.unwrap(), 8);

    // one unit for the call, however many attempts
    assert_eq!(per_call(7).await.unwrap(), 7);
    assert_eq!(PER_CALL.load(Ordering::SeqCst), 3);
    assert!(matches!(per_call(7).await, Err(Error::RateLimited { .. })));
    assert_eq!(per_call(8).await.unwrap(), 8);
}

/// A response returned as `Ok`, as HTTP clients do for every status.
#[derive(Debug, Clone, PartialEq)]
struct Response {
    status: u16,
    retry_after: Option<Duration>,
}

fn retryable_status(r: &Result<Response, Failure>) -> bool {
    matches!(
        r,
        Ok(Response {
            status: 429 | 503,
            ..
        }) | Err(Failure::Transient)
    )
}

/// `retry_if =` and `delay_from =`: a 503 or 429 returned as `Ok` is retried after the
/// server's `Retry-After` instead of the backoff; a 501 counts as a failure for the breaker
/// but is not retried; a 404 is neither.
#[tokio::test(start_paused = true)]
async fn retry_if_and_delay_from_follow_a_successful_response() {
    // (status, Retry-After in ms) of each attempt, in order
    static SCRIPT: std::sync::Mutex<Vec<(u16, Option<u64>)>> = std::sync::Mutex::new(Vec::new());
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(
        attempts = 4,
        backoff = constant("10s"),
        classify = |r| match r {
            Ok(Response { status, .. }) if *status >= 500 || *status == 429 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        },
        retry_if = retryable_status,
        delay_from = |r| r.as_ref().ok().and_then(|resp| resp.retry_after)
    )]
    #[resilient::circuit(consecutive_failures = 2, open_for = "1h")]
    async fn get() -> Result<Response, Failure> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        let (status, after) = SCRIPT.lock().unwrap().remove(0);
        Ok(Response {
            status,
            retry_after: after.map(Duration::from_millis),
        })
    }
    let script = |s: &[(u16, Option<u64>)]| *SCRIPT.lock().unwrap() = s.to_vec();

    // 503 (asks 1.25 s), 429 (asks 1 s), then 200: two server-directed waits, no backoff.
    script(&[(503, Some(1250)), (429, Some(1000)), (200, None)]);
    let start = Instant::now();
    assert_eq!(get().await.unwrap().status, 200);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), MS * 2250);

    // A 503 without Retry-After falls back to the backoff (10 s).
    script(&[(503, None), (200, None)]);
    let start = Instant::now();
    assert_eq!(get().await.unwrap().status, 200);
    assert_eq!(CALLS.load(Ordering::SeqCst), 5);
    assert_eq!(start.elapsed(), MS * 10_000);

    // 404 is a success to the breaker and not retried.
    script(&[(404, None), (200, None)]);
    assert_eq!(get().await.unwrap().status, 404);
    assert_eq!(CALLS.load(Ordering::SeqCst), 6);

    // 501 is a failure that is not retried: one attempt, and the caller gets the
    // response; two in a row open the breaker.
    script(&[(501, None), (501, None), (200, None)]);
    assert_eq!(get().await.unwrap().status, 501);
    assert_eq!(get().await.unwrap().status, 501);
    assert_eq!(CALLS.load(Ordering::SeqCst), 8);
    assert!(matches!(get().await, Err(Error::CircuitOpen { .. })));
    assert_eq!(CALLS.load(Ordering::SeqCst), 8);
}

/// `adaptive = aimd(initial, min)`: the limit starts low and grows while calls succeed.
#[tokio::test(start_paused = true)]
async fn an_adaptive_bulkhead_starts_at_its_initial_limit_and_grows() {
    #[resilient::bulkhead(max_concurrent = 4, adaptive = aimd(1, 1))]
    async fn work() -> Result<(), ()> {
        sleep(MS * 10).await;
        Ok(())
    }

    // limit 1: of two callers at once, one is turned away
    let (a, b) = tokio::join!(work(), work());
    assert!(a.is_ok());
    assert!(matches!(b, Err(Error::BulkheadFull)));
    // a success with at least half the limit in use raises it by one: calls one at a
    // time take it to 3
    for _ in 0..4 {
        work().await.unwrap();
    }
    let rejected = |results: &[Result<(), Error<()>>]| {
        results
            .iter()
            .filter(|r| matches!(r, Err(Error::BulkheadFull)))
            .count()
    };
    let (a, b, c, d) = tokio::join!(work(), work(), work(), work());
    assert_eq!(rejected(&[a, b, c, d]), 1, "a limit of 3");
    // three at once took it to 4, the most `max_concurrent` allows
    let (a, b, c, d, e) = tokio::join!(work(), work(), work(), work(), work());
    let rejected = rejected(&[a, b, c, d, e]);
    assert_eq!(rejected, 1, "never above max_concurrent");
}

/// Answers for item 1 only; it sees the caller's error after the retries gave up.
async fn secondary(failure: Error<String>) -> Result<u32, Error<String>> {
    assert!(matches!(
        failure,
        Error::RetriesExhausted { attempts: 2, .. }
    ));
    match failure.inner().map(String::as_str) {
        Some("primary: 1") => Ok(100),
        _ => Err(Error::Inner("secondary down".into())),
    }
}

/// `#[resilient::fallback]` stacks with the other attributes as the outermost phase: the
/// retries run first, then the alternatives in order, then the constant.
#[tokio::test(start_paused = true)]
async fn fallback_answers_after_the_pipeline_gives_up() {
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[resilient::retry(attempts = 2, backoff = immediate)]
    #[resilient::fallback(
        with = [secondary, |_f: Error<String>| async { Err(Error::Inner("cache miss".to_string())) }],
        value = 7
    )]
    async fn price(id: u32) -> Result<u32, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err(format!("primary: {id}"))
    }

    // both attempts fail; the secondary answers for id 1 (it got the caller's error)
    assert_eq!(price(1).await.unwrap(), 100);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    // for id 2 the secondary and the cache fail, and the constant answers
    assert_eq!(price(2).await.unwrap(), 7);
    assert_eq!(CALLS.load(Ordering::SeqCst), 4);

    // `handle`: only strategy verdicts are answered, not the caller's own errors
    #[resilient::circuit(consecutive_failures = 1, open_for = "1m")]
    #[resilient::fallback(value = 0, handle = |e: &Error<String>| e.is_transient())]
    async fn guarded() -> Result<u32, String> {
        Err("bad input".into())
    }
    assert_eq!(guarded().await, Err(Error::Inner("bad input".into())));
    // the failure opened the breaker: its rejection is answered
    assert_eq!(guarded().await, Ok(0));
}

/// When every alternative fails, the caller sees each failure in order.
#[tokio::test]
async fn fallback_reports_every_failure_when_all_fail() {
    async fn also_down(_: Error<String>) -> Result<u8, Error<String>> {
        Err(Error::BulkheadFull)
    }

    #[resilient::fallback(with = also_down)]
    async fn call() -> Result<u8, String> {
        Err("primary".into())
    }

    match call().await {
        Err(Error::Fallback { failures }) => {
            assert_eq!(failures.len(), 2);
            assert!(matches!(failures[1], Error::BulkheadFull));
        }
        other => panic!("{other:?}"),
    }
}

/// `#[resilient::hedge]` stacks with the others into one pipeline: hedges pass the
/// operation timeout and a per-attempt breaker, the retry retries an attempt whose hedges
/// all failed, and a fallback answers last.
#[tokio::test(start_paused = true)]
async fn hedge_stacks_with_timeout_retry_circuit_and_fallback() {
    static STARTED: AtomicU32 = AtomicU32::new(0);

    #[resilient::timeout(operation = "100ms")]
    #[resilient::retry(attempts = 2, backoff = immediate, retry_on_timeout = true)]
    #[resilient::circuit(consecutive_failures = 10, scope = attempt)]
    #[resilient::hedge(delay = "30ms", max_hedges = 1, idempotent = true)]
    #[resilient::fallback(value = 0)]
    async fn lookup(key: u32) -> Result<u32, String> {
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        // attempt 1 and its hedge hang past the operation timeout; attempt 2 answers
        if n < 2 {
            sleep(MS * 1000).await;
        }
        Ok(key + n)
    }

    let start = Instant::now();
    assert_eq!(lookup(10).await, Ok(12));
    assert_eq!(STARTED.load(Ordering::SeqCst), 3);
    // the original timed out at 100 ms and its hedge (started at 30 ms) at 130 ms
    assert_eq!(start.elapsed(), MS * 130);
}

/// `#[resilient::hedge(percentile = ..)]`: the delay is learned from the function's own
/// calls (the initial `delay` until 20 latencies are known).
#[tokio::test(start_paused = true)]
async fn a_percentile_hedge_learns_its_delay_from_the_calls() {
    static SLOW_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static STARTED: AtomicU32 = AtomicU32::new(0);

    #[resilient::hedge(percentile = 0.5, delay = "1s", idempotent = true)]
    async fn fetch() -> Result<u32, String> {
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        if SLOW_FIRST.load(Ordering::SeqCst) && n == 20 {
            sleep(MS * 60_000).await; // stuck: only a hedge answers
        }
        sleep(MS * 20).await;
        Ok(n)
    }

    for _ in 0..20 {
        assert!(fetch().await.is_ok());
    }
    SLOW_FIRST.store(true, Ordering::SeqCst);
    let start = Instant::now();
    assert_eq!(fetch().await, Ok(21));
    // hedged after the learned 20 ms (not the initial 1 s), answering 20 ms later
    assert_eq!(start.elapsed(), MS * 40);
}

/// `#[resilient::health_aware]` stacks with a fallback: while the background check says
/// unhealthy, the body does not run and the fallback answers.
#[tokio::test(start_paused = true)]
async fn health_aware_rejects_fast_and_the_fallback_answers() {
    static UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    static RAN: AtomicU32 = AtomicU32::new(0);

    async fn probe() -> bool {
        UP.load(Ordering::SeqCst)
    }

    #[resilient::health_aware(check_interval = "10s", probe = probe, unhealthy_after = 1, healthy_after = 1)]
    #[resilient::retry(attempts = 2, backoff = immediate)]
    #[resilient::fallback(value = 0)]
    async fn quote(item: u32) -> Result<u32, String> {
        RAN.fetch_add(1, Ordering::SeqCst);
        Ok(item * 100)
    }

    assert_eq!(quote(3).await, Ok(300));
    UP.store(false, Ordering::SeqCst);
    sleep(Duration::from_secs(11)).await;
    assert_eq!(quote(3).await, Ok(0));
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "rejected without running");
    UP.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(10)).await;
    assert_eq!(quote(4).await, Ok(400));
}
