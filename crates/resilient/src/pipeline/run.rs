//! The future of one call: the path is picked on the first poll, then polled in place.
//!
//! Most calls take the **lean** path: an operation that does not read its [`Context`]
//! (`execute`), with no caller cancellation, cost or key and no deadline inherited from an
//! enclosing call, in a pipeline with no observer and no guard that reads labels, and a
//! hedge only with no deadline and no per-attempt guard (see `Inner::lean`). Its phases
//! (the request deadline, admission by per-call guards, attempts with their per-attempt
//! guards and operation timeout, waits) are written out here as one small state machine
//! that makes the engine's own decisions ([`Pipeline::next`], [`retried`], [`finish`])
//! without nested futures. Every other call runs the phased engine of [`Pipeline`] (see
//! [`Pipeline::run`]).

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{
    Attempt, CallSeed, Held, Next, Pipeline, Seed, call_outcome, elapsed_since, finish,
    out_of_budget, retried,
};
use crate::engine::clock::{deadline_and_nanos, instant_now};
use crate::engine::context::{Ambient, Context, HORIZON, within_horizon};
use crate::engine::error::Error;
use crate::engine::error::TimeoutScope;
use crate::engine::guard::{Acquire, DeadlineFired, Guard, Permit, Rejection, WaitFuture};
use crate::engine::outcome::Classify;
use crate::engine::outcome::Outcome;

/// The context of a lean call's first attempt. The lean path is only taken by operations
/// that ignore their context but its attempt number, and no guard reads it.
pub(super) static BARE: Context = Context::bare();

/// The path a call takes after its first poll (see [`Pipeline::run`]).
pub(super) enum Start<A, G, B, O> {
    Plain(A),
    Guarded(G),
    Full(B),
    /// With an observer: boxed, so that a pipeline without one keeps its future's size.
    Observed(Pin<Box<O>>),
}

pin_project_lite::pin_project! {
    /// One call. `start` builds the phased engine's future for the call's path; the lean
    /// path needs none of it and keeps `op` and `retryable` here.
    #[project = RunProj]
    pub(super) struct Run<'p, C, Sd, F, R, S, Fut: Future, A: Future, G, B, O> {
        pub(super) pipeline: &'p Pipeline<C>,
        // What the call brings besides its operation: for a plain `execute`, a seed known
        // where the call is built, with nothing to store, check or drop (see `CallSeed`).
        pub(super) seed: Sd,
        pub(super) op: Option<F>,
        pub(super) retryable: Option<R>,
        pub(super) start: Option<S>,
        // Fields drop in this order: the attempt (and then, in `ext`, a slow state such as
        // a queued wait) before the per-call permits in `ext`'s `at`, as the phased
        // engine's locals do (a bulkhead's slot is not given back while the operation's
        // future still lives).
        #[pin]
        pub(super) step: Step<Fut>,
        // The rest of the call's state, set up on its path (see `Ext`): none before the
        // first poll, and none for a plain call whose first attempt is all of it. `None`
        // rather than a variant of `Ext`: nothing of the lean state is written where the
        // future is built, and an empty one is dropped with an inline check where `Ext`'s
        // own drop glue is a call.
        #[pin]
        pub(super) ext: Option<Ext<'p, Fut, A, G, B, O>>,
    }
}

pin_project_lite::pin_project! {
    /// A call's state past its step, by its path (a plain call whose first attempt ends
    /// at once needs none, and builds and drops none of it): the lean path's, or the
    /// phased engine's future; once a failed call's recovery runs, that recovery's future.
    #[project = ExtProj]
    pub(super) enum Ext<'p, Fut: Future, A: Future, G, B, O> {
        Lean {
            // The call's slow state, if it is in one (see `Step`): first, so that it drops
            // before the permits in `at`.
            #[pin]
            slow: Option<Slow<'p>>,
            // A hedged attempt's hedges, once its first poll found it pending or failed.
            hedging: Option<Box<Hedging<Fut>>>,
            at: Lean<'p>,
            // The request timeout's timer, armed only when the call is pending.
            #[pin]
            expiry: Option<Sleep>,
        },
        Plain { #[pin] fut: A },
        Guarded { #[pin] fut: G },
        Full { #[pin] fut: B },
        // With an observer: boxed, so that a pipeline without one keeps its future's size.
        Observed { fut: Pin<Box<O>> },
        // The phased engine's future has ended: it was dropped as it ended, with what it
        // held, not when the call's future is.
        Ended,
        // The call has failed and the classifier's recovery (a fallback chain) answers
        // instead (see `Run`'s `poll`).
        Recovery { fut: Pin<Box<dyn Future<Output = A::Output> + Send>> },
    }
}

/// Where a call keeps its [`Ext`], pinned (see [`Run`]'s `ext`).
type ExtSlot<'a, 'p, Fut, A, G, B, O> = Pin<&'a mut Option<Ext<'p, Fut, A, G, B, O>>>;

impl<'p, Fut: Future, A: Future, G, B, O> Ext<'p, Fut, A, G, B, O> {
    /// The lean path's state before its first attempt.
    #[inline(always)]
    fn lean() -> Self {
        Ext::Lean {
            slow: None,
            hedging: None,
            at: Lean::new(),
            expiry: None,
        }
    }
}

/// A phased engine's future, boxed and type-erased (see [`Pipeline::run_phased_boxed`]).
#[cfg(feature = "tower")]
pub(super) type Erased<'p, T> = Pin<Box<dyn Future<Output = T> + Send + 'p>>;

/// A future that cannot exist: the phased paths of [`Start`] that a call building its
/// phased future as an [`Erased`] one never takes (zero-sized, so they take no room).
#[cfg(feature = "tower")]
pub(super) struct Never<T>(
    std::convert::Infallible,
    std::marker::PhantomData<fn() -> T>,
);

#[cfg(feature = "tower")]
impl<T> Future for Never<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<T> {
        match self.0 {}
    }
}

/// An attempt's operation timeout (see [`launch_slow`]): its timer, due `at` after
/// `limit`, is armed (in [`Slow::Sleep`]) only if the attempt does not end at its first
/// poll; `scope` is the deadline the attempt's polls see, the tighter of the operation
/// timeout's and the request's, which nested pipelines inherit.
#[derive(Clone, Copy)]
struct Timed {
    at: Instant,
    limit: Duration,
    scope: Instant,
}

/// Where a lean call is, besides its step.
pub(super) struct Lean<'p> {
    /// The attempt running or next (from 1).
    attempt: u32,
    /// The delay before the last retry.
    previous: Option<Duration>,
    /// The call's start on the pipeline's clock, when `max_elapsed` needs it.
    started: Option<Duration>,
    /// When the per-call guards admitted the call, when one of them uses durations.
    admitted: Option<Duration>,
    /// The request timeout's deadline and the call's start (the default clock's reading in
    /// nanoseconds), with a request timeout.
    deadline: Option<(Instant, u64)>,
    /// When the per-attempt guards admitted the attempt, when one of them uses durations.
    t0: Option<Duration>,
    /// The running attempt's operation timeout, set as it starts in [`State::Timed`].
    timed: Option<Timed>,
    /// How many of `permits`, at its end, are the attempt's.
    held: usize,
    /// The per-call guards' permits, then the attempt's (a dropped call drops the
    /// attempt's first, as the phased engine does: see `Drop`).
    /// (Dropped by `Lean`'s `Drop`, only when it holds something: a call that recorded
    /// its permits runs no drop glue for the empty list.)
    permits: ManuallyDrop<Held<'p>>,
}

impl Drop for Lean<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.held != 0 {
            self.drop_attempt_permits();
        }
        if self.permits.holds_anything() {
            // The rest, in order; the empty list left in its place has nothing to drop.
            drop(std::mem::take(&mut *self.permits));
        }
    }
}

/// The hedges of a lean call's attempt (the first attempt stays in its [`Step`]), as
/// [`Pipeline::hedged`] runs them: set up only when the first poll found the attempt
/// pending or failed.
pub(super) struct Hedging<Fut: Future> {
    /// The first attempt has ended.
    first_done: bool,
    /// When the first attempt started, for a percentile delay.
    t0: Option<Instant>,
    /// When the next hedge is due (delayed and percentile modes).
    timer: Option<Pin<Box<Sleep>>>,
    /// The hedges running: their number, start and future.
    hedges: Vec<(u32, Option<Instant>, Pin<Box<Fut>>)>,
    /// The next hedge's number.
    next: u32,
    /// The last failure.
    last: Option<(Fut::Output, Outcome)>,
}

impl<'p> Lean<'p> {
    /// Holds a per-attempt guard's permit.
    #[inline]
    fn hold(&mut self, permit: Permit<'p>) {
        // (`permits` keeps none that holds nothing: see `Held::push`.)
        if !permit.holds_nothing() {
            self.held += 1;
        }
        self.permits.push(permit);
    }

    /// Where the attempt's permits start in `permits`, and none held any more.
    #[inline]
    fn take_attempt_permits(&mut self) -> usize {
        self.permits.len() - std::mem::take(&mut self.held)
    }

