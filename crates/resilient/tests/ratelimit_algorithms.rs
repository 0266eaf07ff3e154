//! Deterministic behaviour of every algorithm: admissions, remaining, reset, retry_after.
//!
//! Every scenario runs at several clock offsets (`OFFSETS`): production clock readings are
//! large (the system clock's origin is up to a day before its first reading), so logic that
//! assumes time starts near zero must fail here.

use std::sync::Arc;
use std::time::Duration;

use resilient::ManualClock;
use resilient::ratelimit::{
    Algorithm, CostError, Decision, FixedWindow, Gcra, Limiter, Rate, RateLimiter,
    SlidingWindowCounter, SlidingWindowLog, Smooth, TokenBucket,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

const DAY: Duration = Duration::from_secs(86_400);

/// Start times every scenario runs at: the origin, a day past it, a year past it (all
/// multiples of the windows used, so window boundaries fall where the scenarios expect).
const OFFSETS: [Duration; 3] = [Duration::ZERO, DAY, Duration::from_secs(365 * 86_400)];

#[track_caller]
fn expect(d: Decision, allowed: bool, remaining: u64, reset: Duration, retry_after: Duration) {
    assert_eq!(
        (d.allowed, d.remaining, d.reset, d.retry_after),
        (allowed, remaining, reset, retry_after),
        "{d:?}"
    );
}

#[test]
fn gcra_admissions_remaining_reset_retry_after() {
    for t0 in OFFSETS {
        let l = Gcra::limiter(Rate::per_second(10)).unwrap();
        expect(l.try_acquire(t0, 1).unwrap(), true, 9, ms(100), ms(0));
        expect(l.try_acquire(t0, 9).unwrap(), true, 0, s(1), ms(0));
        expect(l.try_acquire(t0, 1).unwrap(), false, 0, s(1), ms(100));
        // 250 ms later 2.5 units came back: 2 whole ones.
        assert_eq!(l.peek(t0 + ms(250), 0).remaining, 2);
        expect(
            l.try_acquire(t0 + ms(250), 2).unwrap(),
            true,
            0,
            ms(950),
            ms(0),
        );
        expect(
            l.try_acquire(t0 + ms(250), 1).unwrap(),
            false,
            0,
            ms(950),
            ms(50),
        );
        // Fully recovered after `reset`.
        expect(
            l.try_acquire(t0 + ms(1200), 10).unwrap(),
            true,
            0,
            s(1),
            ms(0),
        );
        assert_eq!(
            l.try_acquire(t0 + s(5), 11),
            Err(CostError { cost: 11, max: 10 })
        );
    }
}

#[test]
fn gcra_burst_is_total_capacity() {
    for t0 in OFFSETS {
        let l = Gcra::limiter_with_burst(Rate::per_second(1), 5).unwrap();
        let d = l.try_acquire(t0, 5).unwrap();
        assert!(d.allowed);
        assert_eq!(d.limit, 5);
        assert!(!l.try_acquire(t0, 1).unwrap().allowed);
        assert_eq!(l.policy().quota, 5);
        assert_eq!(l.policy().window, s(5));
    }
}

#[test]
fn gcra_rate_change_keeps_state() {
    for t0 in OFFSETS {
        let l = Gcra::limiter(Rate::per_second(10)).unwrap();
        l.try_acquire(t0, 10).unwrap();
        // Slower rate, same burst: the 10 units in use now take 10 s to come back.
        l.set_rate(t0, Rate::per_second(1), 10).unwrap();
        let d = l.peek(t0, 1);
        assert!(!d.allowed);
        assert_eq!(d.reset, s(10));
        assert_eq!(d.retry_after, s(1));
        // Faster again, half a second later: 9.5 s of debt at 1 s per unit is 9.5 units,
        // 950 ms at 100 ms per unit.
        l.set_rate(t0 + ms(500), Rate::per_second(10), 10).unwrap();
        let d = l.peek(t0 + ms(500), 1);
        assert_eq!(
            (d.allowed, d.reset, d.retry_after),
            (false, ms(950), ms(50))
        );
        // A smaller burst at the same rate keeps the debt: 9.5 units in use against a
        // burst of 5, so one more unit waits 550 ms.
        l.set_rate(t0 + ms(500), Rate::per_second(10), 5).unwrap();
        assert_eq!(l.peek(t0 + ms(500), 0).reset, ms(950));
        assert_eq!(l.peek(t0 + ms(500), 1).retry_after, ms(550));
        assert_eq!(
            l.set_rate(t0, Rate::per_second(0), 1).unwrap_err().field(),
            "gcra.rate"
        );
    }
}

#[test]
fn token_bucket_refills_in_steps() {
    for t0 in OFFSETS {
        let l = TokenBucket::limiter(10, Rate::per_second(5)).unwrap();
        expect(l.try_acquire(t0, 10).unwrap(), true, 0, s(2), ms(0));
        expect(
            l.try_acquire(t0 + ms(500), 1).unwrap(),
            false,
            0,
            ms(1500),
            ms(500),
        );
        expect(
            l.try_acquire(t0 + ms(1000), 5).unwrap(),
            true,
            0,
            s(2),
            ms(0),
        );
        // Two boundaries later the bucket is full again.
        expect(
            l.try_acquire(t0 + ms(3200), 1).unwrap(),
            true,
            9,
            ms(800),
            ms(0),
        );
        let d = l.try_acquire(t0 + ms(3200), 10).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, ms(800));
        assert_eq!(
            l.try_acquire(t0 + s(9), 11),
            Err(CostError { cost: 11, max: 10 })
        );
    }
}

