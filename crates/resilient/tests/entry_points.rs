//! Every strategy is reachable the same ways, with the same names: standalone, in a
//! `Pipeline` (built strategy, reference or builder), and as a tower layer; `_with` means
//! the operation receives its `Context`.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::ratelimit::{Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, Timeout};
use tokio::sync::oneshot;
use tower::{Service, ServiceExt, service_fn};

/// Clones of a bulkhead share its slots, whichever way it is used: standalone, in two
/// pipelines (by reference) and as a tower layer.
#[tokio::test(start_paused = true)]
async fn one_bulkhead_four_ways_shares_its_slots() {
    let bulkhead = Bulkhead::builder(1).build().unwrap();
    let (release, hold) = oneshot::channel::<()>();
    let held = {
        let b = bulkhead.clone();
        tokio::spawn(async move {
            b.call(|| async move {
                hold.await.unwrap();
                Ok::<_, ()>(())
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(bulkhead.in_flight(), 1);

    let a = Pipeline::builder().bulkhead(&bulkhead).build().unwrap();
    let b = Pipeline::builder()
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    for p in [&a, &b] {
        let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
        assert!(matches!(r, Err(Error::BulkheadFull)), "{r:?}");
    }
    let mut svc = tower::ServiceBuilder::new()
        .layer(bulkhead.layer())
        .service(service_fn(
            |x: u32| async move { Ok::<_, std::io::Error>(x) },
        ));
    let r = svc.ready().await.unwrap().call(1).await;
    assert!(matches!(r, Err(Error::BulkheadFull)), "{r:?}");
    let r = bulkhead.call_blocking(|| Ok::<_, ()>(()));
    assert!(matches!(r, Err(Error::BulkheadFull)), "{r:?}");

    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    assert_eq!(bulkhead.in_flight(), 0);
    let r: Result<u8, Error<()>> = a.execute(|| async { Ok(1) }).await;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
}

/// A standalone bulkhead call gives its slot back when the caller drops it while queued
/// or running, and when the operation panics.
#[tokio::test(start_paused = true)]
async fn a_standalone_bulkhead_call_releases_its_slot_on_drop_and_panic() {
    let bulkhead = Bulkhead::builder(1).queue(1).build().unwrap();
    let running = bulkhead.call(std::future::pending::<Result<(), ()>>);
    let r = tokio::time::timeout(Duration::from_secs(1), running).await;
    assert!(r.is_err());
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));

    let b = bulkhead.clone();
    let panicked = tokio::spawn(async move {
        b.call(|| async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), ()>(())
        })
        .await
    })
    .await;
    assert!(panicked.is_err());
    assert_eq!(bulkhead.in_flight(), 0);
}

/// Builders are validated with the pipeline: one `build()`, whose error names the
/// strategy's field; valid builders work as built strategies do.
#[tokio::test(start_paused = true)]
async fn strategy_builders_are_validated_by_the_pipeline_build() {
    let e = Pipeline::builder()
        .bulkhead(Bulkhead::builder(0))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "bulkhead.max_concurrent");
    let e = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::new(0, Duration::from_secs(1))))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "gcra.rate");
    let e = Pipeline::builder()
        .circuit_breaker(CircuitBreaker::failure_rate(2.0))
        .build()
        .unwrap_err();
    assert!(e.field().starts_with("circuit"), "{e}");

    let p = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(1)))
        .bulkhead(Bulkhead::builder(2))
        .build()
        .unwrap();
    assert_eq!(p.stages(), ["rate_limiter(per call)", "bulkhead(per call)"]);
    let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    r.unwrap();
    let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}

