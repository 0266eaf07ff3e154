//! Stale-cache fallback on a manual clock: fresh answers are kept, failures get the kept
//! answer marked stale within the staleness bound and never after it, the entry bound
//! drops the least recently refreshed keys, and each stale answer is reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::fallback::{Answer, StaleCache};
use resilient::{Error, ManualClock, Pipeline, Retry};

const S: Duration = Duration::from_secs(1);

async fn ok(v: u32) -> Result<u32, Error<&'static str>> {
    Ok(v)
}

async fn down() -> Result<u32, Error<&'static str>> {
    Err(Error::Inner("down"))
}

#[tokio::test]
async fn a_failure_gets_the_kept_answer_within_the_staleness_bound_only() {
    let clock = ManualClock::new();
    let cache = StaleCache::builder(10, S * 30)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // nothing kept yet: the failure comes through
    assert_eq!(cache.call("a", down()).await, Err(Error::Inner("down")));
    assert_eq!(cache.call("a", ok(1)).await, Ok(Answer::Fresh(1)));
    clock.advance(S * 30);
    let stale = cache.call("a", down()).await.unwrap();
    assert!(stale.is_stale());
    assert_eq!(
        stale,
        Answer::Stale {
            value: 1,
            age: S * 30
        }
    );
    // one tick past the bound: the failure, and the entry is gone
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cache.call("a", down()).await, Err(Error::Inner("down")));
    assert!(cache.is_empty());
    // a fresh answer replaces the kept one and restarts its age
    assert_eq!(cache.call("a", ok(2)).await, Ok(Answer::Fresh(2)));
    clock.advance(S);
    assert_eq!(
        cache.call("a", down()).await,
        Ok(Answer::Stale { value: 2, age: S })
    );
    // keys are separate; cancellation is never answered
    assert_eq!(cache.call("b", down()).await, Err(Error::Inner("down")));
    assert_eq!(
        cache.call("a", async { Err(Error::Cancelled) }).await,
        Err(Error::Cancelled)
    );
}

#[tokio::test]
async fn the_least_recently_refreshed_keys_are_dropped_beyond_the_bound() {
    let clock = ManualClock::new();
    let cache = StaleCache::builder(3, S * 3600)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    for k in 0..3u32 {
        cache.call(k, ok(k)).await.unwrap();
        clock.advance(S);
    }
    // refreshing 0 makes 1 the oldest
    cache.call(0, ok(10)).await.unwrap();
    cache.call(3, ok(3)).await.unwrap();
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.call(1, down()).await, Err(Error::Inner("down")));
    for (k, v) in [(0, 10), (2, 2), (3, 3)] {
        assert_eq!(cache.call(k, down()).await.unwrap().into_inner(), v);
    }
    // many keys: never more than the bound
    for k in 100..1100u32 {
        cache.call(k, ok(k)).await.unwrap();
        assert!(cache.len() <= 3);
    }
}

#[tokio::test(start_paused = true)]
async fn around_a_pipeline_each_stale_answer_is_reported() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let cache = StaleCache::builder(100, S * 60)
        .on_stale(move |ev| {
            seen.lock()
                .unwrap()
                .push((*ev.key, ev.age, ev.failure.to_string()))
        })
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let fresh = cache
        .call(
            "user-7",
            pipeline.execute(|| async { Ok::<_, &str>("ada") }),
        )
        .await
        .unwrap();
    assert_eq!(fresh, Answer::Fresh("ada"));
    tokio::time::sleep(S * 5).await;
    let stale = cache
        .call(
            "user-7",
            pipeline.execute(|| async { Err::<&str, _>("db down") }),
        )
        .await
        .unwrap();
    assert_eq!(
        stale,
        Answer::Stale {
            value: "ada",
            age: S * 5
        }
    );
    assert_eq!(
        *events.lock().unwrap(),
        [("user-7", S * 5, "gave up after 2 attempts".to_string())]
    );
}
