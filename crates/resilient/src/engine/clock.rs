//! Time sources.
//!
//! Every strategy reads time through a [`Clock`]:
//!
//! - [`FastClock`], **the default** ([`system_clock`], and every builder that takes a
//!   clock): the CPU's time-stamp counter read through `quanta` (a few nanoseconds a read),
//!   on the same origin as [`SystemClock`], with a stated skew against
//!   `std::time::Instant`, and following tokio's paused time in tests (see its
//!   documentation for both);
//! - [`SystemClock`]: `tokio::time::Instant` (`std::time::Instant` outside a paused
//!   runtime), some 20–100 ns a read on virtual machines; choose it to have every reading
//!   come from the operating system's clock;
//! - [`ManualClock`]: advanced by hand, making synchronous state machines fully
//!   deterministic in tests.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic time source.
///
/// `now` returns the time elapsed since an arbitrary, fixed origin of this clock. Only
/// differences between two readings of the same clock are meaningful.
///
/// ```
/// use resilient::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now() - start, Duration::from_millis(250));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time since this clock's origin. Never decreases.
    fn now(&self) -> Duration;

    /// Blocks the current thread for `duration` (used by blocking execution).
    ///
    /// A manual clock advances itself instead of sleeping.
    fn sleep_blocking(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The operating system's monotonic clock, based on `tokio::time::Instant`.
///
/// Outside a paused tokio runtime this is `std::time::Instant` (a vDSO read, no syscall on
/// Linux); inside a runtime whose time is paused it follows tokio's virtual time. Not the
/// default (that is [`FastClock`], on the same origin): pass it to a strategy's `clock`
/// setting to have every reading come from the OS.
///
/// ```
/// use resilient::{Clock, SystemClock};
/// let a = SystemClock.now();
/// let b = SystemClock.now();
/// assert!(b >= a);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The fixed origin of [`SystemClock`], placed well before the first reading.
///
/// It must precede every instant the clock is ever read at, including the virtual "now" of
/// a paused tokio runtime that was created (and so based) *before* this origin was first
/// initialised, perhaps by another runtime on another thread. Were the origin simply the
/// first reading, such a runtime would read a saturated zero until its virtual time caught
/// up, and time would appear to stand still. Backing off by a day (or less, where the
/// platform's monotonic clock cannot go that far back) leaves ample room. Inline: once
/// set, reading it is a load and a check, which a call into another crate would double.
#[inline]
fn origin() -> tokio::time::Instant {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let now = tokio::time::Instant::now();
        [86_400, 3_600, 60, 1]
            .into_iter()
            .find_map(|secs| now.checked_sub(Duration::from_secs(secs)))
            .unwrap_or(now)
    })
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(origin())
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use resilient::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(shared.now(), Duration::from_secs(2));
/// ```
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `to` if that is later than the current reading.
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(to, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    fn sleep_blocking(&self, duration: Duration) {
        self.advance(duration);
    }
}

/// A shared, type-erased clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The default clock handle: one shared [`FastClock`]. Every strategy that reads time uses
/// it unless given another clock.
///
/// (The name predates [`FastClock`]; [`SystemClock`] is still there to be chosen.)
///
/// ```
/// use resilient::{Clock, system_clock};
/// let clock = system_clock();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// assert!(format!("{clock:?}").starts_with("FastClock"));
/// ```
pub fn system_clock() -> SharedClock {
    static CLOCK: OnceLock<SharedClock> = OnceLock::new();
    // Every call looks at tokio's time again (see `FastClock`: a strategy built in a paused
    // runtime switches the fast clocks to tokio's time), not only the first.
    note_virtual_tokio_time();
    CLOCK.get_or_init(|| Arc::new(FastClock::new())).clone()
}

