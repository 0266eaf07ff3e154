//! Multi-region failover and health-aware calls.
//!
//! A [`Failover`] holds an ordered set of regions (or endpoints), each with the value the
//! caller uses to reach it (a client, a base URL), its own [`CircuitBreaker`] and,
//! optionally, a [`HealthGate`]. Every call goes to the *active* region: the
//! highest-priority one unless traffic failed over. When the active region's breaker
//! rejects, its health gate says unhealthy, or the call fails with a handled failure, the
//! same call moves on to the next region, and the region that answers becomes the active
//! one. Traffic returns to a higher-priority region only after it has looked healthy
//! (breaker ready, gate healthy, no failure seen) for [`FailoverBuilder::failback_after`]
//! without a break, so an outage that flaps does not make traffic flap. Every switch is
//! reported to [`FailoverBuilder::on_switch`]. Regions of equal [priority](Region::priority)
//! can share traffic by observed latency ([`FailoverBuilder::latency_aware`]). With
//! [`FailoverBuilder::hedge_after`], a call that is slow to answer also starts the next
//! region and takes whichever answers first.
//!
//! Health is sampled at each call (breaker [ready](CircuitBreaker::is_ready), gate
//! healthy) and a failure seen there restarts the failback period. Without a health gate,
//! an open breaker looks healthy again once its break is over (it has no timer), so a
//! region still down gets one probing call per break plus failback period.
//!
//! ```
//! use resilient::failover::{Failover, Region};
//! use resilient::{CircuitBreaker, Error};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let failover = Failover::builder()
//!     .region(Region::new("eu-west", "https://eu.example.com"))
//!     .region(
//!         Region::new("us-east", "https://us.example.com")
//!             .breaker(CircuitBreaker::consecutive_failures(3)),
//!     )
//!     .failback_after(Duration::from_secs(120))
//!     .build()
//!     .unwrap();
//! let answer: Result<String, Error<&str>> = failover
//!     .call(|base: &&str| {
//!         let base = *base;
//!         async move {
//!             if base.contains("eu") { Err("eu is down") } else { Ok(format!("{base}/users/1")) }
//!         }
//!     })
//!     .await;
//! assert_eq!(answer.unwrap(), "https://us.example.com/users/1");
//! assert_eq!(failover.active(), "us-east");
//! # }
//! ```
//!
//! A [`HealthGate`] is also a [`Guard`](crate::Guard) of its own: in a pipeline
//! (`.guard(gate.clone())`) it rejects calls fast while its background probe says the
//! dependency is unhealthy, so that a [`Fallback`](crate::fallback::Fallback) can answer.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use crate::circuit::{CircuitBreaker, CircuitBreakerBuilder};
use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::error::{ConfigError, Error};
use crate::engine::outcome::{AllErrors, Classify, Outcome};

mod events;
mod health;
#[cfg(feature = "tower")]
mod layer;

use self::events::Observers;
pub use self::events::{FailoverEvent, FailoverObserver};
pub use self::health::{HealthGate, HealthGateBuilder};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::layer::{FailoverLayer, FailoverService, Routed};

/// Why traffic moved from one region to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SwitchReason {
    /// The region refused the call without running it: its breaker is open or its health
    /// gate says unhealthy.
    Rejected,
    /// The call failed there with a handled failure.
    Failed,
    /// A higher-priority region has been healthy for the failback period.
    Failback,
    /// A hedged call ([`FailoverBuilder::hedge_after`]): the region answered first while
    /// the region the call started on had not answered yet.
    Hedged,
}

type SwitchFn = Arc<dyn Fn(&str, &str, SwitchReason) + Send + Sync>;

/// A hedging delay longer than this (about 100 years) never passes: no hedging.
const HEDGE_NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Not known to be healthy (the sentinel of `Slot::ready_since`).
const NOT_READY: u64 = u64::MAX;

/// How a region's breaker is given.
enum BreakerSpec {
    Default,
    Builder(Box<CircuitBreakerBuilder>),
    Built(CircuitBreaker),
}

/// One region of a [`Failover`]: its name, the value a call uses to reach it, its breaker
/// and optional health gate. Added in priority order with [`FailoverBuilder::region`].
///
/// ```
/// use resilient::failover::Region;
/// use resilient::CircuitBreaker;
/// let eu = Region::new("eu-west", "https://eu.example.com")
///     .breaker(CircuitBreaker::consecutive_failures(5));
/// # let _ = eu;
/// ```
pub struct Region<R> {
    name: Arc<str>,
    value: R,
    breaker: BreakerSpec,
    gate: Option<HealthGate>,
    priority: Option<u32>,
}

