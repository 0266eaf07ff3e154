//! Per-call context: attempt number, operation name, deadline, tags and the call's cost
//! and key for rate limiters, plus the ambient deadline and cancellation that nested
//! pipelines inherit.

use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::clock::deadline_and_nanos;
use crate::engine::telemetry::Probe;
use tokio_util::sync::CancellationToken;

/// What an operation and the guards know about the call in progress.
///
/// ```
/// use resilient::Pipeline;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p = Pipeline::builder().name("users").build().unwrap();
/// let r = p
///     .execute_with(|ctx| {
///         assert_eq!(ctx.operation(), Some("users"));
///         async move { Ok::<_, ()>(ctx.attempt()) }
///     })
///     .await;
/// assert_eq!(r.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) attempt: u32,
    pub(crate) operation: Option<Arc<str>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) tags: Option<Arc<[(String, String)]>>,
    pub(crate) cost: Option<u64>,
    pub(crate) key: Option<u64>,
    /// The call's telemetry, when its pipeline has an observer.
    pub(crate) probe: Option<Arc<Probe>>,
    /// The default clock's reading (nanoseconds, see `engine::clock::deadline_and_nanos`)
    /// that the engine took as it asks the per-call guards to admit the call: a guard on
    /// that clock reads it instead of the clock.
    pub(crate) now: Option<u64>,
}

impl Context {
    /// The context of a first attempt with nothing else known (a `const` [`Context::new`]).
    pub(crate) const fn bare() -> Self {
        Self {
            attempt: 1,
            operation: None,
            deadline: None,
            tags: None,
            cost: None,
            key: None,
            probe: None,
            now: None,
        }
    }

    /// A context for a standalone guard call (attempt 1, no deadline).
    pub fn new() -> Self {
        Self::bare()
    }

    /// This context, charging `cost` units to the rate limiters that read it (see
    /// [`Context::cost`]); for calling a guard by hand. A pipeline call sets it with
    /// [`Call::cost`](crate::Call::cost).
    ///
    /// ```
    /// use resilient::{Acquire, Context, Guard};
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let limiter = RateLimiter::gcra(Rate::per_second(10)).build().unwrap();
    /// let heavy = Context::new().with_cost(7);
    /// assert_eq!(heavy.cost(), Some(7));
    /// assert!(matches!(limiter.acquire(&heavy), Acquire::Ready(Ok(_))));
    /// assert!(matches!(limiter.acquire(&Context::new().with_cost(5)), Acquire::Ready(Err(_))));
    /// ```
    pub fn with_cost(mut self, cost: u64) -> Self {
        self.cost = Some(cost);
        self
    }

    /// This context with `key` as the call's key (see [`Context::key`]); for calling a
    /// guard by hand. A pipeline call sets it with [`Call::key`](crate::Call::key).
    ///
    /// ```
    /// use resilient::Context;
    /// let a = Context::new().with_key(&"ada");
    /// assert_eq!(a.key(), Context::new().with_key(&"ada").key());
    /// assert_ne!(a.key(), Context::new().with_key(&"bob").key());
    /// ```
    pub fn with_key<K: Hash + ?Sized>(mut self, key: &K) -> Self {
        self.key = Some(hash_key(key));
        self
    }

    /// The units this call costs a rate limiter, if the call says (a per-call cost:
    /// [`Call::cost`](crate::Call::cost)). A [`RateLimiter`](crate::RateLimiter)
    /// charges it instead of its configured cost, a keyed limiter instead of 1; other
    /// guards ignore it. Per-attempt limiters charge it for every attempt.
    pub fn cost(&self) -> Option<u64> {
        self.cost
    }

    /// The call's key, if it has one ([`Call::key`](crate::Call::key)): any
    /// `Hash` value (a user id, an API key, an IP address), hashed to 64 bits with a seed
    /// drawn once per process. A keyed limiter in the pipeline limits each key on its own.
    /// Two keys share a limit only if their hashes collide (for a million keys, about one
    /// chance in 37 million that any two do).
    pub fn key(&self) -> Option<u64> {
        self.key
    }

