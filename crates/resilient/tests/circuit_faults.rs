//! Circuit-breaker behaviour under faults and edge cases: exact rate thresholds, panics,
//! deadlines, hung probes, stale results, misbehaving observers and clocks.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use resilient::circuit::{CircuitBreakerBuilder, Window};
use resilient::{
    Acquire, CircuitBreaker, CircuitState, Context, Guard, ManualClock, Outcome,
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
            builder.retry(Retry::immediate().attempts(2)).circuit_breaker(&b)
        } else {
            builder.circuit_breaker(&b).retry(Retry::immediate().attempts(2))
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
