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

use super::{Attempt, Next, Pipeline, Seed, elapsed_since, finish, out_of_budget, retried};
use crate::engine::context::{Ambient, Context, HORIZON};
use crate::engine::error::Error;
use crate::engine::outcome::Classify;

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
        // The lean path's attempt, previous delay and start (with `max_elapsed`).
        pub(super) attempt: u32,
        pub(super) previous: Option<Duration>,
        pub(super) started: Option<Duration>,
        #[pin]
        pub(super) step: Step<Fut>,
        #[pin]
        pub(super) phased: Phased<A, G, B, O>,
    }
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
    pub(super) enum Step<Fut> {
        /// Not polled yet.
        Idle,
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
                    this.step,
                    this.attempt,
                    this.previous,
                    this.started,
                    cx,
                );
            }
        }
        let inner = &*this.pipeline.inner;
        if *this.lean && inner.lean && !Ambient::active() {
            if let Some(b) = inner.retry.as_ref().and_then(|r| r.budget.as_ref()) {
                b.deposit();
            }
            *this.started = inner
                .retry
                .as_ref()
                .and_then(|r| r.max_elapsed)
                .map(|_| inner.clock.now());
            let Some(op) = this.op.as_mut() else {
                unreachable!("a call's operation is there until the call starts")
            };
            this.step.set(Step::Attempt { fut: op(&BARE) });
            return poll_lean(
                this.pipeline,
                this.op,
                this.retryable,
                this.step,
                this.attempt,
                this.previous,
                this.started,
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

/// The lean path: the retry loop of [`Pipeline::retry_loop`] for bare attempts with no
/// probe, no deadline and no guard, as a state machine.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn poll_lean<C, T, E, F, R, Fut>(
    pipeline: &Pipeline<C>,
    op: &mut Option<F>,
    retryable: &mut Option<R>,
    mut step: Pin<&mut Step<Fut>>,
    attempt: &mut u32,
    previous: &mut Option<Duration>,
    started: &mut Option<Duration>,
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
                    return Poll::Ready(finish(result, 1));
                }
                match lean_retry(pipeline, retryable, *attempt, *previous, *started, result) {
                    Ok(delay) => {
                        if delay.is_zero() {
                            step.set(Step::Yield);
                        } else {
                            step.set(Step::Sleep {
                                sleep: tokio::time::sleep(delay.min(HORIZON)),
                            });
                        }
                        *previous = Some(delay);
                        *attempt += 1;
                        continue;
                    }
                    Err(end) => return Poll::Ready(end),
                }
            }
            StepProj::Yield => {
                let coop = ready!(tokio::task::coop::poll_proceed(cx));
                coop.made_progress();
            }
            StepProj::Sleep { sleep } => ready!(sleep.poll(cx)),
            StepProj::Idle | StepProj::Phased => unreachable!("not a lean call"),
        }
        let Some(op) = op.as_mut() else {
            unreachable!("a lean call keeps its operation")
        };
        // The attempt number is the one thing the engine's own adapters read (the tower
        // adapter sends the last attempt its original request).
        let ctx = Context {
            attempt: *attempt,
            ..Context::bare()
        };
        step.set(Step::Attempt { fut: op(&ctx) });
    }
}
/// After a failed lean attempt: the delay before the next one, or the call's result.
#[inline(never)]
fn lean_retry<C, T, E, R>(
    pipeline: &Pipeline<C>,
    retryable: &Option<R>,
    attempt: u32,
    previous: Option<Duration>,
    started: Option<Duration>,
    result: Attempt<T, E>,
) -> Result<Duration, Result<T, Error<E>>>
where
    C: Classify<T, E> + Send + Sync + 'static,
    R: Fn() -> bool,
{
    if !retryable.as_ref().is_none_or(|r| r()) {
        return Err(finish(result, attempt));
    }
    let inner = &*pipeline.inner;
    match pipeline.next(
        &BARE,
        attempt,
        previous,
        &result,
        elapsed_since(&inner.clock, started),
        None,
    ) {
        Next::Stop => Err(finish(result, attempt)),
        Next::OutOfBudget(cost) => Err(out_of_budget(result, attempt, cost)),
        Next::Wait(delay) => Ok(delay),
    }
}
