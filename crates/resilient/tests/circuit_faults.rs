//! Circuit-breaker behaviour under faults and edge cases: exact rate thresholds, panics,
//! deadlines, hung probes, stale results, misbehaving observers and clocks.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use resilient::circuit::{CircuitBreakerBuilder, Window};
use resilient::{
    Acquire, CircuitBreaker, CircuitEvent, CircuitState, Context, Guard, ManualClock, Outcome,
    Permit, Rejection,
};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn build(b: CircuitBreakerBuilder) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = b.clock(Arc::new(clock.clone())).build().expect("valid");
    (breaker, clock)
}

fn admit(b: &CircuitBreaker) -> Result<Permit<'_>, Rejection> {
    match b.acquire(&Context::new()) {
        Acquire::Ready(r) => r,
        Acquire::Wait(_) => panic!("a breaker never makes callers wait"),
    }
}

fn call(b: &CircuitBreaker, outcome: Outcome, took: Duration) {
    admit(b).expect("admitted").record(outcome, took);
}

fn ok(b: &CircuitBreaker) {
    call(b, Outcome::Success, MS);
}

fn fail(b: &CircuitBreaker) {
    call(b, Outcome::Failure, MS);
}

fn retry_after(b: &CircuitBreaker) -> Option<Duration> {
    match admit(b) {
        Err(Rejection::CircuitOpen { retry_after }) => retry_after,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

// ---- exact rate thresholds ------------------------------------------------------------

#[test]
fn two_thirds_failure_rate_opens_on_f_s_f() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(2.0 / 3.0)
            .window(Window::count(3))
            .minimum_calls(3),
    );
    fail(&b);
    ok(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "2 of 3 is exactly 2/3");
}

#[test]
fn two_thirds_slow_call_rate_opens() {
    let (b, _clock) = build(
        CircuitBreaker::consecutive_failures(u32::MAX)
            .slow_calls(SEC, 2.0 / 3.0)
            .window(Window::count(3))
            .minimum_calls(3),
    );
    call(&b, Outcome::Success, 2 * SEC);
    call(&b, Outcome::Success, MS);
    call(&b, Outcome::Success, 2 * SEC);
    assert_eq!(b.state(), CircuitState::Open, "2 slow of 3 is exactly 2/3");
}

#[test]
fn a_tiny_rate_is_not_rounded_to_nothing() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(1e-9)
            .window(Window::count(5))
            .minimum_calls(5),
    );
    for _ in 0..4 {
        ok(&b);
    }
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

/// Fills a count window of `n` calls with `k` failures (last) against rate `p/q`; returns
/// whether it opened.
fn opens(p: u64, q: u64, n: u32, k: u32) -> bool {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(p as f64 / q as f64)
            .window(Window::count(n))
            .minimum_calls(n),
    );
    // successes first: the window only judges once it is full
    for _ in 0..n - k {
        ok(&b);
    }
    for _ in 0..k {
        fail(&b);
    }
    b.state() == CircuitState::Open
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A window of `n` calls holding `k` failures opens exactly when k/n >= p/q.
    #[test]
    fn rate_threshold_is_exact(q in 1u64..=1000, p_seed: u64, n in 1u32..=400, k_seed: u32) {
        let p = 1 + p_seed % q;
        let k = k_seed % (n + 1);
        let expected = u64::from(k) * q >= p * u64::from(n);
        prop_assert_eq!(opens(p, q, n, k), expected, "{} of {} against {}/{}", k, n, p, q);
    }

    /// Windows that are a multiple of the rate's denominator: exactly at the rate opens,
    /// one failure fewer does not.
    #[test]
    fn rate_exactly_at_threshold_opens(q in 1u64..=60, p_seed: u64, m in 1u32..=6, below: bool) {
        let p = 1 + p_seed % q;
        let n = q as u32 * m;
        let at = p as u32 * m;
        if below {
            prop_assert!(!opens(p, q, n, at - 1), "{} of {} against {}/{}", at - 1, n, p, q);
        } else {
            prop_assert!(opens(p, q, n, at), "{} of {} against {}/{}", at, n, p, q);
        }
    }
}