    /// Drops the attempt's permits unrecorded (a rejected or cut attempt), in order.
    #[inline(never)]
    fn drop_attempt_permits(&mut self) {
        let from = self.take_attempt_permits();
        self.permits.drain(from, drop);
    }

    /// Before the first attempt.
    #[inline]
    pub(super) fn new() -> Self {
        Self {
            attempt: 1,
            previous: None,
            started: None,
            admitted: None,
            deadline: None,
            t0: None,
            timed: None,
            held: 0,
            permits: ManuallyDrop::new(Held::default()),
        }
    }
}

/// Where a call is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    /// Not polled yet.
    Idle,
    /// The lean path's attempt runs (in [`Step`]'s `attempt`).
    Attempt,
    /// The lean path's attempt runs under an operation timeout (see [`Timed`]).
    Timed,
    /// A lean call in one of its [`Slow`] states (in its [`Ext::Lean`]'s `slow`).
    Slow,
    /// The call runs the phased engine's future.
    Phased,
    /// A lean call that has ended (or is between two states).
    Done,
    /// The call has failed and its recovery runs (in [`Ext::Recovery`]).
    Recovering,
}

pin_project_lite::pin_project! {
    /// Where a call is, with its attempt's future while one runs. A lean call's slow state
    /// lives in its [`Ext::Lean`] (a call that never leaves its first attempt has none, and
    /// drops none), and the two are borrowed together as a [`StepMut`]. Each future sits in
    /// an `Option` of its own, so that a call drops what it holds with inline checks, never
    /// calling into the drop glue of futures it did not hold.
    pub(super) struct Step<Fut> {
        state: State,
        #[pin]
        attempt: Option<Fut>,
    }
}

impl<Fut> Step<Fut> {
    /// Before the first poll.
    #[inline]
    pub(super) fn new() -> Self {
        Self {
            state: State::Idle,
            attempt: None,
        }
    }

    /// The call is now in `state` (one that holds no future).
    #[inline]
    fn set_state(self: Pin<&mut Self>, state: State) {
        *self.project().state = state;
    }

    /// An attempt starts with `fut`, in `state` ([`State::Attempt`] or [`State::Timed`]).
    #[inline]
    fn start(self: Pin<&mut Self>, fut: Fut, state: State) {
        let mut this = self.project();
        this.attempt.set(Some(fut));
        *this.state = state;
    }

    /// The attempt's future, while it runs.
    #[inline]
    fn attempt(self: Pin<&mut Self>) -> Pin<&mut Fut> {
        let Some(fut) = self.project().attempt.as_pin_mut() else {
            unreachable!("an attempt runs")
        };
        fut
    }

    /// The attempt has ended: its future goes.
    #[inline]
    fn end_attempt(self: Pin<&mut Self>) {
        let mut this = self.project();
        this.attempt.set(None);
        *this.state = State::Done;
    }
}

/// A lean call's [`Step`] borrowed with its slow state (from its [`Ext::Lean`]).
pub(super) struct StepMut<'a, 'p, Fut> {
    step: Pin<&'a mut Step<Fut>>,
    slow: Pin<&'a mut Option<Slow<'p>>>,
}

impl<'a, 'p, Fut> StepMut<'a, 'p, Fut> {
    /// The step and the slow state of a lean call.
    #[inline(always)]
    fn new(step: Pin<&'a mut Step<Fut>>, slow: Pin<&'a mut Option<Slow<'p>>>) -> Self {
        Self { step, slow }
    }

    /// Reborrowed, for a call that keeps it.
    #[inline(always)]
    fn as_mut(&mut self) -> StepMut<'_, 'p, Fut> {
        StepMut {
            step: self.step.as_mut(),
            slow: self.slow.as_mut(),
        }
    }

    /// Where the call is.
    #[inline(always)]
    fn state(&self) -> State {
        self.step.state
    }

    /// The call is queued by a per-call guard.
    #[inline]
    fn is_queued(&self) -> bool {
        matches!(&*self.slow, Some(Slow::Queue { .. }))
    }

    /// The call is now in `state` (one that holds no future).
    #[inline(always)]
    fn set_state(self, state: State) {
        self.step.set_state(state);
    }

    /// An attempt starts with `fut`.
    #[inline(always)]
    fn start(self, fut: Fut) {
        self.step.start(fut, State::Attempt);
    }

    /// An attempt under an operation timeout starts with `fut` (see [`Timed`]).
    #[inline(always)]
    fn start_timed(self, fut: Fut) {
        self.step.start(fut, State::Timed);
    }

    /// Whether the call holds a slow state (a timed attempt: its armed timer).
    #[inline(always)]
    fn has_slow(&self) -> bool {
        self.slow.is_some()
    }

    /// Sets `slow` beside the running attempt (a timed attempt's timer), which stays in
    /// [`State::Timed`].
    #[inline]
    fn arm(mut self, slow: Slow<'p>) {
        self.slow.set(Some(slow));
    }

    /// The call waits in `slow`.
    #[inline]
    fn wait(mut self, slow: Slow<'p>) {
        self.slow.set(Some(slow));
        self.step.set_state(State::Slow);
    }

    /// Drops what the call holds (its attempt, then its slow state): it has ended, or is
    /// between two states.
    #[inline]
    fn clear(mut self) {
        self.step.as_mut().end_attempt();
        self.slow.set(None);
    }

    /// The attempt's future, while it runs.
    #[inline(always)]
    fn attempt(self) -> Pin<&'a mut Fut> {
        self.step.attempt()
    }

    /// The attempt has ended: its future goes.
    #[inline(always)]
    fn end_attempt(self) {
        self.step.end_attempt();
    }

    /// The slow state, while the call is in one.
    #[inline]
    fn slow(self) -> Pin<&'a mut Slow<'p>> {
        let Some(slow) = self.slow.as_pin_mut() else {
            unreachable!("in a slow state")
        };
        slow
    }
}

