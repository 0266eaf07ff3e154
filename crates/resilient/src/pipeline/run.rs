//! The future of one call: the path is picked on the first poll, then polled in place.
//!
//! Most pipelines' calls take the **lean** path: an operation that does not read its
//! [`Context`] (`execute`), in a pipeline with no guard, no timeout, no hedge and no
//! observer, with no caller cancellation and no deadline inherited from an enclosing call.
//! Its only phase is the retry loop around bare attempts, and it is written out here as a
//! small state machine (attempt, wait, attempt ...) that makes the same decisions as the
//! engine's retry loop ([`Pipeline::next`], [`retried`], [`finish`]) without building a
//! [`Context`], reading the clock or nesting futures. Every other call runs the phased
//! engine of [`Pipeline`] (see [`Pipeline::run`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

use super::{
    Attempt, Next, Permits, Pipeline, Seed, elapsed_since, finish, out_of_budget, retried,
};
use crate::engine::context::{Ambient, Context, HORIZON};
use crate::engine::error::Error;
use crate::engine::guard::{Acquire, WaitFuture};
use crate::engine::outcome::Classify;
use crate::engine::outcome::Outcome;

/// The context of a lean call's first attempt. The lean path is only taken by operations
/// that ignore their context but its attempt number, and no guard reads it.
static BARE: Context = Context::bare();

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
    pub(super) struct Run<'p, C, F, R, S, Fut, A, G, B, O> {
        pub(super) pipeline: &'p Pipeline<C>,
        // The call may take the lean path (decided where the call is built, from its seed).
        pub(super) lean: bool,
        pub(super) seed: Seed,
        pub(super) op: Option<F>,
        pub(super) retryable: Option<R>,
        pub(super) start: Option<S>,
        pub(super) at: Lean<'p>,
        #[pin]
        pub(super) step: Step<'p, Fut>,
        #[pin]
        pub(super) phased: Phased<A, G, B, O>,
    }
}

/// Where a lean call is, besides its step.
#[derive(Default)]
pub(super) struct Lean<'p> {
    /// The attempt running or next (from 1).
    attempt: u32,
    /// The delay before the last retry.
    previous: Option<Duration>,
    /// The call's start on the pipeline's clock, when `max_elapsed` needs it.
    started: Option<Duration>,
    /// When the per-call guards admitted the call, when one of them uses durations.
    admitted: Option<Duration>,
    /// The per-call guards' permits.
    permits: Permits<'p>,
}

