//! The keyed tower layer on tokio's paused clock: per-key limits, retry_after, shared state
//! between clones, wait mode and cancellation.

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::time::Duration;

use resilient::Error;
use resilient::ratelimit::{FixedWindow, Gcra, KeyedLimiter, Rate};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

#[derive(Clone, Debug)]
struct Req {
    user: &'static str,
    n: u32,
}

fn req(user: &'static str, n: u32) -> Req {
    Req { user, n }
}

fn echo() -> impl Service<Req, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|r: Req| async move { Ok::<_, Infallible>(r.n) })
}

async fn call<S>(svc: &mut S, r: Req) -> Result<u32, Error<Infallible>>
where
    S: Service<Req, Response = u32, Error = Error<Infallible>>,
{
    svc.ready().await?.call(r).await
}

#[tokio::test(start_paused = true)]
async fn two_keys_are_limited_independently_with_the_right_retry_after() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(2)).unwrap())
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let mut svc = tower::Layer::layer(&layer, echo());

    assert_eq!(call(&mut svc, req("ada", 1)).await.unwrap(), 1);
    assert_eq!(call(&mut svc, req("ada", 2)).await.unwrap(), 2);
    match call(&mut svc, req("ada", 3)).await {
        Err(Error::RateLimited { retry_after, .. }) => assert_eq!(retry_after, Some(MS * 500)),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // bob's limit is untouched by ada's
    assert_eq!(call(&mut svc, req("bob", 4)).await.unwrap(), 4);
    assert_eq!(call(&mut svc, req("bob", 5)).await.unwrap(), 5);
    assert!(matches!(
        call(&mut svc, req("bob", 6)).await,
        Err(Error::RateLimited { .. })
    ));

    // after 250 ms ada is still 250 ms short; after 500 ms she gets one unit back
    tokio::time::sleep(MS * 250).await;
    assert_eq!(
        call(&mut svc, req("ada", 7))
            .await
            .unwrap_err()
            .retry_after(),
        Some(MS * 250)
    );
    tokio::time::sleep(MS * 250).await;
    assert_eq!(call(&mut svc, req("ada", 8)).await.unwrap(), 8);
    assert_eq!(layer.limiter().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cloned_layer_and_its_services_share_state() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let clone = layer.clone();
    let mut a = tower::Layer::layer(&layer, echo());
    let mut b = tower::Layer::layer(&clone, echo());
    let mut c = a.clone();

    assert_eq!(call(&mut a, req("ada", 1)).await.unwrap(), 1);
    assert!(matches!(
        call(&mut b, req("ada", 2)).await,
        Err(Error::RateLimited { retry_after: Some(d), .. }) if d == MS * 1000
    ));
    assert!(matches!(
        call(&mut c, req("ada", 3)).await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(call(&mut b, req("bob", 4)).await.unwrap(), 4);
    assert!(std::sync::Arc::ptr_eq(layer.limiter(), clone.limiter()));
}

#[tokio::test(start_paused = true)]
async fn wait_mode_delays_up_to_max_wait_then_rejects() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::new(1, MS * 100)).unwrap())
        .max_wait(MS * 250)
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let svc = tower::Layer::layer(&layer, echo());
    let start = Instant::now();

    let timed = |user, n| {
        let mut svc = svc.clone();
        async move {
            let out = call(&mut svc, req(user, n)).await;
            (out, start.elapsed())
        }
    };
    // Four of ada's requests at once: admitted at 0, 100 and 200 ms; the fourth would wait
    // 300 ms > 250 ms and is rejected at once. bob is not delayed by ada's queue.
    let (a, b, c, d, bob) = tokio::join!(
        timed("ada", 1),
        timed("ada", 2),
        timed("ada", 3),
        timed("ada", 4),
        timed("bob", 5)
    );
    assert_eq!((a.0.unwrap(), a.1), (1, Duration::ZERO));
    assert_eq!((b.0.unwrap(), b.1), (2, MS * 100));
    assert_eq!((c.0.unwrap(), c.1), (3, MS * 200));
    assert!(matches!(d.0, Err(Error::RateLimited { retry_after: Some(w), .. }) if w == MS * 300));
    assert_eq!(d.1, Duration::ZERO);
    assert_eq!((bob.0.unwrap(), bob.1), (5, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_its_reservation_back() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::new(1, MS * 100)).unwrap())
        .max_wait(Duration::from_secs(1))
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let mut svc = tower::Layer::layer(&layer, echo());
    let start = Instant::now();

    assert_eq!(call(&mut svc, req("ada", 1)).await.unwrap(), 1);
    // The second request reserves the slot at 100 ms, but is dropped at 50 ms.
    let dropped = tokio::time::timeout(MS * 50, call(&mut svc, req("ada", 2))).await;
    assert!(dropped.is_err());
    // Had the reservation been kept, the next would wait until 200 ms. (A wait computed
    // from the limiter's clock can end one tick of tokio's 1 ms timer late, depending on
    // where the process-wide clock origin falls; it never ends early.)
    assert_eq!(call(&mut svc, req("ada", 3)).await.unwrap(), 3);
    let elapsed = start.elapsed();
    assert!(elapsed >= MS * 100 && elapsed <= MS * 101, "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn wait_mode_polls_limits_that_cannot_reserve() {
    let layer = KeyedLimiter::builder(FixedWindow::new(1, MS * 100).unwrap())
        .max_wait(MS * 150)
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let mut svc = tower::Layer::layer(&layer, echo());
    let start = Instant::now();

    assert_eq!(call(&mut svc, req("ada", 1)).await.unwrap(), 1);
    // The next window starts within 100 ms (wherever the window boundary falls).
    assert_eq!(call(&mut svc, req("ada", 2)).await.unwrap(), 2);
    let waited = start.elapsed();
    assert!(waited > Duration::ZERO && waited <= MS * 100, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn inner_errors_come_back_as_inner() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(5)).unwrap())
        .build::<u32>()
        .unwrap()
        .layer(|n: &u32| n % 2);
    let mut svc = tower::Layer::layer(
        &layer,
        service_fn(|n: u32| async move { if n > 10 { Err("too big") } else { Ok(n) } }),
    );
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert!(matches!(
        svc.ready().await.unwrap().call(11).await,
        Err(Error::Inner("too big"))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cost_extractor_charges_each_request_its_weight() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user)
        .cost(|r: &Req| u64::from(r.n));
    let mut svc = tower::Layer::layer(&layer, echo());
    assert_eq!(call(&mut svc, req("ada", 6)).await.unwrap(), 6);
    // 4 units left: a request weighing 5 must wait for one more (100 ms).
    match call(&mut svc, req("ada", 5)).await {
        Err(Error::RateLimited { retry_after, .. }) => assert_eq!(retry_after, Some(MS * 100)),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(call(&mut svc, req("ada", 4)).await.unwrap(), 4);
    // Heavier than the capacity: it can never pass, so no retry_after.
    assert!(matches!(
        call(&mut svc, req("bob", 11)).await,
        Err(Error::RateLimited {
            retry_after: None,
            ..
        })
    ));
    // Weightless requests pass.
    assert_eq!(call(&mut svc, req("ada", 0)).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_weighted_waiter_gives_its_whole_weight_back() {
    let layer = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .max_wait(Duration::from_secs(2))
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user)
        .cost(|r: &Req| u64::from(r.n));
    let mut svc = tower::Layer::layer(&layer, echo());
    let start = Instant::now();
    assert_eq!(call(&mut svc, req("ada", 10)).await.unwrap(), 10);
    // Weighing 5, it reserves the capacity due at 500 ms, but is dropped at 100 ms.
    let dropped = tokio::time::timeout(MS * 100, call(&mut svc, req("ada", 5))).await;
    assert!(dropped.is_err());
    // Had its 5 units been kept, the next 5 would wait until 1 s; they are due at 500 ms.
    assert_eq!(call(&mut svc, req("ada", 5)).await.unwrap(), 5);
    let elapsed = start.elapsed();
    assert!(elapsed >= MS * 500 && elapsed <= MS * 501, "{elapsed:?}");
}

/// Called inside a pipeline call, the layer never waits past that call's deadline: a wait
/// that cannot end in time is rejected at once (and reserves nothing), instead of being
/// cut off by the outer timeout later.
#[tokio::test(start_paused = true)]
async fn wait_mode_respects_an_enclosing_pipeline_deadline() {
    use resilient::{Pipeline, Timeout};
    let layer = KeyedLimiter::builder(Gcra::new(Rate::new(1, MS * 100)).unwrap())
        .max_wait(MS * 250)
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let svc = tower::Layer::layer(&layer, echo());
    let pipeline = Pipeline::builder()
        .timeout(Timeout::request(MS * 150))
        .build()
        .unwrap();
    let run = |n| {
        let svc = svc.clone();
        let pipeline = pipeline.clone();
        async move {
            let start = Instant::now();
            let out = pipeline
                .execute(|| {
                    let mut svc = svc.clone();
                    async move { call(&mut svc, req("ada", n)).await }
                })
                .await;
            (out, start.elapsed())
        }
    };
    let (first, second, third) = tokio::join!(run(1), run(2), run(3));
    assert_eq!(first.0.unwrap(), 1);
    // 100 ms fits in the 150 ms deadline: waited.
    assert_eq!((second.0.unwrap(), second.1), (2, MS * 100));
    // 200 ms does not: rejected at once, not timed out after 150 ms.
    match third.0 {
        Err(Error::Inner(Error::RateLimited { retry_after, .. })) => {
            assert_eq!(retry_after, Some(MS * 200));
        }
        other => panic!("expected an immediate RateLimited, got {other:?}"),
    }
    assert_eq!(third.1, Duration::ZERO);
    // Nothing was reserved for the rejected request: the next unit is free at 200 ms,
    // without waiting (a reservation would have pushed it to 300 ms).
    tokio::time::sleep(MS * 100).await;
    let mut s = svc.clone();
    let at = Instant::now();
    assert_eq!(call(&mut s, req("ada", 4)).await.unwrap(), 4);
    assert_eq!(at.elapsed(), Duration::ZERO);
}

/// Rejections carry the key's limit state (for `RateLimit` headers), in reject mode, in
/// wait mode, and for a request heavier than the key's capacity.
#[tokio::test(start_paused = true)]
async fn rejections_carry_the_keys_limit_state() {
    let layer = KeyedLimiter::quota([
        Gcra::new(Rate::per_second(2)).unwrap(),
        Gcra::new(Rate::per_minute(3)).unwrap(),
    ])
    .build::<&'static str>()
    .unwrap()
    .layer(|r: &Req| r.user)
    .cost(|r: &Req| u64::from(r.n));
    let mut svc = tower::ServiceBuilder::new().layer(layer).service(echo());
    assert_eq!(call(&mut svc, req("ada", 2)).await.unwrap(), 2);
    let over = call(&mut svc, req("ada", 1)).await.unwrap_err();
    assert_eq!(over.retry_after(), Some(MS * 500));
    let info = over.rate_limit_info().expect("the key's state");
    // the binding limit: the per-second one, empty for another 500 ms
    assert_eq!((info.limit, info.remaining, info.quota), (2, 0, 2));
    assert_eq!(info.window, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // now the per-minute limit binds: one unit left of 3, 20 s per unit
    let over = call(&mut svc, req("ada", 2)).await.unwrap_err();
    let info = over.rate_limit_info().expect("the key's state");
    assert_eq!((info.limit, info.remaining, info.quota), (3, 1, 3));
    assert_eq!(info.window, Duration::from_secs(60));
    // 3 units never fit the per-second limit, which binds; a key never seen reports it
    // full
    let heavy = call(&mut svc, req("bob", 3)).await.unwrap_err();
    assert_eq!(heavy.retry_after(), None);
    let info = heavy.rate_limit_info().expect("the key's state");
    assert_eq!((info.limit, info.remaining), (2, 2));

    let waiting = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
        .max_wait(MS * 100)
        .build::<&'static str>()
        .unwrap()
        .layer(|r: &Req| r.user);
    let mut svc = tower::ServiceBuilder::new().layer(waiting).service(echo());
    assert_eq!(call(&mut svc, req("ada", 1)).await.unwrap(), 1);
    let over = call(&mut svc, req("ada", 2)).await.unwrap_err();
    assert_eq!(over.retry_after(), Some(Duration::from_secs(1)));
    let info = over.rate_limit_info().expect("the key's state");
    assert_eq!((info.limit, info.remaining, info.quota), (1, 0, 1));
}