#[test]
fn fixed_window_counts_per_aligned_window() {
    for t0 in OFFSETS {
        let l = FixedWindow::limiter(3, s(10)).unwrap();
        expect(l.try_acquire(t0 + s(4), 1).unwrap(), true, 2, s(6), ms(0));
        expect(l.try_acquire(t0 + s(4), 2).unwrap(), true, 0, s(6), ms(0));
        expect(l.try_acquire(t0 + s(5), 1).unwrap(), false, 0, s(5), s(5));
        expect(l.try_acquire(t0 + s(10), 1).unwrap(), true, 2, s(10), ms(0));
        // The known weakness: 2x the limit across a boundary.
        let l = FixedWindow::limiter(3, s(10)).unwrap();
        assert!(l.try_acquire(t0 + ms(9_900), 3).unwrap().allowed);
        assert!(l.try_acquire(t0 + ms(10_000), 3).unwrap().allowed);
    }
}

#[test]
fn sliding_window_counter_weights_previous_window() {
    for t0 in OFFSETS {
        let l = SlidingWindowCounter::limiter(10, s(60)).unwrap();
        expect(l.try_acquire(t0, 10).unwrap(), true, 0, s(120), ms(0));
        // Same window, full: wait for the next window plus enough decay (10·54/60 + 1 <= 10).
        expect(
            l.try_acquire(t0 + s(30), 1).unwrap(),
            false,
            0,
            s(90),
            s(36),
        );
        expect(
            l.try_acquire(t0 + s(66), 1).unwrap(),
            true,
            0,
            s(114),
            ms(0),
        );
        let l = SlidingWindowCounter::limiter(10, s(60)).unwrap();
        l.try_acquire(t0, 10).unwrap();
        // Half-way into the next window half of the previous one counts.
        expect(l.try_acquire(t0 + s(90), 5).unwrap(), true, 0, s(90), ms(0));
        expect(l.try_acquire(t0 + s(90), 1).unwrap(), false, 0, s(90), s(6));
        assert!(l.try_acquire(t0 + s(96), 1).unwrap().allowed);
        // Two windows later everything is forgotten.
        expect(
            l.try_acquire(t0 + s(240), 10).unwrap(),
            true,
            0,
            s(120),
            ms(0),
        );
    }
}

#[test]
fn sliding_window_log_is_exact() {
    for t0 in OFFSETS {
        let l = SlidingWindowLog::new(2, s(10)).unwrap();
        expect(l.try_acquire(t0 + s(1), 1).unwrap(), true, 1, s(10), ms(0));
        expect(l.try_acquire(t0 + s(4), 1).unwrap(), true, 0, s(10), ms(0));
        expect(l.try_acquire(t0 + s(5), 1).unwrap(), false, 0, s(9), s(6));
        expect(l.try_acquire(t0 + s(5), 2).unwrap(), false, 0, s(9), s(9));
        expect(l.try_acquire(t0 + s(11), 1).unwrap(), true, 0, s(10), ms(0));
        assert_eq!(
            l.try_acquire(t0 + s(30), 3),
            Err(CostError { cost: 3, max: 2 })
        );
        // A refund removes the most recent units.
        l.refund(t0 + s(11), 1);
        assert_eq!(l.peek(t0 + s(11), 0).remaining, 1);
    }
}

/// The waits of successive reservations, the first made at `start`.
fn waits_from(start: Duration, l: &Smooth, costs: &[u64]) -> Vec<f64> {
    let clock = ManualClock::new();
    clock.set(start);
    use resilient::Clock;
    costs
        .iter()
        .map(|&c| {
            let d = l.reserve(clock.now(), c, Duration::MAX).unwrap().unwrap();
            assert!(d.allowed);
            clock.advance(d.retry_after);
            (d.retry_after.as_secs_f64() * 100.0).round() / 100.0
        })
        .collect()
}

#[test]
fn guava_pay_later_sequence() {
    for t0 in OFFSETS {
        let l = Smooth::bursty(Rate::per_second(1))
            .max_debt(8)
            .build()
            .unwrap();
        assert_eq!(
            waits_from(t0, &l, &[1, 1, 2, 4, 8, 1]),
            [0.0, 1.0, 1.0, 2.0, 4.0, 8.0]
        );
    }
}

#[test]
fn guava_warm_up_sequence() {
    for t0 in OFFSETS {
        let l = Smooth::warming_up(Rate::per_second(2), s(4))
            .build()
            .unwrap();
        assert_eq!(
            waits_from(t0, &l, &[1, 1, 1, 1, 1, 1, 1, 1]),
            [0.0, 1.38, 1.13, 0.88, 0.63, 0.5, 0.5, 0.5]
        );
    }
}

/// A limiter's first request starts it, however far the clock is past its origin: a new
/// bursty limiter has nothing stored (Guava), a new warming-up one starts cold.
#[test]
fn smooth_limiters_start_at_their_first_request() {
    let day = s(86_400);
    let bursty = Smooth::bursty(Rate::per_second(2)).build().unwrap();
    assert_eq!(waits_from(day, &bursty, &[1, 1, 1]), [0.0, 0.5, 0.5]);
    let warming = Smooth::warming_up(Rate::per_second(2), s(4))
        .build()
        .unwrap();
    assert_eq!(
        waits_from(day, &warming, &[1, 1, 1, 1, 1, 1]),
        [0.0, 1.38, 1.13, 0.88, 0.63, 0.5]
    );
    // A refund before anything was taken changes nothing.
    let fresh = Smooth::bursty(Rate::per_second(2)).build().unwrap();
    fresh.refund(day, 5);
    assert_eq!(waits_from(day, &fresh, &[1, 1]), [0.0, 0.5]);
}

#[test]
fn warm_up_cools_down_when_idle() {
    for t0 in OFFSETS {
        let l = Smooth::warming_up(Rate::per_second(2), s(4))
            .build()
            .unwrap();
        let warm = waits_from(t0, &l, &[1; 12]);
        assert_eq!(*warm.last().unwrap(), 0.5);
        // Idle for the warm-up period and more: cold again (the first wait after is 1.38 s).
        let now = t0 + s(1_000);
        assert_eq!(
            l.reserve(now, 1, Duration::MAX)
                .unwrap()
                .unwrap()
                .retry_after,
            ms(0)
        );
        let d = l.reserve(now, 1, Duration::MAX).unwrap().unwrap();
        assert_eq!((d.retry_after.as_secs_f64() * 100.0).round(), 138.0);
    }
}