/// The default clock: the CPU's time-stamp counter, read through the `quanta` crate, on the
/// same origin as [`SystemClock`].
///
/// A reading costs a few nanoseconds (an `rdtsc` on x86-64, `cntvct_el0` on AArch64, a
/// multiply and a shift), against some 20–100 ns for `std::time::Instant` on virtual
/// machines, where the vDSO's clock read is slower. A limiter check is mostly a clock
/// read, so this is what makes it as fast as `governor`'s (which uses the same clock).
///
/// # Where the counter is used, and the fallback
///
/// `quanta` uses the counter only where the CPU declares it invariant (constant rate,
/// running in every power state) and has `rdtscp`; it then calibrates it once per process
/// against the OS monotonic clock (the first `FastClock` or [`system_clock`] of a process
/// spends about a millisecond on this, and at most 200 ms). On Linux this clock also
/// declines the counter when the kernel has itself given up on it (its clocksource is
/// `hpet`, `acpi_pm` or jiffies, which is what the kernel falls back to when it finds the
/// TSC unstable or unsynchronised between CPUs). Without a trusted counter every reading
/// is a [`SystemClock`] reading: correct, only not faster.
///
/// # Guarantees
///
/// - **Origin**: all `FastClock`s of a process, clones or not, on any thread, share one
///   origin, the origin of [`SystemClock`]: readings of both clocks can be compared.
/// - **Monotonic**: a thread's readings never decrease (the counter is invariant and
///   synchronised between CPUs where it is used, and a reading never falls below the
///   origin's anchor).
/// - **Skew**: against `std::time::Instant` (and [`SystemClock`]), a reading is off by at
///   most [`FastClock::MAX_SKEW`] (50 µs) plus [`FastClock::MAX_DRIFT_PPM`] (1,000 parts per
///   million, 0.1%) of the time since the clock was anchored: the calibration's rate error,
///   and the slewing NTP applies to the OS clock but not to the counter. Typical figures are
///   far smaller (tens of nanoseconds over milliseconds; a calibration run on a busy machine
///   can leave some 100 ppm). Neither a rate limiter nor a
///   timeout notices a 0.1% error; measure with [`SystemClock`] where readings must be the
///   OS clock's.
///
/// # Tokio's paused time
///
/// Like [`SystemClock`], it follows tokio's paused time in tests: when a `FastClock` or
/// [`system_clock`] is made on a thread whose tokio time runs apart from the real clock
/// (in a runtime with `start_paused = true`, after `tokio::time::pause()`, or after
/// `tokio::time::advance`), every `FastClock` of the process switches to tokio's time for
/// good (one relaxed atomic load a reading tells which). Strategies built inside the
/// paused test, as `#[tokio::test(start_paused = true)]` bodies do, therefore see virtual
/// time advance. A strategy built *before* time was paused, with nothing made afterwards,
/// keeps the counter until something is: give such strategies a [`SystemClock`], or build
/// them after pausing. Tokio's time can only be paused with its `test-util` feature, so
/// production builds never switch.
///
/// ```
/// use resilient::{Clock, FastClock, SystemClock};
/// use std::time::Duration;
///
/// let fast = FastClock::new();
/// let a = fast.now();
/// let system = SystemClock.now();
/// let b = fast.now();
/// assert!(b >= a);
/// // One origin for both clocks, within the stated skew.
/// assert!(system + FastClock::MAX_SKEW + Duration::from_millis(1) >= a);
/// assert!(b + FastClock::MAX_SKEW + Duration::from_millis(1) >= system);
/// ```
#[derive(Clone)]
pub struct FastClock {
    counter: Option<Counter>,
}

/// The calibrated counter and the anchor that puts it on [`SystemClock`]'s origin.
#[derive(Clone)]
struct Counter {
    clock: quanta::Clock,
    /// A raw counter reading, taken at the same instant as `base`.
    raw0: u64,
    /// [`SystemClock`]'s reading at `raw0`, in nanoseconds.
    base: u64,
    /// Nanoseconds per tick as a 0.64 fixed-point fraction (quanta's calibration, see
    /// [`Counter::multiplier`]), for a counter of more than 1 GHz; 0 for a slower one.
    mult: u64,
}

