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
