//! Per-variant counters, a lock-free latency histogram, and the two significance tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (3 bits): a bucket is at most 12.5% wide.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Buckets for every `u64` nanosecond value.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// A log-linear histogram of durations in nanoseconds, updated with atomics only.
#[derive(Debug)]
pub(super) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    SUB + (e - SUB_BITS) as usize * SUB + sub
}

/// The middle of bucket `i`, in nanoseconds.
fn midpoint(i: usize) -> f64 {
    if i < SUB {
        return i as f64;
    }
    let e = ((i - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    let low = (SUB as u64 + sub) << (e - SUB_BITS);
    low as f64 + width as f64 / 2.0
}

impl Histogram {
    pub(super) fn record(&self, d: Duration) {
        let v = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        // saturating: a sum past u64::MAX nanoseconds (584 years) stays there
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(v))
            });
    }

    fn snapshot(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The `q` quantile (0..=1), as the middle of its bucket.
    fn quantile(counts: &[u64], q: f64) -> Duration {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(midpoint(i).min(u64::MAX as f64) as u64);
            }
        }
        Duration::from_nanos(u64::MAX)
    }

    /// Mean and (sample) variance in seconds, from the bucket midpoints.
    pub(super) fn moments(&self) -> (f64, f64, u64) {
        let counts = self.snapshot();
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return (0.0, 0.0, 0);
        }
        let mean = counts
            .iter()
            .enumerate()
            .map(|(i, c)| *c as f64 * midpoint(i) / 1e9)
            .sum::<f64>()
            / n as f64;
        let var = if n < 2 {
            0.0
        } else {
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let d = midpoint(i) / 1e9 - mean;
                    *c as f64 * d * d
                })
                .sum::<f64>()
                / (n - 1) as f64
        };
        (mean, var, n)
    }
}

/// One variant's counters.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    calls: AtomicU64,
    successes: AtomicU64,
    attempts: AtomicU64,
    pub(super) latency: Histogram,
}

impl Recorder {
    pub(super) fn record(&self, ok: bool, attempts: u64, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.successes.fetch_add(1, Ordering::Relaxed);
        }
        self.attempts.fetch_add(attempts, Ordering::Relaxed);
        self.latency.record(elapsed);
    }

    pub(super) fn report(&self, attempt_cost: u64) -> VariantReport {
        let calls = self.calls.load(Ordering::Relaxed);
        let successes = self.successes.load(Ordering::Relaxed);
        let attempts = self.attempts.load(Ordering::Relaxed);
        let per_call = |x: u64| {
            if calls == 0 {
                0.0
            } else {
                x as f64 / calls as f64
            }
        };
        let counts = self.latency.snapshot();
        let cost = attempts.saturating_mul(attempt_cost);
        let sum = self.latency.sum_nanos.load(Ordering::Relaxed);
        let n = self.latency.count.load(Ordering::Relaxed);
        VariantReport {
            calls,
            successes,
            success_rate: per_call(successes),
            attempts,
            attempts_per_call: per_call(attempts),
            cost,
            cost_per_call: per_call(cost),
            mean_latency: Duration::from_nanos(sum.checked_div(n).unwrap_or(0)),
            p50: Histogram::quantile(&counts, 0.50),
            p95: Histogram::quantile(&counts, 0.95),
            p99: Histogram::quantile(&counts, 0.99),
        }
    }
}

/// One variant's measurements (see `Experiment::report`).
///
/// Latency percentiles come from a log-linear histogram: each is the middle of a bucket at
/// most 12.5% wide. The mean is exact.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VariantReport {
    /// Calls made through this variant.
    pub calls: u64,
    /// Calls that returned `Ok`.
    pub successes: u64,
    /// `successes / calls` (0 without calls).
    pub success_rate: f64,
    /// Attempts made (the operation's invocations).
    pub attempts: u64,
    /// `attempts / calls`.
    pub attempts_per_call: f64,
    /// `attempts` times the variant's attempt cost.
    pub cost: u64,
    /// `cost / calls`.
    pub cost_per_call: f64,
    /// Mean call latency, retries and waits included.
    pub mean_latency: Duration,
    /// Median call latency.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// One significance test of B against A (see `ExperimentReport`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Significance {
    /// B's value minus A's.
    pub difference: f64,
    /// The test statistic (a z score).
    pub statistic: f64,
    /// The two-sided p-value: the chance of a difference at least this large if the
    /// variants were the same.
    pub p_value: f64,
    /// `1 - p_value`.
    pub confidence: f64,
    /// Whether `p_value` is below the test's level.
    pub significant: bool,
    /// Calls per variant needed to detect the observed difference at this level with 80%
    /// power (for the success rate; `None` when there is no difference to detect).
    pub calls_needed: Option<u64>,
}

