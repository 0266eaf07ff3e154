//! A call that is one bare attempt, or one attempt under one per-call guard, as a future
//! whose type can be named (for the tower adapter's services, whose futures are then not
//! boxed).
//!
//! A pipeline whose calls need nothing but their one attempt (no guard, no retry, no
//! hedge, no request timeout, no observer, the default classifier: at most an operation
//! timeout around the attempt) runs a call made outside any other call's scope as
//! [`Once`]. It does what the engine's lean path does with such a call (see `run.rs`:
//! `plain_first` and `timed_first`), and keeps no reference to the pipeline.
//!
//! A pipeline whose only strategy is one bulkhead, one breaker or one rejecting rate limiter
//! of this crate runs such a call as [`Guarded`]: the guard's admission, the attempt, and
//! the guard's record of the outcome, as the lean path runs them (`admit_first`, `begin`,
//! `settle`).

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::run::{BARE, operation_deadline};
use super::{InPlace, Pipeline};
use crate::engine::context::{Ambient, within_horizon};
use crate::engine::error::{Error, TimeoutScope};
use crate::engine::guard::{Acquire, Guard, unrecorded_outcome};
use crate::engine::outcome::{AllErrors, Classify, Outcome};

/// What a call that is one bare attempt needs of its pipeline (see
/// [`Pipeline::in_place`]): the attempt's operation timeout, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Single {
    limit: Limit,
}

/// How a call of a pipeline's tower service runs in place (see [`Pipeline::in_place`]).
#[derive(Debug)]
pub(crate) enum InPlaceCall {
    /// As one bare attempt ([`Once`]).
    Once(Single),
    /// As one attempt under the pipeline's one per-call guard ([`Guarded`]).
    Guarded(OneGuard),
}

impl<C> Pipeline<C> {
    /// How a call made now runs in place, if it can: a call with nothing of the caller's
    /// but its operation (`lean`, see `CallSeed::lean`), made outside any other call's scope
    /// (it inherits no deadline or cancellation), of a pipeline with the default classifier
    /// ([`AllErrors`]: it has no recovery to run on a failure, such as a fallback chain, and
    /// no effect of its own; any other classifier is asked as the engine asks it, so its
    /// calls take the engine's path) and either
    /// - no strategy but at most an operation timeout (no guard, retry, hedge, request
    ///   timeout or observer): one bare attempt ([`Once`]);
    /// - or one per-call guard alone, a bulkhead, a breaker or a rate limiter that rejects
    ///   rather than waits, of this crate: such a guard hands out its own permit (or none),
    ///   and waits only in a queue that a call leaves as it drops the wait (a call it
    ///   queues goes on in the engine: see [`Guarded`]).
    #[inline]
    pub(crate) fn in_place(&self, lean: bool) -> Option<InPlaceCall>
    where
        C: 'static,
    {
        let inner = &*self.inner;
        // (The classifier's check is decided when this is compiled.)
        if TypeId::of::<C>() != TypeId::of::<AllErrors>()
            || inner.in_place == InPlace::No
            || !lean
            || Ambient::active()
        {
            return None;
        }
        if inner.in_place == InPlace::Bare {
            return Some(InPlaceCall::Once(Single {
                limit: Limit::new(inner.timeouts.operation),
            }));
        }
        let pipeline: &dyn Any = self;
        pipeline
            .downcast_ref::<Pipeline<AllErrors>>()
            .map(|p| InPlaceCall::Guarded(OneGuard(p.clone())))
    }
}

impl Single {
    /// The call whose attempt is `attempt`.
    #[inline]
    pub(crate) fn run<F>(self, attempt: F) -> Once<F> {
        Once {
            limit: self.limit,
            attempt: Some(attempt),
            sleep: None,
        }
    }
}

/// A [`Once`]'s operation timeout, and whether its deadline is set, in one word (the
/// future is moved where it is awaited: the smaller, the cheaper): the timeout in
/// nanoseconds (it is within the horizon, below 2^62), with the top bit set until the
/// first poll; all bits set without a timeout (or with a deadline that cannot be
/// represented).
#[derive(Debug, Clone, Copy)]
struct Limit(u64);

/// What a [`Once`]'s poll does about its deadline.
enum Deadline {
    /// None to keep.
    Untimed,
    /// The first poll of a timed call: the deadline is set now.
    First(Duration),
    /// Set at the first poll (the timer holds it).
    Set(Duration),
}

impl Limit {
    const UNTIMED: u64 = u64::MAX;
    const UNSET: u64 = 1 << 63;

