//! Configurations at the edges: what the rate-limit builders accept must behave as
//! configured, and what cannot be represented is a `ConfigError` naming the field.

use std::time::Duration;

use resilient::ratelimit::{Gcra, Limiter, Rate};

/// One unit per `Duration::MAX` made the tolerance exactly `u64::MAX` nanoseconds, which
/// slipped past the overflow check and admitted every request.
#[test]
fn gcra_with_a_tolerance_at_the_end_of_time_is_rejected_not_unlimited() {
    for rate in [
        Rate::new(1, Duration::MAX),
        Rate::new(1, Duration::from_nanos(u64::MAX)),
        Rate::new(2, Duration::from_nanos(u64::MAX)),
    ] {
        let e = Gcra::limiter(rate).unwrap_err();
        assert!(e.field().starts_with("gcra."), "{e}");
    }
    // The longest accepted: a burst that takes 100 years to refill still limits.
    let century = Duration::from_secs(100 * 365 * 86_400);
    let l = Gcra::limiter(Rate::new(1, century)).unwrap();
    let day = Duration::from_secs(86_400);
    assert!(l.try_acquire(day, 1).unwrap().allowed);
    let d = l.try_acquire(day, 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, century);
}

/// A bucket's refill periods start at its first use, not at multiples of the period from
/// the clock's origin: a bucket of 10 at 1/s emptied at a day + 0.3 s gets its next token
/// a full second later.
#[test]
fn token_bucket_periods_start_at_first_use() {
    use resilient::ratelimit::TokenBucket;
    let l = TokenBucket::limiter(10, Rate::per_second(1)).unwrap();
    let t0 = Duration::from_secs(86_400) + Duration::from_millis(300);
    assert!(l.try_acquire(t0, 10).unwrap().allowed);
    let d = l.try_acquire(t0, 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_secs(1));
    let d = l.try_acquire(t0 + Duration::from_millis(500), 1).unwrap();
    assert_eq!(d.retry_after, Duration::from_millis(500));
    assert!(
        l.try_acquire(t0 + Duration::from_secs(1), 1)
            .unwrap()
            .allowed
    );
    // A refill period set before first use also starts then.
    let l = TokenBucket::limiter(2, Rate::per_second(1)).unwrap();
    l.algorithm()
        .set(2, Rate::new(2, Duration::from_secs(4)))
        .unwrap();
    assert!(l.try_acquire(t0, 2).unwrap().allowed);
    assert_eq!(
        l.try_acquire(t0, 1).unwrap().retry_after,
        Duration::from_secs(4)
    );
}

/// Two billion per second cannot be spaced in whole nanoseconds: it used to become one
/// per nanosecond (a billion per second) silently. It is rejected, naming the field and
/// the rule, on every constructor that takes a rate.
#[test]
fn rates_that_cannot_be_represented_are_rejected() {
    use resilient::ratelimit::{KeyedLimiter, RateLimiter, Smooth};
    let too_fast = Rate::new(2_000_000_000, Duration::from_secs(1));
    let e = Gcra::new(too_fast).unwrap_err();
    assert_eq!(e.field(), "gcra.rate");
    assert!(e.rule().contains("nanosecond"), "{e}");
    assert_eq!(
        Gcra::with_burst(too_fast, 1).unwrap_err().field(),
        "gcra.rate"
    );
    assert_eq!(
        RateLimiter::gcra(too_fast).build().unwrap_err().field(),
        "gcra.rate"
    );
    assert_eq!(
        Smooth::bursty(too_fast).build().unwrap_err().field(),
        "smooth.rate"
    );
    // A whole-nanosecond interval that would round the rate up by more than 0.1%.
    assert_eq!(
        Gcra::new(Rate::new(2, Duration::from_nanos(3)))
            .unwrap_err()
            .field(),
        "gcra.rate"
    );
    // Runtime changes go through the same checks.
    let l = RateLimiter::gcra(Rate::per_second(1)).build().unwrap();
    assert_eq!(l.set_rate(0, too_fast, 1).unwrap_err().field(), "gcra.rate");
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
        .build::<u8>()
        .unwrap();
    assert_eq!(k.set_rate(0, too_fast, 1).unwrap_err().field(), "gcra.rate");
    let s = Smooth::bursty(Rate::per_second(1)).build().unwrap();
    assert_eq!(s.set_rate(too_fast).unwrap_err().field(), "smooth.rate");
    // A period that does not fit in u64 nanoseconds.
    let e = resilient::ratelimit::TokenBucket::new(1, Rate::new(1, Duration::MAX)).unwrap_err();
    assert_eq!(e.field(), "token_bucket.refill");
    // One per nanosecond is exact, and accepted.
    assert!(Gcra::new(Rate::new(1_000_000_000, Duration::from_secs(1))).is_ok());
}

