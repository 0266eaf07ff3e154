//! Retry budgets: a limit on retries shared by all calls of a pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::error::ConfigError;

/// The reserve's unit: milli-retries.
const SCALE: i64 = 1_000;
/// The smallest ratio accepted above zero: the window's unit is at most a billionth of a
/// retry (more would leave too few whole retries in a bucket's 40-bit balance).
const MIN_RATIO: f64 = 1e-6;
/// The window counts deposits in a unit at least this many times smaller than a deposit,
/// which bounds the relative error of the stored ratio to half its inverse (0.05%).
const DEPOSIT_UNITS: f64 = 1_000.0;

/// A budget of retries shared by every call of a pipeline, in the manner of Finagle's
/// `RetryBudget` and gRPC retry throttling: each call deposits `ratio` of a token, each retry
/// withdraws one, and a small reserve of `min_per_sec` retries per second is always
/// available. A failing dependency then sees at most about `ratio` extra load, never a
/// retry storm.
///
/// Deposits expire: they are kept in a ring of time slices covering the budget's `ttl`
/// (like Finagle's windowed adder), and a withdrawal is recorded in the same ring. A retry
/// is allowed while the deposits of the last `ttl` exceed its withdrawals, so within any
/// `ttl` the retries number at most `ratio` times the calls of that `ttl`, plus the
/// reserve — however long the service was healthy before an outage.
///
/// The ratio is stored to within 0.05% of its value (the window counts in a unit of at
/// least a thousandth of a deposit): `N` calls buy `ratio * N` retries, rounded down, give
/// or take that error. A ratio above zero but below 0.000001 cannot be stored that way and
/// is rejected by [`RetryBudgetBuilder::build`]. The bound over time is exact to
/// one slice, a tenth of the `ttl`: a withdrawal takes its token with a compare-and-swap on
/// its slice's balance, checked against the window's balance, so concurrent withdrawals
/// never overdraw it, except ones racing across a slice boundary (which each see the other
/// slice's balance before the other's withdrawal: one token too many per extra slice, in
/// practice at most one). A deposit or withdrawal made with a clock reading so late that
/// its slice has left the window is not recorded.
///
/// ```
/// use resilient::{ManualClock, RetryBudget};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let budget = RetryBudget::builder(0.1)
///     .min_per_sec(0)
///     .ttl(Duration::from_secs(10))
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw()); // 20 calls at 10% buy 2 retries
///
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// clock.advance(Duration::from_secs(11));
/// assert_eq!(budget.available(), 0); // deposits older than the ttl are gone
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// A deposit, in window units.
    deposit_units: i64,
    /// One retry, in window units (a power of ten, at least [`SCALE`]).
    retry_units: i64,
    window: Window,
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

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a call (its first attempt): deposits `ratio` of a token, which expires after
    /// the budget's `ttl`.
    pub fn deposit(&self) {
        if self.deposit_units == 0 {
            return;
        }
        let slice = self.window.slice(self.now_nanos());
        self.window.add(slice, self.deposit_units);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let now = self.now_nanos();
        if self.window.take(self.window.slice(now), self.retry_units) {
            return true;
        }
        self.refill_reserve(now);
        self.reserve
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |b| {
                (b >= SCALE).then_some(b - SCALE)
            })
            .is_ok()
    }

    /// Retries currently available (live deposits plus reserve), rounded down.
    pub fn available(&self) -> u64 {
        let now = self.now_nanos();
        self.refill_reserve(now);
        // each counted whole, as withdrawals take a whole retry from one or the other
        let window = self.window.sum(self.window.slice(now)).max(0) / self.retry_units;
        let reserve = self.reserve.load(Ordering::Acquire).max(0) / SCALE;
        (window + reserve) as u64
    }

    fn refill_reserve(&self, now: u64) {
        if self.reserve_rate == 0 {
            return;
        }
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

/// Slices in the window: each covers a tenth of the ttl.
const SLICES: u64 = 10;
/// A bucket packs the slice it counts for (its low `TAG_BITS`) and a signed balance of
/// milli-tokens (`VALUE_BITS`, saturating) into one word, so that it is reset and updated
/// in one compare-and-swap, without locks.
const VALUE_BITS: u32 = 40;
const TAG_BITS: u32 = 64 - VALUE_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const VALUE_MAX: i64 = (1 << (VALUE_BITS - 1)) - 1;
const VALUE_MIN: i64 = -(1 << (VALUE_BITS - 1));

fn pack(slice: u64, value: i64) -> u64 {
    ((slice & TAG_MASK) << VALUE_BITS) | (value.clamp(VALUE_MIN, VALUE_MAX) as u64 & VALUE_MASK)
}

fn unpack(word: u64) -> (u64, i64) {
    // the value sign-extended from its 40 bits
    (word >> VALUE_BITS, ((word << TAG_BITS) as i64) >> TAG_BITS)
}

/// A ring of per-slice balances covering the last ttl, on the budget's clock.
#[derive(Debug)]
struct Window {
    slice_nanos: u64,
    buckets: [AtomicU64; SLICES as usize],
    /// The latest slice a writer has come to (moved before the writer touches a bucket):
    /// when it is a whole window old, every bucket is stale (whatever its tag, which only
    /// holds the slice's low bits). What remains possible is a bucket left untouched for a
    /// multiple of 2^24 slices (19 days at the least) while others were written, read as
    /// live: a few retries too many, once.
    latest: AtomicU64,
}

impl Window {
    fn new(ttl: Duration, now: u64) -> Self {
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let slice_nanos = (ttl / SLICES).max(1);
        Self {
            slice_nanos,
            buckets: Default::default(),
            latest: AtomicU64::new(now / slice_nanos),
        }
    }

    fn slice(&self, now: u64) -> u64 {
        now / self.slice_nanos
    }

    /// Adds `delta` milli-tokens to `slice`'s bucket, resetting it if it held an older slice.
    /// A late write, for a slice already out of the window of the newest slice written, is
    /// dropped (its bucket may hold a newer slice by now).
    fn add(&self, slice: u64, delta: i64) {
        self.update(slice, delta, None);
    }

    /// Withdraws `amount` milli-tokens in `slice` if the window's balance holds them;
    /// whether it did.
    fn take(&self, slice: u64, amount: i64) -> bool {
        self.update(slice, -amount, Some(amount))
    }

    /// Adds `delta` to `slice`'s bucket, only if the window's balance is at least `need`
    /// (if any), judged against the bucket word it replaces: writers on the same slice,
    /// deposits included, never act on a balance another changed in the meantime.
    fn update(&self, slice: u64, delta: i64, need: Option<i64>) -> bool {
        let bucket = &self.buckets[(slice % SLICES) as usize];
        // The bucket before `latest`: every writer moves `latest` before writing a bucket,
        // so if a writer for `slice` already wrote this one, the `latest` read next shows it.
        let first = bucket.load(Ordering::Acquire);
        let mut latest = self.latest.load(Ordering::Acquire);
        if slice > latest {
            latest = self.latest.fetch_max(slice, Ordering::AcqRel);
        }
        // Whether this writer found the whole window stale, as it was before its own write:
        // then the bucket's first word is from a slice long gone, even if its tag (only the
        // slice's low bits) matches. Any other word it sees was written since, by a writer
        // of a current slice.
        let stale = slice.saturating_sub(latest) >= SLICES;
        let mut w = first;
        loop {
            #[cfg(test)]
            tests::paused_here();
            if slice.saturating_add(SLICES) <= self.latest.load(Ordering::Acquire) {
                return false; // too late: its slice left the window (its bucket may be reused)
            }
            let (tag, value) = unpack(w);
            let live = tag == slice & TAG_MASK && !(stale && w == first);
            let value = if live { value } else { 0 };
            if let Some(need) = need {
                let others = if stale { 0 } else { self.others(slice) };
                if others.saturating_add(value) < need {
                    return false;
                }
            }
            let next = pack(slice, value.saturating_add(delta));
            match bucket.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => w = actual,
            }
        }
    }

    /// The balance of the slice held by bucket `i`, if it is one of `(slice - SLICES, slice]`.
    fn live(&self, slice: u64, i: u64) -> i64 {
        // the one live slice this bucket may hold
        let back = (slice % SLICES + SLICES - i) % SLICES;
        let Some(held) = slice.checked_sub(back) else {
            return 0;
        };
        let (tag, value) = unpack(self.buckets[i as usize].load(Ordering::Acquire));
        if tag == held & TAG_MASK { value } else { 0 }
    }

    /// The balance of the slices in `(slice - SLICES, slice)`: the window but `slice`'s
    /// own bucket.
    fn others(&self, slice: u64) -> i64 {
        (0..SLICES)
            .filter(|&i| i != slice % SLICES)
            .fold(0i64, |t, i| t.saturating_add(self.live(slice, i)))
    }

    /// The balance of the slices in `(slice - SLICES, slice]`.
    fn sum(&self, slice: u64) -> i64 {
        if slice.saturating_sub(self.latest.load(Ordering::Acquire)) >= SLICES {
            return 0;
        }
        (0..SLICES).fold(0i64, |t, i| t.saturating_add(self.live(slice, i)))
    }
}