/// A limiter shared by reference between two pipelines counts both.
#[tokio::test(start_paused = true)]
async fn a_limiter_passed_by_reference_is_shared() {
    let limiter = RateLimiter::gcra(Rate::per_second(1)).build().unwrap();
    let a = Pipeline::builder().rate_limit(&limiter).build().unwrap();
    let b = Pipeline::builder().rate_limit(&limiter).build().unwrap();
    let r: Result<(), Error<()>> = a.execute(|| async { Ok(()) }).await;
    r.unwrap();
    let r: Result<(), Error<()>> = b.execute(|| async { Ok(()) }).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}

/// `execute_blocking_with` hands each attempt its context: attempt number, name, tags
/// and the request deadline.
#[test]
fn execute_blocking_with_gives_each_attempt_its_context() {
    let p = Pipeline::builder()
        .name("blocking")
        .tag("tier", "gold")
        .timeout(Timeout::request(Duration::from_secs(5)))
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let r = p.execute_blocking_with(|ctx| {
        seen.fetch_add(1, Ordering::Relaxed);
        assert_eq!(ctx.operation(), Some("blocking"));
        assert_eq!(ctx.tag("tier"), Some("gold"));
        assert!(ctx.deadline().is_some());
        if ctx.attempt() < 3 {
            Err(ctx.attempt())
        } else {
            Ok(ctx.attempt())
        }
    });
    assert_eq!(r.unwrap(), 3);
    assert_eq!(seen.load(Ordering::Relaxed), 3);
}

/// `_with` on a breaker now means nothing else: the classifier entry points are
/// `call_classified` / `call_blocking_classified` / `layer_classified`.
#[tokio::test]
async fn breaker_classifier_entry_points_are_named_classified() {
    let b = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let not_found = |r: &Result<(), u16>| match r {
        Err(404) => resilient::Outcome::Ignored,
        Err(_) => resilient::Outcome::Failure,
        Ok(_) => resilient::Outcome::Success,
    };
    let _ = b.call_classified(not_found, || async { Err(404) }).await;
    let _ = b.call_blocking_classified(not_found, || Err(404));
    assert!(b.is_ready());
    let _ = b.call_blocking_classified(not_found, || Err(500));
    assert!(!b.is_ready());
}

/// Guava's `acquire(permits)`: waits for `n` units whatever the limiter's mode, returns
/// how long it waited, rejects what can never pass or would wait too long, and gives back
/// its reservation when dropped.
#[tokio::test(start_paused = true)]
async fn acquire_n_waits_for_n_units_and_is_cancellation_safe() {
    let limiter = RateLimiter::gcra_with_burst(Rate::per_second(10), 10)
        .build()
        .unwrap();
    assert_eq!(
        limiter.acquire_n(10, Duration::MAX).await.unwrap(),
        Duration::ZERO
    );
    // 3 units are 300 ms away: too far for 100 ms, reported with the wait.
    let r = limiter.acquire_n(3, Duration::from_millis(100)).await;
    assert!(
        matches!(r, Err(resilient::Rejection::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_millis(300)),
        "{r:?}"
    );
    // A waiter dropped before its slot gives the slot back: the next one gets it.
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        limiter.acquire_n(3, Duration::MAX),
    )
    .await;
    assert!(dropped.is_err());
    let waited = limiter.acquire_n(3, Duration::MAX).await.unwrap();
    assert_eq!(waited, Duration::from_millis(250));
    // More than the burst can never pass, even with no bound on the wait.
    let r = limiter.acquire_n(11, Duration::MAX).await;
    assert!(
        matches!(
            r,
            Err(resilient::Rejection::RateLimited {
                retry_after: None,
                ..
            })
        ),
        "{r:?}"
    );
}

