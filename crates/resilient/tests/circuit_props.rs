//! Property tests: the breaker opens exactly when the failure rate of the window, past the
//! minimum number of calls, reaches the threshold.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use resilient::circuit::Window;
use resilient::{Acquire, CircuitBreaker, CircuitState, Context, Guard, ManualClock, Outcome};

fn breaker(size: u32, min: u32, pct: u32) -> CircuitBreaker {
    CircuitBreaker::failure_rate(f64::from(pct) / 100.0)
        .window(Window::count(size))
        .minimum_calls(min)
        .clock(Arc::new(ManualClock::new()))
        .build()
        .unwrap()
}

fn record(b: &CircuitBreaker, failed: bool) {
    let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
        panic!("closed breaker must admit")
    };
    let outcome = if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    p.record(outcome, Duration::from_millis(1));
}

/// A block of `n` outcomes with `f` failures at shuffled positions.
fn block(n: u32, f: u32, seed: u64) -> Vec<bool> {
    let mut v: Vec<bool> = (0..n).map(|i| i < f).collect();
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Repeating a block of `n` outcomes makes every full window a rotation of it, so
    /// every window holds exactly `f` failures: below the threshold it never opens.
    #[test]
    fn below_threshold_never_opens(n in 1u32..60, pct in 1u32..=100, f_seed: u32, seed: u64, reps in 1usize..6) {
        let max_f = (0..=n).filter(|f| f * 100 < pct * n).max();
        prop_assume!(max_f.is_some());
        let f = f_seed % (max_f.unwrap() + 1);
        let b = breaker(n, n, pct);
        let blk = block(n, f, seed);
        for _ in 0..reps {
            for &failed in &blk {
                record(&b, failed);
                prop_assert_eq!(b.state(), CircuitState::Closed);
            }
        }
    }

    /// At or above the threshold it opens exactly when the window reaches the minimum.
    #[test]
    fn at_or_above_threshold_always_opens(n in 1u32..60, pct in 1u32..=100, f_seed: u32, seed: u64) {
        let min_f = (0..=n).find(|f| f * 100 >= pct * n).unwrap();
        let f = min_f + f_seed % (n - min_f + 1);
        let b = breaker(n, n, pct);
        for (i, failed) in block(n, f, seed).into_iter().enumerate() {
            prop_assert_eq!(b.state(), CircuitState::Closed, "opened before the minimum ({})", i);
            record(&b, failed);
        }
        prop_assert_eq!(b.state(), CircuitState::Open);
    }

    /// Any sequence: the breaker opens at the first call after which the last
    /// `min(calls, size)` outcomes, once at least `min` of them, reach the threshold.
    #[test]
    fn matches_the_sliding_window_model(
        size in 1u32..40,
        min_seed: u32,
        pct in 1u32..=100,
        outcomes in proptest::collection::vec(any::<bool>(), 0..150),
    ) {
        let min = 1 + min_seed % size;
        let b = breaker(size, min, pct);
        let mut window = VecDeque::new();
        for (i, &failed) in outcomes.iter().enumerate() {
            record(&b, failed);
            window.push_back(failed);
            if window.len() > size as usize {
                window.pop_front();
            }
            let len = window.len() as u32;
            let fails = window.iter().filter(|f| **f).count() as u32;
            let trips = len >= min && fails * 100 >= pct * len;
            if trips {
                prop_assert_eq!(b.state(), CircuitState::Open, "call {} should open", i);
                break;
            }
            prop_assert_eq!(b.state(), CircuitState::Closed, "call {} should not open", i);
        }
    }
}