#[test]
fn smooth_reject_mode_and_debt_bound() {
    for t0 in OFFSETS {
        let l = Smooth::bursty(Rate::per_second(1))
            .max_debt(4)
            .build()
            .unwrap();
        let d = l.try_acquire(t0, 4).unwrap();
        assert!(d.allowed); // paid later
        let d = l.try_acquire(t0 + s(1), 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, s(3));
        assert!(l.try_acquire(t0 + s(4), 1).unwrap().allowed);
        // Larger than the debt allowance: waits for a stored permit (one second after the
        // one-permit debt is paid at 5 s).
        let d = l.try_acquire(t0 + s(4), 5).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, s(2));
        assert!(l.try_acquire(t0 + s(6), 5).unwrap().allowed);
        // More than debt allowance plus the most that can be stored: never.
        assert_eq!(
            l.try_acquire(t0 + s(20), 6),
            Err(CostError { cost: 6, max: 5 })
        );
    }
}

#[test]
fn linear_ramp_reaches_full_rate() {
    for t0 in OFFSETS {
        let l = Smooth::linear_ramp(Rate::per_second(10), s(2))
            .start_fraction(0.5)
            .build()
            .unwrap();
        let w = waits_from(t0, &l, &[1; 40]);
        assert_eq!(w[0], 0.0);
        assert_eq!(w[1], 0.19); // half rate when cold, rising: 5t + 1.25t² = 1 permit
        assert!(w[5] < 0.2 && w[5] > 0.1, "{w:?}");
        assert_eq!(*w.last().unwrap(), 0.1); // full rate after the ramp
    }
    assert_eq!(
        Smooth::linear_ramp(Rate::per_second(1), s(1))
            .start_fraction(0.0)
            .build()
            .unwrap_err()
            .field(),
        "smooth.start_fraction"
    );
}

#[test]
fn pure_steps_never_change_state_on_denial() {
    for t0 in OFFSETS {
        let now = resilient::ratelimit::nanos(t0) + 7;
        let algs: Vec<Box<dyn Algorithm>> = vec![
            Box::new(Gcra::new(Rate::per_second(3)).unwrap()),
            Box::new(TokenBucket::new(3, Rate::per_second(3)).unwrap()),
            Box::new(FixedWindow::new(3, s(1)).unwrap()),
            Box::new(SlidingWindowCounter::new(3, s(1)).unwrap()),
        ];
        for a in algs {
            let (st, d) = a.step(0, now, 3);
            assert!(d.allowed, "{a:?}");
            let (st2, d) = a.step(st, now, 1);
            assert!(!d.allowed && st2 == st, "{a:?}");
            assert!(d.retry_after > Duration::ZERO, "{a:?}");
            assert!(a.time_to_idle(st, now) > 0, "{a:?}");
            // A refund makes room again.
            let st3 = a.refund(st, now, 1);
            assert!(a.step(st3, now, 1).1.allowed, "{a:?}");
        }
    }
}

#[test]
fn quota_admits_only_if_all_admit_and_consumes_nothing_otherwise() {
    for t0 in OFFSETS {
        let clock = ManualClock::new();
        clock.set(t0);
        let per_sec = Arc::new(Gcra::limiter(Rate::per_second(2)).unwrap());
        let per_min = Arc::new(Gcra::limiter(Rate::per_minute(3)).unwrap());
        let l = RateLimiter::builder()
            .limit(per_sec.clone())
            .limit(per_min.clone())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let v = l.check_quota(2).unwrap();
        assert!(v.allowed);
        assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (0, 1));
        clock.advance(s(1));
        assert!(l.check_quota(1).unwrap().allowed);
        clock.advance(s(1));
        let before = per_sec.peek(l.now(), 0).remaining;
        let v = l.check_quota(1).unwrap();
        assert!(!v.allowed);
        assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
        // The per-second limit's unit was given back.
        assert_eq!(per_sec.peek(l.now(), 0).remaining, before);
        let b = v.binding();
        assert_eq!(b.limit, 3);
        assert_eq!(b.retry_after, s(18));
        assert_eq!(l.check_n(1).unwrap().retry_after, s(18));
        assert_eq!(l.check_quota(4), Err(CostError { cost: 4, max: 2 }));
        // Runtime change on a shared limit takes effect in the quota.
        per_min
            .set_rate(l.now(), Rate::per_minute(600), 600)
            .unwrap();
        assert!(l.check().allowed);
    }
}

