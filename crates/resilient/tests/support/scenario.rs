//! The scripted scenario both metric backends' tests run (paused tokio time): pipelines
//! "api" (retries, an operation timeout), "db" (a breaker that opens), "edge" (a limiter
//! and a bulkhead with a queue, tagged region=eu), "stingy" (a budget that refuses every
//! retry), and a fallback and a hedge reporting as "api". `busy` runs while "edge" has one
//! call in its bulkhead and one queued.

use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::ratelimit::{Rate, RateLimiter};
use resilient::telemetry::{SharedObserver, fallback_observer, hedge_observer};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, RetryBudget, Timeout};

/// Returns the pipelines, so that their gauges stay readable.
pub async fn run(observer: SharedObserver, busy: impl FnOnce()) -> Vec<Pipeline> {
    // "api": retries with an operation timeout
    let api = Pipeline::builder()
        .name("api")
        .retry(Retry::constant(Duration::from_millis(100)).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .observer_arc(observer.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let r: Result<u32, Error<&str>> = api
        .execute(|| {
            n += 1;
            let k = n;
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if k < 3 { Err("flaky") } else { Ok(k) }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 3);
    // one attempt that hangs past the operation timeout, then a success
    let mut hang = true;
    let r: Result<(), Error<()>> = api
        .execute(|| {
            let h = std::mem::take(&mut hang);
            async move {
                if h {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .await;
    assert!(r.is_ok());

    // "db": a breaker that opens after two failures, then rejects
    let breaker = CircuitBreaker::consecutive_failures(2)
        .name("db")
        .build()
        .unwrap();
    let db = Pipeline::builder()
        .name("db")
        .circuit_breaker(&breaker)
        .observer_arc(observer.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        let _: Result<(), Error<()>> = db.execute(|| async { Err(()) }).await;
    }

    // "edge": a limiter (1 admitted, 1 rejected) and a bulkhead with a queue
    let bulkhead = Bulkhead::builder(1).queue(1).build().unwrap();
    let edge = Pipeline::builder()
        .name("edge")
        .tag("region", "eu")
        .rate_limit(RateLimiter::gcra(Rate::per_minute(2)))
        .bulkhead(&bulkhead)
        .observer_arc(observer.clone())
        .build()
        .unwrap();
    let slow = |edge: Pipeline| async move {
        edge.execute(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, ()>(())
        })
        .await
    };
    let first = tokio::spawn(slow(edge.clone()));
    let second = tokio::spawn(slow(edge.clone()));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    busy();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let limited: Result<(), Error<()>> = edge.execute(|| async { Ok(()) }).await;
    assert!(matches!(limited, Err(Error::RateLimited { .. })));

    // "stingy": a budget that refuses every retry
    let stingy = Pipeline::builder()
        .name("stingy")
        .retry(
            Retry::immediate()
                .attempts(3)
                .budget(RetryBudget::builder(0.0).min_per_sec(0).build().unwrap()),
        )
        .observer_arc(observer.clone())
        .build()
        .unwrap();
    let _: Result<(), Error<()>> = stingy.execute(|| async { Err(()) }).await;

    // a fallback and a hedge reporting as "api"
    let fallback = Fallback::<u32, ()>::builder()
        .or_value(0)
        .on_fallback(fallback_observer(observer.clone(), "api"))
        .build()
        .unwrap();
    assert_eq!(fallback.call(|| async { Err(()) }).await.unwrap(), 0);
    let hedge = Hedge::parallel()
        .max_hedges(1)
        .on_event(hedge_observer(observer, "api"))
        .build()
        .unwrap();
    let _: Result<u32, Error<()>> = hedge.call(|a| async move { Ok(a) }).await;
    vec![api, db, edge, stingy]
}
