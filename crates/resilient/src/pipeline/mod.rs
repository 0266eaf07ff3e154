//! The pipeline: configuration (built and validated once) and the phased engine that runs
//! an operation through it.
//!
//! # Phases
//!
//! Every call runs the same phases, outermost first:
//!
//! 1. **request timeout** and caller cancellation, bounding everything below (the tighter
//!    of this pipeline's request timeout and any deadline inherited from an enclosing
//!    pipeline wins);
//! 2. **per-call guards**: guards added to the builder *before* `.retry(..)`; a logical
//!    call is admitted and counted once, however many attempts it makes;
//! 3. **the retry loop** (backoff, jitter, budget, server-directed delays);
//! 4. **per-attempt guards**: guards added *after* `.retry(..)`; each attempt is admitted
//!    and counted on its own;
//! 5. **operation timeout** around the attempt: the attempt's deadline (the tighter of
//!    the call's and `now + operation`) is the one its [`Context`] and nested pipelines see;
//! 6. the **operation** itself.
//!
//! The engine is one `async fn` per call (no boxing of the operation, no allocation on the
//! success path); guards are trait objects that only see a [`Context`].
//!
//! A call of [`Pipeline::execute`] on a pipeline with no observer and no guard that reads
//! labels (a hedge only with no timeout and no per-attempt guard), with no caller
//! cancellation and no deadline inherited from an enclosing call, takes the **lean path**
//! (`run.rs`): the same phases and decisions, written as one small state machine instead
//! of nested futures.

use std::borrow::BorrowMut;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::engine::attempt::{FailedAttempt, RetryEvent, RetryReason};
use crate::engine::clock::{SharedClock, calibrate, instant_now, system_clock};
use crate::engine::context::Context;
use crate::engine::context::{Ambient, HORIZON, deadline_after, deadline_from_now, within_horizon};
use crate::engine::error::{ConfigError, Error, TimeoutScope};
use crate::engine::guard::DeadlineFired;
use crate::engine::guard::{Acquire, Guard, Permit, Rejection};
use crate::engine::outcome::{
    AllErrors, Classify, DelayFrom, OnRetry, Outcome, RetryCost, RetryIf,
};
use crate::engine::telemetry::{
    CallOutcome, EventKind, Fanout, GaugeSource, Gauges, Observer, Probe, SharedObserver, Sink,
    error_outcome,
};
use crate::engine::timeouts::Timeouts;
use crate::fallback::FallbackReport;
use crate::hedge::Hedge;
use crate::retry::Retry;
use crate::timeout::Timeout;

mod call;
mod fallback;
mod hedge;
#[cfg(feature = "tower")]
mod once;
mod run;
mod strategies;

use run::{Run, Start, Step};

pub use call::Call;
pub use fallback::WithFallback;
#[cfg(feature = "tower")]
pub(crate) use once::{Guarded, InPlaceCall, Once};

type Permits<'a> = SmallVec<[Permit<'a>; 4]>;

/// The permits of a call (or of an attempt), in the order they were given: the first two
/// on their own, the others (if any) in a list made when the third comes. A call with one
/// or two guards holds no list, and one with none drops its permits with three checks.
/// They drop (unrecorded) in order: `first`, `second`, then `rest`.
#[derive(Default)]
struct Held<'p> {
    /// The first permit; when it is `None`, so is `second`.
    first: Option<Permit<'p>>,
    /// The second; when it is `None`, `rest` is `None` or empty.
    second: Option<Permit<'p>>,
    rest: Option<Permits<'p>>,
}

