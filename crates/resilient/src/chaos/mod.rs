//! Chaos injection: faults, latency, substituted outcomes and rejections, injected at
//! chosen rates so that a pipeline's strategies can be exercised on purpose.
//!
//! A [`Chaos`] holds the rates of four independent injections, each drawn per call (per
//! attempt, when the pipeline retries) from its random source:
//!
//! | injection | what it does | how it reaches a call |
//! |---|---|---|
//! | fault | the attempt fails with an error you make | [`Chaos::inject`] |
//! | outcome | the attempt returns a result you make instead of running | [`Chaos::inject_outcome`] |
//! | latency | the attempt is delayed before it runs | [`Chaos::inject`], or the guard |
//! | rejection | the attempt is rejected as if by a guard named `"chaos"` | the [`Guard`] impl |
//!
//! The operation wrappers ([`Chaos::inject`], [`Chaos::inject_outcome`]) keep the caller's
//! error type, so an injected fault goes through retry classification, breakers and
//! fallbacks exactly as a real one would. The [`Guard`] implementation needs no error type:
//! add the `Chaos` to any pipeline with `PipelineBuilder::guard` and it rejects
//! (`Error::Rejected { guard: "chaos", .. }`) and delays attempts at its rates.
//!
//! Every rate can be changed, and the whole thing switched off, at run time through a
//! shared handle (clones of a `Chaos` share their settings). Switched off, an injection
//! point costs one atomic load. With a [seed](ChaosBuilder::seed) the sequence of
//! decisions is reproducible: it depends only on the seed and the order of the draws.
//!
//! ```
//! use resilient::chaos::Chaos;
//! use resilient::{Error, Pipeline, Retry};
//! use std::time::Duration;
//!
//! #[derive(Debug, PartialEq)]
//! enum MyError { Injected, Real }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let chaos = Chaos::builder().seed(7).fault_rate(0.5).build().unwrap();
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::immediate().attempts(20))
//!     .build()
//!     .unwrap();
//! // The retry rides out the injected faults.
//! let op = chaos.inject(|| async { Ok::<_, MyError>(42) }, || MyError::Injected);
//! assert_eq!(pipeline.execute(op).await, Ok(42));
//! assert!(chaos.stats().calls >= 1);
//!
//! chaos.set_enabled(false); // switch it off at run time
//! let op = chaos.inject(|| async { Err::<u32, _>(MyError::Real) }, || MyError::Injected);
//! let err = Pipeline::builder().build().unwrap().execute(op).await.unwrap_err();
//! assert_eq!(err.inner(), Some(&MyError::Real));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard, Permit, Rejection};
use crate::engine::outcome::Outcome;
use crate::engine::random::{SeededRandom, SharedRandom, thread_random};

/// The name under which the [`Guard`] implementation rejects.
pub const GUARD_NAME: &str = "chaos";

/// Injects faults, latency, substituted outcomes and rejections at configurable rates.
/// Clones share settings and counters (see the [module docs](self)).
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: AtomicBool,
    /// Rates as `f64` bits.
    fault: AtomicU64,
    outcome: AtomicU64,
    latency_rate: AtomicU64,
    reject: AtomicU64,
    /// Injected latency, in nanoseconds.
    latency: AtomicU64,
    random: SharedRandom,
    calls: AtomicU64,
    faults: AtomicU64,
    outcomes: AtomicU64,
    delays: AtomicU64,
    rejections: AtomicU64,
}

/// What one draw decided for one attempt (see [`Chaos::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Injection {
    /// Delay the attempt by this long before anything else.
    pub latency: Option<Duration>,
    /// Fail the attempt with an injected error (takes precedence over `outcome`).
    pub fault: bool,
    /// Replace the attempt's result with an injected one.
    pub outcome: bool,
}

impl Injection {
    /// Whether nothing is injected.
    pub fn is_none(&self) -> bool {
        self.latency.is_none() && !self.fault && !self.outcome
    }
}

/// Counts of what a [`Chaos`] has injected since it was built.
///
/// ```
/// use resilient::chaos::Chaos;
/// let chaos = Chaos::builder().seed(1).fault_rate(1.0).build().unwrap();
/// assert!(chaos.decide().fault);
/// let s = chaos.stats();
/// assert_eq!((s.calls, s.faults), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Draws made while enabled (attempts that passed an injection point).
    pub calls: u64,
    /// Faults injected.
    pub faults: u64,
    /// Outcomes substituted.
    pub outcomes: u64,
    /// Attempts delayed.
    pub delays: u64,
    /// Attempts rejected by the guard.
    pub rejections: u64,
}

