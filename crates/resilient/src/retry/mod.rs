//! Retry: how many attempts, how long to wait between them, and when to stop.
//!
//! The retry loop itself runs inside the pipeline engine (it has to call the operation
//! again); this module holds its configuration, the backoff schedules, jitter, retry
//! budgets and the retry event.

mod backoff;
mod budget;
mod cost;

pub use backoff::{Backoff, Jitter};
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use cost::{CostBudget, CostBudgetBuilder, CostExhausted, ExhaustedHook};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::engine::attempt::{FailedAttempt, RetryEvent, RetryHook, RetryReason};

use crate::engine::error::ConfigError;
use crate::engine::random::{SharedRandom, thread_random};

/// Retry configuration.
///
/// ```
/// use resilient::{Jitter, Retry};
/// use std::time::Duration;
///
/// let retry = Retry::exponential(Duration::from_millis(100))
///     .attempts(4)
///     .factor(2.0)
///     .max_delay(Duration::from_secs(2))
///     .jitter(Jitter::Full)
///     .max_elapsed(Duration::from_secs(10));
/// assert_eq!(retry.max_attempts(), 4);
/// ```
#[derive(Clone)]
pub struct Retry {
    pub(crate) max_attempts: u32,
    /// `attempts(..)` was given a value that does not fit a `u32` (reported at build).
    attempts_out_of_range: bool,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) max_delay: Duration,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) max_server_delay: Duration,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) cost_budget: Option<CostBudget>,
    pub(crate) retry_rejected: bool,
    pub(crate) retry_on_timeout: bool,
    pub(crate) on_retry: Option<RetryHook>,
    pub(crate) rng: SharedRandom,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("max_delay", &self.max_delay)
            .field("max_elapsed", &self.max_elapsed)
            .field("max_server_delay", &self.max_server_delay)
            .field("budget", &self.budget.is_some())
            .field("cost_budget", &self.cost_budget)
            .field("retry_rejected", &self.retry_rejected)
            .field("retry_on_timeout", &self.retry_on_timeout)
            .finish_non_exhaustive()
    }
}

/// The retry most services want: 3 attempts, exponential backoff from 100 ms (doubling,
/// each delay at most 60 s) with full jitter (each wait uniform in `[0, delay]`, which
/// spreads out callers that failed together).
///
/// ```
/// use resilient::{Pipeline, Retry};
/// let p = Pipeline::builder().retry(Retry::default()).build().unwrap();
/// assert_eq!(Retry::default().max_attempts(), 3);
/// # drop(p);
/// ```
impl Default for Retry {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100)).jitter(Jitter::Full)
    }
}

impl Retry {
    fn with_backoff(backoff: Backoff) -> Self {
        Self {
            max_attempts: 3,
            attempts_out_of_range: false,
            backoff,
            jitter: Jitter::None,
            max_delay: Duration::from_secs(60),
            max_elapsed: None,
            max_server_delay: Duration::from_secs(60),
            budget: None,
            cost_budget: None,
            retry_rejected: false,
            retry_on_timeout: true,
            on_retry: None,
            rng: thread_random(),
        }
    }

    /// The same delay before every retry. 3 attempts by default.
    pub fn constant(delay: Duration) -> Self {
        Self::with_backoff(Backoff::Constant(delay))
    }

    /// Retries at once (no delay). Async calls stay fair to the runtime: from a call's
    /// second retry on, each spends a unit of the task's tokio coop budget and yields when
    /// it is spent, so an operation that fails without awaiting cannot hold the thread (a
    /// call's first retry spends none: the call has done one attempt's work before it).
    ///
    /// ```
    /// use resilient::{Error, Pipeline, Retry};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let p = Pipeline::builder().retry(Retry::immediate().attempts(3)).build().unwrap();
    /// let r = p.execute(|| async { Err::<(), _>("down") }).await;
    /// assert!(matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })));
    /// # }
    /// ```
    pub fn immediate() -> Self {
        Self::constant(Duration::ZERO)
    }

    /// `initial + step * (n - 1)` before retry `n`.
    pub fn linear(initial: Duration, step: Duration) -> Self {
        Self::with_backoff(Backoff::Linear { initial, step })
    }

    /// `initial * 2^(n - 1)` before retry `n` (change the factor with [`Retry::factor`]).
    pub fn exponential(initial: Duration) -> Self {
        Self::with_backoff(Backoff::Exponential {
            initial,
            factor: 2.0,
        })
    }