impl Significance {
    fn none() -> Self {
        Self {
            difference: 0.0,
            statistic: 0.0,
            p_value: 1.0,
            confidence: 0.0,
            significant: false,
            calls_needed: None,
        }
    }

    fn from_z(difference: f64, z: f64, alpha: f64) -> Self {
        let p = erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0);
        Self {
            difference,
            statistic: z,
            p_value: p,
            confidence: 1.0 - p,
            significant: p < alpha,
            calls_needed: None,
        }
    }
}

/// A two-proportion z-test of the success rates.
pub(super) fn two_proportions(a: &VariantReport, b: &VariantReport, alpha: f64) -> Significance {
    if a.calls == 0 || b.calls == 0 {
        return Significance::none();
    }
    let (na, nb) = (a.calls as f64, b.calls as f64);
    let (pa, pb) = (a.success_rate, b.success_rate);
    let d = pb - pa;
    let pooled = (a.successes + b.successes) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let mut s = if se > 0.0 {
        Significance::from_z(d, d / se, alpha)
    } else {
        Significance::none() // both all-success or all-failure: no difference
    };
    let spread = pa * (1.0 - pa) + pb * (1.0 - pb);
    if d != 0.0 && spread > 0.0 {
        let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(0.8);
        s.calls_needed = Some((z * z * spread / (d * d)).ceil().min(u64::MAX as f64) as u64);
    }
    s
}

/// Welch's test of the mean latencies (normal approximation: both variants have at least
/// the experiment's minimum number of calls before it is used for a verdict).
pub(super) fn welch(a: &Histogram, b: &Histogram, alpha: f64) -> Significance {
    let (ma, va, na) = a.moments();
    let (mb, vb, nb) = b.moments();
    if na < 2 || nb < 2 {
        return Significance::none();
    }
    let d = mb - ma;
    let se = (va / na as f64 + vb / nb as f64).sqrt();
    if se > 0.0 {
        Significance::from_z(d, d / se, alpha)
    } else if d == 0.0 {
        Significance {
            difference: 0.0,
            ..Significance::none()
        }
    } else {
        // no spread at all and different values: as certain as it gets
        Significance {
            difference: d,
            statistic: f64::INFINITY.copysign(d),
            p_value: 0.0,
            confidence: 1.0,
            significant: true,
            calls_needed: None,
        }
    }
}

/// The complementary error function (Abramowitz and Stegun 7.1.26, absolute error below
/// 1.5e-7).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

/// The standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal quantile, by bisection (only used for sample-size estimates).
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_u64_and_midpoints_fall_inside() {
        let mut last = 0;
        for v in [0u64, 1, 7, 8, 9, 15, 16, 1000, 1 << 40, u64::MAX] {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(i >= last);
            last = i;
            let m = midpoint(i);
            assert!(
                (m - v as f64).abs() <= (v as f64 / 8.0).max(0.5) + 1.0,
                "{v}: {m}"
            );
        }
    }

    #[test]
    fn normal_functions_match_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-4);
        assert!((normal_quantile(0.8) - 0.841_621).abs() < 1e-4);
        assert!((erfc(3.0) - 2.209e-5).abs() < 1e-6);
    }

    #[test]
    fn quantiles_of_a_known_histogram() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let c = h.snapshot();
        let p50 = Histogram::quantile(&c, 0.5).as_secs_f64();
        let p99 = Histogram::quantile(&c, 0.99).as_secs_f64();
        assert!((p50 - 0.050).abs() <= 0.050 / 8.0, "{p50}");
        assert!((p99 - 0.099).abs() <= 0.099 / 8.0, "{p99}");
        let (mean, var, n) = h.moments();
        assert_eq!(n, 100);
        assert!((mean - 0.0505).abs() < 0.004, "{mean}");
        // variance of 1..=100 ms: 841.7 ms^2
        assert!((var - 841.7e-6).abs() < 120e-6, "{var}");
    }
}
