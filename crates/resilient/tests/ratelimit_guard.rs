//! The rate limiter as a pipeline guard: reject and wait modes, cancellation, deadlines,
//! tower. Async waits run on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use resilient::ratelimit::{FixedWindow, Gcra, Limiter, Mode, Rate, RateLimiter, Smooth};
use resilient::{Acquire, Context, Error, Guard, ManualClock, Pipeline, Retry, Timeout};
use tokio::time::Instant;

async fn call(p: &Pipeline) -> Result<(), Error<()>> {
    p.execute(|| async { Ok::<(), ()>(()) }).await
}

#[tokio::test(start_paused = true)]
async fn reject_mode_reports_retry_after() {
    let p = Pipeline::builder()
        .rate_limit(RateLimiter::gcra(Rate::per_second(2)).build().unwrap())
        .build()
        .unwrap();
    call(&p).await.unwrap();
    call(&p).await.unwrap();
    match call(&p).await {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(500)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn under_a_request_timeout_the_limiter_decides_on_the_calls_start() {
    // With a request timeout the engine reads the clock as the call starts and the limiter
    // admits on that reading: the same decisions, and the same wait, as without one.
    let limiter = RateLimiter::gcra(Rate::per_second(2)).build().unwrap();
    let p = Pipeline::builder()
        .rate_limit(&limiter)
        .timeout(Timeout::request(Duration::from_secs(5)))
        .build()
        .unwrap();
    for round in 0..3 {
        call(&p).await.unwrap();
        call(&p).await.unwrap();
        match call(&p).await {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert_eq!(
                    retry_after,
                    Some(Duration::from_millis(500)),
                    "round {round}"
                )
            }
            other => panic!("round {round}: {other:?}"),
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(call(&p).await.is_ok(), "round {round}");
        assert!(call(&p).await.is_err(), "round {round}");
        tokio::time::advance(Duration::from_millis(1)).await;
        // The limiter's own reading agrees with the engine's.
        assert!(limiter.allow().is_ok(), "round {round}");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn wait_mode_spaces_calls_by_reservation() {
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    let start = Instant::now();
    let mut at = vec![];
    for _ in 0..4 {
        call(&p).await.unwrap();
        at.push(start.elapsed().as_secs());
    }
    assert_eq!(at, [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_rejects_when_the_wait_exceeds_max_wait() {
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_millis(500))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    call(&p).await.unwrap();
    let start = Instant::now();
    let e = call(&p).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(start.elapsed(), Duration::ZERO, "rejected without waiting");
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiter_gives_its_reservation_back() {
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(limiter.check().allowed);
    let ctx = Context::new();
    let Acquire::Wait(waiting) = limiter.acquire(&ctx) else {
        panic!("the second call must wait")
    };
    // Cancel the waiter (drop its future) before its slot is due.
    let _ = tokio::time::timeout(Duration::from_millis(300), waiting).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // At t = 1 s the slot the waiter held is free again.
    assert!(limiter.check().allowed);
    assert!(!limiter.check().allowed);
}

#[tokio::test(start_paused = true)]
async fn completed_waiter_keeps_its_reservation() {
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(limiter.check().allowed);
    let permit = limiter.acquire(&Context::new()).resolve().await;
    assert!(permit.is_ok());
    drop(permit);
    assert!(!limiter.check().allowed, "the slot at 1 s was used");
}

#[tokio::test(start_paused = true)]
async fn window_algorithms_wait_by_polling() {
    let limiter = RateLimiter::builder()
        .limit(FixedWindow::limiter(1, Duration::from_secs(1)).unwrap())
        .mode(Mode::Wait(Duration::from_secs(2)))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    call(&p).await.unwrap();
    call(&p).await.unwrap();
    // The second call waited for the next window; the origin of SystemClock is the
    // first reading, so measure relative to the first call.
    assert!(start.elapsed() > Duration::ZERO && start.elapsed() <= Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn waits_never_outlast_the_call_deadline() {
    let limiter = RateLimiter::gcra(Rate::per_second(1))
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_millis(300)))
        .rate_limit(limiter)
        .build()
        .unwrap();
    call(&p).await.unwrap();
    let start = Instant::now();
    let e = call(&p).await.unwrap_err();
    assert!(matches!(e, Error::RateLimited { .. }), "{e:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn per_attempt_limiter_counts_each_retry() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::gcra(Rate::per_second(3))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(5))
        .guard(limiter.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let r: Result<(), Error<&str>> = p
        .execute(|| {
            calls += 1;
            async { Err("down") }
        })
        .await;
    assert_eq!(calls, 3, "the fourth attempt was rate limited");
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    assert!(!limiter.check().allowed);
}

#[tokio::test(start_paused = true)]
async fn smooth_limiter_waits_like_guava() {
    let limiter = RateLimiter::builder()
        .limit(Smooth::bursty(Rate::per_second(2)).build().unwrap())
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        call(&p).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn tower_layer_is_clone_and_shares_state() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let layer = RateLimiter::gcra(Rate::per_second(2))
        .build()
        .unwrap()
        .layer();
    let make = |l| {
        ServiceBuilder::new()
            .layer(l)
            .service(service_fn(|x: u32| async move { Ok::<_, ()>(x) }))
    };
    let mut a = make(layer.clone());
    let mut b = make(layer);
    assert_eq!(a.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(b.ready().await.unwrap().call(2).await.unwrap(), 2);
    let e = a.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(matches!(e, Error::RateLimited { .. }));
}

#[test]
fn shared_limit_changes_rate_at_runtime() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let gcra = Arc::new(Gcra::limiter(Rate::per_second(1)).unwrap());
    let limiter = RateLimiter::builder()
        .limit(gcra.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert!(limiter.check().allowed);
    assert!(!limiter.check().allowed);
    // On the shared handle, at the limiter's own time.
    gcra.set_rate(limiter.now(), Rate::per_second(10), 10)
        .unwrap();
    // The unit in use stays in use; nine more are available at once.
    for _ in 0..9 {
        assert!(limiter.check().allowed);
    }
    assert!(!limiter.check().allowed);
    assert_eq!(gcra.policy().quota, 10);
}

/// A GCRA limit alone is admitted by `allow` without a call through `dyn Limiter`: that
/// path and the others (`check`, `set_rate`, a pipeline's guard) share one state, whichever
/// way the limit was added (by value or shared); with a second limit, both are asked.
#[tokio::test(start_paused = true)]
async fn a_lone_gcra_limit_is_one_state_on_every_path() {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let built = [
        RateLimiter::gcra(Rate::per_second(10)),
        RateLimiter::builder().limit(Gcra::limiter(Rate::per_second(10)).unwrap()),
        RateLimiter::gcra_with_burst(Rate::per_second(10), 10),
        RateLimiter::builder().limit(Arc::new(Gcra::limiter(Rate::per_second(10)).unwrap())),
    ];
    for (i, builder) in built.into_iter().enumerate() {
        let l = builder.clock(Arc::new(clock.clone())).build().unwrap();
        for _ in 0..4 {
            assert!(l.allow().is_ok(), "{i}");
        }
        for _ in 0..3 {
            assert!(l.check().allowed, "{i}");
        }
        assert!(l.allow_n(3).is_ok(), "{i}");
        // Ten units used, by both paths: both refuse, and agree on the wait.
        assert_eq!(l.allow(), Err(Duration::from_millis(100)), "{i}");
        let d = l.check();
        assert_eq!(
            (d.allowed, d.retry_after),
            (false, Duration::from_millis(100)),
            "{i}"
        );
        // A new rate, set on the limiter, is the one `allow` admits on.
        l.set_rate(0, Rate::per_second(1), 1).unwrap();
        clock.advance(Duration::from_millis(100));
        assert!(l.allow().is_err(), "{i}");
        clock.advance(Duration::from_secs(10));
        assert!(l.allow().is_ok(), "{i}");
        assert!(l.allow().is_err(), "{i}");
        // Through a pipeline, the guard's admission is the same state.
        clock.advance(Duration::from_secs(1));
        let p = Pipeline::builder().rate_limit(&l).build().unwrap();
        assert!(call(&p).await.is_ok(), "{i}");
        assert!(l.allow().is_err(), "{i}");
        clock.advance(Duration::from_secs(1));
    }
    // Two limits (a quota): the second one's refusal holds for `allow` too.
    let per_minute = Arc::new(Gcra::limiter(Rate::per_minute(2)).unwrap());
    let quota = RateLimiter::gcra(Rate::per_second(10))
        .limit(per_minute.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert!(quota.allow().is_ok());
    assert!(quota.allow().is_ok());
    assert!(quota.allow().is_err());
    assert!(!per_minute.peek(quota.now(), 1).allowed);
}

/// A limit's capacity cut at runtime below the guard's configured cost: every path
/// denies (nothing is consumed), and the rejection says "never" (no retry_after) rather
/// than a wait of centuries.
#[tokio::test(start_paused = true)]
async fn a_capacity_cut_below_the_cost_denies_with_no_retry_after() {
    use resilient::Rejection;
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(86_400));
    let per_sec = Arc::new(Gcra::limiter(Rate::per_second(10)).unwrap());
    let per_min = Arc::new(Gcra::limiter(Rate::per_minute(100)).unwrap());
    let quota = RateLimiter::builder()
        .limit(per_sec.clone())
        .limit(per_min.clone())
        .cost(5)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let single = RateLimiter::builder()
        .limit(per_sec.clone())
        .cost(5)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    per_sec
        .set_rate(quota.now(), Rate::per_second(2), 2)
        .unwrap();
    for l in [&quota, &single] {
        let d = l.check();
        assert!(!d.allowed, "{d:?}");
        assert_eq!(d.retry_after, Duration::MAX);
        assert_eq!(
            d.rejection(),
            Rejection::RateLimited {
                retry_after: None,
                info: None
            }
        );
        assert_eq!(l.allow(), Err(Duration::MAX));
        match l.acquire_now(&Context::new()) {
            Err(r) => assert!(
                matches!(
                    r,
                    Rejection::RateLimited {
                        retry_after: None,
                        info: Some(_)
                    }
                ),
                "{r:?}"
            ),
            Ok(_) => panic!("admitted"),
        }
        let p = Pipeline::builder().rate_limit(l.clone()).build().unwrap();
        assert!(matches!(
            call(&p).await,
            Err(Error::RateLimited {
                retry_after: None,
                ..
            })
        ));
    }
    // Wait mode: no wait can help, rejected at once.
    let waiting = RateLimiter::builder()
        .limit(per_sec.clone())
        .limit(FixedWindow::limiter(100, Duration::from_secs(1)).unwrap())
        .cost(5)
        .max_wait(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .build();
    assert!(waiting.is_err(), "the cost is checked at build");
    per_sec
        .set_rate(quota.now(), Rate::per_second(10), 10)
        .unwrap();
    let waiting = RateLimiter::builder()
        .limit(per_sec.clone())
        .limit(FixedWindow::limiter(100, Duration::from_secs(1)).unwrap())
        .cost(5)
        .max_wait(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    waiting.set_rate(0, Rate::per_second(2), 2).unwrap();
    let p = Pipeline::builder().rate_limit(waiting).build().unwrap();
    let start = Instant::now();
    assert!(matches!(
        call(&p).await,
        Err(Error::RateLimited {
            retry_after: None,
            ..
        })
    ));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        per_min.peek(quota.now(), 0).remaining,
        100,
        "nothing consumed"
    );
    assert_eq!(
        per_sec.peek(quota.now(), 0).remaining,
        2,
        "nothing consumed"
    );
}

/// A smooth limiter in wait mode reserves a request larger than its debt allowance plus
/// the stored permits: it waits for the permits it lacks instead of being rejected.
#[tokio::test(start_paused = true)]
async fn smooth_wait_mode_reserves_a_request_beyond_the_debt_allowance() {
    let limiter = RateLimiter::builder()
        .limit(Smooth::bursty(Rate::per_second(10)).build().unwrap())
        .cost(5)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    let start = Instant::now();
    // Fresh: nothing stored and one permit of debt allowed, so it waits for 4 permits.
    call(&p).await.unwrap();
    let first = start.elapsed();
    assert!(first >= ms(400) && first <= ms(401), "{first:?}");
    // The next pays the 1 permit of debt, then waits for 4 more: 500 ms.
    call(&p).await.unwrap();
    let second = start.elapsed();
    assert!(second >= ms(900) && second <= ms(902), "{second:?}");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A cancelled waiter on a smooth limiter gives its reservation back: the next caller
/// waits only for the slot the cancelled one held.
#[tokio::test(start_paused = true)]
async fn a_cancelled_smooth_waiter_gives_its_reservation_back() {
    let limiter = RateLimiter::builder()
        .limit(Smooth::bursty(Rate::per_second(1)).build().unwrap())
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let ctx = Context::new();
    assert!(limiter.check().allowed); // the next slot is at 1 s
    let Acquire::Wait(waiting) = limiter.acquire(&ctx) else {
        panic!("the second call must wait")
    };
    // It held the slot at 1 s (and pushed the next to 2 s); cancelled at 300 ms.
    assert!(
        tokio::time::timeout(ms(300), waiting).await.is_err(),
        "cancelled"
    );
    let start = Instant::now();
    assert!(limiter.acquire(&ctx).resolve().await.is_ok());
    let waited = start.elapsed();
    assert!(waited >= ms(700) && waited <= ms(701), "{waited:?}");
    // ... and that one is kept: the next slot is at 2 s.
    let d = limiter.check();
    assert!(!d.allowed);
    assert!(
        d.retry_after > ms(999) && d.retry_after <= ms(1_000),
        "{d:?}"
    );
}

/// A cancelled waiter on a quota gives its units back to every limit.
#[tokio::test(start_paused = true)]
async fn a_cancelled_quota_waiter_gives_back_to_every_limit() {
    let per_sec = Arc::new(Gcra::limiter(Rate::per_second(1)).unwrap());
    let per_min = Arc::new(Gcra::limiter_with_burst(Rate::per_minute(10), 3).unwrap());
    let limiter = RateLimiter::builder()
        .limit(per_sec.clone())
        .limit(per_min.clone())
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let ctx = Context::new();
    assert!(limiter.check().allowed);
    let remaining =
        |l: &Arc<resilient::ratelimit::AtomicLimiter<Gcra>>| l.peek(limiter.now(), 0).remaining;
    assert_eq!((remaining(&per_sec), remaining(&per_min)), (0, 2));
    let Acquire::Wait(waiting) = limiter.acquire(&ctx) else {
        panic!("the second call must wait for the per-second limit")
    };
    // Reserved on both: the per-minute limit took its unit at once.
    assert_eq!(remaining(&per_min), 1);
    assert!(tokio::time::timeout(ms(300), waiting).await.is_err());
    assert_eq!(remaining(&per_min), 2, "given back");
    let d = per_sec.peek(limiter.now(), 1);
    assert_eq!(
        d.retry_after,
        ms(700),
        "given back: only the first unit is in use"
    );
    // A waiter that completes keeps its units on both.
    assert!(limiter.acquire(&ctx).resolve().await.is_ok());
    assert_eq!((remaining(&per_sec), remaining(&per_min)), (0, 1));
}

/// `check()` on a limiter whose one limit is a GCRA decides it directly (no call through
/// `dyn Limiter`); the same GCRA behind `Arc<dyn Limiter>` takes the general path. Over
/// any sequence of clock steps, costs (some above the burst) and runtime rate changes
/// (some cutting the burst below the cost), both answer the same, field by field.
mod gcra_direct_check {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Check,
        Allow,
        SetBurst(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..400).prop_map(Op::Advance),
            6 => Just(Op::Check),
            2 => Just(Op::Allow),
            1 => (1u64..12).prop_map(Op::SetBurst),
        ]
    }

    fn limiter(clock: &ManualClock, cost: u64, direct: bool) -> RateLimiter {
        let gcra = Gcra::limiter(Rate::per_second(10)).unwrap();
        let b = RateLimiter::builder()
            .clock(Arc::new(clock.clone()))
            .cost(cost);
        let b = if direct {
            b.limit(gcra)
        } else {
            b.limit(Arc::new(gcra) as Arc<dyn Limiter>)
        };
        b.build().unwrap()
    }

    proptest! {
        #[test]
        fn same_decisions_as_through_dyn_limiter(
            cost in 1u64..=10,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let clock = ManualClock::new();
            let direct = limiter(&clock, cost, true);
            let general = limiter(&clock, cost, false);
            for op in ops {
                match op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Check => prop_assert_eq!(direct.check(), general.check()),
                    Op::Allow => prop_assert_eq!(direct.allow(), general.allow()),
                    Op::SetBurst(b) => {
                        let rate = Rate::per_second(10);
                        prop_assert_eq!(
                            direct.set_rate(0, rate, b).is_ok(),
                            general.set_rate(0, rate, b).is_ok()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_cost_above_the_cut_burst_is_never_admitted_and_takes_nothing() {
        let clock = ManualClock::new();
        let (direct, general) = (limiter(&clock, 5, true), limiter(&clock, 5, false));
        for l in [&direct, &general] {
            l.set_rate(0, Rate::per_second(10), 3).unwrap();
        }
        let d = direct.check();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::MAX);
        assert_eq!(d.limit, 3);
        assert_eq!(d, general.check());
        // Nothing was consumed: the same answer again, and a cost that fits still fits.
        assert_eq!(direct.check(), d);
        clock.advance(Duration::from_millis(300));
        assert!(direct.check_n(3).unwrap().allowed);
    }
}
