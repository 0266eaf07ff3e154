//! The guard seam: strategies that admit or reject calls without knowing `T` or `E`.
//!
//! Rate limiters, circuit breakers, bulkheads and custom gates implement [`Guard`]. The
//! pipeline asks a guard for a [`Permit`] before the operation runs and reports the
//! [`Outcome`] and duration through that permit afterwards. A permit dropped without a
//! report (the call's future was cancelled) tells the guard so: capacity is never leaked.
//! Two drops are not cancellations but failures: a permit dropped while its thread panics
//! (the operation panicked) and one dropped because a pipeline deadline fired.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::outcome::Outcome;
use crate::engine::telemetry::{GuardGauges, TransitionSink};
use crate::engine::timeouts::Timeouts;

/// Why a guard refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// A circuit breaker is open.
    CircuitOpen {
        /// How long it is expected to stay open.
        retry_after: Option<Duration>,
    },
    /// A rate limiter has no capacity.
    RateLimited {
        /// When capacity is expected.
        retry_after: Option<Duration>,
        /// The limit's state when it rejected (for `RateLimit` headers), if the limiter
        /// reports it. Boxed: rejections stay small on the success path's types.
        info: Option<Box<RateLimitInfo>>,
    },
    /// A bulkhead has no free slot.
    BulkheadFull,
    /// A health check says the dependency is unhealthy (see
    /// `resilient::health::HealthAware`).
    Unhealthy {
        /// Time until the next health probe, if known.
        retry_after: Option<Duration>,
    },
    /// Any other guard.
    Other {
        /// The guard's name.
        guard: &'static str,
        /// When to try again, if known.
        retry_after: Option<Duration>,
    },
}

impl Rejection {
    /// The retry-after hint carried by this rejection.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::CircuitOpen { retry_after }
            | Rejection::RateLimited { retry_after, .. }
            | Rejection::Other { retry_after, .. }
            | Rejection::Unhealthy { retry_after } => *retry_after,
            Rejection::BulkheadFull => None,
        }
    }
}

/// What a rate limiter knew when it rejected a call: enough for a server to answer with
/// `RateLimit`/`RateLimit-Policy` headers from the error alone (see
/// `resilient::ratelimit::headers::write_rejection_headers`, feature `http-headers`).
/// Plain data, so that every layer can carry it.
///
/// ```
/// use resilient::{Error, Pipeline};
/// use resilient::ratelimit::{Rate, RateLimiter};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p = Pipeline::builder().rate_limit(RateLimiter::gcra(Rate::per_minute(60))).build().unwrap();
/// for _ in 0..60 {
///     let _: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
/// }
/// let err = p.execute(|| async { Ok::<(), ()>(()) }).await.unwrap_err();
/// let info = err.rate_limit_info().expect("the limiter says why");
/// assert_eq!((info.limit, info.remaining, info.quota), (60, 0, 60));
/// assert_eq!(info.window, std::time::Duration::from_secs(60));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// The limit's capacity in units (its burst).
    pub limit: u64,
    /// Units left (0 when rejected, unless the request cost more than was left).
    pub remaining: u64,
    /// Time until the limit is full again.
    pub reset: Duration,
    /// The policy: units per window.
    pub quota: u64,
    /// The policy's window.
    pub window: Duration,
}

impl RateLimitInfo {
    /// The state of a limit: capacity, units left, time until full, and its policy.
    pub fn new(limit: u64, remaining: u64, reset: Duration, quota: u64, window: Duration) -> Self {
        Self {
            limit,
            remaining,
            reset,
            quota,
            window,
        }
    }
}

/// A future that resolves to a permit once a waiting guard admits the call.
pub type WaitFuture<'a> = Pin<Box<dyn Future<Output = Result<Permit<'a>, Rejection>> + Send + 'a>>;