pin_project_lite::pin_project! {
    /// The lean path's other states.
    #[project = SlowProj]
    pub(super) enum Slow<'p> {
        /// Queued by per-call guard `guard`.
        Queue { wait: WaitFuture<'p>, guard: usize },
        /// The attempt queued by per-attempt guard `guard`.
        AttemptQueue { wait: WaitFuture<'p>, guard: usize },
        /// The attempt rejected by a per-attempt guard.
        Rejected { rejection: Option<Rejection> },
        /// Before a retry with no delay: a unit of the task's coop budget is spent (an
        /// operation that fails without awaiting would otherwise never give control back).
        Yield,
        /// Before a retry after a delay; or, in [`State::Timed`], the timer of an attempt
        /// under an operation timeout (see [`Timed`]), once the attempt did not end at its
        /// first poll (the attempt runs meanwhile).
        Sleep { #[pin] sleep: Sleep },
    }
}

impl<'p, C, T, E, Sd, F, R, S, Fut, A, G, B, O> Future for Run<'p, C, Sd, F, R, S, Fut, A, G, B, O>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    Sd: CallSeed,
    R: Fn() -> bool,
    S: FnOnce(&'p Pipeline<C>, Seed, F, R) -> Start<A, G, B, O>,
    A: Future<Output = Result<T, Error<E>>>,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    type Output = A::Output;

    /// The call, and then, if it fails, the classifier's [`Classify::recover`] (a
    /// pipeline's fallback chain) may answer instead. On the success path the recovery
    /// costs nothing but the check of the call's state that the call makes anyway: the
    /// recovery's future takes the place of the call's state once the call has ended
    /// (see [`Ext::Recovery`]), so a call's future stores, checks and drops no slot of
    /// its own for it.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<A::Output> {
        if self.step.state == State::Recovering {
            // (A recovery's polls write into a local, not this poll's result slot: see
            // `apart`.)
            return apart(|| poll_recovery(self.project().ext, cx));
        }
        let polled = self.as_mut().poll_call(cx);
        // The call's own answer is returned where it was written unless it is a failure.
        if !matches!(polled, Poll::Ready(Err(_))) {
            return polled;
        }
        let Poll::Ready(Err(failure)) = polled else {
            unreachable!("a failure")
        };
        let mut this = self.project();
        match this.pipeline.inner.classify.recover(failure) {
            Err(failure) => Poll::Ready(Err(failure)),
            Ok(recovery) => {
                // The call has ended: what is left of its state goes (its permits have
                // recorded the call's outcome), and the recovery runs in its place.
                this.ext.set(Some(Ext::Recovery { fut: recovery }));
                this.step.set_state(State::Recovering);
                apart(|| poll_recovery(this.ext, cx))
            }
        }
    }
}

impl<'p, C, T, E, Sd, F, R, S, Fut, A, G, B, O> Run<'p, C, Sd, F, R, S, Fut, A, G, B, O>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    Sd: CallSeed,
    R: Fn() -> bool,
    S: FnOnce(&'p Pipeline<C>, Seed, F, R) -> Start<A, G, B, O>,
    A: Future<Output = Result<T, Error<E>>>,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    /// Polls the call (without its recovery: see `poll`).
    ///
    /// For a seed that asks for it ([`CallSeed::SPLIT`]: a plain `execute`), only the
    /// first poll of the usual paths is inlined where the call is awaited: a plain call's,
    /// one under an operation timeout alone, a call whose one per-call guard is all it asks
    /// ([`one_guard_first`]: the admission and the first attempt), and the first per-call
    /// guard's admission when there is no deadline to set (the rest of that call runs out
    /// of line). Every other poll runs out of line, in [`apart`]. The code inlined into the
    /// caller is then a fraction of the engine, and its success path keeps its values in
    /// registers: retry, `Ok` at once, 85 -> 62 instructions in an LTO build and 106 -> 83
    /// in a default one; an open breaker's rejection 289 -> 260 and 326 -> 296. Other seeds
    /// (the tower adapter's boxed call, whose future holds the 5-strategy stack's call)
    /// inline every path, as before.
    #[inline(always)]
    fn poll_call(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<A::Output> {
        if !Sd::SPLIT {
            return self.poll_any(cx);
        }
        if self.step.state == State::Idle && self.seed.lean() && !Ambient::active() {
            let inner = &*self.pipeline.inner;
            if inner.plain {
                return plain_start(self.project(), cx);
            }
            if inner.plain_timed {
                return timed_first(self.project(), cx);
            }
            if inner.one_guard {
                return one_guard_first(self.project(), cx);
            }
            if inner.lean && inner.direct && !inner.call_guards.is_empty() {
                return direct_first(self.project(), cx);
            }
        }
        apart(|| self.poll_any(cx))
    }

    /// Polls the call, on whichever path and in whichever state (see [`Run::poll_call`]).
    #[inline(always)]
    fn poll_any(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<A::Output> {
        let mut this = self.project();
        // The call's start on the default clock, read at its first poll for its request
        // deadline: the per-call guards' first admission reads it (see `Context::now`).
        let mut started = None;
        match this.step.state {
            State::Phased => return apart(|| poll_phased(this.ext, cx)),
            State::Idle => {
                let inner = &*this.pipeline.inner;
                if this.seed.lean() && inner.plain && !Ambient::active() {
                    return plain_start(this, cx);
                }
                if this.seed.lean() && inner.plain_timed && !Ambient::active() {
                    // Nothing to ask before the first attempt, which runs under its
                    // operation timeout.
                    return timed_first(this, cx);
                }
                if !(this.seed.lean() && inner.lean && !Ambient::active()) {
                    this.step.as_mut().set_state(State::Phased);
                    return apart(|| {
                        start_phased(
                            this.pipeline,
                            this.start,
                            this.seed,
                            this.op,
                            this.retryable,
                            this.ext,
                            cx,
                        )
                    });
                }
                if inner.direct && !inner.call_guards.is_empty() {
                    return direct_first(this, cx);
                }
                let (at, slow) = lean_parts(this.ext.as_mut());
                if !inner.direct {
                    started = Some(start_deadline(this.pipeline, at));
                }
                if at.deadline.is_none()
                    && let Some(rejected) = admit_first(
                        this.pipeline,
                        this.op,
                        at,
                        StepMut::new(this.step.as_mut(), slow),
                        0,
                        started,
                    )
                {
                    return Poll::Ready(Err(rejected));
                }
            }
            _ => {}
        }
        let Some(ExtProj::Lean {
            at, expiry, slow, ..
        }) = project(this.ext.as_mut())
        else {
            polled_after_completion()
        };
        if at.deadline.is_some() {
            return poll_deadline(
                this.pipeline,
                this.op,
                this.retryable,
                at,
                StepMut::new(this.step, slow),
                expiry,
                started,
                cx,
            );
        }
        // Hedged: the pipeline has a hedge and the call is idempotent.
        let hedge = !this.seed.no_hedge() && this.pipeline.inner.hedge.is_some();
        lean(this, hedge, None, cx)
    }
}

/// A call's future polled again after it completed: a caller's bug. (Out of line and cold:
/// where several arms share one `panic!`, LLVM merged them and set the message's arguments
/// up on the path that completes every call.)
#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("a call's future polled after it completed")
}

/// Runs `poll`, a path that is not inlined, with its answer written into a local rather
/// than into the caller's result slot: a slot handed to a call that is not inlined cannot
/// be merged with the slot of the code that awaits the call, which then copies the
/// 32-byte result in two 16-byte loads right after its narrower stores (a store-forwarding
/// stall of some 10 ns; see `Pipeline::run_blocking`).
#[inline(always)]
pub(super) fn apart<T>(poll: impl FnOnce() -> Poll<T>) -> Poll<T> {
    let mut out = Poll::Pending;
    write_into(&mut out, poll);
    out
}

/// [`apart`]'s out-of-line half.
#[inline(never)]
fn write_into<T>(out: &mut Poll<T>, poll: impl FnOnce() -> Poll<T>) {
    // `out` holds the caller's `Pending`, which has nothing to drop: replaced without
    // running drop glue.
    std::mem::forget(std::mem::replace(out, poll()));
}

/// Sets up the lean path's state, unless it is set up. (Over `None`: no drop glue runs.)
#[inline(always)]
fn lean_state<Fut: Future, A: Future, G, B, O>(mut ext: ExtSlot<'_, '_, Fut, A, G, B, O>) {
    if ext.is_none() {
        ext.set(Some(Ext::lean()));
    }
}

/// A call's state past its step, projected, once it has one.
#[inline(always)]
fn project<'a, 'p, Fut: Future, A: Future, G, B, O>(
    ext: ExtSlot<'a, 'p, Fut, A, G, B, O>,
) -> Option<ExtProj<'a, 'p, Fut, A, G, B, O>> {
    ext.as_pin_mut().map(Ext::project)
}

/// The lean path's state, set up if it is not: where the call is, and its slow state.
#[inline(always)]
fn lean_parts<'a, 'p, Fut: Future, A: Future, G, B, O>(
    mut ext: ExtSlot<'a, 'p, Fut, A, G, B, O>,
) -> (&'a mut Lean<'p>, Pin<&'a mut Option<Slow<'p>>>) {
    lean_state(ext.as_mut());
    let Some(ExtProj::Lean { at, slow, .. }) = project(ext) else {
        unreachable!("set up above")
    };
    (at, slow)
}

/// [`poll_lean`] on the fields of a projected [`Run`] (a lean call with no deadline, its
/// lean state set up).
#[inline(always)]
fn lean<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    hedge: bool,
    first: Option<(Attempt<T, E>, Outcome)>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let Some(ExtProj::Lean {
        at, hedging, slow, ..
    }) = project(this.ext)
    else {
        polled_after_completion()
    };
    poll_lean(
        this.pipeline,
        this.op,
        this.retryable,
        at,
        StepMut::new(this.step, slow),
        hedge,
        hedging,
        first,
        cx,
    )
}

/// The first poll of a plain lean call: [`plain_first`], hedged when the pipeline has a
/// hedge and the call is idempotent (the hedge's budget is paid into as the call starts).
#[inline(always)]
fn plain_start<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    Sd: CallSeed,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    // Nothing to ask or time before the first attempt (see `begin`).
    let hedge = match &this.pipeline.inner.hedge {
        None => false,
        Some(h) => {
            h.deposit();
            !this.seed.no_hedge()
        }
    };
    plain_first(this, hedge, cx)
}

/// The first poll of a lean call with no deadline to set, in a pipeline with per-call
/// guards: the first guard is asked before the lean state is built, so a call it rejects
/// at once (an open breaker, an empty limiter) ends with no state built or dropped; a
/// permit is kept in that state, the other guards asked ([`admit_first`]), and the call
/// goes on in [`lean`] (out of line for a seed that splits its polls: see
/// [`Run::poll_call`]). A call the guard queues waits there.
#[inline(always)]
fn direct_first<'p, C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, 'p, C, Sd, F, R, S, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    Sd: CallSeed,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let pipeline: &'p Pipeline<C> = this.pipeline;
    let Some(g) = pipeline.inner.call_guards.first() else {
        unreachable!("the pipeline has a per-call guard")
    };
    match ask_first(&**g, this.step.as_mut(), this.ext.as_mut()) {
        Ok(permit) => {
            // (Only the token is carried past the state's setup, and the permit rebuilt
            // on `g` where it is kept: see `Permit::of`.)
            let kept = permit.into_token_of(&**g);
            let (at, slow) = lean_parts(this.ext.as_mut());
            at.permits.push(Permit::kept(kept, &**g));
            let step = StepMut::new(this.step.as_mut(), slow);
            if let Some(rejected) = admit_first(pipeline, this.op, at, step, 1, None) {
                return Poll::Ready(Err(rejected));
            }
        }
        Err(Some(rejected)) => return Poll::Ready(Err(rejected)),
        // Queued: polled in `lean`.
        Err(None) => {}
    }
    // Hedged: the pipeline has a hedge and the call is idempotent.
    let hedge = !this.seed.no_hedge() && pipeline.inner.hedge.is_some();
    if Sd::SPLIT {
        return apart(|| lean(this, hedge, None, cx));
    }
    lean(this, hedge, None, cx)
}