impl Counter {
    /// Ticks over which quanta's calibrated rate is read (some 6 days at 2 GHz, computed,
    /// not waited for): its nanoseconds fill some 50 bits, so the rate keeps some 50
    /// significant bits (a year's readings are off quanta's by some 100 ns at most).
    const PROBE_TICKS: u64 = 1 << 50;

    /// `mult` for `clock` (see the field).
    fn multiplier(clock: &quanta::Clock) -> u64 {
        let nanos = clock.delta_as_nanos(0, Self::PROBE_TICKS);
        // nanos / 2^50 nanoseconds a tick, times 2^64; below 2^64 when under 1 ns a tick.
        if nanos == 0 || nanos >= Self::PROBE_TICKS {
            0
        } else {
            nanos << 14
        }
    }

    /// Nanoseconds since [`SystemClock`]'s origin, read from the counter.
    #[inline]
    fn nanos(&self) -> u64 {
        // (Wrapping: an anchor plus the time since cannot reach `u64::MAX` nanoseconds, 584
        // years; a saturating add put one more step between the counter and its users.)
        self.base.wrapping_add(self.since(self.clock.raw()))
    }

    /// Nanoseconds from `raw0` to `raw` (none for a reading before `raw0`, as quanta's
    /// `delta_as_nanos`). With a fast counter, the high half of one multiplication: quanta's
    /// own scaling shifts the product by a calibrated amount, a variable shift of a 128-bit
    /// value (several more steps between the counter and every decision that reads it).
    #[inline]
    fn since(&self, raw: u64) -> u64 {
        if self.mult == 0 {
            return self.clock.delta_as_nanos(self.raw0, raw);
        }
        let ticks = raw.saturating_sub(self.raw0);
        ((u128::from(ticks) * u128::from(self.mult)) >> 64) as u64
    }
}

/// Set once tokio's time has been seen running apart from the real clock on some thread:
/// from then on every [`FastClock`] reads tokio's time (as [`SystemClock`]).
static TOKIO_TIME_VIRTUAL: AtomicBool = AtomicBool::new(false);

impl FastClock {
    /// The constant part of the stated skew against `std::time::Instant` (see the type's
    /// documentation).
    pub const MAX_SKEW: Duration = Duration::from_micros(50);

    /// The proportional part of the stated skew, in parts per million of the time since the
    /// clock was anchored (see the type's documentation).
    pub const MAX_DRIFT_PPM: u64 = 1_000;

    /// The process's fast clock (calibrated once per process; cheap after that).
    ///
    /// ```
    /// use resilient::{Clock, FastClock};
    /// let clock = FastClock::new();
    /// let copy = clock.clone();
    /// let a = clock.now();
    /// assert!(copy.now() >= a);
    /// ```
    pub fn new() -> Self {
        note_virtual_tokio_time();
        Self {
            counter: anchor().clone(),
        }
    }

    /// Nanoseconds since the origin (the origin of [`SystemClock`]): [`Clock::now`] without
    /// the `Duration`.
    ///
    /// ```
    /// use resilient::{Clock, FastClock};
    /// let clock = FastClock::new();
    /// let a = clock.now_nanos();
    /// assert!(clock.now_nanos() >= a);
    /// ```
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        match &self.counter {
            Some(c) if !TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed) => c.nanos(),
            _ => system_nanos(),
        }
    }

    /// Whether readings come from the CPU's counter: `false` where it is not trusted (the
    /// readings are then [`SystemClock`]'s) and once tokio's time has been seen paused.
    ///
    /// ```
    /// use resilient::FastClock;
    /// let clock = FastClock::new();
    /// println!("counter: {}", clock.uses_cpu_counter());
    /// ```
    pub fn uses_cpu_counter(&self) -> bool {
        self.counter.is_some() && !TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed)
    }
}

