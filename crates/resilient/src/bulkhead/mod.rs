//! Bulkhead: a cap on concurrent calls, with an optional bounded wait queue.
//!
//! Slots are RAII permits: a finished, failed or cancelled call gives its slot back, and a
//! cancelled waiter leaves the queue.
//!
//! Free slots and the number of waiting callers share one atomic word: taking a slot is a
//! compare-and-swap, and giving one back while nobody waits is another (no lock). Only
//! when callers queue does a returned slot go through tokio's semaphore, which wakes the
//! longest waiter. Every decision reads and writes the whole word at once, so a slot given
//! back while a caller joins the queue goes either to the counter (where the caller's
//! join finds it) or to the waiters (the caller then among them): it is never stranded. A
//! slot handed to a waiter that then left stays in the semaphore, where the next caller
//! finds it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::sync::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::context::Context;
use crate::engine::error::{ConfigError, Error};
use crate::engine::guard::{Acquire, Guard, Invalid, Permit, Rejection};
use crate::engine::outcome::Outcome;
use crate::engine::telemetry::GuardGauges;

mod adaptive;
#[cfg(feature = "tower")]
mod layer;
mod sync;

#[cfg(feature = "tower")]
pub use self::layer::{BulkheadLayer, BulkheadService, ResponseFuture};

pub use self::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, Vegas};

/// Limits how many calls run at once. A cheap handle: clones share the same slots and
/// queue, so one bulkhead can guard several pipelines (pass `&bulkhead`).
///
/// Reachable the same four ways as every strategy: standalone ([`Guard::acquire`] and
/// the RAII [`Permit`]), in a pipeline ([`PipelineBuilder::bulkhead`](crate::PipelineBuilder::bulkhead)),
/// as a tower layer (`Bulkhead::layer`, feature `tower`) and as the
/// `#[resilient::bulkhead]` attribute.
///
/// ```
/// use resilient::{Bulkhead, Error, Pipeline};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pipeline = Pipeline::builder()
///     .bulkhead(Bulkhead::builder(10).queue(100).max_wait(Duration::from_secs(1)))
///     .build()
///     .unwrap();
/// let r: Result<u8, Error<()>> = pipeline.execute(|| async { Ok(1) }).await;
/// assert_eq!(r.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Free slots (low 32 bits) and waiting callers (high 32 bits).
    state: AtomicU64,
    /// Slots handed to waiters (starts empty; FIFO wake-ups).
    slots: Semaphore,
    /// The cap: the limit of a fixed bulkhead, the highest an adaptive one may reach.
    max_concurrent: usize,
    max_queue: u64,
    max_wait: Option<Duration>,
    /// The limit now (moves only with an adaptive algorithm).
    limit: AtomicUsize,
    /// Slots to destroy as they come back, after the limit went down.
    debt: std::sync::atomic::AtomicU64,
    adaptive: Option<Adaptive>,
}

/// An adaptive bulkhead's algorithm and listener. The algorithm is fed under `try_lock`:
/// a sample arriving while another is being applied is skipped, so releases never wait.
struct Adaptive {
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// The algorithm reads latencies ([`LimitAlgorithm::uses_rtt`]): calls are timed.
    uses_rtt: bool,
    /// A copy of the algorithm as configured, outside the lock: it answers
    /// [`LimitAlgorithm::ignores`] (which depends on no state the algorithm keeps).
    judge: Judge,
    on_change: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    /// Times the calls of the bulkhead's own layer (in a pipeline, its clock does).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    clock: SharedClock,
}

impl fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adaptive").finish_non_exhaustive()
    }
}

/// The copy of an adaptive algorithm that answers [`LimitAlgorithm::ignores`] on every
/// release: AIMD (the common case) called directly, so that its check inlines into the
/// release; any other algorithm through its trait object.
enum Judge {
    Aimd(Aimd),
    Other(Box<dyn LimitAlgorithm + Sync>),
}

impl Judge {
    fn new<A: LimitAlgorithm + Clone + Sync>(algorithm: &A) -> Self {
        match (algorithm as &dyn std::any::Any).downcast_ref::<Aimd>() {
            Some(aimd) => Judge::Aimd(aimd.clone()),
            None => Judge::Other(Box::new(algorithm.clone())),
        }
    }

