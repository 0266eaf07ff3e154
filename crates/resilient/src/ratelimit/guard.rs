//! [`RateLimiter`]: one or more limits (a quota) behind the [`Guard`] seam, rejecting at once
//! or waiting up to a maximum, plus builder and tower integration.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use super::algorithm::{AtomicLimiter, Limiter, Ticket};
use super::decision::{CostError, Decision, PollPause, Rate, wait};
use super::fixed_window::FixedWindow;
use super::gcra::Gcra;
use super::quota;
use super::sliding_counter::SlidingWindowCounter;
use super::sliding_log::SlidingWindowLog;
use super::token_bucket::TokenBucket;
use crate::engine::clock::{FastClock, SharedClock, Time};
use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard, Invalid, Permit, Rejection};
use crate::engine::outcome::Outcome;

/// The tickets of a reservation across a limiter's limits (to give it back).
type Tickets = SmallVec<[Ticket; 2]>;

/// What happens when a limit has no capacity.
///
/// ```
/// use resilient::ratelimit::{Mode, Rate, RateLimiter};
/// use std::time::Duration;
/// let waiting = RateLimiter::gcra(Rate::per_second(10))
///     .mode(Mode::Wait(Duration::from_millis(250)))
///     .build()
///     .unwrap();
/// # let _ = waiting;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reject at once with [`crate::Error::RateLimited`] and its `retry_after`.
    Reject,
    /// Wait up to this long for capacity (never past the call's deadline), then reject.
    /// Limiters that can reserve future capacity (GCRA, smooth) take a reservation and the
    /// caller sleeps until it is due; a cancelled waiter gives its reservation back if no
    /// later reservation depends on it (see [`Algorithm::undo`](super::Algorithm::undo)). The
    /// others poll at their `retry_after` and hold nothing while waiting.
    Wait(Duration),
}

/// The decisions of every limit of a quota for one request.
///
/// ```
/// use resilient::ratelimit::{Gcra, Rate, RateLimiter};
/// let l = RateLimiter::builder()
///     .limit(Gcra::limiter(Rate::per_second(10)).unwrap())
///     .limit(Gcra::limiter(Rate::per_day(10_000)).unwrap())
///     .build()
///     .unwrap();
/// let v = l.check_quota(1).unwrap();
/// assert!(v.allowed);
/// assert_eq!(v.decisions[0].remaining, 9);
/// assert_eq!(v.decisions[1].remaining, 9_999);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether every limit admitted the request (only then is anything consumed).
    pub allowed: bool,
    /// One decision per limit, in the order the limits were added.
    pub decisions: SmallVec<[Decision; 2]>,
}

impl Verdict {
    /// The decision that matters most: when denied, the denial with the longest
    /// `retry_after`; when allowed, the limit with the fewest units remaining.
    pub fn binding(&self) -> Decision {
        let pick = if self.allowed {
            self.decisions.iter().min_by_key(|d| d.remaining)
        } else {
            self.decisions
                .iter()
                .filter(|d| !d.allowed)
                .max_by_key(|d| d.retry_after)
        };
        *pick.expect("a rate limiter has at least one limit")
    }
}

/// A rate-limiting guard over one or more limits.
///
/// With several limits (a quota such as 10/s *and* 10,000/day) a request is admitted only if
/// every limit admits it, and then consumed from all; if any refuses, none is consumed.
/// Clones share state.
///
/// ```
/// use resilient::{Error, Pipeline};
/// use resilient::ratelimit::{Rate, RateLimiter};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = RateLimiter::gcra(Rate::per_second(1)).build().unwrap();
/// let pipeline = Pipeline::builder().rate_limit(limiter).build().unwrap();
/// let first: Result<u8, Error<()>> = pipeline.execute(|| async { Ok(1) }).await;
/// assert!(first.is_ok());
/// let second: Result<u8, Error<()>> = pipeline.execute(|| async { Ok(2) }).await;
/// assert!(matches!(second, Err(Error::RateLimited { retry_after: Some(_), .. })));
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    limits: SmallVec<[Box<dyn Limiter>; 2]>,
    /// The one limit, when it is a GCRA (see [`RateLimiterBuilder::limit`]): the same
    /// limiter as `limits[0]`, admitted without a call through `dyn Limiter`.
    gcra: Option<Arc<AtomicLimiter<Gcra>>>,
    clock: Time,
    cost: u64,
    mode: Mode,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.inner.limits)
            .field("cost", &self.inner.cost)
            .field("mode", &self.inner.mode)
            .finish()
    }
}

