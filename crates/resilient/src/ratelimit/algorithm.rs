//! The two seams: [`Algorithm`], a pure state transition over one packed `u64`, and
//! [`Limiter`], a stateful limiter; [`AtomicLimiter`] joins them with a lock-free CAS loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::decision::{CostError, Decision, Nanos, Policy, Rate, nanos};
use super::sync::{AtomicU64, Ordering};
use crate::engine::error::ConfigError;

/// How states kept under an algorithm's old configuration carry over to a new one: what
/// [`Algorithm::set_rate`] returns, applied by the owner of the states to each of them
/// ([`AtomicLimiter::set_rate`], [`KeyedLimiter::set_rate`](super::KeyedLimiter::set_rate)).
///
/// ```
/// use resilient::ratelimit::Rescale;
/// // A debt (a GCRA TAT past `at`) of 2 s at 100 ms per unit becomes 20 s at 1 s per
/// // unit, but never longer than the new capacity (here 10 s) or the old debt.
/// let at = 86_400_000_000_000;
/// let r = Rescale::debt(at, 1_000_000_000, 100_000_000, 10_000_000_000);
/// assert_eq!(r.apply(at + 2_000_000_000), at + 10_000_000_000);
/// assert_eq!(r.apply(at - 5), at - 5); // no debt: unchanged
/// assert!(Rescale::NONE.is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rescale {
    at: Nanos,
    num: u64,
    den: u64,
    bound: Nanos,
}

impl Rescale {
    /// States carry over unchanged.
    pub const NONE: Rescale = Rescale {
        at: 0,
        num: 1,
        den: 1,
        bound: 0,
    };

    /// A state that is a time (a GCRA TAT): the debt `state - at` (if any) is scaled by
    /// `num / den`, but never made longer than the longer of itself and `bound`.
    pub fn debt(at: Nanos, num: u64, den: u64, bound: Nanos) -> Self {
        Self {
            at,
            num,
            den: den.max(1),
            bound,
        }
    }

    /// Whether every state carries over unchanged.
    pub fn is_none(&self) -> bool {
        self.num == self.den
    }

    /// The state under the new configuration.
    pub fn apply(&self, state: u64) -> u64 {
        if self.is_none() || state <= self.at {
            return state;
        }
        let debt = state - self.at;
        let scaled = u128::from(debt) * u128::from(self.num) / u128::from(self.den);
        let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
        self.at.saturating_add(scaled.min(debt.max(self.bound)))
    }
}

/// The error of a limiter or algorithm without runtime rate changes.
pub(crate) fn no_set_rate(field: &'static str) -> ConfigError {
    ConfigError::new(field, "cannot change the rate at runtime")
}