impl Default for FastClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FastClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match (&self.counter, TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed)) {
            (_, true) => "tokio time",
            (Some(_), false) => "cpu counter",
            (None, false) => "system clock",
        };
        f.debug_struct("FastClock")
            .field("source", &source)
            .finish()
    }
}

impl Clock for FastClock {
    #[inline]
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

/// A strategy's time source: the default [`FastClock`], read inline (without a virtual call
/// or a `Duration` round trip), or any shared [`Clock`] a builder was given.
#[derive(Debug, Clone)]
pub(crate) enum Time {
    Shared(SharedClock),
    Fast(FastClock),
}

/// A shared clock's reading in nanoseconds (out of line: the default clock's read stays
/// small enough to inline).
#[inline(never)]
fn shared_nanos(c: &SharedClock) -> u64 {
    saturating_nanos(c.now())
}

impl Time {
    /// The default: a [`FastClock`].
    pub(crate) fn fast() -> Self {
        Time::Fast(FastClock::new())
    }

    /// The reading in nanoseconds since the origin.
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Time::Shared(c) => shared_nanos(c),
            Time::Fast(c) => c.now_nanos(),
        }
    }

    /// The reading in nanoseconds, or `hint` for the default clock: a [`FastClock`]
    /// reading the engine has just taken (see [`deadline_and_nanos`]), which this clock would
    /// read too.
    #[inline]
    pub(crate) fn nanos_or(&self, hint: Option<u64>) -> u64 {
        match (self, hint) {
            (Time::Fast(_), Some(nanos)) => nanos,
            _ => self.nanos(),
        }
    }

    /// The reading, as [`Clock::now`].
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        match self {
            Time::Shared(c) => c.now(),
            Time::Fast(c) => Duration::from_nanos(c.now_nanos()),
        }
    }
}

/// [`SystemClock`]'s reading in nanoseconds: [`FastClock`]'s fallback (out of line, so that
/// the counter's read stays small enough to inline).
#[cold]
#[inline(never)]
fn system_nanos() -> u64 {
    saturating_nanos(SystemClock.now())
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Tokio's "now" as [`FastClock`] reads it: from the process's calibrated counter where a
/// `FastClock` would use it (a few nanoseconds, against a vDSO clock read on virtual
/// machines), else `tokio::time::Instant::now()` (tokio's paused time included). The
/// engine sets its deadlines from it; it is within [`FastClock::MAX_SKEW`] plus
/// [`FastClock::MAX_DRIFT_PPM`] of tokio's own reading, as every `FastClock` reading is of
/// [`SystemClock`]'s.
#[inline]
pub(crate) fn instant_now() -> tokio::time::Instant {
    if let Some(c) = anchor()
        && !TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed)
        && let Some(now) = origin().checked_add(Duration::from_nanos(c.nanos()))
    {
        return now;
    }
    tokio::time::Instant::now()
}

/// One reading of the default clock in nanoseconds since the origin (what every
/// [`FastClock`] reads at that instant: the engine hands it to a guard that reads the fast
/// clock as it admits the call, see [`Time::nanos_or`]) and, with `after`, the instant
/// `after` past that reading, as [`instant_now`] would give it plus `after` (`None` if it
/// cannot be represented). One addition to the origin makes the instant.
#[inline(always)]
pub(crate) fn deadline_and_nanos(after: Option<Duration>) -> (Option<tokio::time::Instant>, u64) {
    if let Some(c) = anchor()
        && !TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed)
    {
        let nanos = c.nanos();
        let deadline = after.and_then(|after| {
            origin().checked_add(Duration::from_nanos(nanos).checked_add(after)?)
        });
        return (deadline, nanos);
    }
    let now = tokio::time::Instant::now();
    (
        after.and_then(|after| now.checked_add(after)),
        saturating_nanos(now.saturating_duration_since(origin())),
    )
}

/// Calibrates the process's counter now if it is not yet (see [`instant_now`]): a pipeline
/// does it when it is built, not in its first call.
pub(crate) fn calibrate() {
    note_virtual_tokio_time();
    let _ = anchor();
}