/// Configures a [`RateLimiter`].
pub struct RateLimiterBuilder {
    limits: SmallVec<[Box<dyn Limiter>; 2]>,
    /// The last GCRA limit added, shared with `limits` (kept by `build` only when it is
    /// the one limit).
    gcra: Option<Arc<AtomicLimiter<Gcra>>>,
    clock: Time,
    cost: u64,
    mode: Mode,
    error: Option<ConfigError>,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("limits", &self.limits)
            .field("cost", &self.cost)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Starts a builder with no limits.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            limits: SmallVec::new(),
            gcra: None,
            clock: Time::Fast(FastClock::new()),
            cost: 1,
            mode: Mode::Reject,
            error: None,
        }
    }

    /// A builder with one GCRA limit of `rate` (burst `rate.count`). Like the other
    /// one-limit shortcuts below, an invalid limit is reported by `build()` (or by the
    /// pipeline's `build()` when the builder is handed to
    /// [`PipelineBuilder::rate_limit`](crate::PipelineBuilder::rate_limit)): one validation
    /// point.
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let limiter = RateLimiter::gcra(Rate::per_second(100)).build().unwrap();
    /// assert!(limiter.check().allowed);
    /// ```
    pub fn gcra(rate: Rate) -> RateLimiterBuilder {
        Self::builder().try_limit(Gcra::limiter(rate))
    }

    /// A builder with one GCRA limit of `rate` and a burst of `burst` units.
    pub fn gcra_with_burst(rate: Rate, burst: u64) -> RateLimiterBuilder {
        Self::builder().try_limit(Gcra::limiter_with_burst(rate, burst))
    }

    /// A builder with one token bucket of `capacity` tokens refilled at `refill`.
    pub fn token_bucket(capacity: u64, refill: Rate) -> RateLimiterBuilder {
        Self::builder().try_limit(TokenBucket::limiter(capacity, refill))
    }

    /// A builder with one fixed window of `limit` requests per `window`.
    pub fn fixed_window(limit: u64, window: Duration) -> RateLimiterBuilder {
        Self::builder().try_limit(FixedWindow::limiter(limit, window))
    }

    /// A builder with one sliding window counter of `limit` requests per `window`.
    pub fn sliding_window_counter(limit: u64, window: Duration) -> RateLimiterBuilder {
        Self::builder().try_limit(SlidingWindowCounter::limiter(limit, window))
    }

    /// A builder with one exact sliding window log of `limit` requests per `window`.
    ///
    /// ```
    /// use resilient::ratelimit::RateLimiter;
    /// use std::time::Duration;
    /// let err = RateLimiter::sliding_window_log(0, Duration::from_secs(1)).build().unwrap_err();
    /// assert!(err.field().contains("limit"), "{err}");
    /// ```
    pub fn sliding_window_log(limit: u64, window: Duration) -> RateLimiterBuilder {
        Self::builder().try_limit(SlidingWindowLog::new(limit, window))
    }

    /// Decides one request of the configured cost now (the binding decision). If a limit's
    /// capacity was cut at runtime below the configured cost, the request can never be
    /// admitted: a denial of that limit with `retry_after` `Duration::MAX`, and nothing
    /// consumed.
    #[inline(always)]
    pub fn check(&self) -> Decision {
        self.decide_cost(self.inner.cost)
    }

    /// The binding decision for `cost` units now; a cost above a limit's capacity (cut at
    /// runtime, or asked for) is a denial that can never pass (`retry_after`
    /// `Duration::MAX`), and nothing is consumed.
    #[inline(always)]
    fn decide_cost(&self, cost: u64) -> Decision {
        let inner = &*self.inner;
        if let Some(gcra) = &inner.gcra {
            // The one limit, decided without a call through `dyn Limiter` or a `Duration`
            // round trip (the same reading: `now()` is this one, in nanoseconds). Inline,
            // so that the decision is built in the caller's registers rather than returned
            // through memory.
            return gcra.decide_now(inner.clock.nanos(), cost);
        }
        self.decide_cost_of_limits(cost)
    }

    /// [`RateLimiter::decide_cost`] for limits other than one GCRA (out of line).
    #[inline(never)]
    fn decide_cost_of_limits(&self, cost: u64) -> Decision {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if let [one] = inner.limits.as_slice() {
            return one
                .try_acquire(now, cost)
                .unwrap_or_else(|_| one.peek(now, cost).never());
        }
        self.decide(now, cost)
            .map(|v| v.binding())
            .unwrap_or_else(|_| {
                let l = inner.limits.iter().find(|l| l.max_cost() < cost);
                l.unwrap_or(&inner.limits[0]).peek(now, cost).never()
            })
    }

    /// The fast path: admits one request of the configured cost now, or returns how long
    /// until it would be admitted (`Duration::MAX`: never, a limit's capacity was cut
    /// below the cost). Computes nothing else (use [`RateLimiter::check`] for the full
    /// decision, e.g. for headers).
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let l = RateLimiter::gcra(Rate::per_second(1)).build().unwrap();
    /// assert!(l.allow().is_ok());
    /// assert!(l.allow().unwrap_err() > std::time::Duration::ZERO);
    /// ```
    #[inline]
    pub fn allow(&self) -> Result<(), Duration> {
        self.allow_n(self.inner.cost)
    }

    /// [`RateLimiter::allow`] for a request of `cost` units: admits it now, or returns
    /// how long until it would be admitted (`Duration::MAX`: never, the cost exceeds a
    /// limit's capacity). Nothing is consumed when it is refused. A guard's call charges
    /// this way when its [`Context`] carries a cost ([`Context::cost`]).
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use std::time::Duration;
    /// let l = RateLimiter::gcra(Rate::per_second(10)).build().unwrap();
    /// assert!(l.allow_n(7).is_ok());
    /// assert!(l.allow_n(5).is_err()); // 3 units left
    /// assert!(l.allow_n(3).is_ok());
    /// assert_eq!(l.allow_n(11).unwrap_err(), Duration::MAX);
    /// ```
    #[inline(always)]
    pub fn allow_n(&self, cost: u64) -> Result<(), Duration> {
        self.allow_n_at(cost, None)
    }

    /// [`RateLimiter::allow_n`], on the default clock's reading `now` if the engine has
    /// just taken it (see `Context::now`).
    #[inline(always)]
    fn allow_n_at(&self, cost: u64, now: Option<u64>) -> Result<(), Duration> {
        let inner = &*self.inner;
        if let Some(gcra) = &inner.gcra {
            return gcra.admit_at(inner.clock.nanos_or(now), cost).map_err(wait);
        }
        if let [one] = inner.limits.as_slice() {
            return one.admit(inner.clock.nanos_or(now), cost).map_err(wait);
        }
        self.allow_n_of_many(cost)
    }

    /// [`RateLimiter::allow_n`] with several limits (out of line: the one-limit check stays
    /// small enough to inline).
    #[inline(never)]
    fn allow_n_of_many(&self, cost: u64) -> Result<(), Duration> {
        // (No GCRA fast path here: `allow_n_at` took it.)
        let d = self.decide_cost_of_limits(cost);
        if d.allowed {
            Ok(())
        } else {
            Err(d.retry_after)
        }
    }

    /// Decides a request of `cost` units now (the binding decision).
    pub fn check_n(&self, cost: u64) -> Result<Decision, CostError> {
        let now = self.inner.clock.now();
        if let [one] = self.inner.limits.as_slice() {
            return one.try_acquire(now, cost);
        }
        self.decide(now, cost).map(|v| v.binding())
    }

    /// Decides a request of `cost` units now, reporting every limit.
    pub fn check_quota(&self, cost: u64) -> Result<Verdict, CostError> {
        self.decide(self.inner.clock.now(), cost)
    }

    /// The limits, in the order they were added.
    pub fn limits(&self) -> impl Iterator<Item = &dyn Limiter> {
        self.inner.limits.iter().map(|b| &**b)
    }

    /// This limiter's time: the reading of its clock, the `now` every decision is made at.
    /// Low-level calls that take a `now` on one of its limits (say
    /// [`AtomicLimiter::set_rate`](super::AtomicLimiter::set_rate) on a shared handle)
    /// must be given this, not another clock's reading.
    ///
    /// ```
    /// use resilient::{Clock, ManualClock};
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// clock.set(Duration::from_secs(86_400));
    /// let l = RateLimiter::gcra(Rate::per_second(1)).clock(Arc::new(clock.clone())).build().unwrap();
    /// assert_eq!(l.now(), clock.now());
    /// ```
    pub fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    /// Changes the rate and burst of limit `limit` (in the order added) at runtime, at
    /// this limiter's time, keeping its state (see [`Limiter::set_rate`]: GCRA keeps the
    /// units in use, a token bucket its tokens, a smooth limiter its debt).
    ///
    /// ```
    /// use resilient::ManualClock;
    /// use resilient::ratelimit::{Gcra, Rate, RateLimiter};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// clock.set(Duration::from_secs(86_400));
    /// let l = RateLimiter::builder()
    ///     .limit(Gcra::limiter(Rate::per_second(10)).unwrap())
    ///     .limit(Gcra::limiter(Rate::per_day(10_000)).unwrap())
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// for _ in 0..10 {
    ///     assert!(l.check().allowed);
    /// }
    /// // Down to 1 per second: the 10 units in use now take 10 s to come back.
    /// l.set_rate(0, Rate::per_second(1), 10).unwrap();
    /// let d = l.check();
    /// assert_eq!((d.allowed, d.retry_after), (false, Duration::from_secs(1)));
    /// assert_eq!(l.set_rate(2, Rate::per_second(1), 1).unwrap_err().field(), "rate_limiter.limit");
    /// ```
    pub fn set_rate(&self, limit: usize, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        let limits = &self.inner.limits;
        let l = limits.get(limit).ok_or_else(|| {
            ConfigError::new(
                "rate_limiter.limit",
                format!("no limit {limit} (there are {})", limits.len()),
            )
        })?;
        l.set_rate(self.inner.clock.now(), rate, burst)
    }

    fn decide(&self, now: Duration, cost: u64) -> Result<Verdict, CostError> {
        let limits = &self.inner.limits;
        for l in limits {
            let max = l.max_cost();
            if cost > max {
                return Err(CostError { cost, max });
            }
        }
        quota::all_or_none(
            limits.len(),
            |i| limits[i].acquire_with_ticket(now, cost),
            |i| limits[i].peek(now, cost),
            |i, t| limits[i].undo(now, cost, t),
        )
    }

    /// Takes `cost` units, waiting at most `max_wait` for them: reserves them where every
    /// limit can (the caller then sleeps until its slot, holding it; dropping the future
    /// gives it back), otherwise polls at the limits' `retry_after`.
    fn wait_for(&self, cost: u64, max_wait: Duration) -> Acquire<'_> {
        let clock = &self.inner.clock;
        let now = clock.now();
        match self.reserve(now, cost, max_wait) {
            Some(Ok((wait, _))) if wait.is_zero() => Acquire::Ready(Ok(Permit::none())),
            Some(Ok((wait, tickets))) => {
                let held = Reservation {
                    limiter: self,
                    cost,
                    tickets,
                    armed: true,
                };
                Acquire::Wait(Box::pin(async move {
                    tokio::time::sleep(wait).await;
                    held.keep();
                    Ok(Permit::none())
                }))
            }
            Some(Err(r)) => Acquire::Ready(Err(
                self.rejection_for(cost, r.retry_after().unwrap_or(Duration::MAX))
            )),
            None => {
                let d = self.decide_cost(cost);
                if d.allowed {
                    return Acquire::Ready(Ok(Permit::none()));
                }
                // A request that can never pass (`Duration::MAX`: a limit cut below the
                // cost) is rejected at once, even with an unbounded wait.
                if d.retry_after == Duration::MAX || d.retry_after > max_wait {
                    return Acquire::Ready(Err(self.rejection_for(cost, d.retry_after)));
                }
                // Saturating: `Mode::Wait(Duration::MAX)` waits without a bound.
                let until = now.saturating_add(max_wait);
                Acquire::Wait(Box::pin(async move {
                    let mut d = d;
                    let mut pause = PollPause::new(now, max_wait);
                    let mut at = now;
                    loop {
                        tokio::time::sleep(pause.next(at, d.retry_after)).await;
                        at = clock.now();
                        d = self.decide_cost(cost);
                        if d.allowed {
                            return Ok(Permit::none());
                        }
                        // The limit may have been cut below the cost while it waited.
                        if d.retry_after == Duration::MAX
                            || at.saturating_add(d.retry_after) > until
                            || pause.expired()
                        {
                            return Err(self.rejection_for(cost, d.retry_after));
                        }
                    }
                }))
            }
        }
    }

    /// Waits until `cost` units can be taken, at most `max_wait` (Guava's
    /// `acquire(permits)` is `acquire_n(permits, Duration::MAX)`, its
    /// `tryAcquire(permits, timeout)` is `acquire_n(permits, timeout)`), whatever the
    /// limiter's [`Mode`]. Returns how long it waited (on tokio's timer). A cost that can
    /// never pass (above a limit's capacity) or a wait longer than `max_wait` is rejected
    /// at once with [`Rejection::RateLimited`] and its `retry_after`. Dropping the future
    /// gives back what it reserved.
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let limiter = RateLimiter::gcra_with_burst(Rate::per_second(10), 10).build().unwrap();
    /// assert_eq!(limiter.acquire_n(10, Duration::MAX).await.unwrap(), Duration::ZERO);
    /// // 5 more units are 500 ms away
    /// assert_eq!(limiter.acquire_n(5, Duration::MAX).await.unwrap(), Duration::from_millis(500));
    /// // more than the burst can never pass
    /// assert!(limiter.acquire_n(11, Duration::MAX).await.is_err());
    /// # }
    /// ```
    pub async fn acquire_n(&self, cost: u64, max_wait: Duration) -> Result<Duration, Rejection> {
        let start = tokio::time::Instant::now();
        match self.wait_for(cost, max_wait) {
            Acquire::Ready(r) => r,
            Acquire::Wait(w) => w.await,
        }
        .map(|_| start.elapsed())
    }

    /// The rejection of `cost` units that must wait `after` (`Duration::MAX`: never, so no
    /// `retry_after`), with the binding limit's state for headers (peeked: a rejection
    /// consumes nothing). Only rejections pay for it.
    #[cold]
    fn rejection_for(&self, cost: u64, after: Duration) -> Rejection {
        let now = self.inner.clock.now();
        let info = self
            .inner
            .limits
            .iter()
            .map(|l| (l.peek(now, cost), l.policy()))
            .max_by_key(|(d, _)| d.retry_after)
            .map(|(d, p)| Box::new(d.info(p)));
        Rejection::RateLimited {
            retry_after: (after != Duration::MAX).then_some(after),
            info,
        }
    }

    /// Reserves `cost` on every limit within `max_wait`: `Ok((wait, tickets))` or the
    /// rejection. `None` if some limit cannot reserve.
    fn reserve(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Duration, Tickets), Rejection>> {
        let limits = &self.inner.limits;
        quota::reserve_all(
            limits.len(),
            |i| limits[i].reserve_with_ticket(now, cost, max_wait),
            |i, t| limits[i].undo(now, cost, t),
        )
    }
}