impl<'p> Held<'p> {
    /// Holds `permit`, unless it holds nothing to record or release (that of a guard with
    /// nothing to give back, such as a rate limiter that admitted at once).
    #[inline(always)]
    fn push(&mut self, permit: Permit<'p>) {
        if permit.holds_nothing() {
            // Nothing to release: no drop either.
            std::mem::forget(permit);
            return;
        }
        if self.first.is_none() {
            self.first = Some(permit);
        } else if self.second.is_none() {
            self.second = Some(permit);
        } else {
            self.rest.get_or_insert_with(Permits::new).push(permit);
        }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.first.is_some())
            + usize::from(self.second.is_some())
            + self.rest.as_ref().map_or(0, |p| p.len())
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Whether dropping it would do anything: it holds a permit, or a list (whose buffer
    /// may be on the heap).
    #[inline]
    fn holds_anything(&self) -> bool {
        self.first.is_some() || self.second.is_some() || self.rest.is_some()
    }

    /// Takes out the permits from `from` on, in order.
    #[inline]
    fn drain(&mut self, from: usize, mut each: impl FnMut(Permit<'p>)) {
        // (With no first permit there is no second; with no second, no list.)
        if from == 0 {
            let Some(first) = self.first.take() else {
                return;
            };
            each(first);
        }
        if from <= 1 {
            if self.second.is_none() {
                return;
            }
            if let Some(second) = self.second.take() {
                each(second);
            }
        }
        if let Some(rest) = &mut self.rest {
            rest.drain(from.saturating_sub(2)..).for_each(each);
        }
    }
}

/// A pipeline's per-call and per-attempt guards.
pub(crate) type GuardLists<'a> = (&'a [Arc<dyn Guard>], &'a [Arc<dyn Guard>]);

/// Which calls of a pipeline's tower service may run in place (see `once.rs`), by the
/// pipeline's strategies; a call's own conditions (no cost or key, made outside any other
/// call) and the classifier (the default) are checked as it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
enum InPlace {
    /// None.
    No,
    /// A call of one bare attempt (at most an operation timeout around it): no guard,
    /// retry, hedge, request timeout or observer.
    Bare,
    /// A call of one attempt under the one per-call guard, a bulkhead, a breaker or a
    /// rejecting rate limiter of this crate (`PipelineBuilder::known_call_guards`): no other
    /// strategy.
    OneGuard,
}

/// A validated, shareable resilience pipeline. Cloning is cheap (one `Arc`); clones share
/// all state (budgets, breakers, limiters).
///
/// `C` is the [`Classify`] strategy that judges results ([`AllErrors`] by default).
///
/// ```
/// use resilient::{Error, Pipeline, Retry, Timeout};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pipeline = Pipeline::builder()
///     .timeout(Timeout::request(Duration::from_secs(30)))
///     .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
///     .timeout(Timeout::operation(Duration::from_secs(5)))
///     .build()
///     .unwrap();
///
/// let mut calls = 0;
/// let out: Result<u32, Error<&str>> = pipeline
///     .execute(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err("flaky") } else { Ok(n) } }
///     })
///     .await;
/// assert_eq!(out.unwrap(), 3);
/// # }
/// ```
pub struct Pipeline<C = AllErrors> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Pipeline<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    name: Option<Arc<str>>,
    tags: Option<Arc<[(String, String)]>>,
    timeouts: Timeouts,
    call_guards: Vec<Arc<dyn Guard>>,
    attempt_guards: Vec<Arc<dyn Guard>>,
    /// Which calls of a tower service of this pipeline may run in place, by its strategies
    /// (see `once.rs`).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    in_place: InPlace,
    /// Whether any per-call guard uses durations (else the clock is not read for them).
    time_calls: bool,
    /// Whether any per-attempt guard uses durations.
    time_attempts: bool,
    /// Whether a guard reads the context's name and tags ([`Guard::reads_labels`]).
    labels: bool,
    /// A blocking call needs no clock: no timeout, no `max_elapsed`, no guard that times
    /// calls (see [`Pipeline::run_blocking_untimed`]).
    untimed: bool,
    /// No request timeout: a call without a caller's or an inherited deadline or
    /// cancellation needs no phase 1 (see [`Pipeline::run`]).
    direct: bool,
    /// No observer and no guard that reads labels, and a hedge only with no deadline and
    /// no per-attempt guard: a call that ignores its context takes the lean path (see
    /// `run.rs`).
    lean: bool,
    /// No per-attempt guard, no operation or request timeout: a lean attempt is the
    /// operation alone.
    bare_attempts: bool,
    /// Lean with bare attempts, no per-call guard, no retry budget and no `max_elapsed`: a
    /// lean call's first poll calls the operation at once (see `run.rs`).
    plain: bool,
    /// As `plain`, but for an operation timeout (within the horizon) around each attempt:
    /// a lean call's first poll calls the operation at once, under its deadline (see
    /// `run.rs`).
    plain_timed: bool,
    /// Lean with bare attempts, one per-call guard, no hedge, no retry budget and no
    /// `max_elapsed`: a lean call's first poll asks the guard and calls the operation at
    /// once, with the permit in a local (see `run.rs`).
    one_guard: bool,
    retry: Option<Retry>,
    /// Hedged attempts (see [`PipelineBuilder::hedge`]).
    hedge: Option<Hedge>,
    classify: C,
    clock: SharedClock,
    stages: Vec<String>,
    /// Where events go, when the pipeline has an observer.
    sink: Option<Arc<Sink>>,
    /// The observer's report of fallback alternatives used (`execute_with_fallback`).
    fallback_report: Option<FallbackReport>,
    /// What the observer reads gauges from (held here, weakly by the observer).
    #[allow(dead_code)] // kept alive for the observers' weak references
    gauges: Option<Arc<dyn GaugeSource>>,
}

impl<C> fmt::Debug for Pipeline<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.inner.name)
            .field("stages", &self.inner.stages)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Pipeline`]. The order of calls is the order of the phases: guards before
/// `.retry(..)` apply per call, guards after it per attempt.
pub struct PipelineBuilder<C = AllErrors> {
    name: Option<Arc<str>>,
    tags: Vec<(String, String)>,
    timeouts: Timeouts,
    call_guards: Vec<Arc<dyn Guard>>,
    attempt_guards: Vec<Arc<dyn Guard>>,
    /// Whether every per-call guard is a bulkhead, a breaker or a rejecting rate limiter of
    /// this crate: a guard whose permit is its own (or none) and that waits only in a queue
    /// a call leaves as it drops the wait (see `InPlace::OneGuard`).
    known_call_guards: bool,
    retry: Option<Retry>,
    hedge: Option<Hedge>,
    idempotent: bool,
    classify: C,
    clock: SharedClock,
    stages: Vec<String>,
    error: Option<ConfigError>,
    /// Whether `on_retry` wrapped the classifier (a later `classify` would drop the hook).
    typed_hook: bool,
    observers: Vec<SharedObserver>,
    /// Where `build()` puts the observer's fallback report for the `.fallback(..)` steps.
    fallback_report: Arc<OnceLock<FallbackReport>>,
}

impl fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts a builder.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            name: None,
            tags: Vec::new(),
            timeouts: Timeouts::default(),
            call_guards: Vec::new(),
            attempt_guards: Vec::new(),
            known_call_guards: true,
            retry: None,
            hedge: None,
            idempotent: false,
            classify: AllErrors,
            clock: system_clock(),
            stages: Vec::new(),
            error: None,
            typed_hook: false,
            observers: Vec::new(),
            fallback_report: Arc::default(),
        }
    }
}

impl<C> PipelineBuilder<C> {
    /// This builder with its classifier wrapped by `wrap` (a typed hook: a later
    /// `classify(..)` would drop it, which `build()` then reports).
    fn wrap_classify<C2>(self, wrap: impl FnOnce(C) -> C2) -> PipelineBuilder<C2> {
        PipelineBuilder {
            name: self.name,
            tags: self.tags,
            timeouts: self.timeouts,
            call_guards: self.call_guards,
            attempt_guards: self.attempt_guards,
            known_call_guards: self.known_call_guards,
            retry: self.retry,
            hedge: self.hedge,
            idempotent: self.idempotent,
            classify: wrap(self.classify),
            clock: self.clock,
            stages: self.stages,
            error: self.error,
            typed_hook: true,
            observers: self.observers,
            fallback_report: self.fallback_report,
        }
    }

    /// Names the operation (shown in [`Context::operation`], events and errors).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a tag visible to guards through [`Context::tag`].
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Attaches an [`Observer`](crate::telemetry::Observer) that receives every
    /// [`Event`](crate::telemetry::Event) of this pipeline's calls: call and attempt
    /// outcomes, retries, timeouts, guard admissions and rejections, breaker transitions.
    /// Called more than once, every observer gets every event. Without one, calls pay
    /// nothing for telemetry (no allocation, no clock read).
    ///
    /// ```
    /// use resilient::telemetry::{Event, EventKind, CallOutcome};
    /// use resilient::Pipeline;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ok = Arc::new(AtomicU32::new(0));
    /// let count = ok.clone();
    /// let p = Pipeline::builder()
    ///     .name("users")
    ///     .observer(move |e: &Event<'_>| {
    ///         if let EventKind::CallFinished { outcome: CallOutcome::Success, .. } = e.kind {
    ///             count.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    /// assert_eq!(ok.load(Ordering::Relaxed), 1);
    /// # }
    /// ```
    pub fn observer(self, observer: impl Observer) -> Self {
        self.observer_arc(Arc::new(observer))
    }

    /// Attaches a shared observer (see [`observer`](Self::observer)).
    ///
    /// ```
    /// use resilient::telemetry::{Event, SharedObserver};
    /// use std::sync::Arc;
    /// let log: SharedObserver = Arc::new(|e: &Event<'_>| eprintln!("{e:?}"));
    /// let a = resilient::Pipeline::builder().observer_arc(log.clone()).build().unwrap();
    /// let b = resilient::Pipeline::builder().observer_arc(log).build().unwrap();
    /// # let _ = (a, b);
    /// ```
    pub fn observer_arc(mut self, observer: SharedObserver) -> Self {
        self.observers.push(observer);
        self
    }

    /// Sets one level of the timeout hierarchy.
    pub fn timeout(mut self, t: Timeout) -> Self {
        self.stages.push(format!("{t:?}"));
        t.apply(&mut self.timeouts);
        self
    }

    /// Sets the whole timeout hierarchy at once.
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.stages.push(format!("{t:?}"));
        self.timeouts = t;
        self
    }

    /// Adds the retry loop. Guards added before it apply per call, after it per attempt.
    pub fn retry(mut self, retry: Retry) -> Self {
        if self.retry.is_some() && self.error.is_none() {
            self.error = Some(ConfigError::new(
                "retry",
                "is set twice; a pipeline has one retry loop",
            ));
        }
        self.stages.push("Retry".into());
        self.retry = Some(retry);
        self
    }

    /// Adds a guard at the current position.
    pub fn guard(self, guard: impl Guard) -> Self {
        self.guard_arc(Arc::new(guard))
    }

    /// Adds a shared guard at the current position (share one breaker between pipelines).
    pub fn guard_arc(self, guard: Arc<dyn Guard>) -> Self {
        self.push_guard(guard, false)
    }

    /// Adds `guard` at the current position; `known`: it is a bulkhead, a breaker or a
    /// rejecting rate limiter of this crate (see `PipelineBuilder::known_call_guards`).
    fn push_guard(mut self, guard: Arc<dyn Guard>, known: bool) -> Self {
        let per_attempt = self.retry.is_some();
        if !per_attempt && !known {
            self.known_call_guards = false;
        }
        self.stages.push(format!(
            "{}({})",
            guard.name(),
            if per_attempt {
                "per attempt"
            } else {
                "per call"
            }
        ));
        if per_attempt {
            self.attempt_guards.push(guard);
        } else {
            self.call_guards.push(guard);
        }
        self
    }

    /// Uses `clock` for the durations the engine measures (default: [`system_clock`]).
    /// Guards, retry budgets and rate limiters take their own clock.
    ///
    /// Which clock drives what:
    /// - **this clock**: the durations reported to guards (a breaker's slow calls), the
    ///   retry plan's [`max_elapsed`](Retry::max_elapsed), and, in blocking execution
    ///   ([`Pipeline::execute_blocking`]), everything: the request timeout and an
    ///   attempt's overrun of the operation timeout are measured on it, and its retry waits
    ///   are [`Clock::sleep_blocking`](crate::Clock::sleep_blocking) (a
    ///   [`ManualClock`](crate::ManualClock) advances itself instead of sleeping);
    /// - **tokio's timer** (`tokio::time`): in async calls, the request and operation
    ///   timeouts, retry waits, and a bulkhead's maximum wait. [`Context::deadline`] is a
    ///   `tokio::time::Instant` in both modes.
    ///
    /// The default [`FastClock`](crate::FastClock) and [`SystemClock`](crate::SystemClock)
    /// follow tokio's paused time, so the two agree (paused tokio time drives both; the
    /// fast clock once a clock has been made in the paused runtime, see its documentation). With a `ManualClock`, an async pipeline still
    /// waits and times out in tokio's time: test it with paused tokio time
    /// (`tokio::time::pause`), and advance the manual clock for what it drives.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how results are judged (see [`Classify`]). Call it before
    /// [`on_retry`](Self::on_retry), whose hook wraps the classifier.
    pub fn classify<C2>(mut self, classify: C2) -> PipelineBuilder<C2> {
        if self.typed_hook && self.error.is_none() {
            self.error = Some(ConfigError::new(
                "on_retry",
                "on_retry, retry_if and delay_from must come after classify(..), which would otherwise drop them",
            ));
        }
        PipelineBuilder {
            name: self.name,
            tags: self.tags,
            timeouts: self.timeouts,
            call_guards: self.call_guards,
            attempt_guards: self.attempt_guards,
            known_call_guards: self.known_call_guards,
            retry: self.retry,
            hedge: self.hedge,
            idempotent: self.idempotent,
            classify,
            clock: self.clock,
            stages: self.stages,
            error: self.error,
            typed_hook: self.typed_hook,
            observers: self.observers,
            fallback_report: self.fallback_report,
        }
    }

    /// A typed hook called before each retry wait with the [`RetryEvent`] (attempt, delay,
    /// reason) and the [`FailedAttempt`]: the operation's error, the result classified as a
    /// failure, the operation timeout or a guard's rejection. It fixes the pipeline's
    /// result type to `Result<T, E>`. Without it nothing is called (no cost).
    ///
    /// It wraps the classifier, so it comes after [`classify`](Self::classify). The
    /// untyped [`Retry::on_retry`] hook, if any, runs first.
    ///
    /// ```
    /// use resilient::{FailedAttempt, Pipeline, Retry, RetryEvent};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .retry(Retry::constant(Duration::from_millis(1)).attempts(2))
    ///     .on_retry(|ev: &RetryEvent<'_>, failed: FailedAttempt<'_, u32, std::io::Error>| {
    ///         if let Some(e) = failed.error() {
    ///             eprintln!("attempt {} failed ({e}); retrying in {:?}", ev.attempt, ev.delay);
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let mut first = true;
    /// let r = pipeline
    ///     .execute(|| {
    ///         let fail = std::mem::take(&mut first);
    ///         async move { if fail { Err(std::io::Error::other("refused")) } else { Ok(7) } }
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap(), 7);
    /// # }
    /// ```
    pub fn on_retry<T, E, F>(self, hook: F) -> PipelineBuilder<OnRetry<C, F, T, E>>
    where
        F: Fn(&RetryEvent<'_>, FailedAttempt<'_, T, E>) + Send + Sync + 'static,
    {
        self.wrap_classify(|c| OnRetry::new(c, hook))
    }

    /// Decides which results are retried, separately from which count as failures (the
    /// classifier's verdict, which breakers and metrics see): a 503 is both, a 400 is
    /// neither, a failed non-idempotent request may count as a failure and not be retried,
    /// a 409 conflict may be retried without counting against the dependency. Timeouts
    /// and guard rejections keep their own settings ([`Retry::retry_on_timeout`],
    /// [`Retry::retry_rejected`]). Call it after [`classify`](Self::classify).
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Error, Outcome, Pipeline, Retry};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    /// let p = Pipeline::builder()
    ///     .retry(Retry::immediate().attempts(3))
    ///     .circuit_breaker(&breaker)
    ///     // only 5xx count against the dependency
    ///     .classify(|r: &Result<u16, u16>| match r {
    ///         Err(code) if *code >= 500 => Outcome::Failure,
    ///         Err(_) => Outcome::Ignored,
    ///         Ok(_) => Outcome::Success,
    ///     })
    ///     // retry 503 and 409, nothing else
    ///     .retry_if(|r: &Result<u16, u16>| matches!(r, Err(503) | Err(409)))
    ///     .build()
    ///     .unwrap();
    /// let mut calls = 0;
    /// let r = p.execute(|| { calls += 1; async { Err::<u16, u16>(409) } }).await;
    /// assert!(matches!(r, Err(Error::RetriesExhausted { attempts: 3, last: 409 })));
    /// assert_eq!(calls, 3);
    /// assert!(breaker.is_ready()); // a 409 is not the dependency's failure
    /// # }
    /// ```
    pub fn retry_if<T, E, F>(self, retry: F) -> PipelineBuilder<RetryIf<C, F, T, E>>
    where
        F: Fn(&Result<T, E>) -> bool + Send + Sync + 'static,
    {
        self.wrap_classify(|c| RetryIf::new(c, retry))
    }

    /// Prices each retry by the result that led to it (per error kind, or from the
    /// response: tokens used, money spent), for the retry's cost budget
    /// ([`Retry::cost_budget`]). Without it a retry costs the call's `.cost(n)` or the
    /// budget's default. Call it after [`classify`](Self::classify).
    ///
    /// ```
    /// use resilient::retry::CostBudget;
    /// use resilient::{Error, Pipeline, Retry};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let budget = CostBudget::builder(100, 0.0).build().unwrap();
    /// let p = Pipeline::builder()
    ///     .retry(Retry::immediate().attempts(5).cost_budget(budget.clone()))
    ///     // a timeout on the server side is expensive to retry, a refused connection cheap
    ///     .retry_cost(|r: &Result<(), &str>| if r == &Err("timeout") { 60 } else { 1 })
    ///     .build()
    ///     .unwrap();
    /// let err = p.execute(|| async { Err::<(), _>("timeout") }).await.unwrap_err();
    /// assert!(matches!(err, Error::CostBudgetExhausted { attempts: 2, cost: 60, .. }));
    /// assert_eq!(budget.available(None), 40);
    /// # }
    /// ```
    pub fn retry_cost<T, E, F>(self, cost: F) -> PipelineBuilder<RetryCost<C, F, T, E>>
    where
        F: Fn(&Result<T, E>) -> u64 + Send + Sync + 'static,
    {
        self.wrap_classify(|c| RetryCost::new(c, cost))
    }

    /// A server-directed delay read from any result, `Ok` included: an HTTP 429 or 503
    /// returned as `Ok(response)` with a `Retry-After` header. `delay(&result)` returning
    /// `Some(d)` waits `d` before the next attempt instead of the backoff; a request beyond
    /// the retry's [`max_server_delay`](Retry::max_server_delay) stops retrying. A result is only retried
    /// if it is judged a failure (or [`retry_if`](Self::retry_if) says so): classify the
    /// 429 response as one. Call it after [`classify`](Self::classify).
    ///
    /// ```
    /// use resilient::{Outcome, Pipeline, Retry};
    /// use std::time::Duration;
    /// struct Response { status: u16, retry_after: Option<Duration> }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let p = Pipeline::builder()
    ///     .retry(Retry::exponential(Duration::from_millis(100)).attempts(2))
    ///     .classify(|r: &Result<Response, std::io::Error>| match r {
    ///         Ok(resp) if resp.status == 429 || resp.status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .delay_from(|r: &Result<Response, std::io::Error>| r.as_ref().ok()?.retry_after)
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let mut first = true;
    /// let r = p.execute(|| {
    ///     let throttled = std::mem::take(&mut first);
    ///     async move {
    ///         Ok(if throttled {
    ///             Response { status: 429, retry_after: Some(Duration::from_secs(2)) }
    ///         } else {
    ///             Response { status: 200, retry_after: None }
    ///         })
    ///     }
    /// }).await;
    /// assert_eq!(r.unwrap().status, 200);
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # }
    /// ```
    pub fn delay_from<T, E, F>(self, delay: F) -> PipelineBuilder<DelayFrom<C, F, T, E>>
    where
        F: Fn(&Result<T, E>) -> Option<Duration> + Send + Sync + 'static,
    {
        self.wrap_classify(|c| DelayFrom::new(c, delay))
    }

    /// Validates the configuration and builds the pipeline.
    ///
    /// Everything is checked (each guard through [`Guard::check`]) before any guard is
    /// [attached](Guard::attach): a build that fails leaves the guards it was given, shared
    /// breakers included, unchanged.
    pub fn build(mut self) -> Result<Pipeline<C>, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.timeouts.validate()?;
        for g in self.call_guards.iter().chain(&self.attempt_guards) {
            g.check(&self.timeouts)?;
        }
        if self.hedge.is_some() && !self.idempotent {
            return Err(ConfigError::new(
                "hedge",
                "hedging sends several attempts of one call at once: only for idempotent \
                 operations; mark them with `.idempotent(true)`",
            ));
        }
        if let Some(retry) = &self.retry {
            retry.validate()?;
            if let Some(request) = self.timeouts.request {
                let min = retry.min_total_delay(request);
                if min >= request {
                    return Err(ConfigError::new(
                        "retry",
                        format!(
                            "plan waits at least {min:?} over {} retries, which already \
                             exceeds timeout.request ({request:?})",
                            retry.max_attempts - 1
                        ),
                    ));
                }
            }
        }
        // The engine sets deadlines from the calibrated counter: calibrate it here, not in
        // a first call (see `instant_now`).
        if self.timeouts.request.is_some() || self.timeouts.operation.is_some() {
            calibrate();
        }
        // Valid: only now may guards change (see `Guard::attach`).
        for g in self.call_guards.iter().chain(&self.attempt_guards) {
            g.attach(&self.timeouts);
        }
        let tags: Option<Arc<[(String, String)]>> =
            (!self.tags.is_empty()).then(|| self.tags.into());
        let observer: Option<SharedObserver> = match self.observers.len() {
            0 => None,
            1 => self.observers.pop(),
            _ => Some(Arc::new(Fanout(self.observers))),
        };
        let sink = observer.map(|observer| {
            Arc::new(Sink {
                spans: observer.spans(),
                observer,
                name: self.name.clone().unwrap_or_else(|| Arc::from("")),
                tags: tags.clone().unwrap_or_else(|| Arc::new([])),
            })
        });
        let gauges = sink.as_ref().map(|sink| {
            for g in self.call_guards.iter().chain(&self.attempt_guards) {
                let sink = sink.clone();
                g.observe_transitions(Arc::new(move |breaker: &str, from, to| {
                    sink.emit(EventKind::BreakerTransition { breaker, from, to })
                }));
            }
            let view: Arc<dyn GaugeSource> = Arc::new(GaugeView {
                name: sink.name.clone(),
                tags: sink.tags.clone(),
                guards: self
                    .call_guards
                    .iter()
                    .chain(&self.attempt_guards)
                    .cloned()
                    .collect(),
                retry: self.retry.clone(),
            });
            sink.observer.attach(Arc::downgrade(&view));
            view
        });
        let fallback_report = sink.as_ref().map(|sink| {
            let sink = sink.clone();
            let report: FallbackReport = Arc::new(move |fallback, alternative| {
                sink.emit(EventKind::FallbackUsed {
                    fallback,
                    alternative,
                })
            });
            // the `.fallback(..)` steps' chains report to the observer too
            let _ = self.fallback_report.set(report.clone());
            report
        });
        let direct = within_horizon(self.timeouts.request).is_none();
        let lean = sink.is_none()
            && !self
                .call_guards
                .iter()
                .chain(&self.attempt_guards)
                .any(|g| g.reads_labels())
            // a hedged attempt is bare only without an operation timeout and per-attempt
            // guards (as in the phased engine's retry loop), and the lean path hedges
            // only with no deadline to scope the hedges with
            && (self.hedge.is_none()
                || (self.timeouts.operation.is_none()
                    && self.attempt_guards.is_empty()
                    && direct));
        let bare_attempts =
            direct && self.attempt_guards.is_empty() && self.timeouts.operation.is_none();
        // A retry (if any) with nothing to pay into or time as a call starts.
        let untimed_retry = self
            .retry
            .as_ref()
            .is_none_or(|r| r.budget.is_none() && r.max_elapsed.is_none());
        // Nothing to ask or time before a call's first attempt, or after it.
        let unguarded = self.call_guards.is_empty() && untimed_retry;
        let plain = lean && bare_attempts && unguarded;
        let one_guard = lean
            && bare_attempts
            && self.call_guards.len() == 1
            && self.hedge.is_none()
            && untimed_retry;
        let plain_timed = lean
            && unguarded
            && direct
            && self.attempt_guards.is_empty()
            && self.hedge.is_none()
            && within_horizon(self.timeouts.operation).is_some();
        let in_place = if self.retry.is_some() || self.hedge.is_some() {
            InPlace::No
        } else if plain || plain_timed {
            InPlace::Bare
        } else if lean && bare_attempts && self.known_call_guards && self.call_guards.len() == 1 {
            InPlace::OneGuard
        } else {
            InPlace::No
        };
        Ok(Pipeline {
            inner: Arc::new(Inner {
                sink,
                gauges,
                fallback_report,
                name: self.name,
                tags,
                timeouts: self.timeouts,
                in_place,
                time_calls: self.call_guards.iter().any(|g| g.measures_duration()),
                time_attempts: self.attempt_guards.iter().any(|g| g.measures_duration()),
                direct,
                lean,
                bare_attempts,
                plain,
                plain_timed,
                one_guard,
                labels: self
                    .call_guards
                    .iter()
                    .chain(&self.attempt_guards)
                    .any(|g| g.reads_labels()),
                untimed: self.timeouts.request.is_none()
                    && self.timeouts.operation.is_none()
                    && !self.call_guards.iter().any(|g| g.measures_duration())
                    && !self.attempt_guards.iter().any(|g| g.measures_duration())
                    && self.retry.as_ref().is_none_or(|r| r.max_elapsed.is_none()),
                call_guards: self.call_guards,
                attempt_guards: self.attempt_guards,
                retry: self.retry,
                hedge: self.hedge,
                classify: self.classify,
                clock: self.clock,
                stages: self.stages,
            }),
        })
    }
}