/// The first per-call guard's answer at a call's first poll ([`direct_first`],
/// [`one_guard_first`]): its permit; or the call's end (`Err(Some(..))`) when the guard
/// rejects it; or `Err(None)` when the guard queues it: the call then waits in
/// [`Slow::Queue`] (polled in [`lean`], as after `admit_call`'s wait).
#[inline(always)]
fn ask_first<'a, 'p, Fut: Future, A: Future, G, B, O, E>(
    g: &'p dyn Guard,
    mut step: Pin<&'a mut Step<Fut>>,
    ext: ExtSlot<'a, 'p, Fut, A, G, B, O>,
) -> Result<Permit<'p>, Option<Error<E>>> {
    match g.acquire(&BARE) {
        Acquire::Ready(Ok(permit)) => Ok(permit),
        Acquire::Ready(Err(rejection)) => {
            step.as_mut().set_state(State::Done);
            Err(Some(rejection.into()))
        }
        Acquire::Wait(wait) => {
            let (_, slow) = lean_parts(ext);
            StepMut::new(step, slow).wait(Slow::Queue { wait, guard: 0 });
            Err(None)
        }
    }
}

/// The first poll of a call of a pipeline whose one per-call guard is all it asks (see
/// `Inner::one_guard`): the guard's admission, then the attempt, with the permit in a
/// local. An attempt that ends at once and is not retried is the whole call: the permit
/// records its outcome (and duration, when the guard uses it) after the attempt's future
/// is dropped, with none of the lean path's state (its `Ext`) built or dropped, as
/// [`plain_first`] runs a call with no guard. An attempt that is pending or retried, or a
/// call the guard queues, goes on in [`lean`] (out of line) with the permit kept in that
/// state, as after [`direct_first`]. Should the operation panic, its future goes before
/// the permit (see [`Admitted`]).
#[inline(always)]
fn one_guard_first<'p, C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, 'p, C, Sd, F, R, S, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    Sd: CallSeed,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let pipeline: &'p Pipeline<C> = this.pipeline;
    let inner = &*pipeline.inner;
    let Some(g) = inner.call_guards.first() else {
        unreachable!("the pipeline has a per-call guard")
    };
    let permit = match ask_first(&**g, this.step.as_mut(), this.ext.as_mut()) {
        Ok(permit) => permit,
        Err(Some(rejected)) => return Poll::Ready(Err(rejected)),
        Err(None) => return apart(|| lean(this, false, None, cx)),
    };
    // What `begin` does for such a pipeline (no retry budget, `max_elapsed` or hedge).
    let admitted = inner.time_calls.then(|| inner.clock.now());
    let Some(op) = this.op.as_mut() else {
        unreachable!("a lean call keeps its operation")
    };
    let mut held = Admitted {
        step: this.step.as_mut(),
        permit: Some(permit),
    };
    held.step.as_mut().start(op(&BARE), State::Attempt);
    let polled = held.step.as_mut().attempt().poll(cx);
    let Some(permit) = held.permit.take() else {
        unreachable!("taken once")
    };
    drop(held);
    let first = match polled {
        Poll::Ready(r) => {
            // The attempt's future goes as it ends, as the engine's does.
            this.step.as_mut().end_attempt();
            let outcome = inner.classify.classify(&r);
            let result = Attempt::Done(r);
            if !retried(&inner.classify, &result, outcome) {
                let took = admitted.map_or(Duration::ZERO, |admitted| {
                    inner.clock.now().saturating_sub(admitted)
                });
                permit.record(outcome, took);
                return Poll::Ready(finish(result, 1));
            }
            Some((result, outcome))
        }
        Poll::Pending => None,
    };
    let (at, _) = lean_parts(this.ext.as_mut());
    at.admitted = admitted;
    at.permits.push(permit);
    if first.is_none() {
        return Poll::Pending;
    }
    apart(|| lean(this, false, first, cx))
}

/// The permit of a [`one_guard_first`] call while its first attempt is polled: should the
/// operation panic, the attempt's future goes before the permit is given back (as a
/// failure: see [`Permit`]'s `Drop`), as a call's fields drop. Emptied on every other way
/// out.
struct Admitted<'a, 'p, Fut> {
    step: Pin<&'a mut Step<Fut>>,
    permit: Option<Permit<'p>>,
}

impl<Fut> Drop for Admitted<'_, '_, Fut> {
    #[inline]
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.step.as_mut().end_attempt();
        }
    }
}

/// The first poll of a plain lean call (see `Inner::plain`: no guard, no timeout, nothing
/// to ask before the first attempt): a first attempt that ends at once and is not retried
/// is the whole call, with none of the lean path's state (its `Ext`) built or dropped. A
/// hedged attempt that does not end so goes on in [`hedged_after_first`].
#[inline(always)]
fn plain_first<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    hedge: bool,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let Some(op) = this.op.as_mut() else {
        unreachable!("a lean call keeps its operation")
    };
    this.step.as_mut().start(op(&BARE), State::Attempt);
    let Poll::Ready(r) = this.step.as_mut().attempt().poll(cx) else {
        lean_state(this.ext.as_mut());
        if hedge {
            return apart(|| hedged_after_first(this, None, cx));
        }
        return Poll::Pending;
    };
    let classify = &this.pipeline.inner.classify;
    let outcome = classify.classify(&r);
    if hedge {
        // A quick answer that is not retried is the whole attempt, with no hedging state
        // set up (see `poll_lean`); a quick failure starts the hedges.
        if !classify.should_retry(&r, outcome) {
            this.pipeline.hedge_won();
            return Poll::Ready(finish(Attempt::Done(r), 1));
        }
        lean_state(this.ext.as_mut());
        return apart(|| hedged_after_first(this, Some((r, outcome)), cx));
    }
    // The attempt's future goes as it ends, as the engine's does.
    this.step.as_mut().end_attempt();
    let result = Attempt::Done(r);
    if !retried(classify, &result, outcome) {
        return Poll::Ready(finish(result, 1));
    }
    plain_retries(this, result, cx)
}

/// A plain call (see [`plain_first`]) whose attempt `result` is retried, with no hedge: the
/// retries that start at once (no delay, and a unit of the task's coop budget left where
/// the retry spends one: see [`free_of_budget`]) and end at their first poll run here, as
/// [`poll_lean`] runs them, with none of the lean path's state (its `Ext`) built or
/// dropped; a plain pipeline has no guard, no timeout, no retry budget and no
/// `max_elapsed`, so an attempt's number and the last delay are all the retry decision
/// reads. A retry that waits, or an attempt that does not end at its first poll, sets that
/// state up with them and goes on in [`poll_lean`].
#[inline(always)]
fn plain_retries<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    mut result: Attempt<T, E>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let pipeline: &Pipeline<C> = this.pipeline;
    let classify = &pipeline.inner.classify;
    let mut attempt = 1;
    let mut previous = None;
    loop {
        // (A plain call holds no permit: nothing to record or settle.)
        let delay = match decide_retry(
            pipeline,
            this.retryable,
            attempt,
            previous,
            result,
            Duration::ZERO,
            None,
        ) {
            Ok(delay) => delay,
            Err(end) => return Poll::Ready(end),
        };
        previous = Some(delay);
        attempt += 1;
        let coop = if !delay.is_zero() {
            Poll::Pending
        } else if free_of_budget(attempt) {
            Poll::Ready(None)
        } else {
            tokio::task::coop::poll_proceed(cx).map(Some)
        };
        let Poll::Ready(coop) = coop else {
            // A wait (or a yield for the coop budget): in the lean path's slow state.
            let slow = retry_wait(delay);
            let (at, slow_slot) = lean_parts(this.ext.as_mut());
            at.attempt = attempt;
            at.previous = previous;
            StepMut::new(this.step.as_mut(), slow_slot).wait(slow);
            return lean(this, false, None, cx);
        };
        if let Some(coop) = coop {
            coop.made_progress();
        }
        let Some(op) = this.op.as_mut() else {
            unreachable!("a lean call keeps its operation")
        };
        this.step
            .as_mut()
            .start(op(&attempt_context(attempt)), State::Attempt);
        let Poll::Ready(r) = this.step.as_mut().attempt().poll(cx) else {
            let (at, _) = lean_parts(this.ext.as_mut());
            at.attempt = attempt;
            at.previous = previous;
            return Poll::Pending;
        };
        this.step.as_mut().end_attempt();
        let outcome = classify.classify(&r);
        result = Attempt::Done(r);
        if !retried(classify, &result, outcome) {
            return Poll::Ready(finish(result, 1));
        }
    }
}