impl RateLimiterBuilder {
    fn fail(mut self, e: ConfigError) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Adds a limit; with several, all must admit (a quota).
    pub fn limit(mut self, limit: impl Limiter) -> Self {
        // A GCRA limit (by value or shared) is kept beside `limits` too: a limiter with it
        // alone admits it without a call through `dyn Limiter`.
        let mut limit = Some(limit);
        let any = &mut limit as &mut dyn Any;
        let gcra = if let Some(gcra) = any.downcast_mut::<Option<AtomicLimiter<Gcra>>>() {
            gcra.take().map(Arc::new)
        } else if let Some(gcra) = any.downcast_mut::<Option<Arc<AtomicLimiter<Gcra>>>>() {
            gcra.take()
        } else {
            None
        };
        if let Some(gcra) = gcra {
            self.limits.push(Box::new(Arc::clone(&gcra)));
            self.gcra = Some(gcra);
        } else if let Some(limit) = limit {
            self.limits.push(Box::new(limit));
        }
        self
    }

    /// Adds a limit that may have failed to build (what the algorithms' constructors
    /// return): its error is reported by [`RateLimiterBuilder::build`], so a limiter has
    /// one validation point.
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter, TokenBucket};
    /// use std::time::Duration;
    /// let limiter = RateLimiter::builder()
    ///     .try_limit(TokenBucket::limiter(10, Rate::per_second(5)))
    ///     .build()
    ///     .unwrap();
    /// assert!(limiter.check().allowed);
    /// ```
    pub fn try_limit(self, limit: Result<impl Limiter, ConfigError>) -> Self {
        match limit {
            Ok(l) => self.limit(l),
            Err(e) => self.fail(e),
        }
    }

    /// The clock (default: a [`FastClock`], read inline; see it for tokio's paused time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Time::Shared(clock);
        self
    }

    /// Goes back to the default clock, a [`FastClock`] read inline (after
    /// [`clock`](Self::clock)).
    pub fn fast_clock(mut self) -> Self {
        self.clock = Time::Fast(FastClock::new());
        self
    }

    /// Units each guarded call costs (default 1).
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// Reject at once or wait (default [`Mode::Reject`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `mode(Mode::Wait(max))`.
    pub fn max_wait(self, max: Duration) -> Self {
        self.mode(Mode::Wait(max))
    }

    /// Validates and builds.
    ///
    /// ```
    /// use resilient::ratelimit::{Rate, RateLimiter};
    /// let e = RateLimiter::gcra(Rate::per_second(5)).cost(6).build().unwrap_err();
    /// assert_eq!(e.field(), "rate_limiter.cost");
    /// let e = RateLimiter::builder().build().unwrap_err();
    /// assert_eq!(e.field(), "rate_limiter.limits");
    /// ```
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.limits.is_empty() {
            return Err(ConfigError::new(
                "rate_limiter.limits",
                "needs at least one limit",
            ));
        }
        if self.cost == 0 {
            return Err(ConfigError::new("rate_limiter.cost", "must be at least 1"));
        }
        for l in &self.limits {
            if self.cost > l.max_cost() {
                return Err(ConfigError::new(
                    "rate_limiter.cost",
                    format!(
                        "must not exceed every limit's capacity ({} > {})",
                        self.cost,
                        l.max_cost()
                    ),
                ));
            }
        }
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                // (Only while it is the one limit.)
                gcra: self.gcra.filter(|_| self.limits.len() == 1),
                limits: self.limits,
                clock: self.clock,
                cost: self.cost,
                mode: self.mode,
            }),
        })
    }
}