/// A rate-limiting algorithm as a pure function of `(state, now, cost)`.
///
/// The whole per-key state is one `u64` (`0` is a fresh, full limiter), so the same
/// transition runs under a compare-and-swap loop in memory ([`AtomicLimiter`]), per key in a
/// [`KeyedLimiter`](super::KeyedLimiter), or as a Redis script that mirrors it. The
/// configuration (`&self`) is read with relaxed atomics, so rates can change at runtime.
///
/// ```
/// use resilient::ratelimit::{Algorithm, Gcra, Rate};
/// let gcra = Gcra::new(Rate::per_second(2)).unwrap();
/// let (s1, d1) = gcra.step(0, 0, 2);
/// assert!(d1.allowed && d1.remaining == 0);
/// let (s2, d2) = gcra.step(s1, 0, 1);
/// assert!(!d2.allowed && s2 == s1); // a denial leaves the state untouched
/// ```
pub trait Algorithm: Send + Sync + fmt::Debug + 'static {
    /// Decides a request of `cost` units at `now` (nanoseconds). Returns the next state
    /// (equal to `state` when denied) and the decision. `cost` must be at most
    /// [`Algorithm::max_cost`]. Both come from one reading of the configuration, so they
    /// agree even while the rate changes (the decision is allowed exactly when it takes
    /// units): the limiters' compare-and-swap loops rely on it.
    fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision);

    /// The admission alone: `Ok(next_state)`, or `Err(retry_after)` in nanoseconds. Same
    /// outcome as [`Algorithm::step`] without computing the rest of the decision (the
    /// fast path behind [`Limiter::admit`]).
    #[inline]
    fn admit(&self, state: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        let (next, d) = self.step(state, now, cost);
        if d.allowed {
            Ok(next)
        } else {
            Err(nanos(d.retry_after))
        }
    }

    /// [`Algorithm::admit`] for any cost: one above [`Algorithm::max_cost`] is never
    /// admitted (`Err(u64::MAX)`). Algorithms whose configuration can change override it to
    /// read that configuration once for both the check and the admission.
    #[inline]
    fn admit_any(&self, state: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
        if cost > self.max_cost() {
            return Err(u64::MAX);
        }
        self.admit(state, now, cost)
    }

    /// Gives `cost` units taken at about `now` back, whatever was admitted since (blind).
    /// The limiters no longer use it to roll back: see [`Algorithm::undo`], which gives
    /// back only what no later admission depends on.
    fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64;

    /// Undoes one admission or reservation of `cost` that replaced the state `before` with
    /// `after`, for a request that will not run (a quota rolled back, a cancelled waiter):
    /// returns the state to store in place of `state` (the current one), or `None` to
    /// give nothing back.
    ///
    /// It may only give back what no later admission depends on. A reservation holds a
    /// place in a queue (a GCRA slot in the future): moving the queue's end back while
    /// reservations made after it keep their places would hand their slots out a second
    /// time. The default therefore gives back only while the state is still `after` (the
    /// undone request is the last one): it restores `before`, exactly as if the request
    /// had never come; otherwise nothing. Algorithms whose units are interchangeable
    /// within a window (token bucket, fixed window, sliding counter: they never reserve)
    /// give back while the window or period that counted them is current.
    ///
    /// ```
    /// use resilient::ratelimit::{Algorithm, Gcra, Rate};
    /// let gcra = Gcra::new(Rate::per_second(10)).unwrap();
    /// let (a, _) = gcra.step(0, 0, 1);
    /// assert_eq!(gcra.undo(a, 0, a, 0, 1), Some(0)); // the last admission: undone
    /// let (b, _) = gcra.step(a, 0, 1);
    /// assert_eq!(gcra.undo(b, 0, a, 0, 1), None); // another came after it: kept
    /// ```
    fn undo(&self, state: u64, before: u64, after: u64, now: Nanos, cost: u64) -> Option<u64> {
        let _ = (now, cost);
        (state == after).then_some(before)
    }

    /// Takes `cost` units now, even if they only become available within `max_wait`; the
    /// decision's `retry_after` is how long the caller must wait before using them. `None`
    /// when the algorithm cannot reserve future capacity (waiters then poll).
    fn reserve(
        &self,
        state: u64,
        now: Nanos,
        cost: u64,
        max_wait: Nanos,
    ) -> Option<(u64, Decision)> {
        let _ = (state, now, cost, max_wait);
        None
    }

    /// Time until `state` is equivalent to a fresh key (then it can be forgotten).
    fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos;

    /// The largest cost a single request may have.
    fn max_cost(&self) -> u64;

    /// The quota this algorithm enforces.
    fn policy(&self) -> Policy;

    /// Changes the rate and burst (total capacity) at runtime at `now`, which must be the
    /// time of the limiter owning the states (its clock reading); returns how those states
    /// carry over. Call it through the owner, which reads its clock and applies the
    /// [`Rescale`] to its states: [`AtomicLimiter::set_rate`],
    /// [`KeyedLimiter::set_rate`](super::KeyedLimiter::set_rate),
    /// [`RateLimiter::set_rate`](super::RateLimiter::set_rate).
    ///
    /// GCRA sets its rate and burst; a token bucket its refill (`rate`) and capacity
    /// (`burst`); the window algorithms their limit, with `rate.per` equal to their window
    /// and `burst` equal to `rate.count`. The default: a [`ConfigError`].
    fn set_rate(&self, now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
        let _ = (now, rate, burst);
        Err(no_set_rate("rate_limiter.set_rate"))
    }

    /// [`Algorithm::set_rate`], with `carry` applying the [`Rescale`] to the owner's states
    /// before any decision can read the new configuration: a decision racing the change is
    /// then made on the old state under the old configuration (and carried over with it)
    /// or on the carried-over state under the new one, never on the old state under the
    /// new one (whose units the rescale would scale a second time). What
    /// [`AtomicLimiter::set_rate`] uses.
    ///
    /// `carry` runs while the configuration is being written: it must not read this
    /// algorithm's configuration (no decision on it), only apply the `Rescale`. The
    /// default calls [`Algorithm::set_rate`], then `carry` (a decision may fall between);
    /// GCRA, whose states carry over scaled, overrides it.
    ///
    /// ```
    /// use resilient::ratelimit::{Algorithm, Gcra, Rate};
    /// let gcra = Gcra::new(Rate::per_second(10)).unwrap();
    /// let at = 86_400_000_000_000;
    /// let mut tat = at + 1_000_000_000; // 10 units in use
    /// gcra.set_rate_with(at, Rate::per_second(100), 100, &mut |r| tat = r.apply(tat))
    ///     .unwrap();
    /// assert_eq!(tat, at + 100_000_000); // still 10 units, at 10 ms each
    /// ```
    fn set_rate_with(
        &self,
        now: Nanos,
        rate: Rate,
        burst: u64,
        carry: &mut dyn FnMut(Rescale),
    ) -> Result<(), ConfigError> {
        carry(self.set_rate(now, rate, burst)?);
        Ok(())
    }
}

