//! A/B tests of resilience strategies: route calls to pipeline A or B, measure both, and
//! say which is better only once the data shows it.
//!
//! An [`Experiment`] holds two pipelines and sends each call to one of them: a share of the
//! calls at random ([`Experiment::execute`]), or by a stable hash of a key
//! ([`Experiment::execute_keyed`]: the same user, tenant or request id always lands on the
//! same variant, in every process running the same experiment). For each variant it
//! records calls, successes, attempts, cost and a latency histogram, and
//! [`Experiment::report`] compares them:
//!
//! - success rate: a two-proportion z-test;
//! - mean latency: Welch's test on the histogram's mean and variance;
//! - each test at half the significance level (a Bonferroni correction, so that two tests
//!   together keep the false-positive rate at the chosen level);
//! - a [`Verdict`]: B better or A better (with the confidence), no difference, or not
//!   enough calls yet (with an estimate of how many are needed).
//!
//! Success decides first; latency decides only when the success rates do not differ.
//!
//! **Shadow mode** ([`Experiment::shadow`]) sends every call to A and lets B only watch:
//! B's guards are asked, without waiting, whether they would admit each call and attempt,
//! and are told A's outcomes, so B's breaker opens and its limiter fills as they would
//! have; B's retry policy is asked whether it would have retried each failed attempt. A's
//! results are returned untouched. [`Experiment::shadow_report`] says what B would have
//! done differently.
//!
//! ```
//! use resilient::experiment::{Experiment, Variant, Verdict};
//! use resilient::{Pipeline, Retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let a = Pipeline::builder().build().unwrap(); // no retry
//! let b = Pipeline::builder().retry(Retry::immediate().attempts(3)).build().unwrap();
//! let exp = Experiment::builder(a, b).b_share(0.5).seed(1).build().unwrap();
//!
//! let mut n = 0u32;
//! for _ in 0..2_000 {
//!     // a dependency that fails every other attempt
//!     let _ = exp
//!         .execute(|| {
//!             n += 1;
//!             let fail = n % 2 == 0;
//!             async move { if fail { Err("flaky") } else { Ok(()) } }
//!         })
//!         .await;
//! }
//! let report = exp.report();
//! assert!(report.b.success_rate > report.a.success_rate);
//! assert!(matches!(report.verdict, Verdict::Better { variant: Variant::B, .. }));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::context::Context;
use crate::engine::error::{ConfigError, Error};
use crate::engine::guard::{Guard, Permit, Rejection};
use crate::engine::outcome::{AllErrors, Classify, Outcome};
use crate::engine::random::{SeededRandom, SharedRandom, thread_random};
use crate::pipeline::Pipeline;

mod stats;

use stats::Recorder;
pub use stats::{Significance, VariantReport};

/// One of the two arms of an [`Experiment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The control (usually today's pipeline).
    A,
    /// The candidate.
    B,
}

/// What the data says about the two variants (see [`ExperimentReport::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// One variant is better: its success rate is significantly higher, or the success
    /// rates do not differ and its mean latency is significantly lower.
    Better {
        /// The better variant.
        variant: Variant,
        /// `1 - p` of the deciding test.
        confidence: f64,
        /// Which test decided.
        by: Metric,
    },
    /// Both variants have enough calls and neither test shows a difference.
    NoDifference,
    /// A variant has fewer calls than the experiment's minimum.
    NotEnoughData {
        /// Calls still needed by the variant with the fewest.
        more_calls: u64,
    },
}

/// The measure behind a [`Verdict::Better`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The share of calls that succeeded.
    SuccessRate,
    /// The mean call latency.
    Latency,
}

/// The comparison of two variants (see [`Experiment::report`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ExperimentReport {
    /// Variant A's measurements.
    pub a: VariantReport,
    /// Variant B's measurements.
    pub b: VariantReport,
    /// B's success rate minus A's, tested.
    pub success_rate: Significance,
    /// B's mean latency minus A's (in seconds), tested.
    pub latency: Significance,
    /// The overall answer.
    pub verdict: Verdict,
}

/// What a shadow pipeline would have done with the calls it watched (see
/// [`Experiment::shadow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShadowReport {
    /// Calls watched.
    pub calls: u64,
    /// Attempts watched (A's attempts).
    pub attempts: u64,
    /// Calls or attempts the shadow's breaker would have rejected (open circuit).
    pub would_reject_circuit_open: u64,
    /// ... its rate limiter would have rejected (or made wait).
    pub would_reject_rate_limited: u64,
    /// ... its bulkhead would have rejected (or queued).
    pub would_reject_bulkhead_full: u64,
    /// ... another guard would have rejected.
    pub would_reject_other: u64,
    /// Attempts of A after which the shadow's retry policy would have retried (within its
    /// attempt count, and judged worth retrying by its classifier).
    pub would_retry: u64,
    /// Attempts that A retried and the shadow would not have (out of attempts, or judged
    /// not worth retrying).
    pub would_not_retry: u64,
}

