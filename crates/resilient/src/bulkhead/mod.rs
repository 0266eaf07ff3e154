//! Bulkhead: a cap on concurrent calls, with an optional bounded wait queue.
//!
//! Slots are RAII permits: a finished, failed or cancelled call gives its slot back, and a
//! cancelled waiter leaves the queue.
//!
//! Free slots live in one atomic counter: taking one is a compare-and-swap, and giving one
//! back while nobody waits is an atomic add (no lock). Only when callers queue does a
//! returned slot go through tokio's semaphore, which wakes the longest waiter. The
//! hand-over is race-free: a releaser adds its slot to the counter and then looks for
//! waiters, and a waiter joins the queue and then looks at the counter (both sequentially
//! consistent), so at least one of them sees the other and the slot is never stranded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::context::Context;
use crate::engine::error::{ConfigError, Error};
use crate::engine::guard::{Acquire, Guard, Invalid, Permit, Rejection};
use crate::engine::outcome::Outcome;

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
    /// Free slots not handed to a waiter.
    free: AtomicUsize,
    /// Slots handed to waiters (starts empty; FIFO wake-ups).
    slots: Semaphore,
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Option<Duration>,
    queued: AtomicUsize,
}

/// Configures a [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadBuilder {
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Option<Duration>,
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
        let free = self.inner.free.load(Ordering::Acquire) + self.inner.slots.available_permits();
        self.inner.max_concurrent.saturating_sub(free)
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }
}

/// What [`PipelineBuilder::bulkhead`](crate::PipelineBuilder::bulkhead) accepts: a built
/// bulkhead (by value or by reference; clones share slots) or a builder (its validation
/// error fails the pipeline's `build`).
pub trait IntoBulkhead {
    /// The bulkhead as a shareable guard.
    fn into_guard(self) -> Arc<dyn Guard>;
}

impl IntoBulkhead for Bulkhead {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self)
    }
}

impl IntoBulkhead for &Bulkhead {
    fn into_guard(self) -> Arc<dyn Guard> {
        Arc::new(self.clone())
    }
}

impl IntoBulkhead for BulkheadBuilder {
    fn into_guard(self) -> Arc<dyn Guard> {
        match self.build() {
            Ok(b) => Arc::new(b),
            Err(e) => Arc::new(Invalid::new("bulkhead", e)),
        }
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

    /// Validates and builds.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        if self.max_concurrent == 0 || self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "bulkhead.max_concurrent",
                format!(
                    "must be between 1 and {} (got {})",
                    Semaphore::MAX_PERMITS,
                    self.max_concurrent
                ),
            ));
        }
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                free: AtomicUsize::new(self.max_concurrent),
                slots: Semaphore::new(0),
                max_concurrent: self.max_concurrent,
                max_queue: self.max_queue,
                max_wait: self.max_wait,
                queued: AtomicUsize::new(0),
            }),
        })
    }
}

impl Inner {
    /// Takes a free slot without waiting.
    #[inline]
    fn try_take(&self) -> bool {
        let mut free = self.free.load(Ordering::SeqCst);
        while free > 0 {
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => free = now,
            }
        }
        false
    }

    /// Gives a slot back: to the counter, and on to the semaphore if somebody waits.
    #[inline]
    fn give_back(&self) {
        self.free.fetch_add(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.hand_over();
        }
    }

    /// Moves a free slot (if one is still free) to the waiters.
    #[cold]
    fn hand_over(&self) {
        if self.try_take() {
            self.slots.add_permits(1);
        }
    }

    /// After the last waiter left: slots handed to waiters that gave up (timed out or were
    /// cancelled) go back to the counter, unless new waiters came.
    #[cold]
    fn reclaim(&self) {
        while self.queued.load(Ordering::SeqCst) == 0 {
            match self.slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    self.give_back();
                }
                Err(_) => break,
            }
        }
    }
}

/// Leaves the queue when dropped (also when the waiting future is cancelled); the last
/// waiter out reclaims slots handed to waiters that are gone.
struct Queued<'a>(&'a Inner);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.0.queued.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.reclaim();
        }
    }
}

impl Guard for Bulkhead {
    fn name(&self) -> &'static str {
        "bulkhead"
    }

    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        if self.inner.try_take() {
            return Acquire::Ready(Ok(Permit::new(self, 0)));
        }
        let admitted = self
            .inner
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < self.inner.max_queue).then_some(q + 1)
            })
            .is_ok();
        if !admitted {
            return Acquire::Ready(Err(Rejection::BulkheadFull));
        }
        let queued = Queued(&self.inner);
        // A slot given back between the first look and joining the queue went to the
        // counter (its releaser saw no waiter): take it now.
        if self.inner.try_take() {
            drop(queued);
            return Acquire::Ready(Ok(Permit::new(self, 0)));
        }
        Acquire::Wait(Box::pin(async move {
            let _queued = queued;
            // A wait too long to ever end is no limit (and no timer).
            let got = match crate::engine::context::within_horizon(self.inner.max_wait) {
                Some(d) => tokio::time::timeout(d, self.inner.slots.acquire())
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => self.inner.slots.acquire().await.ok(),
            };
            match got {
                Some(p) => {
                    p.forget();
                    Ok(Permit::new(self, 0))
                }
                None => Err(Rejection::BulkheadFull),
            }
        }))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {
        self.inner.give_back();
    }

    fn measures_duration(&self) -> bool {
        false
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