macro_rules! forward_algorithm {
    ($($ptr:ident),*) => {$(
        /// Forwards to the pointee: a shared (`Arc`) configuration can be changed while a
        /// limiter uses it, and boxed algorithms of different types can form one
        /// [`KeyedLimiter::quota`](super::KeyedLimiter::quota).
        impl<A: Algorithm + ?Sized> Algorithm for $ptr<A> {
            #[inline]
            fn step(&self, state: u64, now: Nanos, cost: u64) -> (u64, Decision) {
                (**self).step(state, now, cost)
            }
            #[inline]
            fn admit(&self, state: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
                (**self).admit(state, now, cost)
            }
            #[inline]
            fn admit_any(&self, state: u64, now: Nanos, cost: u64) -> Result<u64, Nanos> {
                (**self).admit_any(state, now, cost)
            }
            fn refund(&self, state: u64, now: Nanos, cost: u64) -> u64 {
                (**self).refund(state, now, cost)
            }
            fn undo(
                &self,
                state: u64,
                before: u64,
                after: u64,
                now: Nanos,
                cost: u64,
            ) -> Option<u64> {
                (**self).undo(state, before, after, now, cost)
            }
            fn reserve(
                &self,
                state: u64,
                now: Nanos,
                cost: u64,
                max_wait: Nanos,
            ) -> Option<(u64, Decision)> {
                (**self).reserve(state, now, cost, max_wait)
            }
            fn time_to_idle(&self, state: u64, now: Nanos) -> Nanos {
                (**self).time_to_idle(state, now)
            }
            fn max_cost(&self) -> u64 {
                (**self).max_cost()
            }
            fn policy(&self) -> Policy {
                (**self).policy()
            }
            fn set_rate(&self, now: Nanos, rate: Rate, burst: u64) -> Result<Rescale, ConfigError> {
                (**self).set_rate(now, rate, burst)
            }
            fn set_rate_with(
                &self,
                now: Nanos,
                rate: Rate,
                burst: u64,
                carry: &mut dyn FnMut(Rescale),
            ) -> Result<(), ConfigError> {
                (**self).set_rate_with(now, rate, burst, carry)
            }
        }
    )*};
}

forward_algorithm!(Box, Arc);