// ---- panics are failures ----------------------------------------------------------------

fn panicking_breaker() -> CircuitBreaker {
    CircuitBreaker::consecutive_failures(3)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn boom() -> Result<(), std::io::Error> {
    panic!("the operation panicked")
}

#[tokio::test(start_paused = true)]
async fn a_panicking_standalone_call_trips_the_breaker() {
    let b = panicking_breaker();
    for _ in 0..3 {
        let b = b.clone();
        let joined = tokio::spawn(async move { b.call(boom).await }).await;
        assert!(joined.unwrap_err().is_panic());
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_panic_is_caught_around_poll_still_counts() {
    use std::future::{Future, poll_fn};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let b = panicking_breaker();
    for _ in 0..3 {
        let mut fut = std::pin::pin!(b.call(boom));
        let caught = poll_fn(|cx| {
            std::task::Poll::Ready(catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))))
        })
        .await;
        assert!(caught.is_err());
        // the future is only dropped now, outside the unwind
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn a_panicking_blocking_call_trips_the_breaker() {
    let b = panicking_breaker();
    for _ in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.call_blocking(|| -> Result<(), ()> { panic!("the operation panicked") })
        }));
        assert!(r.is_err());
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_operation_trips_a_pipeline_breaker() {
    use resilient::{Pipeline, Retry};
    for per_attempt in [false, true] {
        let b = panicking_breaker();
        let builder = Pipeline::builder();
        let p = if per_attempt {
            builder
                .retry(Retry::immediate().attempts(2))
                .circuit_breaker(&b)
        } else {
            builder
                .circuit_breaker(&b)
                .retry(Retry::immediate().attempts(2))
        }
        .build()
        .unwrap();
        for _ in 0..3 {
            let p = p.clone();
            let joined = tokio::spawn(async move { p.execute(boom).await }).await;
            assert!(joined.unwrap_err().is_panic());
        }
        assert_eq!(b.state(), CircuitState::Open, "per attempt: {per_attempt}");
    }
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn a_panicking_service_trips_the_breaker_layer() {
    use tower::{Service, ServiceExt, service_fn};
    let b = panicking_breaker();
    for _ in 0..3 {
        let mut svc = tower::ServiceBuilder::new()
            .layer(b.layer())
            .service(service_fn(|_: ()| boom()));
        let joined = tokio::spawn(async move { svc.ready().await.unwrap().call(()).await }).await;
        assert!(joined.unwrap_err().is_panic());
    }
    assert_eq!(b.state(), CircuitState::Open);
}

// ---- a deadline that fires is a failure ------------------------------------------------

async fn hang() -> Result<(), std::io::Error> {
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_counts_for_a_breaker_after_retry() {
    use resilient::{Error, Pipeline, Retry, Timeout};
    let b = CircuitBreaker::consecutive_failures(2)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    for per_call_too in [false, true] {
        b.reset();
        let other = CircuitBreaker::consecutive_failures(100).build().unwrap();
        let mut builder = Pipeline::builder().timeout(Timeout::request(SEC));
        if per_call_too {
            // a per-call guard moves the deadline timer into the per-call phase
            builder = builder.circuit_breaker(&other);
        }
        let p = builder
            .retry(Retry::immediate().attempts(3))
            .circuit_breaker(&b)
            .build()
            .unwrap();
        for _ in 0..2 {
            let r = p.execute(hang).await;
            assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        }
        assert_eq!(
            b.state(),
            CircuitState::Open,
            "per-call guard too: {per_call_too}"
        );
        let r = p.execute(hang).await;
        assert!(matches!(r, Err(Error::CircuitOpen { .. })), "{r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_pipeline_call_is_still_not_counted() {
    use resilient::{Pipeline, Retry};
    let b = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .circuit_breaker(&b)
        .build()
        .unwrap();
    let r = tokio::time::timeout(SEC, p.execute(hang)).await;
    assert!(r.is_err());
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn a_layer_under_tower_timeout_counts_timeouts_past_its_call_timeout() {
    use tower::timeout::TimeoutLayer;
    use tower::{Service, ServiceExt, service_fn};
    let b = CircuitBreaker::consecutive_failures(2)
        .call_timeout(Duration::from_millis(900))
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = |timeout: Duration| {
        tower::ServiceBuilder::new()
            .layer(TimeoutLayer::new(timeout))
            .layer(b.layer())
            .service(service_fn(|_: ()| hang()))
    };
    // dropped before the call timeout: a cancellation
    for _ in 0..3 {
        let mut s = svc(Duration::from_millis(500));
        assert!(s.ready().await.unwrap().call(()).await.is_err());
    }
    assert_eq!(b.state(), CircuitState::Closed);
    // dropped by a timeout the breaker's call timeout anticipates: failures
    for _ in 0..2 {
        let mut s = svc(SEC);
        assert!(s.ready().await.unwrap().call(()).await.is_err());
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_standalone_call_under_a_timeout_defaults_to_the_slow_call_duration() {
    let b = CircuitBreaker::consecutive_failures(2)
        .slow_calls(Duration::from_millis(800), 1.0)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(tokio::time::timeout(SEC, b.call(hang)).await.is_err());
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn a_zero_call_timeout_is_rejected() {
    let err = CircuitBreaker::consecutive_failures(1)
        .call_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.call_timeout");
}

// ---- the half-open phase is bounded ------------------------------------------------------

#[test]
fn max_half_open_wait_reopens_even_with_free_probe_permits() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .half_open_probes(4)
            .max_half_open_wait(5 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    let hung = admit(&b).expect("first probe");
    clock.advance(5 * SEC);
    assert!(admit(&b).is_err(), "no probe admitted past the wait");
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.snapshot().failed_recoveries, 1);
    drop(hung);
}

#[test]
fn a_probe_result_after_the_wait_is_not_counted() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .max_half_open_wait(5 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    let late = admit(&b).expect("probe");
    clock.advance(6 * SEC);
    late.record(Outcome::Success, 6 * SEC);
    assert_eq!(b.state(), CircuitState::Open, "the phase was over");
}

#[test]
fn by_default_a_hung_probe_is_given_up_after_one_break() {
    let (b, clock) = build(CircuitBreaker::consecutive_failures(1).open_for(10 * SEC));
    fail(&b);
    clock.advance(10 * SEC);
    let _hung = admit(&b).expect("probe");
    clock.advance(9 * SEC);
    assert!(admit(&b).is_err(), "half-open, probe busy");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    clock.advance(SEC);
    assert_eq!(retry_after(&b), Some(10 * SEC), "reopened for a new break");
    clock.advance(10 * SEC);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed, "a new probe closed it");
}

#[test]
fn half_open_rejections_say_how_long_the_phase_may_last() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .max_half_open_wait(5 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    let _probe = admit(&b).expect("probe");
    clock.advance(2 * SEC);
    assert_eq!(retry_after(&b), Some(3 * SEC));
}

// ---- stale results, misbehaving observers --------------------------------------------------

/// A store whose next `load` first lets another transition happen, then answers with the
/// word it saw before it: the caller acts on a state that has just been replaced.
#[derive(Default)]
struct RacingStore {
    local: resilient::circuit::LocalStore,
    #[allow(clippy::type_complexity)]
    before_next_load: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for RacingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RacingStore")
    }
}

impl resilient::circuit::StateStore for RacingStore {
    fn load(&self) -> resilient::circuit::StateWord {
        let hook = self.before_next_load.lock().unwrap().take();
        let seen = self.local.load();
        if let Some(hook) = hook {
            hook();
        }
        seen
    }
    fn compare_exchange(
        &self,
        current: resilient::circuit::StateWord,
        new: resilient::circuit::StateWord,
    ) -> Result<(), resilient::circuit::StateWord> {
        self.local.compare_exchange(current, new)
    }
    fn load_deadline(&self) -> resilient::circuit::PhaseDeadline {
        self.local.load_deadline()
    }
    fn compare_exchange_deadline(
        &self,
        current: resilient::circuit::PhaseDeadline,
        new: resilient::circuit::PhaseDeadline,
    ) -> Result<(), resilient::circuit::PhaseDeadline> {
        self.local.compare_exchange_deadline(current, new)
    }
}

#[test]
fn a_late_failure_does_not_count_in_the_next_closed_phase() {
    let store = Arc::new(RacingStore::default());
    let (b, _clock) = build(CircuitBreaker::consecutive_failures(2).store(store.clone()));
    let old = admit(&b).expect("admitted in the first closed phase");
    let other = b.clone();
    // the phase ends (a reset: a new closed phase) just as the old call records
    *store.before_next_load.lock().unwrap() = Some(Box::new(move || other.reset()));
    old.record(Outcome::Failure, MS);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "one failure of this phase");
    assert_eq!(b.snapshot().consecutive_failures, 1);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_observer_cannot_break_calls() {
    use resilient::{Error, Pipeline};
    let b = CircuitBreaker::consecutive_failures(2)
        .open_for(SEC)
        .observer(|_: &str, _: &CircuitEvent| panic!("observer bug"))
        .build()
        .unwrap();
    let p = Pipeline::builder().circuit_breaker(&b).build().unwrap();
    for _ in 0..2 {
        let r = p.execute(|| async { Err::<(), _>("down") }).await;
        assert!(matches!(r, Err(Error::Inner("down"))), "{r:?}");
    }
    assert_eq!(b.state(), CircuitState::Open);
    let r = p.execute(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })), "{r:?}");
    let r = b.call(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })), "{r:?}");
    tokio::time::sleep(SEC).await;
    // the probe (its transition event panics in the observer) still closes the breaker
    b.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().probes_in_flight, 0);
}

