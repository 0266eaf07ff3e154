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
