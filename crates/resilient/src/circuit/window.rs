//! Sliding windows of recent call outcomes: the last N calls, or the calls of the last
//! duration split into buckets.
//!
//! Both are lock-free on the recording path. The count window keeps one byte per call in
//! a ring and a packed running total updated with a single `fetch_add`; the time window
//! keeps per-bucket counters and only takes a short lock to recycle a bucket whose span has
//! passed (once per bucket span, not per call).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How recent calls are sampled to judge the failure and slow-call rates.
///
/// ```
/// use resilient::circuit::Window;
/// use std::time::Duration;
/// let last_100 = Window::count(100);
/// let last_minute = Window::time(Duration::from_secs(60));
/// let fine = Window::time_buckets(Duration::from_secs(60), 60);
/// assert_ne!(last_100, last_minute);
/// assert_ne!(last_minute, fine);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `size` recorded calls.
    Count {
        /// Calls kept.
        size: u32,
    },
    /// The calls of the last `duration`, in `buckets` equal slices; the oldest slice is
    /// dropped as a whole when it ages out.
    Time {
        /// The span of the window.
        duration: Duration,
        /// The number of slices (more is smoother, fewer is cheaper to sum).
        buckets: u32,
    },
}

impl Window {
    /// The largest count window.
    pub const MAX_COUNT: u32 = (1 << 20) - 1;

    /// A window of the last `size` calls.
    pub fn count(size: u32) -> Self {
        Window::Count { size }
    }

    /// A window of the last `duration`, in 10 buckets.
    pub fn time(duration: Duration) -> Self {
        Window::Time {
            duration,
            buckets: 10,
        }
    }

    /// A window of the last `duration`, in `buckets` buckets.
    pub fn time_buckets(duration: Duration, buckets: u32) -> Self {
        Window::Time { duration, buckets }
    }
}

/// Aggregated counts of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// One call's outcome as stored: bit 0 = a call, bit 1 = failed, bit 2 = slow.
#[inline]
pub(crate) fn code(failed: bool, slow: bool) -> u8 {
    1 | (u8::from(failed) << 1) | (u8::from(slow) << 2)
}

pub(crate) enum SlidingWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl SlidingWindow {
    pub(crate) fn new(w: Window) -> Self {
        match w {
            Window::Count { size } => SlidingWindow::Count(CountWindow::new(size as usize)),
            Window::Time { duration, buckets } => {
                SlidingWindow::Time(TimeWindow::new(duration, buckets as usize))
            }
        }
    }

    /// Records one call at clock time `now` (only read by the time window). Returns the new
    /// counts when they changed in a way that may trip the breaker.
    #[inline]
    pub(crate) fn record(&self, now: impl FnOnce() -> Duration, code: u8) -> Option<Counts> {
        match self {
            SlidingWindow::Count(w) => w.record(code),
            SlidingWindow::Time(w) => w.record(now(), code),
        }
    }

    pub(crate) fn counts(&self, now: Duration) -> Counts {
        match self {
            SlidingWindow::Count(w) => w.counts(),
            SlidingWindow::Time(w) => w.counts(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            SlidingWindow::Count(w) => w.reset(),
            SlidingWindow::Time(w) => w.reset(),
        }
    }
}

const FIELD: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD) - 1;

/// The packed contribution of one stored code: total, failures and slow in 21-bit fields.
#[inline]
fn contribution(code: u8) -> u64 {
    let c = u64::from(code);
    (c & 1) | (((c >> 1) & 1) << FIELD) | (((c >> 2) & 1) << (2 * FIELD))
}

#[inline]
fn sign_extend(x: u64) -> i64 {
    ((x << (64 - FIELD)) as i64) >> (64 - FIELD)
}

/// Decodes the packed sum. Fields are read as signed digits, so a field that is briefly
/// negative (a slot's removal applied before its insertion under heavy contention) does not
/// corrupt its neighbours; negatives read as zero.
fn decode(v: u64) -> Counts {
    let v = v as i64;
    let total = sign_extend(v as u64 & FIELD_MASK);
    let rest = (v - total) >> FIELD;
    let failures = sign_extend(rest as u64 & FIELD_MASK);
    let slow = (rest - failures) >> FIELD;
    Counts {
        total: total.max(0) as u64,
        failures: failures.max(0) as u64,
        slow: slow.max(0) as u64,
    }
}

/// The last N calls.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Calls recorded (wraps; the ring position is `head mod len`).
    head: AtomicU32,
    /// `u64::MAX / len + 1`: turns `mod len` into two multiplications (Lemire's fastmod).
    magic: u64,
    packed: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        let len = size.clamp(1, Window::MAX_COUNT as usize);
        Self {
            slots: (0..len).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU32::new(0),
            magic: (u64::MAX / len as u64).wrapping_add(1),
            packed: AtomicU64::new(0),
        }
    }

    /// `n mod len` without a division.
    #[inline]
    fn position(&self, n: u32) -> usize {
        let low = self.magic.wrapping_mul(u64::from(n));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn record(&self, code: u8) -> Option<Counts> {
        // When the head wraps at 2^32 one slot is skipped: harmless, the counts always
        // follow the slots' actual contents.
        let slot = &self.slots[self.position(self.head.fetch_add(1, Ordering::Relaxed))];
        // The steady state (a success replacing a success) needs no write at all.
        if slot.load(Ordering::Relaxed) == code {
            return None;
        }
        let old = slot.swap(code, Ordering::AcqRel);
        if old == code {
            return None;
        }
        let delta = contribution(code).wrapping_sub(contribution(old));
        let now = self
            .packed
            .fetch_add(delta, Ordering::AcqRel)
            .wrapping_add(delta);
        Some(decode(now))
    }

    fn counts(&self) -> Counts {
        decode(self.packed.load(Ordering::Acquire))
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            if old != 0 {
                self.packed.fetch_sub(contribution(old), Ordering::AcqRel);
            }
        }
    }
}