/// A pipeline's gauges, as its observer reads them (see [`GaugeSource`]).
struct GaugeView {
    name: Arc<str>,
    tags: Arc<[(String, String)]>,
    guards: Vec<Arc<dyn Guard>>,
    retry: Option<Retry>,
}

impl GaugeSource for GaugeView {
    fn pipeline(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            strategies: self
                .guards
                .iter()
                .filter_map(|guard| Some((guard.name(), guard.gauges()?)))
                .collect(),
            retry_budget: self
                .retry
                .as_ref()
                .and_then(|r| r.budget.as_ref())
                .map(|b| b.available()),
        }
    }
}

/// What one attempt produced.
enum Attempt<T, E> {
    Done(Result<T, E>),
    TimedOut(Duration),
    Rejected(Rejection),
}

/// The engine's decision after a failed attempt.
enum Next {
    Stop,
    Wait(Duration),
    /// The retry's cost budget refused a retry that would have cost this much.
    OutOfBudget(u64),
}

/// What a call brings to the engine besides its operation: the caller's cancellation and
/// the cost and key its guards see in the [`Context`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Seed {
    pub(crate) cancel: Option<CancellationToken>,
    /// The operation never reads its [`Context`] (`execute`, not `execute_with`).
    pub(crate) bare: bool,
    pub(crate) cost: Option<u64>,
    pub(crate) key: Option<u64>,
    /// The call is not idempotent: no hedges (see [`Call::idempotent`]).
    pub(crate) no_hedge: bool,
}