    #[inline]
    fn ignores(&self, limit: usize, sample: &Sample) -> bool {
        match self {
            Judge::Aimd(a) => a.ignores(limit, sample),
            Judge::Other(a) => a.ignores(limit, sample),
        }
    }

    /// The algorithm itself, for the copy that is fed samples.
    fn into_algorithm(self) -> Box<dyn LimitAlgorithm> {
        match self {
            Judge::Aimd(a) => Box::new(a),
            Judge::Other(a) => a,
        }
    }
}

/// The state word's parts.
const FREE: u64 = 0xffff_ffff;
const WAITER: u64 = 1 << 32;

/// The most slots or waiting callers the state word holds.
const MAX_SLOTS: usize = u32::MAX as usize;

/// Configures a [`Bulkhead`].
#[derive(Clone)]
pub struct BulkheadBuilder {
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Option<Duration>,
    adaptive: Option<Arc<dyn Fn() -> Judge + Send + Sync>>,
    on_limit_change: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    clock: Option<SharedClock>,
}

impl fmt::Debug for BulkheadBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("adaptive", &self.adaptive.is_some())
            .finish()
    }
}

impl Bulkhead {
    /// At most `max_concurrent` calls at once; no queue unless [`BulkheadBuilder::queue`].
    ///
    /// ```
    /// use resilient::Bulkhead;
    /// let b = Bulkhead::builder(4).queue(8).build().unwrap();
    /// assert_eq!((b.in_flight(), b.queued()), (0, 0));
    /// ```
    pub fn builder(max_concurrent: usize) -> BulkheadBuilder {
        BulkheadBuilder {
            max_concurrent,
            max_queue: 0,
            max_wait: None,
            adaptive: None,
            on_limit_change: None,
            clock: None,
        }
    }

    /// The former name of [`Bulkhead::builder`].
    #[deprecated(since = "0.1.0", note = "renamed to `Bulkhead::builder`")]
    #[allow(clippy::new_ret_no_self)]
    pub fn new(max_concurrent: usize) -> BulkheadBuilder {
        Self::builder(max_concurrent)
    }

    /// Runs `op` in a slot of this bulkhead (standalone, without a pipeline): waits in the
    /// queue as configured, or fails with [`Error::BulkheadFull`]. The slot is given back
    /// when `op` finishes, fails, panics or the returned future is dropped.
    ///
    /// ```
    /// use resilient::{Bulkhead, Error};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bulkhead = Bulkhead::builder(1).build().unwrap();
    /// let r: Result<u8, Error<()>> = bulkhead.call(|| async { Ok(7) }).await;
    /// assert_eq!(r.unwrap(), 7);
    /// # }
    /// ```
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _slot = match self.acquire(&Context::new()) {
            Acquire::Ready(r) => r,
            Acquire::Wait(w) => w.await,
        }?;
        op().await.map_err(Error::Inner)
    }

    /// Runs a blocking `op` in a slot of this bulkhead on the current thread; with no free
    /// slot it fails at once with [`Error::BulkheadFull`] (blocking callers never queue).
    ///
    /// ```
    /// use resilient::Bulkhead;
    /// let bulkhead = Bulkhead::builder(1).build().unwrap();
    /// assert_eq!(bulkhead.call_blocking(|| "7".parse::<u8>()).unwrap(), 7);
    /// ```
    pub fn call_blocking<T, E, F>(&self, op: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, E>,
    {
        let _slot = self.acquire_now(&Context::new())?;
        op().map_err(Error::Inner)
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        let free = (self.inner.state.load(Ordering::Acquire) & FREE) as usize
            + self.inner.slots.available_permits();
        let debt = self.inner.debt.load(std::sync::atomic::Ordering::Acquire) as usize;
        (self.limit() + debt).saturating_sub(free)
    }

    /// The concurrency limit now: the configured one, or an adaptive bulkhead's current
    /// limit.
    ///
    /// ```
    /// use resilient::Bulkhead;
    /// use resilient::bulkhead::Aimd;
    /// let fixed = Bulkhead::builder(8).build().unwrap();
    /// assert_eq!(fixed.limit(), 8);
    /// let adaptive = Bulkhead::builder(100).adaptive(Aimd::new(10, 1, 100)).build().unwrap();
    /// assert_eq!(adaptive.limit(), 10);
    /// ```
    pub fn limit(&self) -> usize {
        self.inner.limit.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `(free in the counter, waiting)`.
    #[cfg(loom)]
    fn in_flight_parts(&self) -> (usize, usize) {
        let s = self.inner.state.load(Ordering::Acquire);
        ((s & FREE) as usize, (s / WAITER) as usize)
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        (self.inner.state.load(Ordering::Acquire) / WAITER) as usize
    }
}

/// What [`PipelineBuilder::bulkhead`](crate::PipelineBuilder::bulkhead) accepts: a built
/// bulkhead (by value or by reference; clones share slots) or a builder (its validation
/// error fails the pipeline's `build`).
pub trait IntoBulkhead {
    /// The bulkhead as a shareable guard.
    fn into_guard(self) -> Arc<dyn Guard>;

    /// The guard, and whether it is this crate's own bulkhead (`false` unless overridden):
    /// the engine then knows how its permits and waits behave (it runs a call of a
    /// pipeline whose only strategy it is in place, in a tower service's future). Only
    /// this crate's conversions override it.
    #[doc(hidden)]
    fn into_known_guard(self) -> (Arc<dyn Guard>, bool)
    where
        Self: Sized,
    {
        (self.into_guard(), false)
    }
}

impl IntoBulkhead for Bulkhead {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self)
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}

