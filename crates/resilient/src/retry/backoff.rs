//! Backoff schedules and jitter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::random::RandomSource;

/// The base delay before retry number `n` (1 = the first retry), before jitter and caps.
#[derive(Clone)]
pub enum Backoff {
    /// The same delay every time.
    Constant(Duration),
    /// `initial + step * (n - 1)`.
    Linear {
        /// First delay.
        initial: Duration,
        /// Added per retry.
        step: Duration,
    },
    /// `initial * factor^(n - 1)`.
    Exponential {
        /// First delay.
        initial: Duration,
        /// Growth factor (>= 1).
        factor: f64,
    },
    /// Any schedule: `f(n)`; `None` stops retrying.
    Custom(Arc<dyn Fn(u32) -> Option<Duration> + Send + Sync>),
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backoff::Constant(d) => f.debug_tuple("Constant").field(d).finish(),
            Backoff::Linear { initial, step } => f
                .debug_struct("Linear")
                .field("initial", initial)
                .field("step", step)
                .finish(),
            Backoff::Exponential { initial, factor } => f
                .debug_struct("Exponential")
                .field("initial", initial)
                .field("factor", factor)
                .finish(),
            Backoff::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Multiplies without overflow, saturating at `Duration::MAX`.
fn mul_f64_saturating(d: Duration, m: f64) -> Duration {
    let secs = d.as_secs_f64() * m;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

impl Backoff {
    /// The base delay before retry `n` (1-based). Saturates instead of overflowing.
    ///
    /// ```
    /// use resilient::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    /// assert_eq!(b.delay(3), Some(Duration::from_millis(400)));
    /// assert_eq!(b.delay(u32::MAX), Some(Duration::MAX));
    /// ```
    pub fn delay(&self, n: u32) -> Option<Duration> {
        let n = n.max(1);
        Some(match self {
            Backoff::Constant(d) => *d,
            Backoff::Linear { initial, step } => initial.saturating_add(step.saturating_mul(n - 1)),
            Backoff::Exponential { initial, factor } => {
                let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
                mul_f64_saturating(*initial, factor.powi(exp))
            }
            Backoff::Custom(f) => return f(n),
        })
    }

    /// The first (smallest for monotone schedules) base delay.
    pub(crate) fn initial(&self) -> Duration {
        self.delay(1).unwrap_or(Duration::ZERO)
    }
}

/// Randomisation applied to each delay, following AWS's "Exponential Backoff and Jitter".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// The base delay as is.
    None,
    /// Uniform in `[0, base]`.
    Full,
    /// `base / 2 + uniform[0, base / 2]`.
    Equal,
    /// `min(cap, uniform[initial, previous * 3])`: each delay depends on the previous one.
    Decorrelated,
    /// Uniform in `[base * (1 - p), base * (1 + p)]`, `p` in `[0, 1]`.
    Proportional(f64),
}

impl Jitter {
    /// Applies the jitter to `base`. `initial` and `previous` serve the decorrelated form;
    /// the result never exceeds `cap`.
    pub fn apply(
        &self,
        base: Duration,
        initial: Duration,
        previous: Option<Duration>,
        cap: Duration,
        rng: &dyn RandomSource,
    ) -> Duration {
        let base = base.min(cap);
        let d = match *self {
            Jitter::None => base,
            Jitter::Full => mul_f64_saturating(base, rng.next_f64()),
            Jitter::Equal => {
                let half = base / 2;
                half.saturating_add(mul_f64_saturating(base - half, rng.next_f64()))
            }
            Jitter::Decorrelated => {
                let lo = initial.min(cap);
                let hi = previous.unwrap_or(initial).saturating_mul(3).max(lo);
                lo.saturating_add(mul_f64_saturating(hi - lo, rng.next_f64()))
            }
            Jitter::Proportional(p) => {
                let p = p.clamp(0.0, 1.0);
                let lo = mul_f64_saturating(base, 1.0 - p);
                let hi = mul_f64_saturating(base, 1.0 + p);
                lo.saturating_add(mul_f64_saturating(hi.saturating_sub(lo), rng.next_f64()))
            }
        };
        d.min(cap)
    }

    /// The smallest delay this jitter can produce from `base` (used to validate plans).
    pub(crate) fn min_of(&self, base: Duration, initial: Duration) -> Duration {
        match *self {
            Jitter::None => base,
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => base / 2,
            Jitter::Decorrelated => initial,
            Jitter::Proportional(p) => mul_f64_saturating(base, 1.0 - p.clamp(0.0, 1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::random::SeededRandom;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn schedules() {
        assert_eq!(Backoff::Constant(MS * 5).delay(9), Some(MS * 5));
        let lin = Backoff::Linear {
            initial: MS * 10,
            step: MS * 5,
        };
        assert_eq!(lin.delay(1), Some(MS * 10));
        assert_eq!(lin.delay(4), Some(MS * 25));
        assert_eq!(
            lin.delay(u32::MAX),
            Some(MS * 10 + (MS * 5) * (u32::MAX - 1))
        );
        let exp = Backoff::Exponential {
            initial: MS * 100,
            factor: 2.0,
        };
        assert_eq!(exp.delay(1), Some(MS * 100));
        assert_eq!(exp.delay(2), Some(MS * 200));
        assert_eq!(exp.delay(2000), Some(Duration::MAX));
        let custom = Backoff::Custom(Arc::new(|n| (n < 3).then(|| MS * n)));
        assert_eq!(custom.delay(2), Some(MS * 2));
        assert_eq!(custom.delay(3), None);
    }

    #[test]
    fn jitter_ranges() {
        let rng = SeededRandom::new(3);
        let cap = Duration::from_secs(10);
        for _ in 0..1000 {
            let full = Jitter::Full.apply(MS * 100, MS * 10, None, cap, &rng);
            assert!(full <= MS * 100);
            let eq = Jitter::Equal.apply(MS * 100, MS * 10, None, cap, &rng);
            assert!(eq >= MS * 50 && eq <= MS * 100);
            let dec = Jitter::Decorrelated.apply(MS * 100, MS * 10, Some(MS * 40), cap, &rng);
            assert!(dec >= MS * 10 && dec <= MS * 120);
            let prop = Jitter::Proportional(0.2).apply(MS * 100, MS * 10, None, cap, &rng);
            assert!(prop >= MS * 80 && prop <= MS * 120, "{prop:?}");
        }
        assert_eq!(
            Jitter::None.apply(MS * 100, MS, None, MS * 30, &rng),
            MS * 30
        );
    }
}
