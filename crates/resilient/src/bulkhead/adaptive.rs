//! Adaptive concurrency limits: algorithms that move a bulkhead's limit with the latency and
//! the failures it observes (TCP congestion control applied to calls, as in Netflix's
//! concurrency-limits).
//!
//! Each algorithm is a pure function of its samples: [`LimitAlgorithm::update`] takes the
//! current limit and one [`Sample`] and returns the next limit, with no clock and no
//! randomness, so a test can feed it an exact sequence. A bulkhead built with
//! [`BulkheadBuilder::adaptive`](super::BulkheadBuilder::adaptive) feeds it every finished
//! call.
//!
//! - [`Aimd`]: additive increase, multiplicative decrease on a failure or a timeout. Simple
//!   and robust; reacts to errors, not to latency.
//! - [`Gradient2`]: compares a short-term latency with a long-term average and shrinks the
//!   limit as the short one grows (a queue is building up), growing it again with a fixed
//!   headroom when latency is flat.
//! - [`Vegas`]: estimates the queue from the best latency seen and the current one (TCP
//!   Vegas), keeping it between two thresholds that grow with the logarithm of the limit.

use std::time::Duration;

/// `x` within `min..=max`, or `default` for NaN.
fn bounded(x: f64, min: f64, max: f64, default: f64) -> f64 {
    if x.is_nan() {
        default
    } else {
        x.clamp(min, max)
    }
}

/// One finished call, as a limit algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// How long the call held its slot.
    pub rtt: Duration,
    /// Calls in flight when it finished, itself included.
    pub in_flight: usize,
    /// Whether it failed or timed out (a sign of overload).
    pub dropped: bool,
}

/// An adaptive limit: the next limit from the current one and a sample.
///
/// ```
/// use resilient::bulkhead::{Aimd, LimitAlgorithm, Sample};
/// use std::time::Duration;
/// let mut aimd = Aimd::new(10, 1, 100);
/// let busy = |dropped| Sample { rtt: Duration::from_millis(5), in_flight: 10, dropped };
/// assert_eq!(aimd.update(10, busy(false)), 11);
/// assert_eq!(aimd.update(11, busy(true)), 9);
/// ```
pub trait LimitAlgorithm: Send + 'static {
    /// The limit before any sample.
    fn initial(&self) -> usize;
    /// The limit after `sample`, given the current `limit`.
    fn update(&mut self, limit: usize, sample: Sample) -> usize;

    /// Whether [`update`](Self::update) reads [`Sample::rtt`] (default `true`). An
    /// algorithm that does not is fed a zero `rtt`, and the bulkhead then reads no clock
    /// for its calls.
    ///
    /// ```
    /// use resilient::bulkhead::{Aimd, LimitAlgorithm, Vegas};
    /// use std::time::Duration;
    /// assert!(!Aimd::new(10, 1, 100).uses_rtt()); // reacts to failures only
    /// assert!(Aimd::new(10, 1, 100).timeout(Duration::from_secs(1)).uses_rtt());
    /// assert!(Vegas::new(10, 1, 100).uses_rtt());
    /// ```
    fn uses_rtt(&self) -> bool {
        true
    }

    /// Whether `sample` certainly leaves `limit` as it is and changes nothing the
    /// algorithm keeps (default `false`: every sample is applied). A bulkhead asks a copy
    /// of the algorithm as configured, which never sees a sample, without taking the lock
    /// under which it applies samples: answer only from the configuration, `limit` and
    /// `sample`.
    ///
    /// ```
    /// use resilient::bulkhead::{Aimd, LimitAlgorithm, Sample};
    /// use std::time::Duration;
    /// let aimd = Aimd::new(10, 1, 20);
    /// let s = |in_flight, dropped| Sample { rtt: Duration::ZERO, in_flight, dropped };
    /// assert!(aimd.ignores(10, &s(2, false))); // mostly idle: no evidence either way
    /// assert!(!aimd.ignores(10, &s(6, false))); // busy: grows
    /// assert!(!aimd.ignores(10, &s(2, true))); // a failure: shrinks
    /// assert!(aimd.ignores(20, &s(20, false))); // already at its max
    /// ```
    fn ignores(&self, limit: usize, sample: &Sample) -> bool {
        let _ = (limit, sample);
        false
    }
}

