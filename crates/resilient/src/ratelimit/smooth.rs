//! Smooth limiters after Guava's `RateLimiter`: spaced permits, *pay later* burst debt, and
//! warm-up.
//!
//! A smooth limiter keeps the time the next request may start (`next_free`) and a number
//! of stored permits. A request is admitted as soon as `next_free` has passed, whatever its
//! cost: its cost moves `next_free` forward and is paid by the callers that come after it
//! (Guava's "pay later"). The debt one request can leave is bounded by
//! [`SmoothBuilder::max_debt`] permits; larger requests are a [`CostError`].
//!
//! - [`Smooth::bursty`]: stored permits (up to `max_burst` worth of time, 1 s by default)
//!   are free. A new limiter starts with none stored.
//!
//! When does a limiter start? By default at its first request: the limiter has no clock
//! of its own (callers pass `now`), and a clock's origin says nothing about how long it was
//! idle. Guava's limiters start when they are created and store permits while idle before
//! their first request; [`SmoothBuilder::start_at`] gives that semantics (pass the clock's
//! reading at creation). It only matters for [`Smooth::bursty`]: a warming-up limiter
//! starts cold (all permits stored) and a linear ramp starts at its slowest either way.
//! - [`Smooth::warming_up`]: Guava's `SmoothWarmingUp`: a cold limiter (new, or idle long
//!   enough) issues permits at `cold_factor` (3) times the stable interval and speeds up
//!   linearly in stored permits until it reaches the stable rate after `warmup`.
//! - [`Smooth::linear_ramp`]: the rate itself ramps linearly in time, from
//!   `start_fraction` of the stable rate to the full rate over `ramp`, after a cold start
//!   or an idle period of at least `ramp`.
//!
//! State is a few floats behind a short lock (the algorithm needs more than one word).

use std::sync::Mutex;
use std::time::Duration;

use super::algorithm::{Limiter, Ticket};
use super::decision::{CostError, Decision, Nanos, Policy, Rate, nanos};
use crate::engine::error::ConfigError;

#[derive(Debug, Clone, Copy)]
enum Shape {
    Bursty { max_burst: f64 },
    WarmingUp { warmup: f64, cold_factor: f64 },
    Linear { ramp: f64, start: f64 },
}

/// Configures a [`Smooth`] limiter.
#[derive(Debug, Clone)]
pub struct SmoothBuilder {
    rate: Rate,
    shape: Shape,
    max_debt: u64,
    start: Option<Duration>,
}

/// A Guava-style smooth limiter (see the [module docs](self)).
///
/// Its decisions' `limit` (the burst) is the most an idle limiter admits at once: the
/// most stored permits plus the debt allowance ([`SmoothBuilder::max_debt`]); `remaining`
/// is what a request could take right now without waiting: the stored permits plus the
/// debt allowance once the next free time has come, and 0 while earlier debt is being
/// paid (a smooth limiter spaces requests, so right after a request that left debt, the
/// next one must wait; use `retry_after` and `reset` for how long).
///
/// Guava's "pay later" sequence at 1 permit/s: acquiring 1, 1, 2, 4, 8, 1 permits waits
/// 0, 1, 1, 2, 4, 8 seconds; each request pays for the one before it.
///
/// ```
/// use resilient::ratelimit::{Limiter, Rate, Smooth};
/// use std::time::Duration;
/// let l = Smooth::bursty(Rate::per_second(1)).max_debt(8).build().unwrap();
/// let mut now = Duration::ZERO;
/// let mut waits = vec![];
/// for cost in [1, 1, 2, 4, 8, 1] {
///     let wait = l.reserve(now, cost, Duration::MAX).unwrap().unwrap().retry_after;
///     waits.push(wait.as_secs());
///     now += wait;
/// }
/// assert_eq!(waits, [0, 1, 1, 2, 4, 8]);
/// ```
#[derive(Debug)]
pub struct Smooth {
    max_debt: u64,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    shape: Shape,
    /// Stable interval between permits, ns.
    stable: f64,
    max_permits: f64,
    stored: f64,
    /// When the next request may start, ns; `NaN` until the first request, whose time
    /// starts the limiter (a clock's origin says nothing about how long it was idle).
    next_free: f64,
    /// [`SmoothBuilder::start_at`]: when the limiter was created, ns; its first request
    /// then starts it there (permits stored while idle since), not at its own time.
    created: Option<f64>,
    /// Linear ramp: when the current active period began (`None` = cold).
    active_since: Option<f64>,
    // Warm-up derived values.
    threshold: f64,
    slope: f64,
}

