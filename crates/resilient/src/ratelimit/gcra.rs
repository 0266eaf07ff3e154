//! GCRA, the generic cell rate algorithm: a token bucket with continuous refill whose whole
//! state is one timestamp, the theoretical arrival time (TAT).
//!
//! With emission interval `T = period / count` and burst `B`, a request of cost `c` at
//! `now` is admitted iff `max(tat, now) + c·T - now <= B·T`; it then moves `tat` to
//! `max(tat, now) + c·T`. The limiter is full when `tat <= now`, so state `0` is fresh.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter, Rescale};
use super::config::ConfigCell;
use super::decision::{Decision, Nanos, Policy, Rate, nanos};
use super::fixed_window::MAX_WINDOW;
use crate::engine::error::ConfigError;

/// GCRA configuration: the emission interval and the burst (total capacity), both
/// adjustable at runtime.
///
/// ```
/// use resilient::ratelimit::{Gcra, Limiter, Rate};
/// use std::time::Duration;
/// // 10 per second, bursts of up to 20.
/// let l = Gcra::limiter_with_burst(Rate::per_second(10), 20).unwrap();
/// let d = l.try_acquire(Duration::ZERO, 20).unwrap();
/// assert!(d.allowed && d.remaining == 0);
/// assert_eq!(d.reset, Duration::from_secs(2));
/// let d = l.try_acquire(Duration::ZERO, 1).unwrap();
/// assert_eq!(d.retry_after, Duration::from_millis(100));
/// ```
#[derive(Debug)]
pub struct Gcra {
    /// `[interval, burst, cap, inverse]`: the emission interval (ns), the burst, `burst ×
    /// interval` (the tolerance, ns) and `u64::MAX / interval` (turns the division for
    /// `remaining` into a multiply, see [`Gcra::units`]), read as one snapshot.
    cfg: ConfigCell<4>,
}

/// One consistent reading of the configuration.
#[derive(Debug, Clone, Copy)]
struct Cfg {
    t: u64,
    burst: u64,
    cap: u64,
    inverse: u64,
}

fn check(rate: Rate, burst: u64) -> Result<(u64, u64), ConfigError> {
    let t = rate.validate_interval("gcra.rate")?;
    if burst == 0 {
        return Err(ConfigError::new("gcra.burst", "must be at least 1"));
    }
    // The tolerance `burst × interval` is added to clock readings: one near `u64::MAX`
    // nanoseconds would saturate every admission check (and admit everything).
    match burst.checked_mul(t) {
        Some(cap) if cap <= nanos(MAX_WINDOW) => Ok((t, burst)),
        _ => Err(ConfigError::new(
            "gcra.burst",
            format!(
                "times the emission interval (the time a full burst takes to refill) must be \
                 at most 100 years (got {burst} × {t} ns)"
            ),
        )),
    }
}

fn words(t: u64, b: u64) -> [u64; 4] {
    [t, b, b * t, u64::MAX / t]
}

impl Cfg {
    /// The configuration that [`words`] wrote.
    #[inline]
    fn from_words([t, burst, cap, inverse]: [u64; 4]) -> Self {
        Self {
            t,
            burst,
            cap,
            inverse,
        }
    }
}

