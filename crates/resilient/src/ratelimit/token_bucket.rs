//! Token bucket with interval refill: `capacity` tokens, `refill.count` tokens added at
//! every `refill.per` boundary (Bucket4j's "intervally" refill). For continuous refill use
//! [`Gcra`](super::Gcra), which is the continuous token bucket.
//!
//! Packed state: the high 32 bits hold the index of the last refill period (wrapping), the
//! low 32 bits the *deficit* (tokens missing from a full bucket), so `0` is a full bucket.
//! A wrap of the period index after exactly 2³² idle periods can only make the bucket look
//! emptier than it is (it never over-admits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter};
use super::decision::{Decision, Nanos, Policy, Rate, nanos};
use crate::ConfigError;

/// Token-bucket configuration (capacity and refill, adjustable at runtime).
///
/// ```
/// use resilient::ratelimit::{Limiter, Rate, TokenBucket};
/// use std::time::Duration;
/// // Up to 100 tokens; 10 tokens are added at every 1 s boundary.
/// let l = TokenBucket::limiter(100, Rate::per_second(10)).unwrap();
/// assert_eq!(l.try_acquire(Duration::ZERO, 95).unwrap().remaining, 5);
/// let d = l.try_acquire(Duration::from_millis(500), 10).unwrap();
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after, Duration::from_millis(500));
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    capacity: AtomicU64,
    amount: AtomicU64,
    every: AtomicU64,
}

fn check(capacity: u64, refill: Rate) -> Result<(), ConfigError> {
    refill.validate("token_bucket.refill")?;
    if capacity == 0 || capacity > u64::from(u32::MAX) {
        return Err(ConfigError::new(
            "token_bucket.capacity",
            format!("must be between 1 and {} (got {capacity})", u32::MAX),
        ));
    }
    Ok(())
}

impl TokenBucket {
    /// A bucket of `capacity` tokens refilled by `refill.count` every `refill.per`.
    pub fn new(capacity: u64, refill: Rate) -> Result<Self, ConfigError> {
        check(capacity, refill)?;
        Ok(Self {
            capacity: AtomicU64::new(capacity),
            amount: AtomicU64::new(refill.count),
            every: AtomicU64::new(nanos(refill.per)),
        })
    }

    /// A lock-free limiter over a new bucket.
    pub fn limiter(capacity: u64, refill: Rate) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::new(capacity, refill).map(AtomicLimiter::new)
    }

    /// Changes capacity and refill at runtime; tokens in use stay in use.
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, TokenBucket};
    /// use std::time::Duration;
    /// let l = TokenBucket::limiter(10, Rate::per_second(10)).unwrap();
    /// l.try_acquire(Duration::ZERO, 4).unwrap();
    /// l.algorithm().set(20, Rate::per_second(20)).unwrap();
    /// assert_eq!(l.peek(Duration::ZERO, 0).remaining, 16);
    /// ```
    pub fn set(&self, capacity: u64, refill: Rate) -> Result<(), ConfigError> {
        check(capacity, refill)?;
        self.capacity.store(capacity, Ordering::Relaxed);
        self.amount.store(refill.count, Ordering::Relaxed);
        self.every.store(nanos(refill.per), Ordering::Relaxed);
        Ok(())
    }

    /// Refills `state` up to `now`: (current period, deficit).
    #[inline]
    fn refill(&self, state: u64, now: Nanos, amount: u64, every: u64) -> (u64, u64) {
        let period = now / every;
        let deficit = state & 0xFFFF_FFFF;
        if deficit == 0 {
            return (period, 0);
        }
        let elapsed = (period as u32).wrapping_sub((state >> 32) as u32);
        if elapsed.wrapping_neg() <= super::fixed_window::RACE_WINDOWS {
            // A racing caller with a later clock reading already refilled further: keep
            // its period (time never goes backwards for the state).
            return (period + u64::from(elapsed.wrapping_neg()), deficit);
        }
        (
            period,
            deficit.saturating_sub(u64::from(elapsed).saturating_mul(amount)),
        )
    }

    /// Time from `now` until `need` tokens have been added.
    fn time_for(need: u64, period: u64, now: Nanos, amount: u64, every: u64) -> Nanos {
        if need == 0 {
            return 0;
        }
        let periods = need.div_ceil(amount);
        period
            .saturating_add(periods)
            .saturating_mul(every)
            .saturating_sub(now)
    }
}

impl Algorithm for TokenBucket {
    #[inline]
    fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let cap = self.capacity.load(Ordering::Relaxed);
        let amount = self.amount.load(Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        let (period, deficit) = self.refill(state, now, amount, every);
        let deficit = deficit.min(cap);
        let tokens = cap - deficit;
        if cost <= tokens {
            let d = deficit + cost;
            let next = ((period as u32 as u64) << 32) | d;
            let dec = Decision {
                allowed: true,
                limit: cap,
                remaining: tokens - cost,
                reset: Duration::from_nanos(Self::time_for(d, period, now, amount, every)),
                retry_after: Duration::ZERO,
            };
            (next, dec)
        } else {
            let dec = Decision {
                allowed: false,
                limit: cap,
                remaining: tokens,
                reset: Duration::from_nanos(Self::time_for(deficit, period, now, amount, every)),
                retry_after: Duration::from_nanos(Self::time_for(
                    cost - tokens,
                    period,
                    now,
                    amount,
                    every,
                )),
            };
            (state, dec)
        }
    }

    fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64 {
        let amount = self.amount.load(Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        let (period, deficit) = self.refill(state, now, amount, every);
        ((period as u32 as u64) << 32) | deficit.saturating_sub(cost)
    }

    fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos {
        let amount = self.amount.load(Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        let (period, deficit) = self.refill(state, now, amount, every);
        Self::time_for(deficit, period, now, amount, every)
    }

    fn max_cost(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    fn policy(&self) -> Policy {
        let cap = self.capacity.load(Ordering::Relaxed);
        let amount = self.amount.load(Ordering::Relaxed);
        let every = self.every.load(Ordering::Relaxed);
        Policy {
            quota: cap,
            window: Duration::from_nanos(cap.div_ceil(amount).saturating_mul(every)),
        }
    }
}
