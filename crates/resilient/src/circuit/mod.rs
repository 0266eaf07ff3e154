//! Circuit breaker: stop calling a dependency that keeps failing, probe it carefully, and
//! resume when it recovered.
//!
//! # States
//!
//! - [`CircuitState::Closed`]: calls flow; outcomes go into a sliding [`Window`] (or a
//!   consecutive-failure count). When the failure rate or slow-call rate reaches its
//!   threshold (compared with `>=`, once `minimum_calls` are in the window) the breaker
//!   opens.
//! - [`CircuitState::Open`]: calls fail fast with [`crate::Error::CircuitOpen`] carrying
//!   `retry_after`. The break grows with exponential backoff and jitter over repeated failed
//!   recoveries, is capped (also by the pipeline's `circuit` timeout), and resets after a
//!   successful close. There is no timer: the first call after the break moves the breaker
//!   to half-open and becomes a probe (so [`CircuitBreaker::state`] reads `Open` until a
//!   call arrives, while [`CircuitBreaker::is_ready`] already says ready). A phase's
//!   deadline never lies further ahead of the clock than the phase's longest length (the
//!   longest break, or the half-open wait; about 35 years at most): a custom clock that
//!   steps back delays probing by at most that, and clocks reading far ahead (a
//!   [`crate::ManualClock`] set centuries on) keep working.
//! - [`CircuitState::HalfOpen`]: exactly `half_open_probes` calls are admitted. Permits are
//!   RAII: a probe whose future is dropped gives its permit back and counts as neither
//!   success nor failure. The required successes close the breaker; a failed (or slow)
//!   probe reopens it; so does the end of the maximum half-open wait (by default one base
//!   break), whether or not probe permits are free, so that hung probes cannot keep it
//!   half-open.
//! - Manual: [`CircuitState::Isolated`] (forced open), [`CircuitState::Disabled`] (always
//!   pass, record nothing) and [`CircuitState::MetricsOnly`] (record and emit events, never
//!   reject; [`CircuitEvent::ThresholdExceeded`] says when it would have opened).
//!   [`crate::Error::CircuitOpen`] does not say which state rejected a call: an isolated
//!   breaker rejects with `retry_after: None`, and observers see the state in
//!   [`CircuitEvent::Rejected`].
//!
//! Results are judged by the pipeline's [`crate::Classify`]: [`crate::Outcome::Ignored`]
//! results are not counted. Placed before `.retry(..)` the breaker counts one logical call
//! once, however many attempts it made; after it, every attempt counts. A deadline that
//! fires is a failure for every breaker holding a permit: an attempt ended by the operation
//! timeout, and a call or attempt that the request timeout (or an inherited deadline) ends
//! (a dependency that only hangs must still trip the breaker). A call whose operation
//! panics is a failure too. A call the caller cancels is not counted. A standalone call or
//! a layer's call cannot see a timeout wrapped around it: one dropped unfinished after
//! running at least [`CircuitBreakerBuilder::call_timeout`] counts as a timed-out failure.
//!
//! # Three ways to use it
//!
//! ```
//! use resilient::circuit::Window;
//! use resilient::{CircuitBreaker, Error, Pipeline, Retry};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = CircuitBreaker::failure_rate(0.5)
//!     .window(Window::count(20))
//!     .open_for(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//!
//! // 1. Standalone.
//! let r: Result<u8, Error<std::io::Error>> = breaker.call(|| async { Ok(1) }).await;
//! assert_eq!(r.unwrap(), 1);
//!
//! // 2. In a pipeline (clones share state: one breaker, many pipelines).
//! let pipeline = Pipeline::builder()
//!     .circuit_breaker(&breaker)
//!     .retry(Retry::immediate().attempts(3))
//!     .build()
//!     .unwrap();
//! let r: Result<u8, Error<()>> = pipeline.execute(|| async { Ok(2) }).await;
//! assert_eq!(r.unwrap(), 2);
//!
//! // 3. As a tower layer: `ServiceBuilder::new().layer(breaker.layer())`.
//! assert_eq!(breaker.snapshot().buffered_calls, 2);
//! # }
//! ```
//!
//! Observe it with a [`CircuitObserver`] and [`CircuitBreaker::snapshot`]; integrate a
//! health probe with [`HealthCheck`]; share its state through a synchronous
//! [`StateStore`] (in one process), or replicate its phases across processes through a
//! [`RemoteStore`] (deadlines on the store's clock, a shared failed-recovery count, and
//! nothing on the admission path: `resilient-redis`'s `SharedBreaker` is one).