/// The answer to [`Guard::acquire`].
pub enum Acquire<'a> {
    /// Decided at once (the fast path: no allocation).
    Ready(Result<Permit<'a>, Rejection>),
    /// The guard makes the caller wait (queueing, rate-limit waits). Dropping the future
    /// must give back any reservation it holds.
    Wait(WaitFuture<'a>),
}

impl<'a> Acquire<'a> {
    /// Resolves the acquisition, awaiting if the guard asked to wait.
    pub async fn resolve(self) -> Result<Permit<'a>, Rejection> {
        match self {
            Acquire::Ready(r) => r,
            Acquire::Wait(f) => f.await,
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Acquire::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Acquire::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

/// A strategy that admits or rejects calls.
///
/// Implementations must be cheap on the admit path (atomics, no locks where avoidable) and
/// must release whatever a permit holds in [`Guard::on_release`], which runs exactly once
/// per permit: after [`Permit::record`] or on drop.
///
/// ```
/// use resilient::{Acquire, Context, Guard, Outcome, Permit, Rejection};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// /// Rejects everything while switched off.
/// #[derive(Debug, Default)]
/// struct Switch(AtomicBool);
///
/// impl Guard for Switch {
///     fn name(&self) -> &'static str { "switch" }
///     fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
///         if self.0.load(Ordering::Relaxed) {
///             Acquire::Ready(Err(Rejection::Other { guard: "switch", retry_after: None }))
///         } else {
///             Acquire::Ready(Ok(Permit::new(self, 0)))
///         }
///     }
///     fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}
/// }
/// let s = Switch::default();
/// let ctx = Context::new();
/// assert!(matches!(s.acquire(&ctx), Acquire::Ready(Ok(_))));
/// ```
pub trait Guard: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors and events.
    fn name(&self) -> &'static str;

    /// Asks for admission.
    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a>;

    /// Called once per permit: with `Some((outcome, duration))` when the call finished and
    /// was recorded, with `None` when the permit was dropped unrecorded (cancelled).
    /// `token` is the value the permit was created with.
    ///
    /// A permit dropped unrecorded while its thread panics reports
    /// `Some((Outcome::Failure, Duration::ZERO))` (a panic is a failure), and one dropped
    /// because a pipeline's request deadline (or an inherited one) fired reports
    /// `Some((Outcome::Failure, elapsed))`, `elapsed` being the time since the call
    /// started: a deadline that fires is a failure for every guard holding a permit.
    fn on_release(&self, token: u64, outcome: Option<(Outcome, Duration)>);

    /// Admission without waiting, for blocking execution (which cannot await). The default
    /// takes [`Guard::acquire`]'s answer when it is ready and otherwise drops the wait
    /// (giving back whatever it reserved) and rejects as [`Rejection::Other`]; guards
    /// override it to reject with their own variant and `retry_after`.
    fn acquire_now(&self, ctx: &Context) -> Result<Permit<'_>, Rejection> {
        match self.acquire(ctx) {
            Acquire::Ready(r) => r,
            Acquire::Wait(_) => Err(Rejection::Other {
                guard: self.name(),
                retry_after: None,
            }),
        }
    }

    /// Whether [`Guard::acquire`] reads the [`Context`]'s labels: its
    /// [`operation`](Context::operation) name and [`tag`](Context::tag)s (default `true`).
    /// When no guard of a pipeline does and the operation does not see its context
    /// (`execute`, not `execute_with`), calls leave them out of the context and skip two
    /// reference-count updates each. The crate's breakers, limiters and bulkheads answer
    /// `false`.
    ///
    /// ```
    /// use resilient::{CircuitBreaker, Guard};
    /// let breaker = CircuitBreaker::consecutive_failures(5).build().unwrap();
    /// assert!(!breaker.reads_labels());
    /// ```
    fn reads_labels(&self) -> bool {
        true
    }

    /// Whether [`Guard::on_release`] uses the call's duration. The engine reads the clock
    /// around a call only when one of its guards does (default `true`; a bulkhead or a
    /// rate limiter answer `false`, a breaker only with slow-call detection or observers).
    fn measures_duration(&self) -> bool {
        true
    }

    /// Called when a pipeline containing this guard is built, with the pipeline's timeout
    /// hierarchy, to validate the guard against it (a breaker checks that its time window
    /// and base break fit inside `circuit`). An error fails the build.
    ///
    /// It must not change the guard: a guard may be shared with other pipelines, and a
    /// build that fails (on this guard, on another one or on the retry plan) must leave it
    /// as it was. Changes belong in [`Guard::attach`].
    fn check(&self, timeouts: &Timeouts) -> Result<(), ConfigError> {
        let _ = timeouts;
        Ok(())
    }

    /// Called once the pipeline is known to build, after every guard's [`Guard::check`]
    /// and the rest of the configuration passed: the guard may adopt the pipeline's time
    /// scale (a breaker takes `circuit` as its longest open time).
    ///
    /// Building is two-phase on purpose. A single fallible hook that both validated and
    /// changed the guard would let a build fail half-way, with the guards before the
    /// failing one already changed (and shared guards, such as a breaker used by several
    /// pipelines, changed for everyone); undoing that would need every guard to roll back.
    /// So validation is [`Guard::check`], which changes nothing, and `attach` cannot fail:
    /// once it runs, the build succeeds, and a failed build has attached nothing.
    fn attach(&self, timeouts: &Timeouts) {
        let _ = timeouts;
    }

    /// The guard's state for telemetry (breaker state and failure rate, bulkhead
    /// occupancy), read when metrics are collected, never on the call path. The default
    /// reports nothing.
    fn gauges(&self) -> Option<GuardGauges> {
        None
    }

    /// Called when a pipeline with an observer is built with this guard: a guard with
    /// states (a circuit breaker) reports its transitions to `sink` from then on, as
    /// `(guard name, from, to)` with the `state` label values. The default ignores it.
    fn observe_transitions(&self, sink: TransitionSink) {
        let _ = sink;
    }
}

/// Admission to run one call (or one attempt), released exactly once.
#[must_use = "dropping a permit releases it as cancelled"]
pub struct Permit<'a> {
    guard: Option<&'a dyn Guard>,
    token: u64,
}

