//! Sliding window log: the exact count of units admitted in the last `window`, from a log of
//! admission times. Memory grows with the limit (one entry per distinct admission instant,
//! at most `limit` entries), so it suits small limits; it takes a short lock per call.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::algorithm::Limiter;
use super::decision::{CostError, Decision, Nanos, Policy, nanos};
use super::fixed_window::check_window;
use crate::ConfigError;

/// An exact sliding-window limiter.
///
/// ```
/// use resilient::ratelimit::{Limiter, SlidingWindowLog};
/// use std::time::Duration;
/// let l = SlidingWindowLog::new(2, Duration::from_secs(10)).unwrap();
/// assert!(l.try_acquire(Duration::from_secs(1), 1).unwrap().allowed);
/// assert!(l.try_acquire(Duration::from_secs(4), 1).unwrap().allowed);
/// let d = l.try_acquire(Duration::from_secs(5), 1).unwrap();
/// assert_eq!(d.retry_after, Duration::from_secs(6)); // when the entry at 1 s expires
/// ```
#[derive(Debug)]
pub struct SlidingWindowLog {
    limit: u64,
    window: Nanos,
    log: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<(Nanos, u64)>,
    sum: u64,
}

impl Log {
    fn expire(&mut self, now: Nanos, window: Nanos) {
        while let Some(&(t, c)) = self.entries.front() {
            if t.saturating_add(window) <= now {
                self.entries.pop_front();
                self.sum -= c;
            } else {
                break;
            }
        }
    }

    fn decide(&self, now: Nanos, window: Nanos, limit: u64, cost: u64) -> Decision {
        let reset = self
            .entries
            .back()
            .map_or(0, |&(t, _)| t.saturating_add(window).saturating_sub(now));
        if self.sum + cost <= limit {
            return Decision {
                allowed: true,
                limit,
                remaining: limit - self.sum - cost,
                reset: Duration::from_nanos(if cost > 0 { window } else { reset }),
                retry_after: Duration::ZERO,
            };
        }
        let need = self.sum + cost - limit;
        let mut freed = 0;
        let mut retry = 0;
        for &(t, c) in &self.entries {
            freed += c;
            if freed >= need {
                retry = t.saturating_add(window).saturating_sub(now);
                break;
            }
        }
        Decision {
            allowed: false,
            limit,
            remaining: limit.saturating_sub(self.sum),
            reset: Duration::from_nanos(reset),
            retry_after: Duration::from_nanos(retry),
        }
    }
}

impl SlidingWindowLog {
    /// At most `limit` units in any window of length `window`.
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        check_window(
            limit,
            u64::MAX / 2,
            window,
            "sliding_window_log.limit",
            "sliding_window_log.window",
        )?;
        Ok(Self {
            limit,
            window: nanos(window),
            log: Mutex::new(Log::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Limiter for SlidingWindowLog {
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError> {
        if cost > self.limit {
            return Err(CostError {
                cost,
                max: self.limit,
            });
        }
        let now = nanos(now);
        let mut log = self.lock();
        log.expire(now, self.window);
        let d = log.decide(now, self.window, self.limit, cost);
        if d.allowed && cost > 0 {
            log.sum += cost;
            match log.entries.back_mut() {
                Some((t, c)) if *t >= now => *c += cost,
                _ => log.entries.push_back((now, cost)),
            }
        }
        Ok(d)
    }

    fn peek(&self, now: Duration, cost: u64) -> Decision {
        let now = nanos(now);
        let mut log = self.lock();
        log.expire(now, self.window);
        log.decide(now, self.window, self.limit, cost.min(self.limit))
    }

    fn refund(&self, _now: Duration, mut cost: u64) {
        let mut log = self.lock();
        while cost > 0 {
            let Some((_, c)) = log.entries.back_mut() else {
                break;
            };
            let take = cost.min(*c);
            *c -= take;
            cost -= take;
            if *c == 0 {
                log.entries.pop_back();
            }
            log.sum -= take;
        }
    }

    fn max_cost(&self) -> u64 {
        self.limit
    }

    fn policy(&self) -> Policy {
        Policy {
            quota: self.limit,
            window: Duration::from_nanos(self.window),
        }
    }
}