impl<R> fmt::Debug for Region<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl<R> Region<R> {
    /// A region named `name`, reached through `value`, with a default breaker
    /// ([`CircuitBreaker::builder`]'s defaults, named after the region, on the failover's
    /// clock).
    ///
    /// ```
    /// use resilient::failover::Region;
    /// let r = Region::new("local", 8080u16);
    /// # let _ = r;
    /// ```
    pub fn new(name: impl Into<Arc<str>>, value: R) -> Self {
        Self {
            name: name.into(),
            value,
            breaker: BreakerSpec::Default,
            gate: None,
            priority: None,
        }
    }

    /// The region's breaker, built from `builder` when the failover is built (its
    /// validation error fails that build). Give it the failover's clock yourself if you
    /// inject one.
    ///
    /// ```
    /// use resilient::failover::Region;
    /// use resilient::CircuitBreaker;
    /// let r = Region::new("eu", ()).breaker(CircuitBreaker::failure_rate(0.2));
    /// # let _ = r;
    /// ```
    pub fn breaker(mut self, builder: CircuitBreakerBuilder) -> Self {
        self.breaker = BreakerSpec::Builder(Box::new(builder));
        self
    }

    /// Uses an existing breaker (shared with whoever else holds a clone).
    ///
    /// ```
    /// use resilient::failover::Region;
    /// use resilient::CircuitBreaker;
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let r = Region::new("eu", ()).shared_breaker(breaker.clone());
    /// # let _ = r;
    /// ```
    pub fn shared_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = BreakerSpec::Built(breaker);
        self
    }

    /// A health gate for the region: while it says unhealthy, calls skip the region (as
    /// rejected) and traffic fails over.
    ///
    /// ```
    /// use resilient::failover::{HealthGate, Region};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let gate = HealthGate::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// let r = Region::new("eu", ()).health(gate);
    /// # let _ = r;
    /// # }
    /// ```
    pub fn health(mut self, gate: HealthGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The region's priority, lower first (default: its position among the regions, so
    /// that regions rank in the order they were added). Regions of equal priority form
    /// one tier: with [`FailoverBuilder::latency_aware`] calls go to the fastest healthy
    /// region of the active tier, and traffic moves between them without a failback
    /// period.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let f = Failover::builder()
    ///     .region(Region::new("backup", ()).priority(1))
    ///     .region(Region::new("main", ()).priority(0))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(f.active(), "main");
    /// ```
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// A built region.
struct Slot<R> {
    name: Arc<str>,
    value: R,
    breaker: CircuitBreaker,
    gate: Option<HealthGate>,
    /// Since when (clock nanos) the region has looked healthy without a break.
    ready_since: AtomicU64,
    priority: u32,
    /// The moving average of its calls' latency in nanoseconds (0: no sample yet).
    ewma: AtomicU64,
    /// Whether it looked healthy at the last sample (for `HealthChanged` events).
    seen_healthy: AtomicBool,
}

impl<R> Slot<R> {
    fn looks_healthy(&self) -> bool {
        self.breaker.is_ready() && self.gate.as_ref().is_none_or(HealthGate::is_healthy)
    }

    /// Samples the region's health at `now`, reporting a change to `observers`.
    fn observe(&self, now: u64, failover: &str, observers: &Observers) {
        let healthy = self.looks_healthy();
        if !observers.is_empty() && self.seen_healthy.swap(healthy, Ordering::AcqRel) != healthy {
            observers.emit(
                failover,
                &FailoverEvent::HealthChanged {
                    region: &self.name,
                    healthy,
                },
            );
        }
        if healthy {
            let _ = self.ready_since.compare_exchange(
                NOT_READY,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            self.unready();
        }
    }

    fn unready(&self) {
        self.ready_since.store(NOT_READY, Ordering::Release);
    }

    fn healthy_for(&self, now: u64, period: u64) -> bool {
        let since = self.ready_since.load(Ordering::Acquire);
        since != NOT_READY && now.saturating_sub(since) >= period
    }

    /// Folds one latency sample into the moving average (`weight` of the new sample).
    fn sample(&self, took: u64, weight: f64) {
        let _ = self
            .ewma
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                let new = if old == 0 {
                    took as f64
                } else {
                    old as f64 + weight * (took as f64 - old as f64)
                };
                // 0 means "no sample": a measured region is never cheaper than one not tried
                Some((new as u64).max(1))
            });
    }
}

