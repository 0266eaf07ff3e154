//! Injectable randomness for jitter.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniformly distributed random numbers, shared across threads.
///
/// ```
/// use resilient::{RandomSource, SeededRandom};
/// let a = SeededRandom::new(7);
/// let b = SeededRandom::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
pub trait RandomSource: Send + Sync + fmt::Debug + 'static {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A float uniformly distributed in `[0, 1)`.
    fn next_f64(&self) -> f64 {
        // 53 high bits -> [0, 1)
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Thread-local fast randomness (the default), seeded by the OS.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    #[inline]
    fn next_u64(&self) -> u64 {
        fastrand::u64(..)
    }
}

/// A deterministic generator (SplitMix64 over an atomic counter) for tests.
///
/// The sequence depends only on the seed and on the order of calls.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A shared, type-erased random source.
pub type SharedRandom = Arc<dyn RandomSource>;

/// The default random source (a [`ThreadRandom`]).
pub fn thread_random() -> SharedRandom {
    static RNG: OnceLock<SharedRandom> = OnceLock::new();
    RNG.get_or_init(|| Arc::new(ThreadRandom)).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_in_range() {
        let a = SeededRandom::new(1);
        let b = SeededRandom::new(1);
        let c = SeededRandom::new(2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], c.next_u64());
        for _ in 0..10_000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
