//! GCRA, the generic cell rate algorithm: a token bucket with continuous refill whose whole
//! state is one timestamp, the theoretical arrival time (TAT).
//!
//! With emission interval `T = period / count` and burst `B`, a request of cost `c` at
//! `now` is admitted iff `max(tat, now) + c·T - now <= B·T`; it then moves `tat` to
//! `max(tat, now) + c·T`. The limiter is full when `tat <= now`, so state `0` is fresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter};
use super::decision::{Decision, Nanos, Policy, Rate};
use crate::ConfigError;

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
    interval: AtomicU64,
    burst: AtomicU64,
    /// `burst × interval`, the tolerance in ns.
    cap: AtomicU64,
    /// `1 / interval` as `f64` bits: turns the division for `remaining` into a multiply.
    inverse: AtomicU64,
}

fn check(rate: Rate, burst: u64) -> Result<(u64, u64), ConfigError> {
    rate.validate("gcra.rate")?;
    if burst == 0 {
        return Err(ConfigError::new("gcra.burst", "must be at least 1"));
    }
    let t = rate.interval_nanos();
    if burst.checked_mul(t).is_none() {
        return Err(ConfigError::new(
            "gcra.burst",
            "times the emission interval must fit in 584 years",
        ));
    }
    Ok((t, burst))
}

impl Gcra {
    /// `rate`, with a burst of `rate.count`.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Self::with_burst(rate, rate.count)
    }

    /// `rate`, with a burst (total capacity) of `burst` units.
    pub fn with_burst(rate: Rate, burst: u64) -> Result<Self, ConfigError> {
        let (t, b) = check(rate, burst)?;
        let g = Self {
            interval: AtomicU64::new(0),
            burst: AtomicU64::new(0),
            cap: AtomicU64::new(0),
            inverse: AtomicU64::new(0),
        };
        g.store(t, b);
        Ok(g)
    }

    /// A lock-free limiter for `rate` (burst `rate.count`).
    pub fn limiter(rate: Rate) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::new(rate).map(AtomicLimiter::new)
    }

    /// A lock-free limiter for `rate` with burst `burst`.
    pub fn limiter_with_burst(rate: Rate, burst: u64) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::with_burst(rate, burst).map(AtomicLimiter::new)
    }

    fn store(&self, t: u64, b: u64) {
        self.interval.store(t, Ordering::Relaxed);
        self.burst.store(b, Ordering::Relaxed);
        self.cap.store(b * t, Ordering::Relaxed);
        self.inverse
            .store((1.0 / t as f64).to_bits(), Ordering::Relaxed);
    }

    /// `x / t`, exact, by a multiply and one correction step.
    #[inline]
    fn units(&self, x: u64, t: u64) -> u64 {
        if x >= 1 << 62 {
            return x / t; // beyond the fast path's range
        }
        // Signed conversions are single instructions on x86-64; both values fit.
        let q = (x as i64 as f64 * f64::from_bits(self.inverse.load(Ordering::Relaxed))) as i64;
        let q = q.max(0) as u64;
        if q >= 1 << 50 {
            return x / t; // beyond the f64 fast path's exactness
        }
        let p = q * t;
        if p > x {
            q - 1
        } else if x - p >= t {
            q + 1
        } else {
            q
        }
    }

    /// The emission interval (time to replenish one unit).
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval.load(Ordering::Relaxed))
    }

    /// The burst (total capacity).
    pub fn burst(&self) -> u64 {
        self.burst.load(Ordering::Relaxed)
    }
}

impl AtomicLimiter<Gcra> {
    /// Changes the rate and burst at runtime, keeping the units in use: a limiter that had
    /// used 3 units still has 3 in use under the new rate (they just refill at the new
    /// speed).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, Limiter, Rate};
    /// use std::time::Duration;
    /// let l = Gcra::limiter(Rate::per_second(10)).unwrap();
    /// l.try_acquire(Duration::ZERO, 3).unwrap();
    /// l.set_rate(Duration::ZERO, Rate::per_second(100), 100).unwrap();
    /// assert_eq!(l.peek(Duration::ZERO, 0).remaining, 97);
    /// ```
    pub fn set_rate(&self, now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        let (t_new, b_new) = check(rate, burst)?;
        let now = super::decision::nanos(now);
        let alg = self.algorithm();
        let t_old = alg.interval.load(Ordering::Relaxed);
        self.update(|tat| {
            if tat <= now {
                return tat;
            }
            let used = u128::from(tat - now) * u128::from(t_new) / u128::from(t_old);
            now.saturating_add(u64::try_from(used).unwrap_or(u64::MAX))
        });
        alg.store(t_new, b_new);
        Ok(())
    }
}

impl Gcra {
    #[inline]
    fn decision(&self, allowed: bool, tat: u64, now: Nanos, retry: Nanos) -> Decision {
        let t = self.interval.load(Ordering::Relaxed);
        let used = tat.saturating_sub(now);
        let cap = self.cap.load(Ordering::Relaxed);
        Decision {
            allowed,
            limit: self.burst.load(Ordering::Relaxed),
            remaining: self.units(cap.saturating_sub(used), t),
            reset: Duration::from_nanos(used),
            retry_after: Duration::from_nanos(retry),
        }
    }
}

impl Algorithm for Gcra {
    #[inline]
    fn step(&self, tat: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let t = self.interval.load(Ordering::Relaxed);
        let cap = self.cap.load(Ordering::Relaxed);
        let base = tat.max(now);
        let next = base.saturating_add(cost.saturating_mul(t));
        let over = (next - now).saturating_sub(cap);
        if over == 0 {
            (next, self.decision(true, next, now, 0))
        } else {
            (tat, self.decision(false, base, now, over))
        }
    }

    #[inline]
    fn admit(&self, tat: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        let t = self.interval.load(Ordering::Relaxed);
        let cap = self.cap.load(Ordering::Relaxed);
        let next = tat.max(now).saturating_add(cost.saturating_mul(t));
        match (next - now).saturating_sub(cap) {
            0 => Ok(next),
            over => Err(over),
        }
    }

    fn refund(&self, tat: u64, _now: Nanos, cost: u64) -> u64 {
        tat.saturating_sub(cost.saturating_mul(self.interval.load(Ordering::Relaxed)))
    }

    fn reserve(&self, tat: u64, now: Nanos, cost: u64, max_wait: Nanos) -> Option<(u64, Decision)> {
        let t = self.interval.load(Ordering::Relaxed);
        let cap = self.cap.load(Ordering::Relaxed);
        let base = tat.max(now);
        let next = base.saturating_add(cost.saturating_mul(t));
        let wait = (next - now).saturating_sub(cap);
        Some(if wait <= max_wait {
            (next, self.decision(true, next, now, wait))
        } else {
            (tat, self.decision(false, base, now, wait))
        })
    }

    fn time_to_idle(&self, tat: u64, now: Nanos) -> Nanos {
        tat.saturating_sub(now)
    }

    fn max_cost(&self) -> u64 {
        self.burst()
    }

    fn policy(&self) -> Policy {
        Policy {
            quota: self.burst(),
            window: Duration::from_nanos(self.cap.load(Ordering::Relaxed)),
        }
    }
}