/// The first poll of a plain call under an operation timeout (see `Inner::plain_timed`: no
/// guard, no request timeout, no retry budget, no `max_elapsed`, no hedge): the first
/// attempt starts and is polled in its deadline's scope, as [`launch_slow`] and
/// [`poll_timed`] run it. One that ends at once and is not retried is the whole call, with
/// none of the lean path's state (its `Ext`) built or dropped; otherwise the call goes on in
/// the lean path ([`timed_after_first`]).
#[inline(always)]
fn timed_first<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let inner = &*this.pipeline.inner;
    let Some((limit, due)) = operation_deadline(inner.timeouts.operation) else {
        return apart(|| timed_after_first(this, TimedNext::Untimed, cx));
    };
    let Some(op) = this.op.as_mut() else {
        unreachable!("a lean call keeps its operation")
    };
    // (Holds no reference count: not dropped, so no drop glue runs.)
    let ctx = ManuallyDrop::new(Context {
        deadline: Some(due),
        ..Context::bare()
    });
    this.step.as_mut().start(op(&ctx), State::Timed);
    let ambient = Ambient {
        deadline: Some(due),
        cancel: None,
    };
    let polled = ambient.sync_scope(|| this.step.as_mut().attempt().poll(cx));
    let timed = Timed {
        at: due,
        limit,
        scope: due,
    };
    let Poll::Ready(r) = polled else {
        return apart(|| timed_after_first(this, TimedNext::Pending(timed), cx));
    };
    let classify = &inner.classify;
    let outcome = classify.classify(&r);
    // The attempt's future goes as it ends, as the engine's does.
    this.step.as_mut().end_attempt();
    let result = Attempt::Done(r);
    if !retried(classify, &result, outcome) {
        return Poll::Ready(finish(result, 1));
    }
    apart(|| timed_after_first(this, TimedNext::Retried((result, outcome)), cx))
}

/// What [`timed_first`] hands over to the lean path.
enum TimedNext<T, E> {
    /// The operation deadline cannot be represented: the call as the lean path runs it (its
    /// attempt then has no deadline, as [`launch_slow`] starts it).
    Untimed,
    /// The attempt is pending: the lean path's state is set up as [`launch_slow`] leaves it
    /// for the attempt, and its timer armed and polled as [`poll_timed`] does.
    Pending(Timed),
    /// The attempt ended at once and is retried: the call goes on from its result.
    Retried((Attempt<T, E>, Outcome)),
}

/// [`timed_first`]'s call goes on in the lean path (see [`TimedNext`]).
#[inline(never)]
fn timed_after_first<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    next: TimedNext<T, E>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let first = match next {
        TimedNext::Untimed => {
            let (at, slow) = lean_parts(this.ext.as_mut());
            let step = StepMut::new(this.step.as_mut(), slow);
            begin(this.pipeline, this.op, at, step);
            None
        }
        TimedNext::Pending(timed) => {
            let (at, slow) = lean_parts(this.ext.as_mut());
            at.timed = Some(timed);
            Some(ready!(timer(
                timed,
                StepMut::new(this.step.as_mut(), slow),
                cx
            )))
        }
        TimedNext::Retried(first) => {
            lean_state(this.ext.as_mut());
            Some(first)
        }
    };
    lean(this, false, first, cx)
}

/// A plain hedged call whose first attempt did not end its first poll with an answer
/// that is not retried (`quick` is its failure, if it failed): the attempt goes on with
/// its hedges as [`poll_lean`] runs them, then the call as after any attempt.
#[inline(never)]
fn hedged_after_first<C, T, E, Sd, F, R, S, Fut, A: Future, G, B, O>(
    mut this: RunProj<'_, '_, C, Sd, F, R, S, Fut, A, G, B, O>,
    quick: Option<(Result<T, E>, Outcome)>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let Some(ExtProj::Lean { at, hedging, .. }) = project(this.ext.as_mut()) else {
        unreachable!("set up by the caller")
    };
    let fut = this.step.as_mut().attempt();
    let (r, outcome) = ready!(poll_hedged(
        this.pipeline,
        this.op,
        this.retryable,
        at,
        hedging,
        fut,
        quick,
        cx
    ));
    // The other attempts went in this poll, whichever won.
    this.step.as_mut().end_attempt();
    lean(this, true, Some((Attempt::Done(r), outcome)), cx)
}

/// A lean call under a request deadline, as [`Pipeline::run_full`] runs it: each poll of
/// the call (its guards, its operation and the future it returns) sees the deadline as
/// the ambient one that nested pipelines inherit, and when the call is pending its timer
/// may end it (see [`expire`]). Never hedged (see `Inner::lean`).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the fields of one projected `Run`, borrowed apart
fn poll_deadline<'p, C, T, E, F, R, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    expiry: Pin<&mut Option<Sleep>>,
    started: Option<u64>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let ambient = Ambient {
        deadline: at.deadline.map(|(deadline, _)| deadline),
        cancel: None,
    };
    let polled = ambient.sync_scope(|| {
        if step.state() == State::Idle
            && let Some(rejected) = admit_first(pipeline, op, at, step.as_mut(), 0, started)
        {
            return Poll::Ready(Err(rejected));
        }
        let mut hedging = None;
        poll_lean(
            pipeline,
            op,
            retryable,
            at,
            step.as_mut(),
            false,
            &mut hedging,
            None,
            cx,
        )
    });
    if polled.is_pending() {
        return apart(|| expire(pipeline, at, step, expiry, cx));
    }
    polled
}

/// A lean call's request deadline, from its start (its first poll), as
/// [`Pipeline::run_full`] sets it (none when it is too far to represent); the start's
/// reading of the default clock in nanoseconds is returned.
#[inline(always)]
fn start_deadline<C>(pipeline: &Pipeline<C>, at: &mut Lean<'_>) -> u64 {
    let (deadline, nanos) = deadline_and_nanos(within_horizon(pipeline.inner.timeouts.request));
    at.deadline = deadline.map(|deadline| (deadline, nanos));
    nanos
}

/// A pending lean call under a request timeout: when its deadline fires, the call ends
/// with [`Error::Timeout`] as the phased engine's does. During the per-call guards'
/// admission, the wait and the permits held go as cancellations; after it, the attempt
/// (its wait, its permits) is dropped as a failure (see [`DeadlineFired`]) and the per-call
/// permits record a failure.
#[inline(never)]
fn expire<'p, C, T, E, Fut>(
    pipeline: &'p Pipeline<C>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    mut expiry: Pin<&mut Option<Sleep>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>> {
    let Some((deadline, start)) = at.deadline else {
        return Poll::Pending;
    };
    if expiry.is_none() {
        expiry.set(Some(tokio::time::sleep_until(deadline)));
    }
    if let Some(timer) = expiry.as_pin_mut() {
        ready!(timer.poll(cx));
    }
    let elapsed = Duration::from_nanos(deadline_and_nanos(None).1.saturating_sub(start));
    if step.is_queued() {
        step.as_mut().clear();
        drop(std::mem::take(&mut *at.permits));
    } else {
        {
            let _fired = DeadlineFired::enter(elapsed);
            step.as_mut().clear();
            at.drop_attempt_permits();
        }
        settle(pipeline, at, Outcome::Failure, None);
    }
    Poll::Ready(Err(Error::Timeout {
        scope: TimeoutScope::Request,
        elapsed,
    }))
}

/// Builds the phased engine's future for a call that is not lean, and polls it.
#[inline(never)]
#[allow(clippy::too_many_arguments)] // the fields of one projected `Run`, borrowed apart
fn start_phased<'p, C, Sd: CallSeed, F, R, S, Fut, A, G, B, O>(
    pipeline: &'p Pipeline<C>,
    start: &mut Option<S>,
    seed: &mut Sd,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    mut ext: ExtSlot<'_, 'p, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<A::Output>
where
    S: FnOnce(&'p Pipeline<C>, Seed, F, R) -> Start<A, G, B, O>,
    Fut: Future,
    A: Future,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    let (Some(start), Some(op), Some(retryable)) = (start.take(), op.take(), retryable.take())
    else {
        panic!("a call's future polled after it panicked")
    };
    ext.set(Some(match start(pipeline, seed.take(), op, retryable) {
        Start::Plain(fut) => Ext::Plain { fut },
        Start::Guarded(fut) => Ext::Guarded { fut },
        Start::Full(fut) => Ext::Full { fut },
        Start::Observed(fut) => Ext::Observed { fut },
    }));
    poll_phased(ext, cx)
}

/// Polls a failed call's recovery (see `Run`'s `poll`).
#[inline(never)]
fn poll_recovery<Fut, A, G, B, O>(
    ext: ExtSlot<'_, '_, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<A::Output>
where
    Fut: Future,
    A: Future,
{
    match ext.as_pin_mut().map(Ext::project) {
        Some(ExtProj::Recovery { fut }) => fut.as_mut().poll(cx),
        _ => unreachable!("a failed call's recovery runs"),
    }
}

/// Polls the phased engine's future (kept out of line: the lean path stays small).
#[inline(never)]
fn poll_phased<'p, Fut, A, G, B, O>(
    ext: ExtSlot<'_, 'p, Fut, A, G, B, O>,
    cx: &mut std::task::Context<'_>,
) -> Poll<A::Output>
where
    Fut: Future,
    A: Future,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    let Some(mut phased) = ext.as_pin_mut() else {
        unreachable!("a phased call has started")
    };
    let polled = match phased.as_mut().project() {
        ExtProj::Plain { fut } => fut.poll(cx),
        ExtProj::Guarded { fut } => fut.poll(cx),
        ExtProj::Full { fut } => fut.poll(cx),
        ExtProj::Observed { fut } => fut.as_mut().poll(cx),
        ExtProj::Lean { .. } | ExtProj::Ended | ExtProj::Recovery { .. } => {
            unreachable!("a phased call runs")
        }
    };
    if polled.is_ready() {
        // The future goes as it ends, as an attempt's does. (In an LTO build this also
        // keeps `Ext`'s drop glue a function of its own that `Option<Ext>`'s calls, not
        // inlines: the check for `None` stays small enough to inline where the call is
        // dropped, or its state set up.)
        phased.set(Ext::Ended);
    }
    polled
}