/// Additive increase, multiplicative decrease: +1 after a call that finished while the
/// limit was in use (at least half of it in flight), `× backoff` after a failure or a
/// call slower than `timeout`, within `[min, max]`.
///
/// ```
/// use resilient::bulkhead::{Aimd, LimitAlgorithm, Sample};
/// use std::time::Duration;
/// let mut aimd = Aimd::new(4, 2, 8).backoff(0.5);
/// let s = |in_flight, dropped| Sample { rtt: Duration::from_millis(1), in_flight, dropped };
/// assert_eq!(aimd.initial(), 4);
/// assert_eq!(aimd.update(4, s(1, false)), 4); // mostly idle: no evidence it can grow
/// assert_eq!(aimd.update(4, s(4, false)), 5);
/// assert_eq!(aimd.update(5, s(5, true)), 2);
/// assert_eq!(aimd.update(2, s(2, true)), 2); // never below min
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    initial: usize,
    min: usize,
    max: usize,
    backoff: f64,
    timeout: Duration,
}

impl Aimd {
    /// Starts at `initial` within `[min, max]` (each at least 1), backoff 0.9, no timeout.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            initial: initial.clamp(min, max),
            min,
            max,
            backoff: 0.9,
            timeout: Duration::MAX,
        }
    }

    /// The factor a drop multiplies the limit by, within `0.5..1` (default 0.9).
    pub fn backoff(mut self, factor: f64) -> Self {
        self.backoff = bounded(factor, 0.5, 0.999, 0.9);
        self
    }

    /// A call slower than this counts as a drop (default: none does).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn initial(&self) -> usize {
        self.initial
    }

    fn update(&mut self, limit: usize, sample: Sample) -> usize {
        let next = if sample.dropped || sample.rtt > self.timeout {
            (limit as f64 * self.backoff) as usize
        } else if sample.in_flight.saturating_mul(2) >= limit {
            limit.saturating_add(1)
        } else {
            limit
        };
        next.clamp(self.min, self.max)
    }

    /// Only with a [`timeout`](Aimd::timeout): a plain AIMD reacts to failures alone.
    fn uses_rtt(&self) -> bool {
        self.timeout != Duration::MAX
    }

    /// A success within the timeout while mostly idle, or at the maximum already (AIMD
    /// keeps no state between samples).
    #[inline]
    fn ignores(&self, limit: usize, sample: &Sample) -> bool {
        if sample.dropped || limit > self.max || limit < self.min {
            return false;
        }
        (limit == self.max || sample.in_flight.saturating_mul(2) < limit)
            && sample.rtt <= self.timeout
    }
}

/// Gradient-based limit (Netflix's Gradient2): the ratio of a long-term latency average
/// to the latest latency, within `0.5..=1`, scales the limit, plus a fixed headroom
/// (`queue`), smoothed. Flat latency grows the limit by the headroom; latency above the
/// average shrinks it. A drop counts as latency at twice the average.
///
/// ```
/// use resilient::bulkhead::{Gradient2, LimitAlgorithm, Sample};
/// use std::time::Duration;
/// let mut g = Gradient2::new(20, 1, 200);
/// // calls that keep the limit busy, at a given latency
/// let at = |ms, limit| Sample { rtt: Duration::from_millis(ms), in_flight: limit, dropped: false };
/// let mut limit = g.initial();
/// for _ in 0..50 {
///     limit = g.update(limit, at(10, limit));
/// }
/// assert!(limit > 20, "flat latency grows the limit: {limit}");
/// let grown = limit;
/// for _ in 0..20 {
///     limit = g.update(limit, at(40, limit));
/// }
/// assert!(limit < grown, "rising latency shrinks it: {limit}");
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    initial: usize,
    min: usize,
    max: usize,
    queue: f64,
    smoothing: f64,
    tolerance: f64,
    window: f64,
    long_rtt: Option<f64>,
    /// The limit unrounded (smoothing moves it by fractions).
    estimate: f64,
}