    /// A pipeline's operation timeout (none beyond the horizon), its deadline not yet set.
    #[inline]
    fn new(operation: Option<Duration>) -> Self {
        match within_horizon(operation) {
            Some(d) => Limit(Self::UNSET | d.as_nanos() as u64),
            None => Limit(Self::UNTIMED),
        }
    }

    /// What this poll does, marking the deadline set.
    #[inline(always)]
    fn poll(&mut self) -> Deadline {
        match self.0 {
            Self::UNTIMED => Deadline::Untimed,
            n if n & Self::UNSET != 0 => {
                self.0 = n & !Self::UNSET;
                Deadline::First(Duration::from_nanos(self.0))
            }
            n => Deadline::Set(Duration::from_nanos(n)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call that is one bare attempt (see [`Pipeline::in_place`]). Under an
    /// operation timeout, the attempt is polled in its deadline's scope (nested pipelines
    /// inherit it), from the deadline set at its first poll; a timer is armed at its first
    /// `Pending`, and when it fires the attempt is dropped at once and the call ends with
    /// [`Error::Timeout`] of [`TimeoutScope::Operation`]. The attempt's own error ends the
    /// call as [`Error::Inner`].
    pub(crate) struct Once<F> {
        limit: Limit,
        #[pin]
        attempt: Option<F>,
        // The timer, armed at the attempt's first `Pending` (the first poll's), at the
        // deadline set then. Boxed: a call answered at its first poll (ready, failed or
        // in-memory) allocates nothing, and its future stays a few words, cheap to move
        // (a timer is some 100 bytes; a pending call pays one small allocation for it).
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> Future for Once<F> {
    type Output = Result<T, Error<E>>;

    // Always inline, with every answer built here (the timer is armed and polled out of
    // line): an out-of-line poll returns its answer through memory, which the awaiting
    // code copies at once.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let timed = match this.limit.poll() {
            Deadline::Untimed => None,
            // The deadline is set at the first poll, as the engine sets it (a deadline
            // that cannot be represented leaves the attempt untimed, as there).
            Deadline::First(limit) => match operation_deadline(Some(limit)) {
                Some(timed) => Some(timed),
                None => {
                    *this.limit = Limit(Limit::UNTIMED);
                    None
                }
            },
            Deadline::Set(limit) => this.sleep.as_ref().map(|sleep| (limit, sleep.deadline())),
        };
        let Some(attempt) = this.attempt.as_mut().as_pin_mut() else {
            panic!("`Once` polled after it completed")
        };
        let polled = match timed {
            Some((_, due)) => Ambient {
                deadline: Some(due),
                cancel: None,
            }
            .sync_scope_inline(|| attempt.poll(cx)),
            None => attempt.poll(cx),
        };
        if let Poll::Ready(r) = polled {
            this.attempt.set(None);
            return Poll::Ready(r.map_err(Error::Inner));
        }
        let Some((limit, due)) = timed else {
            return Poll::Pending;
        };
        ready!(fired(this.sleep, due, cx));
        // The attempt that overran goes at once, as the engine's does.
        this.attempt.set(None);
        Poll::Ready(Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            elapsed: limit,
        }))
    }
}

/// Whether the timer of a pending attempt due at `due` has fired (it is armed at the
/// attempt's first `Pending`).
#[inline(never)]
fn fired(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    due: Instant,
    cx: &mut std::task::Context<'_>,
) -> Poll<()> {
    sleep
        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)))
        .as_mut()
        .poll(cx)
}

/// What a call under one per-call guard needs of its pipeline (see
/// [`Pipeline::in_place`]): the pipeline, for its guard and its clock.
#[derive(Debug)]
pub(crate) struct OneGuard(Pipeline<AllErrors>);

