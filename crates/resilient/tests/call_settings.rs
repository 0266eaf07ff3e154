//! Per-call settings ([`Pipeline::call`]): a call's cost in rate limiters, its key in
//! keyed limiters (with the limit's state in rejections), and the tower adapter's request
//! copies for retries (`clone_request`), on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::ratelimit::{FixedWindow, Gcra, KeyedLimiter, Rate, RateLimiter};
use resilient::{Context, Error, Pipeline, Retry};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

async fn unit(p: &Pipeline, cost: u64) -> Result<(), Error<()>> {
    p.call().cost(cost).execute(|| async { Ok(()) }).await
}

#[tokio::test(start_paused = true)]
async fn one_limiter_charges_each_call_its_own_cost() {
    let p = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(10)))
        .build()
        .unwrap();
    unit(&p, 7).await.unwrap();
    let over = unit(&p, 5).await.unwrap_err();
    let Error::RateLimited { retry_after, info } = &over else {
        panic!("{over:?}")
    };
    // 2 of the 5 units are missing: 200 ms at 10/s
    assert_eq!(*retry_after, Some(200 * MS));
    let info = info.as_deref().expect("the limiter's state");
    assert_eq!((info.limit, info.remaining), (10, 3));
    // the rejection took nothing: 3 units still pass, then nothing
    unit(&p, 3).await.unwrap();
    assert!(matches!(unit(&p, 1).await, Err(Error::RateLimited { .. })));
    // a call without a cost is charged the limiter's (1)
    tokio::time::advance(100 * MS).await;
    let plain: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    plain.unwrap();
    // a cost above the capacity can never pass
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(matches!(
        unit(&p, 11).await,
        Err(Error::RateLimited {
            retry_after: None,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn in_wait_mode_a_heavy_call_waits_for_its_units() {
    let p = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(10)).max_wait(500 * MS))
        .build()
        .unwrap();
    let start = Instant::now();
    unit(&p, 7).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 2 units short: waits 200 ms for them
    unit(&p, 5).await.unwrap();
    assert_eq!(start.elapsed(), 200 * MS);
    // 10 units are a second away, longer than the wait allowed: rejected at once
    let start = Instant::now();
    let r = unit(&p, 10).await;
    assert!(
        matches!(r, Err(Error::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(1)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 3 units are 300 ms away
    unit(&p, 3).await.unwrap();
    assert_eq!(start.elapsed(), 300 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_per_attempt_limiter_charges_the_cost_at_every_attempt() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .rate_limit(RateLimiter::fixed_window(10, Duration::from_secs(1)))
        .build()
        .unwrap();
    let attempts = AtomicU32::new(0);
    let r: Result<(), Error<()>> = p
        .call()
        .cost(4)
        .execute_with(|ctx| {
            assert_eq!(ctx.cost(), Some(4));
            attempts.fetch_add(1, Ordering::SeqCst);
            async { Err(()) }
        })
        .await;
    // 4 + 4 units, then the third attempt's 4 do not fit
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}

#[test]
fn blocking_calls_take_the_cost_too() {
    let p = Pipeline::builder()
        .rate_limit(RateLimiter::fixed_window(10, Duration::from_secs(3600)))
        .build()
        .unwrap();
    assert!(
        p.call()
            .cost(7)
            .execute_blocking(|| Ok::<_, ()>(()))
            .is_ok()
    );
    let r = p.call().cost(5).execute_blocking(|| Ok::<_, ()>(()));
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    assert!(
        p.call()
            .cost(3)
            .execute_blocking(|| Ok::<_, ()>(()))
            .is_ok()
    );
}

fn per_key(rate: Rate) -> KeyedLimiter<u64, Gcra> {
    KeyedLimiter::builder(Gcra::new(rate).unwrap())
        .build::<u64>()
        .unwrap()
}

async fn keyed(p: &Pipeline, key: &str) -> Result<(), Error<()>> {
    p.call().key(key).execute(|| async { Ok(()) }).await
}

#[tokio::test(start_paused = true)]
async fn a_keyed_limiter_in_a_pipeline_limits_each_key_on_its_own() {
    let limiter = Arc::new(per_key(Rate::per_second(2)));
    let p = Pipeline::builder()
        .rate_limit(limiter.clone())
        .build()
        .unwrap();
    assert_eq!(p.stages(), ["keyed_rate_limiter(per call)"]);
    keyed(&p, "ada").await.unwrap();
    keyed(&p, "ada").await.unwrap();
    let over = keyed(&p, "ada").await.unwrap_err();
    assert_eq!(over.retry_after(), Some(500 * MS));
    let info = over.rate_limit_info().expect("the key's limit state");
    assert_eq!((info.limit, info.remaining, info.quota), (2, 0, 2));
    assert_eq!(info.window, Duration::from_secs(1));
    assert_eq!(info.reset, Duration::from_secs(1));
    // another key is not limited by ada's calls
    keyed(&p, "bob").await.unwrap();
    // a String key is the same key as the &str
    let r: Result<(), Error<()>> = p
        .call()
        .key(&String::from("ada"))
        .execute(|| async { Ok(()) })
        .await;
    assert!(matches!(r, Err(Error::RateLimited { .. })));
    assert_eq!(limiter.len(), 2);
    tokio::time::advance(500 * MS).await;
    keyed(&p, "ada").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn keyed_calls_take_their_cost_and_calls_without_a_key_share_one_limit() {
    let p = Pipeline::builder()
        .rate_limit(per_key(Rate::per_second(10)))
        .build()
        .unwrap();
    let call = |key: &'static str, cost| {
        p.call()
            .key(key)
            .cost(cost)
            .execute(|| async { Ok::<_, ()>(()) })
    };
    call("ada", 7).await.unwrap();
    assert!(call("ada", 5).await.is_err());
    call("ada", 3).await.unwrap();
    call("bob", 10).await.unwrap();
    let unkeyed = || p.execute(|| async { Ok::<_, ()>(()) });
    for _ in 0..10 {
        unkeyed().await.unwrap();
    }
    assert!(matches!(unkeyed().await, Err(Error::RateLimited { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_keyed_limiter_in_wait_mode_waits_for_the_key_and_stops_at_the_deadline() {
    let p = Pipeline::builder()
        .timeout(resilient::Timeout::request(500 * MS))
        .rate_limit(
            KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
                .max_wait(Duration::from_secs(10))
                .build::<u64>()
                .unwrap(),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    keyed(&p, "ada").await.unwrap();
    keyed(&p, "bob").await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 900 ms away, and the request timeout leaves less than that: rejected at once
    tokio::time::advance(100 * MS).await;
    let start = Instant::now();
    let r = keyed(&p, "ada").await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    tokio::time::advance(500 * MS).await;
    // 400 ms away now: waits for it
    let start = Instant::now();
    keyed(&p, "ada").await.unwrap();
    assert_eq!(start.elapsed(), 400 * MS);
}

#[test]
fn a_keyed_limiter_rejects_blocking_calls_with_its_state() {
    let limiter = KeyedLimiter::builder(FixedWindow::new(1, Duration::from_secs(3600)).unwrap())
        .build::<u64>()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    let call = |key: u32| p.call().key(&key).execute_blocking(|| Ok::<_, ()>(()));
    call(1).unwrap();
    call(2).unwrap();
    let err = call(1).unwrap_err();
    let info = err.rate_limit_info().unwrap();
    assert_eq!((info.limit, info.remaining, info.quota), (1, 0, 1));
    assert_eq!(info.window, Duration::from_secs(3600));
}

#[test]
fn a_context_carries_the_cost_and_the_key_for_guards_called_by_hand() {
    use resilient::{Acquire, Guard};
    let limiter = per_key(Rate::per_minute(5));
    let ada = Context::new().with_key(&"ada").with_cost(5);
    assert!(matches!(limiter.acquire(&ada), Acquire::Ready(Ok(_))));
    let Acquire::Ready(Err(rejected)) = limiter.acquire(&ada.clone().with_cost(1)) else {
        panic!("over the limit")
    };
    // 12 s away (on the system clock, which moves a little meanwhile)
    let after = rejected.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(11) && after <= Duration::from_secs(12),
        "{after:?}"
    );
    assert!(matches!(
        limiter.acquire(&Context::new().with_key(&"bob").with_cost(5)),
        Acquire::Ready(Ok(_))
    ));
}