struct Bucket {
    /// The time slice (1-based; 0 = never used) this bucket holds.
    slice: AtomicU64,
    /// Calls (low 32 bits) and failures (high 32 bits).
    calls: AtomicU64,
    slow: AtomicU32,
}

/// The calls of the last duration, in buckets.
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    span_nanos: u64,
    /// The latest slice that saw a failure or a slow call (0 = none).
    last_bad: AtomicU64,
    recycle: Mutex<()>,
}

impl TimeWindow {
    pub(crate) fn new(duration: Duration, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        let span = (duration.as_nanos() / buckets as u128).max(1);
        Self {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    slice: AtomicU64::new(0),
                    calls: AtomicU64::new(0),
                    slow: AtomicU32::new(0),
                })
                .collect(),
            span_nanos: u64::try_from(span).unwrap_or(u64::MAX),
            last_bad: AtomicU64::new(0),
            recycle: Mutex::new(()),
        }
    }

    #[inline]
    fn slice_of(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos() / u128::from(self.span_nanos))
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn record(&self, now: Duration, code: u8) -> Option<Counts> {
        let s = self.slice_of(now);
        let n = self.buckets.len() as u64;
        let b = &self.buckets[(s % n) as usize];
        loop {
            let cur = b.slice.load(Ordering::Acquire);
            if cur == s {
                break;
            }
            if cur > s {
                // Recorded so late that its slice has already been recycled: drop it.
                return None;
            }
            let _guard = self.recycle.lock().unwrap_or_else(|e| e.into_inner());
            if b.slice.load(Ordering::Acquire) < s {
                b.calls.store(0, Ordering::Release);
                b.slow.store(0, Ordering::Release);
                b.slice.store(s, Ordering::Release);
            }
        }
        let failed = code & 2 != 0;
        let slow = code & 4 != 0;
        b.calls
            .fetch_add(1 | (u64::from(failed) << 32), Ordering::AcqRel);
        if slow {
            b.slow.fetch_add(1, Ordering::AcqRel);
        }
        if failed || slow {
            self.last_bad.fetch_max(s, Ordering::AcqRel);
        } else {
            let bad = self.last_bad.load(Ordering::Acquire);
            if bad == 0 || bad + n <= s {
                // No failure or slow call in the window: a success cannot trip anything.
                return None;
            }
        }
        Some(self.sum(s))
    }

    fn sum(&self, s: u64) -> Counts {
        let n = self.buckets.len() as u64;
        let mut c = Counts::default();
        for b in self.buckets.iter() {
            let sl = b.slice.load(Ordering::Acquire);
            if sl != 0 && sl <= s && sl + n > s {
                let calls = b.calls.load(Ordering::Acquire);
                c.total += calls & 0xFFFF_FFFF;
                c.failures += calls >> 32;
                c.slow += u64::from(b.slow.load(Ordering::Acquire));
            }
        }
        c
    }

    fn counts(&self, now: Duration) -> Counts {
        self.sum(self.slice_of(now))
    }

    fn reset(&self) {
        let _guard = self.recycle.lock().unwrap_or_else(|e| e.into_inner());
        for b in self.buckets.iter() {
            b.slice.store(0, Ordering::Release);
            b.calls.store(0, Ordering::Release);
            b.slow.store(0, Ordering::Release);
        }
        self.last_bad.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u8 = 1;
    const FAIL: u8 = 3;
    const SLOW_OK: u8 = 5;

    #[test]
    fn decode_handles_transiently_negative_fields() {
        let v = contribution(FAIL).wrapping_sub(contribution(SLOW_OK));
        // total 0, failures +1, slow -1
        assert_eq!(
            decode(v),
            Counts {
                total: 0,
                failures: 1,
                slow: 0
            }
        );
        let v = 0u64
            .wrapping_sub(contribution(FAIL))
            .wrapping_add(contribution(FAIL));
        assert_eq!(decode(v), Counts::default());
    }

    #[test]
    fn fastmod_matches_modulo() {
        for len in [1usize, 2, 3, 7, 10, 100, 1000, Window::MAX_COUNT as usize] {
            let w = CountWindow::new(len);
            for n in [0u32, 1, 2, 99, 100, 101, 12345, u32::MAX - 1, u32::MAX] {
                assert_eq!(w.position(n), n as usize % len, "{n} mod {len}");
            }
        }
    }

    #[test]
    fn count_window_evicts_oldest() {
        let w = CountWindow::new(3);
        assert_eq!(w.record(FAIL).unwrap().failures, 1);
        w.record(OK);
        w.record(SLOW_OK);
        assert_eq!(
            w.counts(),
            Counts {
                total: 3,
                failures: 1,
                slow: 1
            }
        );
        // evicts the failure
        let c = w.record(OK).unwrap();
        assert_eq!((c.total, c.failures, c.slow), (3, 0, 1));
        // evicts OK with OK: nothing changed
        assert!(w.record(OK).is_none());
        w.reset();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn time_window_drops_old_buckets() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let at = Duration::from_secs;
        assert!(w.record(at(0), OK).is_none());
        assert_eq!(w.record(at(1), FAIL).unwrap().total, 2);
        assert_eq!(w.counts(at(9)).total, 2);
        assert_eq!(w.counts(at(10)).total, 1); // slice of t=0 aged out
        assert_eq!(w.counts(at(11)).total, 0);
        // a success long after the last failure does not need a check
        assert!(w.record(at(30), OK).is_none());
        assert_eq!(w.counts(at(30)).total, 1);
        w.reset();
        assert_eq!(w.counts(at(30)), Counts::default());
    }
}