    /// The attempt in progress, 1-based.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The pipeline's operation name, if it has one.
    pub fn operation(&self) -> Option<&str> {
        self.operation.as_deref()
    }

    /// The effective deadline: the tighter of the pipeline's request timeout and any
    /// inherited one and, for the operation itself, of the attempt's operation timeout.
    /// Nested pipelines run by the operation inherit the same deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The value of tag `key`, if set on the pipeline.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .as_deref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A call's key as [`Context::key`] holds it: hashed with one seed per process, so the
/// same key always gives the same `u64` within a process, and keys cannot be chosen to
/// collide from outside.
pub(crate) fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    SEED.get_or_init(RandomState::new).hash_one(key)
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

/// The furthest ahead the engine sets a deadline or a timer: about a hundred years.
///
/// A timeout longer than this never fires and counts as no timeout at all (no deadline in
/// the [`Context`], no timer); a wait longer than this is cut to it, which is as good as
/// forever. Deadline sums then never overflow `Instant`, nor tokio's timer (which adds a
/// little to the instants it is given).
pub(crate) const HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `from + after`, or `None` when `after` is beyond the [`HORIZON`] (or the sum cannot be
/// represented): a deadline that far ahead is no deadline.
pub(crate) fn deadline_after(from: Instant, after: Duration) -> Option<Instant> {
    if after > HORIZON {
        return None;
    }
    from.checked_add(after)
}

/// [`deadline_after`] now: `after` past a reading of the default clock, as one addition
/// to the clock's origin (see [`deadline_and_nanos`]).
#[inline]
pub(crate) fn deadline_from_now(after: Duration) -> Option<Instant> {
    if after > HORIZON {
        return None;
    }
    deadline_and_nanos(Some(after)).0
}

/// `d`, unless it is beyond the [`HORIZON`]: a timeout that never fires is none.
#[inline]
pub(crate) fn within_horizon(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| *d <= HORIZON)
}

/// Deadline and cancellation inherited by nested pipelines running inside a call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ambient {
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<CancellationToken>,
}