impl Gradient2 {
    /// Starts at `initial` within `[min, max]`; headroom 4, smoothing 0.2, tolerance 1.5,
    /// a long-term average over about 600 samples.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            initial: initial.clamp(min, max),
            min,
            max,
            queue: 4.0,
            smoothing: 0.2,
            tolerance: 1.5,
            window: 600.0,
            long_rtt: None,
            estimate: 0.0,
        }
    }

    /// The headroom added to the scaled limit (default 4).
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue as f64;
        self
    }

    /// How far a new limit moves the current one, within `0.01..=1` (default 0.2).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = bounded(smoothing, 0.01, 1.0, 0.2);
        self
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial(&self) -> usize {
        self.initial
    }

    fn update(&mut self, limit: usize, sample: Sample) -> usize {
        let long = self.long_rtt.unwrap_or(sample.rtt.as_secs_f64());
        let short = if sample.dropped {
            long * 2.0
        } else {
            sample.rtt.as_secs_f64()
        };
        let mut long = long + (short - long) / self.window;
        // after a lasting change the average catches up faster
        if long > short * 2.0 {
            long *= 0.95;
        }
        self.long_rtt = Some(long);
        // mostly idle: no evidence about the limit
        if !sample.dropped && sample.in_flight.saturating_mul(2) < limit {
            return limit.clamp(self.min, self.max);
        }
        let gradient = if short <= 0.0 {
            1.0
        } else {
            (self.tolerance * long / short).clamp(0.5, 1.0)
        };
        // the unrounded estimate, unless the limit was changed from outside
        let current = if self.estimate.round() as usize == limit {
            self.estimate
        } else {
            limit as f64
        };
        let target = current * gradient + self.queue;
        let next = (current * (1.0 - self.smoothing) + target * self.smoothing)
            .clamp(self.min as f64, self.max as f64);
        self.estimate = next;
        (next.round() as usize).clamp(self.min, self.max)
    }
}

/// TCP Vegas applied to calls: the queue is estimated as `limit × (1 − best / rtt)`, where
/// `best` is the lowest latency seen. Below `3·log10(limit)` queued calls the limit grows,
/// above `6·log10(limit)` it shrinks; a drop shrinks it by `log10(limit)`.
///
/// ```
/// use resilient::bulkhead::{LimitAlgorithm, Sample, Vegas};
/// use std::time::Duration;
/// let mut v = Vegas::new(20, 1, 1000);
/// let at = |ms| Sample { rtt: Duration::from_millis(ms), in_flight: 20, dropped: false };
/// assert!(v.update(20, at(10)) > 20); // no queue at the best latency seen: grow
/// assert!(v.update(20, at(50)) < 20); // 80% of the limit queued: shrink
/// ```
#[derive(Debug, Clone)]
pub struct Vegas {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    best: Option<Duration>,
}

impl Vegas {
    /// Starts at `initial` within `[min, max]`, no smoothing.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            initial: initial.clamp(min, max),
            min,
            max,
            smoothing: 1.0,
            best: None,
        }
    }

    /// How far a new limit moves the current one, within `0.01..=1` (default 1: at once).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = bounded(smoothing, 0.01, 1.0, 1.0);
        self
    }
}

impl LimitAlgorithm for Vegas {
    fn initial(&self) -> usize {
        self.initial
    }

    fn update(&mut self, limit: usize, sample: Sample) -> usize {
        let current = limit.max(1) as f64;
        let log = current.log10().max(1.0);
        let next = if sample.dropped {
            current - log
        } else {
            let best = match self.best {
                Some(b) if b <= sample.rtt => b,
                _ => {
                    self.best = Some(sample.rtt);
                    sample.rtt
                }
            };
            if sample.in_flight.saturating_mul(2) < limit {
                return limit.clamp(self.min, self.max);
            }
            let rtt = sample.rtt.as_secs_f64();
            let queue = if rtt <= 0.0 {
                0.0
            } else {
                (current * (1.0 - best.as_secs_f64() / rtt)).ceil()
            };
            let (alpha, beta) = (3.0 * log, 6.0 * log);
            if queue <= log {
                current + beta
            } else if queue < alpha {
                current + log
            } else if queue > beta {
                current - log
            } else {
                current
            }
        };
        let smoothed = current * (1.0 - self.smoothing) + next * self.smoothing;
        (smoothed.max(0.0) as usize).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample {
            rtt: Duration::from_millis(ms),
            in_flight,
            dropped,
        }
    }