/// What one admission or reservation took from a [`Limiter`], for [`Limiter::undo`] to give
/// it back if the request does not run. Opaque to callers: each limiter records what it
/// needs to recognise whether anything admitted since depends on it (a packed limiter,
/// the states before and after).
///
/// ```
/// use resilient::ratelimit::{Gcra, Limiter, Rate};
/// use std::time::Duration;
/// let l = Gcra::limiter(Rate::per_second(1)).unwrap();
/// let (d, ticket) = l.acquire_with_ticket(Duration::ZERO, 1).unwrap();
/// assert!(d.allowed);
/// l.undo(Duration::ZERO, 1, ticket); // the last admission: given back
/// assert!(l.try_acquire(Duration::ZERO, 1).unwrap().allowed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticket {
    words: [u64; 4],
}

impl Ticket {
    /// A ticket carrying `words` (for implementations of [`Limiter`] outside this crate).
    pub const fn new(words: [u64; 4]) -> Self {
        Self { words }
    }

    /// The words the limiter recorded.
    pub const fn words(&self) -> [u64; 4] {
        self.words
    }

    /// A packed limiter's ticket: the state replaced and the state stored.
    pub(crate) const fn states(before: u64, after: u64) -> Self {
        Self::new([before, after, 0, 0])
    }
}

/// A stateful limiter, as the [`RateLimiter`](super::RateLimiter) guard and quotas use it.
///
/// `now` is the time since the clock's origin (see [`crate::Clock`]). Every algorithm
/// implements it, so they are interchangeable behind `dyn Limiter`:
///
/// ```
/// use resilient::ratelimit::{FixedWindow, Gcra, Limiter, Rate, SlidingWindowLog};
/// use std::time::Duration;
/// let limiters: Vec<Box<dyn Limiter>> = vec![
///     Box::new(Gcra::limiter(Rate::per_second(2)).unwrap()),
///     Box::new(FixedWindow::limiter(2, Duration::from_secs(1)).unwrap()),
///     Box::new(SlidingWindowLog::new(2, Duration::from_secs(1)).unwrap()),
/// ];
/// for l in &limiters {
///     assert!(l.try_acquire(Duration::ZERO, 2).unwrap().allowed);
///     assert!(l.admit(0, 1).is_err());
///     assert_eq!(l.policy().quota, 2);
/// }
/// ```
pub trait Limiter: Send + Sync + fmt::Debug + 'static {
    /// Admits and consumes `cost` units if available now.
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError>;

    /// The fast path: admits and consumes `cost` units at `now` (nanoseconds), or says how
    /// long until they would be admitted (`u64::MAX`: never, the cost exceeds the
    /// capacity). Computes nothing else.
    #[inline]
    fn admit(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        match self.try_acquire(Duration::from_nanos(now), cost) {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => Err(nanos(d.retry_after)),
            Err(_) => Err(u64::MAX),
        }
    }

    /// What [`Limiter::try_acquire`] would decide, without consuming anything.
    fn peek(&self, now: Duration, cost: u64) -> Decision;

    /// Gives back `cost` units taken at about `now`.
    fn refund(&self, now: Duration, cost: u64);

    /// Reserves `cost` units available within `max_wait` (see [`Algorithm::reserve`]);
    /// `None` if this limiter cannot reserve.
    fn reserve(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<Decision, CostError>> {
        let _ = (now, cost, max_wait);
        None
    }

    /// [`Limiter::try_acquire`], also returning the [`Ticket`] [`Limiter::undo`] needs to
    /// give the units back. The default: an empty ticket (its `undo` calls
    /// [`Limiter::refund`]).
    fn acquire_with_ticket(
        &self,
        now: Duration,
        cost: u64,
    ) -> Result<(Decision, Ticket), CostError> {
        self.try_acquire(now, cost).map(|d| (d, Ticket::default()))
    }

    /// [`Limiter::reserve`], also returning the [`Ticket`] [`Limiter::undo`] needs to give
    /// the reservation back (a cancelled waiter). The default: an empty ticket.
    fn reserve_with_ticket(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Decision, Ticket), CostError>> {
        self.reserve(now, cost, max_wait)
            .map(|r| r.map(|d| (d, Ticket::default())))
    }

    /// Gives back what the admission or reservation behind `ticket` took, if no later
    /// admission depends on it (see [`Algorithm::undo`]): a reservation is given back
    /// only while it is still the last one, so waiters queued behind it keep slots that
    /// nobody else is handed. The default calls [`Limiter::refund`], which is only right
    /// for a limiter that does not reserve: one that does must override this.
    fn undo(&self, now: Duration, cost: u64, ticket: Ticket) {
        let _ = ticket;
        self.refund(now, cost);
    }

    /// The largest cost a single request may have.
    fn max_cost(&self) -> u64;

    /// The quota enforced.
    fn policy(&self) -> Policy;

    /// Changes the rate and burst at runtime, keeping state. `now` must be the time of the
    /// clock this limiter is used with (a [`RateLimiter`](super::RateLimiter)'s
    /// [`now`](super::RateLimiter::now)); [`RateLimiter::set_rate`](super::RateLimiter::set_rate)
    /// passes it. See [`Algorithm::set_rate`] for what `rate` and `burst` mean to each
    /// algorithm; a [`Smooth`](super::Smooth) limiter takes `burst` as a bursty limiter's
    /// most stored permits. The default: a [`ConfigError`].
    fn set_rate(&self, now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        let _ = (now, rate, burst);
        Err(no_set_rate("rate_limiter.set_rate"))
    }
}

