//! Token bucket with interval refill: `capacity` tokens, `refill.count` tokens added at
//! every `refill.per` boundary (Bucket4j's "intervally" refill). For continuous refill use
//! [`Gcra`](super::Gcra), which is the continuous token bucket.
//!
//! Packed state: the high 32 bits hold the index of the last refill period (wrapping), the
//! low 32 bits the *deficit* (tokens missing from a full bucket), so `0` is a full bucket.
//! A wrap of the period index after exactly 2³² idle periods can only make the bucket look
//! emptier than it is (it never over-admits).
//!
//! The period index is continuous across changes of the refill period: the configuration
//! keeps the time and index at which the current period length took effect, so a state
//! stored under an earlier period length still counts the boundaries that passed since
//! (each at the length in force then). Periods start at the bucket's first decision (its
//! first use), then every `refill.per`: a bucket first used at any time refills a full
//! period after that, not at the next multiple of `refill.per` from the clock's origin.
//! All the states of one bucket (every key of a [`KeyedLimiter`](super::KeyedLimiter))
//! share its periods.
//!
//! A new period length is put in force at the newest time any decision has seen (the
//! bucket keeps the highest period index it computed), never at an older clock reading: a
//! state stored at a later reading than the one the change is made at would otherwise be
//! ahead of the new index by periods then counted at the new length (or, beyond the race
//! window, read as wrapped and refilled at once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter, Rescale};
use super::config::ConfigCell;
use super::decision::{Decision, Nanos, Policy, Rate, nanos};
use crate::engine::error::ConfigError;

/// Token-bucket configuration (capacity and refill, adjustable at runtime).
///
/// ```
/// use resilient::ratelimit::{Limiter, Rate, TokenBucket};
/// use std::time::Duration;
/// // Up to 100 tokens; 10 tokens are added at every 1 s boundary.
/// let l = TokenBucket::limiter(100, Rate::per_second(10)).unwrap();
/// let day = Duration::from_secs(86_400); // clock readings are large in production
/// assert_eq!(l.try_acquire(day, 95).unwrap().remaining, 5);
/// let d = l.try_acquire(day + Duration::from_millis(500), 10).unwrap();
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after, Duration::from_millis(500));
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    /// `[capacity, amount, every, base_time, base_index, next_every]`: periods of `every`
    /// ns start at `base_time` with index `base_index`; `next_every` (0: none) is a new
    /// period length that the next decision puts in force, at its own clock reading or at
    /// the start of period `seen`, whichever is later; [`UNSTARTED`]: the bucket has not
    /// been used, and its first decision starts period 0 at its own clock reading.
    cfg: ConfigCell<6>,
    /// The highest period index a decision has computed: every stored state's index is at
    /// most this (up to a race with a decision in flight), so a period change put in force
    /// from its start never leaves a state ahead of the new index. Written once per period
    /// (the first decision to see a new period), read on every decision.
    seen: AtomicU64,
}

/// One consistent reading of the configuration.
#[derive(Debug, Clone, Copy)]
struct Cfg {
    cap: u64,
    amount: u64,
    every: u64,
    base_time: Nanos,
    base_index: u64,
}

impl Cfg {
    fn from_words(w: [u64; 6]) -> Self {
        Self {
            cap: w[0],
            amount: w[1],
            every: w[2],
            base_time: w[3],
            base_index: w[4],
        }
    }

    /// The index of the refill period `now` falls in.
    #[inline]
    fn period(&self, now: Nanos) -> u64 {
        self.base_index
            .saturating_add(now.saturating_sub(self.base_time) / self.every)
    }

    /// When period `index` starts.
    #[inline]
    fn start(&self, index: u64) -> Nanos {
        self.base_time.saturating_add(
            index
                .saturating_sub(self.base_index)
                .saturating_mul(self.every),
        )
    }
}

