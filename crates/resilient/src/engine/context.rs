//! Per-call context: attempt number, operation name, deadline, tags and the call's cost
//! and key for rate limiters, plus the ambient deadline and cancellation that nested
//! pipelines inherit.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

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

/// `d`, unless it is beyond the [`HORIZON`]: a timeout that never fires is none.
pub(crate) fn within_horizon(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| *d <= HORIZON)
}

/// Deadline and cancellation inherited by nested pipelines running inside a call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ambient {
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<CancellationToken>,
}

tokio::task_local! {
    pub(crate) static AMBIENT: Ambient;
}

impl Ambient {
    /// The ambient values of the enclosing call, if any.
    pub(crate) fn current() -> Option<Ambient> {
        AMBIENT.try_with(|a| a.clone()).ok()
    }

    /// Whether the current task runs inside a call with a deadline or a cancellation
    /// (without cloning them).
    #[inline]
    pub(crate) fn active() -> bool {
        AMBIENT
            .try_with(|a| a.deadline.is_some() || a.cancel.is_some())
            .unwrap_or(false)
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
    AMBIENT.try_with(|a| a.deadline).ok().flatten()
}