struct Inner<R> {
    regions: Vec<Slot<R>>,
    active: AtomicUsize,
    failback_after: u64,
    max_per_call: usize,
    clock: SharedClock,
    on_switch: Option<SwitchFn>,
    latency_weight: Option<f64>,
    name: Arc<str>,
    observers: Observers,
    hedge_after: Option<Duration>,
}

/// Sends each call to the highest-priority healthy region and fails over to the next (see
/// the [module docs](self)). A cheap handle: clones share the regions and the active one.
///
/// ```
/// use resilient::failover::{Failover, Region};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failover = Failover::builder().region(Region::new("only", 7u8)).build().unwrap();
/// let r = failover.call(|n: &u8| { let n = *n; async move { Ok::<_, ()>(n * 2) } }).await;
/// assert_eq!(r.unwrap(), 14);
/// # }
/// ```
pub struct Failover<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Failover<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<R> fmt::Debug for Failover<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field(
                "regions",
                &self
                    .inner
                    .regions
                    .iter()
                    .map(|s| &*s.name)
                    .collect::<Vec<_>>(),
            )
            .field("active", &self.active())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Failover`]; [`FailoverBuilder::build`] validates it.
///
/// ```
/// use resilient::failover::{Failover, Region};
/// let err = Failover::<()>::builder().build().unwrap_err();
/// assert_eq!(err.field(), "failover.regions");
/// ```
pub struct FailoverBuilder<R> {
    regions: Vec<Region<R>>,
    failback_after: Duration,
    max_per_call: Option<usize>,
    clock: SharedClock,
    on_switch: Option<SwitchFn>,
    latency_weight: Option<f64>,
    name: Arc<str>,
    observers: Vec<Arc<dyn FailoverObserver>>,
    hedge_after: Option<Duration>,
}

impl<R> fmt::Debug for FailoverBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverBuilder")
            .field("regions", &self.regions)
            .field("failback_after", &self.failback_after)
            .field("max_per_call", &self.max_per_call)
            .field("hedge_after", &self.hedge_after)
            .finish_non_exhaustive()
    }
}

impl<R> Failover<R> {
    /// A builder with no regions, a 60 s failback period, every region tried per call, and
    /// the system clock.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let f = Failover::builder()
    ///     .region(Region::new("a", 1))
    ///     .region(Region::new("b", 2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(f.active(), "a");
    /// ```
    pub fn builder() -> FailoverBuilder<R> {
        FailoverBuilder {
            regions: Vec::new(),
            failback_after: Duration::from_secs(60),
            max_per_call: None,
            clock: system_clock(),
            on_switch: None,
            latency_weight: None,
            name: "failover".into(),
            observers: Vec::new(),
            hedge_after: None,
        }
    }

    /// The name of the region calls go to first.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let f = Failover::builder().region(Region::new("a", ())).build().unwrap();
    /// assert_eq!(f.active(), "a");
    /// ```
    pub fn active(&self) -> &str {
        &self.inner.regions[self.inner.active.load(Ordering::Acquire)].name
    }

    /// The breaker of the region named `name`, if there is one.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::CircuitState;
    /// let f = Failover::builder().region(Region::new("a", ())).build().unwrap();
    /// assert_eq!(f.breaker("a").unwrap().state(), CircuitState::Closed);
    /// assert!(f.breaker("b").is_none());
    /// ```
    pub fn breaker(&self, name: &str) -> Option<&CircuitBreaker> {
        self.inner
            .regions
            .iter()
            .find(|s| &*s.name == name)
            .map(|s| &s.breaker)
    }