/// Routes calls between two pipelines and compares them (see the [module docs](self)).
pub struct Experiment<CA = AllErrors, CB = AllErrors> {
    a: Pipeline<CA>,
    b: Pipeline<CB>,
    mode: Mode,
    /// The share of calls sent to B, in millionths.
    b_share: u64,
    salt: u64,
    alpha: f64,
    min_calls: u64,
    attempt_cost: [u64; 2],
    random: SharedRandom,
    clock: SharedClock,
    stats: [Recorder; 2],
    shadow: ShadowCounters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Split,
    Shadow,
}

/// Builds an [`Experiment`].
pub struct ExperimentBuilder<CA = AllErrors, CB = AllErrors> {
    a: Pipeline<CA>,
    b: Pipeline<CB>,
    mode: Mode,
    b_share: f64,
    salt: u64,
    alpha: f64,
    min_calls: u64,
    attempt_cost: [u64; 2],
    random: Option<SharedRandom>,
    clock: Option<SharedClock>,
}

impl<CA, CB> fmt::Debug for ExperimentBuilder<CA, CB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExperimentBuilder")
            .field("b_share", &self.b_share)
            .field("alpha", &self.alpha)
            .field("min_calls", &self.min_calls)
            .finish_non_exhaustive()
    }
}

impl<CA, CB> fmt::Debug for Experiment<CA, CB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Experiment")
            .field("mode", &self.mode)
            .field("b_share", &(self.b_share as f64 / 1e6))
            .finish_non_exhaustive()
    }
}

impl<CA, CB> Experiment<CA, CB> {
    /// An experiment splitting calls between `a` and `b` (half each by default).
    ///
    /// ```
    /// use resilient::experiment::Experiment;
    /// use resilient::Pipeline;
    /// let a = Pipeline::builder().build().unwrap();
    /// let b = Pipeline::builder().build().unwrap();
    /// let err = Experiment::builder(a, b).b_share(1.5).build().unwrap_err();
    /// assert_eq!(err.field(), "b_share");
    /// ```
    pub fn builder(a: Pipeline<CA>, b: Pipeline<CB>) -> ExperimentBuilder<CA, CB> {
        ExperimentBuilder {
            a,
            b,
            mode: Mode::Split,
            b_share: 0.5,
            salt: 0,
            alpha: 0.05,
            min_calls: 100,
            attempt_cost: [1, 1],
            random: None,
            clock: None,
        }
    }

    /// A shadow experiment: every call goes to `a`; `shadow` only watches (see the
    /// [module docs](self)).
    ///
    /// ```
    /// use resilient::experiment::Experiment;
    /// use resilient::circuit::CircuitBreaker;
    /// use resilient::Pipeline;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let live = Pipeline::builder().build().unwrap();
    /// let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    /// let candidate = Pipeline::builder().circuit_breaker(breaker.clone()).build().unwrap();
    /// let exp = Experiment::shadow(live, candidate).build().unwrap();
    /// for _ in 0..10 {
    ///     // every call still reaches the dependency: the shadow changes no outcome
    ///     assert!(exp.execute(|| async { Err::<(), _>("down") }).await.is_err());
    /// }
    /// let s = exp.shadow_report();
    /// assert_eq!(s.calls, 10);
    /// assert_eq!(s.would_reject_circuit_open, 7); // open after the third failure
    /// # }
    /// ```
    pub fn shadow(a: Pipeline<CA>, shadow: Pipeline<CB>) -> ExperimentBuilder<CA, CB> {
        let mut b = Self::builder(a, shadow);
        b.mode = Mode::Shadow;
        b.b_share = 0.0;
        b
    }