/// Gives a reservation back unless the wait completed: each limit's `undo`, which gives
/// back only what no later reservation depends on (while it is still the last one).
struct Reservation<'a> {
    limiter: &'a RateLimiter,
    cost: u64,
    tickets: SmallVec<[Ticket; 2]>,
    armed: bool,
}

impl Reservation<'_> {
    /// The wait completed: the reservation is used, not given back.
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            let inner = &*self.limiter.inner;
            let now = inner.clock.now();
            for (l, t) in inner.limits.iter().zip(&self.tickets).rev() {
                l.undo(now, self.cost, *t);
            }
        }
    }
}

impl Guard for RateLimiter {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "rate_limiter"
    }

    /// Blocking callers never wait: over the limit they get
    /// [`Rejection::RateLimited`] with the time until capacity.
    ///
    /// A call whose [`Context`] carries a cost ([`Context::cost`]) is charged that cost
    /// instead of the configured one.
    fn acquire_now(&self, ctx: &Context) -> Result<Permit<'_>, Rejection> {
        let cost = ctx.cost().unwrap_or(self.inner.cost);
        self.allow_n(cost)
            .map(|()| Permit::none())
            .map_err(|after| self.rejection_for(cost, after))
    }

    /// A call whose [`Context`] carries a cost ([`Context::cost`]) is charged that cost
    /// instead of the configured one.
    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        let cost = ctx.cost().unwrap_or(self.inner.cost);
        let max_wait = match self.inner.mode {
            Mode::Reject => {
                return Acquire::Ready(
                    self.allow_n_at(cost, ctx.now)
                        .map(|()| Permit::none())
                        .map_err(|after| self.rejection_for(cost, after)),
                );
            }
            Mode::Wait(w) => ctx.remaining().map_or(w, |r| r.min(w)),
        };
        self.wait_for(cost, max_wait)
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}

