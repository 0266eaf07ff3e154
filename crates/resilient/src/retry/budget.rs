//! Retry budgets: a limit on retries shared by all calls of a pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::{ConfigError, SharedClock, system_clock};

const SCALE: i64 = 1_000; // milli-tokens

/// A budget of retries shared by every call of a pipeline, in the manner of Finagle's
/// `RetryBudget` and gRPC retry throttling: each call deposits `ratio` of a token, each retry
/// withdraws one, and a small reserve of `min_per_sec` retries per second is always
/// available. A failing dependency then sees at most about `ratio` extra load, never a
/// retry storm.
///
/// ```
/// use resilient::{ManualClock, RetryBudget};
/// use std::sync::Arc;
///
/// let budget = RetryBudget::builder(0.1)
///     .min_per_sec(0)
///     .clock(Arc::new(ManualClock::new()))
///     .build()
///     .unwrap();
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw()); // 20 calls at 10% buy 2 retries
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    ratio_milli: i64,
    max_balance: i64,
    balance: AtomicI64,
    reserve_rate: u32,
    reserve_cap: i64,
    reserve: AtomicI64,
    reserve_refilled_at: AtomicU64,
    clock: SharedClock,
}

/// Builds a [`RetryBudget`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_sec: u32,
    ttl: Duration,
    clock: SharedClock,
}

impl RetryBudget {
    /// A budget allowing retries of `ratio` (e.g. `0.1` = 10%) of calls.
    pub fn builder(ratio: f64) -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
            clock: system_clock(),
        }
    }

    /// Records a call (its first attempt): deposits `ratio` of a token.
    pub fn deposit(&self) {
        let cap = self.max_balance;
        let add = self.ratio_milli;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b < cap).then(|| (b + add).min(cap))
            });
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        if self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= SCALE).then_some(b - SCALE)
            })
            .is_ok()
        {
            return true;
        }
        self.refill_reserve();
        self.reserve
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= SCALE).then_some(b - SCALE)
            })
            .is_ok()
    }

    /// Retries currently available (deposits plus reserve), rounded down.
    pub fn available(&self) -> u64 {
        self.refill_reserve();
        let b = self.balance.load(Ordering::Acquire).max(0)
            + self.reserve.load(Ordering::Acquire).max(0);
        (b / SCALE) as u64
    }

    fn refill_reserve(&self) {
        if self.reserve_rate == 0 {
            return;
        }
        let now = u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX);
        let last = self.reserve_refilled_at.load(Ordering::Acquire);
        // one milli-token every (1e9 / rate / 1000) ns
        let per_milli = 1_000_000 / u64::from(self.reserve_rate);
        let per_milli = per_milli.max(1);
        let earned = now.saturating_sub(last) / per_milli;
        if earned == 0 {
            return;
        }
        if self
            .reserve_refilled_at
            .compare_exchange(
                last,
                last + earned * per_milli,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let cap = self.reserve_cap;
            let earned = i64::try_from(earned).unwrap_or(i64::MAX);
            let _ = self
                .reserve
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |r| {
                    Some(r.saturating_add(earned).min(cap))
                });
        }
    }
}

impl RetryBudgetBuilder {
    /// Retries always allowed per second, whatever the deposits (default 10).
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = n;
        self
    }

    /// How long deposits and the reserve may accumulate, which bounds the balance
    /// (default 10 s): at most `ratio * calls in ttl` deposited retries are kept.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The clock used for the reserve's refill.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates and builds the budget.
    pub fn build(self) -> Result<Arc<RetryBudget>, ConfigError> {
        if !(self.ratio >= 0.0 && self.ratio <= 1000.0) {
            return Err(ConfigError::new(
                "retry.budget.ratio",
                format!("must be between 0 and 1000 (got {})", self.ratio),
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "retry.budget.ttl",
                format!("must be between 1s and 1h (got {:?})", self.ttl),
            ));
        }
        let ratio_milli = (self.ratio * SCALE as f64).round() as i64;
        // The balance may hold what `ratio` of a busy ttl would deposit; we cap it at a
        // generous ratio * 1000 calls per second over the ttl.
        let ttl_secs = self.ttl.as_secs() as i64;
        let max_balance = (ratio_milli * 1000 * ttl_secs).max(SCALE);
        let reserve_cap = i64::from(self.min_per_sec) * ttl_secs * SCALE;
        let now = u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX);
        Ok(Arc::new(RetryBudget {
            ratio_milli,
            max_balance,
            balance: AtomicI64::new(0),
            reserve_rate: self.min_per_sec,
            reserve_cap,
            // start with a full second of reserve
            reserve: AtomicI64::new((i64::from(self.min_per_sec) * SCALE).min(reserve_cap)),
            reserve_refilled_at: AtomicU64::new(now),
            clock: self.clock,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn reserve_refills_over_time() {
        let clock = ManualClock::new();
        let b = RetryBudget::builder(0.0)
            .min_per_sec(2)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        clock.advance(Duration::from_millis(500));
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        clock.advance(Duration::from_secs(100));
        assert_eq!(b.available(), 20); // capped at min_per_sec * ttl
    }

    #[test]
    fn rejects_bad_ratio() {
        let e = RetryBudget::builder(-1.0).build().unwrap_err();
        assert_eq!(e.field(), "retry.budget.ratio");
        let e = RetryBudget::builder(f64::NAN).build().unwrap_err();
        assert_eq!(e.field(), "retry.budget.ratio");
    }
}
