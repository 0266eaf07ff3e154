//! [`RedisGuard`]: a [`RedisLimiter`] behind the [`Guard`] seam, for pipelines.

use std::fmt::{self, Display};
use std::time::Duration;

use resilient::ratelimit::{Mode, Verdict};
use resilient::{Acquire, Context, Guard, Outcome, Permit, Rejection};

use crate::limiter::{RedisLimiter, binding_index};

/// A [`RedisLimiter`] as a pipeline [`Guard`]: each call is limited under the key that
/// `key(&ctx)` returns (from the pipeline's name or tags), at a fixed cost. Made by
/// [`RedisLimiter::guard`]; add it with `Pipeline::builder().guard(..)`.
///
/// Rejections are [`Rejection::RateLimited`] with the binding limit's `retry_after` and
/// its [`resilient::RateLimitInfo`], so `RateLimit` headers can be written from the error as
/// with a local limiter. A key the deny cache knows is over its limit is rejected before
/// any await; every other call awaits one round trip (bounded by the limiter's timeout).
/// Blocking execution (`execute_blocking`) cannot await a round trip: there the guard
/// answers only from the deny cache and otherwise rejects as [`Rejection::Other`].
///
/// ```no_run
/// use resilient::{Error, Pipeline};
/// use resilient_redis::RedisLimiter;
///
/// # async fn demo(limiter: RedisLimiter) {
/// let per_tenant = limiter.guard(|ctx| ctx.tag("tenant").unwrap_or("anonymous").to_string());
/// let p = Pipeline::builder().tag("tenant", "acme").guard(per_tenant).build().unwrap();
/// let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
/// if let Err(e) = r {
///     println!("{e:?}; info: {:?}", e.rate_limit_info());
/// }
/// # }
/// ```
pub struct RedisGuard<F> {
    limiter: RedisLimiter,
    key: F,
    cost: u64,
}

impl<F> fmt::Debug for RedisGuard<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGuard")
            .field("limiter", &self.limiter)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// This limiter as a pipeline [`Guard`] limiting each call under `key(&ctx)` (see
    /// [`RedisGuard`]), one unit per call.
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # fn demo(limiter: RedisLimiter) {
    /// let guard = limiter.guard(|ctx| ctx.operation().unwrap_or("default").to_string());
    /// let p = resilient::Pipeline::builder().name("search").guard(guard).build().unwrap();
    /// # let _ = p; }
    /// ```
    pub fn guard<F, K>(&self, key: F) -> RedisGuard<F>
    where
        F: Fn(&Context) -> K + Send + Sync + 'static,
        K: Display + Send + 'static,
    {
        RedisGuard {
            limiter: self.clone(),
            key,
            cost: 1,
        }
    }
}

impl<F> RedisGuard<F> {
    /// Charges each call `cost` units instead of one (a cost above a limit's capacity
    /// is always rejected, with no `retry_after`).
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # fn demo(limiter: RedisLimiter) {
    /// let heavy = limiter.guard(|_ctx| "batch").cost(10);
    /// # let _ = heavy; }
    /// ```
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// The limiter.
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # fn demo(limiter: RedisLimiter) {
    /// let g = limiter.guard(|_ctx| "all");
    /// assert_eq!(g.limiter().limits().len(), limiter.limits().len());
    /// # }
    /// ```
    pub fn limiter(&self) -> &RedisLimiter {
        &self.limiter
    }
}

/// The rejection for a denied verdict: the binding limit's `retry_after` and info.
pub(crate) fn rejection(limiter: &RedisLimiter, v: &Verdict) -> Rejection {
    let i = binding_index(v);
    v.decisions[i].rejection_with(limiter.policy_of(i))
}

fn never() -> Rejection {
    Rejection::RateLimited {
        retry_after: None,
        info: None,
    }
}

impl<F, K> Guard for RedisGuard<F>
where
    F: Fn(&Context) -> K + Send + Sync + 'static,
    K: Display + Send + 'static,
{
    fn name(&self) -> &'static str {
        "redis_rate_limiter"
    }

    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        if self.limiter.cost_check(self.cost).is_err() {
            return Acquire::Ready(Err(never()));
        }
        let base = self.limiter.key_for(&(self.key)(ctx));
        if self.limiter.mode() == Mode::Reject
            && let Some(v) = self.limiter.cached(&base, self.cost)
        {
            return Acquire::Ready(Err(rejection(&self.limiter, &v)));
        }
        let max_wait = match self.limiter.mode() {
            Mode::Reject => Duration::ZERO,
            Mode::Wait(w) => ctx.remaining().map_or(w, |r| r.min(w)),
        };
        Acquire::Wait(Box::pin(async move {
            let v = self.limiter.decide_waiting(base, self.cost, max_wait).await;
            if v.allowed {
                Ok(Permit::none())
            } else {
                Err(rejection(&self.limiter, &v))
            }
        }))
    }

    fn acquire_now(&self, ctx: &Context) -> Result<Permit<'_>, Rejection> {
        if self.limiter.cost_check(self.cost).is_err() {
            return Err(never());
        }
        let base = self.limiter.key_for(&(self.key)(ctx));
        match self.limiter.cached(&base, self.cost) {
            Some(v) => Err(rejection(&self.limiter, &v)),
            None => Err(Rejection::Other {
                guard: self.name(),
                retry_after: None,
            }),
        }
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}