impl Seed {
    /// The seed of a plain `execute`: nothing but an operation that ignores its context.
    pub(crate) fn bare() -> Self {
        Self {
            bare: true,
            ..Self::default()
        }
    }
}

/// What a call's future keeps of its [`Seed`] until its first poll.
pub(crate) trait CallSeed {
    /// The call's future inlines only the first poll of its usual paths where it is
    /// awaited, and runs every other poll out of line (see `Run::poll_call` in `run.rs`).
    const SPLIT: bool;
    /// The call may take the lean path (see `run.rs`): its operation ignores its
    /// context, with no cancellation, cost or key of the caller's.
    fn lean(&self) -> bool;
    /// The call is not idempotent: no hedges.
    fn no_hedge(&self) -> bool;
    /// The seed, for the phased engine (once: what is left is a default seed).
    fn take(&mut self) -> Seed;
}

impl CallSeed for Seed {
    const SPLIT: bool = false;

    #[inline]
    fn lean(&self) -> bool {
        self.bare && self.cancel.is_none() && self.cost.is_none() && self.key.is_none()
    }

    #[inline]
    fn no_hedge(&self) -> bool {
        self.no_hedge
    }

    #[inline]
    fn take(&mut self) -> Seed {
        std::mem::take(self)
    }
}

/// The seed of a plain `execute` ([`Seed::bare`]), known where the call is built: its
/// future stores, checks and drops nothing of it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Bare;

impl CallSeed for Bare {
    const SPLIT: bool = true;

    #[inline(always)]
    fn lean(&self) -> bool {
        true
    }

    #[inline(always)]
    fn no_hedge(&self) -> bool {
        false
    }

    #[inline]
    fn take(&mut self) -> Seed {
        Seed::bare()
    }
}

/// Every failed attempt may be retried (the engine's `retryable` for plain calls).
#[inline(always)]
pub(crate) fn always() -> bool {
    true
}

#[inline]
fn elapsed_since(clock: &SharedClock, start: Option<Duration>) -> Duration {
    start.map_or(Duration::ZERO, |s| clock.now().saturating_sub(s))
}