/// What [`PipelineBuilder::rate_limit`](crate::PipelineBuilder::rate_limit) accepts: a
/// built limiter (by value or by reference; clones share state), a builder (its
/// validation error fails the pipeline's `build`), or a
/// [`KeyedLimiter`](super::KeyedLimiter) over `u64` keys, by value or in an `Arc` (each
/// call limited under its [`Call::key`](crate::Call::key)).
pub trait IntoRateLimiter {
    /// The limiter as a shareable guard.
    fn into_guard(self) -> Arc<dyn Guard>;

    /// The guard, and whether it is this crate's own limiter that rejects rather than
    /// waits (`false` unless overridden): the engine then knows how it answers (it runs a
    /// call of a pipeline whose only strategy it is in place, in a tower service's
    /// future). Only this crate's conversions override it.
    #[doc(hidden)]
    fn into_known_guard(self) -> (Arc<dyn Guard>, bool)
    where
        Self: Sized,
    {
        (self.into_guard(), false)
    }
}

impl RateLimiter {
    /// Whether the limiter answers every call at once (it rejects rather than waits).
    fn rejects(&self) -> bool {
        matches!(self.inner.mode, Mode::Reject)
    }
}

impl IntoRateLimiter for RateLimiter {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self)
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        let known = self.rejects();
        (Arc::new(self), known)
    }
}

impl IntoRateLimiter for &RateLimiter {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self.clone())
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (Arc::new(self.clone()), self.rejects())
    }
}

impl IntoRateLimiter for RateLimiterBuilder {
    fn into_guard(self) -> Arc<dyn Guard> {
        self.into_known_guard().0
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        match self.build() {
            Ok(l) => l.into_known_guard(),
            Err(e) => (Arc::new(Invalid::new("rate_limiter", e)), false),
        }
    }
}