fn count() -> impl proptest::strategy::Strategy<Value = u64> {
    use proptest::prelude::*;
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(3),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(2_000_000_000),
        any::<u64>(),
        1u64..10_000,
    ]
}

fn period() -> impl proptest::strategy::Strategy<Value = Duration> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_nanos(3)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (1u64..10_000_000_000).prop_map(Duration::from_nanos),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x2a7e),
        ..proptest::prelude::ProptestConfig::default()
    })]
    /// Whatever the rate: a GCRA either refuses it, naming its field, or enforces it
    /// within 0.1% and never above it; a token bucket and a smooth limiter either refuse
    /// it naming their field, or accept it.
    #[test]
    fn every_rate_is_enforced_as_given_or_rejected(count in count(), per in period(), burst in count()) {
        let rate = Rate::new(count, per);
        match Gcra::with_burst(rate, burst) {
            Ok(g) => {
                let t = g.interval().as_nanos();
                let asked = per.as_nanos();
                let total = t * u128::from(count);
                proptest::prop_assert!(total <= asked, "{rate:?}: interval {t} ns admits more");
                proptest::prop_assert!(asked * 1000 <= total * 1001, "{rate:?}: interval {t} ns");
                let l = resilient::ratelimit::AtomicLimiter::new(g);
                let d = l.try_acquire(Duration::from_secs(86_400), 1).unwrap();
                proptest::prop_assert!(d.allowed);
            }
            Err(e) => proptest::prop_assert!(e.field() == "gcra.rate" || e.field() == "gcra.burst", "{e}"),
        }
        if let Err(e) = resilient::ratelimit::TokenBucket::new(1, rate) {
            proptest::prop_assert_eq!(e.field(), "token_bucket.refill");
        }
        if let Err(e) = resilient::ratelimit::Smooth::bursty(rate).build() {
            proptest::prop_assert_eq!(e.field(), "smooth.rate");
        }
    }
}

/// A clock at the end of its range (`u64::MAX` nanoseconds) with a 1 ns window: the
/// window index is `u64::MAX`, and the next index used to overflow (a panic).
#[test]
fn window_indexes_saturate_at_the_end_of_the_clock() {
    use resilient::ratelimit::{Algorithm, FixedWindow, SlidingWindowCounter, TokenBucket};
    let ns = Duration::from_nanos(1);
    let algs: Vec<Box<dyn Algorithm>> = vec![
        Box::new(FixedWindow::new(1, ns).unwrap()),
        Box::new(SlidingWindowCounter::new(1, ns).unwrap()),
        Box::new(TokenBucket::new(1, Rate::new(1, ns)).unwrap()),
    ];
    for a in algs {
        let mut s = 0;
        for now in [0, u64::MAX - 3, u64::MAX, u64::MAX - 1, u64::MAX] {
            let (next, _) = a.step(s, now, 1);
            let _ = a.time_to_idle(next, now);
            let _ = a.refund(next, now, 1);
            s = next;
        }
    }
}

/// A limiter whose clock stands still (here at the end of its range) never frees
/// capacity: a waiter polling it ends when its maximum wait has passed in tokio's time,
/// after a few polls, instead of polling every millisecond with no end in sight.
#[tokio::test(start_paused = true)]
async fn a_waiter_on_a_clock_that_stands_still_ends_at_its_maximum_wait() {
    use resilient::ratelimit::{RateLimiter, SlidingWindowCounter};
    use resilient::{ManualClock, Pipeline};
    use std::sync::Arc;
    let clock = ManualClock::new();
    clock.set(Duration::MAX);
    let max_wait = Duration::from_secs(2 * 86_400);
    let limiter = RateLimiter::builder()
        .limit(SlidingWindowCounter::limiter(1, Duration::from_secs(86_400)).unwrap())
        .max_wait(max_wait)
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let p = Pipeline::builder().rate_limit(limiter).build().unwrap();
    let call = || p.execute(|| async { Ok::<(), ()>(()) });
    call().await.unwrap();
    let start = tokio::time::Instant::now();
    let r = tokio::time::timeout(2 * max_wait, call()).await;
    assert!(
        matches!(r, Ok(Err(resilient::Error::RateLimited { .. }))),
        "{r:?}"
    );
    let waited = start.elapsed();
    assert!(waited >= max_wait && waited < 2 * max_wait, "{waited:?}");
}