impl<C: Send + Sync + 'static> Pipeline<C> {
    /// The configured timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// The operation name.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// The most attempts a call makes: the retry's `attempts`, or 1 without a retry.
    pub(crate) fn max_attempts(&self) -> u32 {
        self.inner.retry.as_ref().map_or(1, |r| r.max_attempts)
    }

    /// The per-call and per-attempt guards, in phase order (for a shadow's dry runs).
    pub(crate) fn guards(&self) -> GuardLists<'_> {
        (&self.inner.call_guards, &self.inner.attempt_guards)
    }

    /// The classifier that judges results.
    pub(crate) fn classifier(&self) -> &C {
        &self.inner.classify
    }

    /// The phases in builder order, for display and debugging.
    pub fn stages(&self) -> &[String] {
        &self.inner.stages
    }

    /// Runs `op` through the pipeline.
    // Inlined so that the call future is built where the caller keeps it, not copied there.
    #[inline]
    pub fn execute<T, E, F, Fut>(&self, mut op: F) -> impl Future<Output = Result<T, Error<E>>>
    where
        C: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(Bare, move |_| op(), always)
    }

    /// Runs `op` through the pipeline, handing it the [`Context`] of each attempt.
    #[inline]
    pub fn execute_with<T, E, F, Fut>(&self, mut op: F) -> impl Future<Output = Result<T, Error<E>>>
    where
        C: Classify<T, E>,
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(Seed::default(), move |ctx| op(ctx.clone()), always)
    }

    /// Runs `op`, ending with [`Error::Cancelled`] as soon as `token` is cancelled.
    /// Nested pipelines inherit the token.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use tokio_util::sync::CancellationToken;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let token = CancellationToken::new();
    /// token.cancel();
    /// let p = Pipeline::builder().build().unwrap();
    /// let r = p
    ///     .execute_cancellable(&token, || std::future::pending::<Result<(), ()>>())
    ///     .await;
    /// assert!(matches!(r, Err(Error::Cancelled)));
    /// # }
    /// ```
    #[inline]
    pub fn execute_cancellable<T, E, F, Fut>(
        &self,
        token: &CancellationToken,
        mut op: F,
    ) -> impl Future<Output = Result<T, Error<E>>>
    where
        C: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let seed = Seed {
            cancel: Some(token.clone()),
            ..Seed::default()
        };
        self.run(seed, move |_| op(), always)
    }

    /// The engine. `retryable()` is asked after a failed attempt, before anything else
    /// decides about a retry: `false` ends the call with that attempt's result (the tower
    /// adapter's request could not be cloned for another attempt).
    ///
    /// On its first poll the call picks its path. Without a request timeout and with no
    /// caller or inherited deadline or cancellation, phase 1 has nothing to do: the call
    /// runs the per-call guards' phase (or, with none, the retry loop) directly, with no
    /// clock read, no deadline scope and one future layer less. Anything else runs
    /// [`Pipeline::run_full`]. It is one engine: the direct paths are the phases that the
    /// full path runs below phase 1.
    #[inline]
    pub(crate) fn run<T, E, Sd, F, Fut, R>(
        &self,
        seed: Sd,
        op: F,
        retryable: R,
    ) -> impl Future<Output = Result<T, Error<E>>>
    where
        C: Classify<T, E>,
        Sd: CallSeed,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
    {
        self.call_future(
            seed,
            op,
            retryable,
            |pipeline: &Self, seed, op, retryable| pipeline.start_phased(seed, op, retryable),
        )
    }

    /// [`Pipeline::run`] with the phased engine's future (for a call that is not lean)
    /// boxed where it starts: a lean call's future is then a fraction of the size, which
    /// is what a caller that boxes every call's future wants (the tower adapter: a box
    /// under glibc's cache limit of some 1 KB takes its fast path). A call that is not lean
    /// allocates once more, as it starts.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn run_phased_boxed<'p, T, E, Sd, F, Fut, R>(
        &'p self,
        seed: Sd,
        op: F,
        retryable: R,
    ) -> impl Future<Output = Result<T, Error<E>>> + 'p
    where
        C: Classify<T, E>,
        Sd: CallSeed + Send + 'p,
        T: Send + 'p,
        E: Send + 'p,
        F: FnMut(&Context) -> Fut + Send + 'p,
        Fut: Future<Output = Result<T, E>> + Send + 'p,
        R: Fn() -> bool + Send + Sync + 'p,
    {
        self.call_future(
            seed,
            op,
            retryable,
            |pipeline: &'p Self, seed, op, retryable| {
                let boxed: run::Erased<'p, Result<T, Error<E>>> =
                    match pipeline.start_phased(seed, op, retryable) {
                        Start::Plain(fut) => Box::pin(fut),
                        Start::Guarded(fut) => Box::pin(fut),
                        Start::Full(fut) => Box::pin(fut),
                        Start::Observed(fut) => fut,
                    };
                Start::<_, run::Never<_>, run::Never<_>, run::Never<_>>::Plain(boxed)
            },
        )
    }

    /// A call's future (see [`Pipeline::run`]): `start` builds the phased engine's future
    /// when the call is not lean.
    #[inline]
    #[allow(clippy::type_complexity)] // the call's future, by its parts
    fn call_future<'p, T, E, Sd, F, Fut, R, S, A, G, B, O>(
        &'p self,
        seed: Sd,
        op: F,
        retryable: R,
        start: S,
    ) -> run::Run<'p, C, Sd, F, R, S, Fut, A, G, B, O>
    where
        C: Classify<T, E>,
        Sd: CallSeed,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
        S: FnOnce(&'p Self, Seed, F, R) -> Start<A, G, B, O>,
        A: Future<Output = Result<T, Error<E>>>,
        G: Future<Output = A::Output>,
        B: Future<Output = A::Output>,
        O: Future<Output = A::Output>,
    {
        Run {
            pipeline: self,
            seed,
            op: Some(op),
            retryable: Some(retryable),
            start: Some(start),
            step: Step::new(),
            ext: None,
        }
    }

    /// The phased engine's future for a call that is not lean, by its path.
    #[allow(clippy::type_complexity)]
    fn start_phased<T, E, F, Fut, R>(
        &self,
        seed: Seed,
        op: F,
        retryable: R,
    ) -> Start<
        impl Future<Output = Result<T, Error<E>>>,
        impl Future<Output = Result<T, Error<E>>>,
        impl Future<Output = Result<T, Error<E>>>,
        impl Future<Output = Result<T, Error<E>>>,
    >
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
    {
        let inner = &*self.inner;
        if let Some(sink) = &inner.sink {
            return Start::Observed(Box::pin(self.run_observed(
                sink.clone(),
                seed,
                op,
                retryable,
            )));
        }
        let hedge = inner.hedge.is_some() && !seed.no_hedge;
        if !inner.direct || seed.cancel.is_some() || Ambient::active() {
            return Start::Full(self.run_full(seed, op, retryable, None));
        }
        // An operation that does not read its context, with no guard to read its
        // labels either, needs neither name nor tags (no reference count touched).
        let labels = !seed.bare || inner.labels;
        let ctx = Context {
            attempt: 1,
            operation: if labels { inner.name.clone() } else { None },
            deadline: None,
            tags: if labels { inner.tags.clone() } else { None },
            cost: seed.cost,
            key: seed.key,
            probe: None,
            now: None,
        };
        if inner.call_guards.is_empty() {
            Start::Plain(self.retry_loop(ctx, op, retryable, hedge, None))
        } else {
            Start::Guarded(self.guarded_call(ctx, None, op, retryable, hedge))
        }
    }

    /// A call of a pipeline with an observer: the full path, reported (and, with feature
    /// `tracing` and an observer that asks for them, inside a span).
    async fn run_observed<T, E, F, Fut, R>(
        &self,
        sink: Arc<Sink>,
        seed: Seed,
        op: F,
        retryable: R,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
    {
        let inherited = Ambient::current().and_then(|a| a.deadline);
        let own = within_horizon(self.inner.timeouts.request);
        let left = inherited.map(|d| d.saturating_duration_since(instant_now()));
        let deadline = match (own, left) {
            (Some(o), Some(l)) => Some(o.min(l)),
            (o, l) => o.or(l),
        };
        let probe = Probe::new(sink.clone());
        #[cfg(feature = "tracing")]
        let span = crate::telemetry::tracing::call_span(&sink, deadline);
        // The call's events happen inside its span (with feature `tracing`).
        let emit = |kind: EventKind<'_>| {
            #[cfg(feature = "tracing")]
            span.in_scope(|| sink.emit(kind));
            #[cfg(not(feature = "tracing"))]
            sink.emit(kind);
        };
        emit(EventKind::CallStarted { deadline });
        // Each attempt in its own span: the operation is wrapped here, on the observed
        // path only, so that the engine's code for unobserved calls has no trace of it.
        #[cfg(feature = "tracing")]
        let op = crate::telemetry::tracing::traced(op);
        let fut = self.run_full(seed, op, retryable, Some(probe.clone()));
        #[cfg(feature = "tracing")]
        let result = tracing::Instrument::instrument(fut, span.clone()).await;
        #[cfg(not(feature = "tracing"))]
        let result = fut.await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => {
                if let Error::Timeout { scope, elapsed } = e
                    && *scope != TimeoutScope::Operation
                {
                    emit(EventKind::TimeoutFired {
                        scope: *scope,
                        elapsed: *elapsed,
                    });
                }
                error_outcome(e)
            }
        };
        emit(EventKind::CallFinished {
            outcome,
            attempts: probe.attempts(),
            duration: probe.call_elapsed(),
        });
        result
    }

    /// The engine's full path (see [`Pipeline::run`]).
    async fn run_full<T, E, F, Fut, R>(
        &self,
        seed: Seed,
        op: F,
        retryable: R,
        probe: Option<Arc<Probe>>,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
    {
        let cancel = seed.cancel;
        let inner = &*self.inner;
        let hedge = inner.hedge.is_some() && !seed.no_hedge;
        let ambient = Ambient::current();
        let (inherited_deadline, inherited_cancel) = match ambient {
            Some(a) => (a.deadline, a.cancel),
            None => (None, None),
        };
        let cancel = cancel.or(inherited_cancel);
        // Reading the clock costs as much as the rest of the success path: only with a deadline.
        let request = within_horizon(inner.timeouts.request);
        let start = (request.is_some() || inherited_deadline.is_some()).then(instant_now);
        let own = request.zip(start).and_then(|(r, s)| deadline_after(s, r));
        let (deadline, scope) = match (own, inherited_deadline) {
            (Some(o), Some(i)) if i < o => (Some(i), TimeoutScope::Inherited),
            (Some(o), _) => (Some(o), TimeoutScope::Request),
            (None, Some(i)) => (Some(i), TimeoutScope::Inherited),
            (None, None) => (None, TimeoutScope::Request),
        };
        let labels = !seed.bare || inner.labels;
        let mut ctx = Context {
            attempt: 1,
            operation: if labels { inner.name.clone() } else { None },
            deadline,
            tags: if labels { inner.tags.clone() } else { None },
            cost: seed.cost,
            key: seed.key,
            probe,
            now: None,
        };
        if deadline.is_none() && cancel.is_none() {
            if inner.call_guards.is_empty() {
                // One future layer less on the plain path.
                return self.retry_loop(&mut ctx, op, retryable, hedge, None).await;
            }
            return self
                .guarded_call(&mut ctx, None, op, retryable, hedge)
                .await;
        }
        let ambient = Ambient {
            deadline,
            cancel: cancel.clone(),
        };
        // One poll loop for cancellation, the body and the deadline (in that order), rather
        // than nested combinators: the body future is moved once, not once per wrapper.
        let expiry = deadline.zip(start).map(|(at, start)| (at, scope, start));
        // In an `Option` so that a fired deadline can drop it in place (see below).
        let mut body = pin!(Some(
            ambient.scope(self.guarded_call(&mut ctx, expiry, op, retryable, hedge))
        ));
        // With per-call guards, `call` owns the deadline timer (it must record the timeout
        // on their permits); one timer per call either way.
        let mut sleep = pin!(
            deadline
                .filter(|_| inner.call_guards.is_empty())
                .map(tokio::time::sleep_until)
        );
        let mut cancelled = pin!(cancel.as_ref().map(|t| t.cancelled()));
        poll_fn(|cx| {
            if let Some(c) = cancelled.as_mut().as_pin_mut()
                && c.poll(cx).is_ready()
            {
                return Poll::Ready(Err(Error::Cancelled));
            }
            if let Some(b) = body.as_mut().as_pin_mut()
                && let Poll::Ready(r) = b.poll(cx)
            {
                return Poll::Ready(r);
            }
            if let Some(s) = sleep.as_mut().as_pin_mut()
                && s.poll(cx).is_ready()
            {
                let elapsed = start.map_or(Duration::ZERO, |s| {
                    instant_now().saturating_duration_since(s)
                });
                // Permits held by the attempt in flight record the deadline as a failure.
                let _fired = DeadlineFired::enter(elapsed);
                body.set(None);
                return Poll::Ready(Err(Error::Timeout { scope, elapsed }));
            }
            Poll::Pending
        })
        .await
    }

    /// Phase 2 and below: per-call guards around the retry loop.
    ///
    /// `deadline` is the request deadline with its scope and the call's start: when it
    /// fires while per-call permits are held, they record a failure (a dependency that
    /// only hangs must still trip a per-call breaker) before the timeout is returned.
    async fn guarded_call<T, E, F, Fut, R, X>(
        &self,
        mut ctx: X,
        deadline: Option<(Instant, TimeoutScope, Instant)>,
        op: F,
        retryable: R,
        hedge: bool,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
        X: BorrowMut<Context>,
    {
        let ctx: &mut Context = ctx.borrow_mut();
        let inner = &*self.inner;
        if inner.call_guards.is_empty() {
            return self.retry_loop(ctx, op, retryable, hedge, None).await;
        }
        // The call's one deadline timer: it bounds queueing in the guards and the retry
        // loop (`run` leaves the deadline to this phase when per-call guards exist).
        let mut expiry = pin!(deadline.map(|(at, _, _)| tokio::time::sleep_until(at)));
        let expired = |cx: &mut std::task::Context<'_>, expiry: &mut Pin<&mut Option<Sleep>>| {
            let (_, scope, start) = deadline?;
            let fired = expiry.as_mut().as_pin_mut()?.poll(cx).is_ready();
            fired.then(|| Error::Timeout {
                scope,
                elapsed: instant_now().saturating_duration_since(start),
            })
        };
        let mut permits = Permits::new();
        for g in &inner.call_guards {
            let mut queued = false;
            let admitted = match g.acquire(ctx) {
                Acquire::Ready(r) => r,
                Acquire::Wait(mut wait) => {
                    if let Some(p) = &ctx.probe {
                        queued = true;
                        queue(p, g.name());
                    }
                    let raced = poll_fn(|cx| {
                        if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                            return Poll::Ready(Ok(r));
                        }
                        match expired(cx, &mut expiry) {
                            Some(timeout) => Poll::Ready(Err(timeout)),
                            None => Poll::Pending,
                        }
                    })
                    .await;
                    match raced {
                        Ok(r) => r,
                        Err(timeout) => return Err(timeout),
                    }
                }
            };
            if let Some(probe) = &ctx.probe {
                admission(probe, g.name(), queued, &admitted);
            }
            match admitted {
                Ok(p) => permits.push(p.of(&**g)),
                Err(r) => return Err(r.into()),
            }
        }
        let t0 = inner.time_calls.then(|| inner.clock.now());
        let mut outcome = Outcome::Success;
        // One retry-loop future, raced against the deadline only when there is one.
        let (result, cut) = if deadline.is_none() {
            let result = self
                .retry_loop(ctx, op, retryable, hedge, Some(&mut outcome))
                .await;
            (result, false)
        } else {
            let mut attempts = pin!(Some(self.retry_loop(
                ctx,
                op,
                retryable,
                hedge,
                Some(&mut outcome)
            )));
            let result = poll_fn(|cx| {
                if let Some(a) = attempts.as_mut().as_pin_mut()
                    && let Poll::Ready(r) = a.poll(cx)
                {
                    return Poll::Ready(r);
                }
                match expired(cx, &mut expiry) {
                    Some(timeout) => {
                        // Permits held by the attempt in flight (per-attempt guards) record
                        // the deadline as a failure too, not as a cancellation.
                        if let Error::Timeout { elapsed, .. } = &timeout {
                            let _fired = DeadlineFired::enter(*elapsed);
                            attempts.set(None);
                        }
                        Poll::Ready(Err(timeout))
                    }
                    None => Poll::Pending,
                }
            })
            .await;
            (result, attempts.is_none())
        };
        // A deadline that cut the loop short is the call's failure.
        let outcome = if cut { Outcome::Failure } else { outcome };
        let took = t0.map_or(Duration::ZERO, |t0| inner.clock.now().saturating_sub(t0));
        for p in permits {
            p.record(outcome, took);
        }
        result
    }

    /// Phase 3: the retry loop. Returns the result and sets `outcome` to the logical call's
    /// outcome (an out-parameter rather than a tuple: the result then moves between the
    /// engine's futures in its own, aligned layout).
    #[allow(clippy::manual_async_fn)] // deliberate: see the comment in the body
    fn retry_loop<T, E, F, Fut, R, X>(
        &self,
        mut ctx: X,
        mut op: F,
        retryable: R,
        hedge: bool,
        mut call_outcome_out: Option<&mut Outcome>,
    ) -> impl Future<Output = Result<T, Error<E>>>
    where
        X: BorrowMut<Context>,
        C: Classify<T, E>,
        F: FnMut(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: Fn() -> bool,
    {
        // An async block, not an `async fn`: its captures are used in place rather than
        // copied into the future's locals on the first poll (measurably cheaper here).
        async move {
            let ctx: &mut Context = ctx.borrow_mut();
            let mut report = |outcome: Outcome| {
                if let Some(out) = call_outcome_out.as_deref_mut() {
                    *out = outcome;
                }
            };
            let inner = &*self.inner;
            let started = inner
                .retry
                .as_ref()
                .and_then(|r| r.max_elapsed)
                .map(|_| inner.clock.now());
            if let Some(b) = inner.retry.as_ref().and_then(|r| r.budget.as_ref()) {
                b.deposit();
            }
            if hedge && let Some(h) = &inner.hedge {
                h.deposit();
            }
            let mut previous = None;
            let mut attempt = 1;
            loop {
                ctx.attempt = attempt;
                if let Some(p) = &ctx.probe {
                    p.attempt_started(attempt);
                }
                let bare = inner.attempt_guards.is_empty() && inner.timeouts.operation.is_none();
                let (result, outcome) = if hedge && bare {
                    // The first attempt is the operation alone, polled once here: a quick
                    // answer is the whole call, with no hedging state set up.
                    let mut first = pin!(Some(hedge::Bare {
                        fut: op(ctx),
                        classify: &inner.classify,
                    }));
                    let quick = hedge::PollOnce(first.as_mut()).await;
                    match quick {
                        Some((a, o)) if !retried(&inner.classify, &a, o) => {
                            self.hedge_won();
                            (a, o)
                        }
                        quick => {
                            Box::pin(self.hedged(ctx, &mut op, &retryable, first, quick)).await
                        }
                    }
                } else if hedge {
                    // The first attempt is admitted (when every per-attempt guard answers
                    // at once) and launched here; a guard that would queue leaves it to
                    // `hedged`.
                    let mut first = pin!(None);
                    let mut done = None;
                    let mut admitted = true;
                    let permits = (!inner.attempt_guards.is_empty()).then(|| {
                        let mut permits = Permits::new();
                        for g in &inner.attempt_guards {
                            match g.acquire(ctx) {
                                Acquire::Ready(Ok(p)) => permits.push(p.of(&**g)),
                                Acquire::Ready(Err(r)) => {
                                    done = Some((Attempt::Rejected(r), Outcome::Failure));
                                    break;
                                }
                                Acquire::Wait(_) => {
                                    admitted = false;
                                    break;
                                }
                            }
                        }
                        permits
                    });
                    if done.is_none() && admitted {
                        first.set(Some(self.running(ctx, |c: &Context| op(c), permits)));
                    }
                    self.hedge_first(ctx, &mut op, &retryable, first, done)
                        .await
                } else if bare {
                    // Phase 6 alone: no need for `attempt`'s future.
                    let r = op(ctx).await;
                    let outcome = inner.classify.classify(&r);
                    (Attempt::Done(r), outcome)
                } else {
                    self.attempt(ctx, |c: &Context| op(c)).await
                };
                if let Some(probe) = &ctx.probe {
                    probe.emit(EventKind::AttemptFinished {
                        attempt,
                        outcome: attempt_outcome(&result, outcome),
                        duration: probe.attempt_elapsed(),
                    });
                }
                if !retried(&inner.classify, &result, outcome) {
                    report(outcome);
                    return finish(result, 1);
                }
                if !retryable() {
                    report(call_outcome(&result, outcome));
                    return finish(result, attempt);
                }
                let remaining = ctx
                    .deadline
                    .map(|d| d.saturating_duration_since(instant_now()));
                match self.next(
                    ctx,
                    attempt,
                    previous,
                    &result,
                    elapsed_since(&inner.clock, started),
                    remaining,
                ) {
                    Next::Stop => {
                        report(call_outcome(&result, outcome));
                        return finish(result, attempt);
                    }
                    Next::OutOfBudget(cost) => {
                        report(call_outcome(&result, outcome));
                        return out_of_budget(result, attempt, cost);
                    }
                    Next::Wait(delay) => {
                        drop(result);
                        if delay.is_zero() {
                            // An operation that fails without awaiting would otherwise
                            // loop without ever giving control back: spend a unit of the
                            // task's coop budget, yielding when it is exhausted, so that
                            // an enclosing timeout or an abort can stop the call (from the
                            // call's second retry on: see `run::free_of_budget`). (A
                            // sleep does the same for non-zero waits.)
                            if !run::free_of_budget(attempt + 1) {
                                tokio::task::coop::consume_budget().await;
                            }
                        } else {
                            tokio::time::sleep(delay.min(HORIZON)).await;
                        }
                        previous = Some(delay);
                        attempt += 1;
                    }
                }
            }
        }
    }

    /// Phases 4 to 6: per-attempt guards, operation timeout, the operation.
    async fn attempt<T, E, F, Fut>(&self, ctx: &mut Context, op: F) -> (Attempt<T, E>, Outcome)
    where
        C: Classify<T, E>,
        F: FnOnce(&Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let mut permits = Permits::new();
        for g in &inner.attempt_guards {
            let admitted = match &ctx.probe {
                None => g.acquire(ctx).resolve().await,
                Some(probe) => match g.acquire(ctx) {
                    Acquire::Ready(r) => {
                        admission(probe, g.name(), false, &r);
                        r
                    }
                    Acquire::Wait(wait) => {
                        queue(probe, g.name());
                        let r = wait.await;
                        admission(probe, g.name(), true, &r);
                        r
                    }
                },
            };
            match admitted {
                Ok(p) => permits.push(p.of(&**g)),
                Err(r) => return (Attempt::Rejected(r), Outcome::Failure),
            }
        }
        let t0 = inner.time_attempts.then(|| inner.clock.now());
        // An operation timeout too long to fire is none.
        let timeout = inner
            .timeouts
            .operation
            .and_then(|limit| Some((limit, deadline_from_now(limit)?)));
        let result = match timeout {
            Some((limit, at)) => {
                // The attempt's deadline, the tighter of the call's and the operation
                // timeout's, is what the operation's `Context` and nested pipelines see.
                let call_deadline = ctx.deadline;
                let deadline = call_deadline.map_or(at, |d| d.min(at));
                ctx.deadline = Some(deadline);
                let fut = op(ctx);
                ctx.deadline = call_deadline;
                let ambient = Ambient {
                    deadline: Some(deadline),
                    cancel: Ambient::inherited_cancel(),
                };
                match tokio::time::timeout_at(at, ambient.scope(fut)).await {
                    Ok(r) => Attempt::Done(r),
                    Err(_) => {
                        if let Some(probe) = &ctx.probe {
                            probe.emit(EventKind::TimeoutFired {
                                scope: TimeoutScope::Operation,
                                elapsed: limit,
                            });
                        }
                        Attempt::TimedOut(limit)
                    }
                }
            }
            None => Attempt::Done(op(ctx).await),
        };
        let outcome = match &result {
            Attempt::Done(r) => inner.classify.classify(r),
            _ => Outcome::Failure,
        };
        let took = t0.map_or(Duration::ZERO, |t0| inner.clock.now().saturating_sub(t0));
        for p in permits {
            p.record(outcome, took);
        }
        (result, outcome)
    }

    /// Decides whether failed attempt `attempt` is retried and after which delay.
    #[inline(always)]
    fn next<T, E>(
        &self,
        ctx: &Context,
        attempt: u32,
        previous: Option<Duration>,
        result: &Attempt<T, E>,
        elapsed: Duration,
        remaining: Option<Duration>,
    ) -> Next
    where
        C: Classify<T, E>,
    {
        let probe = ctx.probe.as_deref();
        let inner = &*self.inner;
        let Some(retry) = &inner.retry else {
            return Next::Stop;
        };
        if attempt >= retry.max_attempts {
            return Next::Stop;
        }
        let (server, reason) = match result {
            Attempt::Done(r) => (
                inner.classify.retry_after(attempt, r),
                if r.is_ok() {
                    RetryReason::FailedResult
                } else {
                    RetryReason::Error
                },
            ),
            Attempt::TimedOut(_) => {
                if !retry.retry_on_timeout {
                    return Next::Stop;
                }
                (None, RetryReason::Timeout)
            }
            Attempt::Rejected(rej) => {
                if !retry.retry_rejected {
                    return Next::Stop;
                }
                (rej.retry_after(), RetryReason::Rejected)
            }
        };
        let Some(delay) = retry.next_delay(attempt, previous, server) else {
            return Next::Stop;
        };
        if retry
            .max_elapsed
            .is_some_and(|max| elapsed.saturating_add(delay) > max)
        {
            return Next::Stop;
        }
        // Waiting past the deadline cannot help: fail fast with the last result.
        if remaining.is_some_and(|left| delay >= left) {
            return Next::Stop;
        }
        if let Some(budget) = &retry.budget
            && !budget.try_withdraw()
        {
            if let Some(probe) = probe {
                probe.emit(EventKind::BudgetExhausted { attempt });
            }
            return Next::Stop;
        }
        if let Some(costs) = &retry.cost_budget {
            let cost = match result {
                Attempt::Done(r) => inner.classify.retry_cost(r),
                _ => None,
            }
            .or(ctx.cost())
            .unwrap_or(costs.default_cost());
            if costs.try_charge(ctx.key(), cost).is_err() {
                if let Some(probe) = probe {
                    probe.emit(EventKind::BudgetExhausted { attempt });
                }
                return Next::OutOfBudget(cost);
            }
        }
        if let Some(probe) = probe {
            probe.emit(EventKind::RetryScheduled {
                attempt,
                delay,
                reason,
            });
        }
        // Built where it is read: with no hook, and a classifier that ignores retries (the
        // default), no event is written at all.
        let event = || RetryEvent {
            operation: inner.name.as_deref(),
            attempt,
            delay,
            reason,
        };
        if let Some(hook) = &retry.on_retry {
            hook(&event());
        }
        inner.classify.on_retry(
            &event(),
            match result {
                Attempt::Done(Ok(t)) => FailedAttempt::FailedResult(t),
                Attempt::Done(Err(e)) => FailedAttempt::Error(e),
                Attempt::TimedOut(elapsed) => FailedAttempt::Timeout(*elapsed),
                Attempt::Rejected(r) => FailedAttempt::Rejected(r),
            },
        );
        Next::Wait(delay)
    }

    /// Runs a blocking operation through the pipeline on the current thread.
    ///
    /// Waits (backoff) go through the pipeline's clock. A running blocking call cannot be
    /// interrupted: an attempt that overruns the operation timeout is counted as a
    /// timeout once it returns (its result is discarded), and the request deadline is
    /// checked before each attempt and each wait. Guards that would make the caller wait
    /// reject instead.
    ///
    /// Called from the operation of an async pipeline, it also honours that call's
    /// deadline (the tighter one wins, as [`TimeoutScope::Inherited`]) and cancellation
    /// ([`Error::Cancelled`]), checked before each attempt.
    ///
    /// ```
    /// use resilient::{Pipeline, Retry};
    /// let p = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
    /// let mut n = 0;
    /// let r = p.execute_blocking(|| { n += 1; if n == 1 { Err("first") } else { Ok(n) } });
    /// assert_eq!(r.unwrap(), 2);
    /// ```
    pub fn execute_blocking<T, E, F>(&self, mut op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut() -> Result<T, E>,
    {
        self.run_blocking(Seed::bare(), move |_| op())
    }

    /// [`Pipeline::execute_blocking`], handing the operation the [`Context`] of each
    /// attempt (as [`Pipeline::execute_with`] does for async operations): its attempt
    /// number, the pipeline's name and tags, and the call's deadline.
    ///
    /// ```
    /// use resilient::{Pipeline, Retry, Timeout};
    /// use std::time::Duration;
    /// let p = Pipeline::builder()
    ///     .timeout(Timeout::request(Duration::from_secs(5)))
    ///     .retry(Retry::immediate().attempts(3))
    ///     .build()
    ///     .unwrap();
    /// let r = p.execute_blocking_with(|ctx| {
    ///     assert!(ctx.deadline().is_some());
    ///     if ctx.attempt() < 3 { Err("not yet") } else { Ok(ctx.attempt()) }
    /// });
    /// assert_eq!(r.unwrap(), 3);
    /// ```
    pub fn execute_blocking_with<T, E, F>(&self, mut op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(Context) -> Result<T, E>,
    {
        self.run_blocking(Seed::default(), move |ctx| op(ctx.clone()))
    }

    /// The blocking engine: `op` sees each attempt's context.
    #[inline]
    fn run_blocking<T, E, F>(&self, seed: Seed, op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        // Nothing timed, no observer and no enclosing call's deadline or cancellation: no
        // clock.
        if self.inner.sink.is_none() && self.inner.untimed && !Ambient::active() {
            return self.run_blocking_untimed(seed.bare, seed.cost, seed.key, op);
        }
        // The other paths write their result into a local of this function, not into the
        // caller's: a result slot handed to a call that is not inlined cannot be merged
        // with the caller's own, which then copies the 32-byte result in two 16-byte loads
        // right after its narrower stores (a store-forwarding stall of some 10 ns a call
        // on the untimed path, measured in issue 10's harness).
        let mut result = Err(Error::Cancelled);
        self.run_blocking_timed(seed, op, &mut result);
        result
    }

    /// [`Pipeline::run_blocking`] for a call that is timed or observed, or inside another
    /// call's deadline or cancellation (out of line: see there).
    #[inline(never)]
    fn run_blocking_timed<T, E, F>(&self, seed: Seed, op: F, out: &mut Result<T, Error<E>>)
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        // `out` holds the caller's placeholder, which has nothing to drop: replaced
        // without running drop glue.
        std::mem::forget(std::mem::replace(out, self.run_blocking_observed(seed, op)));
    }

    /// The blocking engine with a clock: reports to the pipeline's observer if it has one.
    #[inline(always)]
    fn run_blocking_observed<T, E, F>(&self, seed: Seed, op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        let Some(sink) = &self.inner.sink else {
            return self.run_blocking_with(seed, op, None);
        };
        let clock = &self.inner.clock;
        let start = clock.now();
        sink.emit(EventKind::CallStarted {
            deadline: within_horizon(self.inner.timeouts.request),
        });
        let probe = Probe::new(sink.clone());
        let result = self.run_blocking_with(seed, op, Some(probe.clone()));
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(e) => {
                if let Error::Timeout { scope, elapsed } = e {
                    sink.emit(EventKind::TimeoutFired {
                        scope: *scope,
                        elapsed: *elapsed,
                    });
                }
                error_outcome(e)
            }
        };
        sink.emit(EventKind::CallFinished {
            outcome,
            attempts: probe.attempts(),
            duration: clock.now().saturating_sub(start),
        });
        result
    }

    /// The blocking engine for a call that measures no time (see `Inner::untimed`), with
    /// no observer and no enclosing deadline: the phases of [`Pipeline::run_blocking_with`]
    /// without a clock, a deadline or telemetry.
    #[inline]
    fn run_blocking_untimed<T, E, F>(
        &self,
        bare: bool,
        cost: Option<u64>,
        key: Option<u64>,
        mut op: F,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        let inner = &*self.inner;
        let labels = !bare || inner.labels;
        let ctx = Context {
            attempt: 1,
            operation: if labels { inner.name.clone() } else { None },
            deadline: None,
            tags: if labels { inner.tags.clone() } else { None },
            cost,
            key,
            probe: None,
            now: None,
        };
        // The per-call permits: a lone guard's (a breaker or a bulkhead alone) in a local of
        // its own, more in a list (which a call with one guard neither builds nor drops).
        let (mut lone, mut call_permits) = (None, None);
        if let [g] = &inner.call_guards[..] {
            match g.acquire_now(&ctx) {
                Ok(p) => lone = Some(p.of(&**g)),
                Err(r) => return Err(r.into()),
            }
        } else if !inner.call_guards.is_empty() {
            let permits = call_permits.insert(Held::default());
            for g in &inner.call_guards {
                match g.acquire_now(&ctx) {
                    Ok(p) => permits.push(p.of(&**g)),
                    Err(r) => return Err(r.into()),
                }
            }
        }
        let retry = inner.retry.as_ref();
        if let Some(b) = retry.and_then(|r| r.budget.as_ref()) {
            b.deposit();
        }
        let (result, outcome) = self.untimed_attempt(&ctx, &mut op);
        if retried(&inner.classify, &result, outcome) {
            // Written into a local, not this call's result slot (see `run_blocking`).
            let mut out = Err(Error::Cancelled);
            let first = (result, outcome);
            self.untimed_retries(ctx, op, labels, (lone, call_permits), first, &mut out);
            return out;
        }
        record_blocking(lone, call_permits.as_mut(), outcome);
        if !labels {
            // It holds no reference count: forgotten, so no drop glue runs for it.
            std::mem::forget(ctx);
        }
        // Built last, where the caller reads it.
        finish(result, 1)
    }

    /// [`Pipeline::run_blocking_untimed`] after a first attempt that is retried: the
    /// retries, then the per-call permits record the call's outcome (out of line: see
    /// `run_blocking`).
    #[inline(never)]
    fn untimed_retries<T, E, F>(
        &self,
        mut ctx: Context,
        mut op: F,
        labels: bool,
        (lone, mut call_permits): (Option<Permit<'_>>, Option<Held<'_>>),
        (mut result, mut outcome): (Attempt<T, E>, Outcome),
        out: &mut Result<T, Error<E>>,
    ) where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        let inner = &*self.inner;
        let mut previous = None;
        let mut attempt = 1;
        let (end, outcome) = loop {
            let next = self.next(&ctx, attempt, previous, &result, Duration::ZERO, None);
            if let Some(end) =
                self.blocking_next(next, result, outcome, &mut attempt, &mut previous)
            {
                break end;
            }
            ctx.attempt = attempt;
            (result, outcome) = self.untimed_attempt(&ctx, &mut op);
            if !retried(&inner.classify, &result, outcome) {
                break (finish(result, 1), outcome);
            }
        };
        record_blocking(lone, call_permits.as_mut(), outcome);
        if !labels {
            std::mem::forget(ctx);
        }
        // `out` holds the caller's placeholder, which has nothing to drop.
        std::mem::forget(std::mem::replace(out, end));
    }

    /// A blocking call's step after a retried attempt: the call's result and outcome when
    /// the retry loop stops, else (after the wait, on the pipeline's clock) `None` for the
    /// next attempt. Shared by the timed and the untimed blocking loops.
    fn blocking_next<T, E>(
        &self,
        next: Next,
        result: Attempt<T, E>,
        outcome: Outcome,
        attempt: &mut u32,
        previous: &mut Option<Duration>,
    ) -> Option<(Result<T, Error<E>>, Outcome)> {
        match next {
            Next::Stop => {
                let outcome = call_outcome(&result, outcome);
                Some((finish(result, *attempt), outcome))
            }
            Next::OutOfBudget(cost) => {
                let outcome = call_outcome(&result, outcome);
                Some((out_of_budget(result, *attempt, cost), outcome))
            }
            Next::Wait(delay) => {
                drop(result);
                if !delay.is_zero() {
                    self.inner.clock.sleep_blocking(delay);
                }
                *previous = Some(delay);
                *attempt += 1;
                None
            }
        }
    }

    /// One untimed blocking attempt: phases 4 and 6 (see [`Pipeline::run_blocking_untimed`]).
    #[inline(always)]
    fn untimed_attempt<T, E, F>(&self, ctx: &Context, op: &mut F) -> (Attempt<T, E>, Outcome)
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        let inner = &*self.inner;
        if inner.attempt_guards.is_empty() {
            let r = op(ctx);
            let outcome = inner.classify.classify(&r);
            return (Attempt::Done(r), outcome);
        }
        let mut permits = Held::default();
        for g in &inner.attempt_guards {
            match g.acquire_now(ctx) {
                Ok(p) => permits.push(p.of(&**g)),
                Err(r) => return (Attempt::Rejected(r), Outcome::Failure),
            }
        }
        let r = op(ctx);
        let outcome = inner.classify.classify(&r);
        permits.drain(0, |p| p.record(outcome, Duration::ZERO));
        (Attempt::Done(r), outcome)
    }

    /// The blocking engine proper, reporting to `probe` if given.
    fn run_blocking_with<T, E, F>(
        &self,
        seed: Seed,
        mut op: F,
        probe: Option<Arc<Probe>>,
    ) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnMut(&Context) -> Result<T, E>,
    {
        let inner = &*self.inner;
        let clock = &inner.clock;
        // Inside an async pipeline's call (a blocking call made by its operation), the
        // enclosing deadline and cancellation apply too; the tighter deadline wins.
        let (inherited, cancel) = match Ambient::current() {
            Some(a) => (a.deadline, a.cancel),
            None => (None, None),
        };
        let request = within_horizon(inner.timeouts.request);
        let left = inherited.map(|d| d.saturating_duration_since(instant_now()));
        let (limit, scope) = match (request, left) {
            (Some(r), Some(i)) if i < r => (Some(i), TimeoutScope::Inherited),
            (Some(r), _) => (Some(r), TimeoutScope::Request),
            (None, Some(i)) => (Some(i), TimeoutScope::Inherited),
            (None, None) => (None, TimeoutScope::Request),
        };
        // The clock is read only for what needs it: a deadline, an operation timeout, the
        // retry plan's `max_elapsed`, or a guard that uses durations (a plain call, or one
        // through a breaker that does not time calls, reads it not at all).
        let max_elapsed = inner
            .retry
            .as_ref()
            .is_some_and(|r| r.max_elapsed.is_some());
        let start = (limit.is_some() || max_elapsed || inner.time_calls).then(|| clock.now());
        let time_attempts = inner.time_attempts || inner.timeouts.operation.is_some();
        let deadline = limit.zip(start).map(|(l, s)| s.saturating_add(l));
        let since_start = |now: Duration| start.map_or(Duration::ZERO, |s| now.saturating_sub(s));
        let expired = || -> Option<Error<E>> {
            if cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return Some(Error::Cancelled);
            }
            let d = deadline?;
            let now = clock.now();
            (now >= d).then(|| Error::Timeout {
                scope,
                elapsed: since_start(now),
            })
        };
        // Name and tags only for someone who can read them: the operation or a guard.
        let labels = !seed.bare || inner.labels;
        let mut ctx = Context {
            attempt: 1,
            operation: if labels { inner.name.clone() } else { None },
            // the deadline as a tokio instant, the tighter of the inherited one and the
            // request timeout's
            deadline: match (inherited, request.and_then(deadline_from_now)) {
                (Some(i), Some(own)) => Some(i.min(own)),
                (i, own) => i.or(own),
            },
            tags: if labels { inner.tags.clone() } else { None },
            cost: seed.cost,
            key: seed.key,
            probe,
            now: None,
        };
        let mut call_permits = Permits::new();
        for g in &inner.call_guards {
            let admitted = g.acquire_now(&ctx);
            if let Some(probe) = &ctx.probe {
                admission(probe, g.name(), false, &admitted);
            }
            match admitted {
                Ok(p) => call_permits.push(p.of(&**g)),
                Err(r) => return Err(r.into()),
            }
        }
        if let Some(b) = inner.retry.as_ref().and_then(|r| r.budget.as_ref()) {
            b.deposit();
        }
        let mut previous = None;
        let mut attempt = 1;
        let (result, outcome) = loop {
            ctx.attempt = attempt;
            if let Some(e) = expired() {
                break (Err(e), Outcome::Failure);
            }
            let t0 = ctx.probe.as_ref().map(|p| {
                p.attempt_started(attempt);
                clock.now()
            });
            let mut permits = Permits::new();
            let mut rejected = None;
            for g in &inner.attempt_guards {
                let admitted = g.acquire_now(&ctx);
                if let Some(probe) = &ctx.probe {
                    admission(probe, g.name(), false, &admitted);
                }
                match admitted {
                    Ok(p) => permits.push(p.of(&**g)),
                    Err(r) => {
                        rejected = Some(r);
                        break;
                    }
                }
            }
            let (result, outcome) = match rejected {
                Some(r) => {
                    drop(permits);
                    (Attempt::Rejected(r), Outcome::Failure)
                }
                None => {
                    let t0 = time_attempts.then(|| clock.now());
                    let r = op(&ctx);
                    let took = t0.map_or(Duration::ZERO, |t0| clock.now().saturating_sub(t0));
                    let (result, outcome) = match inner.timeouts.operation {
                        Some(limit) if took > limit => (Attempt::TimedOut(took), Outcome::Failure),
                        _ => {
                            let o = inner.classify.classify(&r);
                            (Attempt::Done(r), o)
                        }
                    };
                    for p in permits {
                        p.record(outcome, took);
                    }
                    (result, outcome)
                }
            };
            if let (Some(probe), Some(t0)) = (&ctx.probe, t0) {
                probe.emit(EventKind::AttemptFinished {
                    attempt,
                    outcome: attempt_outcome(&result, outcome),
                    duration: clock.now().saturating_sub(t0),
                });
            }
            if !retried(&inner.classify, &result, outcome) {
                break (finish(result, 1), outcome);
            }
            let now = start.map(|_| clock.now());
            let remaining = deadline.zip(now).map(|(d, now)| d.saturating_sub(now));
            let next = self.next(
                &ctx,
                attempt,
                previous,
                &result,
                now.map_or(Duration::ZERO, since_start),
                remaining,
            );
            if let Some(end) =
                self.blocking_next(next, result, outcome, &mut attempt, &mut previous)
            {
                break end;
            }
        };
        let took = if inner.time_calls {
            since_start(clock.now())
        } else {
            Duration::ZERO
        };
        for p in call_permits {
            p.record(outcome, took);
        }
        result
    }
}