impl RetryBudgetBuilder {
    /// Retries always allowed per second, whatever the deposits (default 10).
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = n;
        self
    }

    /// How long a deposit lives (default 10 s): the retries available are `ratio` times
    /// the calls of the last `ttl`, less the retries made in it. The reserve also
    /// accumulates up to `min_per_sec * ttl`. Between 1 s and 1 h.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The clock that ages deposits and refills the reserve.
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
        if self.ratio > 0.0 && self.ratio < MIN_RATIO {
            return Err(ConfigError::new(
                "retry.budget.ratio",
                format!(
                    "must be 0 or at least 0.000001, the smallest ratio stored exactly \
                     enough (got {})",
                    self.ratio
                ),
            ));
        }
        // The smallest power of ten (from a thousand) of units per retry in which a deposit
        // is at least a thousand units: at most 1e9 for the smallest ratio.
        let mut retry_units = SCALE;
        while self.ratio > 0.0 && self.ratio * (retry_units as f64) < DEPOSIT_UNITS {
            retry_units *= 10;
        }
        let deposit_units = (self.ratio * retry_units as f64).round() as i64;
        // min_per_sec retries a second over the ttl, in milli-tokens: per_sec * ttl in ms
        let ttl_millis = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let reserve_cap = i64::from(self.min_per_sec).saturating_mul(ttl_millis);
        let now = u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX);
        Ok(Arc::new(RetryBudget {
            deposit_units,
            retry_units,
            window: Window::new(self.ttl, now),
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
    use crate::engine::clock::ManualClock;

    std::thread_local! {
        static PAUSE: std::cell::Cell<Option<Box<dyn FnOnce()>>> = const { std::cell::Cell::new(None) };
    }

    /// Runs the hook set for this thread (once), where a writer could stall just before
    /// its compare-and-swap on a bucket.
    pub(super) fn paused_here() {
        if let Some(f) = PAUSE.with(|p| p.take()) {
            f();
        }
    }

    fn pause_with(f: impl FnOnce() + 'static) {
        PAUSE.with(|p| p.set(Some(Box::new(f))));
    }

    fn budget(ratio: f64, clock: &ManualClock) -> Arc<RetryBudget> {
        RetryBudget::builder(ratio)
            .min_per_sec(0)
            .ttl(Duration::from_secs(10))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    }

    /// A write for a slice whose bucket already holds a newer slice (ten slices on, the
    /// same bucket) is dropped: it used to reset the bucket, wiping the newer balance.
    #[test]
    fn a_late_write_never_wipes_a_newer_slice() {
        let now = 86_400 * 1_000_000_000;
        let w = Window::new(Duration::from_secs(10), now);
        let s = w.slice(now);
        w.add(s + 10, -1_000);
        w.add(s, 100);
        assert_eq!(w.sum(s + 10), -1_000);
    }

    /// Two deposits racing after an idle window both count: the second writer's deposit
    /// lands while the first stalls before its compare-and-swap, which then retries (and
    /// used to reset the bucket again, from a staleness it had judged before the race).
    #[test]
    fn racing_deposits_after_idle_both_count() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(86_400));
        let b = budget(0.5, &clock);
        clock.advance(Duration::from_secs(60)); // every slice is stale
        let other = b.clone();
        pause_with(move || other.deposit());
        b.deposit();
        // two deposits of half a retry each: one retry
        assert_eq!(b.window.sum(b.window.slice(b.now_nanos())), b.retry_units);
        assert_eq!(b.available(), 1);
    }

    /// Two withdrawals racing for the last token: only one gets it.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(86_400));
        let b = budget(0.5, &clock);
        b.deposit();
        b.deposit(); // one token
        let other = b.clone();
        let won = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other_won = won.clone();
        pause_with(move || other_won.store(other.try_withdraw(), Ordering::SeqCst));
        let mine = b.try_withdraw();
        assert!(
            mine ^ won.load(Ordering::SeqCst),
            "exactly one withdrawal wins"
        );
        assert_eq!(b.window.sum(b.window.slice(b.now_nanos())), 0);
    }

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
    fn deposits_expire_after_the_ttl() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(86_400 * 3));
        let b = RetryBudget::builder(0.5)
            .min_per_sec(0)
            .ttl(Duration::from_secs(10))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        for _ in 0..10 {
            b.deposit(); // 5 retries, deposited at t = 0
        }
        clock.advance(Duration::from_secs(5));
        for _ in 0..4 {
            b.deposit(); // 2 more at t = 5
        }
        assert_eq!(b.available(), 7);
        assert!(b.try_withdraw()); // recorded at t = 5
        assert_eq!(b.available(), 6);
        clock.advance(Duration::from_millis(5_500)); // t = 10.5: the first 5 expired
        // the 2 of t = 5 are left, less the withdrawal made at t = 5
        assert_eq!(b.available(), 1);
        clock.advance(Duration::from_secs(5)); // t = 15.5: all expired
        assert_eq!(b.available(), 0);
        assert!(!b.try_withdraw());
        // a long idle period (beyond the tags' range) leaves nothing behind either
        for _ in 0..10 {
            b.deposit();
        }
        clock.advance(Duration::from_millis(100) * (1 << 24));
        assert_eq!(b.available(), 0);
        b.deposit();
        b.deposit();
        assert_eq!(b.available(), 1);
    }

    #[test]
    fn fractional_ttl_counts_for_the_reserve() {
        let clock = ManualClock::new();
        let b = RetryBudget::builder(0.0)
            .min_per_sec(10)
            .ttl(Duration::from_millis(1_500))
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        clock.advance(Duration::from_secs(60));
        assert_eq!(b.available(), 15);
    }

    #[test]
    fn packing_round_trips() {
        for v in [0, 1, -1, 1_000, -1_000, VALUE_MAX, VALUE_MIN] {
            assert_eq!(unpack(pack(12_345, v)), (12_345, v));
        }
        assert_eq!(unpack(pack(TAG_MASK + 3, i64::MAX)), (2, VALUE_MAX));
    }

    #[test]
    fn rejects_bad_ratio() {
        let e = RetryBudget::builder(-1.0).build().unwrap_err();
        assert_eq!(e.field(), "retry.budget.ratio");
        let e = RetryBudget::builder(f64::NAN).build().unwrap_err();
        assert_eq!(e.field(), "retry.budget.ratio");
    }
}