/// The lean path, once the first poll has had the call admitted by its per-call guards
/// (and, under a request deadline, in its scope): the retry loop of [`Pipeline::retry_loop`] with no probe, as
/// a state machine (each attempt's per-attempt guards and operation timeout: see
/// [`launch_slow`]). The per-call permits record the call's outcome as
/// [`Pipeline::guarded_call`] does.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the fields of one projected `Run`, borrowed apart
fn poll_lean<'p, C, T, E, F, R, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    hedge: bool,
    hedging: &mut Option<Box<Hedging<Fut>>>,
    mut first: Option<(Attempt<T, E>, Outcome)>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let inner = &*pipeline.inner;
    loop {
        let (result, outcome) = if let Some(ended) = first.take() {
            ended
        } else {
            match step.state() {
                State::Attempt => {
                    if hedge {
                        let mut fut = step.as_mut().attempt();
                        let mut quick = None;
                        if hedging.is_none() {
                            // The first poll: a quick answer that is not retried is the whole
                            // attempt, with no hedging state set up.
                            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                                let outcome = inner.classify.classify(&r);
                                if !inner.classify.should_retry(&r, outcome) {
                                    pipeline.hedge_won();
                                    settle(pipeline, at, outcome, None);
                                    return Poll::Ready(finish(Attempt::Done(r), 1));
                                }
                                quick = Some((r, outcome));
                            }
                        }
                        let (r, outcome) = ready!(poll_hedged(
                            pipeline, op, retryable, at, hedging, fut, quick, cx
                        ));
                        // The other attempts go in this poll, whichever won.
                        step.as_mut().end_attempt();
                        (Attempt::Done(r), outcome)
                    } else {
                        let r = ready!(step.as_mut().attempt().poll(cx));
                        // The attempt's future goes as it ends, as the engine's does.
                        step.as_mut().end_attempt();
                        let outcome = inner.classify.classify(&r);
                        (Attempt::Done(r), outcome)
                    }
                }
                State::Timed => ready!(poll_timed(pipeline, at, step.as_mut(), cx)),
                State::Slow => match poll_slow(pipeline, op, at, step.as_mut(), cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(rejected))) => {
                        step.as_mut().clear();
                        return Poll::Ready(Err(rejected));
                    }
                    Poll::Ready(Some(Ok(rejected))) => rejected,
                    Poll::Ready(None) => continue,
                },
                State::Idle | State::Done | State::Phased | State::Recovering => {
                    polled_after_completion()
                }
            }
        };
        // The clock's reading when the attempt's permits recorded it (if they did).
        let now = if at.held != 0 {
            record_attempt(pipeline, at, outcome)
        } else {
            None
        };
        if !retried(&inner.classify, &result, outcome) {
            settle(pipeline, at, outcome, now);
            return Poll::Ready(finish(result, 1));
        }
        // A rejection by a per-attempt guard says nothing of the dependency.
        let reported = call_outcome(&result, outcome);
        match lean_retry(pipeline, retryable, at, result) {
            Ok(delay) => {
                at.previous = Some(delay);
                at.attempt += 1;
                // With no delay, a unit of the task's coop budget, spent here when there is
                // one: the next attempt starts in this poll, with no slow state set or
                // dropped.
                if delay.is_zero() && retry_now(pipeline, op, at, step.as_mut(), cx) {
                    continue;
                }
                let slow = retry_wait(delay);
                step.as_mut().wait(slow);
            }
            Err(end) => {
                settle(pipeline, at, reported, now);
                return Poll::Ready(end);
            }
        }
    }
}

/// Starts the next attempt of a lean call that retries with no delay, if the task's coop
/// budget has a unit left (spent here), or the retry needs none ([`free_of_budget`]).
/// `false`: the budget is spent, and the task must give control back first (see
/// [`Slow::Yield`]).
#[inline]
fn retry_now<'p, C, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    step: StepMut<'_, 'p, Fut>,
    cx: &mut std::task::Context<'_>,
) -> bool
where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    if !free_of_budget(at.attempt) {
        let Poll::Ready(coop) = tokio::task::coop::poll_proceed(cx) else {
            return false;
        };
        coop.made_progress();
    }
    launch(pipeline, op, at, step, None);
    true
}

/// Whether attempt `attempt`, a retry with no delay, starts without spending a unit of the
/// task's coop budget: a call's first retry does. An operation that fails without awaiting,
/// retried with no delay and no end, would never give control back: from the call's second
/// retry on, each spends a unit, and the task yields when the budget is spent (see
/// [`Slow::Yield`]). The first needs none: a call does a bounded amount of work before it
/// (one attempt), so a loop of such calls gives control back where the same loop without
/// retries would, and peers' retries (tower's, backon's) spend nothing at all.
#[inline(always)]
pub(super) fn free_of_budget(attempt: u32) -> bool {
    attempt == 2
}

/// What a slow state comes to: a new state to poll (`None`), an attempt's result with its
/// outcome, or a rejection.
type SlowPoll<T, E> = Poll<Option<Result<(Attempt<T, E>, Outcome), Error<E>>>>;

/// The lean path's slow states: a queued admission (of the call or of an attempt), a
/// rejected attempt, the wait before a retry. `Some(Ok(_))` is a rejected attempt's
/// result, `Some(Err(_))` the call's rejection, `None` a new state to poll.
#[inline(never)]
fn poll_slow<'p, C, T, E, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    cx: &mut std::task::Context<'_>,
) -> SlowPoll<T, E>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let first = match step.as_mut().slow().project() {
        SlowProj::Queue { wait, guard } => {
            let guard = *guard;
            match ready!(wait.as_mut().poll(cx)) {
                Ok(permit) => at.permits.push(permit),
                Err(rejection) => return Poll::Ready(Some(Err(rejection.into()))),
            }
            // The wait has ended: it goes before the next guard is asked.
            step.as_mut().clear();
            guard + 1
        }
        SlowProj::AttemptQueue { wait, guard } => {
            let guard = *guard;
            match ready!(wait.as_mut().poll(cx)) {
                Ok(permit) => at.hold(permit),
                Err(rejection) => {
                    at.drop_attempt_permits();
                    step.as_mut().clear();
                    let rejected = (Attempt::Rejected(rejection), Outcome::Failure);
                    return Poll::Ready(Some(Ok(rejected)));
                }
            }
            step.as_mut().clear();
            let Some(op) = op.as_mut() else {
                unreachable!("a lean call keeps its operation")
            };
            launch_slow(pipeline, op, at, step, guard + 1, None);
            return Poll::Ready(None);
        }
        SlowProj::Rejected { rejection } => {
            let Some(rejection) = rejection.take() else {
                unreachable!("a rejection is taken once")
            };
            step.as_mut().clear();
            return Poll::Ready(Some(Ok((Attempt::Rejected(rejection), Outcome::Failure))));
        }
        SlowProj::Yield => {
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            coop.made_progress();
            step.as_mut().clear();
            launch(pipeline, op, at, step, None);
            return Poll::Ready(None);
        }
        SlowProj::Sleep { sleep } => {
            ready!(sleep.poll(cx));
            step.as_mut().clear();
            launch(pipeline, op, at, step, None);
            return Poll::Ready(None);
        }
    };
    Poll::Ready(admit_call(pipeline, op, at, step, first, None).map(Err))
}

/// A lean call's first poll after its deadline (if any) is set: admission by the per-call
/// guards from guard `first` on (the ones before it have admitted the call), if there
/// are any, then the first attempt. A rejection (`Some`) comes before any attempt
/// machinery was built, and ends the call. `started`: the call's start on the default
/// clock, when its first poll read it.
#[inline(always)]
fn admit_first<'p, C, E, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    first: usize,
    started: Option<u64>,
) -> Option<Error<E>>
where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    if pipeline.inner.call_guards.len() <= first {
        begin(pipeline, op, at, step);
        return None;
    }
    // The guards admit the call as it starts: a guard on the default clock reads the
    // engine's reading of it (taken for the request deadline, if there is one).
    let rejected = admit_call(pipeline, op, at, step.as_mut(), first, started)?;
    step.set_state(State::Done);
    Some(rejected)
}