pin_project_lite::pin_project! {
    /// The phased engine's future, once a call that is not lean has started.
    #[project = PhasedProj]
    pub(super) enum Phased<A, G, B, O> {
        Idle,
        Plain { #[pin] fut: A },
        Guarded { #[pin] fut: G },
        Full { #[pin] fut: B },
        Observed { fut: Pin<Box<O>> },
    }
}

pin_project_lite::pin_project! {
    /// Where a call is.
    #[project = StepProj]
    pub(super) enum Step<'p, Fut> {
        /// Not polled yet.
        Idle,
        /// A lean call queued by per-call guard `guard`.
        Queue { wait: WaitFuture<'p>, guard: usize },
        /// The lean path's attempt.
        Attempt { #[pin] fut: Fut },
        /// Before a lean retry with no delay: a unit of the task's coop budget is spent (an
        /// operation that fails without awaiting would otherwise never give control back).
        Yield,
        /// Before a lean retry after a delay.
        Sleep { #[pin] sleep: Sleep },
        /// The call runs the phased engine's future.
        Phased,
    }
}

impl<C, T, E, F, R, S, Fut, A, G, B, O> Future for Run<'_, C, F, R, S, Fut, A, G, B, O>
where
    C: Classify<T, E> + Send + Sync + 'static,
    F: FnMut(&Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    R: Fn() -> bool,
    S: FnOnce(Seed, F, R) -> Start<A, G, B, O>,
    A: Future<Output = Result<T, Error<E>>>,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    type Output = A::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<A::Output> {
        let mut this = self.project();
        match this.step.as_mut().project() {
            StepProj::Idle => {}
            StepProj::Phased => return poll_phased(this.phased, cx),
            _ => {
                return poll_lean(
                    this.pipeline,
                    this.op,
                    this.retryable,
                    this.at,
                    this.step,
                    cx,
                );
            }
        }
        let inner = &*this.pipeline.inner;
        if *this.lean && inner.lean && !Ambient::active() {
            this.at.attempt = 1;
            return poll_lean(
                this.pipeline,
                this.op,
                this.retryable,
                this.at,
                this.step,
                cx,
            );
        }
        start_phased(
            this.start,
            this.seed,
            this.op,
            this.retryable,
            this.phased.as_mut(),
        );
        this.step.set(Step::Phased);
        poll_phased(this.phased, cx)
    }
}

/// Builds the phased engine's future for a call that is not lean.
#[inline(never)]
fn start_phased<F, R, S, A, G, B, O>(
    start: &mut Option<S>,
    seed: &mut Seed,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    mut phased: Pin<&mut Phased<A, G, B, O>>,
) where
    S: FnOnce(Seed, F, R) -> Start<A, G, B, O>,
{
    let (Some(start), Some(op), Some(retryable)) = (start.take(), op.take(), retryable.take())
    else {
        panic!("a call's future polled after it panicked")
    };
    match start(std::mem::take(seed), op, retryable) {
        Start::Plain(fut) => phased.set(Phased::Plain { fut }),
        Start::Guarded(fut) => phased.set(Phased::Guarded { fut }),
        Start::Full(fut) => phased.set(Phased::Full { fut }),
        Start::Observed(fut) => phased.set(Phased::Observed { fut }),
    }
}

/// Polls the phased engine's future (kept out of line: the lean path stays small).
#[inline(never)]
fn poll_phased<A, G, B, O>(
    phased: Pin<&mut Phased<A, G, B, O>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<A::Output>
where
    A: Future,
    G: Future<Output = A::Output>,
    B: Future<Output = A::Output>,
    O: Future<Output = A::Output>,
{
    match phased.project() {
        PhasedProj::Plain { fut } => fut.poll(cx),
        PhasedProj::Guarded { fut } => fut.poll(cx),
        PhasedProj::Full { fut } => fut.poll(cx),
        PhasedProj::Observed { fut } => fut.as_mut().poll(cx),
        PhasedProj::Idle => unreachable!("a phased call has started"),
    }
}

/// The lean path: the per-call guards' admission, then the retry loop of
/// [`Pipeline::retry_loop`] for bare attempts with no probe, no deadline and no per-attempt
/// guard, as a state machine. The per-call permits record the call's outcome as
/// [`Pipeline::guarded_call`] does.
#[inline(always)]
fn poll_lean<'p, C, T, E, F, R, Fut>(
    pipeline: &'p Pipeline<C>,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    at: &mut Lean<'p>,
    mut step: Pin<&mut Step<'p, Fut>>,
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
        match step.as_mut().project() {
            StepProj::Attempt { fut } => {
                let r = ready!(fut.poll(cx));
                let outcome = inner.classify.classify(&r);
                let result = Attempt::Done(r);
                if !retried(&inner.classify, &result, outcome) {
                    if !at.permits.is_empty() {
                        settle(pipeline, at, outcome);
                    }
                    return Poll::Ready(finish(result, 1));
                }
                match lean_retry(pipeline, retryable, at, result) {
                    Ok(delay) => {
                        if delay.is_zero() {
                            step.set(Step::Yield);
                        } else {
                            step.set(Step::Sleep {
                                sleep: tokio::time::sleep(delay.min(HORIZON)),
                            });
                        }
                        at.previous = Some(delay);
                        at.attempt += 1;
                        continue;
                    }
                    Err(end) => {
                        if !at.permits.is_empty() {
                            settle(pipeline, at, outcome);
                        }
                        return Poll::Ready(end);
                    }
                }
            }
            StepProj::Yield => {
                let coop = ready!(tokio::task::coop::poll_proceed(cx));
                coop.made_progress();
            }
            StepProj::Sleep { sleep } => ready!(sleep.poll(cx)),
            StepProj::Idle => match admit(pipeline, at, step.as_mut(), 0) {
                Ok(true) => begin(pipeline, at),
                Ok(false) => continue,
                Err(rejected) => return Poll::Ready(Err(rejected)),
            },
            StepProj::Queue { wait, guard } => {
                let guard = *guard;
                match ready!(wait.as_mut().poll(cx)) {
                    Ok(permit) => at.permits.push(permit),
                    Err(rejection) => return Poll::Ready(Err(rejection.into())),
                }
                step.set(Step::Idle);
                match admit(pipeline, at, step.as_mut(), guard + 1) {
                    Ok(true) => begin(pipeline, at),
                    Ok(false) => continue,
                    Err(rejected) => return Poll::Ready(Err(rejected)),
                }
            }
            StepProj::Phased => unreachable!("not a lean call"),
        }
        let Some(op) = op.as_mut() else {
            unreachable!("a lean call keeps its operation")
        };
        // The attempt number is the one thing the engine's own adapters read (the tower
        // adapter sends the last attempt its original request).
        let ctx = Context {
            attempt: at.attempt,
            ..Context::bare()
        };
        step.set(Step::Attempt { fut: op(&ctx) });
    }
}

/// Asks the per-call guards from `first` on for admission, as [`Pipeline::guarded_call`]
/// does: `true` when all admitted the call. A guard that makes the call wait leaves `step`
/// queued on it (`false`).
#[inline]
fn admit<'p, C, E, Fut>(
    pipeline: &'p Pipeline<C>,
    at: &mut Lean<'p>,
    mut step: Pin<&mut Step<'p, Fut>>,
    first: usize,
) -> Result<bool, Error<E>> {
    for (i, g) in pipeline.inner.call_guards.iter().enumerate().skip(first) {
        match g.acquire(&BARE) {
            Acquire::Ready(Ok(permit)) => at.permits.push(permit),
            Acquire::Ready(Err(rejection)) => return Err(rejection.into()),
            Acquire::Wait(wait) => {
                step.set(Step::Queue { wait, guard: i });
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// After admission, before the first attempt: what the retry loop does at its start.
#[inline]
fn begin<C>(pipeline: &Pipeline<C>, at: &mut Lean<'_>) {
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
}

/// The call's end: each per-call permit records its outcome and duration.
#[inline(never)]
fn settle<C>(pipeline: &Pipeline<C>, at: &mut Lean<'_>, outcome: Outcome) {
    let took = elapsed_since(&pipeline.inner.clock, at.admitted);
    for permit in at.permits.drain(..) {
        permit.record(outcome, took);
    }
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
    if !retryable.as_ref().is_none_or(|r| r()) {
        return Err(finish(result, at.attempt));
    }
    let inner = &*pipeline.inner;
    match pipeline.next(
        &BARE,
        at.attempt,
        at.previous,
        &result,
        elapsed_since(&inner.clock, at.started),
        None,
    ) {
        Next::Stop => Err(finish(result, at.attempt)),
        Next::OutOfBudget(cost) => Err(out_of_budget(result, at.attempt, cost)),
        Next::Wait(delay) => Ok(delay),
    }
}