/// Reports that guard `strategy` makes the call wait.
#[cold]
fn queue(probe: &Probe, strategy: &'static str) {
    probe.emit(EventKind::Queued { strategy });
    probe.wait_started();
}

/// Reports a guard's answer (`queued`: whether it made the call wait first).
fn admission(
    probe: &Probe,
    strategy: &'static str,
    queued: bool,
    answer: &Result<Permit<'_>, Rejection>,
) {
    let waited = queued.then(|| probe.waited());
    probe.emit(match answer {
        Ok(_) => EventKind::Admitted { strategy, waited },
        Err(rejection) => EventKind::Rejected {
            strategy,
            rejection,
            waited,
        },
    });
}

/// How an attempt ended, as telemetry labels it.
fn attempt_outcome<T, E>(result: &Attempt<T, E>, outcome: Outcome) -> CallOutcome {
    match result {
        Attempt::TimedOut(_) => CallOutcome::Timeout,
        Attempt::Rejected(_) => CallOutcome::Rejected,
        Attempt::Done(_) if outcome == Outcome::Failure => CallOutcome::Failure,
        Attempt::Done(_) => CallOutcome::Success,
    }
}

/// How a logical call whose retries stopped is reported to per-call guards: as its last
/// attempt was judged, except that a rejection by a per-attempt guard says nothing about
/// the dependency, so it is not counted as its failure.
fn call_outcome<T, E>(last: &Attempt<T, E>, outcome: Outcome) -> Outcome {
    match last {
        Attempt::Rejected(_) => Outcome::Ignored,
        _ => outcome,
    }
}