impl Smooth {
    /// Guava's `SmoothBursty` at `rate`.
    pub fn bursty(rate: Rate) -> SmoothBuilder {
        SmoothBuilder {
            rate,
            shape: Shape::Bursty { max_burst: 1e9 },
            max_debt: 1,
            start: None,
        }
    }

    /// Guava's `SmoothWarmingUp` at `rate` with the given warm-up period (cold factor 3).
    ///
    /// At 2 permits/s with a 4 s warm-up, a cold limiter's successive waits are 0.00,
    /// 1.38, 1.13, 0.88, 0.63, 0.50 s:
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, Smooth};
    /// use std::time::Duration;
    /// let l = Smooth::warming_up(Rate::per_second(2), Duration::from_secs(4)).build().unwrap();
    /// let mut now = Duration::ZERO;
    /// let mut waits = vec![];
    /// for _ in 0..6 {
    ///     let wait = l.reserve(now, 1, Duration::MAX).unwrap().unwrap().retry_after;
    ///     waits.push((wait.as_secs_f64() * 100.0).round() / 100.0);
    ///     now += wait;
    /// }
    /// assert_eq!(waits, [0.0, 1.38, 1.13, 0.88, 0.63, 0.5]);
    /// ```
    pub fn warming_up(rate: Rate, warmup: Duration) -> SmoothBuilder {
        SmoothBuilder {
            rate,
            shape: Shape::WarmingUp {
                warmup: nanos(warmup) as f64,
                cold_factor: 3.0,
            },
            max_debt: 1,
            start: None,
        }
    }

    /// A linear ramp: the rate grows linearly in time from `1/3` of `rate` (see
    /// [`SmoothBuilder::start_fraction`]) to `rate` over `ramp`; a request's permits take
    /// the time over which that rate issues them (its integral).
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, Smooth};
    /// use std::time::Duration;
    /// let l = Smooth::linear_ramp(Rate::per_second(1), Duration::from_secs(10)).build().unwrap();
    /// let now = Duration::from_secs(86_400);
    /// let first = l.reserve(now, 1, Duration::MAX).unwrap().unwrap();
    /// let second = l.reserve(now, 1, Duration::MAX).unwrap().unwrap();
    /// assert_eq!(first.retry_after, Duration::ZERO);
    /// // Cold, the rate starts at a third of 1/s and grows by 1/15 per second per second:
    /// // the first permit is issued after 2.42 s (t/3 + t²/30 = 1), not 1 s.
    /// assert_eq!(second.retry_after.as_millis(), 2_416);
    /// ```
    pub fn linear_ramp(rate: Rate, ramp: Duration) -> SmoothBuilder {
        SmoothBuilder {
            rate,
            shape: Shape::Linear {
                ramp: nanos(ramp) as f64,
                start: 1.0 / 3.0,
            },
            max_debt: 1,
            start: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the rate at runtime (Guava's `setRate`): debt already owed stays owed (in
    /// time) and stored permits are rescaled to the new maximum. Needs no clock reading:
    /// idle time since the last request is counted at the new rate when the next request
    /// comes, which stores the same fraction of the maximum as Guava's resync at the old
    /// rate followed by the rescale (so a caller can never move the limiter's time).
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, Smooth};
    /// use std::time::Duration;
    /// let l = Smooth::bursty(Rate::per_second(1)).build().unwrap();
    /// let now = Duration::from_secs(86_400); // the limiter's clock reading
    /// l.reserve(now, 1, Duration::MAX);
    /// l.set_rate(Rate::per_second(10)).unwrap();
    /// // The debt of the first permit (1 s) is still owed.
    /// let d = l.reserve(now, 1, Duration::MAX).unwrap().unwrap();
    /// assert_eq!(d.retry_after, Duration::from_secs(1));
    /// ```
    pub fn set_rate(&self, rate: Rate) -> Result<(), ConfigError> {
        self.change_rate(rate, None)
    }

    /// Sets the rate and, for a bursty limiter, the most stored permits (`burst`).
    fn change_rate(&self, rate: Rate, burst: Option<u64>) -> Result<(), ConfigError> {
        rate.validate_spacing("smooth.rate")?;
        let stable = stable_interval(rate);
        let mut st = self.lock();
        if let (Some(b), Shape::Bursty { max_burst }) = (burst, &mut st.shape) {
            *max_burst = b as f64 * stable;
        }
        let old_max = st.max_permits;
        st.configure(stable);
        st.stored = if old_max > 0.0 {
            st.stored * st.max_permits / old_max
        } else {
            0.0
        };
        Ok(())
    }
}

fn stable_interval(rate: Rate) -> f64 {
    nanos(rate.per) as f64 / rate.count as f64
}

impl SmoothBuilder {
    /// The most permits' worth of debt one request may leave (default 1). A request costing
    /// more than this plus the stored permits waits for permits to be stored (in wait mode
    /// it reserves them: it sleeps while they are stored and nobody else takes them; in
    /// reject mode its `retry_after` says how long); one costing more than this plus the
    /// most that can be stored is a [`CostError`].
    pub fn max_debt(mut self, permits: u64) -> Self {
        self.max_debt = permits;
        self
    }

    /// Bursty only: how much unused time is saved as stored permits (default 1 s).
    pub fn max_burst(mut self, d: Duration) -> Self {
        if let Shape::Bursty { max_burst } = &mut self.shape {
            *max_burst = nanos(d) as f64;
        }
        self
    }

    /// Warm-up only: how much slower than stable a cold limiter is (default 3).
    pub fn cold_factor(mut self, f: f64) -> Self {
        if let Shape::WarmingUp { cold_factor, .. } = &mut self.shape {
            *cold_factor = f;
        }
        self
    }

    /// Linear ramp only: the fraction of the rate a cold limiter starts at (default 1/3).
    pub fn start_fraction(mut self, f: f64) -> Self {
        if let Shape::Linear { start, .. } = &mut self.shape {
            *start = f;
        }
        self
    }

    /// Guava's start: the limiter exists from `now` (the reading, at creation, of the clock
    /// whose readings its callers will pass, e.g. [`RateLimiter::now`](super::RateLimiter::now)
    /// or `resilient::system_clock().now()`), and idle time before its first request
    /// stores permits, up to the maximum. Without it the limiter starts at its first
    /// request with nothing stored. A first request earlier than `now` (a clock that
    /// stepped back) starts it at that request instead.
    ///
    /// Guava's one-second burst at 5 permits/s: created, idle for a second, then five
    /// permits are free and the sixth waits 0.2 s.
    ///
    /// ```
    /// use resilient::ratelimit::{Limiter, Rate, Smooth};
    /// use std::time::Duration;
    /// let created = Duration::from_secs(86_400); // the clock's reading at creation
    /// let l = Smooth::bursty(Rate::per_second(5)).start_at(created).build().unwrap();
    /// let now = created + Duration::from_secs(1);
    /// let mut waits = vec![];
    /// let mut t = now;
    /// for cost in [1, 1, 3, 1, 1] {
    ///     let wait = l.reserve(t, cost, Duration::MAX).unwrap().unwrap().retry_after;
    ///     waits.push(wait.as_millis());
    ///     t += wait;
    /// }
    /// assert_eq!(waits, [0, 0, 0, 0, 200]);
    /// ```
    pub fn start_at(mut self, now: Duration) -> Self {
        self.start = Some(now);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Smooth, ConfigError> {
        self.rate.validate_spacing("smooth.rate")?;
        if self.max_debt == 0 {
            return Err(ConfigError::new("smooth.max_debt", "must be at least 1"));
        }
        match self.shape {
            Shape::Bursty { max_burst } if max_burst < 0.0 => {
                return Err(ConfigError::new("smooth.max_burst", "must not be negative"));
            }
            Shape::WarmingUp {
                warmup,
                cold_factor,
            } => {
                if warmup <= 0.0 {
                    return Err(ConfigError::new(
                        "smooth.warmup",
                        "must be longer than zero",
                    ));
                }
                if !(cold_factor > 1.0 && cold_factor.is_finite()) {
                    return Err(ConfigError::new(
                        "smooth.cold_factor",
                        "must be a finite number above 1",
                    ));
                }
            }
            Shape::Linear { ramp, start } => {
                if ramp <= 0.0 {
                    return Err(ConfigError::new("smooth.ramp", "must be longer than zero"));
                }
                if !(start > 0.0 && start <= 1.0) {
                    return Err(ConfigError::new(
                        "smooth.start_fraction",
                        "must be in (0, 1]",
                    ));
                }
            }
            Shape::Bursty { .. } => {}
        }
        let mut st = State {
            shape: self.shape,
            stable: 0.0,
            max_permits: 0.0,
            stored: 0.0,
            next_free: f64::NAN,
            created: self.start.map(|t| nanos(t) as f64),
            active_since: None,
            threshold: 0.0,
            slope: 0.0,
        };
        st.configure(stable_interval(self.rate));
        if let Shape::WarmingUp { .. } = st.shape {
            st.stored = st.max_permits; // starts cold
        }
        Ok(Smooth {
            max_debt: self.max_debt,
            state: Mutex::new(st),
        })
    }
}

impl State {
    fn configure(&mut self, stable: f64) {
        self.stable = stable;
        match self.shape {
            Shape::Bursty { max_burst } => self.max_permits = max_burst / stable,
            Shape::WarmingUp {
                warmup,
                cold_factor,
            } => {
                let cold = stable * cold_factor;
                self.threshold = 0.5 * warmup / stable;
                self.max_permits = self.threshold + 2.0 * warmup / (stable + cold);
                self.slope = (cold - stable) / (self.max_permits - self.threshold);
            }
            Shape::Linear { .. } => self.max_permits = 0.0,
        }
    }

    fn cooldown(&self) -> f64 {
        match self.shape {
            Shape::WarmingUp { warmup, .. } => warmup / self.max_permits,
            _ => self.stable,
        }
    }

    fn resync(&mut self, now: f64) {
        if self.next_free.is_nan() {
            // First request: the limiter starts now, with what it was built with stored;
            // or, built with `start_at`, at its creation, storing what idle time since
            // then is worth (below).
            match self.created {
                Some(created) if created < now => self.next_free = created,
                _ => {
                    self.next_free = now;
                    return;
                }
            }
        }
        if now > self.next_free {
            if let Shape::Linear { ramp, .. } = self.shape {
                if now - self.next_free >= ramp {
                    self.active_since = None;
                }
            } else {
                let fresh = (now - self.next_free) / self.cooldown();
                self.stored = (self.stored + fresh).min(self.max_permits);
            }
            self.next_free = now;
        }
    }

    /// Guava's `storedPermitsToWaitTime` for the warm-up shape.
    fn stored_time(&self, take: f64) -> f64 {
        match self.shape {
            Shape::WarmingUp { .. } => {
                let above = self.stored - self.threshold;
                let mut take = take;
                let mut t = 0.0;
                if above > 0.0 {
                    let hi = above.min(take);
                    let len = self.permits_to_time(above) + self.permits_to_time(above - hi);
                    t = hi * len / 2.0;
                    take -= hi;
                }
                t + self.stable * take
            }
            _ => 0.0,
        }
    }

    fn permits_to_time(&self, permits: f64) -> f64 {
        self.stable + permits * self.slope
    }

    /// Time the permits not covered by stored ones cost, starting at `next_free`.
    fn fresh_time(&mut self, fresh: f64) -> f64 {
        match self.shape {
            Shape::Linear { ramp, start } => {
                // The rate, as a fraction of the stable rate, ramps linearly from `start`
                // at `since` to 1 at `since + ramp`; `fresh` permits take the time `t` over
                // which its integral reaches `fresh × stable` (closed form, any cost).
                let since = *self.active_since.get_or_insert(self.next_free);
                let x0 = (self.next_free - since).max(0.0);
                let mut work = fresh * self.stable;
                let mut t = 0.0;
                if x0 < ramp {
                    // frac(x0 + y) = b + 2·k·y, so the integral up to y is b·y + k·y².
                    let k = (1.0 - start) / (2.0 * ramp);
                    let b = start + 2.0 * k * x0;
                    let len = ramp - x0;
                    let in_ramp = b * len + k * len * len;
                    if work <= in_ramp {
                        // The root of k·y² + b·y = work, in a form stable for small k.
                        return 2.0 * work / (b + (b * b + 4.0 * k * work).sqrt());
                    }
                    t = len;
                    work -= in_ramp;
                }
                t + work
            }
            _ => fresh * self.stable,
        }
    }
}

impl Smooth {
    /// The burst: the most an idle limiter admits at once (the most stored permits, whole,
    /// plus the debt allowance); also the largest cost.
    fn limit(&self, st: &State) -> u64 {
        self.max_debt.saturating_add(st.max_permits as u64)
    }

    /// Permits a request could take at `now` without waiting: the stored ones plus the debt
    /// allowance once the next free time has come, else none.
    fn remaining(&self, st: &State, now: f64) -> u64 {
        if st.next_free.is_nan() || st.next_free <= now {
            (st.stored as u64).saturating_add(self.max_debt)
        } else {
            0
        }
    }

    fn decide(&self, now: Nanos, cost: u64, max_wait: Nanos) -> Result<Decision, CostError> {
        self.decide_ticket(now, cost, max_wait).map(|(d, _)| d)
    }

    /// [`Smooth::decide`], with the ticket that undoes it: the next free time and stored
    /// permits before and after (as `f64` bits).
    fn decide_ticket(
        &self,
        now: Nanos,
        cost: u64,
        max_wait: Nanos,
    ) -> Result<(Decision, Ticket), CostError> {
        let mut st = self.lock();
        let now = now as f64;
        st.resync(now);
        let before = (st.next_free, st.stored);
        let d = self.decide_locked(&mut st, now, cost, max_wait)?;
        let ticket = if d.allowed {
            Ticket::new([
                before.0.to_bits(),
                before.1.to_bits(),
                st.next_free.to_bits(),
                st.stored.to_bits(),
            ])
        } else {
            Ticket::default()
        };
        Ok((d, ticket))
    }

    fn decide_locked(
        &self,
        st: &mut State,
        now: f64,
        cost: u64,
        max_wait: Nanos,
    ) -> Result<Decision, CostError> {
        let limit = self.limit(st);
        if cost > limit {
            return Err(CostError { cost, max: limit });
        }
        let mut wait = (st.next_free - now).max(0.0);
        // A request larger than the debt allowance needs stored permits for the rest:
        // it waits until enough have accumulated.
        let short = (cost as f64 - self.max_debt as f64 - st.stored).max(0.0);
        wait += short * st.cooldown();
        let reset = |st: &State, next: f64| {
            let refill = (st.max_permits - st.stored).max(0.0) * st.cooldown();
            Duration::from_nanos(((next - now).max(0.0) + refill) as u64)
        };
        if wait > max_wait as f64 {
            return Ok(Decision {
                allowed: false,
                limit,
                remaining: self.remaining(st, now),
                reset: reset(st, st.next_free),
                retry_after: Duration::from_nanos(wait.ceil() as u64),
            });
        }
        if short > 0.0 {
            // Reserved: the permits it lacks are stored while it waits, and nobody else
            // can take them (the next free time moves past them).
            st.next_free += short * st.cooldown();
            st.stored = (st.stored + short).min(st.max_permits);
        }
        let from_stored = (cost as f64).min(st.stored);
        let owed = st.stored_time(from_stored) + st.fresh_time(cost as f64 - from_stored);
        st.stored -= from_stored;
        st.next_free += owed;
        Ok(Decision {
            allowed: true,
            limit,
            remaining: self.remaining(st, now),
            reset: reset(st, st.next_free),
            retry_after: Duration::from_nanos(wait.round() as u64),
        })
    }
}

impl Limiter for Smooth {
    fn try_acquire(&self, now: Duration, cost: u64) -> Result<Decision, CostError> {
        self.decide(nanos(now), cost, 0)
    }

    /// Whether a request of `cost` would be admitted now; it does not start a limiter that
    /// has had no request yet.
    fn peek(&self, now: Duration, cost: u64) -> Decision {
        let mut guard = self.lock();
        let now = nanos(now) as f64;
        let st = if guard.next_free.is_nan() {
            // Not started: what a first request now would find (permits stored since a
            // `start_at` creation), on a copy, so that a later first request (even at an
            // older clock reading) still starts the limiter itself.
            let mut first = *guard;
            first.resync(now);
            first
        } else {
            guard.resync(now);
            *guard
        };
        drop(guard);
        let next_free = if st.next_free.is_nan() {
            now
        } else {
            st.next_free
        };
        let short = (cost as f64 - self.max_debt as f64 - st.stored).max(0.0);
        let wait = (next_free - now).max(0.0) + short * st.cooldown();
        let refill = (st.max_permits - st.stored).max(0.0) * st.cooldown();
        Decision {
            allowed: wait == 0.0,
            limit: self.limit(&st),
            remaining: self.remaining(&st, now),
            reset: Duration::from_nanos(((next_free - now).max(0.0) + refill) as u64),
            retry_after: Duration::from_nanos(wait.ceil() as u64),
        }
    }

    fn refund(&self, _now: Duration, cost: u64) {
        let mut st = self.lock();
        if st.next_free.is_nan() {
            return; // nothing was ever taken
        }
        let back = cost as f64 * st.stable;
        st.next_free = (st.next_free - back).max(0.0);
    }

    fn reserve(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<Decision, CostError>> {
        Some(self.decide(nanos(now), cost, nanos(max_wait)))
    }

    fn acquire_with_ticket(
        &self,
        now: Duration,
        cost: u64,
    ) -> Result<(Decision, Ticket), CostError> {
        self.decide_ticket(nanos(now), cost, 0)
    }

    fn reserve_with_ticket(
        &self,
        now: Duration,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Decision, Ticket), CostError>> {
        Some(self.decide_ticket(nanos(now), cost, nanos(max_wait)))
    }

    /// Gives a reservation back only while it is the last one (the next free time and
    /// stored permits are still what it left): later reservations were placed after it and
    /// keep their times, so moving the next free time back under them would hand their
    /// time out twice.
    fn undo(&self, _now: Duration, _cost: u64, ticket: Ticket) {
        let [next_before, stored_before, next_after, stored_after] = ticket.words();
        if ticket == Ticket::default() {
            return;
        }
        let mut st = self.lock();
        if st.next_free.to_bits() == next_after && st.stored.to_bits() == stored_after {
            st.next_free = f64::from_bits(next_before);
            st.stored = f64::from_bits(stored_before);
        }
    }

    fn max_cost(&self) -> u64 {
        self.limit(&self.lock())
    }

    /// [`Smooth::set_rate`]; `burst` sets a bursty limiter's most stored permits (its
    /// `max_burst` becomes `burst` intervals) and is ignored by warming-up and linear-ramp
    /// limiters, whose capacity follows from their warm-up or ramp. `now` is not needed.
    fn set_rate(&self, _now: Duration, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        self.change_rate(rate, Some(burst))
    }

    fn policy(&self) -> Policy {
        let st = self.lock();
        let quota = self.limit(&st);
        Policy {
            quota,
            window: Duration::from_nanos((quota as f64 * st.stable) as u64),
        }
    }
}
