//! Hedging: when a call is slow, start another attempt of it without cancelling the first;
//! the first acceptable result wins and every other attempt is dropped at once (in the same
//! poll). For idempotent operations only: several attempts of one call may reach the
//! dependency.
//!
//! Modes:
//! - **delayed** (the default): a hedge starts each time `delay` passes without an
//!   acceptable result, up to `max_hedges`;
//! - **percentile**: delayed, by a quantile of recent winning attempts' latencies
//!   ([`Hedge::percentile`]), so that the delay follows the dependency;
//! - **parallel**: every attempt starts at once;
//! - **fallback**: the next attempt starts only after the previous one failed (no timer).
//!
//! A [`RetryBudget`] bounds hedges as a share of calls: each call deposits, each hedge
//! withdraws, and a hedge the budget refuses is not started. Events report hedges started
//! and which attempt won.
//!
//! [`Hedge::call`] hedges any operation on its own; in a pipeline, the builder's
//! [`hedge`](crate::PipelineBuilder::hedge) step makes hedges attempts of the pipeline
//! (each passes the per-attempt guards and operation timeout, and draws from the retry
//! budget), and `#[resilient::hedge(..)]` does the same for a function.
//!
//! ```
//! use resilient::hedge::Hedge;
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let hedge = Hedge::delayed(Duration::from_millis(50)).max_hedges(1).build().unwrap();
//! // the first attempt hangs; the hedge started after 50 ms answers
//! let r = hedge
//!     .call(|attempt| async move {
//!         if attempt == 0 {
//!             tokio::time::sleep(Duration::from_secs(10)).await;
//!         }
//!         Ok::<_, ()>(attempt)
//!     })
//!     .await;
//! assert_eq!(r.unwrap(), 1);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::engine::error::{ConfigError, Error};
use crate::retry::RetryBudget;

mod latency;
#[cfg(feature = "tower")]
mod layer;

use self::latency::{Latencies, Percentile};

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::layer::{HedgeLayer, HedgeService};

/// When hedges start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Delayed(Duration),
    /// Delayed by a percentile of recent winning attempts' latencies.
    Percentile(Percentile),
    Parallel,
    Fallback,
}

/// What happened to a hedged call: a hedge started (`attempt` ≥ 1), or an attempt won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HedgeEvent {
    /// Attempt `attempt` (1 for the first hedge) started.
    Started {
        /// The attempt's number (0 is the original call).
        attempt: u32,
    },
    /// A hedge was due but the retry budget refused it.
    Refused {
        /// The attempt that did not start.
        attempt: u32,
    },
    /// Attempt `attempt` gave the result; every other attempt was dropped.
    Won {
        /// The winning attempt's number (0 is the original call).
        attempt: u32,
    },
}

type Observer = Arc<dyn Fn(&HedgeEvent) + Send + Sync>;

/// A hedging policy. A cheap handle: clones share the budget, the observer and the learned
/// latencies. Built by [`Hedge::delayed`], [`Hedge::percentile`], [`Hedge::parallel`] or
/// [`Hedge::fallback`].
#[derive(Clone)]
pub struct Hedge {
    mode: Mode,
    max_hedges: u32,
    budget: Option<Arc<RetryBudget>>,
    observer: Option<Observer>,
    /// The latencies a percentile delay learns from (percentile mode only).
    latencies: Option<Arc<Latencies>>,
    /// No budget, no observer and no latencies: a call that wins at once reports nothing.
    quiet: bool,
}

impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("mode", &self.mode)
            .field("max_hedges", &self.max_hedges)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Hedge`].
#[derive(Clone)]
pub struct HedgeBuilder {
    mode: Mode,
    max_hedges: u32,
    budget: Option<Arc<RetryBudget>>,
    observer: Option<Observer>,
}

impl fmt::Debug for HedgeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBuilder")
            .field("mode", &self.mode)
            .field("max_hedges", &self.max_hedges)
            .finish_non_exhaustive()
    }
}

impl Hedge {
    fn builder(mode: Mode) -> HedgeBuilder {
        HedgeBuilder {
            mode,
            max_hedges: 1,
            budget: None,
            observer: None,
        }
    }

    /// A hedge each time `delay` passes without an acceptable result (one hedge unless
    /// [`HedgeBuilder::max_hedges`]).
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use std::time::Duration;
    /// let h = Hedge::delayed(Duration::from_millis(100)).max_hedges(2).build().unwrap();
    /// # let _ = h;
    /// ```
    pub fn delayed(delay: Duration) -> HedgeBuilder {
        Self::builder(Mode::Delayed(delay))
    }

    /// A hedge each time the `quantile` (in `(0, 1]`, say 0.95) of recent latencies passes
    /// without an acceptable result: the delay follows the dependency. The latencies are
    /// those of the last 256 winning attempts (a call answered within its first poll counts
    /// as 0); `initial` is the delay until 20 are known. The learned delay stays within
    /// [`delay_bounds`](HedgeBuilder::delay_bounds) (default 1 ms to 1 minute).
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let hedge = Hedge::percentile(0.9, Duration::from_millis(500)).build().unwrap();
    /// assert_eq!(hedge.current_delay(), Some(Duration::from_millis(500)));
    /// // calls answering in 10 ms teach it its delay
    /// for _ in 0..20 {
    ///     let r = hedge
    ///         .call(|_| async {
    ///             tokio::time::sleep(Duration::from_millis(10)).await;
    ///             Ok::<_, ()>(())
    ///         })
    ///         .await;
    ///     assert!(r.is_ok());
    /// }
    /// assert_eq!(hedge.current_delay(), Some(Duration::from_millis(10)));
    /// # }
    /// ```
    pub fn percentile(quantile: f64, initial: Duration) -> HedgeBuilder {
        // out of range (NaN included) is caught by `build`
        let ppm = if quantile > 0.0 && quantile <= 1.0 {
            (quantile * 1e6).round() as u32
        } else {
            0
        };
        Self::builder(Mode::Percentile(Percentile {
            ppm,
            initial,
            min: Duration::from_millis(1),
            max: Duration::from_secs(60),
        }))
    }

    /// The delay before the next hedge of a call starting now: the fixed delay, or the
    /// percentile's current value; `None` in parallel and fallback modes.
    pub fn current_delay(&self) -> Option<Duration> {
        self.delay()
    }

    /// Every attempt at once (the original and `max_hedges` more).
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// let h = Hedge::parallel().max_hedges(2).build().unwrap();
    /// # let _ = h;
    /// ```
    pub fn parallel() -> HedgeBuilder {
        Self::builder(Mode::Parallel)
    }

    /// The next attempt only once the previous one failed (a retry without backoff that
    /// keeps no attempt waiting).
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// let h = Hedge::fallback().max_hedges(2).build().unwrap();
    /// # let _ = h;
    /// ```
    pub fn fallback() -> HedgeBuilder {
        Self::builder(Mode::Fallback)
    }

    /// Runs `op(attempt)` (attempt 0 first, then each hedge) as configured: the first `Ok`
    /// wins and the other attempts are dropped at once; an `Err` is acceptable only when
    /// every started attempt failed and no hedge is left to start, and then the last
    /// failure is returned (`Error::Inner`).
    pub async fn call<T, E, F, Fut>(&self, mut op: F) -> Result<T, Error<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let timed = self.latencies.is_some();
        let started = || timed.then(tokio::time::Instant::now);
        let mut running: Vec<(u32, Option<tokio::time::Instant>, Pin<Box<Fut>>)> =
            vec![(0, started(), Box::pin(op(0)))];
        let mut next = 1u32;
        if self.mode == Mode::Parallel {
            while next <= self.max_hedges && self.may_start(next) {
                running.push((next, started(), Box::pin(op(next))));
                next += 1;
            }
        }
        let mut timer = match self.delay() {
            Some(d) if self.max_hedges > 0 => Some(Box::pin(tokio::time::sleep(d))),
            _ => None,
        };
        loop {
            // poll every running attempt; a winner drops the others with this frame
            let step = std::future::poll_fn(|cx: &mut TaskContext<'_>| {
                let mut i = 0;
                while i < running.len() {
                    if let Poll::Ready(r) = running[i].2.as_mut().poll(cx) {
                        let (attempt, t0, _) = running.swap_remove(i);
                        return Poll::Ready(Step::Done(attempt, t0, r));
                    }
                    i += 1;
                }
                if let Some(t) = timer.as_mut()
                    && t.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Step::Due);
                }
                Poll::Pending
            })
            .await;
            match step {
                Step::Done(attempt, t0, Ok(v)) => {
                    running.clear();
                    self.won_after(attempt, t0);
                    return Ok(v);
                }
                Step::Done(_, _, Err(e)) => {
                    // a failed attempt brings the next hedge forward in delayed and
                    // fallback modes
                    if self.mode != Mode::Parallel
                        && next <= self.max_hedges
                        && self.may_start(next)
                    {
                        running.push((next, started(), Box::pin(op(next))));
                        next += 1;
                        self.reset_timer(&mut timer, next);
                    }
                    if running.is_empty() {
                        return Err(Error::Inner(e));
                    }
                }
                Step::Due => {
                    if next <= self.max_hedges && self.may_start(next) {
                        running.push((next, started(), Box::pin(op(next))));
                        next += 1;
                    } else {
                        next = self.max_hedges + 1;
                    }
                    self.reset_timer(&mut timer, next);
                }
            }
        }
    }

    /// The delay before each hedge, in delayed mode.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match (self.mode, &self.latencies) {
            (Mode::Delayed(d), _) => Some(d),
            (Mode::Percentile(_), Some(l)) => Some(l.delay()),
            _ => None,
        }
    }

    /// Whether attempts are timed (a percentile delay learns from their latencies).
    #[inline]
    pub(crate) fn timed(&self) -> bool {
        self.latencies.is_some()
    }

    /// Whether every attempt starts at once.
    pub(crate) fn is_parallel(&self) -> bool {
        self.mode == Mode::Parallel
    }

    /// The most hedges per call, beside the original attempt.
    pub(crate) fn max_hedges(&self) -> u32 {
        self.max_hedges
    }

    /// A call starts: it deposits into the hedge's own budget, if any.
    #[inline]
    pub(crate) fn deposit(&self) {
        if !self.quiet
            && let Some(budget) = &self.budget
        {
            budget.deposit();
        }
    }

    /// Whether hedge `attempt` may start: `also` (a pipeline's retry budget) and the
    /// hedge's own budget must both allow it. Reports `Started` or `Refused`.
    pub(crate) fn admit(&self, attempt: u32, also: Option<&RetryBudget>) -> bool {
        let ok = also.is_none_or(RetryBudget::try_withdraw)
            && self.budget.as_ref().is_none_or(|b| b.try_withdraw());
        self.emit(if ok {
            HedgeEvent::Started { attempt }
        } else {
            HedgeEvent::Refused { attempt }
        });
        ok
    }

    /// Reports the winning attempt, answered within the call's first poll (a latency of
    /// 0 for a percentile delay).
    #[inline]
    pub(crate) fn won(&self, attempt: u32) {
        if !self.quiet {
            self.won_quick(attempt);
        }
    }

    #[inline(never)]
    fn won_quick(&self, attempt: u32) {
        if let Some(l) = &self.latencies {
            l.record(Duration::ZERO);
        }
        self.emit(HedgeEvent::Won { attempt });
    }

    /// Reports the winning attempt, started at `t0` (timed only with a percentile delay).
    pub(crate) fn won_after(&self, attempt: u32, t0: Option<tokio::time::Instant>) {
        if let (Some(l), Some(t0)) = (&self.latencies, t0) {
            l.record(t0.elapsed());
        }
        self.emit(HedgeEvent::Won { attempt });
    }

    /// Re-arms the delayed mode's timer while hedges are left, else stops it.
    fn reset_timer(&self, timer: &mut Option<Pin<Box<tokio::time::Sleep>>>, next: u32) {
        match (self.delay(), timer.as_mut()) {
            (Some(d), Some(t)) if next <= self.max_hedges => {
                t.as_mut().reset(tokio::time::Instant::now() + d);
            }
            _ => *timer = None,
        }
    }

    /// Whether hedge `attempt` may start (the budget's say), reporting it.
    fn may_start(&self, attempt: u32) -> bool {
        let ok = self.budget.as_ref().is_none_or(|b| b.try_withdraw());
        self.emit(if ok {
            HedgeEvent::Started { attempt }
        } else {
            HedgeEvent::Refused { attempt }
        });
        ok
    }

    #[inline]
    fn emit(&self, event: HedgeEvent) {
        if let Some(o) = &self.observer {
            o(&event);
        }
    }
}

