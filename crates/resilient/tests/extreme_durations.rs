//! Extreme durations that `build()` accepts never panic at call time: deadline sums
//! saturate (a deadline too far ahead to represent is no deadline), on the async and the
//! blocking path, in nested pipelines and with retries.

use std::sync::Arc;
use std::time::Duration;

use resilient::{Error, ManualClock, Pipeline, Retry, Timeout, TimeoutScope};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

fn flaky(n: &mut u32, fail: u32) -> impl Future<Output = Result<u32, &'static str>> + use<> {
    *n += 1;
    let n = *n;
    async move {
        sleep(MS).await;
        if n <= fail { Err("flaky") } else { Ok(n) }
    }
}

async fn hang(d: Duration) -> Result<(), ()> {
    sleep(d).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_operation_timeout_of_duration_max_never_fires() {
    let p = Pipeline::builder()
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let mut n = 0;
    assert_eq!(p.execute(|| flaky(&mut n, 0)).await.unwrap(), 1);
    let r = p.execute(|| async { Err::<(), _>("no") }).await;
    assert!(matches!(r, Err(Error::Inner("no"))), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_timeout_of_duration_max_never_fires() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .build()
        .unwrap();
    let mut n = 0;
    assert_eq!(p.execute(|| flaky(&mut n, 0)).await.unwrap(), 1);
    // a long call is not cut short
    let start = Instant::now();
    let r = p
        .execute(|| async {
            sleep(Duration::from_secs(86_400 * 365)).await;
            Ok::<_, ()>(7)
        })
        .await;
    assert_eq!(r.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_secs(86_400 * 365));
}

#[tokio::test(start_paused = true)]
async fn both_timeouts_at_duration_max_with_retries() {
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::exponential(MS * 10).attempts(4))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let mut n = 0;
    let start = Instant::now();
    assert_eq!(p.execute(|| flaky(&mut n, 2)).await.unwrap(), 3);
    // three attempts of 1 ms, waits of 10 and 20 ms
    assert_eq!(start.elapsed(), MS * 33);
    let mut n = 0;
    let r = p.execute(|| flaky(&mut n, 10)).await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 4, .. })),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_operation_timeout_under_a_finite_request_timeout() {
    // operation <= request holds; the attempt's deadline is the request's
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::constant(MS).attempts(2))
        .timeout(Timeout::operation(Duration::MAX - Duration::from_secs(1)))
        .build()
        .unwrap();
    let mut n = 0;
    assert_eq!(p.execute(|| flaky(&mut n, 1)).await.unwrap(), 2);
}

/// Not only `Duration::MAX`: any duration whose sum with now cannot be represented, or that
/// tokio's timer could not take.
#[tokio::test(start_paused = true)]
async fn timeouts_near_the_limits_of_instant() {
    for huge in [
        Duration::from_secs(i64::MAX as u64),
        Duration::from_secs(i64::MAX as u64 - 1_000_000),
        Duration::from_secs(u64::MAX / 2),
        Duration::from_secs(1 << 40),
    ] {
        let p = Pipeline::builder()
            .timeout(Timeout::request(huge))
            .retry(Retry::constant(MS).attempts(2))
            .timeout(Timeout::operation(huge))
            .build()
            .unwrap();
        let mut n = 0;
        assert_eq!(p.execute(|| flaky(&mut n, 1)).await.unwrap(), 2, "{huge:?}");
        let mut n = 0;
        assert_eq!(
            p.execute_blocking(|| {
                n += 1;
                if n < 2 { Err("x") } else { Ok(n) }
            })
            .unwrap(),
            2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn nested_pipelines_with_duration_max_timeouts() {
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::immediate().attempts(2))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let inner = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::immediate().attempts(2))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let mut n = 0;
    let r = outer
        .execute(|| {
            let inner = inner.clone();
            n += 1;
            let first = n == 1;
            async move {
                let mut m = 0;
                inner
                    .execute(move || flaky(&mut m, u32::from(first) * 5))
                    .await
            }
        })
        .await;
    assert_eq!(r.unwrap(), 1);

    // a finite outer deadline still binds a nested pipeline whose own timeouts are MAX
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| {
            let inner = inner.clone();
            async move {
                inner
                    .execute_with(|ctx| {
                        assert!(ctx.remaining().unwrap() <= Duration::from_secs(1));
                        async {
                            sleep(Duration::from_secs(5)).await;
                            Ok::<_, ()>(())
                        }
                    })
                    .await
            }
        })
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(r.is_err(), "{r:?}");

    // and a finite inner deadline under an outer MAX one
    let outer = Pipeline::builder()
        .timeout(Timeout::request(Duration::MAX))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let tight = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(2)))
        .build()
        .unwrap();
    let start = Instant::now();
    let r = outer
        .execute(|| {
            let tight = tight.clone();
            async move { tight.execute(|| hang(Duration::from_secs(5))).await }
        })
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Inner(Error::Timeout {
                scope: TimeoutScope::Request,
                ..
            }))
        ),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[test]
