//! Sliding window counter (Cloudflare's approximation): the count of the previous window,
//! weighted by how much of it still overlaps the sliding window, plus the current count.
//!
//! A request of cost `c` at offset `e` into the current window is admitted iff
//! `prev·(W - e)/W + cur + c <= limit` (compared exactly, in integers). This assumes the
//! previous window's requests were spread evenly; see the [module docs](super) for its
//! measured error against an exact sliding log.
//!
//! Packed state: window index (24 bits, wrapping), previous count (20 bits), current count
//! (20 bits), so `limit` is at most 1,048,575 per window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::algorithm::{Algorithm, AtomicLimiter, Rescale};
use super::decision::{Decision, Nanos, Policy, Rate, nanos};
use super::fixed_window::{check_window, window_limit};
use crate::engine::error::ConfigError;

const BITS: u32 = 20;
const MASK: u64 = (1 << BITS) - 1;
const IDX_MASK: u64 = (1 << 24) - 1;

/// The largest limit a sliding window counter supports.
pub const MAX_SLIDING_LIMIT: u64 = MASK;

/// Sliding-window-counter configuration.
///
/// ```
/// use resilient::ratelimit::{Limiter, SlidingWindowCounter};
/// use std::time::Duration;
/// let l = SlidingWindowCounter::limiter(10, Duration::from_secs(60)).unwrap();
/// assert!(l.try_acquire(Duration::from_secs(0), 10).unwrap().allowed);
/// // Half-way through the next window, half of the previous window still counts.
/// let d = l.try_acquire(Duration::from_secs(90), 5).unwrap();
/// assert!(d.allowed && d.remaining == 0);
/// ```
#[derive(Debug)]
pub struct SlidingWindowCounter {
    limit: AtomicU64,
    window: AtomicU64,
}

struct Rolled {
    index: u64,
    offset: u64,
    prev: u64,
    cur: u64,
}

impl SlidingWindowCounter {
    /// `limit` units in any window of length `window` (approximately).
    pub fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        check_window(
            limit,
            MAX_SLIDING_LIMIT,
            window,
            "sliding_window_counter.limit",
            "sliding_window_counter.window",
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

    /// Changes the limit at runtime; counts are kept.
    pub fn set_limit(&self, limit: u64) -> Result<(), ConfigError> {
        check_window(
            limit,
            MAX_SLIDING_LIMIT,
            Duration::from_nanos(1),
            "sliding_window_counter.limit",
            "sliding_window_counter.window",
        )?;
        self.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    fn roll(state: u64, now: Nanos, w: u64) -> Rolled {
        let mut index = now / w;
        let mut offset = now - index * w;
        let stored = state >> (2 * BITS);
        let ahead = stored.wrapping_sub(index) & IDX_MASK;
        if ahead != 0
            && ahead <= u64::from(super::fixed_window::RACE_WINDOWS)
            && state & ((1 << (2 * BITS)) - 1) != 0
        {
            // A racing caller with a later clock reading already rolled the window:
            // count in its window, from that window's start (the conservative weight).
            index = index.saturating_add(ahead);
            offset = 0;
        }
        let (prev, cur) = if stored == index & IDX_MASK {
            ((state >> BITS) & MASK, state & MASK)
        } else if (stored + 1) & IDX_MASK == index & IDX_MASK {
            (state & MASK, 0)
        } else {
            (0, 0)
        };
        Rolled {
            index,
            offset,
            prev,
            cur,
        }
    }

    fn pack(r: &Rolled) -> u64 {
        ((r.index & IDX_MASK) << (2 * BITS)) | (r.prev << BITS) | r.cur
    }

    /// Time from offset `e` until `prev·(W - e') <= room·W`, as `e' - e`.
    fn until(prev: u64, room: u64, e: u64, w: u64) -> u64 {
        if prev == 0 {
            return 0;
        }
        let keep = (u128::from(room) * u128::from(w) / u128::from(prev)).min(u128::from(w)) as u64;
        (w - keep).saturating_sub(e)
    }

    fn reset(r: &Rolled, w: u64) -> u64 {
        // `w` is at most `MAX_WINDOW` (checked at build), so `2·w` fits; saturate anyway.
        if r.cur > 0 {
            w.saturating_mul(2).saturating_sub(r.offset)
        } else if r.prev > 0 {
            w.saturating_sub(r.offset)
        } else {
            0
        }
    }
}

impl Algorithm for SlidingWindowCounter {
    #[inline]
    fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision) {
        let limit = self.limit.load(Ordering::Relaxed);
        let w = self.window.load(Ordering::Relaxed);
        let mut r = Self::roll(state, now, w);
        let weighted = u128::from(r.prev) * u128::from(w - r.offset);
        let wide = u128::from(w);
        let used = weighted + u128::from(r.cur) * wide;
        if used + u128::from(cost) * wide <= u128::from(limit) * wide {
            r.cur += cost;
            let used = used + u128::from(cost) * wide;
            let d = Decision {
                allowed: true,
                limit,
                remaining: ((u128::from(limit) * wide - used) / wide) as u64,
                reset: Duration::from_nanos(Self::reset(&r, w)),
                retry_after: Duration::ZERO,
            };
            (Self::pack(&r), d)
        } else {
            let retry = if r.cur.saturating_add(cost) <= limit {
                Self::until(r.prev, limit - r.cur - cost, r.offset, w)
            } else {
                (w - r.offset).saturating_add(Self::until(r.cur, limit.saturating_sub(cost), 0, w))
            };
            let d = Decision {
                allowed: false,
                limit,
                remaining: ((u128::from(limit) * wide).saturating_sub(used) / wide) as u64,
                reset: Duration::from_nanos(Self::reset(&r, w)),
                retry_after: Duration::from_nanos(retry.max(1)),
            };
            (state, d)
        }
    }

    fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64 {
        let mut r = Self::roll(state, now, self.window.load(Ordering::Relaxed));
        r.cur = r.cur.saturating_sub(cost);
        Self::pack(&r)
    }

    /// Units are interchangeable within a window (a sliding counter never reserves):
    /// gives `cost` back while the window that counted them is the stored one.
    fn undo(&self, state: u64, _before: u64, after: u64, now: Nanos, cost: u64) -> Option<u64> {
        ((state >> (2 * BITS)) == (after >> (2 * BITS))).then(|| self.refund(state, now, cost))
    }

    fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos {
        let w = self.window.load(Ordering::Relaxed);
        Self::reset(&Self::roll(state, now, w), w)
    }

    fn max_cost(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// [`SlidingWindowCounter::set_limit`] to `rate.count`, which must equal `burst`, with
    /// `rate.per` equal to the window.
    fn set_rate(&self, _now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
        let limit = window_limit(
            rate,
            burst,
            self.window.load(Ordering::Relaxed),
            "sliding_window_counter.limit",
            "sliding_window_counter.window",
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