impl IntoBulkhead for &Bulkhead {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self.clone())
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}

impl IntoBulkhead for BulkheadBuilder {
    fn into_guard(self) -> Arc<dyn Guard> {
        match self.build() {
            Ok(b) => Arc::new(b),
            Err(e) => Arc::new(Invalid::new("bulkhead", e)),
        }
    }

    fn into_known_guard(self) -> (Arc<dyn Guard>, bool) {
        (self.into_guard(), true)
    }
}

impl BulkheadBuilder {
    /// Up to `n` callers may wait for a slot (default 0: reject at once).
    pub fn queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// The longest a queued caller waits before [`crate::Error::BulkheadFull`] (on tokio's
    /// timer). Any duration is accepted: zero rejects a caller that would have to wait, and
    /// one beyond about a hundred years (`Duration::MAX`) is no limit.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }

    /// Moves the limit with `algorithm` (see [`Aimd`], [`Gradient2`], [`Vegas`]), between 1
    /// and the bulkhead's `max_concurrent`, starting at the algorithm's initial limit. Every
    /// finished call is a sample: how long it held its slot, the calls in flight, and
    /// whether it failed or timed out (a cancelled call is no sample). When the limit goes
    /// down, slots in use are not taken back: they are retired as they are given back.
    ///
    /// ```
    /// use resilient::{Bulkhead, Error, Pipeline};
    /// use resilient::bulkhead::Aimd;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bulkhead = Bulkhead::builder(64).adaptive(Aimd::new(4, 1, 64)).build().unwrap();
    /// let pipeline = Pipeline::builder().bulkhead(&bulkhead).build().unwrap();
    /// let failed: Result<(), Error<()>> = pipeline.execute(|| async { Err(()) }).await;
    /// assert!(failed.is_err());
    /// assert_eq!(bulkhead.limit(), 3); // 4 × 0.9, rounded down
    /// # }
    /// ```
    pub fn adaptive<A: LimitAlgorithm + Clone + Sync>(mut self, algorithm: A) -> Self {
        self.adaptive = Some(Arc::new(move || Judge::new(&algorithm)));
        self
    }