// The ambient values of the call whose future this thread is polling: set around each
// poll of a call's body (see [`Ambient::sync_scope`] and [`Scoped`]), as a tokio
// task-local is, but read and written in place (a task-local's accessor is a call through
// a function pointer, made twice a scope). All are empty outside any call.
thread_local! {
    /// The ambient deadline: with nothing to drop, read and written with plain loads and
    /// stores (a thread-local that holds something to drop is read after a check of its
    /// registration state).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The ambient cancellation, which holds a token to drop.
    static CANCEL: Cell<Option<CancellationToken>> = const { Cell::new(None) };
    /// Whether `CANCEL` holds a token: a scope that brings none, in a thread that holds
    /// none, leaves `CANCEL` alone (kept by [`Ambient::swap`], its only writer).
    static CANCELLING: Cell<bool> = const { Cell::new(false) };
    /// Whether `DEADLINE` or `CANCEL` holds a value (kept by [`Ambient::swap`]), for
    /// [`Ambient::active`], which every call asks.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

impl Ambient {
    /// The ambient values of the enclosing call, if any.
    pub(crate) fn current() -> Option<Ambient> {
        if !Self::active() {
            return None;
        }
        let deadline = DEADLINE.get();
        let cancel = if CANCELLING.get() {
            CANCEL
                .try_with(|c| {
                    // (Taken out to be cloned, and put back.)
                    let token = c.take();
                    c.set(token.clone());
                    token
                })
                .ok()
                .flatten()
        } else {
            None
        };
        Some(Ambient { deadline, cancel })
    }

    /// The enclosing call's cancellation, if any.
    pub(crate) fn inherited_cancel() -> Option<CancellationToken> {
        Self::current().and_then(|a| a.cancel)
    }

    /// Whether the current task runs inside a call with a deadline or a cancellation
    /// (without cloning them).
    #[inline]
    pub(crate) fn active() -> bool {
        ACTIVE.get()
    }

    /// Runs `f` with these values as the ambient ones (nested pipelines inherit them),
    /// restoring the enclosing ones after, also when `f` panics.
    #[inline]
    pub(crate) fn sync_scope<R>(mut self, f: impl FnOnce() -> R) -> R {
        self.enter(f)
    }

    /// [`Ambient::sync_scope`], always inlined: for a caller whose poll must stay inline
    /// (see `pipeline::once`), where the compiler would not inline the scope.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn sync_scope_inline<R>(mut self, f: impl FnOnce() -> R) -> R {
        self.enter_inline(f)
    }

    /// A future polled with these values as the ambient ones (see [`Ambient::sync_scope`]).
    pub(crate) fn scope<F: Future>(self, fut: F) -> Scoped<F> {
        Scoped { slot: self, fut }
    }

    /// [`Ambient::sync_scope`] with the values kept in `self` between two scopes: they are
    /// moved in, and back out after.
    #[inline]
    fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.enter_inline(f)
    }

    /// [`Ambient::enter`], always inlined.
    #[inline(always)]
    fn enter_inline<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Moves the enclosing values back (when `f` returns or panics).
        struct Restore<'a>(&'a mut Ambient);
        impl Drop for Restore<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.swap();
            }
        }
        self.swap();
        let _restore = Restore(self);
        f()
    }

    /// Swaps these values with the thread's ambient ones.
    #[inline(always)]
    fn swap(&mut self) {
        ACTIVE.set(self.deadline.is_some() || self.cancel.is_some());
        self.deadline = DEADLINE.replace(self.deadline);
        // (With no token on either side, the swap would move `None` for `None`.)
        if self.cancel.is_some() || CANCELLING.get() {
            self.swap_cancel();
        }
    }

    /// [`Ambient::swap`]'s cancellation, where there is one to move (out of line: most
    /// scopes have none).
    #[inline(never)]
    fn swap_cancel(&mut self) {
        CANCELLING.set(self.cancel.is_some());
        self.cancel = CANCEL.replace(self.cancel.take());
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls see `slot` as the ambient values (see [`Ambient::scope`]).
    pub(crate) struct Scoped<F> {
        slot: Ambient,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let fut = this.fut;
        this.slot.enter(|| fut.poll(cx))
    }
}