impl<L: Limiter + ?Sized> Limiter for Arc<L> {
    #[inline]
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError> {
        (**self).try_acquire(now, cost)
    }
    #[inline]
    fn admit(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        (**self).admit(now, cost)
    }
    fn peek(&self, now: Duration, cost: u64) -> Decision {
        (**self).peek(now, cost)
    }
    fn refund(&self, now: Duration, cost: u64) {
        (**self).refund(now, cost)
    }
    fn reserve(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<Decision, CostError>> {
        (**self).reserve(now, cost, max_wait)
    }
    fn acquire_with_ticket(
        &self,
        now: Duration,
        cost: u64,
    ) -> Result<(Decision, Ticket), CostError> {
        (**self).acquire_with_ticket(now, cost)
    }
    fn reserve_with_ticket(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Decision, Ticket), CostError>> {
        (**self).reserve_with_ticket(now, cost, max_wait)
    }
    fn undo(&self, now: Duration, cost: u64, ticket: Ticket) {
        (**self).undo(now, cost, ticket)
    }
    fn max_cost(&self) -> u64 {
        (**self).max_cost()
    }
    fn policy(&self) -> Policy {
        (**self).policy()
    }
    fn set_rate(&self, now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        (**self).set_rate(now, rate, burst)
    }
}

/// The state `next` to carry `state` over to, changed by a nanosecond where the rescale
/// leaves it as it is (a GCRA state with no debt, or a debt the new capacity clamps): the
/// word must change, or a decision computed from it under the old configuration before the
/// carry would still win its compare-and-swap after it, and its units would stay counted
/// at the old rate. Changed, the word makes that decision fail and be made again under the
/// new configuration. A nanosecond of a time state is not a unit.
fn changed(state: u64, next: u64) -> u64 {
    match (next == state, state) {
        (false, _) => next,
        (true, 0) => 1,
        (true, s) => s - 1,
    }
}

/// An [`Algorithm`] with its state in one `AtomicU64`: lock-free, one CAS per admission.
///
/// ```
/// use resilient::ratelimit::{FixedWindow, Limiter};
/// use std::time::Duration;
/// let l = FixedWindow::limiter(2, Duration::from_secs(1)).unwrap();
/// let now = Duration::from_millis(100);
/// assert!(l.try_acquire(now, 1).unwrap().allowed);
/// assert!(l.try_acquire(now, 1).unwrap().allowed);
/// let d = l.try_acquire(now, 1).unwrap();
/// assert!(!d.allowed);
/// assert_eq!(d.retry_after, Duration::from_millis(900));
/// ```
#[derive(Debug)]
pub struct AtomicLimiter<A> {
    state: AtomicU64,
    alg: A,
}

impl<A: Algorithm> AtomicLimiter<A> {
    /// A fresh (full) limiter running `alg`.
    pub fn new(alg: A) -> Self {
        Self {
            state: AtomicU64::new(0),
            alg,
        }
    }

    /// The algorithm (and its runtime-adjustable configuration).
    pub fn algorithm(&self) -> &A {
        &self.alg
    }

