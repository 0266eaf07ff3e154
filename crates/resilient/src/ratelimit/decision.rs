//! What a limiter answers: [`Decision`], the [`Rate`] and [`Policy`] it enforces, and the
//! error for a request that can never fit.

use std::fmt;
use std::time::Duration;

use crate::engine::error::ConfigError;
use crate::engine::guard::{RateLimitInfo, Rejection};

/// Nanoseconds since the clock's origin: the time unit of every state transition.
pub type Nanos = u64;

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub fn nanos(d: Duration) -> Nanos {
    let n = d.as_nanos();
    if n > u128::from(u64::MAX) {
        u64::MAX
    } else {
        n as u64
    }
}

/// The shortest pause between two polls of a waiter on a limiter that cannot reserve (one
/// tick of tokio's timer): a denial whose `retry_after` rounds to nothing (a clock that
/// stands still, say at its end) must not make the waiter spin without yielding time.
pub(crate) const MIN_POLL: Duration = Duration::from_millis(1);

/// How long a waiter on a limiter that cannot reserve pauses before polling again: the
/// denial's `retry_after`, at least [`MIN_POLL`]; and while the limiter's clock has not
/// moved since the last poll (a clock stuck at its end, or a manual clock nobody
/// advances), a pause that doubles each time, so such a wait ends within its bound in a
/// few dozen polls instead of spinning.
///
/// It also bounds the wait in tokio's time: a limiter whose clock stands still would
/// otherwise never see its own deadline pass.
#[derive(Debug)]
pub(crate) struct PollPause {
    last: Duration,
    stall: Duration,
    until: Option<tokio::time::Instant>,
}

impl PollPause {
    /// Starts at the limiter's time `now`, for a wait of at most `max_wait`.
    pub(crate) fn new(now: Duration, max_wait: Duration) -> Self {
        Self {
            last: now,
            stall: MIN_POLL / 2,
            until: tokio::time::Instant::now().checked_add(max_wait),
        }
    }

    /// Whether the wait has lasted `max_wait` in tokio's time.
    pub(crate) fn expired(&self) -> bool {
        self.until
            .is_some_and(|until| tokio::time::Instant::now() > until)
    }

    /// The pause after a denial of `retry_after` at the limiter's time `now`.
    pub(crate) fn next(&mut self, now: Duration, retry_after: Duration) -> Duration {
        // Compared as the limiters see time (nanoseconds, saturating): a clock past
        // their range stands still for them even if its readings still grow.
        self.stall = if nanos(now) > nanos(self.last) {
            MIN_POLL
        } else {
            self.stall.saturating_mul(2)
        };
        self.last = now;
        retry_after.max(self.stall)
    }
}

/// The wait `n` nanoseconds stand for: `u64::MAX` (the "never" of [`Limiter::admit`](
/// super::Limiter::admit)) is `Duration::MAX`, which a rejection reports as no
/// `retry_after` at all.
#[inline]
pub(crate) fn wait(n: Nanos) -> Duration {
    if n == u64::MAX {
        Duration::MAX
    } else {
        Duration::from_nanos(n)
    }
}

/// One limiter's answer to one request.
///
/// `limit` is the limiter's **burst**: the total capacity, i.e. the most units that can be
/// admitted at one instant by a limiter that has been idle long enough. `remaining` is what
/// is left right after this decision, `reset` the time until the limiter is back to full
/// capacity, and `retry_after` (zero when allowed) the time until a request of the same
/// cost would be admitted.
///
/// ```
/// use resilient::ratelimit::{Decision, Gcra, Limiter, Rate};
/// use std::time::Duration;
///
/// let l = Gcra::limiter(Rate::per_second(10)).unwrap();
/// let d: Decision = l.try_acquire(Duration::ZERO, 4).unwrap();
/// assert!(d.allowed);
/// assert_eq!((d.limit, d.remaining), (10, 6));
/// assert_eq!(d.reset, Duration::from_millis(400));
/// assert_eq!(d.retry_after, Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was admitted (and its cost consumed).
    pub allowed: bool,
    /// The burst: total capacity in units.
    pub limit: u64,
    /// Units left after this decision.
    pub remaining: u64,
    /// Time until the limiter is full again.
    pub reset: Duration,
    /// Time until a request of the same cost would be admitted; zero when allowed. When a
    /// waiting acquisition reserved capacity, the time the caller must wait before using it.
    /// `Duration::MAX` means never (the cost exceeds the limit's capacity, e.g. after a
    /// runtime cut).
    pub retry_after: Duration,
}

impl Decision {
    /// The rejection a guard reports for this (denied) decision: its `retry_after`, or
    /// none if that is `Duration::MAX` (never).
    ///
    /// ```
    /// use resilient::Rejection;
    /// use resilient::ratelimit::Decision;
    /// use std::time::Duration;
    /// let d = Decision { allowed: false, limit: 1, remaining: 0,
    ///     reset: Duration::from_secs(1), retry_after: Duration::from_secs(1) };
    /// assert_eq!(d.rejection(), Rejection::RateLimited { retry_after: Some(Duration::from_secs(1)), info: None });
    /// let never = Decision { retry_after: Duration::MAX, ..d };
    /// assert_eq!(never.rejection(), Rejection::RateLimited { retry_after: None, info: None });
    /// ```
    pub fn rejection(&self) -> Rejection {
        Rejection::RateLimited {
            retry_after: (self.retry_after != Duration::MAX).then_some(self.retry_after),
            info: None,
        }
    }