impl<'a> Permit<'a> {
    /// A permit of `guard`; `token` is handed back in [`Guard::on_release`].
    #[inline]
    pub fn new(guard: &'a dyn Guard, token: u64) -> Self {
        Self {
            guard: Some(guard),
            token,
        }
    }

    /// A permit that holds nothing (for guards that have nothing to release).
    #[inline]
    pub fn none() -> Self {
        Self {
            guard: None,
            token: 0,
        }
    }

    /// This permit, rebuilt on `guard` when it is `guard`'s own (the same object seen
    /// through the same vtable; any other permit is returned as it is). The engine calls
    /// it on what a guard's `acquire` returned: the rebuilt permit's reference comes from
    /// the caller's own `guard`, in registers, so moving it into the call's state does not
    /// copy the callee's return slot with loads wider than the stores that just wrote it
    /// (a store-forwarding stall on every guarded call).
    #[inline(always)]
    pub(crate) fn of(self, guard: &'a dyn Guard) -> Self {
        Self::kept(self.into_token_of(guard), guard)
    }

    /// [`Permit::of`] in two steps, for a caller that keeps the permit later: the token
    /// alone (`Ok`) when this is `guard`'s own permit, to be rebuilt with
    /// [`Permit::kept`] where it is kept; the permit itself otherwise. (A
    /// token is kept in a register; a permit kept across other work may be spilled and
    /// copied back with a load wider than the stores that spilled it.)
    #[inline(always)]
    pub(crate) fn into_token_of(self, guard: &'a dyn Guard) -> Result<u64, Self> {
        match self.guard {
            // Both halves are compared: a guard may hand out the permit of another guard
            // at its own address (an inner guard at offset 0). A vtable emitted twice
            // only makes the permit take the general path.
            Some(g) if std::ptr::eq(g, guard) => {
                let token = self.token;
                std::mem::forget(self);
                Ok(token)
            }
            _ => Err(self),
        }
    }