impl Gcra {
    /// `rate`, with a burst of `rate.count`.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Self::with_burst(rate, rate.count)
    }

    /// `rate`, with a burst (total capacity) of `burst` units.
    pub fn with_burst(rate: Rate, burst: u64) -> Result<Self, ConfigError> {
        let (t, b) = check(rate, burst)?;
        Ok(Self {
            cfg: ConfigCell::new(words(t, b)),
        })
    }

    /// A lock-free limiter for `rate` (burst `rate.count`).
    pub fn limiter(rate: Rate) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::new(rate).map(AtomicLimiter::new)
    }

    /// A lock-free limiter for `rate` with burst `burst`.
    pub fn limiter_with_burst(rate: Rate, burst: u64) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::with_burst(rate, burst).map(AtomicLimiter::new)
    }

    #[inline]
    fn load(&self) -> Cfg {
        Cfg::from_words(self.cfg.read())
    }

    /// `x / t`, exact, by a multiply and one correction step: with `m = ⌊(2⁶⁴ − 1) / t⌋`,
    /// `⌊x·m / 2⁶⁴⌋` is `x / t` or one less for `x < 2⁶²` (it is at most `x / t`, and
    /// more than `x / t − x / 2⁶⁴`, so more than `x / t − 1/4`). Integer multiplies only:
    /// a chain of float conversions and a multiply took longer, and a division longer still.
    #[inline]
    fn units(x: u64, c: &Cfg) -> u64 {
        let t = c.t;
        if x >= 1 << 62 {
            return x / t; // beyond the fast path's range
        }
        let q = ((u128::from(x) * u128::from(c.inverse)) >> 64) as u64;
        // `q · t ≤ x` (see above): no overflow, and at most one step up.
        if x - q * t >= t { q + 1 } else { q }
    }

    /// The emission interval (time to replenish one unit).
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.load().t)
    }

    /// The burst (total capacity).
    pub fn burst(&self) -> u64 {
        self.load().burst
    }

    /// The admission under interval `t` and tolerance `cap`.
    #[inline]
    fn admit_with(t: u64, cap: u64, tat: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        let (_, next, over) = Self::advance(t, cap, tat, now, cost);
        if over == 0 { Ok(next) } else { Err(over) }
    }

    /// A request of `cost` at `now` on the state `tat`, with emission interval `t` and
    /// tolerance `cap`: the later of the two (`base`), the state after it (`next`), and how
    /// far it goes past the tolerance (`over`: zero when it fits).
    #[inline(always)]
    fn advance(t: u64, cap: u64, tat: u64, now: Nanos, cost: u64) -> (u64, u64, u64) {
        let base = tat.max(now);
        let next = base.saturating_add(cost.saturating_mul(t));
        (base, next, (next - now).saturating_sub(cap))
    }

    #[inline]
    fn decision(c: &Cfg, allowed: bool, tat: u64, now: Nanos, retry: Nanos) -> Decision {
        let used = tat.saturating_sub(now);
        Decision {
            allowed,
            limit: c.burst,
            remaining: Self::units(c.cap.saturating_sub(used), c),
            reset: Duration::from_nanos(used),
            retry_after: Duration::from_nanos(retry),
        }
    }
}

impl AtomicLimiter<Gcra> {
    /// [`AtomicLimiter::decide_at`] for GCRA, as [`RateLimiter::check`] makes it: the same
    /// decision, with the capacity check and the step on one reading of the configuration,
    /// and the decision's fields worked out after the compare-and-swap (the locked
    /// instruction does not wait for their stores).
    ///
    /// [`RateLimiter::check`]: super::RateLimiter::check
    #[inline(always)]
    pub(crate) fn decide_now(&self, now: Nanos, cost: u64) -> Decision {
        let state = self.state_word();
        let mut tat = state.load(Ordering::Acquire);
        loop {
            let c = self.algorithm().load();
            if cost > c.burst {
                return self.never_at(now, cost);
            }
            let (base, next, over) = Gcra::advance(c.t, c.cap, tat, now, cost);
            if over != 0 {
                return Gcra::decision(&c, false, base, now, over);
            }
            if next == tat {
                return Gcra::decision(&c, true, next, now, 0);
            }
            match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Gcra::decision(&c, true, next, now, 0),
                Err(actual) => tat = actual,
            }
        }
    }
}

impl Algorithm for Gcra {
    // Always inline: out of line, the decision comes back through memory and is copied
    // at once with wider loads than the stores that wrote it (a store-forwarding stall
    // on every `RateLimiter::check`).
    #[inline(always)]
    fn step(&self, tat: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let c = self.load();
        let (base, next, over) = Self::advance(c.t, c.cap, tat, now, cost);
        if over == 0 {
            (next, Self::decision(&c, true, next, now, 0))
        } else {
            (tat, Self::decision(&c, false, base, now, over))
        }
    }

    #[inline]
    fn admit(&self, tat: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        let [t, _, cap, _] = self.cfg.read();
        Self::admit_with(t, cap, tat, now, cost)
    }

    #[inline]
    fn admit_any(&self, tat: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        let [t, burst, cap, _] = self.cfg.read();
        if cost > burst {
            return Err(u64::MAX);
        }
        Self::admit_with(t, cap, tat, now, cost)
    }

    fn refund(&self, tat: u64, _now: Nanos, cost: u64) -> u64 {
        tat.saturating_sub(cost.saturating_mul(self.load().t))
    }