fn blocking_calls_with_duration_max_timeouts() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let p = Pipeline::builder()
        .clock(Arc::new(clock.clone()))
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::constant(MS).attempts(3))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    let mut n = 0;
    let r = p.execute_blocking(|| {
        n += 1;
        if n < 3 { Err("flaky") } else { Ok(n) }
    });
    assert_eq!(r.unwrap(), 3);
    let r = p.execute_blocking(|| Err::<(), _>("down"));
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_calls_nested_in_async_calls_with_duration_max_timeouts() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let blocking = Pipeline::builder()
        .clock(Arc::new(clock.clone()))
        .timeout(Timeout::request(Duration::MAX))
        .retry(Retry::constant(MS).attempts(3))
        .timeout(Timeout::operation(Duration::MAX))
        .build()
        .unwrap();
    for outer in [
        Pipeline::builder()
            .timeout(Timeout::request(Duration::MAX))
            .timeout(Timeout::operation(Duration::MAX))
            .build()
            .unwrap(),
        Pipeline::builder()
            .timeout(Timeout::request(Duration::from_secs(1)))
            .build()
            .unwrap(),
    ] {
        let r = outer
            .execute(|| {
                let blocking = &blocking;
                async move {
                    let mut n = 0;
                    Ok::<_, ()>(blocking.execute_blocking(|| {
                        n += 1;
                        if n < 2 { Err("flaky") } else { Ok(n) }
                    }))
                }
            })
            .await;
        assert_eq!(r.unwrap().unwrap(), 2);
    }
}

/// A retry wait as long as the schedule allows, with no deadline to cut it: the call just
/// waits (here, until the enclosing timeout gives up on it).
#[tokio::test(start_paused = true)]
async fn huge_retry_waits_do_not_panic() {
    for huge in [
        Duration::MAX,
        Duration::from_secs(i64::MAX as u64 - 1_000),
        Duration::from_secs(1 << 40),
    ] {
        let p = Pipeline::builder()
            .retry(Retry::constant(huge).max_delay(Duration::MAX).attempts(2))
            .build()
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(3600),
            p.execute(|| async { Err::<(), _>("down") }),
        )
        .await;
        assert!(
            r.is_err(),
            "{huge:?}: the wait outlives the enclosing timeout"
        );
    }
}

/// A bulkhead's maximum wait may be anything from zero to `Duration::MAX`: a queued caller
/// gets the slot when it frees up, or is rejected when the wait ends.
#[tokio::test(start_paused = true)]
async fn bulkhead_max_wait_at_the_extremes() {
    for max_wait in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_secs(i64::MAX as u64 - 1_000),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ] {
        let p = Pipeline::builder()
            .guard(
                resilient::Bulkhead::builder(1)
                    .queue(usize::MAX)
                    .max_wait(max_wait)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let holder = {
            let p = p.clone();
            tokio::spawn(async move { p.execute(|| hang(Duration::from_secs(10))).await })
        };
        tokio::task::yield_now().await; // the holder takes the slot
        let start = Instant::now();
        let r = p.execute(|| async { Ok::<_, ()>(()) }).await;
        if max_wait < Duration::from_secs(10) {
            assert!(matches!(r, Err(Error::BulkheadFull)), "{max_wait:?}: {r:?}");
            assert!(start.elapsed() <= max_wait + MS, "{max_wait:?}");
        } else {
            // the slot freed up after 10 s
            assert!(r.is_ok(), "{max_wait:?}: {r:?}");
            assert_eq!(start.elapsed(), Duration::from_secs(10), "{max_wait:?}");
        }
        holder.await.unwrap().unwrap();
    }
}