    /// Any schedule; `f(n)` returning `None` stops retrying. For error-aware delays, see
    /// [`crate::WithDelay`].
    pub fn custom(f: impl Fn(u32) -> Option<Duration> + Send + Sync + 'static) -> Self {
        Self::with_backoff(Backoff::Custom(Arc::new(f)))
    }

    /// Total attempts including the first (default 3). Any integer type: a value that is
    /// not between 1 and `u32::MAX` fails the pipeline's `build()` (field
    /// `retry.attempts`).
    ///
    /// ```
    /// use resilient::{Pipeline, Retry};
    /// let n: usize = 5;
    /// assert_eq!(Retry::immediate().attempts(n).max_attempts(), 5);
    /// let err = Pipeline::builder().retry(Retry::immediate().attempts(-1)).build().unwrap_err();
    /// assert_eq!(err.field(), "retry.attempts");
    /// ```
    pub fn attempts<N: TryInto<u32>>(mut self, n: N) -> Self {
        match n.try_into() {
            Ok(n) => {
                self.max_attempts = n;
                self.attempts_out_of_range = false;
            }
            Err(_) => {
                self.max_attempts = 0;
                self.attempts_out_of_range = true;
            }
        }
        self
    }

    /// The growth factor of an exponential backoff (ignored otherwise).
    pub fn factor(mut self, factor: f64) -> Self {
        if let Backoff::Exponential { factor: f, .. } = &mut self.backoff {
            *f = factor;
        }
        self
    }