    /// What this permit holds, for a guard known to hand out its own permits (this
    /// crate's bulkheads, breakers and limiters): `Some(None)` when it holds nothing,
    /// `Some(token)` when its guard is at `guard`'s address (the check
    /// [`Permit::into_token_of`] makes may fail when the guard's vtable was emitted twice),
    /// `None` otherwise. (Not for a guard that may hand out the permit of a guard it holds
    /// at its own address.) By reference: a caller that keeps only the token forgets the
    /// permit where the guard wrote it.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn token_at(&self, guard: &dyn Guard) -> Option<Option<u64>> {
        match self.guard {
            None => Some(None),
            Some(g) if std::ptr::addr_eq(g, guard) => Some(Some(self.token)),
            Some(_) => None,
        }
    }

    /// The permit that [`Permit::into_token_of`] took apart, rebuilt on `guard`.
    #[inline(always)]
    pub(crate) fn kept(kept: Result<u64, Self>, guard: &'a dyn Guard) -> Self {
        match kept {
            Ok(token) => Self {
                guard: Some(guard),
                token,
            },
            Err(permit) => permit,
        }
    }

    /// The token this permit was created with.
    #[inline]
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether this permit holds nothing to record or release ([`Permit::none`]).
    #[inline]
    pub(crate) fn holds_nothing(&self) -> bool {
        self.guard.is_none()
    }

    /// Reports how the call went and releases the permit. `duration` is zero when no guard
    /// of the phase [measures durations](Guard::measures_duration).
    #[inline]
    pub fn record(mut self, outcome: Outcome, duration: Duration) {
        let guard = self.guard.take();
        let token = self.token;
        // Released here: the drop that would find nothing to release is skipped.
        std::mem::forget(self);
        if let Some(g) = guard {
            g.on_release(token, Some((outcome, duration)));
        }
    }
}

impl Drop for Permit<'_> {
    // Out of line: a permit is dropped unrecorded only when its call was cancelled,
    // rejected further on or panicked, and holders of permits drop with a short check.
    #[inline(never)]
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            g.on_release(self.token, unrecorded_outcome());
        }
    }
}

/// How a permit dropped without a report is released: a failure when its thread is
/// panicking or a deadline fired (see [`DeadlineFired`]), else a cancellation (`None`).
pub(crate) fn unrecorded_outcome() -> Option<(Outcome, Duration)> {
    if std::thread::panicking() {
        return Some((Outcome::Failure, Duration::ZERO));
    }
    DEADLINE_FIRED
        .try_with(Cell::get)
        .ok()
        .flatten()
        .map(|elapsed| (Outcome::Failure, elapsed))
}

thread_local! {
    static DEADLINE_FIRED: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// While alive, permits dropped on this thread are released as failures that ran for
/// `elapsed`: the engine holds one while it drops the work a deadline cut short.
pub(crate) struct DeadlineFired {
    previous: Option<Duration>,
}

impl DeadlineFired {
    /// Marks the drops that follow, until the returned value is dropped.
    pub(crate) fn enter(elapsed: Duration) -> Self {
        let previous = DEADLINE_FIRED
            .try_with(|c| c.replace(Some(elapsed)))
            .ok()
            .flatten();
        Self { previous }
    }
}

impl Drop for DeadlineFired {
    fn drop(&mut self) {
        let _ = DEADLINE_FIRED.try_with(|c| c.set(self.previous));
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("guard", &self.guard.map(|g| g.name()))
            .field("token", &self.token)
            .finish()
    }
}

/// A strategy whose configuration was invalid, handed to a pipeline builder as a builder
/// (e.g. `.circuit_breaker(CircuitBreaker::failure_rate(..))`): it fails the pipeline's
/// `build` with the strategy's own [`ConfigError`], so a pipeline has one validation point.
/// Never admits (a pipeline holding it is never built).
#[derive(Debug)]
pub(crate) struct Invalid {
    name: &'static str,
    error: ConfigError,
}

impl Invalid {
    /// The guard named `name` that fails every build with `error`.
    pub(crate) fn new(name: &'static str, error: ConfigError) -> Self {
        Self { name, error }
    }
}

impl Guard for Invalid {
    fn name(&self) -> &'static str {
        self.name
    }

    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        Acquire::Ready(Err(Rejection::Other {
            guard: self.name,
            retry_after: None,
        }))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn check(&self, _timeouts: &Timeouts) -> Result<(), ConfigError> {
        Err(self.error.clone())
    }
}