/// The process's calibrated counter, anchored on [`SystemClock`]'s origin; `None` where the
/// counter is not trusted. Inline, as [`origin`].
#[inline]
fn anchor() -> &'static Option<Counter> {
    static ANCHOR: OnceLock<Option<Counter>> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        if !os_trusts_cpu_counter() {
            return None;
        }
        let clock = quanta::Clock::new();
        // quanta falls back to the OS monotonic clock where the CPU's counter is not
        // invariant. Its calibrated mode maps raw 0 to the (non-zero) reference time of
        // the calibration; its fallback maps raw values to themselves.
        clock.scaled(0).checked_sub(Duration::from_nanos(1))?;
        let origin = origin().into_std();
        // Bracket the OS reading with two counter readings and take their midpoint.
        let before = clock.raw();
        let system = std::time::Instant::now();
        let after = clock.raw();
        let raw0 = before.wrapping_add(after.wrapping_sub(before) / 2);
        Some(Counter {
            mult: Counter::multiplier(&clock),
            clock,
            raw0,
            base: saturating_nanos(system.saturating_duration_since(origin)),
        })
    })
}

/// `false` where the OS has given up on the CPU's counter (Linux: a clocksource the kernel
/// falls back to when it finds the TSC unstable).
fn os_trusts_cpu_counter() -> bool {
    #[cfg(target_os = "linux")]
    {
        const FALLBACKS: [&str; 4] = ["hpet", "acpi_pm", "jiffies", "refined-jiffies"];
        if let Ok(source) = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        ) {
            return !FALLBACKS.contains(&source.trim());
        }
    }
    true
}

/// Switches every [`FastClock`] to tokio's time if this thread's tokio time runs apart from
/// the real clock.
fn note_virtual_tokio_time() {
    if !TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed) && tokio_time_is_virtual() {
        TOKIO_TIME_VIRTUAL.store(true, Ordering::Relaxed);
    }
}