    /// The jitter applied to each delay (default none).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Caps each delay (default 60 s).
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = cap;
        self
    }

    /// Stops retrying when the time since the first attempt, plus the next wait, would
    /// exceed `limit`.
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// Caps a server-directed delay (see [`crate::Classify::retry_after`]); a longer request
    /// stops retrying. Default 60 s.
    pub fn max_server_delay(mut self, cap: Duration) -> Self {
        self.max_server_delay = cap;
        self
    }

    /// Shares a retry budget: each retry needs a token from it.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Charges each retry's cost to `budget` (per pipeline or per call key) and stops
    /// retrying with `Error::CostBudgetExhausted` when it cannot pay (see [`CostBudget`]).
    /// Works beside [`Retry::budget`]: a retry must pass both.
    ///
    /// ```
    /// use resilient::retry::CostBudget;
    /// use resilient::{Pipeline, Retry};
    /// let per_tenant = CostBudget::builder(1_000, 10.0).per_key(10_000).build().unwrap();
    /// let p = Pipeline::builder().retry(Retry::default().cost_budget(per_tenant)).build().unwrap();
    /// # drop(p);
    /// ```
    pub fn cost_budget(mut self, budget: CostBudget) -> Self {
        self.cost_budget = Some(budget);
        self
    }

    /// Whether attempts rejected by a per-attempt guard (an open breaker, a rate limiter)
    /// are retried (default `false`). A rejection's `retry_after` directs the wait.
    pub fn retry_rejected(mut self, yes: bool) -> Self {
        self.retry_rejected = yes;
        self
    }

    /// Whether an attempt that ran into the operation timeout is retried (default `true`).
    ///
    /// A timed-out attempt may still have taken effect (the server may have processed the
    /// request after the client gave up): for operations that are not idempotent, pass
    /// `false`, and a timeout ends the call with [`crate::Error::Timeout`] while errors are
    /// still retried.
    ///
    /// ```
    /// use resilient::{Retry, Timeout, Pipeline};
    /// use std::time::Duration;
    /// let charge_card = Pipeline::builder()
    ///     .retry(Retry::exponential(Duration::from_millis(100)).retry_on_timeout(false))
    ///     .timeout(Timeout::operation(Duration::from_secs(2)))
    ///     .build()
    ///     .unwrap();
    /// # let _ = charge_card;
    /// ```
    pub fn retry_on_timeout(mut self, yes: bool) -> Self {
        self.retry_on_timeout = yes;
        self
    }

    /// A hook called before each retry wait, with the attempt, the delay and the reason.
    ///
    /// This hook is untyped (a `Retry` serves any operation); to see the error itself, use
    /// the typed [`crate::PipelineBuilder::on_retry`]. When both are set, this one runs first.
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// The random source for jitter (inject a [`crate::SeededRandom`] in tests).
    pub fn rng(mut self, rng: SharedRandom) -> Self {
        self.rng = rng;
        self
    }

    /// Total attempts including the first.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the retry that follows failed attempt `attempt`, or `None` to stop.
    /// `server` is a delay the failed result asked for.
    #[inline]
    pub(crate) fn next_delay(
        &self,
        attempt: u32,
        previous: Option<Duration>,
        server: Option<Duration>,
    ) -> Option<Duration> {
        if let Some(d) = server {
            return (d <= self.max_server_delay).then_some(d);
        }
        // The common plain schedule (a constant delay, no jitter) without the general
        // path's calls.
        if let (Backoff::Constant(d), Jitter::None) = (&self.backoff, self.jitter) {
            return Some((*d).min(self.max_delay));
        }
        self.scheduled_delay(attempt, previous)
    }

    /// [`Retry::next_delay`] by the backoff schedule and the jitter.
    #[inline(never)]
    fn scheduled_delay(&self, attempt: u32, previous: Option<Duration>) -> Option<Duration> {
        let base = self.backoff.delay(attempt)?;
        Some(self.jitter.apply(
            base,
            self.backoff.initial(),
            previous,
            self.max_delay,
            &*self.rng,
        ))
    }

    /// The least total time the waits of a full run of attempts can take, summed only as
    /// far as needed to compare it with `limit`: the result is at least `limit` exactly
    /// when the plan's least total is; below `limit` it may be a lower bound.
    pub(crate) fn min_total_delay(&self, limit: Duration) -> Duration {
        /// Steps summed at most: a custom schedule is checked over its first million
        /// retries; a built-in one is undecided past that only in contrived cases (a factor
        /// barely above 1 from a nanosecond), which are accepted.
        const MAX_STEPS: u32 = 1_000_000;
        let retries = self.max_attempts.saturating_sub(1);
        let initial = self.backoff.initial().min(self.max_delay);
        let least = |n: u32| {
            let base = self.backoff.delay(n)?.min(self.max_delay);
            Some(self.jitter.min_of(base, initial))
        };
        let mut total = Duration::ZERO;
        if let Backoff::Custom(_) = self.backoff {
            for n in 1..=retries.min(MAX_STEPS) {
                let Some(wait) = least(n) else {
                    break;
                };
                total = total.saturating_add(wait);
                if total >= limit {
                    break;
                }
            }
            return total;
        }
        // Built-in schedules never shrink, nor does a jitter's least delay as its base
        // grows: every later wait is at least the current one and at most the least delay
        // of a capped base. Those bounds decide most plans within a few steps.
        let most = self.jitter.min_of(self.max_delay, initial);
        for n in 1..=retries {
            let wait = least(n).unwrap_or(Duration::ZERO);
            total = total.saturating_add(wait);
            let left = retries - n;
            let low = total.saturating_add(wait.saturating_mul(left));
            if low >= limit || wait >= most || n >= MAX_STEPS {
                return low;
            }
            if total.saturating_add(most.saturating_mul(left)) < limit {
                return low; // even waits all at the cap stay below `limit`
            }
        }
        total
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.attempts_out_of_range {
            return Err(ConfigError::new(
                "retry.attempts",
                format!(
                    "must be between 1 and {} (got a value out of that range)",
                    u32::MAX
                ),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "retry.attempts",
                "must be at least 1 (got 0)",
            ));
        }
        if let Backoff::Exponential { factor, .. } = self.backoff
            && !(factor >= 1.0 && factor.is_finite())
        {
            return Err(ConfigError::new(
                "retry.factor",
                format!("must be a finite number >= 1 (got {factor})"),
            ));
        }
        if let Jitter::Proportional(p) = self.jitter
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ConfigError::new(
                "retry.jitter",
                format!("proportional jitter must be within 0..=1 (got {p})"),
            ));
        }
        if self.max_elapsed == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "retry.max_elapsed",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Retry;

    /// The constant, unjittered schedule's shortcut gives what the general path gives:
    /// the delay, capped by `max_delay`, on every retry; a server's delay still wins.
    #[test]
    fn a_constant_delay_takes_the_shortcut_to_the_same_answer() {
        let ms = Duration::from_millis;
        for (delay, cap) in [
            (ms(0), ms(60_000)),
            (ms(7), ms(60_000)),
            (ms(7), ms(5)),
            (Duration::MAX, ms(1)),
        ] {
            let retry = Retry::constant(delay).max_delay(cap);
            for attempt in [1, 2, 9, u32::MAX] {
                for previous in [None, Some(ms(3))] {
                    let general = retry.scheduled_delay(attempt, previous);
                    assert_eq!(general, Some(delay.min(cap)));
                    assert_eq!(retry.next_delay(attempt, previous, None), general);
                }
            }
            assert_eq!(retry.next_delay(1, None, Some(ms(2))), Some(ms(2)));
        }
    }
}
