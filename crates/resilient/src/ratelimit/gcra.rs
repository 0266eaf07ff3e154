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
        Ok(Self {
            interval: AtomicU64::new(t),
            burst: AtomicU64::new(b),
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
        alg.interval.store(t_new, Ordering::Relaxed);
        alg.burst.store(b_new, Ordering::Relaxed);
        Ok(())
    }
}

impl Gcra {
    #[inline]
    fn decision(allowed: bool, b: u64, t: u64, tat: u64, now: Nanos, retry: Nanos) -> Decision {
        let used = tat.saturating_sub(now);
        let cap = b * t;
        Decision {
            allowed,
            limit: b,
            remaining: cap.saturating_sub(used) / t,
            reset: Duration::from_nanos(used),
            retry_after: Duration::from_nanos(retry),
        }
    }
}

impl Algorithm for Gcra {
    #[inline]
    fn step(&self, tat: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let t = self.interval.load(Ordering::Relaxed);
        let b = self.burst.load(Ordering::Relaxed);
        let base = tat.max(now);
        let next = base.saturating_add(cost.saturating_mul(t));
        let over = (next - now).saturating_sub(b.saturating_mul(t));
        if over == 0 {
            (next, Self::decision(true, b, t, next, now, 0))
        } else {
            (tat, Self::decision(false, b, t, base, now, over))
        }
    }

    fn refund(&self, tat: u64, _now: Nanos, cost: u64) -> u64 {
        tat.saturating_sub(cost.saturating_mul(self.interval.load(Ordering::Relaxed)))
    }

    fn reserve(&self, tat: u64, now: Nanos, cost: u64, max_wait: Nanos) -> Option<(u64, Decision)> {
        let t = self.interval.load(Ordering::Relaxed);
        let b = self.burst.load(Ordering::Relaxed);
        let base = tat.max(now);
        let next = base.saturating_add(cost.saturating_mul(t));
        let wait = (next - now).saturating_sub(b.saturating_mul(t));
        Some(if wait <= max_wait {
            (next, Self::decision(true, b, t, next, now, wait))
        } else {
            (tat, Self::decision(false, b, t, base, now, wait))
        })
    }

    fn time_to_idle(&self, tat: u64, now: Nanos) -> Nanos {
        tat.saturating_sub(now)
    }

    fn max_cost(&self) -> u64 {
        self.burst()
    }

    fn policy(&self) -> Policy {
        let b = self.burst();
        Policy {
            quota: b,
            window: Duration::from_nanos(b.saturating_mul(self.interval.load(Ordering::Relaxed))),
        }
    }
}
