//! How long the breaker stays open: a base break that grows exponentially (with jitter)
//! over repeated failed recoveries, capped, or a custom generator; always capped by the
//! pipeline's `circuit` timeout when one is attached.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::random::SharedRandom;

/// A custom break-duration generator: `failed_recoveries -> break`.
pub(crate) type BreakFn = Arc<dyn Fn(u32) -> Duration + Send + Sync>;

pub(crate) enum Schedule {
    Backoff {
        base: Duration,
        multiplier: f64,
        max: Duration,
        jitter: f64,
    },
    Custom(BreakFn),
}

pub(crate) struct Recovery {
    pub(crate) schedule: Schedule,
    /// The tightest `circuit` timeout of the pipelines this breaker is attached to.
    cap_nanos: AtomicU64,
    /// A custom generator's first break in nanoseconds, once known (`u64::MAX` before).
    first_custom: AtomicU64,
    random: SharedRandom,
}

impl Recovery {
    pub(crate) fn new(schedule: Schedule, random: SharedRandom) -> Self {
        Self {
            schedule,
            cap_nanos: AtomicU64::new(u64::MAX),
            first_custom: AtomicU64::new(u64::MAX),
            random,
        }
    }

    /// Lowers the cap to `cap` (never raises it).
    pub(crate) fn cap_at(&self, cap: Duration) {
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        self.cap_nanos.fetch_min(nanos, Ordering::AcqRel);
    }

    pub(crate) fn cap(&self) -> Option<Duration> {
        let n = self.cap_nanos.load(Ordering::Acquire);
        (n != u64::MAX).then(|| Duration::from_nanos(n))
    }

    /// The first break (no failed recovery yet), without jitter, capped. A custom
    /// generator is asked once, on first use.
    pub(crate) fn base(&self) -> Duration {
        let d = match &self.schedule {
            Schedule::Backoff { base, .. } => *base,
            Schedule::Custom(f) => match self.first_custom.load(Ordering::Acquire) {
                u64::MAX => {
                    let d = f(0);
                    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
                    self.first_custom.store(nanos, Ordering::Release);
                    Duration::from_nanos(nanos)
                }
                nanos => Duration::from_nanos(nanos),
            },
        };
        match self.cap() {
            Some(cap) => d.min(cap),
            None => d,
        }
    }

    /// The longest break this schedule can give (`Duration::MAX` when unknown: a custom
    /// generator), capped.
    pub(crate) fn longest(&self) -> Duration {
        let d = match &self.schedule {
            Schedule::Backoff { max, .. } => *max,
            Schedule::Custom(_) => Duration::MAX,
        };
        match self.cap() {
            Some(cap) => d.min(cap),
            None => d,
        }
    }

    /// The break after `failed_recoveries` failed half-open attempts in a row.
    pub(crate) fn duration(&self, failed_recoveries: u32) -> Duration {
        let d = match &self.schedule {
            Schedule::Backoff {
                base,
                multiplier,
                max,
                jitter,
            } => {
                let exp = multiplier.powi(i32::try_from(failed_recoveries).unwrap_or(i32::MAX));
                let grown = mul_saturating(*base, exp).min(*max);
                if *jitter > 0.0 {
                    mul_saturating(grown, 1.0 - jitter * self.random.next_f64())
                } else {
                    grown
                }
            }
            Schedule::Custom(f) => f(failed_recoveries),
        };
        match self.cap() {
            Some(cap) => d.min(cap),
            None => d,
        }
    }
}

fn mul_saturating(d: Duration, m: f64) -> Duration {
    let secs = d.as_secs_f64() * m;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schedule {
            Schedule::Backoff {
                base,
                multiplier,
                max,
                jitter,
            } => f
                .debug_struct("Backoff")
                .field("base", base)
                .field("multiplier", multiplier)
                .field("max", max)
                .field("jitter", jitter)
                .field("cap", &self.cap())
                .finish(),
            Schedule::Custom(_) => f
                .debug_struct("Custom")
                .field("cap", &self.cap())
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::random::SeededRandom;

    fn backoff(jitter: f64) -> Recovery {
        Recovery::new(
            Schedule::Backoff {
                base: Duration::from_secs(1),
                multiplier: 2.0,
                max: Duration::from_secs(10),
                jitter,
            },
            Arc::new(SeededRandom::new(3)),
        )
    }

    #[test]
    fn grows_caps_and_jitters_downwards() {
        let r = backoff(0.0);
        let got: Vec<u64> = (0..6).map(|k| r.duration(k).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(r.duration(u32::MAX), Duration::from_secs(10));
        r.cap_at(Duration::from_secs(3));
        r.cap_at(Duration::from_secs(5)); // never raises
        assert_eq!(r.duration(4), Duration::from_secs(3));
        let j = backoff(0.5);
        for k in 0..6 {
            let d = j.duration(k);
            let full = r_full(k);
            assert!(d <= full && d >= full / 2, "{k}: {d:?} vs {full:?}");
        }
    }

    fn r_full(k: u32) -> Duration {
        Duration::from_secs((1u64 << k).min(10))
    }
}