/// Builds a [`Chaos`]. Every rate defaults to zero and the chaos starts enabled.
///
/// ```
/// use resilient::chaos::Chaos;
/// use std::time::Duration;
/// let err = Chaos::builder().fault_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "fault_rate");
/// let chaos = Chaos::builder()
///     .latency(0.1, Duration::from_millis(200))
///     .reject_rate(0.01)
///     .build()
///     .unwrap();
/// assert_eq!(chaos.latency(), (0.1, Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone)]
pub struct ChaosBuilder {
    enabled: bool,
    fault: f64,
    outcome: f64,
    latency_rate: f64,
    latency: Duration,
    reject: f64,
    random: Option<SharedRandom>,
}

fn check_rate(field: &'static str, rate: f64) -> Result<(), ConfigError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a probability between 0 and 1, got {rate}"),
        ))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ChaosBuilder {
    /// The share of attempts that fail with an injected error, in `[0, 1]`.
    pub fn fault_rate(mut self, rate: f64) -> Self {
        self.fault = rate;
        self
    }

    /// The share of attempts whose result is replaced by an injected one, in `[0, 1]`
    /// (used by [`Chaos::inject_outcome`]; a fault drawn for the same attempt wins).
    pub fn outcome_rate(mut self, rate: f64) -> Self {
        self.outcome = rate;
        self
    }

    /// The share of attempts delayed, and by how long.
    pub fn latency(mut self, rate: f64, delay: Duration) -> Self {
        self.latency_rate = rate;
        self.latency = delay;
        self
    }

    /// The share of attempts the [`Guard`] implementation rejects, in `[0, 1]`.
    pub fn reject_rate(mut self, rate: f64) -> Self {
        self.reject = rate;
        self
    }

    /// Starts switched on (the default) or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Draws from a [`SeededRandom`] with this seed: reproducible decisions.
    pub fn seed(mut self, seed: u64) -> Self {
        self.random = Some(Arc::new(SeededRandom::new(seed)));
        self
    }

    /// Draws from this random source (default: thread-local randomness).
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = Some(random);
        self
    }

    /// Checks every rate and builds the [`Chaos`].
    pub fn build(self) -> Result<Chaos, ConfigError> {
        check_rate("fault_rate", self.fault)?;
        check_rate("outcome_rate", self.outcome)?;
        check_rate("latency_rate", self.latency_rate)?;
        check_rate("reject_rate", self.reject)?;
        Ok(Chaos {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(self.enabled),
                fault: AtomicU64::new(self.fault.to_bits()),
                outcome: AtomicU64::new(self.outcome.to_bits()),
                latency_rate: AtomicU64::new(self.latency_rate.to_bits()),
                reject: AtomicU64::new(self.reject.to_bits()),
                latency: AtomicU64::new(nanos(self.latency)),
                random: self.random.unwrap_or_else(thread_random),
                calls: AtomicU64::new(0),
                faults: AtomicU64::new(0),
                outcomes: AtomicU64::new(0),
                delays: AtomicU64::new(0),
                rejections: AtomicU64::new(0),
            }),
        })
    }
}