/// A limiter that cannot reserve (a fixed window) polls: `acquire_n` still waits for its
/// units, whatever the limiter's own mode (here reject).
#[tokio::test(start_paused = true)]
async fn acquire_n_on_a_polling_limit_waits_for_the_next_window() {
    let limiter = RateLimiter::fixed_window(5, Duration::from_millis(100))
        .build()
        .unwrap();
    // align to a window start on the default clock
    let w = 100_000_000u64;
    let into = resilient::system_clock().now().as_nanos() as u64 % w;
    if into != 0 {
        tokio::time::sleep(Duration::from_nanos(w - into)).await;
    }
    assert_eq!(
        limiter.acquire_n(4, Duration::MAX).await.unwrap(),
        Duration::ZERO
    );
    let waited = limiter.acquire_n(4, Duration::MAX).await.unwrap();
    assert_eq!(waited, Duration::from_millis(100));
}

/// Defaults and one validation point: `Retry::default()`, `attempts` from any integer
/// (rejected at build when out of range), and limiter shortcuts whose errors surface at
/// `build()`.
#[test]
fn defaults_and_one_validation_point() {
    let r = Retry::default();
    assert_eq!(r.max_attempts(), 3);
    Pipeline::builder().retry(r).build().unwrap();
    assert_eq!(Retry::immediate().attempts(7usize).max_attempts(), 7);
    assert_eq!(Retry::immediate().attempts(7u64).max_attempts(), 7);
    for bad in [
        Retry::immediate().attempts(-1),
        Retry::immediate().attempts(u64::MAX),
        Retry::immediate().attempts(0),
    ] {
        let e = Pipeline::builder().retry(bad).build().unwrap_err();
        assert_eq!(e.field(), "retry.attempts");
    }
    // a later valid value replaces an out-of-range one
    Pipeline::builder()
        .retry(Retry::immediate().attempts(-1).attempts(2))
        .build()
        .unwrap();

    let e = RateLimiter::token_bucket(0, Rate::per_second(1))
        .build()
        .unwrap_err();
    assert!(
        e.field().contains("capacity") || e.field().contains("token"),
        "{e}"
    );
    let e = RateLimiter::sliding_window_counter(5, Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(e.field().contains("window"), "{e}");
    assert!(
        RateLimiter::fixed_window(5, Duration::from_secs(1))
            .build()
            .unwrap()
            .check()
            .allowed
    );
}

/// Unless set, a count window's breaker judges its rate once the window is full.
#[test]
fn minimum_calls_follows_a_count_window() {
    use resilient::circuit::Window;
    let b = CircuitBreaker::failure_rate(0.5)
        .window(Window::count(20))
        .build()
        .unwrap();
    for i in 0..19 {
        let _ = b.call_blocking(|| Err::<(), _>(()));
        assert!(
            b.is_ready(),
            "judged after {} calls, before the window of 20 was full",
            i + 1
        );
    }
    let _ = b.call_blocking(|| Err::<(), _>(()));
    assert!(!b.is_ready());
}

/// A rate-limit rejection carries the binding limit's state, so a server can answer with
/// `RateLimit` headers from the error alone: with a quota (10/s and 15/min), the limit
/// that binds is reported.
#[tokio::test(start_paused = true)]
async fn a_rate_limit_error_carries_the_binding_limits_state() {
    use resilient::ratelimit::Gcra;
    let limiter = RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(10)).unwrap())
        .limit(Gcra::limiter(Rate::per_minute(15)).unwrap())
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(&limiter).build().unwrap();
    for _ in 0..10 {
        let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
        r.unwrap();
    }
    // the per-second limit binds first
    let e = p.execute(|| async { Ok::<(), ()>(()) }).await.unwrap_err();
    let info = e.rate_limit_info().expect("state");
    assert_eq!(
        (info.quota, info.window, info.remaining),
        (10, Duration::from_secs(1), 0)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
        r.unwrap();
    }
    // now the per-minute one does
    let e = p.execute(|| async { Ok::<(), ()>(()) }).await.unwrap_err();
    let info = e.rate_limit_info().expect("state");
    assert_eq!(
        (info.quota, info.window, info.remaining),
        (15, Duration::from_secs(60), 0)
    );
    assert!(e.retry_after().unwrap() > Duration::from_secs(1));
}