mod config;
mod events;
mod guard;
pub(crate) mod health;
#[cfg(feature = "tower")]
mod layer;
mod machine;
mod recovery;
mod snapshot;
mod state;
mod store;
mod sync;
mod window;

pub use config::CircuitBreakerBuilder;
pub use events::{CircuitEvent, CircuitObserver, TransitionReason};
pub use guard::IntoCircuitBreaker;
pub use health::{HealthCheck, HealthState, ProbeOutput};
#[cfg(feature = "tower")]
pub use layer::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};
pub use snapshot::CircuitSnapshot;
pub use state::{CircuitState, PhaseDeadline, StateWord};
pub use store::{LocalStore, Proposal, RemoteStore, RemoteSync, SharedPhase, StateStore};
pub use window::Window;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use machine::{Admit, Breaker};

use crate::engine::error::{ConfigError, Error};
use crate::engine::outcome::{AllErrors, Classify, Outcome};

/// A circuit breaker. Cloning is cheap and clones share all state.
///
/// Build one with [`CircuitBreaker::builder`], [`CircuitBreaker::failure_rate`] or
/// [`CircuitBreaker::consecutive_failures`]. See the [module docs](mod@crate::circuit).
///
/// ```
/// use resilient::{CircuitBreaker, CircuitState, Error};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::consecutive_failures(2).build().unwrap();
/// for _ in 0..2 {
///     let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// let r = breaker.call(|| async { Ok::<_, &str>(()) }).await;
/// assert!(matches!(r, Err(Error::CircuitOpen { retry_after: Some(_) })));
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Breaker>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// A standalone call's admission, released exactly once (also on cancellation or panic).
struct Held<'a> {
    breaker: &'a Breaker,
    token: Option<u64>,
    started: Option<Duration>,
    /// The operation returned: a panic from here on (the classifier's) is not the
    /// dependency's failure, and releases the admission uncounted.
    finished: bool,
}

impl Held<'_> {
    #[inline]
    fn record(self, outcome: Outcome, duration: Duration) {
        let this = std::mem::ManuallyDrop::new(self);
        if let Some(t) = this.token {
            this.breaker.release(t, Some((outcome, duration)));
        }
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            // a panicking operation is a failure; a panicking classifier is not counted
            let outcome = if self.finished {
                None
            } else {
                self.breaker.dropped(self.started)
            };
            self.breaker.release(t, outcome);
        }
    }
}

/// Armed around polling a call's operation: if the poll panics, the admission is released
/// as a failure at once (even if the future itself is dropped later, after the panic was
/// caught). Defused with `mem::forget` when the poll returns.
struct PollPanic<'a> {
    breaker: &'a Breaker,
    token: &'a mut u64,
    started: Option<Duration>,
}

impl Drop for PollPanic<'_> {
    fn drop(&mut self) {
        let token = std::mem::replace(self.token, NO_TOKEN);
        if token != NO_TOKEN {
            self.breaker
                .release(token, self.breaker.dropped(self.started));
        }
    }
}

/// No admission held (tokens never reach this value: epochs have 31 bits).
const NO_TOKEN: u64 = u64::MAX;

pin_project! {
    /// The future of [`CircuitBreaker::call`] and [`CircuitBreaker::call_classified`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Call<'a, F, Fut, C> {
        breaker: &'a CircuitBreaker,
        op: Option<F>,
        #[pin]
        fut: Option<Fut>,
        token: u64,
        started: Option<Duration>,
        classify: C,
    }

    impl<'a, F, Fut, C> PinnedDrop for Call<'a, F, Fut, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.token != NO_TOKEN {
                // Dropped before the call finished: a cancellation, unless it is dropped
                // by a panic.
                let inner = &this.breaker.inner;
                inner.release(*this.token, inner.dropped(*this.started));
            }
        }
    }
}