    /// The clock that times calls through the bulkhead's own tower layer
    /// ([`Bulkhead::layer`]) when its adaptive algorithm reads latencies (default: the
    /// default clock, [`FastClock`](crate::FastClock)). In a pipeline, the pipeline's clock
    /// times calls instead. Inject a [`ManualClock`](crate::ManualClock) to script
    /// latencies in tests.
    ///
    /// ```
    /// use resilient::{Bulkhead, ManualClock};
    /// use resilient::bulkhead::Aimd;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let clock = Arc::new(ManualClock::new());
    /// let bulkhead = Bulkhead::builder(8)
    ///     .adaptive(Aimd::new(4, 1, 8).timeout(Duration::from_millis(100)))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// # let _ = bulkhead;
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Called with `(old, new)` each time an adaptive limit changes (logging, metrics).
    pub fn on_limit_change(mut self, f: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.on_limit_change = Some(Arc::new(f));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        if self.max_concurrent == 0 || self.max_concurrent > MAX_SLOTS {
            return Err(ConfigError::new(
                "bulkhead.max_concurrent",
                format!(
                    "must be between 1 and {MAX_SLOTS} (got {})",
                    self.max_concurrent
                ),
            ));
        }
        let adaptive = self.adaptive.as_ref().map(|make| {
            let algorithm = make().into_algorithm();
            Adaptive {
                uses_rtt: algorithm.uses_rtt(),
                algorithm: Mutex::new(algorithm),
                judge: make(),
                on_change: self.on_limit_change.clone(),
                clock: self.clock.clone().unwrap_or_else(system_clock),
            }
        });
        let limit = match &adaptive {
            Some(a) => match a.algorithm.lock() {
                Ok(alg) => alg.initial().clamp(1, self.max_concurrent),
                Err(_) => self.max_concurrent,
            },
            None => self.max_concurrent,
        };
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                state: AtomicU64::new(limit as u64),
                slots: Semaphore::new(0),
                max_concurrent: self.max_concurrent,
                // more waiters than the state word counts is no limit in practice
                max_queue: self.max_queue.min(MAX_SLOTS) as u64,
                max_wait: self.max_wait,
                limit: AtomicUsize::new(limit),
                debt: std::sync::atomic::AtomicU64::new(0),
                adaptive,
            }),
        })
    }
}