    /// The raw packed state (for inspection, or to hand to a distributed store).
    pub fn state(&self) -> u64 {
        self.state.load(Ordering::Relaxed)
    }

    /// Changes the rate and burst at runtime (see [`Algorithm::set_rate`]) and carries the
    /// state over. `now` must be this limiter's time: the reading of the clock its
    /// callers pass to it, e.g. [`RateLimiter::now`](super::RateLimiter::now) when it is
    /// a limit of a [`RateLimiter`](super::RateLimiter) (or use
    /// [`RateLimiter::set_rate`](super::RateLimiter::set_rate), which reads it). A decision
    /// racing the change may be made under either configuration; the state is carried
    /// over before a decision can see the new one (see [`Algorithm::set_rate_with`]), and
    /// one made under the old configuration either lands before the carry (and is carried
    /// over with it) or is made again under the new one: the carry always changes the
    /// state word (by a nanosecond where the rescale leaves it as it is), so a decision
    /// computed from the word it replaced fails its compare-and-swap.
    ///
    /// For GCRA the units in use stay in use: a limiter that had used 3 units still has 3
    /// in use under the new rate (they refill at the new speed); when the rate drops, what
    /// is in use beyond a full new burst is forgiven.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, Limiter, Rate};
    /// use std::time::Duration;
    /// let l = Gcra::limiter(Rate::per_second(10)).unwrap();
    /// let now = Duration::from_secs(86_400); // the limiter's clock reading
    /// l.try_acquire(now, 3).unwrap();
    /// l.set_rate(now, Rate::per_second(100), 100).unwrap();
    /// assert_eq!(l.peek(now, 0).remaining, 97);
    /// ```
    pub fn set_rate(&self, now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        self.alg
            .set_rate_with(nanos(now), rate, burst, &mut |rescale| {
                if !rescale.is_none() {
                    self.update(|s| changed(s, rescale.apply(s)));
                }
            })
    }