enum Step<T, E> {
    Done(u32, Option<tokio::time::Instant>, Result<T, E>),
    Due,
}

impl HedgeBuilder {
    /// How many hedges at most, beside the original call (default 1).
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// Each hedge withdraws from `budget` (each call deposits); a refused hedge does not
    /// start.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The bounds a [percentile](Hedge::percentile) delay stays within (default 1 ms to
    /// 1 minute); the initial delay is used as given.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use std::time::Duration;
    /// let h = Hedge::percentile(0.95, Duration::from_millis(50))
    ///     .delay_bounds(Duration::from_millis(5), Duration::from_secs(2))
    ///     .build();
    /// assert!(h.is_ok());
    /// let e = Hedge::percentile(0.95, Duration::from_millis(50))
    ///     .delay_bounds(Duration::from_secs(2), Duration::from_millis(5))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "hedge.delay_bounds");
    /// ```
    pub fn delay_bounds(mut self, min: Duration, max: Duration) -> Self {
        if let Mode::Percentile(p) = &mut self.mode {
            p.min = min;
            p.max = max;
        }
        self
    }

    /// Called for each hedge started or refused, and for the winner.
    pub fn on_event(mut self, observer: impl Fn(&HedgeEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Validates and builds: a delayed hedge needs a delay above zero (use `parallel`), and
    /// at most 64 hedges.
    ///
    /// ```
    /// use resilient::hedge::Hedge;
    /// use std::time::Duration;
    /// let e = Hedge::delayed(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(e.field(), "hedge.delay");
    /// ```
    pub fn build(mut self) -> Result<Hedge, ConfigError> {
        if self.mode == Mode::Delayed(Duration::ZERO) {
            return Err(ConfigError::new(
                "hedge.delay",
                "must be above zero (for every attempt at once, use `Hedge::parallel`)",
            ));
        }
        if self.max_hedges > 64 {
            return Err(ConfigError::new(
                "hedge.max_hedges",
                format!("must be at most 64 (got {})", self.max_hedges),
            ));
        }
        const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);
        let mut latencies = None;
        if let Mode::Percentile(p) = &mut self.mode {
            if p.ppm == 0 || p.ppm > 1_000_000 {
                return Err(ConfigError::new(
                    "hedge.percentile",
                    "the quantile must be above 0 and at most 1 (0.95 for the 95th percentile)",
                ));
            }
            if p.min.is_zero() || p.min > p.max {
                return Err(ConfigError::new(
                    "hedge.delay_bounds",
                    format!(
                        "need 0 < min <= max (got {:?} to {:?}; for every attempt at once, use \
                         `Hedge::parallel`)",
                        p.min, p.max
                    ),
                ));
            }
            if p.initial.is_zero() {
                return Err(ConfigError::new(
                    "hedge.delay",
                    "the initial delay must be above zero",
                ));
            }
            // delays too long to ever pass: bounded so that timers stay representable
            p.max = p.max.min(NEVER);
            p.min = p.min.min(p.max);
            p.initial = p.initial.min(NEVER);
            latencies = Some(Arc::new(Latencies::new(*p)));
        }
        let mode = match self.mode {
            // a delay too long to ever pass is no timer
            Mode::Delayed(d) if d > NEVER => Mode::Fallback,
            m => m,
        };
        Ok(Hedge {
            mode,
            max_hedges: self.max_hedges,
            quiet: self.budget.is_none() && self.observer.is_none() && latencies.is_none(),
            budget: self.budget,
            observer: self.observer,
            latencies,
        })
    }
}