impl Inner {
    /// Takes a free slot without waiting: from the counter, or one handed to waiters that
    /// left before taking it.
    #[inline]
    fn try_take(&self) -> bool {
        let taken = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & FREE > 0).then(|| s - 1)
            })
            .is_ok();
        taken || self.take_stranded()
    }

    /// A slot left in the semaphore by a waiter that gave up, if nobody waits for it.
    #[cold]
    fn take_stranded(&self) -> bool {
        if self.state.load(Ordering::Acquire) >= WAITER {
            return false;
        }
        match self.slots.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// An adaptive bulkhead's release: the slot pays the debt of a lowered limit first,
    /// else goes back. (Only adaptive limits go down, so a fixed bulkhead calls
    /// [`give_back`](Self::give_back) directly.)
    fn release(&self) {
        if self.debt.load(std::sync::atomic::Ordering::Relaxed) > 0 && self.retire() {
            return;
        }
        self.give_back();
    }

    /// Gives a slot back: to the counter if nobody waits, else to the waiters.
    #[inline]
    fn give_back(&self) {
        let to_counter = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s < WAITER).then_some(s + 1)
            })
            .is_ok();
        if !to_counter {
            self.slots.add_permits(1);
        }
    }

    /// Retires a slot given back to pay the debt of a lowered limit.
    #[cold]
    fn retire(&self) -> bool {
        use std::sync::atomic::Ordering as O;
        self.debt
            .fetch_update(O::AcqRel, O::Acquire, |d| d.checked_sub(1))
            .is_ok()
    }

    /// Moves the limit to `new` (within `1..=max_concurrent`): a higher one adds free
    /// slots (after paying any debt), a lower one is a debt that free slots pay now and
    /// slots in use pay as they come back.
    fn set_limit(&self, new: usize) -> usize {
        use std::sync::atomic::Ordering as O;
        let new = new.clamp(1, self.max_concurrent);
        let old = self.limit.swap(new, O::AcqRel);
        if new > old {
            for _ in old..new {
                self.release();
            }
        } else if new < old {
            self.debt.fetch_add((old - new) as u64, O::AcqRel);
            // free slots pay at once
            while self.debt.load(O::Acquire) > 0 {
                let took = self
                    .state
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                        (s & FREE > 0).then(|| s - 1)
                    })
                    .is_ok();
                if !took {
                    break;
                }
                if !self.retire() {
                    // another release paid it meanwhile: the slot goes back
                    self.give_back();
                    break;
                }
            }
        }
        old
    }

    /// Gives a call's slot back and, for an adaptive limit, feeds the call's outcome (if
    /// it has one) to the algorithm.
    #[inline]
    pub(crate) fn release_with(&self, outcome: Option<(Outcome, Duration)>) {
        if self.adaptive.is_none() {
            self.give_back();
            return;
        }
        use std::sync::atomic::Ordering as O;
        // Calls in flight, this one included: slots neither free in the counter nor
        // retired. (A slot handed to a waiter that left counts as in flight until the next
        // caller takes it: rare, and only a sample's estimate.)
        let limit = self.limit.load(O::Acquire);
        let debt = self.debt.load(O::Acquire);
        let free = (self.state.load(Ordering::Acquire) & FREE) as usize;
        let in_flight = (limit + debt as usize).saturating_sub(free);
        if debt == 0 || !self.retire() {
            self.give_back();
        }
        self.sample(limit, in_flight, outcome);
    }

    /// Feeds a finished call to the adaptive algorithm, if any: a sample the algorithm
    /// [ignores](LimitAlgorithm::ignores) at the `limit` read before the release goes no
    /// further (no lock).
    #[inline]
    fn sample(&self, limit: usize, in_flight: usize, outcome: Option<(Outcome, Duration)>) {
        let (Some(adaptive), Some((outcome, rtt))) = (&self.adaptive, outcome) else {
            return;
        };
        let sample = Sample {
            rtt,
            in_flight,
            dropped: outcome == Outcome::Failure,
        };
        if adaptive.judge.ignores(limit, &sample) {
            return;
        }
        self.update(adaptive, sample);
    }

    /// Applies a sample under the algorithm's lock (skipped if another is being applied).
    #[inline(never)]
    fn update(&self, adaptive: &Adaptive, sample: Sample) {
        let Ok(mut algorithm) = adaptive.algorithm.try_lock() else {
            return;
        };
        let limit = self.limit.load(std::sync::atomic::Ordering::Acquire);
        let next = algorithm.update(limit, sample);
        if next.clamp(1, self.max_concurrent) == limit {
            return;
        }
        // applied under the lock, so changes land in the order they were decided
        let old = self.set_limit(next);
        let now = self.limit.load(std::sync::atomic::Ordering::Acquire);
        drop(algorithm);
        if let Some(f) = &adaptive.on_change {
            f(old, now);
        }
    }

    /// Whether calls are timed: an adaptive algorithm reads their latency.
    #[inline]
    fn times_calls(&self) -> bool {
        self.adaptive.as_ref().is_some_and(|a| a.uses_rtt)
    }

    /// The clock timing this bulkhead's layer calls, if it times them.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn call_clock(&self) -> Option<&SharedClock> {
        self.adaptive
            .as_ref()
            .filter(|a| a.uses_rtt)
            .map(|a| &a.clock)
    }

    /// A queued caller's wait for a slot handed over by a release, within `max_wait`:
    /// `true` once it holds one. (The caller's place in the queue is its own guard.)
    async fn wait_handed(&self) -> bool {
        // A wait too long to ever end is no limit (and no timer).
        let got = match crate::engine::context::within_horizon(self.max_wait) {
            Some(d) => tokio::time::timeout(d, self.slots.acquire())
                .await
                .ok()
                .and_then(Result::ok),
            None => self.slots.acquire().await.ok(),
        };
        match got {
            Some(p) => {
                p.forget();
                true
            }
            None => false,
        }
    }

    /// Takes a free slot, or joins the queue if it has room: one decision on the state
    /// word, so a slot given back meanwhile is seen.
    fn admit(&self) -> Admit<'_> {
        if self.try_take() {
            return Admit::Slot;
        }
        let mut queued = false;
        let decided = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                if s & FREE > 0 {
                    queued = false;
                    Some(s - 1)
                } else if s / WAITER < self.max_queue {
                    queued = true;
                    Some(s + WAITER)
                } else {
                    None
                }
            })
            .is_ok();
        match (decided, queued) {
            (true, false) => Admit::Slot,
            (true, true) => Admit::Queued(Queued(self)),
            // the queue is full: a slot stranded by a waiter that left is still free
            (false, _) if self.take_stranded() => Admit::Slot,
            (false, _) => Admit::Full,
        }
    }
}