    /// Applies `f` to the state atomically (used to rescale state on a rate change).
    pub(crate) fn update(&self, mut f: impl FnMut(u64) -> u64) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some(f(s)));
    }

    /// Decides `cost` at `now` in nanoseconds, consuming it if allowed (no cost check).
    #[inline]
    pub fn check_at(&self, now: Nanos, cost: u64) -> Decision {
        // The next state and the decision come from one step, so from one reading of the
        // configuration: a rate change racing the decision cannot make it report a denial
        // for units it took, or an admission for units it did not.
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, d) = self.alg.step(s, now, cost);
            if !d.allowed || next == s {
                return d;
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return d,
                Err(actual) => s = actual,
            }
        }
    }

    /// The binding decision for `cost` at `now` in nanoseconds: consumed if allowed; a
    /// cost above the capacity is a denial that can never pass (`retry_after`
    /// `Duration::MAX`), reported for the capacity, with nothing consumed. What
    /// [`Limiter::try_acquire`] then [`Limiter::peek`] decide, on one reading.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, Rate};
    /// use std::time::Duration;
    /// let l = Gcra::limiter(Rate::per_second(10)).unwrap();
    /// let d = l.decide_at(0, 4);
    /// assert!(d.allowed);
    /// assert_eq!((d.limit, d.remaining), (10, 6));
    /// let never = l.decide_at(0, 11);
    /// assert!(!never.allowed);
    /// assert_eq!(never.retry_after, Duration::MAX);
    /// assert_eq!(l.decide_at(0, 6).remaining, 0); // nothing was taken by the denial
    /// ```
    #[inline]
    pub fn decide_at(&self, now: Nanos, cost: u64) -> Decision {
        if cost <= self.alg.max_cost() {
            return self.check_at(now, cost);
        }
        self.never_at(now, cost)
    }

    /// [`AtomicLimiter::decide_at`] for a cost above the capacity: what the capacity would
    /// get, denied for ever, nothing consumed.
    #[cold]
    #[inline(never)]
    pub(crate) fn never_at(&self, now: Nanos, cost: u64) -> Decision {
        self.peek_at(now, cost).never()
    }

    /// The state word (for an algorithm's own compare-and-swap loop, see
    /// `AtomicLimiter<Gcra>::decide_now`).
    #[inline]
    pub(crate) fn state_word(&self) -> &AtomicU64 {
        &self.state
    }

    /// [`Limiter::peek`] at `now` in nanoseconds: what `cost` (at most the capacity)
    /// would get, nothing consumed.
    fn peek_at(&self, now: Nanos, cost: u64) -> Decision {
        let cost = cost.min(self.alg.max_cost());
        self.alg
            .step(self.state.load(Ordering::Acquire), now, cost)
            .1
    }

    /// [`AtomicLimiter::check_at`], also returning the states before and after (equal when
    /// nothing was taken).
    #[inline]
    fn check_ticket(&self, now: Nanos, cost: u64) -> (Decision, Ticket) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, d) = self.alg.step(s, now, cost);
            if !d.allowed || next == s {
                return (d, Ticket::states(s, s));
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (d, Ticket::states(s, next)),
                Err(actual) => s = actual,
            }
        }
    }

    /// Gives back what moved the state from `before` to `after`, if no later admission
    /// depends on it ([`Algorithm::undo`]).
    pub(crate) fn undo_states(&self, now: Nanos, cost: u64, before: u64, after: u64) {
        if before == after {
            return;
        }
        let mut s = self.state.load(Ordering::Acquire);
        while let Some(next) = self.alg.undo(s, before, after, now, cost) {
            if next == s {
                return;
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    /// The fast path at `now` nanoseconds: `Ok(())` if admitted (and consumed), else the
    /// nanoseconds until it would be (`u64::MAX`: never, for a cost above the capacity).
    #[inline]
    pub fn admit_at(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = self.alg.admit_any(s, now, cost)?;
            if next == s {
                return Ok(());
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => s = actual,
            }
        }
    }

    fn cost_ok(&self, cost: u64) -> Result<(), CostError> {
        let max = self.alg.max_cost();
        if cost > max {
            Err(CostError { cost, max })
        } else {
            Ok(())
        }
    }
}

impl<A: Algorithm> Limiter for AtomicLimiter<A> {
    #[inline]
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError> {
        self.cost_ok(cost)?;
        Ok(self.check_at(nanos(now), cost))
    }

    #[inline]
    fn admit(&self, now: Nanos, cost: u64) -> Result<(), Nanos> {
        self.admit_at(now, cost)
    }

    fn peek(&self, now: Duration, cost: u64) -> Decision {
        self.peek_at(nanos(now), cost)
    }

    fn refund(&self, now: Duration, cost: u64) {
        let now = nanos(now);
        self.update(|s| self.alg.refund(s, now, cost));
    }

    fn reserve(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<Decision, CostError>> {
        self.reserve_with_ticket(now, cost, max_wait)
            .map(|r| r.map(|(d, _)| d))
    }

    fn acquire_with_ticket(
        &self,
        now: Duration,
        cost: u64,
    ) -> Result<(Decision, Ticket), CostError> {
        self.cost_ok(cost)?;
        Ok(self.check_ticket(nanos(now), cost))
    }

    fn reserve_with_ticket(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Decision, Ticket), CostError>> {
        if let Err(e) = self.cost_ok(cost) {
            return Some(Err(e));
        }
        let (now, max_wait) = (nanos(now), nanos(max_wait));
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, d) = self.alg.reserve(s, now, cost, max_wait)?;
            if !d.allowed || next == s {
                return Some(Ok((d, Ticket::states(s, s))));
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Ok((d, Ticket::states(s, next)))),
                Err(actual) => s = actual,
            }
        }
    }

    fn undo(&self, now: Duration, cost: u64, ticket: Ticket) {
        let [before, after, ..] = ticket.words();
        self.undo_states(nanos(now), cost, before, after);
    }

    fn max_cost(&self) -> u64 {
        self.alg.max_cost()
    }

    fn policy(&self) -> Policy {
        self.alg.policy()
    }

    fn set_rate(&self, now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        AtomicLimiter::set_rate(self, now, rate, burst)
    }
}
