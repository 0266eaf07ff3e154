//! The latencies a percentile-delayed hedge learns its delay from: the most recent winning
//! attempts' latencies in a fixed ring of atomics (no lock, no allocation), and the delay
//! they give, recomputed every [`EVERY`] samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many recent latencies the percentile is taken over.
pub(super) const WINDOW: usize = 256;
/// The samples needed before the percentile replaces the initial delay.
pub(super) const MIN_SAMPLES: u64 = 20;
/// The delay is recomputed once every this many samples.
const EVERY: u64 = 8;

/// A percentile delay's settings: the quantile in parts per million, the delay used until
/// [`MIN_SAMPLES`] latencies are known, and the bounds the learned delay stays within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Percentile {
    pub(super) ppm: u32,
    pub(super) initial: Duration,
    pub(super) min: Duration,
    pub(super) max: Duration,
}

/// Recent latencies and the delay they give.
pub(super) struct Latencies {
    settings: Percentile,
    samples: Box<[AtomicU64]>,
    written: AtomicU64,
    /// The current delay, in nanoseconds.
    delay: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Latencies {
    pub(super) fn new(settings: Percentile) -> Self {
        Self {
            settings,
            samples: (0..WINDOW).map(|_| AtomicU64::new(0)).collect(),
            written: AtomicU64::new(0),
            delay: AtomicU64::new(nanos(settings.initial)),
        }
    }

    /// The delay before a hedge now.
    #[inline]
    pub(super) fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay.load(Ordering::Relaxed))
    }

    /// Records a winning attempt's latency.
    pub(super) fn record(&self, latency: Duration) {
        let n = self.written.fetch_add(1, Ordering::Relaxed);
        self.samples[(n % WINDOW as u64) as usize].store(nanos(latency), Ordering::Relaxed);
        let n = n + 1;
        if n >= MIN_SAMPLES && (n == MIN_SAMPLES || n.is_multiple_of(EVERY)) {
            self.recompute(n);
        }
    }

    /// Takes the quantile of the samples held (a copy on the stack) as the new delay,
    /// within the bounds.
    fn recompute(&self, written: u64) {
        let len = written.min(WINDOW as u64) as usize;
        let mut copy = [0u64; WINDOW];
        for (c, s) in copy.iter_mut().zip(&self.samples[..len]) {
            *c = s.load(Ordering::Relaxed);
        }
        let held = &mut copy[..len];
        // the smallest sample at or above the quantile: ceil(q·len) − 1
        let rank = (u128::from(self.settings.ppm) * len as u128).div_ceil(1_000_000);
        let index = (rank as usize).clamp(1, len) - 1;
        let (_, &mut q, _) = held.select_nth_unstable(index);
        let (min, max) = (nanos(self.settings.min), nanos(self.settings.max));
        self.delay.store(q.clamp(min, max), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(q: f64) -> Latencies {
        Latencies::new(Percentile {
            ppm: (q * 1e6) as u32,
            initial: Duration::from_millis(100),
            min: Duration::from_millis(1),
            max: Duration::from_secs(10),
        })
    }

    #[test]
    fn the_initial_delay_holds_until_enough_samples() {
        let l = latencies(0.9);
        for _ in 0..MIN_SAMPLES - 1 {
            l.record(Duration::from_millis(5));
        }
        assert_eq!(l.delay(), Duration::from_millis(100));
        l.record(Duration::from_millis(5));
        assert_eq!(l.delay(), Duration::from_millis(5));
    }

    #[test]
    fn the_delay_is_the_quantile_of_the_recent_samples_within_bounds() {
        let l = latencies(0.9);
        // 100 ms down to 1 ms
        for i in (1..=100u64).rev() {
            l.record(Duration::from_millis(i));
        }
        // recomputed at 96 samples (100 down to 5 ms: rank ceil(0.9 x 96) = 87 is 91 ms),
        // not again until 104
        assert_eq!(l.delay(), Duration::from_millis(91));
        for _ in 0..4 {
            l.record(Duration::from_millis(1));
        }
        // 104 samples: 100..=1 ms and four more of 1 ms; the 90th percentile is rank 94
        assert_eq!(l.delay(), Duration::from_millis(90));
        // the window keeps the last 256: old samples leave it
        for _ in 0..WINDOW {
            l.record(Duration::from_micros(10));
        }
        assert_eq!(
            l.delay(),
            Duration::from_millis(1),
            "clamped up to the minimum"
        );
        for _ in 0..WINDOW {
            l.record(Duration::from_secs(60));
        }
        assert_eq!(
            l.delay(),
            Duration::from_secs(10),
            "clamped down to the maximum"
        );
    }
}