#[test]
fn invalid_configuration_names_the_field() {
    let cases = [
        (Gcra::new(Rate::per_second(0)).unwrap_err(), "gcra.rate"),
        (
            Gcra::with_burst(Rate::per_second(1), 0).unwrap_err(),
            "gcra.burst",
        ),
        (
            Gcra::with_burst(Rate::per_day(1), u64::MAX).unwrap_err(),
            "gcra.burst",
        ),
        (
            TokenBucket::new(0, Rate::per_second(1)).unwrap_err(),
            "token_bucket.capacity",
        ),
        (
            TokenBucket::new(1, Rate::new(1, Duration::ZERO)).unwrap_err(),
            "token_bucket.refill",
        ),
        (FixedWindow::new(0, s(1)).unwrap_err(), "fixed_window.limit"),
        (
            FixedWindow::new(1, Duration::ZERO).unwrap_err(),
            "fixed_window.window",
        ),
        (
            SlidingWindowCounter::new(1 << 20, s(1)).unwrap_err(),
            "sliding_window_counter.limit",
        ),
        (
            SlidingWindowLog::new(0, s(1)).unwrap_err(),
            "sliding_window_log.limit",
        ),
        (
            Smooth::warming_up(Rate::per_second(1), s(1))
                .cold_factor(1.0)
                .build()
                .unwrap_err(),
            "smooth.cold_factor",
        ),
        (
            Smooth::bursty(Rate::per_second(1))
                .max_debt(0)
                .build()
                .unwrap_err(),
            "smooth.max_debt",
        ),
        (
            RateLimiter::gcra(Rate::per_second(0)).build().unwrap_err(),
            "gcra.rate",
        ),
    ];
    for (err, field) in cases {
        assert_eq!(err.field(), field, "{err}");
        assert!(!err.rule().is_empty());
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn algorithms(limit: u64, period_ms: u64) -> Vec<Box<dyn Algorithm>> {
        let per = Duration::from_millis(period_ms);
        vec![
            Box::new(Gcra::new(Rate::new(limit, per)).unwrap()),
            Box::new(TokenBucket::new(limit, Rate::new(limit.div_ceil(3), per)).unwrap()),
            Box::new(FixedWindow::new(limit, per).unwrap()),
            Box::new(SlidingWindowCounter::new(limit, per).unwrap()),
        ]
    }

    proptest! {
        /// The fast path (`admit`) and the full `step` always agree, and a replayed
        /// sequence, starting anywhere up to 52 days past the clock's origin, never admits
        /// more than capacity + rate x elapsed.
        #[test]
        fn admit_agrees_with_step(
            limit in 1u64..50,
            period_ms in 1u64..2_000,
            start in prop_oneof![Just(0u64), 0u64..(1 << 52)],
            ops in proptest::collection::vec((0u64..300_000_000, 0u64..60), 1..60),
        ) {
            for alg in algorithms(limit, period_ms) {
                let (mut state, mut now, mut admitted) = (0u64, start, 0u64);
                for &(gap, cost) in &ops {
                    now += gap;
                    let cost = cost % (limit + 1);
                    let (next, d) = alg.step(state, now, cost);
                    match alg.admit(state, now, cost) {
                        Ok(n) => prop_assert!(d.allowed && n == next, "{alg:?}"),
                        Err(retry) => {
                            prop_assert!(!d.allowed, "{alg:?}");
                            prop_assert_eq!(Duration::from_nanos(retry), d.retry_after);
                            prop_assert_eq!(next, state);
                        }
                    }
                    prop_assert!(d.remaining <= d.limit);
                    if d.allowed {
                        admitted += cost;
                    }
                    state = next;
                }
                // The aligned windows (or refill periods) the sequence touched.
                let period = period_ms * 1_000_000;
                let periods = now / period - start / period + 1;
                prop_assert!(admitted <= limit * (periods + 1), "{alg:?} {admitted}");
            }
        }

        /// GCRA's division-free `remaining` is exact.
        #[test]
        fn gcra_remaining_is_exact(count in 1u64..1_000_000_000, per_ms in 1u64..100_000_000, frac in 0.0f64..=1.0) {
            // Rates whose interval is not a whole number of nanoseconds (within 0.1%) are
            // configuration errors.
            let g = Gcra::new(Rate::new(count, Duration::from_millis(per_ms)));
            prop_assume!(g.is_ok());
            let g = g.unwrap();
            let t = g.interval().as_nanos() as u64;
            let cap = g.burst() * t;
            let used = (cap as f64 * frac) as u64;
            let now = 1u64 << 40;
            let (_, d) = g.step(now + used, now, 0);
            prop_assert!(d.allowed);
            prop_assert_eq!(d.remaining, (cap - used) / t);
        }
    }
}

/// A refill-period change a day past the clock's origin keeps the bucket's deficit (the
/// stored period index used to be read in the new period's units and wiped the deficit).
#[test]
fn token_bucket_period_change_keeps_state_at_a_realistic_clock() {
    let l = TokenBucket::limiter(20, Rate::per_second(10)).unwrap();
    assert!(l.try_acquire(DAY, 20).unwrap().allowed);
    l.algorithm().set(20, Rate::new(20, s(2))).unwrap();
    // No boundary of the new 2 s period has passed: still empty.
    expect(
        l.try_acquire(DAY + ms(500), 1).unwrap(),
        false,
        0,
        ms(1_500),
        ms(1_500),
    );
    // The refill period that was running when the rate changed ends one new period after
    // it began; then 20 tokens come back at once.
    assert!(!l.try_acquire(DAY + ms(1_999), 1).unwrap().allowed);
    expect(l.try_acquire(DAY + s(2), 20).unwrap(), true, 0, s(2), ms(0));
    // Changing back keeps it too (a day later still).
    l.algorithm().set(20, Rate::per_second(10)).unwrap();
    let d = l.try_acquire(DAY + ms(2_100), 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, ms(900));
    // Setting the same period again and again does not postpone refills.
    for i in 0..10 {
        l.algorithm().set(20, Rate::per_second(10)).unwrap();
        l.peek(DAY + ms(2_200 + i * 100), 0);
    }
    assert_eq!(l.peek(DAY + s(5), 0).remaining, 20);
}

/// A refill-period change is put in force at the newest time any decision has seen, not
/// at the clock reading of whichever caller reads the configuration first: a `peek` at an
/// older `now` (or any caller whose reading is older) used to install it there, leaving the
/// stored state ahead of the new period index by 20 periods counted at the new length.
#[test]
fn token_bucket_period_change_is_not_installed_at_an_older_now() {
    let l = TokenBucket::limiter(10, Rate::new(10, ms(10))).unwrap();
    assert!(l.try_acquire(DAY + ms(200), 10).unwrap().allowed);
    l.algorithm().set(10, Rate::new(10, s(1))).unwrap();
    l.peek(DAY, 0);
    // The period running at 200 ms now lasts 1 s: its end (at 1.2 s) refills the bucket.
    let d = l.try_acquire(DAY + ms(1_500), 1).unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.remaining, 9);
}

