//! Property tests: delays stay within their bounds, whatever the configuration.

use std::time::Duration;

use proptest::prelude::*;
use resilient::{Backoff, Jitter, SeededRandom};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0.0f64..=1.0).prop_map(Jitter::Proportional),
    ]
}

fn backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        (0u64..u64::MAX).prop_map(|n| Backoff::Constant(Duration::from_nanos(n))),
        (0u64..u64::MAX, 0u64..u64::MAX).prop_map(|(a, b)| Backoff::Linear {
            initial: Duration::from_nanos(a),
            step: Duration::from_nanos(b),
        }),
        (0u64..u64::MAX, 1.0f64..1000.0).prop_map(|(a, f)| Backoff::Exponential {
            initial: Duration::from_nanos(a),
            factor: f,
        }),
    ]
}

proptest! {
    #[test]
    fn delays_never_exceed_the_cap_and_never_overflow(
        b in backoff(),
        j in jitter(),
        attempt in any::<u32>(),
        cap_ms in 0u64..10_000_000,
        prev in proptest::option::of(0u64..u64::MAX),
        seed in any::<u64>(),
    ) {
        let rng = SeededRandom::new(seed);
        let cap = Duration::from_millis(cap_ms);
        let base = b.delay(attempt).unwrap();
        let initial = b.delay(1).unwrap();
        let d = j.apply(base, initial, prev.map(Duration::from_nanos), cap, &rng);
        prop_assert!(d <= cap);
    }

    #[test]
    fn jitter_stays_in_its_band(
        base_ms in 0u64..1_000_000,
        p in 0.0f64..=1.0,
        seed in any::<u64>(),
    ) {
        let rng = SeededRandom::new(seed);
        let base = Duration::from_millis(base_ms);
        let cap = Duration::MAX;
        let full = Jitter::Full.apply(base, base, None, cap, &rng);
        prop_assert!(full <= base);
        let equal = Jitter::Equal.apply(base, base, None, cap, &rng);
        prop_assert!(equal >= base / 2 && equal <= base);
        let prop = Jitter::Proportional(p).apply(base, base, None, cap, &rng);
        let lo = base.as_secs_f64() * (1.0 - p) - 1e-6;
        let hi = base.as_secs_f64() * (1.0 + p) + 1e-6;
        prop_assert!(prop.as_secs_f64() >= lo && prop.as_secs_f64() <= hi);
    }

    #[test]
    fn decorrelated_stays_between_initial_and_three_times_previous(
        initial_ms in 1u64..10_000,
        prev_ms in 1u64..100_000,
        seed in any::<u64>(),
    ) {
        let rng = SeededRandom::new(seed);
        let initial = Duration::from_millis(initial_ms);
        let prev = Duration::from_millis(prev_ms);
        let d = Jitter::Decorrelated.apply(initial, initial, Some(prev), Duration::MAX, &rng);
        prop_assert!(d >= initial);
        prop_assert!(d <= (prev * 3).max(initial));
    }

    #[test]
    fn exponential_is_monotone_until_saturation(
        initial_ms in 1u64..10_000,
        factor in 1.0f64..10.0,
        n in 1u32..5000,
    ) {
        let b = Backoff::Exponential { initial: Duration::from_millis(initial_ms), factor };
        prop_assert!(b.delay(n + 1).unwrap() >= b.delay(n).unwrap());
    }
}