    /// Runs `op` against the active region, failing over on any error or rejection (see
    /// [`Failover::call_classified`]).
    ///
    /// `op` receives the region's value; the future it returns must not borrow it (clone
    /// what it needs, or keep the value in an `Arc`).
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::Error;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let f = Failover::builder()
    ///     .region(Region::new("a", "a"))
    ///     .region(Region::new("b", "b"))
    ///     .build()
    ///     .unwrap();
    /// let r = f.call(|name: &&str| { let n = *name; async move { Err::<(), _>(n) } }).await;
    /// let Err(Error::Fallback { failures }) = r else { panic!() };
    /// assert_eq!(failures, [Error::Inner("a"), Error::Inner("b")]);
    /// # }
    /// ```
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, Error<E>>
    where
        T: 'static,
        E: 'static,
        F: FnMut(&R) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(AllErrors, op).await
    }

    /// Runs `op` against the active region, judging results with `classify`: a
    /// [`Outcome::Failure`] (and a rejection by the region's breaker or health gate) moves
    /// the call on to the next region; an ignored error is returned as it is.
    ///
    /// Regions are tried in this order: the active one, the ones after it in priority,
    /// then the ones before it (those not yet healthy for the failback period, as a last
    /// resort), at most [`FailoverBuilder::max_regions_per_call`] of them. The region that
    /// answers becomes the active one. When every region tried fails, the error is
    /// [`Error::Fallback`] with each region's failure in order, or that failure alone if
    /// only one region was tried. An `Ok` is always returned as the answer (a breaker
    /// still counts it as `classify` says).
    ///
    /// Dropping the returned future gives back whatever the region's breaker admitted
    /// (a half-open probe permit, for one) without counting the call.
    ///
    /// With [`FailoverBuilder::hedge_after`], the regions of that order run side by side
    /// instead of one after the other (see there); dropping the future then gives back
    /// every attempt's permit.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::{Error, Outcome};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let f = Failover::builder()
    ///     .region(Region::new("a", ()))
    ///     .region(Region::new("b", ()))
    ///     .build()
    ///     .unwrap();
    /// // a 404 is an answer, not a regional failure
    /// let not_found = |r: &Result<(), u16>| match r {
    ///     Err(404) => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    /// };
    /// let r = f.call_classified(not_found, |_: &()| async { Err(404) }).await;
    /// assert_eq!(r, Err(Error::Inner(404)));
    /// assert_eq!(f.active(), "a");
    /// # }
    /// ```
    pub async fn call_classified<T, E, C, F, Fut>(
        &self,
        classify: C,
        mut op: F,
    ) -> Result<T, Error<E>>
    where
        T: 'static,
        E: 'static,
        C: Classify<T, E>,
        F: FnMut(&R) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(delay) = self.inner.hedge_after {
            // boxed: the sequential call's future does not grow by the hedged call's state
            return Box::pin(self.call_hedged(classify, op, delay)).await;
        }
        let inner = &*self.inner;
        let (active, order) = self.route();
        let classify = Judge(Arc::new(classify));
        let mut failures = Vec::new();
        let mut reason = None;
        for i in order {
            let slot = &inner.regions[i];
            let started = inner.latency_weight.map(|_| clock_nanos(&inner.clock));
            let result = if let Some(gate) = slot.gate.as_ref().filter(|g| !g.is_healthy()) {
                Err(Error::Unhealthy {
                    retry_after: Some(gate.next_probe_in()),
                })
            } else {
                let value = &slot.value;
                slot.breaker
                    .call_classified(classify.clone(), || op(value))
                    .await
            };
            self.sample_attempt(slot, started, &result);
            let why = match result {
                Ok(v) => {
                    match reason {
                        _ if i == active => {}
                        // the faster region of the active tier answered first: no failover
                        None => {
                            let _ = inner.active.compare_exchange(
                                active,
                                i,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                        }
                        Some(why) => {
                            self.switch(active, i, why);
                        }
                    }
                    return Ok(v);
                }
                Err(e) => match regional_failure(&classify, e) {
                    Ok((failure, why)) => {
                        failures.push(failure);
                        why
                    }
                    Err(answer) => return Err(answer),
                },
            };
            slot.unready();
            reason.get_or_insert(why);
        }
        Err(all_failed(failures))
    }

    /// Samples every region's health, fails back if a higher-priority region has been
    /// healthy for the failback period, and orders the call's regions: the active region,
    /// and the regions to try (the first one, then the active one and those after it,
    /// then those before it), at most `max_regions_per_call` of them.
    #[inline]
    fn route(&self) -> (usize, impl Iterator<Item = usize> + use<R>) {
        let inner = &*self.inner;
        let n = inner.regions.len();
        let now = clock_nanos(&inner.clock);
        for slot in &inner.regions {
            slot.observe(now, &inner.name, &inner.observers);
        }
        let mut active = inner.active.load(Ordering::Acquire);
        let tier = inner.regions[active].priority;
        if let Some(better) = (0..active).find(|&i| {
            inner.regions[i].priority < tier
                && inner.regions[i].healthy_for(now, inner.failback_after)
        }) {
            active = self.switch(active, better, SwitchReason::Failback);
        }
        let tier = inner.regions[active].priority;
        // the fastest healthy region of the active tier goes first (the first one not
        // measured yet, so that every region gets measured)
        let fastest = inner.latency_weight.and_then(|_| {
            (0..n)
                .filter(|&i| inner.regions[i].priority == tier && inner.regions[i].looks_healthy())
                .min_by_key(|&i| inner.regions[i].ewma.load(Ordering::Acquire))
        });
        let first = fastest.unwrap_or(active);
        let order = std::iter::once(first)
            .chain((active..n).chain(0..active).filter(move |&i| i != first))
            .take(inner.max_per_call);
        (active, order)
    }

    /// [`Failover::call_classified`] with [`FailoverBuilder::hedge_after`]: the regions of
    /// the call's order run side by side, the next one starting when the latest has not
    /// answered within `delay` or as soon as one fails; the first acceptable result wins
    /// and the attempts still in flight are dropped with it.
    async fn call_hedged<T, E, C, F, Fut>(
        &self,
        classify: C,
        op: F,
        delay: Duration,
    ) -> Result<T, Error<E>>
    where
        T: 'static,
        E: 'static,
        C: Classify<T, E>,
        F: FnMut(&R) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        // the same order as a sequential call's
        let (active, order) = self.route();
        let classify = Judge(Arc::new(classify));
        // Each attempt calls `op` when its breaker admits it, from its own poll: the lock is
        // never contended (a mutex rather than a `RefCell` keeps the future `Send`).
        let op = Mutex::new(op);
        let op = &op;
        let judge = &classify;
        let mut hedging = Hedging {
            inner,
            order,
            start: move |i: usize| {
                let value = &inner.regions[i].value;
                Box::pin(
                    inner.regions[i]
                        .breaker
                        .call_classified(judge.clone(), move || {
                            (op.lock().unwrap_or_else(PoisonError::into_inner))(value)
                        }),
                )
            },
            running: Vec::with_capacity(2),
            failures: Vec::new(),
            reason: None,
            left: true,
            timer: Box::pin(tokio::time::sleep(delay)),
            delay,
        };
        hedging.start_next(false);
        poll_fn(|cx| {
            loop {
                let mut k = 0;
                while k < hedging.running.len() {
                    let Poll::Ready(result) = hedging.running[k].call.as_mut().poll(cx) else {
                        k += 1;
                        continue;
                    };
                    let attempt = hedging.running.remove(k);
                    let slot = &inner.regions[attempt.region];
                    self.sample_attempt(slot, attempt.started, &result);
                    let why = match result {
                        Ok(v) => {
                            // the others are dropped in this poll, their permits given back
                            hedging.running.clear();
                            self.won(active, attempt.region, attempt.cause);
                            return Poll::Ready(Ok(v));
                        }
                        Err(e) => match regional_failure(&classify, e) {
                            Ok((failure, why)) => {
                                hedging.failures.push(failure);
                                why
                            }
                            Err(answer) => {
                                hedging.running.clear();
                                return Poll::Ready(Err(answer));
                            }
                        },
                    };
                    slot.unready();
                    hedging.reason.get_or_insert(why);
                    // a failure starts the next region at once (polled in this pass)
                    hedging.start_next(false);
                }
                if hedging.running.is_empty() {
                    // nothing in flight and no region left
                    return Poll::Ready(Err(all_failed(std::mem::take(&mut hedging.failures))));
                }
                if hedging.left && hedging.timer.as_mut().poll(cx).is_ready() {
                    hedging.start_next(true);
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    }

    /// Feeds an ended attempt's latency to its region's average (latency-aware choice
    /// only; a rejection, which never reached the region, is not a latency).
    fn sample_attempt<T, E>(
        &self,
        slot: &Slot<R>,
        started: Option<u64>,
        result: &Result<T, Error<E>>,
    ) {
        let inner = &*self.inner;
        if let (Some(t0), Some(weight), false) = (
            started,
            inner.latency_weight,
            matches!(
                result,
                Err(Error::Rejected { .. } | Error::CircuitOpen { .. } | Error::Unhealthy { .. })
            ),
        ) {
            slot.sample(clock_nanos(&inner.clock).saturating_sub(t0), weight);
        }
    }

    /// The attempt on region `to`, started for `cause` (`None`: the call's first attempt),
    /// answered: it becomes the active region as in a sequential call.
    fn won(&self, active: usize, to: usize, cause: Option<SwitchReason>) {
        match cause {
            _ if to == active => {}
            // the faster region of the active tier answered first: no failover
            None => {
                let _ = self.inner.active.compare_exchange(
                    active,
                    to,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            Some(why) => {
                self.switch(active, to, why);
            }
        }
    }

    /// Moves the active region from `from` to `to` (unless another call moved it first)
    /// and reports it; returns the active region.
    fn switch(&self, from: usize, to: usize, reason: SwitchReason) -> usize {
        let inner = &*self.inner;
        match inner
            .active
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let (left, joined) = (&inner.regions[from].name, &inner.regions[to].name);
                if let Some(observer) = &inner.on_switch {
                    observer(left, joined, reason);
                }
                inner.observers.emit(
                    &inner.name,
                    &FailoverEvent::Switched {
                        from: left,
                        to: joined,
                        reason,
                    },
                );
                to
            }
            Err(now) => now,
        }
    }
}

impl<R> FailoverBuilder<R> {
    /// Adds a region, after (at a lower priority than) those added before it.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let f = Failover::builder()
    ///     .region(Region::new("primary", ()))
    ///     .region(Region::new("secondary", ()))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(f.active(), "primary");
    /// ```
    pub fn region(mut self, region: Region<R>) -> Self {
        self.regions.push(region);
        self
    }

    /// How long a higher-priority region must look healthy, without a break, before
    /// traffic returns to it (default 60 s; zero fails back as soon as it looks healthy).
    /// Measured on the failover's [clock](FailoverBuilder::clock), sampled at each call.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use std::time::Duration;
    /// let b = Failover::builder()
    ///     .region(Region::new("a", ()))
    ///     .failback_after(Duration::from_secs(300));
    /// # let _ = b;
    /// ```
    pub fn failback_after(mut self, period: Duration) -> Self {
        self.failback_after = period;
        self
    }

    /// At most `n` regions are tried per call (default: all; at least 1).
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let err = Failover::builder().region(Region::new("a", ())).max_regions_per_call(0).build().unwrap_err();
    /// assert_eq!(err.field(), "failover.max_regions_per_call");
    /// ```
    pub fn max_regions_per_call(mut self, n: usize) -> Self {
        self.max_per_call = Some(n);
        self
    }

    /// The clock the failback period is measured on (default: the system clock), also
    /// given to the regions' default breakers.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::ManualClock;
    /// use std::sync::Arc;
    /// let clock = ManualClock::new();
    /// let b = Failover::builder().region(Region::new("a", ())).clock(Arc::new(clock.clone()));
    /// # let _ = b;
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Latency-aware choice within a tier of equal [priority](Region::priority): each call
    /// goes first to the healthy region of the active tier with the lowest moving average
    /// (EWMA) of observed latency, `weight` being the share of each new sample (in
    /// `(0, 1]`; 0.2 is a common choice). Latency is measured on the failover's clock;
    /// calls a region rejected are not samples. Off by default.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let f = Failover::builder()
    ///     .region(Region::new("eu-1", ()).priority(0))
    ///     .region(Region::new("eu-2", ()).priority(0))
    ///     .region(Region::new("us", ()).priority(1))
    ///     .latency_aware(0.2)
    ///     .build()
    ///     .unwrap();
    /// # let _ = f;
    /// ```
    pub fn latency_aware(mut self, weight: f64) -> Self {
        self.latency_weight = Some(weight);
        self
    }

    /// Hedges calls into the next region: when a call's attempt has not ended `delay`
    /// after it started, the call also starts the next region of its order (same order,
    /// health gates and [`max_regions_per_call`](FailoverBuilder::max_regions_per_call)
    /// bound as a sequential call), and so on every `delay` while regions are left; an
    /// attempt that fails or is rejected starts the next region at once. The first
    /// acceptable result (an `Ok`, or an error the classifier does not count as a
    /// failure) is the call's answer, and the attempts still in flight are dropped in the
    /// same poll (their breakers' permits given back uncounted). The region that answered
    /// becomes the active one, reported with [`SwitchReason::Hedged`] when the delay
    /// started it; each region the delay starts is reported as
    /// [`FailoverEvent::HedgeStarted`]. When every attempt fails, the error is
    /// [`Error::Fallback`] with the failures in the order the attempts ended.
    ///
    /// Off by default (one region at a time). The delay runs on tokio's timer, so hedged
    /// calls need a tokio runtime with time enabled. [`build`](FailoverBuilder::build)
    /// rejects a zero `delay` (field `failover.hedge_after`); a delay above about 100
    /// years never passes and means no hedging.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::Error;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let f = Failover::builder()
    ///     .region(Region::new("slow", 10_000u64))
    ///     .region(Region::new("fast", 20u64))
    ///     .hedge_after(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// let start = tokio::time::Instant::now();
    /// let r: Result<u64, Error<()>> = f
    ///     .call(|ms: &u64| {
    ///         let ms = *ms;
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(ms)).await;
    ///             Ok(ms)
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(r.unwrap(), 20);
    /// assert_eq!(start.elapsed(), Duration::from_millis(70));
    /// assert_eq!(f.active(), "fast");
    /// assert_eq!(
    ///     Failover::<()>::builder()
    ///         .region(Region::new("a", ()))
    ///         .hedge_after(Duration::ZERO)
    ///         .build()
    ///         .unwrap_err()
    ///         .field(),
    ///     "failover.hedge_after"
    /// );
    /// # }
    /// ```
    pub fn hedge_after(mut self, delay: Duration) -> Self {
        self.hedge_after = Some(delay);
        self
    }

    /// Called on every switch of the active region with the names of the regions it moved
    /// from and to, and why. Keep it quick: it runs on the calling task.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region, SwitchReason};
    /// let b = Failover::builder()
    ///     .region(Region::new("a", ()))
    ///     .on_switch(|from: &str, to: &str, why: SwitchReason| eprintln!("{from} -> {to}: {why:?}"));
    /// # let _ = b;
    /// ```
    pub fn on_switch(
        mut self,
        f: impl Fn(&str, &str, SwitchReason) + Send + Sync + 'static,
    ) -> Self {
        self.on_switch = Some(Arc::new(f));
        self
    }

    /// The failover's name, given to observers (default `"failover"`).
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// let b = Failover::builder().region(Region::new("a", ())).name("users-api");
    /// # let _ = b;
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds an observer of every [`FailoverEvent`] (region switched, a region's health
    /// changed), called with the failover's name, as a breaker's
    /// [`CircuitObserver`](crate::CircuitObserver) is with the breaker's. Called on the
    /// calling task; a panic in it is contained.
    ///
    /// ```
    /// use resilient::failover::{Failover, FailoverEvent, Region};
    /// let b = Failover::builder()
    ///     .region(Region::new("a", ()))
    ///     .observer(|name: &str, e: &FailoverEvent<'_>| eprintln!("{name}: {e:?}"));
    /// # let _ = b;
    /// ```
    pub fn observer(mut self, observer: impl FailoverObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Validates the configuration and builds the regions' breakers.
    ///
    /// ```
    /// use resilient::failover::{Failover, Region};
    /// use resilient::CircuitBreaker;
    /// let err = Failover::builder()
    ///     .region(Region::new("a", ()).breaker(CircuitBreaker::failure_rate(2.0)))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "circuit.failure_rate");
    /// ```
    pub fn build(self) -> Result<Failover<R>, ConfigError> {
        if self.regions.is_empty() {
            return Err(ConfigError::new("failover.regions", "at least one region"));
        }
        if self.max_per_call == Some(0) {
            return Err(ConfigError::new(
                "failover.max_regions_per_call",
                "must be at least 1",
            ));
        }
        if let Some(w) = self.latency_weight
            && !(w > 0.0 && w <= 1.0)
        {
            return Err(ConfigError::new(
                "failover.latency_aware",
                "the weight must be in (0, 1]",
            ));
        }
        if self.hedge_after == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "failover.hedge_after",
                "must be above zero (a zero delay would start every region of the call at once)",
            ));
        }
        // a delay too long to ever pass is no hedging
        let hedge_after = self.hedge_after.filter(|d| *d <= HEDGE_NEVER);
        let max_per_call = self.max_per_call.unwrap_or(usize::MAX);
        let mut regions = Vec::with_capacity(self.regions.len());
        for (position, r) in self.regions.into_iter().enumerate() {
            let breaker = match r.breaker {
                BreakerSpec::Default => CircuitBreaker::builder()
                    .name(r.name.clone())
                    .clock(self.clock.clone())
                    .build()?,
                BreakerSpec::Builder(b) => b.build()?,
                BreakerSpec::Built(b) => b,
            };
            regions.push(Slot {
                name: r.name,
                value: r.value,
                breaker,
                gate: r.gate,
                ready_since: AtomicU64::new(NOT_READY),
                priority: r
                    .priority
                    .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
                ewma: AtomicU64::new(0),
                seen_healthy: AtomicBool::new(true),
            });
        }
        // stable: equal priorities keep the order they were added in
        regions.sort_by_key(|s| s.priority);
        Ok(Failover {
            inner: Arc::new(Inner {
                regions,
                active: AtomicUsize::new(0),
                failback_after: nanos(self.failback_after),
                max_per_call,
                clock: self.clock,
                on_switch: self.on_switch,
                latency_weight: self.latency_weight,
                name: self.name,
                observers: Observers(self.observers.into()),
                hedge_after,
            }),
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

fn clock_nanos(clock: &SharedClock) -> u64 {
    nanos(clock.now())
}

/// One region's attempt of a hedged call.
struct Attempt<A> {
    region: usize,
    /// When it started (clock nanos), when latency is sampled.
    started: Option<u64>,
    /// Why it started: `None` for the call's first attempt, `Hedged` for one the delay
    /// started, else the reason of the call's first failure.
    cause: Option<SwitchReason>,
    call: Pin<Box<A>>,
}

/// The state of a hedged call (see `Failover::call_hedged`).
struct Hedging<'a, R, I, S, A, E> {
    inner: &'a Inner<R>,
    /// The regions not started yet, in the call's order.
    order: I,
    /// Starts region `i`'s breaker call.
    start: S,
    /// The attempts in flight, in the order they started.
    running: Vec<Attempt<A>>,
    /// The failures, in the order the attempts ended.
    failures: Vec<Error<E>>,
    /// Why the first failure failed.
    reason: Option<SwitchReason>,
    /// Whether regions are left to start.
    left: bool,
    /// When the next region starts unless one failed before.
    timer: Pin<Box<tokio::time::Sleep>>,
    delay: Duration,
}

impl<R, I, S, A, E> Hedging<'_, R, I, S, A, E>
where
    I: Iterator<Item = usize>,
    S: FnMut(usize) -> Pin<Box<A>>,
{
    /// Starts the next region of the call's order whose health gate lets it through (a
    /// region it rejects counts as a failure, as in a sequential call), `hedged` when the
    /// delay started it, and restarts the delay.
    fn start_next(&mut self, hedged: bool) {
        let inner = self.inner;
        for i in self.order.by_ref() {
            let slot = &inner.regions[i];
            if let Some(gate) = slot.gate.as_ref().filter(|g| !g.is_healthy()) {
                self.failures.push(Error::Unhealthy {
                    retry_after: Some(gate.next_probe_in()),
                });
                slot.unready();
                self.reason.get_or_insert(SwitchReason::Rejected);
                continue;
            }
            let cause = if hedged {
                inner.observers.emit(
                    &inner.name,
                    &FailoverEvent::HedgeStarted { region: &slot.name },
                );
                Some(SwitchReason::Hedged)
            } else {
                self.reason
            };
            self.running.push(Attempt {
                region: i,
                started: inner.latency_weight.map(|_| clock_nanos(&inner.clock)),
                cause,
                call: (self.start)(i),
            });
            if let Some(at) = tokio::time::Instant::now().checked_add(self.delay) {
                self.timer.as_mut().reset(at);
            }
            return;
        }
        self.left = false;
    }
}

/// A classifier shared by the breaker calls of one failover call and the failover decision.
struct Judge<C>(Arc<C>);

/// A region's failed attempt: `Ok` with the failure to keep and the reason to move on (a
/// failure the classifier counts, or a rejection), or `Err` with the answer to return as
/// it is (an error the classifier ignores).
fn regional_failure<T, E, C: Classify<T, E>>(
    classify: &Judge<C>,
    error: Error<E>,
) -> Result<(Error<E>, SwitchReason), Error<E>> {
    match error {
        Error::Inner(e) => {
            let judged = Err(e);
            let failed = classify.0.classify(&judged) == Outcome::Failure;
            let Err(e) = judged else { unreachable!() };
            if failed {
                Ok((Error::Inner(e), SwitchReason::Failed))
            } else {
                Err(Error::Inner(e))
            }
        }
        other => Ok((other, SwitchReason::Rejected)),
    }
}

/// The error of a call whose every region failed: the failure alone if one region was
/// tried, else all of them in order.
fn all_failed<E>(mut failures: Vec<Error<E>>) -> Error<E> {
    if failures.len() == 1 {
        failures.pop().expect("one failure")
    } else {
        Error::Fallback { failures }
    }
}

impl<C> Clone for Judge<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T, E, C: Classify<T, E>> Classify<T, E> for Judge<C> {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self.0.classify(result)
    }

    fn retry_cost(&self, result: &Result<T, E>) -> Option<u64> {
        self.0.retry_cost(result)
    }
}