    #[test]
    fn aimd_follows_its_rule_exactly() {
        let mut a = Aimd::new(10, 2, 12).timeout(Duration::from_millis(100));
        let mut limit = a.initial();
        let mut seen = vec![];
        for sample in [
            s(5, 10, false),   // 11
            s(5, 11, false),   // 12
            s(5, 12, false),   // capped at 12
            s(500, 12, false), // slower than the timeout: 12 * 0.9 = 10
            s(5, 2, false),    // idle: 10
            s(5, 10, true),    // 9
            s(5, 9, true),     // 8
        ] {
            limit = a.update(limit, sample);
            seen.push(limit);
        }
        assert_eq!(seen, [11, 12, 12, 10, 10, 9, 8]);
    }

    #[test]
    fn the_algorithms_stay_within_bounds_on_any_sequence() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut algs: Vec<Box<dyn LimitAlgorithm>> = vec![
            Box::new(Aimd::new(5, 3, 40)),
            Box::new(Gradient2::new(5, 3, 40)),
            Box::new(Vegas::new(5, 3, 40).smoothing(0.5)),
        ];
        for alg in &mut algs {
            let mut limit = alg.initial();
            for _ in 0..10_000 {
                let rtt = match rng.u8(0..4) {
                    0 => 0,
                    1 => u64::MAX / 2_000_000,
                    _ => rng.u64(1..1000),
                };
                let sample = Sample {
                    rtt: Duration::from_millis(rtt),
                    in_flight: rng.usize(0..60),
                    dropped: rng.u8(0..10) == 0,
                };
                limit = alg.update(limit, sample);
                assert!((3..=40).contains(&limit), "{limit}");
            }
        }
    }

    /// A sample AIMD says it ignores leaves the limit as it is, on any sequence; and the
    /// idle and at-max successes are ignored.
    #[test]
    fn aimd_ignores_only_samples_that_change_nothing() {
        let mut rng = fastrand::Rng::with_seed(21);
        let mut ignored = 0;
        for aimd in [
            Aimd::new(5, 3, 40),
            Aimd::new(5, 3, 40).timeout(Duration::from_millis(100)),
        ] {
            let mut fed = aimd.clone();
            for _ in 0..20_000 {
                let limit = rng.usize(0..50);
                let sample = Sample {
                    rtt: Duration::from_millis(rng.u64(0..200)),
                    in_flight: rng.usize(0..60),
                    dropped: rng.u8(0..4) == 0,
                };
                if aimd.ignores(limit, &sample) {
                    ignored += 1;
                    assert_eq!(fed.update(limit, sample), limit, "{limit} {sample:?}");
                }
            }
        }
        assert!(ignored > 1000, "{ignored}");
        let aimd = Aimd::new(5, 3, 40);
        assert!(aimd.ignores(40, &s(1, 40, false)));
        assert!(aimd.ignores(10, &s(1, 4, false)));
        assert!(!aimd.ignores(10, &s(1, 5, false)));
        assert!(!aimd.ignores(2, &s(1, 0, false)), "below min: clamped up");
    }

    #[test]
    fn vegas_grows_at_the_best_latency_and_shrinks_under_queueing() {
        let mut v = Vegas::new(100, 1, 10_000);
        let mut limit = v.initial();
        // log10(100) = 2: no queue grows it by 6·2 = 12
        limit = v.update(limit, s(10, 100, false));
        assert_eq!(limit, 112);
        // queue = ceil(112 · (1 − 10/11)) = 11, between 3·log and 6·log: unchanged
        let log = (112f64).log10();
        assert!(11.0 > 3.0 * log && 11.0 <= 6.0 * log);
        assert_eq!(v.update(limit, s(11, 112, false)), 112);
        // a drop takes log10 off
        assert_eq!(v.update(112, s(10, 112, true)), 109);
        // idle: unchanged
        assert_eq!(v.update(112, s(50, 3, false)), 112);
    }

    #[test]
    fn gradient_settles_under_flat_latency_and_backs_off_when_it_rises() {
        let mut g = Gradient2::new(10, 1, 1000).smoothing(1.0);
        let mut limit = g.initial();
        // flat latency: each step adds the headroom (gradient 1)
        for expected in [14, 18, 22] {
            limit = g.update(limit, s(10, limit, false));
            assert_eq!(limit, expected);
        }
        // latency four times the average: gradient clamps at 0.5: 22 · 0.5 + 4
        limit = g.update(limit, s(40, limit, false));
        assert_eq!(limit, 15);
    }
}