/// The deadline inherited from an enclosing pipeline call, if the current task runs inside
/// one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(resilient::inherited_deadline().is_none());
/// # }
/// ```
pub fn inherited_deadline() -> Option<Instant> {
    DEADLINE.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::clock::instant_now;

    #[test]
    fn a_deadline_from_now_is_now_plus_the_timeout_within_the_horizon() {
        // (Should another test switch every clock to tokio's meanwhile, the readings may
        // differ by the fast clock's stated skew, with a minute's drift.)
        let slack = crate::engine::clock::FastClock::MAX_SKEW
            + Duration::from_micros(
                60_000_000 * crate::engine::clock::FastClock::MAX_DRIFT_PPM / 1_000_000,
            );
        for after in [Duration::ZERO, Duration::from_millis(1), HORIZON] {
            let before = instant_now();
            let deadline = deadline_from_now(after).expect("representable");
            let later = instant_now();
            assert!(
                before + after <= deadline + slack && deadline <= later + after + slack,
                "{after:?}"
            );
        }
        // Beyond the horizon (or past what an instant holds) it is none, as
        // `deadline_after`'s.
        for after in [HORIZON + Duration::from_nanos(1), Duration::MAX] {
            assert_eq!(deadline_from_now(after), None);
            assert_eq!(deadline_after(instant_now(), after), None);
        }
    }

    fn at(secs: u64) -> Ambient {
        Ambient {
            deadline: Some(Instant::now() + Duration::from_secs(secs)),
            cancel: None,
        }
    }

    #[test]
    fn scopes_nest_and_restore_the_enclosing_values_also_on_a_panic() {
        assert!(Ambient::current().is_none() && !Ambient::active());
        let (outer, inner) = (at(10), at(5));
        let (d_outer, d_inner) = (outer.deadline, inner.deadline);
        let token = CancellationToken::new();
        let cancelled = Ambient {
            deadline: None,
            cancel: Some(token.clone()),
        };
        outer.sync_scope(|| {
            assert_eq!(inherited_deadline(), d_outer);
            inner.sync_scope(|| assert_eq!(inherited_deadline(), d_inner));
            assert_eq!(inherited_deadline(), d_outer);
            cancelled.sync_scope(|| {
                assert!(Ambient::active());
                assert_eq!(inherited_deadline(), None);
                let a = Ambient::current().unwrap();
                token.cancel();
                assert!(a.cancel.unwrap().is_cancelled());
                // Reading the token leaves it in place.
                assert!(Ambient::inherited_cancel().is_some());
            });
            let panicked = std::panic::catch_unwind(|| {
                at(1).sync_scope(|| panic!("in a scope"));
            });
            assert!(panicked.is_err());
            assert_eq!(inherited_deadline(), d_outer);
        });
        assert!(Ambient::current().is_none() && !Ambient::active());
    }

    #[test]
    fn active_follows_the_innermost_scope_and_comes_back_with_the_enclosing_one() {
        assert!(!Ambient::active());
        let token = CancellationToken::new();
        let cancelled = Ambient {
            deadline: None,
            cancel: Some(token),
        };
        at(10).sync_scope(|| {
            assert!(Ambient::active());
            // A scope with neither a deadline nor a cancellation (a call's body that
            // inherits nothing) is not active, and the enclosing scope is again after it.
            Ambient::default().sync_scope(|| {
                assert!(!Ambient::active());
                cancelled.sync_scope(|| assert!(Ambient::active()));
                assert!(!Ambient::active());
            });
            assert!(Ambient::active());
            let panicked = std::panic::catch_unwind(|| {
                Ambient::default().sync_scope(|| panic!("in a scope"));
            });
            assert!(panicked.is_err());
            assert!(Ambient::active());
        });
        assert!(!Ambient::active());
    }

    #[test]
    fn the_cancellation_is_the_innermost_scopes_and_the_enclosing_one_comes_back() {
        let outer = CancellationToken::new();
        let inner = CancellationToken::new();
        let cancel = |t: &CancellationToken| Ambient {
            deadline: None,
            cancel: Some(t.clone()),
        };
        assert!(Ambient::inherited_cancel().is_none());
        cancel(&outer).sync_scope(|| {
            outer.cancel();
            assert!(Ambient::inherited_cancel().unwrap().is_cancelled());
            // A scope with a deadline alone hides the enclosing cancellation, as a call that
            // does not inherit it.
            at(5).sync_scope(|| {
                assert!(Ambient::inherited_cancel().is_none());
                assert!(inherited_deadline().is_some());
                cancel(&inner).sync_scope(|| {
                    assert!(!Ambient::inherited_cancel().unwrap().is_cancelled());
                });
                assert!(Ambient::inherited_cancel().is_none());
            });
            assert!(Ambient::inherited_cancel().unwrap().is_cancelled());
            assert!(inherited_deadline().is_none());
            let panicked = std::panic::catch_unwind(|| {
                cancel(&inner).sync_scope(|| panic!("in a scope"));
            });
            assert!(panicked.is_err());
            assert!(Ambient::inherited_cancel().unwrap().is_cancelled());
        });
        assert!(Ambient::inherited_cancel().is_none());
        assert!(Ambient::current().is_none());
    }

    #[test]
    fn a_scoped_future_sees_its_values_only_while_polled() {
        let a = at(3);
        let d = a.deadline;
        let mut polls = 0;
        let mut fut = std::pin::pin!(a.scope(std::future::poll_fn(|_| {
            assert_eq!(inherited_deadline(), d);
            polls += 1;
            if polls < 3 {
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        })));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..2 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(inherited_deadline(), None);
        }
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(3));
        assert!(!Ambient::active());
    }
}
