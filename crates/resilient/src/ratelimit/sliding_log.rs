//! Sliding window log: the exact count of units admitted in the last `window`, from a log of
//! admission times. Memory grows with the limit (one entry per distinct admission instant,
//! at most `limit` entries), so it suits small limits; it takes a short lock per call.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Limiter, Ticket};
use super::decision::{CostError, Decision, Nanos, Policy, Rate, nanos};
use super::fixed_window::{check_window, window_limit};
use crate::engine::error::ConfigError;

const MAX_LOG_LIMIT: u64 = u64::MAX / 2;

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
///
/// A quota's rollback ([`Limiter::undo`]) removes the units from the log entry they were
/// added to. A blind [refund](Limiter::refund) removes the *newest* units of the log, not
/// necessarily those of the caller that gives them back (the count stays exact, but older
/// units are left, which expire sooner than the newest would have).
#[derive(Debug)]
pub struct SlidingWindowLog {
    limit: AtomicU64,
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
            MAX_LOG_LIMIT,
            window,
            "sliding_window_log.limit",
            "sliding_window_log.window",
        )?;
        Ok(Self {
            limit: AtomicU64::new(limit),
            window: nanos(window),
            log: Mutex::new(Log::default()),
        })
    }

    /// Changes the limit at runtime; the units in the log stay counted.
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, SlidingWindowLog};
    /// use std::time::Duration;
    /// let l = SlidingWindowLog::new(2, Duration::from_secs(10)).unwrap();
    /// let now = Duration::from_secs(86_400);
    /// assert!(l.try_acquire(now, 2).unwrap().allowed);
    /// l.set_limit(3).unwrap();
    /// assert_eq!(l.peek(now, 0).remaining, 1);
    /// ```
    pub fn set_limit(&self, limit: u64) -> Result<(), ConfigError> {
        check_window(
            limit,
            MAX_LOG_LIMIT,
            Duration::from_nanos(1),
            "sliding_window_log.limit",
            "sliding_window_log.window",
        )?;
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Limiter for SlidingWindowLog {
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError> {
        self.acquire_with_ticket(now, cost).map(|(d, _)| d)
    }

    /// The ticket records the time of the log entry the units were added to, so that
    /// [`Limiter::undo`] removes them from that entry (not the newest ones).
    fn acquire_with_ticket(
        &self,
        now: Duration,
        cost: u64,
    ) -> Result<(Decision, Ticket), CostError> {
        let limit = self.limit();
        if cost > limit {
            return Err(CostError { cost, max: limit });
        }
        let now = nanos(now);
        let mut log = self.lock();
        log.expire(now, self.window);
        let d = log.decide(now, self.window, limit, cost);
        let mut ticket = Ticket::default();
        if d.allowed && cost > 0 {
            log.sum += cost;
            let at = match log.entries.back_mut() {
                Some((t, c)) if *t >= now => {
                    *c += cost;
                    *t
                }
                _ => {
                    log.entries.push_back((now, cost));
                    now
                }
            };
            ticket = Ticket::new([at, cost, 1, 0]);
        }
        Ok((d, ticket))
    }

    /// Removes the units from the log entry they were added to (if it has not expired).
    fn undo(&self, _now: Duration, cost: u64, ticket: Ticket) {
        let [at, taken, valid, _] = ticket.words();
        if valid == 0 {
            return;
        }
        let mut log = self.lock();
        let Some(i) = log.entries.iter().rposition(|&(t, _)| t == at) else {
            return; // expired: nothing left to give back
        };
        let take = cost.min(taken).min(log.entries[i].1);
        log.entries[i].1 -= take;
        log.sum -= take;
        if log.entries[i].1 == 0 {
            log.entries.remove(i);
        }
    }

    fn peek(&self, now: Duration, cost: u64) -> Decision {
        let now = nanos(now);
        let mut log = self.lock();
        log.expire(now, self.window);
        let limit = self.limit();
        log.decide(now, self.window, limit, cost.min(limit))
    }

    /// Removes the newest `cost` units of the log (see [`SlidingWindowLog`]).
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
        self.limit()
    }

    fn policy(&self) -> Policy {
        Policy {
            quota: self.limit(),
            window: Duration::from_nanos(self.window),
        }
    }

    /// [`SlidingWindowLog::set_limit`] to `rate.count`, which must equal `burst`, with
    /// `rate.per` equal to the window.
    fn set_rate(&self, _now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        let limit = window_limit(
            rate,
            burst,
            self.window,
            "sliding_window_log.limit",
            "sliding_window_log.window",
        )?;
        self.set_limit(limit)
    }
}