impl OneGuard {
    /// The call whose attempt is `attempt`.
    #[inline]
    pub(crate) fn run<F>(self, attempt: F) -> Guarded<F> {
        Guarded {
            attempt: Some(attempt),
            hold: Hold {
                pipeline: self.0,
                held: Held::Unasked,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A call that is one attempt under its pipeline's one per-call guard (see
    /// [`Pipeline::in_place`]). At its first poll the guard is asked, as the engine asks
    /// it: a rejection ends the call; a permit is held (as its token) while the attempt
    /// runs, and records the call's outcome (and duration, when the guard uses it) when
    /// the attempt ends, after the attempt's future is dropped. A call dropped before
    /// that gives its permit back unrecorded, as a failure while its thread panics.
    ///
    /// A guard that queues the call (a bulkhead with a queue, all slots taken): the wait
    /// borrows the pipeline this future holds, so the call leaves the queue at once and
    /// [`Guarded::poll_call`] answers `None`: the caller runs the call on the engine,
    /// whose call joins the queue again.
    pub(crate) struct Guarded<F> {
        // First: the attempt's future is dropped before the permit is given back.
        #[pin]
        attempt: Option<F>,
        hold: Hold,
    }
}

/// A [`Guarded`] call's pipeline and permit.
#[derive(Debug)]
struct Hold {
    pipeline: Pipeline<AllErrors>,
    held: Held,
}

/// Where a [`Guarded`] call is with its guard.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// Not asked yet.
    Unasked,
    /// Holding the permit of this token; `admitted`: the clock's reading at the
    /// admission, when the guard uses durations.
    Permit {
        token: u64,
        admitted: Option<Duration>,
    },
    /// Nothing to give back: a permit that holds nothing, one recorded, a rejection, or
    /// a call gone on in the engine.
    Nothing,
}

impl Hold {
    /// The pipeline's one per-call guard.
    #[inline(always)]
    fn guard(&self) -> &dyn Guard {
        &*self.pipeline.inner.call_guards[0]
    }

    /// The call's end: the permit records `outcome`, as the lean path's `settle` does.
    #[inline]
    fn record(&mut self, outcome: Outcome) {
        if let Held::Permit { token, admitted } = std::mem::replace(&mut self.held, Held::Nothing) {
            let took = admitted.map_or(Duration::ZERO, |admitted| {
                self.pipeline.inner.clock.now().saturating_sub(admitted)
            });
            self.guard().on_release(token, Some((outcome, took)));
        }
    }
}

impl Drop for Hold {
    /// A permit dropped unrecorded, as the engine's [`Permit`](crate::Permit) is.
    fn drop(&mut self) {
        if let Held::Permit { token, .. } = self.held {
            self.guard().on_release(token, unrecorded_outcome());
        }
    }
}

impl<F> Guarded<F> {
    /// The call's pipeline (for a call that goes on in the engine).
    #[inline]
    pub(crate) fn pipeline(&self) -> &Pipeline<AllErrors> {
        &self.hold.pipeline
    }

    /// The call's attempt, not started when the call goes on in the engine.
    #[inline]
    pub(crate) fn attempt(self: Pin<&mut Self>) -> Pin<&mut Option<F>> {
        self.project().attempt
    }
}

impl<T, E, F: Future<Output = Result<T, E>>> Guarded<F> {
    /// Polls the call: its result, or `None` when the guard queued it (the caller then
    /// runs it on the engine: see [`Guarded`]).
    #[inline(always)]
    pub(crate) fn poll_call(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<T, Error<E>>>> {
        let mut this = self.project();
        if let Held::Unasked = this.hold.held
            && let Some(answer) = admit(this.hold)
        {
            return Poll::Ready(answer);
        }
        let Some(attempt) = this.attempt.as_mut().as_pin_mut() else {
            panic!("`Guarded` polled after it completed")
        };
        let r = ready!(attempt.poll(cx));
        // The attempt's future goes before the permit records the outcome, as the
        // engine's does.
        this.attempt.set(None);
        this.hold.record(AllErrors.classify(&r));
        Poll::Ready(Some(r.map_err(Error::Inner)))
    }
}

/// A [`Guarded`] call's admission by its guard, at its first poll: `None` when the guard
/// admits it (its permit held), the call's answer when it rejects it, and `Some(None)`
/// when it queues it (the wait dropped: the call goes on in the engine). Inline, with the
/// guard's answer read where the guard wrote it (a copy of it, loaded wider than the
/// guard's stores, would stall).
#[inline(always)]
fn admit<T, E>(hold: &mut Hold) -> Option<Option<Result<T, Error<E>>>> {
    hold.held = Held::Nothing;
    let inner = &*hold.pipeline.inner;
    let guard = &*inner.call_guards[0];
    let acquired = guard.acquire(&BARE);
    match acquired {
        Acquire::Ready(Ok(ref permit)) => {
            // This crate's bulkheads and breakers hand out their own permits (or none),
            // its limiters none (a vtable emitted twice only makes the two halves of the
            // pointers differ: see `Permit::token_at`).
            match permit.token_at(guard) {
                Some(token) => {
                    std::mem::forget(acquired);
                    if let Some(token) = token {
                        hold.held = Held::Permit {
                            token,
                            admitted: inner.time_calls.then(|| inner.clock.now()),
                        };
                    }
                    None
                }
                None => {
                    // (Not one of its own: given back, and the call goes on in the
                    // engine, which holds any permit.)
                    drop(acquired);
                    Some(None)
                }
            }
        }
        Acquire::Ready(Err(rejection)) => Some(Some(Err(rejection.into()))),
        Acquire::Wait(wait) => {
            drop(wait);
            Some(None)
        }
    }
}
