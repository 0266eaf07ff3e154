//! Sliding windows of recent call outcomes: the last N calls, or the calls of the last
//! duration split into buckets.
//!
//! Both keep running totals, so judging a window costs the same whatever its size. The
//! count window keeps one byte per call in a ring and a packed total updated with a single
//! `fetch_add` (and a success into a ring of successes, a healthy breaker's every call,
//! writes nothing); the time window keeps per-bucket counters (each tagged with its time slice
//! in the same atomic word) and only takes a short lock to recycle the buckets whose slice
//! has passed (once per slice, not per call).

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
        /// The number of slices (more is smoother; the cost per call does not depend on
        /// it, but each bucket counts at most `(2^31 - 1) / buckets` calls, capped at
        /// 16,777,215).
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

/// The stored code of a call that neither failed nor was slow.
const OK_CODE: u8 = 1;

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
    /// `packed` when every slot holds a plain success (`len` calls, none failed or slow).
    packed_all_ok: u64,
}

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        let len = size.clamp(1, Window::MAX_COUNT as usize);
        Self {
            slots: (0..len).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU32::new(0),
            magic: (u64::MAX / len as u64).wrapping_add(1),
            packed: AtomicU64::new(0),
            packed_all_ok: contribution(OK_CODE) * len as u64,
        }
    }

    /// `n mod len` without a division.
    #[inline]
    fn position(&self, n: u32) -> usize {
        let low = self.magic.wrapping_mul(u64::from(n));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    /// Whether every slot holds a plain success: then recording one changes nothing.
    #[inline]
    pub(crate) fn all_ok(&self) -> bool {
        self.packed.load(Ordering::Relaxed) == self.packed_all_ok
    }

    #[inline]
    fn record(&self, code: u8) -> Option<Counts> {
        // A success into a ring of successes changes nothing, wherever it lands: the ring is
        // the same under any rotation, so the head need not move (no read-modify-write on
        // the hot path of a healthy breaker). A concurrent call's record is then ordered
        // after this one. The packed totals identify such a ring exactly: their fields are
        // far smaller than a field's width, so `packed_all_ok` decodes only as `len` successes.
        if code == OK_CODE && self.all_ok() {
            return None;
        }
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

/// Bucket words: the time slice's tag in the top 16 bits, so that a count and the slice it
/// belongs to change together in one compare-exchange.
const TAG_SHIFT: u32 = 48;
const TAG_MASK: u64 = (1 << 16) - 1;
/// In the calls word: calls (bits 0..24) and failures (bits 24..48).
const BUCKET_FIELD: u32 = 24;
const BUCKET_MASK: u64 = (1 << BUCKET_FIELD) - 1;
/// In the slow word: slow calls (bits 0..48).
const SLOW_MASK: u64 = (1 << TAG_SHIFT) - 1;

struct Bucket {
    /// Tag, failures and calls of the slice this bucket holds.
    calls: AtomicU64,
    /// Tag and slow calls of the slice this bucket holds.
    slow: AtomicU64,
}

/// The calls of the last duration, in buckets, with running totals.
///
/// Recording is one compare-exchange on the bucket's word (tag and counts together, so a
/// call that stalled while its bucket was recycled for a newer slice is dropped instead of
/// landing in the newer slice) and one `fetch_add` on the totals: judging the window costs
/// the same with 10 buckets or 10,000. The first call of each new slice takes a lock to
/// recycle the buckets whose slices aged out, subtracting their counts from the totals.
///
/// A bucket counts at most `min(2^24 - 1, (2^31 - 1) / buckets)` calls (16.7 million up to
/// 128 buckets); calls beyond that in the same slice are not counted.
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    span_nanos: u64,
    /// Calls one bucket may count.
    bucket_cap: u64,
    /// The newest slice the buckets were advanced to (0 = none: at first and after a
    /// reset): every slice in `(head - buckets, head]` has its bucket tagged for it.
    head: AtomicU64,
    /// The sum over all buckets: calls (low 32 bits) and failures (high 32 bits), as
    /// signed digits (briefly negative while a recycle overtakes a recording).
    totals: AtomicU64,
    /// The sum of slow calls over all buckets (two's complement, briefly negative likewise).
    slow_total: AtomicU64,
    advancing: Mutex<()>,
}

impl TimeWindow {
    pub(crate) fn new(duration: Duration, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        let span = (duration.as_nanos() / buckets as u128).max(1);
        Self {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    calls: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
            span_nanos: u64::try_from(span).unwrap_or(u64::MAX),
            bucket_cap: BUCKET_MASK.min((i32::MAX as u64) / buckets as u64),
            head: AtomicU64::new(0),
            totals: AtomicU64::new(0),
            slow_total: AtomicU64::new(0),
            advancing: Mutex::new(()),
        }
    }

    #[inline]
    fn slice_of(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos() / u128::from(self.span_nanos))
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The bucket of slice `s` and the tag it carries while holding `s`.
    #[inline]
    fn bucket(&self, s: u64) -> (&Bucket, u64) {
        let n = self.buckets.len() as u64;
        (
            &self.buckets[(s % n) as usize],
            ((s / n) & TAG_MASK) << TAG_SHIFT,
        )
    }

    fn record(&self, now: Duration, code: u8) -> Option<Counts> {
        let s = self.slice_of(now);
        if s > self.head.load(Ordering::Acquire) {
            self.advance(s);
        }
        let (b, tag) = self.bucket(s);
        let failed = code & 2 != 0;
        let mut cur = b.calls.load(Ordering::Acquire);
        loop {
            #[cfg(test)]
            tests::paused_here(self, tests::Site::Calls);
            if cur & !SLOW_MASK != tag {
                // Recorded so late that its slice has been recycled: drop it.
                return None;
            }
            if cur & BUCKET_MASK >= self.bucket_cap {
                return None;
            }
            let next = cur + (1 | (u64::from(failed) << BUCKET_FIELD));
            match b
                .calls
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let delta = 1 | (u64::from(failed) << 32);
        let totals = self
            .totals
            .fetch_add(delta, Ordering::AcqRel)
            .wrapping_add(delta);
        let mut slow_total = None;
        if code & 4 != 0 {
            #[cfg(test)]
            tests::paused_here(self, tests::Site::Slow);
            let mut cur = b.slow.load(Ordering::Acquire);
            // A mismatch: the bucket was recycled since the call was counted, which takes
            // the call out of the totals too.
            while cur & !SLOW_MASK == tag {
                match b.slow.compare_exchange_weak(
                    cur,
                    cur + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        slow_total = Some(self.slow_total.fetch_add(1, Ordering::AcqRel) + 1);
                        break;
                    }
                    Err(actual) => cur = actual,
                }
            }
        }
        let slow_total = slow_total.unwrap_or_else(|| self.slow_total.load(Ordering::Acquire));
        Some(decode_totals(totals, slow_total))
    }

    /// Recycles the buckets of the slices after `head` up to `s` (at most all of them)
    /// and moves `head` to `s`.
    #[cold]
    fn advance(&self, s: u64) {
        let _guard = self.advancing.lock().unwrap_or_else(|e| e.into_inner());
        let head = self.head.load(Ordering::Acquire);
        if s <= head {
            return;
        }
        let n = self.buckets.len() as u64;
        for t in head.max(s.saturating_sub(n)) + 1..=s {
            let (b, tag) = self.bucket(t);
            let old = b.calls.swap(tag, Ordering::AcqRel);
            self.subtract(old);
            let old = b.slow.swap(tag, Ordering::AcqRel);
            self.subtract_slow(old);
        }
        self.head.store(s, Ordering::Release);
    }

    /// Takes a bucket's removed calls word out of the totals.
    #[inline]
    fn subtract(&self, word: u64) {
        let calls = word & BUCKET_MASK;
        if calls != 0 {
            let failures = (word >> BUCKET_FIELD) & BUCKET_MASK;
            self.totals
                .fetch_sub(calls | (failures << 32), Ordering::AcqRel);
        }
    }

    #[inline]
    fn subtract_slow(&self, word: u64) {
        let slow = word & SLOW_MASK;
        if slow != 0 {
            self.slow_total.fetch_sub(slow, Ordering::AcqRel);
        }
    }

    fn counts(&self, now: Duration) -> Counts {
        let s = self.slice_of(now);
        if s > self.head.load(Ordering::Acquire) {
            self.advance(s);
        }
        decode_totals(
            self.totals.load(Ordering::Acquire),
            self.slow_total.load(Ordering::Acquire),
        )
    }

    /// Empties every bucket and changes its tag, as recycling does: a recording in flight
    /// (its call counted before the reset, its slow count not yet) finds its bucket changed
    /// and drops the rest, instead of counting a slow call the totals no longer hold. The
    /// next recording or reading tags the buckets for the window again (`head` is back to
    /// none).
    fn reset(&self) {
        let _guard = self.advancing.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.buckets.len() as u64;
        let head = self.head.load(Ordering::Acquire);
        // A tag no slice within 2^15 tag periods of `head` carries: half the tag space
        // away from the window's.
        let none = ((head / n).wrapping_add(1 << 15) & TAG_MASK) << TAG_SHIFT;
        for b in self.buckets.iter() {
            let old = b.calls.swap(none, Ordering::AcqRel);
            self.subtract(old);
            let old = b.slow.swap(none, Ordering::AcqRel);
            self.subtract_slow(old);
        }
        self.head.store(0, Ordering::Release);
    }
}

/// Decodes the time window's totals (signed digits; negatives read as zero).
fn decode_totals(totals: u64, slow: u64) -> Counts {
    let calls = i64::from(totals as u32 as i32);
    let failures = (totals as i64).wrapping_sub(calls) >> 32;
    Counts {
        total: calls.max(0) as u64,
        failures: failures.max(0) as u64,
        slow: (slow as i64).max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a recording thread can be paused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Site {
        /// Before the compare-exchange counting the call in its bucket.
        Calls,
        /// After the call was counted, before the one counting it as slow.
        Slow,
    }

    type Hook = (Site, fn(&TimeWindow));

    std::thread_local! {
        static PAUSE: std::cell::Cell<Option<Hook>> = const { std::cell::Cell::new(None) };
    }

    fn pause_at(site: Site, f: fn(&TimeWindow)) {
        PAUSE.with(|p| p.set(Some((site, f))));
    }

    /// Runs the hook set for this thread at `site` (once), where a recording thread could
    /// stall.
    pub(super) fn paused_here(w: &TimeWindow, site: Site) {
        match PAUSE.with(|p| p.take()) {
            Some((at, f)) if at == site => f(w),
            other => PAUSE.with(|p| p.set(other)),
        }
    }

    #[test]
    fn a_late_call_never_lands_in_a_recycled_bucket() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let at = |s: u64| Duration::from_secs(100_000 + s);
        // While a call of t=5 stalls after finding its bucket, another thread recycles
        // that bucket for t=15 (the same bucket, ten slices later).
        pause_at(Site::Calls, |w| {
            w.record(Duration::from_secs(100_015), OK);
        });
        w.record(at(5), FAIL);
        let c = w.counts(at(15));
        assert_eq!(
            (c.total, c.failures),
            (1, 0),
            "the stale failure was dropped"
        );
    }

    /// A reset racing a slow call's recording (after its call was counted, before it was
    /// counted as slow) takes the call out of the totals and never lets the slow count
    /// land: reset used to keep the buckets' tags, so the slow count still matched and
    /// the window read one slow call out of none.
    #[test]
    fn a_reset_racing_a_slow_call_never_counts_it_slow_alone() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let at = Duration::from_secs(86_400);
        w.record(at, OK);
        pause_at(Site::Slow, |w| w.reset());
        w.record(at, SLOW_OK);
        let c = w.counts(at);
        assert!(c.slow <= c.total, "{c:?}");
        assert_eq!(c, Counts::default());
        // Recording goes on after the reset.
        assert_eq!(
            w.record(at, SLOW_OK),
            Some(Counts {
                total: 1,
                failures: 0,
                slow: 1
            })
        );
        assert_eq!(w.counts(at).total, 1);
    }

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
    fn a_success_into_a_ring_of_successes_leaves_the_head_alone() {
        assert_eq!(code(false, false), OK_CODE);
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(OK);
        }
        let head = w.head.load(Ordering::Relaxed);
        assert!(w.record(OK).is_none());
        assert_eq!(w.head.load(Ordering::Relaxed), head, "no read-modify-write");
        // a failure still lands, and ages out after exactly `len` more calls
        assert_eq!(w.record(FAIL).unwrap().failures, 1);
        for _ in 0..3 {
            assert!(w.record(OK).is_none());
            assert_eq!(w.counts().failures, 1);
        }
        assert_eq!(w.record(OK).unwrap().failures, 0);
        assert_eq!(w.counts().total, 4);
    }

    #[test]
    fn concurrent_records_leave_the_totals_equal_to_the_slots() {
        // Threads recording mostly successes (so that the ring-of-successes shortcut is
        // taken between their failures): once they are done, the packed totals are the sum
        // of what the slots hold.
        let w = std::sync::Arc::new(CountWindow::new(7));
        for _ in 0..7 {
            w.record(OK);
        }
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let code = match x % 16 {
                            0 => FAIL,
                            1 => SLOW_OK,
                            _ => OK,
                        };
                        w.record(code);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let sum = w.slots.iter().fold(0u64, |sum, slot| {
            sum.wrapping_add(contribution(slot.load(Ordering::Relaxed)))
        });
        assert_eq!(w.packed.load(Ordering::Relaxed), sum);
        assert_eq!(w.counts().total, 7);
    }

    proptest::proptest! {
        /// Whatever the sequence, a count window's totals are those of its last `len`
        /// calls (the ring-of-successes shortcut included).
        #[test]
        fn count_window_counts_the_last_n_calls(
            len in 1usize..9,
            calls in proptest::collection::vec(0u8..4, 0..64),
        ) {
            let w = CountWindow::new(len);
            let mut model = std::collections::VecDeque::new();
            for c in calls {
                let code = code(c & 1 == 1, c & 2 == 2);
                w.record(code);
                model.push_back(code);
                if model.len() > len {
                    model.pop_front();
                }
                let want = Counts {
                    total: model.len() as u64,
                    failures: model.iter().filter(|&&m| m & 2 != 0).count() as u64,
                    slow: model.iter().filter(|&&m| m & 4 != 0).count() as u64,
                };
                proptest::prop_assert_eq!(w.counts(), want);
            }
        }
    }

    #[test]
    fn time_window_drops_old_buckets() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let at = |s: u64| Duration::from_secs(86_400 + s);
        assert_eq!(w.record(at(0), OK).unwrap().total, 1);
        assert_eq!(w.record(at(1), FAIL).unwrap().total, 2);
        assert_eq!(w.counts(at(9)).total, 2);
        assert_eq!(w.counts(at(10)).total, 1); // slice of t=0 aged out
        assert_eq!(w.counts(at(11)).total, 0);
        assert_eq!(w.record(at(30), OK).unwrap().total, 1);
        assert_eq!(w.counts(at(30)).total, 1);
        w.reset();
        assert_eq!(w.counts(at(30)), Counts::default());
        assert_eq!(w.record(at(30), SLOW_OK).unwrap().slow, 1);
    }

    #[test]
    fn time_window_totals_follow_the_buckets() {
        let w = TimeWindow::new(Duration::from_secs(10), 5);
        let t0 = 1_000_000_000u64; // far from zero, like a production clock
        let at = |ms: u64| Duration::from_millis(t0 + ms);
        let mut model: Vec<(u64, u8)> = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut now = 0;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // mostly small steps, sometimes an idle gap of up to a minute
            now += if x.is_multiple_of(50) {
                x % 60_000
            } else {
                x % 700
            };
            let code = [OK, FAIL, SLOW_OK, 7][(x >> 20) as usize % 4];
            let got = w.record(at(now), code).unwrap();
            model.push((now, code));
            let s = w.slice_of(at(now));
            let live: Vec<u8> = model
                .iter()
                .filter(|(t, _)| w.slice_of(at(*t)) + 5 > s)
                .map(|m| m.1)
                .collect();
            let want = Counts {
                total: live.len() as u64,
                failures: live.iter().filter(|c| *c & 2 != 0).count() as u64,
                slow: live.iter().filter(|c| *c & 4 != 0).count() as u64,
            };
            assert_eq!(got, want, "at {now} ms");
            assert_eq!(w.counts(at(now)), want);
        }
    }

    #[test]
    fn a_full_bucket_stops_counting() {
        let w = TimeWindow::new(Duration::from_secs(10), 10);
        let cap = w.bucket_cap;
        assert_eq!(cap, BUCKET_MASK);
        let at = Duration::from_secs(86_400);
        let (b, tag) = {
            w.record(at, OK);
            w.bucket(w.slice_of(at))
        };
        b.calls.store(tag | (cap - 1), Ordering::Release);
        w.totals.store(cap - 1, Ordering::Release);
        assert_eq!(w.record(at, FAIL).unwrap().total, cap);
        assert!(w.record(at, FAIL).is_none(), "full");
        assert_eq!(w.counts(at).total, cap);
        assert_eq!(
            TimeWindow::new(Duration::from_secs(10), 10_000).bucket_cap,
            214_748
        );
    }
}