fn load_rate(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

impl Chaos {
    /// A builder with every rate at zero, enabled.
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder {
            enabled: true,
            fault: 0.0,
            outcome: 0.0,
            latency_rate: 0.0,
            latency: Duration::ZERO,
            reject: 0.0,
            random: None,
        }
    }

    /// Switches every injection on or off (for all clones).
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether injections are on.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Changes the fault rate; a rate outside `[0, 1]` is refused and the old one kept.
    ///
    /// ```
    /// use resilient::chaos::Chaos;
    /// let chaos = Chaos::builder().build().unwrap();
    /// chaos.set_fault_rate(0.25).unwrap();
    /// assert!(chaos.set_fault_rate(f64::NAN).is_err());
    /// assert_eq!(chaos.fault_rate(), 0.25);
    /// ```
    pub fn set_fault_rate(&self, rate: f64) -> Result<(), ConfigError> {
        check_rate("fault_rate", rate)?;
        self.inner.fault.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Changes the outcome rate (see [`Chaos::set_fault_rate`]).
    pub fn set_outcome_rate(&self, rate: f64) -> Result<(), ConfigError> {
        check_rate("outcome_rate", rate)?;
        self.inner.outcome.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Changes the latency rate and delay (see [`Chaos::set_fault_rate`]).
    pub fn set_latency(&self, rate: f64, delay: Duration) -> Result<(), ConfigError> {
        check_rate("latency_rate", rate)?;
        self.inner.latency.store(nanos(delay), Ordering::Relaxed);
        self.inner
            .latency_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Changes the rejection rate (see [`Chaos::set_fault_rate`]).
    pub fn set_reject_rate(&self, rate: f64) -> Result<(), ConfigError> {
        check_rate("reject_rate", rate)?;
        self.inner.reject.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// The current fault rate.
    pub fn fault_rate(&self) -> f64 {
        load_rate(&self.inner.fault)
    }

    /// The current outcome rate.
    pub fn outcome_rate(&self) -> f64 {
        load_rate(&self.inner.outcome)
    }

    /// The current latency rate and delay.
    pub fn latency(&self) -> (f64, Duration) {
        (
            load_rate(&self.inner.latency_rate),
            Duration::from_nanos(self.inner.latency.load(Ordering::Relaxed)),
        )
    }

    /// The current rejection rate.
    pub fn reject_rate(&self) -> f64 {
        load_rate(&self.inner.reject)
    }

    /// What has been injected so far.
    pub fn stats(&self) -> ChaosStats {
        let i = &self.inner;
        ChaosStats {
            calls: i.calls.load(Ordering::Relaxed),
            faults: i.faults.load(Ordering::Relaxed),
            outcomes: i.outcomes.load(Ordering::Relaxed),
            delays: i.delays.load(Ordering::Relaxed),
            rejections: i.rejections.load(Ordering::Relaxed),
        }
    }

    /// A draw against `rate` (no draw at all for a rate of zero or one).
    fn hit(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            false
        } else if rate >= 1.0 {
            true
        } else {
            self.inner.random.next_f64() < rate
        }
    }

    /// Counts an attempt and draws its injected latency (both injection points start so).
    fn draw_latency(&self) -> Option<Duration> {
        let i = &self.inner;
        i.calls.fetch_add(1, Ordering::Relaxed);
        self.hit(load_rate(&i.latency_rate)).then(|| {
            i.delays.fetch_add(1, Ordering::Relaxed);
            Duration::from_nanos(i.latency.load(Ordering::Relaxed))
        })
    }

    /// Draws the injections for one attempt: latency, fault and outcome, each independently
    /// at its rate (a fault and an outcome drawn together count as a fault). Nothing is
    /// drawn or counted while disabled.
    ///
    /// ```
    /// use resilient::chaos::Chaos;
    /// use std::time::Duration;
    /// let chaos = Chaos::builder().seed(3).latency(1.0, Duration::from_secs(1)).build().unwrap();
    /// let d = chaos.decide();
    /// assert_eq!(d.latency, Some(Duration::from_secs(1)));
    /// assert!(!d.fault);
    /// chaos.set_enabled(false);
    /// assert!(chaos.decide().is_none());
    /// ```
    pub fn decide(&self) -> Injection {
        if !self.is_enabled() {
            return Injection::default();
        }
        let i = &self.inner;
        let latency = self.draw_latency();
        let fault = self.hit(load_rate(&i.fault));
        let outcome = self.hit(load_rate(&i.outcome)) && !fault;
        if fault {
            i.faults.fetch_add(1, Ordering::Relaxed);
        }
        if outcome {
            i.outcomes.fetch_add(1, Ordering::Relaxed);
        }
        Injection {
            latency,
            fault,
            outcome,
        }
    }

    /// Wraps an operation for `Pipeline::execute`: each call of the returned closure (each
    /// attempt) draws its injections; an injected fault returns `Err(fault())` without
    /// calling `op`, injected latency waits (on tokio's clock) before the attempt. The
    /// outcome rate is not used here (see [`Chaos::inject_outcome`]).
    ///
    /// ```
    /// use resilient::chaos::Chaos;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let chaos = Chaos::builder().fault_rate(1.0).build().unwrap();
    /// let mut op = chaos.inject(|| async { Ok::<u8, &str>(1) }, || "injected");
    /// assert_eq!(op().await, Err("injected"));
    /// # }
    /// ```
    pub fn inject<T, E, F, Fut, G>(
        &self,
        mut op: F,
        fault: G,
    ) -> impl FnMut() -> ChaosFuture<Fut, T, E> + use<T, E, F, Fut, G>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Fn() -> E,
    {
        let chaos = self.clone();
        move || {
            let mut d = chaos.decide();
            d.outcome = false;
            chaos.future(d, &mut op, || Err(fault()))
        }
    }

    /// Like [`Chaos::inject`], with outcome injection too: an attempt drawn for an outcome
    /// returns `outcome()` (any `Result`, e.g. a wrong-but-valid value or a specific
    /// error) instead of running `op`. A fault drawn for the same attempt wins.
    ///
    /// ```
    /// use resilient::chaos::Chaos;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let chaos = Chaos::builder().outcome_rate(1.0).build().unwrap();
    /// let mut op = chaos.inject_outcome(
    ///     || async { Ok::<u8, &str>(1) },
    ///     || "fault",
    ///     || Ok(0), // a stale answer
    /// );
    /// assert_eq!(op().await, Ok(0));
    /// # }
    /// ```
    pub fn inject_outcome<T, E, F, Fut, G, H>(
        &self,
        mut op: F,
        fault: G,
        outcome: H,
    ) -> impl FnMut() -> ChaosFuture<Fut, T, E> + use<T, E, F, Fut, G, H>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: Fn() -> E,
        H: Fn() -> Result<T, E>,
    {
        let chaos = self.clone();
        move || {
            let d = chaos.decide();
            if d.fault {
                chaos.future(d, &mut op, || Err(fault()))
            } else {
                chaos.future(d, &mut op, &outcome)
            }
        }
    }

    fn future<T, E, F, Fut>(
        &self,
        d: Injection,
        op: &mut F,
        injected: impl FnOnce() -> Result<T, E>,
    ) -> ChaosFuture<Fut, T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let body = if d.fault || d.outcome {
            Body::Injected {
                result: Some(injected()),
            }
        } else {
            Body::Run { fut: op() }
        };
        ChaosFuture {
            delay: d.latency.map(tokio::time::sleep),
            body,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an attempt wrapped by [`Chaos::inject`]: an optional injected delay,
    /// then either the operation or the injected result.
    pub struct ChaosFuture<Fut, T, E> {
        #[pin]
        delay: Option<tokio::time::Sleep>,
        #[pin]
        body: Body<Fut, T, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = BodyProj]
    enum Body<Fut, T, E> {
        Run { #[pin] fut: Fut },
        Injected { result: Option<Result<T, E>> },
    }
}

impl<Fut, T, E> Future for ChaosFuture<Fut, T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut this = self.project();
        if let Some(delay) = this.delay.as_mut().as_pin_mut() {
            std::task::ready!(delay.poll(cx));
            this.delay.set(None);
        }
        match this.body.project() {
            BodyProj::Run { fut } => fut.poll(cx),
            BodyProj::Injected { result } => std::task::Poll::Ready(
                result
                    .take()
                    .expect("a chaos future is not polled after it completes"),
            ),
        }
    }
}

impl<Fut, T, E> fmt::Debug for ChaosFuture<Fut, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosFuture")
            .field("delayed", &self.delay.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("enabled", &self.is_enabled())
            .field("fault_rate", &self.fault_rate())
            .field("outcome_rate", &self.outcome_rate())
            .field("latency", &self.latency())
            .field("reject_rate", &self.reject_rate())
            .finish_non_exhaustive()
    }
}

/// As a guard, a `Chaos` rejects attempts at its rejection rate (`Rejection::Other` named
/// [`GUARD_NAME`]) and delays them at its latency rate; faults and outcomes need the
/// caller's types and come only through [`Chaos::inject`].
///
/// ```
/// use resilient::chaos::Chaos;
/// use resilient::{Error, Pipeline};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chaos = Chaos::builder().reject_rate(1.0).build().unwrap();
/// let p = Pipeline::builder().guard(chaos.clone()).build().unwrap();
/// let err = p.execute(|| async { Ok::<(), ()>(()) }).await.unwrap_err();
/// assert!(matches!(err, Error::Rejected { guard: "chaos", .. }));
/// assert_eq!(chaos.stats().rejections, 1);
/// # }
/// ```
impl Guard for Chaos {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        GUARD_NAME
    }

    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        if !self.is_enabled() {
            return Acquire::Ready(Ok(Permit::none()));
        }
        let i = &self.inner;
        let delay = self.draw_latency();
        let reject = self.hit(load_rate(&i.reject));
        let answer = if reject {
            i.rejections.fetch_add(1, Ordering::Relaxed);
            Err(Rejection::Other {
                guard: GUARD_NAME,
                retry_after: None,
            })
        } else {
            Ok(Permit::none())
        };
        match delay {
            Some(d) if !d.is_zero() => Acquire::Wait(Box::pin(async move {
                tokio::time::sleep(d).await;
                answer
            })),
            _ => Acquire::Ready(answer),
        }
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}