    /// The variant a call with this key goes to (stable for a given salt and share).
    ///
    /// ```
    /// use resilient::experiment::{Experiment, Variant};
    /// use resilient::Pipeline;
    /// let p = || Pipeline::builder().build().unwrap();
    /// let exp = Experiment::builder(p(), p()).b_share(0.3).salt(42).build().unwrap();
    /// let v = exp.variant_for("user-17");
    /// assert_eq!(exp.variant_for("user-17"), v); // always the same
    /// let to_b = (0..10_000).filter(|i| exp.variant_for(i) == Variant::B).count();
    /// assert!((2_700..3_300).contains(&to_b));
    /// ```
    pub fn variant_for<K: Hash + ?Sized>(&self, key: &K) -> Variant {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325 ^ self.salt.wrapping_mul(0x100_0000_01b3));
        key.hash(&mut h);
        self.pick(mix(h.0))
    }

    fn pick(&self, draw: u64) -> Variant {
        if self.mode == Mode::Shadow {
            return Variant::A;
        }
        // the draw's top bits, scaled to millionths
        if (((draw >> 11) as u128 * 1_000_000) >> 53) < self.b_share as u128 {
            Variant::B
        } else {
            Variant::A
        }
    }

    /// Variant `v`'s measurements so far.
    pub fn variant_report(&self, v: Variant) -> VariantReport {
        self.stats[v as usize].report(self.attempt_cost[v as usize])
    }

    /// Both variants compared, with significance tests and a verdict.
    pub fn report(&self) -> ExperimentReport {
        let a = self.variant_report(Variant::A);
        let b = self.variant_report(Variant::B);
        let half = self.alpha / 2.0;
        let success_rate = stats::two_proportions(&a, &b, half);
        let latency = stats::welch(&self.stats[0].latency, &self.stats[1].latency, half);
        let fewest = a.calls.min(b.calls);
        let verdict = if fewest < self.min_calls {
            Verdict::NotEnoughData {
                more_calls: self.min_calls - fewest,
            }
        } else if success_rate.significant {
            Verdict::Better {
                variant: if success_rate.difference > 0.0 {
                    Variant::B
                } else {
                    Variant::A
                },
                confidence: success_rate.confidence,
                by: Metric::SuccessRate,
            }
        } else if latency.significant {
            Verdict::Better {
                variant: if latency.difference < 0.0 {
                    Variant::B
                } else {
                    Variant::A
                },
                confidence: latency.confidence,
                by: Metric::Latency,
            }
        } else {
            Verdict::NoDifference
        };
        ExperimentReport {
            a,
            b,
            success_rate,
            latency,
            verdict,
        }
    }

    /// What the shadow would have done (all zero outside shadow mode).
    pub fn shadow_report(&self) -> ShadowReport {
        self.shadow.report()
    }
}

impl<CA, CB> ExperimentBuilder<CA, CB> {
    /// The share of calls sent to B, in `[0, 1]` (default 0.5; ignored in shadow mode).
    pub fn b_share(mut self, share: f64) -> Self {
        self.b_share = share;
        self
    }

    /// Salts the key hash of [`Experiment::execute_keyed`]: a new salt reshuffles which
    /// keys go to B (default 0).
    pub fn salt(mut self, salt: u64) -> Self {
        self.salt = salt;
        self
    }

    /// The significance level of the verdict, in `(0, 0.5]` (default 0.05).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Calls each variant needs before a verdict is given (default 100, at least 2).
    pub fn min_calls(mut self, calls: u64) -> Self {
        self.min_calls = calls;
        self
    }

    /// The cost of one attempt of `variant` (default 1 unit each: the report's cost is then
    /// the attempt count). Set it to compare, say, a cheap and an expensive model.
    pub fn attempt_cost(mut self, variant: Variant, cost: u64) -> Self {
        self.attempt_cost[variant as usize] = cost;
        self
    }

