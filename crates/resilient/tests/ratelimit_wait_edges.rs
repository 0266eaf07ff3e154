//! Wait mode at its edges: an unbounded wait (`Mode::Wait(Duration::MAX)`) on the limiters
//! that poll, and a waiter whose limit is cut below its cost while it waits. Tokio's paused
//! clock.

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use resilient::ratelimit::{
    FixedWindow, KeyedLimiter, Limiter, Mode, Rate, RateLimiter, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket,
};
use resilient::{Error, Pipeline};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// Waits (in paused time) until the default clock is at the start of a 100 ms window: the
/// windows are counted from the clock's process-wide origin, so without this a test's
/// first call could land anywhere in a window (and its end could come before the test's
/// own steps, a flake).
async fn align_to_window() {
    let w = (MS * 100).as_nanos() as u64;
    let into = resilient::system_clock().now().as_nanos() as u64 % w;
    if into != 0 {
        tokio::time::sleep(Duration::from_nanos(w - into)).await;
    }
}

async fn call(p: &Pipeline) -> Result<(), Error<()>> {
    p.execute(|| async { Ok::<(), ()>(()) }).await
}

/// Every polling algorithm with `Mode::Wait(Duration::MAX)`: the second call waits for
/// capacity instead of panicking on `now + max_wait`.
#[tokio::test(start_paused = true)]
async fn an_unbounded_wait_on_polling_limiters_waits_for_capacity() {
    let limits: Vec<(&str, Arc<dyn Limiter>)> = vec![
        (
            "token bucket",
            Arc::new(TokenBucket::limiter(1, Rate::new(1, MS * 100)).unwrap()),
        ),
        (
            "fixed window",
            Arc::new(FixedWindow::limiter(1, MS * 100).unwrap()),
        ),
        (
            "sliding counter",
            Arc::new(SlidingWindowCounter::limiter(1, MS * 100).unwrap()),
        ),
        (
            "sliding log",
            Arc::new(SlidingWindowLog::new(1, MS * 100).unwrap()),
        ),
    ];
    for (name, limit) in limits {
        let limiter = RateLimiter::builder()
            .limit(limit)
            .mode(Mode::Wait(Duration::MAX))
            .build()
            .unwrap();
        let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
        call(&p).await.unwrap();
        let start = Instant::now();
        call(&p).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let waited = start.elapsed();
        assert!(
            waited > Duration::ZERO && waited <= MS * 201,
            "{name}: {waited:?}"
        );
    }
}

/// The keyed layer with an unbounded wait on a limit that polls.
#[tokio::test(start_paused = true)]
async fn an_unbounded_wait_on_the_keyed_layer_waits_for_capacity() {
    let layer = KeyedLimiter::builder(FixedWindow::new(1, MS * 100).unwrap())
        .mode(Mode::Wait(Duration::MAX))
        .build::<u8>()
        .unwrap()
        .layer(|_: &u8| 0u8);
    let mut svc = tower::Layer::layer(
        &layer,
        service_fn(|n: u8| async move { Ok::<_, Infallible>(n) }),
    );
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert!(start.elapsed() <= MS * 101);
}

/// A waiter whose limit is cut below its cost while it waits is rejected (it can never
/// pass: no `retry_after`), instead of panicking on `now + Duration::MAX`.
#[tokio::test(start_paused = true)]
async fn a_waiter_whose_limit_is_cut_below_its_cost_is_rejected() {
    for wait in [Duration::from_secs(10), Duration::MAX] {
        let window = Arc::new(FixedWindow::limiter(5, MS * 100).unwrap());
        let limiter = RateLimiter::builder()
            .limit(window.clone())
            .cost(3)
            .mode(Mode::Wait(wait))
            .build()
            .unwrap();
        let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
        align_to_window().await;
        call(&p).await.unwrap();
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { call(&p).await }
        });
        tokio::time::sleep(MS * 10).await;
        window.algorithm().set_limit(2).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter must end")
            .expect("the waiter must not panic");
        assert!(
            matches!(
                r,
                Err(Error::RateLimited {
                    retry_after: None,
                    ..
                })
            ),
            "{r:?}"
        );
        // A new call is rejected at once, with no retry_after.
        let start = Instant::now();
        let r = call(&p).await;
        assert!(
            matches!(
                r,
                Err(Error::RateLimited {
                    retry_after: None,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

/// The same through the keyed layer: a weighted request waiting on its key is rejected
/// once the key's limit is cut below its weight.
#[tokio::test(start_paused = true)]
async fn a_keyed_waiter_whose_limit_is_cut_below_its_cost_is_rejected() {
    let limiter = Arc::new(
        KeyedLimiter::builder(FixedWindow::new(5, MS * 100).unwrap())
            .mode(Mode::Wait(Duration::MAX))
            .build::<u8>()
            .unwrap(),
    );
    let layer =
        resilient::ratelimit::KeyedLayer::new(limiter.clone(), |_: &u64| 0u8).cost(|n: &u64| *n);
    let mut svc = tower::Layer::layer(
        &layer,
        service_fn(|n: u64| async move { Ok::<_, Infallible>(n) }),
    );
    align_to_window().await;
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    let fut = svc.ready().await.unwrap().call(3);
    let waiter = tokio::spawn(fut);
    tokio::time::sleep(MS * 10).await;
    limiter.algorithm().set_limit(2).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter must end")
        .expect("the waiter must not panic");
    assert!(
        matches!(
            r,
            Err(Error::RateLimited {
                retry_after: None,
                ..
            })
        ),
        "{r:?}"
    );
}
