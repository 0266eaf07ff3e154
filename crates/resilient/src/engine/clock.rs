//! Time sources.
//!
//! Every strategy reads time through a [`Clock`]. The default [`SystemClock`] follows
//! `tokio::time::Instant`, so tests that call `tokio::time::pause()` drive it too; the
//! [`ManualClock`] is advanced by hand and makes synchronous state machines fully
//! deterministic.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The real monotonic clock, based on `tokio::time::Instant`.
///
/// Outside a paused tokio runtime this is `std::time::Instant` (a vDSO read, no syscall on
/// Linux); inside a runtime whose time is paused it follows tokio's virtual time.
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
/// platform's monotonic clock cannot go that far back) leaves ample room.
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

/// The default clock handle (a [`SystemClock`]).
pub fn system_clock() -> SharedClock {
    static CLOCK: OnceLock<SharedClock> = OnceLock::new();
    CLOCK.get_or_init(|| Arc::new(SystemClock)).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn system_clock_follows_paused_tokio_time() {
        let a = SystemClock.now();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let b = SystemClock.now();
        assert!(b - a >= Duration::from_secs(60), "{a:?} {b:?}");
        assert!(b - a < Duration::from_secs(61));
    }
}