    fn reserve(&self, tat: u64, now: Nanos, cost: u64, max_wait: Nanos) -> Option<(u64, Decision)> {
        let c = self.load();
        let (base, next, wait) = Self::advance(c.t, c.cap, tat, now, cost);
        Some(if wait <= max_wait {
            (next, Self::decision(&c, true, next, now, wait))
        } else {
            (tat, Self::decision(&c, false, base, now, wait))
        })
    }

    /// Sets the rate and the burst. The units in use at `now` stay in use (they refill at
    /// the new speed), except that a debt is never stretched past the longer of itself and
    /// the new capacity (`burst × interval`): when the rate drops, units in use beyond a
    /// full new burst are forgiven, and a `now` that is not the owner's time cannot lock
    /// the limiter out.
    fn set_rate(&self, now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
        let mut rescale = Rescale::NONE;
        self.set_rate_with(now, rate, burst, &mut |r| rescale = r)?;
        Ok(rescale)
    }

    /// [`Gcra::set_rate`](Algorithm::set_rate), carrying the states over while the new
    /// configuration is being written (decisions wait for it to be published).
    fn set_rate_with(
        &self,
        now: Nanos,
        rate: Rate,
        burst: u64,
        carry: &mut dyn FnMut(Rescale),
    ) -> Result<(), ConfigError> {
        let (t, b) = check(rate, burst)?;
        self.cfg.update(|w| {
            carry(Rescale::debt(now, t, w[0], b * t));
            Ok::<_, ConfigError>(words(t, b))
        })
    }

    fn time_to_idle(&self, tat: u64, now: Nanos) -> Nanos {
        tat.saturating_sub(now)
    }

    fn max_cost(&self) -> u64 {
        self.burst()
    }

    fn policy(&self) -> Policy {
        let c = self.load();
        Policy {
            quota: c.burst,
            window: Duration::from_nanos(c.cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::algorithm::Limiter;
    use super::super::decision::Rate;
    use super::{Cfg, Gcra};
    use proptest::prelude::*;

    fn cfg(t: u64) -> Cfg {
        Cfg::from_words(super::words(t, 1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// `units` is the exact quotient for any interval and any amount, on both sides
        /// of its fast path's range, and at the multiples of the interval.
        #[test]
        fn units_is_exact_division(
            t in prop_oneof![1..=1_000u64, 1..=u64::MAX >> 1, Just(u64::MAX >> 1)],
            x in prop_oneof![any::<u64>(), 0..(1u64 << 62), Just((1u64 << 62) - 1)],
            k in 0..=u64::MAX,
        ) {
            let c = cfg(t);
            prop_assert_eq!(Gcra::units(x, &c), x / t);
            // Around a multiple of `t` below the fast path's bound.
            let m = (k % ((1u64 << 62) / t).max(1)) * t;
            for y in [m.saturating_sub(1), m, m + 1, m + t - 1] {
                prop_assert_eq!(Gcra::units(y, &c), y / t, "y = {}", y);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// `decide_now` (`RateLimiter::check`'s GCRA path) makes the same decisions and
        /// leaves the same state as the generic `decide_at`, for any rate and burst and any
        /// sequence of readings (backwards too) and costs (zero, and above the burst),
        /// across runtime rate changes.
        #[test]
        fn decide_now_is_decide_at(
            per in 1..=10_000_000_000u64,
            burst in 1..=50u64,
            steps in proptest::collection::vec(
                (0..=3_000_000_000u64, 0..=60u64, any::<bool>(), any::<bool>(), 1..=50u64),
                1..60,
            ),
        ) {
            let rate = Rate::new(1, Duration::from_nanos(per));
            let (fast, generic) = (
                Gcra::limiter_with_burst(rate, burst).unwrap(),
                Gcra::limiter_with_burst(rate, burst).unwrap(),
            );
            let mut now = 1_000_000_000_000u64;
            for (dt, cost, back, change, new_burst) in steps {
                now = if back { now.saturating_sub(dt / 4) } else { now + dt };
                if change {
                    let d = Duration::from_nanos(now);
                    fast.set_rate(d, rate, new_burst).unwrap();
                    generic.set_rate(d, rate, new_burst).unwrap();
                }
                prop_assert_eq!(fast.decide_now(now, cost), generic.decide_at(now, cost));
                prop_assert_eq!(
                    fast.peek(Duration::from_nanos(now), 0),
                    generic.peek(Duration::from_nanos(now), 0)
                );
            }
        }
    }
}