impl<F, Fut, C> fmt::Debug for Call<'_, F, Fut, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("breaker", &self.breaker.name())
            .field("started", &self.fut.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, E, F, Fut, C> Future for Call<'_, F, Fut, C>
where
    C: Classify<T, E>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner = &this.breaker.inner;
        if let Some(op) = this.op.take() {
            match inner.try_acquire() {
                Ok(Admit::Token(t)) => *this.token = t,
                Ok(Admit::Free) => {}
                Err(r) => return Poll::Ready(Err(r.into())),
            }
            *this.started = inner.measures_duration().then(|| inner.clock.now());
            this.fut.set(Some(op()));
        }
        let fut = this
            .fut
            .as_mut()
            .as_pin_mut()
            .expect("Call polled after completion");
        let result = if *this.token == NO_TOKEN {
            ready!(fut.poll(cx))
        } else {
            let armed = PollPanic {
                breaker: inner,
                token: this.token,
                started: *this.started,
            };
            let polled = fut.poll(cx);
            std::mem::forget(armed);
            ready!(polled)
        };
        if *this.token != NO_TOKEN {
            // Held while judging: a panicking classifier still releases it (uncounted).
            let held = Held {
                breaker: inner,
                token: Some(std::mem::replace(this.token, NO_TOKEN)),
                started: None,
                finished: true,
            };
            let outcome = this.classify.classify(&result);
            let took = this
                .started
                .map_or(Duration::ZERO, |t| inner.clock.now().saturating_sub(t));
            held.record(outcome, took);
        }
        Poll::Ready(result.map_err(Error::Inner))
    }
}

impl CircuitBreaker {
    /// A builder with the defaults: 50% failure rate over the last 100 calls, judged from
    /// 10 calls on, 30 s break, one half-open probe.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }

    /// A builder that opens when failures make up at least `rate` of the window.
    pub fn failure_rate(rate: f64) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new().failure_rate(rate)
    }

    /// A builder that opens after `n` failures in a row (no window, no rate).
    pub fn consecutive_failures(n: u32) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
            .without_failure_rate()
            .consecutive_failures(n)
    }

    pub(crate) fn from_breaker(inner: Arc<Breaker>) -> Self {
        Self { inner }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.inner.state()
    }

    /// A point-in-time view: state, rates, counts.
    pub fn snapshot(&self) -> CircuitSnapshot {
        self.inner.snapshot()
    }

    /// The health check's verdict (`None` without a health check, or once the check's
    /// task has stopped because its runtime shut down).
    pub fn health(&self) -> Option<HealthState> {
        self.inner.health()
    }

    /// For readiness endpoints: the breaker would admit a call and the health check (if
    /// any) does not report the dependency unhealthy.
    ///
    /// An open breaker whose break has elapsed is ready: it moves to half-open only when a
    /// call arrives (there is no timer), and that call is admitted as a probe. So a pod
    /// taken out of rotation while its breaker is open comes back once the break is over
    /// ([`CircuitBreaker::state`] still reports `Open` until the probe arrives).
    ///
    /// ```
    /// use resilient::CircuitBreaker;
    /// let b = CircuitBreaker::builder().build().unwrap();
    /// assert!(b.is_ready());
    /// b.isolate();
    /// assert!(!b.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    /// Forces the breaker open until [`CircuitBreaker::reset`] (maintenance, incidents).
    pub fn isolate(&self) {
        self.inner.force(CircuitState::Isolated);
    }

    /// Lets every call through and records nothing until [`CircuitBreaker::reset`].
    pub fn disable(&self) {
        self.inner.force(CircuitState::Disabled);
    }

    /// Records calls and emits events but never rejects (shadow roll-out).
    ///
    /// ```
    /// use resilient::{CircuitBreaker, CircuitState};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let b = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// b.metrics_only();
    /// for _ in 0..3 {
    ///     let r = b.call(|| async { Err::<(), _>("down") }).await;
    ///     assert!(matches!(r, Err(resilient::Error::Inner("down"))));
    /// }
    /// assert_eq!(b.state(), CircuitState::MetricsOnly);
    /// assert_eq!(b.snapshot().consecutive_failures, 3);
    /// # }
    /// ```
    pub fn metrics_only(&self) {
        self.inner.force(CircuitState::MetricsOnly);
    }

    /// Closes the breaker with an empty window and no backoff history (also ends a
    /// forced state).
    pub fn reset(&self) {
        self.inner.force(CircuitState::Closed);
    }

    /// Replicates this breaker's phases to `remote` from now on (see
    /// [`RemoteStore`]): its transitions are offered to the store, and the store moves it
    /// to phases decided elsewhere. Admission keeps deciding on the in-process state. A
    /// breaker has at most one remote store: attaching a second fails (and the store is
    /// not attached).
    ///
    /// ```
    /// # use resilient::circuit::{Proposal, RemoteStore, RemoteSync};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// #[derive(Debug)]
    /// struct Wall;
    /// impl RemoteStore for Wall {
    ///     fn now(&self) -> Duration {
    ///         std::time::UNIX_EPOCH.elapsed().unwrap_or_default()
    ///     }
    ///     fn propose(&self, _: Proposal) {}
    ///     fn attach(&self, _: RemoteSync) {}
    /// }
    /// let b = resilient::CircuitBreaker::consecutive_failures(3).build().unwrap();
    /// assert!(b.attach_remote_store(Arc::new(Wall)).is_ok());
    /// assert_eq!(
    ///     b.attach_remote_store(Arc::new(Wall)).unwrap_err().field(),
    ///     "circuit.remote_store"
    /// );
    /// ```
    pub fn attach_remote_store(&self, remote: Arc<dyn RemoteStore>) -> Result<(), ConfigError> {
        if self.inner.attach_remote(remote) {
            Ok(())
        } else {
            Err(ConfigError::new(
                "circuit.remote_store",
                "this breaker already replicates to a remote store",
            ))
        }
    }

    /// Runs `op` through the breaker: every `Err` counts as a failure.
    ///
    /// Admission happens when the returned future is first polled; dropping it before it
    /// finishes releases the admission without counting the call.
    pub fn call<T, E, F, Fut>(&self, op: F) -> Call<'_, F, Fut, AllErrors>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(AllErrors, op)
    }

    /// Runs `op` through the breaker, judging its result with `classify`.
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Outcome};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let b = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// let not_found = |r: &Result<(), u16>| match r {
    ///     Err(404) => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    /// };
    /// let _ = b.call_classified(not_found, || async { Err(404) }).await;
    /// assert!(b.is_ready());
    /// # }
    /// ```
    pub fn call_classified<T, E, C, F, Fut>(&self, classify: C, op: F) -> Call<'_, F, Fut, C>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Call {
            breaker: self,
            op: Some(op),
            fut: None,
            token: NO_TOKEN,
            started: None,
            classify,
        }
    }

    /// Runs a blocking `op` through the breaker on the current thread.
    ///
    /// ```
    /// use resilient::CircuitBreaker;
    /// let b = CircuitBreaker::failure_rate(0.5).build().unwrap();
    /// let r = b.call_blocking(|| "7".parse::<u8>());
    /// assert_eq!(r.unwrap(), 7);
    /// ```
    pub fn call_blocking<T, E, F>(&self, op: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, E>,
    {
        self.call_blocking_classified(AllErrors, op)
    }

    /// Runs a blocking `op` through the breaker on the current thread, judging its result
    /// with `classify`.
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Outcome};
    /// let b = CircuitBreaker::consecutive_failures(1).build().unwrap();
    /// let not_found = |r: &Result<(), u16>| match r {
    ///     Err(404) => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    /// };
    /// let _ = b.call_blocking_classified(not_found, || Err(404));
    /// assert!(b.is_ready());
    /// ```
    pub fn call_blocking_classified<T, E, C, F>(&self, classify: C, op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Result<T, E>,
    {
        let mut held = self.admit()?;
        let measure = self.inner.measures_duration();
        let t0 = measure.then(|| self.inner.clock.now());
        held.started = t0;
        // A panicking `op` releases the admission as a failure on unwind.
        let result = op();
        let took = t0.map_or(Duration::ZERO, |t| self.inner.clock.now().saturating_sub(t));
        held.finished = true;
        // Judged before the admission is given up: a panicking classifier releases it
        // (uncounted) on unwind.
        let outcome = classify.classify(&result);
        held.record(outcome, took);
        result.map_err(Error::Inner)
    }

    /// The former name of [`CircuitBreaker::call_classified`] (`_with` now means "the
    /// operation receives the [`Context`](crate::Context)" everywhere).
    #[deprecated(since = "0.1.0", note = "renamed to `call_classified`")]
    pub fn call_with<T, E, C, F, Fut>(&self, classify: C, op: F) -> Call<'_, F, Fut, C>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(classify, op)
    }

    /// The former name of [`CircuitBreaker::call_blocking_classified`].
    #[deprecated(since = "0.1.0", note = "renamed to `call_blocking_classified`")]
    pub fn call_blocking_with<T, E, C, F>(&self, classify: C, op: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E>,
        F: FnOnce() -> Result<T, E>,
    {
        self.call_blocking_classified(classify, op)
    }

    #[inline]
    fn admit<E>(&self) -> Result<Held<'_>, Error<E>> {
        match self.inner.try_acquire() {
            Ok(Admit::Token(t)) => Ok(Held {
                breaker: &self.inner,
                token: Some(t),
                started: None,
                finished: false,
            }),
            Ok(Admit::Free) => Ok(Held {
                breaker: &self.inner,
                token: None,
                started: None,
                finished: false,
            }),
            Err(r) => Err(r.into()),
        }
    }
}