/// Admission by the per-call guards, from guard `first` on, as `Pipeline::guarded_call`
/// asks them: when all admit, the call begins; a guard that queues leaves it in
/// [`Slow::Queue`]; a rejection is returned. `now` is the default clock's reading at the
/// call's start, when the first admission has one (see `Context::now`). Inline where it is
/// called: in a call's first poll (no call on the guarded path), and in [`poll_slow`]
/// (itself out of line).
#[inline(always)]
fn admit_call<'p, C, E, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    step: StepMut<'_, 'p, Fut>,
    first: usize,
    now: Option<u64>,
) -> Option<Error<E>>
where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    let inner = &*pipeline.inner;
    let timed;
    let ctx = match at.deadline {
        None => &BARE,
        Some((deadline, _)) => {
            // (Holds no reference count: not dropped, so no drop glue runs.)
            timed = ManuallyDrop::new(Context {
                deadline: Some(deadline),
                now,
                ..Context::bare()
            });
            &*timed
        }
    };
    for (i, g) in inner.call_guards.iter().enumerate().skip(first) {
        match g.acquire(ctx) {
            Acquire::Ready(Ok(permit)) => at.permits.push(permit.of(&**g)),
            Acquire::Ready(Err(rejection)) => return Some(rejection.into()),
            Acquire::Wait(wait) => {
                step.wait(Slow::Queue { wait, guard: i });
                return None;
            }
        }
    }
    begin(pipeline, op, at, step);
    None
}

/// Starts attempt `at.attempt`: the operation alone, or (see [`launch_slow`]) after the
/// per-attempt guards and under its deadline.
#[inline(always)]
fn launch<'p, C, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    step: StepMut<'_, 'p, Fut>,
    now: Option<Duration>,
) where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    let Some(op) = op.as_mut() else {
        unreachable!("a lean call keeps its operation")
    };
    if !pipeline.inner.bare_attempts {
        return launch_slow(pipeline, op, at, step, 0, now);
    }
    if at.attempt == 1 {
        step.start(op(&BARE));
    } else {
        step.start(op(&attempt_context(at.attempt)));
    }
}

/// The context of bare attempt `attempt` after the first: the attempt number is the one
/// thing the engine's own adapters read (the tower adapter sends the last attempt its
/// original request). (Holds no reference count: not dropped, so no drop glue runs.)
#[inline(always)]
fn attempt_context(attempt: u32) -> ManuallyDrop<Context> {
    ManuallyDrop::new(Context {
        attempt,
        ..Context::bare()
    })
}

/// The wait before a retry after `delay`: a yield for the task's coop budget with none.
#[inline(always)]
fn retry_wait<'p>(delay: Duration) -> Slow<'p> {
    if delay.is_zero() {
        Slow::Yield
    } else {
        Slow::Sleep {
            sleep: tokio::time::sleep(delay.min(HORIZON)),
        }
    }
}

/// Starts attempt `at.attempt` as [`Pipeline::attempt`] runs it: admission by the
/// per-attempt guards from guard `first` on (a guard that queues leaves the attempt in
/// [`Slow::AttemptQueue`], one that rejects in [`Slow::Rejected`]), then the operation under
/// its operation timeout (when it is within the horizon: one too long to fire is none),
/// scoped with the tighter of that timeout's deadline and the request's, so that nested
/// pipelines inherit it.
#[inline(never)]
fn launch_slow<'p, C, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut F,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    first: usize,
    now: Option<Duration>,
) where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    let inner = &*pipeline.inner;
    let call_deadline = at.deadline.map(|(deadline, _)| deadline);
    // (Holds no reference count: not dropped, so no drop glue runs.)
    let mut ctx = ManuallyDrop::new(Context {
        attempt: at.attempt,
        deadline: call_deadline,
        ..Context::bare()
    });
    if !inner.attempt_guards.is_empty() && !admit_attempt(pipeline, &ctx, at, step.as_mut(), first)
    {
        return;
    }
    if inner.time_attempts {
        // `now`: the clock's reading when the call was admitted, given for its first
        // attempt (with no wait between: a guard that queues starts over without it).
        at.t0 = Some(now.unwrap_or_else(|| inner.clock.now()));
    }
    // (The operation is called, and its future polled, under the request deadline's scope:
    // see `poll_deadline`.)
    let Some((limit, due)) = operation_deadline(inner.timeouts.operation) else {
        step.start(op(&ctx));
        return;
    };
    let scope = call_deadline.map_or(due, |call| call.min(due));
    ctx.deadline = Some(scope);
    at.timed = Some(Timed {
        at: due,
        limit,
        scope,
    });
    step.start_timed(op(&ctx));
}

/// An attempt's operation timeout starting now, and its deadline: none for a timeout
/// beyond the horizon or a deadline that cannot be represented (as `deadline_from_now`
/// gives it, written out here, where that helper cost 9 instructions).
#[inline(always)]
pub(super) fn operation_deadline(operation: Option<Duration>) -> Option<(Duration, Instant)> {
    within_horizon(operation).and_then(|limit| Some((limit, deadline_and_nanos(Some(limit)).0?)))
}

/// Polls an attempt under an operation timeout (see [`Timed`]) in its deadline's scope: its
/// result, or a timeout when its timer fires first (the attempt that overran goes at once,
/// as the engine's does). A timed attempt that ends at its first poll sets no slow state.
#[inline(never)]
fn poll_timed<'p, C, T, E, Fut>(
    pipeline: &'p Pipeline<C>,
    at: &mut Lean<'p>,
    mut step: StepMut<'_, 'p, Fut>,
    cx: &mut std::task::Context<'_>,
) -> Poll<(Attempt<T, E>, Outcome)>
where
    C: Classify<T, E> + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    let Some(timed) = at.timed else {
        unreachable!("a timed attempt runs")
    };
    let ambient = Ambient {
        deadline: Some(timed.scope),
        cancel: None,
    };
    if let Poll::Ready(r) = ambient.sync_scope(|| step.as_mut().attempt().poll(cx)) {
        let outcome = pipeline.inner.classify.classify(&r);
        if step.has_slow() {
            step.as_mut().clear();
        } else {
            step.as_mut().end_attempt();
        }
        return Poll::Ready((Attempt::Done(r), outcome));
    }
    timer(timed, step, cx)
}

/// The timer of a timed attempt that is pending (see [`poll_timed`]): armed at the
/// attempt's first `Pending`, then polled; when it fires, the attempt goes, timed out.
#[inline(always)]
fn timer<'p, T, E, Fut>(
    timed: Timed,
    mut step: StepMut<'_, 'p, Fut>,
    cx: &mut std::task::Context<'_>,
) -> Poll<(Attempt<T, E>, Outcome)> {
    if !step.has_slow() {
        step.as_mut().arm(Slow::Sleep {
            sleep: tokio::time::sleep_until(timed.at),
        });
    }
    if let SlowProj::Sleep { sleep } = step.as_mut().slow().project() {
        ready!(sleep.poll(cx));
    }
    step.as_mut().clear();
    Poll::Ready((Attempt::TimedOut(timed.limit), Outcome::Failure))
}

/// Admission of attempt `at.attempt` by the per-attempt guards from guard `first` on, as
/// [`Pipeline::attempt`] asks them: `false` when a guard queues it (it waits in
/// [`Slow::AttemptQueue`]) or rejects it (in [`Slow::Rejected`]). Inline in
/// [`launch_slow`], its one caller.
#[inline(always)]
fn admit_attempt<'p, C, Fut>(
    pipeline: &'p Pipeline<C>,
    ctx: &Context,
    at: &mut Lean<'p>,
    step: StepMut<'_, 'p, Fut>,
    first: usize,
) -> bool {
    for (i, g) in pipeline.inner.attempt_guards.iter().enumerate().skip(first) {
        match g.acquire(ctx) {
            Acquire::Ready(Ok(permit)) => at.hold(permit.of(&**g)),
            Acquire::Ready(Err(rejection)) => {
                at.drop_attempt_permits();
                step.wait(Slow::Rejected {
                    rejection: Some(rejection),
                });
                return false;
            }
            Acquire::Wait(wait) => {
                step.wait(Slow::AttemptQueue { wait, guard: i });
                return false;
            }
        }
    }
    true
}

/// After admission: what the retry loop does at its start, then the first attempt.
#[inline(always)]
fn begin<'p, C, F, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    at: &mut Lean<'p>,
    step: StepMut<'_, 'p, Fut>,
) where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    let inner = &*pipeline.inner;
    if inner.time_calls {
        at.admitted = Some(inner.clock.now());
    }
    if let Some(retry) = &inner.retry {
        if let Some(b) = &retry.budget {
            b.deposit();
        }
        if retry.max_elapsed.is_some() {
            at.started = Some(inner.clock.now());
        }
    }
    if let Some(h) = &inner.hedge {
        h.deposit();
    }
    // The attempt starts as the call is admitted: one reading of the clock for both.
    let now = at.admitted;
    launch(pipeline, op, at, step, now);
}