// ---- clocks far ahead or stepping back ----------------------------------------------------

const YEAR: Duration = Duration::from_secs(365 * 86_400);

#[test]
fn a_clock_read_far_ahead_keeps_breaks() {
    let (b, clock) = build(CircuitBreaker::consecutive_failures(1).open_for(30 * SEC));
    clock.set(200 * YEAR);
    fail(&b);
    clock.advance(10 * SEC);
    assert_eq!(retry_after(&b), Some(20 * SEC), "still open");
    assert!(!b.is_ready());
    assert_eq!(b.snapshot().retry_after, Some(20 * SEC));
    clock.advance(20 * SEC);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed);
    // near the end of what a ManualClock can read
    clock.set(Duration::from_micros(u64::MAX / 1000) - YEAR);
    fail(&b);
    clock.advance(29 * SEC);
    assert_eq!(retry_after(&b), Some(SEC));
}

/// A clock that can be set anywhere, backwards too (a misbehaving custom clock).
#[derive(Debug, Default, Clone)]
struct SteppingClock(Arc<std::sync::atomic::AtomicU64>);

impl SteppingClock {
    fn set(&self, to: Duration) {
        self.0
            .store(to.as_nanos() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl resilient::Clock for SteppingClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[test]
fn a_clock_stepping_back_locks_out_for_at_most_the_longest_break() {
    let clock = SteppingClock::default();
    let b = CircuitBreaker::consecutive_failures(1)
        .open_for(30 * SEC)
        .break_backoff(2.0, 60 * SEC)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    clock.set(10_000 * SEC);
    fail(&b); // open until 10_030 s
    clock.set(SEC); // the clock steps back by almost three hours
    let wait = retry_after(&b).expect("open");
    assert!(wait <= 60 * SEC, "{wait:?}");
    clock.set(SEC + wait);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_hung_probe_under_a_clock_stepping_back_is_given_up_in_time() {
    let clock = SteppingClock::default();
    let b = CircuitBreaker::consecutive_failures(1)
        .open_for(SEC)
        .max_half_open_wait(5 * SEC)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    clock.set(10_000 * SEC);
    fail(&b);
    clock.set(10_001 * SEC);
    let _hung = admit(&b).expect("probe");
    clock.set(SEC);
    assert!(retry_after(&b).expect("half-open") <= 5 * SEC);
    clock.set(6 * SEC);
    assert!(admit(&b).is_err());
    assert_eq!(b.state(), CircuitState::Open, "the half-open wait ended");
}

#[test]
fn an_endless_break_saturates() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(Duration::MAX)
            .break_backoff(2.0, Duration::MAX),
    );
    clock.set(100 * YEAR);
    fail(&b);
    let wait = retry_after(&b).expect("open");
    assert!(wait > 30 * YEAR, "{wait:?}");
    clock.advance(YEAR);
    assert!(retry_after(&b).expect("still open") < wait);
}

// ---- health checks with extreme durations ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_health_check_with_an_endless_interval_keeps_running() {
    use resilient::circuit::{HealthCheck, HealthState};
    for (interval, timeout) in [(Duration::MAX, Duration::MAX), (SEC, Duration::MAX)] {
        let probes = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = probes.clone();
        let b = CircuitBreaker::consecutive_failures(1)
            .health_check(
                HealthCheck::new(interval, move || {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { true }
                })
                .timeout(timeout),
            )
            .build()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(b.health(), Some(HealthState::Healthy), "the task is alive");
        let expected = if interval == SEC { 10 } else { 0 };
        assert_eq!(probes.load(std::sync::atomic::Ordering::SeqCst), expected);
    }
}

/// Found by the loom model: a caller that saw the break end while another caller ended
/// it first was rejected with an invented "open for another break" instead of looking at
/// the new half-open state.
#[test]
fn losing_the_race_to_end_the_break_still_finds_a_free_probe_permit() {
    let store = Arc::new(RacingStore::default());
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .half_open_probes(2)
            .store(store.clone()),
    );
    fail(&b);
    clock.advance(SEC);
    let other = b.clone();
    *store.before_next_load.lock().unwrap() = Some(Box::new(move || {
        // another caller ends the break first and probes successfully
        admit(&other)
            .expect("first probe")
            .record(Outcome::Success, MS);
    }));
    let second = admit(&b);
    assert!(second.is_ok(), "{second:?}");
    second.unwrap().record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_panicking_blocking_operation_trips_a_pipeline_breaker_and_gives_back_its_slot() {
    use resilient::{Bulkhead, Error, Pipeline};
    // Alone, the breaker's permit is held on its own; with a bulkhead, in a list.
    for with_bulkhead in [false, true] {
        let b = panicking_breaker();
        let bulkhead = Bulkhead::builder(1).build().unwrap();
        let builder = Pipeline::builder().circuit_breaker(&b);
        let p = if with_bulkhead {
            builder.bulkhead(&bulkhead)
        } else {
            builder
        }
        .build()
        .unwrap();
        for _ in 0..3 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                p.execute_blocking(|| -> Result<(), ()> { panic!("the operation panicked") })
            }));
            assert!(r.is_err());
            assert_eq!(bulkhead.in_flight(), 0, "bulkhead: {with_bulkhead}");
        }
        assert_eq!(b.state(), CircuitState::Open, "bulkhead: {with_bulkhead}");
        assert!(matches!(
            p.execute_blocking(|| Ok::<_, ()>(())),
            Err(Error::CircuitOpen { .. })
        ));
    }
}
