//! Fixed window counter: at most `limit` units per aligned window `[k·W, (k+1)·W)`.
//!
//! Packed state: window index (high 32 bits, wrapping) and units used in it (low 32 bits).
//! At a window boundary up to `2·limit` units can pass within a short span; use a sliding
//! window to avoid that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter, Rescale};
use super::decision::{Decision, Nanos, Policy, Rate, nanos};
use crate::engine::error::ConfigError;

/// How far (in windows or periods) a stored state may be ahead of a caller's clock reading
/// and still be taken as a race with a later reading rather than as a wrapped index.
pub(crate) const RACE_WINDOWS: u32 = 1024;

/// Fixed-window configuration (limit and window, adjustable at runtime).
///
/// ```
/// use resilient::ratelimit::{FixedWindow, Limiter};
/// use std::time::Duration;
/// let l = FixedWindow::limiter(3, Duration::from_secs(10)).unwrap();
/// let d = l.try_acquire(Duration::from_secs(4), 3).unwrap();
/// assert!(d.allowed && d.remaining == 0);
/// assert_eq!(d.reset, Duration::from_secs(6));
/// assert!(l.try_acquire(Duration::from_secs(10), 3).unwrap().allowed);
/// ```
#[derive(Debug)]
pub struct FixedWindow {
    limit: AtomicU64,
    window: AtomicU64,
}

pub(crate) fn check_window(
    limit: u64,
    max: u64,
    window: Duration,
    field_limit: &'static str,
    field_window: &'static str,
) -> Result<(), ConfigError> {
    if limit == 0 || limit > max {
        return Err(ConfigError::new(
            field_limit,
            format!("must be between 1 and {max} (got {limit})"),
        ));
    }
    if window.is_zero() {
        return Err(ConfigError::new(field_window, "must be longer than zero"));
    }
    if window > MAX_WINDOW {
        return Err(ConfigError::new(
            field_window,
            format!("must be at most 100 years ({} s)", MAX_WINDOW.as_secs()),
        ));
    }
    Ok(())
}

/// The longest window the window algorithms ([`FixedWindow`],
/// [`SlidingWindowCounter`](super::SlidingWindowCounter),
/// [`SlidingWindowLog`](super::SlidingWindowLog)) accept: 100 years (365-day years). Longer
/// ones are configuration errors; this bound keeps every time computed from a window
/// (such as two windows for a sliding counter's reset) within a `u64` of nanoseconds.
///
/// ```
/// use resilient::ratelimit::{FixedWindow, MAX_WINDOW};
/// use std::time::Duration;
/// assert!(FixedWindow::new(1, MAX_WINDOW).is_ok());
/// let e = FixedWindow::new(1, Duration::MAX).unwrap_err();
/// assert_eq!(e.field(), "fixed_window.window");
/// ```
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The limit a window algorithm's `set_rate(rate, burst)` asks for: windows cannot change
/// length at runtime, and a window's burst is its limit.
pub(crate) fn window_limit(
    rate: Rate,
    burst: u64,
    window: Nanos,
    field_limit: &'static str,
    field_window: &'static str,
) -> Result<u64, ConfigError> {
    if nanos(rate.per) != window {
        return Err(ConfigError::new(
            field_window,
            "cannot change at runtime (set_rate needs rate.per equal to the window)",
        ));
    }
    if burst != rate.count {
        return Err(ConfigError::new(
            field_limit,
            "a window's burst is its limit: set_rate needs burst equal to rate.count",
        ));
    }
    Ok(burst)
}

impl FixedWindow {
    /// `limit` units per `window`.
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        check_window(
            limit,
            u64::from(u32::MAX),
            window,
            "fixed_window.limit",
            "fixed_window.window",
        )?;
        Ok(Self {
            limit: AtomicU64::new(limit),
            window: AtomicU64::new(nanos(window)),
        })
    }

    /// A lock-free limiter.
    pub fn limiter(limit: u64, window: Duration) -> Result<AtomicLimiter<Self>, ConfigError> {
        Self::new(limit, window).map(AtomicLimiter::new)
    }

    /// Changes the limit at runtime; units counted in the current window stay counted.
    pub fn set_limit(&self, limit: u64) -> Result<(), ConfigError> {
        check_window(
            limit,
            u64::from(u32::MAX),
            Duration::from_nanos(1),
            "fixed_window.limit",
            "fixed_window.window",
        )?;
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// The window to count in: `now`'s, or the stored one if a racing caller with a later
    /// clock reading already moved there (time never goes backwards for the state).
    #[inline]
    fn index(state: u64, index: u64) -> u64 {
        let ahead = ((state >> 32) as u32).wrapping_sub(index as u32);
        if ahead != 0 && ahead <= RACE_WINDOWS && state & 0xFFFF_FFFF != 0 {
            index.saturating_add(u64::from(ahead))
        } else {
            index
        }
    }

    #[inline]
    fn used(state: u64, index: u64) -> u64 {
        if (state >> 32) as u32 == index as u32 {
            state & 0xFFFF_FFFF
        } else {
            0
        }
    }
}

impl Algorithm for FixedWindow {
    #[inline]
    fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let limit = self.limit.load(Ordering::Relaxed);
        let w = self.window.load(Ordering::Relaxed);
        let index = Self::index(state, now / w);
        let used = Self::used(state, index);
        let to_end = index
            .saturating_add(1)
            .saturating_mul(w)
            .saturating_sub(now);
        if used.saturating_add(cost) <= limit {
            let u = used + cost;
            let next = ((index as u32 as u64) << 32) | u;
            let d = Decision {
                allowed: true,
                limit,
                remaining: limit - u,
                reset: Duration::from_nanos(if u == 0 { 0 } else { to_end }),
                retry_after: Duration::ZERO,
            };
            (next, d)
        } else {
            let d = Decision {
                allowed: false,
                limit,
                remaining: limit.saturating_sub(used),
                reset: Duration::from_nanos(to_end),
                retry_after: Duration::from_nanos(to_end),
            };
            (state, d)
        }
    }

    fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64 {
        let index = Self::index(state, now / self.window.load(Ordering::Relaxed));
        let used = Self::used(state, index);
        ((index as u32 as u64) << 32) | used.saturating_sub(cost)
    }

    /// Units are interchangeable within a window (a fixed window never reserves): gives
    /// `cost` back while the window that counted them is the stored one.
    fn undo(&self, state: u64, _before: u64, after: u64, now: Nanos, cost: u64) -> Option<u64> {
        ((state >> 32) == (after >> 32)).then(|| self.refund(state, now, cost))
    }

    fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos {
        let w = self.window.load(Ordering::Relaxed);
        let index = Self::index(state, now / w);
        if Self::used(state, index) == 0 {
            0
        } else {
            index
                .saturating_add(1)
                .saturating_mul(w)
                .saturating_sub(now)
        }
    }

    fn max_cost(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// [`FixedWindow::set_limit`] to `rate.count`, which must equal `burst`, with
    /// `rate.per` equal to the window.
    fn set_rate(&self, _now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
        let limit = window_limit(
            rate,
            burst,
            self.window.load(Ordering::Relaxed),
            "fixed_window.limit",
            "fixed_window.window",
        )?;
        self.set_limit(limit).map(|()| Rescale::NONE)
    }

    fn policy(&self) -> Policy {
        Policy {
            quota: self.limit.load(Ordering::Relaxed),
            window: Duration::from_nanos(self.window.load(Ordering::Relaxed)),
        }
    }
}