/// A lean hedged attempt after its first poll (bare, as the phased engine's retry loop runs
/// it with [`PollOnce`](super::hedge::PollOnce) and [`Pipeline::hedged`]): the caller polls
/// the first attempt once, and a quick answer that is not retried is the attempt's, with
/// no hedging state set up; `quick` is its failure. Otherwise hedges start after the
/// hedge's delay (or at once in parallel mode, or when an attempt fails), each on a copy of the call's context; the first acceptable answer
/// wins, and when all have failed the last failure is the attempt's.
#[inline(never)]
#[allow(clippy::too_many_arguments)] // fields of one projected `Run`, and the quick answer
fn poll_hedged<'p, C, T, E, F, R, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    retryable: &Option<R>,
    at: &Lean<'p>,
    hedging: &mut Option<Box<Hedging<Fut>>>,
    mut first: Pin<&mut Fut>,
    quick: Option<(Result<T, E>, Outcome)>,
    cx: &mut std::task::Context<'_>,
) -> Poll<(Result<T, E>, Outcome)>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
{
    let inner = &*pipeline.inner;
    let classify = &inner.classify;
    let Some(hedge) = inner.hedge.as_ref() else {
        unreachable!("hedged only with a hedge")
    };
    let budget = inner.retry.as_ref().and_then(|r| r.budget.as_deref());
    // A hedge starts only if the request can still be sent again (the tower adapter's
    // copy) and both budgets allow it.
    let start = |n: u32| retryable.as_ref().is_none_or(|r| r()) && hedge.admit(n, budget);
    let started = || hedge.timed().then(Instant::now);
    let Some(op) = op.as_mut() else {
        unreachable!("a lean call keeps its operation")
    };
    let ctx = Context {
        attempt: at.attempt,
        ..Context::bare()
    };
    // After the first poll (its quick failure, if it failed), the hedging state.
    let mut done = quick.map(|r| (0, None, r));
    if hedging.is_none() {
        let mut h = Box::new(Hedging {
            first_done: done.is_some(),
            t0: if done.is_some() { None } else { started() },
            timer: None,
            hedges: Vec::new(),
            next: 1,
            last: None,
        });
        if hedge.is_parallel() {
            let max = hedge.max_hedges();
            while h.next <= max && start(h.next) {
                h.hedges.push((h.next, started(), Box::pin(op(&ctx))));
                h.next += 1;
            }
            h.next = max + 1;
        }
        *hedging = Some(h);
    }
    let Some(h) = hedging.as_mut() else {
        unreachable!("set up above")
    };
    let max = hedge.max_hedges();
    loop {
        if done.is_none()
            && !h.first_done
            && let Poll::Ready(r) = first.as_mut().poll(cx)
        {
            h.first_done = true;
            let outcome = classify.classify(&r);
            done = Some((0, h.t0, (r, outcome)));
        }
        if done.is_none() {
            for i in 0..h.hedges.len() {
                if let Poll::Ready(r) = h.hedges[i].2.as_mut().poll(cx) {
                    let (n, t, _) = h.hedges.swap_remove(i);
                    let outcome = classify.classify(&r);
                    done = Some((n, t, (r, outcome)));
                    break;
                }
            }
        }
        if let Some((n, t, (r, outcome))) = done.take() {
            if !classify.should_retry(&r, outcome) {
                // the winner: every other attempt is dropped in this poll
                *hedging = None;
                hedge.won_after(n, t);
                return Poll::Ready((r, outcome));
            }
            h.last = Some((r, outcome));
            // a failure brings the next hedge forward (delayed and fallback modes)
            if h.next <= max && start(h.next) {
                h.hedges.push((h.next, started(), Box::pin(op(&ctx))));
                h.next += 1;
                if let (Some(d), Some(t)) = (hedge.delay(), h.timer.as_mut()) {
                    t.as_mut().reset(Instant::now() + d);
                }
            }
            if h.first_done && h.hedges.is_empty() {
                let last = h.last.take();
                *hedging = None;
                let Some(last) = last else {
                    unreachable!("a failed attempt")
                };
                return Poll::Ready(last);
            }
            continue;
        }
        // nothing finished: in delayed mode a hedge is due after the delay (the timer is
        // set up only now, when the first poll found the attempt pending)
        if let Some(d) = hedge.delay()
            && h.next <= max
        {
            let t = h
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            if t.as_mut().poll(cx).is_ready() {
                if start(h.next) {
                    h.hedges.push((h.next, started(), Box::pin(op(&ctx))));
                    h.next += 1;
                    t.as_mut().reset(Instant::now() + d);
                    continue;
                }
                h.next = max + 1;
            }
        }
        return Poll::Pending;
    }
}

/// The call's end: each per-call permit records its outcome and duration.
#[inline(always)]
fn settle<C>(pipeline: &Pipeline<C>, at: &mut Lean<'_>, outcome: Outcome, now: Option<Duration>) {
    if !at.permits.is_empty() {
        record(pipeline, at, outcome, now);
    }
}

/// [`settle`] with permits to record (out of line: most calls hold none).
#[inline(never)]
fn record<C>(pipeline: &Pipeline<C>, at: &mut Lean<'_>, outcome: Outcome, now: Option<Duration>) {
    // `now`: the clock's reading when the last attempt ended, if it was read then.
    let took = at.admitted.map_or(Duration::ZERO, |admitted| {
        now.unwrap_or_else(|| pipeline.inner.clock.now())
            .saturating_sub(admitted)
    });
    at.permits.drain(0, |permit| permit.record(outcome, took));
}

/// An attempt's end: each per-attempt permit records its outcome and duration, as
/// [`Pipeline::attempt`] does.
#[inline(never)]
fn record_attempt<C>(
    pipeline: &Pipeline<C>,
    at: &mut Lean<'_>,
    outcome: Outcome,
) -> Option<Duration> {
    let now = at.t0.map(|t0| (pipeline.inner.clock.now(), t0));
    let took = now.map_or(Duration::ZERO, |(now, t0)| now.saturating_sub(t0));
    let from = at.take_attempt_permits();
    at.permits
        .drain(from, |permit| permit.record(outcome, took));
    now.map(|(now, _)| now)
}

/// After a failed lean attempt: the delay before the next one, or the call's result.
#[inline(never)]
fn lean_retry<C, T, E, R>(
    pipeline: &Pipeline<C>,
    retryable: &Option<R>,
    at: &Lean<'_>,
    result: Attempt<T, E>,
) -> Result<Duration, Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    R: Fn() -> bool,
{
    decide_retry(
        pipeline,
        retryable,
        at.attempt,
        at.previous,
        result,
        elapsed_since(&pipeline.inner.clock, at.started),
        at.deadline
            .map(|(deadline, _)| deadline.saturating_duration_since(instant_now())),
    )
}

/// After failed attempt `attempt` of a lean call ([`lean_retry`], [`plain_retries`]): the
/// delay before the next one, or the call's result; `elapsed` since the call started (for
/// `max_elapsed`) and the time `remaining` before its deadline.
#[inline(always)]
fn decide_retry<C, T, E, R>(
    pipeline: &Pipeline<C>,
    retryable: &Option<R>,
    attempt: u32,
    previous: Option<Duration>,
    result: Attempt<T, E>,
    elapsed: Duration,
    remaining: Option<Duration>,
) -> Result<Duration, Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    R: Fn() -> bool,
{
    if !retryable.as_ref().is_none_or(|r| r()) {
        return Err(finish(result, attempt));
    }
    match pipeline.next(&BARE, attempt, previous, &result, elapsed, remaining) {
        Next::Stop => Err(finish(result, attempt)),
        Next::OutOfBudget(cost) => Err(out_of_budget(result, attempt, cost)),
        Next::Wait(delay) => Ok(delay),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::engine::guard::Guard;

    /// Logs every release: the permit's token and its outcome.
    #[derive(Debug, Default)]
    struct Log(Mutex<Vec<(u64, Option<Outcome>)>>);

    impl Guard for Log {
        fn name(&self) -> &'static str {
            "log"
        }
        fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
            unreachable!("permits are made by hand here")
        }
        fn on_release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
            self.0
                .lock()
                .unwrap()
                .push((token, outcome.map(|(o, _)| o)));
        }
    }

    /// `n` permits of `log`, each after one that holds nothing (which `Held` keeps not).
    fn held(log: &Log, n: u64) -> Held<'_> {
        let mut held = Held::default();
        for token in 1..=n {
            held.push(Permit::none());
            held.push(Permit::new(log, token));
        }
        held
    }

    #[test]
    fn held_permits_keep_their_order_whether_alone_or_listed() {
        for n in 0..=6u64 {
            for from in 0..=n {
                let log = Log::default();
                let mut permits = held(&log, n);
                assert_eq!(permits.len() as u64, n);
                assert_eq!(permits.is_empty(), n == 0);
                // The permits from `from` on are taken out in order and recorded...
                permits.drain(from as usize, |p| {
                    p.record(Outcome::Success, Duration::ZERO)
                });
                assert_eq!(permits.len() as u64, from.min(n));
                let recorded: Vec<_> = (from + 1..=n)
                    .map(|t| (t, Some(Outcome::Success)))
                    .collect();
                assert_eq!(*log.0.lock().unwrap(), recorded, "n {n}, from {from}");
                // ...and a new one goes after those left (one that holds nothing, nowhere).
                permits.push(Permit::none());
                permits.push(Permit::new(&log, 100));
                assert_eq!(permits.len() as u64, from.min(n) + 1);
                // The rest are released unrecorded, first to last, when dropped.
                drop(permits);
                let mut expected = recorded;
                expected.extend((1..=from.min(n)).map(|t| (t, None)));
                expected.push((100, None));
                assert_eq!(*log.0.lock().unwrap(), expected, "n {n}, from {from}");
            }
        }
    }
}