/// The same with the state ahead by more than the race window (1998 periods of 1 ms): the
/// wrapped difference used to read as ~2^32 elapsed periods and refill the bucket at once.
#[test]
fn token_bucket_period_change_at_an_older_now_never_refills_early() {
    let l = TokenBucket::limiter(10, Rate::new(10, ms(1))).unwrap();
    assert!(l.try_acquire(DAY + s(2), 10).unwrap().allowed);
    l.algorithm().set(10, Rate::new(10, s(1))).unwrap();
    l.peek(DAY, 0);
    let d = l.try_acquire(DAY + s(2), 10).unwrap();
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after, s(1));
    assert!(l.try_acquire(DAY + s(3), 10).unwrap().allowed);
}

/// Through the owner of the clock (`set_rate` with the limiter's time), the change is in
/// force at once: a later caller with an older reading changes nothing.
#[test]
fn token_bucket_set_rate_installs_the_period_at_the_owners_time() {
    let l = TokenBucket::limiter(10, Rate::new(10, ms(10))).unwrap();
    assert!(l.try_acquire(DAY + ms(200), 10).unwrap().allowed);
    // The change at 205 ms, in the period that began at 200 ms: it now ends at 1.2 s.
    l.set_rate(DAY + ms(205), Rate::new(10, s(1)), 10).unwrap();
    assert_eq!(l.policy().window, s(1));
    l.peek(DAY, 0);
    assert!(!l.try_acquire(DAY + ms(1_199), 1).unwrap().allowed);
    let d = l.try_acquire(DAY + ms(1_200), 1).unwrap();
    assert!(d.allowed, "{d:?}");
}

