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

/// One step of a time-window run: time passes, then one call with its outcome.
#[derive(Debug, Clone, Copy)]
struct Step {
    after_ms: u64,
    failed: bool,
    slow: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![8 => 0u64..300, 1 => 0u64..5_000],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(after_ms, failed, slow)| Step {
            after_ms,
            failed,
            slow,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A time window (with a slow-call rate too) opens at the first call after which the
    /// calls of the slices in the window, once at least `min`, reach either threshold.
    #[test]
    fn time_window_matches_the_bucket_model(
        buckets in 1u32..12,
        span_ms in 1u64..400,
        min in 1u32..20,
        pct in 1u32..=100,
        slow_pct in 1u32..=100,
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        const SLOW: Duration = Duration::from_millis(500);
        let clock = ManualClock::new();
        let origin = Duration::from_secs(1_000_000);
        clock.set(origin);
        let b = CircuitBreaker::failure_rate(f64::from(pct) / 100.0)
            .slow_calls(SLOW, f64::from(slow_pct) / 100.0)
            .window(Window::time_buckets(
                Duration::from_millis(span_ms * u64::from(buckets)),
                buckets,
            ))
            .minimum_calls(min)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let slice = |now: Duration| now.as_millis() as u64 / span_ms + 1;
        let mut model: Vec<(u64, Step)> = Vec::new();
        let mut now = origin;
        for (i, st) in steps.iter().enumerate() {
            now += Duration::from_millis(st.after_ms);
            clock.set(now);
            let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
                panic!("closed breaker must admit")
            };
            let outcome = if st.failed { Outcome::Failure } else { Outcome::Success };
            p.record(outcome, if st.slow { SLOW } else { Duration::ZERO });
            let s = slice(now);
            model.push((s, *st));
            let live: Vec<Step> = model
                .iter()
                .filter(|(sl, _)| sl + u64::from(buckets) > s)
                .map(|m| m.1)
                .collect();
            let total = live.len() as u32;
            let failed = live.iter().filter(|c| c.failed).count() as u32;
            let slow = live.iter().filter(|c| c.slow).count() as u32;
            let trips = total >= min && (failed * 100 >= pct * total || slow * 100 >= slow_pct * total);
            if trips {
                prop_assert_eq!(b.state(), CircuitState::Open, "call {} should open", i);
                break;
            }
            prop_assert_eq!(b.state(), CircuitState::Closed, "call {} should not open", i);
            let snap = b.snapshot();
            prop_assert_eq!(
                (snap.buffered_calls, snap.failed_calls, snap.slow_calls),
                (u64::from(total), u64::from(failed), u64::from(slow))
            );
        }
    }

    /// Consecutive-failures mode opens exactly at the `n`th failure in a row; successes
    /// reset the run, ignored results leave it alone.
    #[test]
    fn consecutive_mode_matches_the_run_model(
        n in 1u32..8,
        outcomes in proptest::collection::vec(0u8..3, 0..100),
    ) {
        let b = CircuitBreaker::consecutive_failures(n)
            .clock(Arc::new(ManualClock::new()))
            .build()
            .unwrap();
        let mut run = 0;
        for (i, o) in outcomes.into_iter().enumerate() {
            let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) else {
                panic!("closed breaker must admit")
            };
            let outcome = [Outcome::Success, Outcome::Failure, Outcome::Ignored][o as usize];
            p.record(outcome, Duration::from_millis(1));
            match o {
                0 => run = 0,
                1 => run += 1,
                _ => {}
            }
            if run >= n {
                prop_assert_eq!(b.state(), CircuitState::Open, "call {} should open", i);
                break;
            }
            prop_assert_eq!(b.state(), CircuitState::Closed, "call {}", i);
            prop_assert_eq!(b.snapshot().consecutive_failures, run);
        }
    }
}