/// What a caller gets at once: a slot, a place in the queue, or nothing.
enum Admit<'a> {
    Slot,
    Queued(Queued<'a>),
    Full,
}

/// Leaves the queue when dropped (also when the waiting future is cancelled).
struct Queued<'a>(&'a Inner);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(WAITER, Ordering::AcqRel);
    }
}

impl Guard for Bulkhead {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "bulkhead"
    }

    /// Slots in use and calls queued.
    fn gauges(&self) -> Option<GuardGauges> {
        Some(GuardGauges::bulkhead(
            self.in_flight() as u64,
            self.queued() as u64,
        ))
    }

    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        let queued = match self.inner.admit() {
            Admit::Slot => return Acquire::Ready(Ok(Permit::new(self, 0))),
            Admit::Full => return Acquire::Ready(Err(Rejection::BulkheadFull)),
            Admit::Queued(queued) => queued,
        };
        Acquire::Wait(Box::pin(async move {
            let _queued = queued;
            if self.inner.wait_handed().await {
                Ok(Permit::new(self, 0))
            } else {
                Err(Rejection::BulkheadFull)
            }
        }))
    }

    fn on_release(&self, _token: u64, outcome: Option<(Outcome, Duration)>) {
        self.inner.release_with(outcome);
    }

    /// Only an adaptive bulkhead whose algorithm reads latencies times its calls.
    fn measures_duration(&self) -> bool {
        self.inner.times_calls()
    }

    /// Blocking callers never queue: with no free slot they get
    /// [`Rejection::BulkheadFull`].
    fn acquire_now(&self, _ctx: &Context) -> Result<Permit<'_>, Rejection> {
        if self.inner.try_take() {
            Ok(Permit::new(self, 0))
        } else {
            Err(Rejection::BulkheadFull)
        }
    }
}

/// The slot protocol without tokio's wait, for the loom model (`tests/loom_bulkhead.rs`):
/// not public API.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model {
    use super::{Admit, Bulkhead};

    /// What [`admit`] got.
    pub enum Got<'a> {
        /// A slot, to give back with [`release`].
        Slot,
        /// A place in the queue: dropping it leaves the queue.
        Waiting(Place<'a>),
        /// Rejected.
        Full,
    }

    /// A place in the queue; dropping it leaves the queue.
    pub struct Place<'a>(#[allow(dead_code)] super::Queued<'a>);

    /// Takes a slot or a place in the queue, as `Guard::acquire` does before it waits.
    pub fn admit(b: &Bulkhead) -> Got<'_> {
        match b.inner.admit() {
            Admit::Slot => Got::Slot,
            Admit::Queued(q) => Got::Waiting(Place(q)),
            Admit::Full => Got::Full,
        }
    }

    /// Gives a slot back, as a permit's release does.
    pub fn release(b: &Bulkhead) {
        b.inner.give_back();
    }

    /// A waiter woken with a handed slot takes it (`true`), as the wait does.
    pub fn take_handed(b: &Bulkhead) -> bool {
        match b.inner.slots.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// `(free, handed to waiters, queued)` now.
    pub fn state(b: &Bulkhead) -> (usize, usize, usize) {
        (
            b.in_flight_parts().0,
            b.inner.slots.available_permits(),
            b.queued(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_slots() {
        let e = Bulkhead::builder(0).build().unwrap_err();
        assert_eq!(e.field(), "bulkhead.max_concurrent");
    }

    #[test]
    fn slot_released_on_record_and_on_drop() {
        let b = Bulkhead::builder(1).build().unwrap();
        let ctx = Context::new();
        let Acquire::Ready(Ok(p)) = b.acquire(&ctx) else {
            panic!("first call must be admitted")
        };
        assert_eq!(b.in_flight(), 1);
        assert!(matches!(
            b.acquire(&ctx),
            Acquire::Ready(Err(Rejection::BulkheadFull))
        ));
        p.record(Outcome::Success, Duration::ZERO);
        assert_eq!(b.in_flight(), 0);
        let Acquire::Ready(Ok(p)) = b.acquire(&ctx) else {
            panic!("slot must be free again")
        };
        drop(p);
        assert_eq!(b.in_flight(), 0);
    }
}