/// The same for keyed states: every key keeps its deficit across a period change.
#[test]
fn keyed_token_bucket_period_change_keeps_state() {
    use resilient::ratelimit::KeyedLimiter;
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::builder(TokenBucket::new(10, Rate::per_second(10)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<u8>()
        .unwrap();
    assert!(k.check_n(&1, 10).unwrap().allowed);
    k.algorithm().set(10, Rate::new(10, s(4))).unwrap();
    clock.advance(ms(900));
    let d = k.check_n(&1, 1).unwrap();
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.retry_after, ms(3_100));
    assert!(k.check_n(&2, 10).unwrap().allowed, "other keys start full");
}

/// A GCRA whose rate changes (once, when armed) in the middle of a decision: right after
/// its first admission or step computed its result, as a racing `set_rate` could.
#[derive(Debug)]
struct RateChangesMidDecision {
    inner: Gcra,
    armed: std::sync::atomic::AtomicBool,
    to: (Rate, u64),
}

impl RateChangesMidDecision {
    fn new(rate: Rate, burst: u64, to: (Rate, u64)) -> Self {
        Self {
            inner: Gcra::with_burst(rate, burst).unwrap(),
            armed: std::sync::atomic::AtomicBool::new(false),
            to,
        }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn fire(&self, now: u64) {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.inner.set_rate(now, self.to.0, self.to.1).unwrap();
        }
    }
}

impl Algorithm for RateChangesMidDecision {
    fn step(&self, state: u64, now: u64, cost: u64) -> (u64, Decision) {
        let r = self.inner.step(state, now, cost);
        self.fire(now);
        r
    }
    fn admit(&self, state: u64, now: u64, cost: u64) -> Result<u64, u64> {
        let r = self.inner.admit(state, now, cost);
        self.fire(now);
        r
    }
    fn refund(&self, state: u64, now: u64, cost: u64) -> u64 {
        self.inner.refund(state, now, cost)
    }
    fn time_to_idle(&self, state: u64, now: u64) -> u64 {
        self.inner.time_to_idle(state, now)
    }
    fn max_cost(&self) -> u64 {
        self.inner.max_cost()
    }
    fn policy(&self) -> resilient::ratelimit::Policy {
        self.inner.policy()
    }
}

/// A decision reports what it did: allowed exactly when it consumed, even if the rate
/// changes between the admission and the rest of the decision (the decision used to be
/// computed again, under the new rate, from the state before the admission).
#[test]
fn a_decision_racing_a_rate_change_reports_what_it_did() {
    use resilient::ratelimit::AtomicLimiter;
    let at = DAY.as_nanos() as u64;
    // Admitted at 10/s, then the rate drops to 1/s (burst 1): consumed, reported denied.
    let l = AtomicLimiter::new(RateChangesMidDecision::new(
        Rate::per_second(10),
        10,
        (Rate::per_second(1), 1),
    ));
    l.algorithm().arm();
    let before = l.state();
    let d = l.check_at(at, 10);
    assert_eq!(d.allowed, l.state() != before, "{d:?}");
    // Refused at 1/s, then the rate rises to 10/s (burst 20): reported allowed, not taken.
    let l = AtomicLimiter::new(RateChangesMidDecision::new(
        Rate::per_second(1),
        1,
        (Rate::per_second(10), 20),
    ));
    assert!(l.check_at(at, 1).allowed);
    l.algorithm().arm();
    let before = l.state();
    let d = l.check_at(at, 1);
    assert_eq!(d.allowed, l.state() != before, "{d:?}");
}

/// The same for a keyed limiter's decisions.
#[test]
fn a_keyed_decision_racing_a_rate_change_reports_what_it_did() {
    use resilient::ratelimit::KeyedLimiter;
    let clock = ManualClock::new();
    clock.set(DAY);
    // Admitted at 10/s, then the rate drops to 1/s (burst 1).
    let k = KeyedLimiter::builder(RateChangesMidDecision::new(
        Rate::per_second(10),
        10,
        (Rate::per_second(1), 1),
    ))
    .clock(Arc::new(clock.clone()))
    .build::<u8>()
    .unwrap();
    k.algorithm().arm();
    let d = k.check_n(&1, 10).unwrap();
    // Fresh under the new rate, a key has 1 unit.
    let consumed = k.check_n(&1, 0).unwrap().remaining < 1;
    assert_eq!(d.allowed, consumed, "{d:?}");
    // Refused at 1/s, then the rate rises to 10/s (burst 20).
    let k = KeyedLimiter::builder(RateChangesMidDecision::new(
        Rate::per_second(1),
        1,
        (Rate::per_second(10), 20),
    ))
    .clock(Arc::new(clock.clone()))
    .build::<u8>()
    .unwrap();
    assert!(k.check_n(&1, 1).unwrap().allowed);
    k.algorithm().arm();
    let d = k.check_n(&1, 1).unwrap();
    // 1 s of the 2 s capacity was in use (the wrapper skips the rescale): 10 of 20 units
    // remain unless it took one.
    let consumed = k.check_n(&1, 0).unwrap().remaining < 10;
    assert_eq!(d.allowed, consumed, "{d:?}");
}

/// A GCRA that runs a hook (a decision on its limiter) right after its configuration
/// changed: where a decision racing `AtomicLimiter::set_rate` could land.
struct DecideDuringRateChange {
    inner: Gcra,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for DecideDuringRateChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl DecideDuringRateChange {
    fn run_hook(&self) {
        if let Some(h) = self.hook.lock().unwrap().take() {
            h();
        }
    }
}

impl Algorithm for DecideDuringRateChange {
    fn step(&self, state: u64, now: u64, cost: u64) -> (u64, Decision) {
        self.inner.step(state, now, cost)
    }
    fn refund(&self, state: u64, now: u64, cost: u64) -> u64 {
        self.inner.refund(state, now, cost)
    }
    fn time_to_idle(&self, state: u64, now: u64) -> u64 {
        self.inner.time_to_idle(state, now)
    }
    fn max_cost(&self) -> u64 {
        self.inner.max_cost()
    }
    fn policy(&self) -> resilient::ratelimit::Policy {
        self.inner.policy()
    }
    fn set_rate(
        &self,
        now: u64,
        rate: Rate,
        burst: u64,
    ) -> Result<resilient::ratelimit::Rescale, resilient::ConfigError> {
        let r = self.inner.set_rate(now, rate, burst)?;
        self.run_hook();
        Ok(r)
    }
    fn set_rate_with(
        &self,
        now: u64,
        rate: Rate,
        burst: u64,
        carry: &mut dyn FnMut(resilient::ratelimit::Rescale),
    ) -> Result<(), resilient::ConfigError> {
        self.inner.set_rate_with(now, rate, burst, carry)?;
        self.run_hook();
        Ok(())
    }
}

/// A decision right after a rate change is rescaled at most once: the state is carried
/// over before any decision can see the new rate (a decision made under the new rate on
/// the old state used to be rescaled along with it).
#[test]
fn a_decision_racing_a_rate_change_is_not_rescaled_twice() {
    use resilient::ratelimit::AtomicLimiter;
    let at = DAY.as_nanos() as u64;
    let l = Arc::new(AtomicLimiter::new(DecideDuringRateChange {
        inner: Gcra::with_burst(Rate::per_second(1), 10).unwrap(),
        hook: std::sync::Mutex::new(None),
    }));
    assert!(l.check_at(at, 1).allowed); // 1 s in use
    let weak = Arc::downgrade(&l);
    *l.algorithm().hook.lock().unwrap() = Some(Box::new(move || {
        assert!(weak.upgrade().unwrap().check_at(at, 1).allowed);
    }));
    // 1/s -> 10/s: the unit in use takes 100 ms; the racing one 100 ms more.
    l.set_rate(DAY, Rate::per_second(10), 20).unwrap();
    assert_eq!(l.peek(DAY, 0).reset, ms(200));
}

/// A GCRA rate change given a `now` that is not the limiter's time (here zero, a day
/// behind the clock) must not lock the limiter out: the debt is never stretched past the
/// longer of the old debt and the new capacity.
#[test]
fn gcra_rate_change_with_a_stale_now_never_locks_out() {
    let l = Gcra::limiter(Rate::per_second(10)).unwrap();
    assert!(l.try_acquire(DAY, 10).unwrap().allowed);
    l.set_rate(Duration::ZERO, Rate::per_second(1), 10).unwrap();
    let d = l.try_acquire(DAY + s(2), 1).unwrap();
    assert!(d.allowed, "{d:?}");
}

/// Rate changes through the owner of the clock: `RateLimiter::set_rate` reads the
/// limiter's own time, a day past the clock's origin here.
#[test]
fn rate_changes_through_the_rate_limiter_at_a_realistic_clock() {
    let clock = ManualClock::new();
    clock.set(DAY);
    let l = RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(10)).unwrap())
        .limit(TokenBucket::limiter(100, Rate::per_second(100)).unwrap())
        .limit(SlidingWindowLog::new(50, s(10)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    for _ in 0..10 {
        assert!(l.check().allowed);
    }
    // 10/s -> 1/s: the 10 units in use take 10 s to come back, one per second.
    l.set_rate(0, Rate::per_second(1), 10).unwrap();
    let v = l.check_quota(1).unwrap();
    assert!(!v.allowed);
    assert_eq!(
        (v.decisions[0].retry_after, v.decisions[0].reset),
        (s(1), s(10))
    );
    clock.advance(s(1));
    assert!(l.check().allowed);
    assert!(!l.check().allowed);
    // Back up to 10/s: 10 units were in use at 1 s each (10 s); at 100 ms each, 1 s.
    l.set_rate(0, Rate::per_second(10), 10).unwrap();
    assert_eq!(l.check_quota(0).unwrap().decisions[0].reset, s(1));
    // The sliding log's limit: 11 units in its window, limit lowered to 11.
    l.set_rate(2, Rate::new(11, s(10)), 11).unwrap();
    assert_eq!(l.check_quota(0).unwrap().decisions[2].remaining, 0);
    assert_eq!(
        l.set_rate(2, Rate::new(11, s(5)), 11).unwrap_err().field(),
        "sliding_window_log.window"
    );
    assert_eq!(
        l.set_rate(2, Rate::new(11, s(10)), 12).unwrap_err().field(),
        "sliding_window_log.limit"
    );
    // The token bucket (refilled at the 1 s boundary, then 1 token taken): capacity
    // 100 -> 200, the token in use stays in use.
    l.set_rate(1, Rate::per_second(100), 200).unwrap();
    assert_eq!(l.check_quota(0).unwrap().decisions[1].remaining, 199);
    assert_eq!(
        l.set_rate(3, Rate::per_second(1), 1).unwrap_err().field(),
        "rate_limiter.limit"
    );
}

/// A smooth limiter's debt stays owed across a rate change, a day past the origin.
#[test]
fn smooth_rate_change_keeps_the_debt_at_a_realistic_clock() {
    let clock = ManualClock::new();
    clock.set(DAY);
    let l = RateLimiter::builder()
        .limit(Smooth::bursty(Rate::per_second(10)).build().unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert!(l.check().allowed); // leaves 100 ms of debt
    l.set_rate(0, Rate::per_second(1), 1).unwrap();
    let d = l.check();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, ms(100));
    clock.advance(ms(100));
    assert!(l.check().allowed);
    let d = l.check();
    assert_eq!(d.retry_after, s(1), "the new rate prices the next permit");
}

/// Keyed GCRA changes rate at runtime: every key's units in use stay in use.
#[test]
fn keyed_gcra_changes_rate_at_runtime() {
    use resilient::ratelimit::KeyedLimiter;
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::quota([
        Gcra::new(Rate::per_second(10)).unwrap(),
        Gcra::new(Rate::per_minute(600)).unwrap(),
    ])
    .clock(Arc::new(clock.clone()))
    .build::<u32>()
    .unwrap();
    for key in 0..100 {
        assert!(k.check_n(&key, 10).unwrap().allowed);
    }
    k.set_rate(0, Rate::per_second(1), 10).unwrap();
    for key in 0..100 {
        let v = k.check_quota(&key, 1).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.decisions[0].retry_after, s(1), "key {key}");
        assert_eq!(v.decisions[0].reset, s(10), "key {key}");
    }
    // A new key starts full under the new rate.
    assert_eq!(k.check_quota(&1_000, 0).unwrap().decisions[0].limit, 10);
    clock.advance(s(1));
    assert!(k.check_n(&7, 1).unwrap().allowed);
    assert!(!k.check_n(&7, 1).unwrap().allowed);
    // The second limit of the quota, alone: 600/min -> 60/min, burst 60. Key 7 has one
    // unit of it in use (the other 10 came back during the second).
    k.set_rate(1, Rate::per_minute(60), 60).unwrap();
    let v = k.check_quota(&7, 0).unwrap();
    assert_eq!((v.decisions[1].limit, v.decisions[1].remaining), (60, 59));
    assert_eq!(v.decisions[1].reset, s(1));
    assert_eq!(
        k.set_rate(2, Rate::per_second(1), 1).unwrap_err().field(),
        "keyed_limiter.limit"
    );
}

/// Keyed window limits and boxed algorithms change at runtime too.
#[test]
fn keyed_windows_and_boxed_algorithms_change_at_runtime() {
    use resilient::ratelimit::KeyedLimiter;
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::quota([
        Box::new(FixedWindow::new(5, s(10)).unwrap()) as Box<dyn Algorithm>,
        Box::new(SlidingWindowCounter::new(5, s(10)).unwrap()),
    ])
    .clock(Arc::new(clock.clone()))
    .build::<u8>()
    .unwrap();
    assert!(k.check_n(&1, 5).unwrap().allowed);
    assert!(!k.check_n(&1, 1).unwrap().allowed);
    k.set_rate(0, Rate::new(8, s(10)), 8).unwrap();
    k.set_rate(1, Rate::new(8, s(10)), 8).unwrap();
    let v = k.check_quota(&1, 3).unwrap();
    assert!(v.allowed);
    assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (0, 0));
    assert_eq!(
        k.set_rate(0, Rate::new(8, s(20)), 8).unwrap_err().field(),
        "fixed_window.window"
    );
}