/// `next_every` of a bucket no decision has used yet.
const UNSTARTED: u64 = u64::MAX;

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
            cfg: ConfigCell::new([capacity, refill.count, nanos(refill.per), 0, 0, UNSTARTED]),
            seen: AtomicU64::new(0),
        })
    }

    /// A lock-free limiter over a new bucket.
    pub fn limiter(capacity: u64, refill: Rate) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::new(capacity, refill).map(AtomicLimiter::new)
    }

    /// Changes capacity and refill at runtime, for every state that uses this bucket (one
    /// limiter's, or every key's of a [`KeyedLimiter`](super::KeyedLimiter)); tokens in use
    /// stay in use. Needs no clock reading: a new refill *period* takes effect at the next
    /// decision, at that decision's time or, if a decision already saw a later refill
    /// period, at that period's start (a caller with an older clock reading, such as a
    /// `peek` at an earlier time, cannot put it in force in the past). The refill period
    /// running then ends at the next multiple of the new period from its start (so setting
    /// the same period again changes nothing); boundaries already passed are never counted
    /// again. [`Algorithm::set_rate`] (through the owner of the clock) puts it in force at
    /// once.
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, TokenBucket};
    /// use std::time::Duration;
    /// let l = TokenBucket::limiter(10, Rate::per_second(10)).unwrap();
    /// let now = Duration::from_secs(86_400);
    /// l.try_acquire(now, 4).unwrap();
    /// l.algorithm().set(20, Rate::new(20, Duration::from_secs(2))).unwrap();
    /// let d = l.peek(now + Duration::from_millis(500), 0);
    /// assert_eq!(d.remaining, 16); // the 4 tokens in use stay in use
    /// assert_eq!(d.reset, Duration::from_millis(1_500)); // the current period now lasts 2 s
    /// ```
    pub fn set(&self, capacity: u64, refill: Rate) -> Result<(), ConfigError> {
        check(capacity, refill)?;
        let every = nanos(refill.per);
        self.cfg.update(|w| {
            if w[5] == UNSTARTED {
                // Not used yet: periods of the new length start at the first decision.
                return Ok([capacity, refill.count, every, 0, 0, UNSTARTED]);
            }
            let next = if every == w[2] { 0 } else { every };
            Ok([capacity, refill.count, w[2], w[3], w[4], next])
        })
    }

    /// The configuration in force at `now` (putting a pending period change in force).
    #[inline]
    fn config(&self, now: Nanos) -> Cfg {
        let w = self.cfg.read();
        if w[5] != 0 {
            return self.switch_period(now);
        }
        Cfg::from_words(w)
    }

    /// Records that a decision computed refill period `index` (see `seen`).
    #[inline]
    fn observe(&self, index: u64) {
        if index > self.seen.load(Ordering::Relaxed) {
            self.seen.fetch_max(index, Ordering::AcqRel);
        }
    }

    /// Puts a new period length in force at `now`, or at the start of the newest period a
    /// decision has seen if that is later, keeping the period index continuous.
    #[cold]
    fn switch_period(&self, now: Nanos) -> Cfg {
        let _ = self.cfg.update(|w| {
            if w[5] == 0 {
                return Ok::<_, ()>(w); // another caller did it
            }
            if w[5] == UNSTARTED {
                // The first decision: period 0 starts now.
                return Ok([w[0], w[1], w[2], now, 0, 0]);
            }
            let old = Cfg::from_words(w);
            // Never in the past of a stored state: its index would be ahead of the new one.
            let at = now.max(old.start(self.seen.load(Ordering::Acquire)));
            let index = old.period(at);
            let start = old.start(index);
            let next = w[5];
            // Keep the running period's start; count no boundary of the new length before
            // `at` (it would refill for time already spent).
            let start = start + at.saturating_sub(start) / next * next;
            Ok([w[0], w[1], next, start, index, 0])
        });
        Cfg::from_words(self.cfg.read())
    }

    /// Refills `state` up to `now`: (current period, deficit).
    #[inline]
    fn refill(state: u64, now: Nanos, cfg: &Cfg) -> (u64, u64) {
        let period = cfg.period(now);
        let deficit = state & 0xFFFF_FFFF;
        if deficit == 0 {
            return (period, 0);
        }
        let elapsed = (period as u32).wrapping_sub((state >> 32) as u32);
        if elapsed.wrapping_neg() <= super::fixed_window::RACE_WINDOWS {
            // A racing caller with a later clock reading already refilled further: keep
            // its period (time never goes backwards for the state).
            return (
                period.saturating_add(u64::from(elapsed.wrapping_neg())),
                deficit,
            );
        }
        (
            period,
            deficit.saturating_sub(u64::from(elapsed).saturating_mul(cfg.amount)),
        )
    }

    /// Time from `now` until `need` tokens have been added.
    fn time_for(need: u64, period: u64, now: Nanos, cfg: &Cfg) -> Nanos {
        if need == 0 {
            return 0;
        }
        let periods = need.div_ceil(cfg.amount);
        cfg.start(period.saturating_add(periods))
            .saturating_sub(now)
    }
}

impl Algorithm for TokenBucket {
    #[inline]
    fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let cfg = self.config(now);
        let cap = cfg.cap;
        let (period, deficit) = Self::refill(state, now, &cfg);
        self.observe(period);
        let deficit = deficit.min(cap);
        let tokens = cap - deficit;
        if cost <= tokens {
            let d = deficit + cost;
            let next = ((period as u32 as u64) << 32) | d;
            let dec = Decision {
                allowed: true,
                limit: cap,
                remaining: tokens - cost,
                reset: Duration::from_nanos(Self::time_for(d, period, now, &cfg)),
                retry_after: Duration::ZERO,
            };
            (next, dec)
        } else {
            let dec = Decision {
                allowed: false,
                limit: cap,
                remaining: tokens,
                reset: Duration::from_nanos(Self::time_for(deficit, period, now, &cfg)),
                retry_after: Duration::from_nanos(Self::time_for(cost - tokens, period, now, &cfg)),
            };
            (state, dec)
        }
    }

    fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64 {
        let cfg = self.config(now);
        let (period, deficit) = Self::refill(state, now, &cfg);
        self.observe(period);
        ((period as u32 as u64) << 32) | deficit.saturating_sub(cost)
    }

    /// Tokens are interchangeable (a token bucket never reserves), and giving `cost` back
    /// after refills leaves the deficit the bucket would have had without the request, so
    /// the tokens are always given back.
    fn undo(&self, state: u64, _before: u64, _after: u64, now: Nanos, cost: u64) -> Option<u64> {
        Some(self.refund(state, now, cost))
    }

    fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos {
        let cfg = self.config(now);
        let (period, deficit) = Self::refill(state, now, &cfg);
        Self::time_for(deficit, period, now, &cfg)
    }

    fn max_cost(&self) -> u64 {
        self.cfg.read()[0]
    }

    /// [`TokenBucket::set`] with `burst` as the capacity and `rate` as the refill; states
    /// carry over unchanged. A new refill period is put in force at once, at `now` (the
    /// owner's time) or the start of the newest period a decision has seen, if later.
    fn set_rate(&self, now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
        self.set(burst, rate)?;
        self.switch_period(now);
        Ok(Rescale::NONE)
    }

    fn policy(&self) -> Policy {
        let w = self.cfg.read();
        let (cap, amount) = (w[0], w[1]);
        let every = if w[5] != 0 && w[5] != UNSTARTED {
            w[5]
        } else {
            w[2]
        };
        Policy {
            quota: cap,
            window: Duration::from_nanos(cap.div_ceil(amount).saturating_mul(every)),
        }
    }
}