    /// [`Decision::rejection`], carrying this decision and the limit's `policy` (what a
    /// server needs to write `RateLimit` headers from the error alone).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, Limiter, Rate};
    /// use std::time::Duration;
    /// let l = Gcra::limiter(Rate::per_minute(1)).unwrap();
    /// l.try_acquire(Duration::ZERO, 1).unwrap();
    /// let d = l.try_acquire(Duration::ZERO, 1).unwrap();
    /// let resilient::Rejection::RateLimited { info: Some(info), .. } = d.rejection_with(l.policy())
    /// else { unreachable!() };
    /// assert_eq!((info.remaining, info.quota), (0, 1));
    /// ```
    pub fn rejection_with(&self, policy: Policy) -> Rejection {
        Rejection::RateLimited {
            retry_after: (self.retry_after != Duration::MAX).then_some(self.retry_after),
            info: Some(Box::new(self.info(policy))),
        }
    }

    /// This decision and `policy` as the plain data a rejection carries.
    pub fn info(&self, policy: Policy) -> RateLimitInfo {
        RateLimitInfo::new(
            self.limit,
            self.remaining,
            self.reset,
            policy.quota,
            policy.window,
        )
    }

    /// This decision as a denial that can never be admitted (the cost exceeds the
    /// capacity): nothing consumed, `retry_after` `Duration::MAX`.
    pub(crate) fn never(self) -> Self {
        Self {
            allowed: false,
            retry_after: Duration::MAX,
            ..self
        }
    }
}

/// A rate: `count` units per `per`.
///
/// ```
/// use resilient::ratelimit::Rate;
/// use std::time::Duration;
/// let r = Rate::per_second(4);
/// assert_eq!(r.interval(), Duration::from_millis(250));
/// assert_eq!(Rate::new(10_000, Duration::from_secs(86_400)), Rate::per_day(10_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Units per period.
    pub count: u64,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// `count` units per `per`.
    pub const fn new(count: u64, per: Duration) -> Self {
        Self { count, per }
    }
    /// `count` per second.
    pub const fn per_second(count: u64) -> Self {
        Self::new(count, Duration::from_secs(1))
    }
    /// `count` per minute.
    pub const fn per_minute(count: u64) -> Self {
        Self::new(count, Duration::from_secs(60))
    }
    /// `count` per hour.
    pub const fn per_hour(count: u64) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }
    /// `count` per day.
    pub const fn per_day(count: u64) -> Self {
        Self::new(count, Duration::from_secs(86_400))
    }

    /// The time one unit takes to be replenished (`per / count`, at least 1 ns).
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    pub(crate) fn interval_nanos(&self) -> Nanos {
        (nanos(self.per) / self.count.max(1)).max(1)
    }

    /// Checks `count >= 1`, `per > 0` and that `per` fits in a `u64` of nanoseconds
    /// (about 584 years), naming `field` in the error.
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::new(field, "count must be at least 1"));
        }
        if self.per.is_zero() {
            return Err(ConfigError::new(field, "period must be longer than zero"));
        }
        if self.per.as_nanos() > u128::from(u64::MAX) {
            return Err(ConfigError::new(
                field,
                format!(
                    "period must be at most u64::MAX nanoseconds, about 584 years (got {:?})",
                    self.per
                ),
            ));
        }
        Ok(())
    }

    /// [`Rate::validate`], plus: at most one unit per nanosecond (limiters that space
    /// units in time cannot space them closer).
    pub(crate) fn validate_spacing(&self, field: &'static str) -> Result<(), ConfigError> {
        self.validate(field)?;
        if self.count > nanos(self.per) {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be at most one unit per nanosecond (got {} per {:?})",
                    self.count, self.per
                ),
            ));
        }
        Ok(())
    }

    /// [`Rate::validate_spacing`], plus: the interval `per / count` in whole nanoseconds
    /// must give the rate within 0.1% (a whole-nanosecond interval rounds the rate up).
    /// Returns the interval.
    pub(crate) fn validate_interval(&self, field: &'static str) -> Result<Nanos, ConfigError> {
        self.validate_spacing(field)?;
        let per = nanos(self.per);
        let t = per / self.count;
        let rest = per % self.count;
        // The interval admits `per / (t · count)` times the rate asked for.
        if u128::from(rest) * 1000 > u128::from(t) * u128::from(self.count) {
            return Err(ConfigError::new(
                field,
                format!(
                    "the interval per unit (period / count) must be a whole number of \
                     nanoseconds within 0.1% (got {} per {:?}: {t} ns leaves {rest} ns per \
                     period over)",
                    self.count, self.per
                ),
            ));
        }
        Ok(t)
    }
}

/// The quota a limiter enforces, as published in `RateLimit-Policy`: `quota` units per
/// `window`.
///
/// ```
/// use resilient::ratelimit::{Gcra, Limiter, Rate};
/// use std::time::Duration;
/// let l = Gcra::limiter(Rate::per_minute(100)).unwrap();
/// assert_eq!(l.policy().quota, 100);
/// assert_eq!(l.policy().window, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Units per window.
    pub quota: u64,
    /// The window.
    pub window: Duration,
}

/// A request whose cost exceeds what the limiter can ever admit at once: an error, not a
/// wait that would never end.
///
/// ```
/// use resilient::ratelimit::{CostError, Gcra, Limiter, Rate};
/// use std::time::Duration;
/// let l = Gcra::limiter(Rate::per_second(5)).unwrap();
/// assert_eq!(l.try_acquire(Duration::ZERO, 6), Err(CostError { cost: 6, max: 5 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostError {
    /// The request's cost.
    pub cost: u64,
    /// The most the limiter admits at once.
    pub max: u64,
}

impl fmt::Display for CostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request cost {} exceeds the limiter's capacity {}",
            self.cost, self.max
        )
    }
}

impl std::error::Error for CostError {}