/// A smooth limiter's `remaining` is what a request could take right now without
/// waiting: the stored permits plus the debt allowance once the next free time has come
/// (0 while an earlier request's debt is being paid). `limit` is the most an idle limiter
/// admits at once: the most stored permits plus the debt allowance.
#[test]
fn smooth_remaining_counts_permits_available_without_waiting() {
    let l = Smooth::bursty(Rate::per_second(10))
        .max_debt(2)
        .build()
        .unwrap();
    let p = l.peek(DAY, 0);
    assert_eq!((p.allowed, p.limit, p.remaining), (true, 12, 2), "fresh");
    let d = l.try_acquire(DAY, 1).unwrap();
    assert_eq!(
        (d.allowed, d.remaining),
        (true, 0),
        "the next must wait 100 ms"
    );
    // Idle for a second: 10 permits stored (the most), taking 3 leaves 7 + 2.
    let d = l.try_acquire(DAY + ms(1_100), 3).unwrap();
    assert_eq!((d.allowed, d.limit, d.remaining), (true, 12, 9));
    // Denied (it needs one more stored permit), with 9 still available at once.
    let d = l.try_acquire(DAY + ms(1_100), 10).unwrap();
    assert_eq!((d.allowed, d.remaining, d.retry_after), (false, 9, ms(100)));
    assert!(l.try_acquire(DAY + ms(1_100), 9).unwrap().allowed);
    assert_eq!(l.policy().quota, 12);
}

/// The linear ramp prices permits by the integral of the rate over time (closed form,
/// any cost at once). At 10/s, from half rate over 2 s: the ramp issues 15 permits in its
/// 2 s (0.5 → 1 × 10/s, on average 7.5/s); 20 permits from cold take 2 s + 5 × 100 ms.
#[test]
fn linear_ramp_prices_permits_by_the_integral_of_the_rate() {
    for t0 in [Duration::ZERO, DAY] {
        let l = Smooth::linear_ramp(Rate::per_second(10), s(2))
            .start_fraction(0.5)
            .max_debt(1_000_000_000)
            .build()
            .unwrap();
        assert_eq!(waits_from(t0, &l, &[20, 1]), [0.0, 2.5]);
        // A huge request is priced at once: 10^9 permits, 1.5 s of them in the ramp.
        let l = Smooth::linear_ramp(Rate::per_second(10), s(2))
            .start_fraction(0.5)
            .max_debt(1_000_000_000)
            .build()
            .unwrap();
        let w = waits_from(t0, &l, &[1_000_000_000, 1]);
        assert_eq!(w[1], 2.0 + (1e9 - 15.0) / 10.0);
    }
}