/// Whether the attempt's result is worth another attempt ([`Classify::should_retry`];
/// a timed-out or rejected attempt as it was judged, a failure).
#[inline]
fn retried<T, E, C: Classify<T, E>>(
    classify: &C,
    result: &Attempt<T, E>,
    outcome: Outcome,
) -> bool {
    match result {
        Attempt::Done(r) => classify.should_retry(r, outcome),
        _ => outcome == Outcome::Failure,
    }
}

/// The per-call permits of an untimed blocking call record its outcome (no duration).
#[inline(always)]
fn record_blocking(lone: Option<Permit<'_>>, permits: Option<&mut Held<'_>>, outcome: Outcome) {
    if let Some(permit) = lone {
        permit.record(outcome, Duration::ZERO);
    }
    if let Some(permits) = permits {
        permits.drain(0, |p| p.record(outcome, Duration::ZERO));
    }
}

/// The end of a call whose next retry its cost budget refused: a failed `Ok` result is
/// returned as it is (as when retries run out); a failure is wrapped in
/// [`Error::CostBudgetExhausted`].
fn out_of_budget<T, E>(result: Attempt<T, E>, attempts: u32, cost: u64) -> Result<T, Error<E>> {
    finish(result, 1).map_err(|last| Error::CostBudgetExhausted {
        attempts,
        cost,
        last: Box::new(last),
    })
}

/// Turns the last attempt into the call's result. `attempts` counts the failed attempts
/// that led here (1 when the last result was not a failure: nothing was exhausted).
/// Always inline: the result is then built where the caller reads it (see `run::apart`).
#[inline(always)]
fn finish<T, E>(result: Attempt<T, E>, attempts: u32) -> Result<T, Error<E>> {
    match result {
        Attempt::Done(Ok(t)) => Ok(t),
        Attempt::Done(Err(e)) if attempts > 1 => Err(Error::RetriesExhausted { attempts, last: e }),
        Attempt::Done(Err(e)) => Err(Error::Inner(e)),
        Attempt::TimedOut(elapsed) => Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            elapsed,
        }),
        Attempt::Rejected(r) => Err(r.into()),
    }
}