/// Whether tokio's "now", as seen from this thread, lies outside a window of real time
/// around it (twice, in disjoint windows, so that a frozen virtual time that happens to
/// fall inside the first window is still caught by the second). Outside a paused runtime
/// (or without tokio's `test-util`) tokio's now *is* the real now, inside every window.
fn tokio_time_is_virtual() -> bool {
    let mut floor: Option<std::time::Instant> = None;
    for _ in 0..2 {
        let mut before = std::time::Instant::now();
        while floor.is_some_and(|f| before <= f) {
            before = std::time::Instant::now();
        }
        let tokio_now = tokio::time::Instant::now().into_std();
        let after = std::time::Instant::now();
        if tokio_now < before || tokio_now > after {
            return true;
        }
        floor = Some(after);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_and_its_nanoseconds_are_one_reading_of_the_fast_clock() {
        let clock = FastClock::new();
        let after = Duration::from_millis(1_500);
        for i in 0..10_000 {
            // (Another test may pause tokio's time meanwhile, switching every clock.)
            let virtual_before = TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed);
            let before = clock.now_nanos();
            let (deadline, nanos) = deadline_and_nanos((i % 2 == 0).then_some(after));
            let after_reading = clock.now_nanos();
            if virtual_before != TOKIO_TIME_VIRTUAL.load(Ordering::Relaxed) {
                continue;
            }
            assert!(
                before <= nanos && nanos <= after_reading,
                "{before} {nanos} {after_reading}"
            );
            match deadline {
                None => assert!(i % 2 == 1, "a deadline 1.5 s ahead is representable"),
                Some(deadline) => assert_eq!(
                    deadline.saturating_duration_since(origin()),
                    Duration::from_nanos(nanos) + after
                ),
            }
        }
        // A deadline past what an instant can hold is none; the reading is still given.
        let (deadline, nanos) = deadline_and_nanos(Some(Duration::MAX));
        assert_eq!(deadline, None);
        assert!(nanos <= clock.now_nanos());
    }

    #[test]
    fn the_counters_scaling_is_quantas_within_a_nanosecond_a_year() {
        // The high half of one multiplication gives what quanta's calibrated scaling gives,
        // within one nanosecond plus 2^-50 of the span: over a year of readings, ~100 ns.
        let Some(c) = anchor() else {
            return; // no trusted counter here: readings are `SystemClock`'s
        };
        let year_of_ticks = c.clock.delta_as_nanos(0, 1 << 40).max(1);
        let year_of_ticks =
            (365 * 24 * 3600 * 1_000_000_000u128 * (1 << 40) / u128::from(year_of_ticks)) as u64;
        let mut ticks = 1u64;
        while ticks <= year_of_ticks {
            for d in [ticks - 1, ticks, ticks + 7, ticks.saturating_mul(3) / 2] {
                let raw = c.raw0.wrapping_add(d);
                let quanta = c.clock.delta_as_nanos(c.raw0, raw);
                let ours = c.since(raw);
                let slack = 1 + (quanta >> 50) + 1;
                assert!(
                    quanta.abs_diff(ours) <= slack,
                    "{d} ticks: {ours} vs {quanta}"
                );
            }
            ticks = ticks.saturating_mul(3);
        }
        // A reading before the anchor is none, as quanta's.
        assert_eq!(c.since(c.raw0.wrapping_sub(5)), 0);
        assert_eq!(c.since(c.raw0), 0);
    }

    #[test]
    fn the_engines_instant_is_monotonic_and_within_the_skew_of_tokios() {
        calibrate();
        // The stated bound, with the drift of a minute since the counter was anchored.
        let slack = FastClock::MAX_SKEW
            + Duration::from_micros(60_000_000 * FastClock::MAX_DRIFT_PPM / 1_000_000);
        let mut last = instant_now();
        for _ in 0..100_000 {
            let before = tokio::time::Instant::now();
            let now = instant_now();
            let after = tokio::time::Instant::now();
            assert!(now >= last, "went back by {:?}", last - now);
            assert!(now + slack >= before, "behind by {:?}", before - now);
            assert!(now <= after + slack, "ahead by {:?}", now - after);
            last = now;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_engines_instant_follows_tokios_paused_time() {
        calibrate();
        let start = tokio::time::Instant::now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(instant_now(), start + Duration::from_secs(3600));
    }

    #[test]
    fn manual_clock_is_monotonic_and_shared() {
        let c = ManualClock::new();
        let d = c.clone();
        c.advance(Duration::from_secs(1));
        c.set(Duration::from_millis(500)); // earlier: ignored
        assert_eq!(d.now(), Duration::from_secs(1));
        d.sleep_blocking(Duration::from_secs(2));
        assert_eq!(c.now(), Duration::from_secs(3));
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Duration::from_nanos(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_clock_follows_paused_tokio_time() {
        // Made inside the paused runtime, as a strategy's default clock would be.
        let fast = FastClock::new();
        let shared = system_clock();
        let (a, b) = (fast.now(), shared.now());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fast.now() - a, Duration::from_secs(60));
        assert_eq!(shared.now() - b, Duration::from_secs(60));
        assert!(!fast.uses_cpu_counter());
        assert!(format!("{fast:?}").contains("tokio time"));
    }

    #[test]
    fn real_tokio_time_is_not_virtual() {
        assert!(!tokio_time_is_virtual());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(!runtime.block_on(async { tokio_time_is_virtual() }));
    }

    #[tokio::test(start_paused = true)]
    async fn paused_tokio_time_is_virtual() {
        assert!(tokio_time_is_virtual());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(tokio_time_is_virtual());
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_paused_tokio_time() {
        let a = SystemClock.now();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let b = SystemClock.now();
        assert!(b - a >= Duration::from_secs(60), "{a:?} {b:?}");
        assert!(b - a < Duration::from_secs(61));
    }
}