/// Absurd windows (beyond `MAX_WINDOW`, 100 years) are configuration errors naming the
/// field, and the longest allowed window's arithmetic does not overflow.
#[test]
fn absurd_windows_are_rejected_at_build() {
    use resilient::ratelimit::MAX_WINDOW;
    let huge = MAX_WINDOW + Duration::from_nanos(1);
    for (err, field) in [
        (
            SlidingWindowCounter::new(1, Duration::MAX).unwrap_err(),
            "sliding_window_counter.window",
        ),
        (
            SlidingWindowCounter::new(1, huge).unwrap_err(),
            "sliding_window_counter.window",
        ),
        (
            FixedWindow::new(1, huge).unwrap_err(),
            "fixed_window.window",
        ),
        (
            SlidingWindowLog::new(1, huge).unwrap_err(),
            "sliding_window_log.window",
        ),
    ] {
        assert_eq!(err.field(), field, "{err}");
    }
    let l = SlidingWindowCounter::limiter(2, MAX_WINDOW).unwrap();
    let now = DAY;
    expect(
        l.try_acquire(now, 2).unwrap(),
        true,
        0,
        MAX_WINDOW * 2 - now,
        ms(0),
    );
    let d = l.try_acquire(now, 1).unwrap();
    assert!(!d.allowed && d.retry_after > MAX_WINDOW);
    let l = FixedWindow::limiter(1, MAX_WINDOW).unwrap();
    assert!(l.try_acquire(now, 1).unwrap().allowed);
    assert_eq!(l.try_acquire(now, 1).unwrap().retry_after, MAX_WINDOW - now);
}

/// Guava's one-second burst (its limiters start at creation): a bursty limiter at 5/s,
/// created and then idle for two seconds, has stored one second's worth (5 permits, not
/// 10): acquiring 1, 1, 3, 1 is free, the next waits 0.2 s. Through the guard, on a manual
/// clock far from its origin, in reject mode.
#[test]
fn guava_one_second_burst_from_creation() {
    use resilient::ratelimit::RateLimiter;
    let clock = ManualClock::new();
    clock.set(s(86_400) + Duration::from_millis(300));
    let smooth = Smooth::bursty(Rate::per_second(5))
        .start_at(resilient::Clock::now(&clock))
        .build()
        .unwrap();
    let limiter = RateLimiter::builder()
        .limit(smooth)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    clock.advance(s(1)); // max capacity reached
    clock.advance(s(1)); // makes no difference
    for cost in [1, 1, 3, 1] {
        let d = limiter.check_n(cost).unwrap();
        assert!(d.allowed && d.retry_after.is_zero(), "cost {cost}: {d:?}");
    }
    let d = limiter.check_n(1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_millis(200));
}

/// Idle time before the first request stores at most the maximum (`max_burst`), and the
/// default start (at the first request) is unchanged by the option's existence.
#[test]
fn start_at_creation_stores_at_most_the_max_and_the_default_stores_nothing() {
    for t0 in OFFSETS {
        let created = Smooth::bursty(Rate::per_second(2))
            .max_burst(Duration::from_millis(1_500)) // 3 permits
            .start_at(t0)
            .build()
            .unwrap();
        // A day idle: still only 3 stored, then 1 of debt, then 0.5 s apart.
        assert_eq!(
            waits_from(t0 + s(86_400), &created, &[1, 1, 1, 1, 1, 1]),
            [0.0, 0.0, 0.0, 0.0, 0.5, 0.5]
        );
        // Half a second idle: one permit stored.
        let half = Smooth::bursty(Rate::per_second(2))
            .start_at(t0)
            .build()
            .unwrap();
        assert_eq!(
            waits_from(t0 + Duration::from_millis(500), &half, &[1, 1, 1]),
            [0.0, 0.0, 0.5]
        );
        let default = Smooth::bursty(Rate::per_second(2)).build().unwrap();
        assert_eq!(
            waits_from(t0 + s(86_400), &default, &[1, 1, 1]),
            [0.0, 0.5, 0.5]
        );
    }
}

/// `peek` does not start a limiter built with `start_at`: it reports the permits stored
/// since creation, and a first request at an older clock reading (a racing thread's)
/// is still admitted at once instead of waiting for the peek's time.
#[test]
fn peek_does_not_start_a_limiter_started_at_creation() {
    for t0 in OFFSETS {
        let l = Smooth::bursty(Rate::per_second(2))
            .start_at(t0)
            .build()
            .unwrap();
        let d = l.peek(t0 + s(1), 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3); // 2 stored + 1 on debt
        assert_eq!(waits_from(t0 + ms(500), &l, &[1, 1, 1]), [0.0, 0.0, 0.5]);
    }
}

/// A first request earlier than the creation reading (a clock that stepped back) starts
/// the limiter at that request, with nothing stored and no wait for the "future" start.
#[test]
fn start_at_a_later_reading_than_the_first_request_starts_at_the_request() {
    let l = Smooth::bursty(Rate::per_second(2))
        .start_at(s(86_400))
        .build()
        .unwrap();
    assert_eq!(waits_from(s(86_399), &l, &[1, 1]), [0.0, 0.5]);
}

/// A warming-up limiter started at creation is cold at its first request, as Guava's is.
#[test]
fn warming_up_from_creation_is_cold() {
    let l = Smooth::warming_up(Rate::per_second(2), s(4))
        .start_at(s(1))
        .build()
        .unwrap();
    assert_eq!(
        waits_from(s(100), &l, &[1, 1, 1, 1, 1, 1]),
        [0.0, 1.38, 1.13, 0.88, 0.63, 0.5]
    );
}
