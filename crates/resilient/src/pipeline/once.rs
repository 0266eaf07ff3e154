//! A call that is one bare attempt, as a future whose type can be named (for the tower
//! adapter's services, whose futures are then not boxed).
//!
//! A pipeline whose calls need nothing but their one attempt (no guard, no retry, no
//! hedge, no request timeout, no observer, the default classifier: at most an operation
//! timeout around the attempt) runs a call made outside any other call's scope as
//! [`Once`]. It does what the engine's lean path does with such a call (see `run.rs`:
//! `plain_first` and `timed_first`), and keeps no reference to the pipeline.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::Pipeline;
use super::run::operation_deadline;
use crate::engine::context::{Ambient, within_horizon};
use crate::engine::error::{Error, TimeoutScope};
use crate::engine::outcome::AllErrors;

/// What a call that is one bare attempt needs of its pipeline (see
/// [`Pipeline::single_attempt`]): the attempt's operation timeout, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Single {
    limit: Limit,
}

impl<C> Pipeline<C> {
    /// How a call made now runs as one bare attempt ([`Once`]), if it is one: a call with
    /// nothing of the caller's but its operation (`lean`, see `CallSeed::lean`), made
    /// outside any other call's scope (it inherits no deadline or cancellation), of a
    /// pipeline with no guard, no retry, no hedge, no request timeout and no observer, and
    /// with the default classifier ([`AllErrors`]: it has no recovery to run on a failure,
    /// such as a fallback chain, and no effect of its own; any other classifier is asked
    /// as the engine asks it, so its calls take the engine's path).
    #[inline]
    pub(crate) fn single_attempt(&self, lean: bool) -> Option<Single>
    where
        C: 'static,
    {
        let inner = &*self.inner;
        let bare = TypeId::of::<C>() == TypeId::of::<AllErrors>()
            && inner.retry.is_none()
            && inner.hedge.is_none()
            && (inner.plain || inner.plain_timed)
            && lean
            && !Ambient::active();
        bare.then(|| Single {
            limit: Limit::new(inner.timeouts.operation),
        })
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
    /// A call that is one bare attempt (see [`Pipeline::single_attempt`]). Under an
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