    /// Draws the random split from a [`SeededRandom`] with this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.random = Some(Arc::new(SeededRandom::new(seed)));
        self
    }

    /// Draws the random split from this source (default: thread-local randomness).
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = Some(random);
        self
    }

    /// Measures latency on this clock (default: the system clock, which follows tokio's
    /// paused time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the experiment.
    pub fn build(self) -> Result<Experiment<CA, CB>, ConfigError> {
        if !(self.b_share.is_finite() && (0.0..=1.0).contains(&self.b_share)) {
            return Err(ConfigError::new(
                "b_share",
                format!("must be a share between 0 and 1, got {}", self.b_share),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(ConfigError::new(
                "alpha",
                format!("must be in (0, 0.5], got {}", self.alpha),
            ));
        }
        if self.min_calls < 2 {
            return Err(ConfigError::new(
                "min_calls",
                "must be at least 2 (a variance needs two calls)",
            ));
        }
        Ok(Experiment {
            a: self.a,
            b: self.b,
            mode: self.mode,
            b_share: (self.b_share * 1e6).round() as u64,
            salt: self.salt,
            alpha: self.alpha,
            min_calls: self.min_calls,
            attempt_cost: self.attempt_cost,
            random: self.random.unwrap_or_else(thread_random),
            clock: self.clock.unwrap_or_else(system_clock),
            stats: [Recorder::default(), Recorder::default()],
            shadow: ShadowCounters::default(),
        })
    }
}

impl<CA: Send + Sync + 'static, CB: Send + Sync + 'static> Experiment<CA, CB> {
    /// Runs `op` through a variant picked at random by the B share (through A in shadow
    /// mode), and records how it went.
    pub async fn execute<T, E, F, Fut>(&self, op: F) -> Result<T, Error<E>>
    where
        CA: Classify<T, E>,
        CB: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let v = self.pick(self.random.next_u64());
        self.run(v, op).await
    }

    /// Runs `op` through the variant its key hashes to (see [`Experiment::variant_for`]).
    pub async fn execute_keyed<K, T, E, F, Fut>(&self, key: &K, op: F) -> Result<T, Error<E>>
    where
        K: Hash + ?Sized,
        CA: Classify<T, E>,
        CB: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let v = self.variant_for(key);
        self.run(v, op).await
    }

    async fn run<T, E, F, Fut>(&self, v: Variant, mut op: F) -> Result<T, Error<E>>
    where
        CA: Classify<T, E>,
        CB: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let attempts = AtomicU64::new(0);
        let start = self.clock.now();
        let result = match (v, self.mode) {
            (Variant::B, _) => {
                self.b
                    .execute(|| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        op()
                    })
                    .await
            }
            (Variant::A, Mode::Split) => {
                self.a
                    .execute(|| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        op()
                    })
                    .await
            }
            (Variant::A, Mode::Shadow) => self.run_shadowed(&attempts, op).await,
        };
        let elapsed = self.clock.now().saturating_sub(start);
        self.stats[v as usize].record(result.is_ok(), attempts.load(Ordering::Relaxed), elapsed);
        result
    }

    async fn run_shadowed<T, E, F, Fut>(
        &self,
        attempts: &AtomicU64,
        mut op: F,
    ) -> Result<T, Error<E>>
    where
        CA: Classify<T, E>,
        CB: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (call_guards, attempt_guards) = self.b.guards();
        let ctx = Context::new();
        self.shadow.calls.fetch_add(1, Ordering::Relaxed);
        let mut call_permits = self.shadow.dry_run(call_guards, &ctx);
        let call_start = self.clock.now();
        let shadow_attempts = self.b.max_attempts();
        let a_attempts = self.a.max_attempts();
        let classify = self.b.classifier();
        let a_classify = self.a.classifier();
        let result = self
            .a
            .execute(|| {
                let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
                self.shadow.attempts.fetch_add(1, Ordering::Relaxed);
                let permits = self.shadow.dry_run(attempt_guards, &ctx);
                let fut = op();
                async move {
                    let start = self.clock.now();
                    let r = fut.await;
                    let outcome = classify.classify(&r);
                    let took = self.clock.now().saturating_sub(start);
                    for p in permits {
                        p.record(outcome, took);
                    }
                    let b_retries =
                        n < u64::from(shadow_attempts) && classify.should_retry(&r, outcome);
                    let a_outcome = a_classify.classify(&r);
                    let a_retries =
                        n < u64::from(a_attempts) && a_classify.should_retry(&r, a_outcome);
                    if b_retries {
                        self.shadow.would_retry.fetch_add(1, Ordering::Relaxed);
                    } else if a_retries {
                        self.shadow.would_not_retry.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                }
            })
            .await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        };
        let took = self.clock.now().saturating_sub(call_start);
        for p in call_permits.drain(..) {
            p.record(outcome, took);
        }
        result
    }
}

#[derive(Debug, Default)]
struct ShadowCounters {
    calls: AtomicU64,
    attempts: AtomicU64,
    circuit_open: AtomicU64,
    rate_limited: AtomicU64,
    bulkhead_full: AtomicU64,
    other: AtomicU64,
    would_retry: AtomicU64,
    would_not_retry: AtomicU64,
}

impl ShadowCounters {
    /// Asks each guard, without waiting, whether it would admit; counts the first refusal
    /// and stops there (as the real pipeline would). The permits taken are kept so that the
    /// shadow's guards see A's outcome.
    fn dry_run<'g>(&self, guards: &'g [Arc<dyn Guard>], ctx: &Context) -> Vec<Permit<'g>> {
        let mut permits = Vec::with_capacity(guards.len());
        for g in guards {
            match g.acquire_now(ctx) {
                Ok(p) => permits.push(p),
                Err(r) => {
                    let counter = match r {
                        Rejection::CircuitOpen { .. } => &self.circuit_open,
                        Rejection::RateLimited { .. } => &self.rate_limited,
                        Rejection::BulkheadFull => &self.bulkhead_full,
                        _ => &self.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        permits
    }

    fn report(&self) -> ShadowReport {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ShadowReport {
            calls: l(&self.calls),
            attempts: l(&self.attempts),
            would_reject_circuit_open: l(&self.circuit_open),
            would_reject_rate_limited: l(&self.rate_limited),
            would_reject_bulkhead_full: l(&self.bulkhead_full),
            would_reject_other: l(&self.other),
            would_retry: l(&self.would_retry),
            would_not_retry: l(&self.would_not_retry),
        }
    }
}

/// FNV-1a: a hash that is the same in every process and build, so that a key's variant is.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// A final avalanche (SplitMix64's), so that FNV's weak low bits spread to the top ones.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
