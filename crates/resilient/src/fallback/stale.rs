//! Stale-cache fallback: the last good answer per key, served (and marked as stale) when the
//! call for that key fails.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::clock::{SharedClock, system_clock};
use crate::engine::error::{ConfigError, Error};

/// An answer from a [`StaleCache`]: fresh from the call, or the last good one kept for the
/// key, with its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The call succeeded now.
    Fresh(T),
    /// The call failed; this is the last good answer for the key, `age` old.
    Stale {
        /// The kept answer.
        value: T,
        /// How long ago it was fresh.
        age: Duration,
    },
}

impl<T> Answer<T> {
    /// Whether the call failed and a kept answer stands in.
    ///
    /// ```
    /// use resilient::fallback::Answer;
    /// assert!(!Answer::Fresh(1).is_stale());
    /// ```
    pub fn is_stale(&self) -> bool {
        matches!(self, Answer::Stale { .. })
    }

    /// The value, fresh or not.
    ///
    /// ```
    /// use resilient::fallback::Answer;
    /// use std::time::Duration;
    /// assert_eq!(Answer::Stale { value: 3, age: Duration::from_secs(1) }.into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            Answer::Fresh(v) | Answer::Stale { value: v, .. } => v,
        }
    }
}

/// A stale answer was served: for which key's call, its age, and the failure it covers.
#[derive(Debug)]
#[non_exhaustive]
pub struct StaleEvent<'a, K, E> {
    /// The key.
    pub key: &'a K,
    /// How old the answer served is.
    pub age: Duration,
    /// The call's failure.
    pub failure: &'a Error<E>,
}

type Observer<K, E> = Arc<dyn Fn(&StaleEvent<'_, K, E>) + Send + Sync>;

struct Entries<K, T> {
    /// Per key: the value, when it was stored, and its place in `order`.
    map: HashMap<K, (T, Duration, u64)>,
    /// Oldest stores first, for eviction.
    order: BTreeMap<u64, K>,
    next: u64,
}

/// The last good answer per key, kept for at most `max_staleness` and for at most
/// `max_entries` keys (the least recently refreshed are dropped first). Run a call through
/// [`call`](StaleCache::call): a success is stored and returned as [`Answer::Fresh`]; a
/// failure returns the kept answer as [`Answer::Stale`] if one is young enough, else the
/// failure. A cheap handle: clones share the entries.
///
/// ```
/// use resilient::fallback::{Answer, StaleCache};
/// use resilient::{Error, ManualClock};
/// use std::sync::Arc;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = ManualClock::new();
/// let cache = StaleCache::builder(1000, Duration::from_secs(300))
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
/// let fresh = cache.call("eur", async { Ok::<_, Error<()>>(1.08) }).await.unwrap();
/// assert_eq!(fresh, Answer::Fresh(1.08));
/// clock.advance(Duration::from_secs(60));
/// let stale = cache.call("eur", async { Err(Error::Inner(())) }).await.unwrap();
/// assert_eq!(stale, Answer::Stale { value: 1.08, age: Duration::from_secs(60) });
/// # }
/// ```
pub struct StaleCache<K, T, E = ()> {
    entries: Arc<Mutex<Entries<K, T>>>,
    max_entries: usize,
    max_staleness: Duration,
    clock: SharedClock,
    observer: Option<Observer<K, E>>,
}

impl<K, T, E> Clone for StaleCache<K, T, E> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            max_entries: self.max_entries,
            max_staleness: self.max_staleness,
            clock: self.clock.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<K, T, E> fmt::Debug for StaleCache<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCache")
            .field("max_entries", &self.max_entries)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

/// Configures a [`StaleCache`].
pub struct StaleCacheBuilder<K, T, E> {
    max_entries: usize,
    max_staleness: Duration,
    clock: Option<SharedClock>,
    observer: Option<Observer<K, E>>,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<K, T, E> fmt::Debug for StaleCacheBuilder<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCacheBuilder")
            .field("max_entries", &self.max_entries)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

impl<K, T, E> StaleCache<K, T, E> {
    /// A cache of at most `max_entries` keys, each answer served for at most
    /// `max_staleness` after it was fresh.
    ///
    /// ```
    /// use resilient::fallback::StaleCache;
    /// use std::time::Duration;
    /// let cache: StaleCache<&str, u32> =
    ///     StaleCache::builder(100, Duration::from_secs(60)).build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn builder(max_entries: usize, max_staleness: Duration) -> StaleCacheBuilder<K, T, E> {
        StaleCacheBuilder {
            max_entries,
            max_staleness,
            clock: None,
            observer: None,
            _value: std::marker::PhantomData,
        }
    }
}

impl<K, T, E> StaleCacheBuilder<K, T, E> {
    /// The clock ages are measured on (default: the system clock, which follows tokio's
    /// paused time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Called each time a stale answer is served (count degraded answers).
    pub fn on_stale(
        mut self,
        observer: impl Fn(&StaleEvent<'_, K, E>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Validates and builds: at least one entry, and a staleness above zero.
    ///
    /// ```
    /// use resilient::fallback::StaleCache;
    /// use std::time::Duration;
    /// let e = StaleCache::<u8, u8>::builder(0, Duration::from_secs(1)).build().unwrap_err();
    /// assert_eq!(e.field(), "stale_cache.max_entries");
    /// ```
    pub fn build(self) -> Result<StaleCache<K, T, E>, ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::new(
                "stale_cache.max_entries",
                "must be at least 1",
            ));
        }
        if self.max_staleness.is_zero() {
            return Err(ConfigError::new(
                "stale_cache.max_staleness",
                "must be above zero (a zero staleness never serves a kept answer)",
            ));
        }
        Ok(StaleCache {
            entries: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                order: BTreeMap::new(),
                next: 0,
            })),
            max_entries: self.max_entries,
            max_staleness: self.max_staleness,
            clock: self.clock.unwrap_or_else(system_clock),
            observer: self.observer,
        })
    }
}

impl<K, T, E> StaleCache<K, T, E>
where
    K: Hash + Eq + Clone,
    T: Clone,
{
    /// Runs `call` for `key`: a success is kept and returned fresh; a failure (other than
    /// the caller's cancellation) returns the kept answer if it is at most `max_staleness`
    /// old, else the failure.
    pub async fn call<Fut>(&self, key: K, call: Fut) -> Result<Answer<T>, Error<E>>
    where
        Fut: Future<Output = Result<T, Error<E>>>,
    {
        match call.await {
            Ok(value) => {
                self.store(key, value.clone());
                Ok(Answer::Fresh(value))
            }
            Err(failure) if matches!(failure, Error::Cancelled) => Err(failure),
            Err(failure) => match self.kept(&key) {
                Some((value, age)) => {
                    if let Some(observer) = &self.observer {
                        observer(&StaleEvent {
                            key: &key,
                            age,
                            failure: &failure,
                        });
                    }
                    Ok(Answer::Stale { value, age })
                }
                None => Err(failure),
            },
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, T>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, key: K, value: T) {
        let now = self.clock.now();
        let mut e = self.lock();
        let seq = e.next;
        e.next += 1;
        if let Some((_, _, old)) = e.map.insert(key.clone(), (value, now, seq)) {
            e.order.remove(&old);
        }
        e.order.insert(seq, key);
        while e.map.len() > self.max_entries {
            let Some((_, oldest)) = e.order.pop_first() else {
                break;
            };
            e.map.remove(&oldest);
        }
    }

    fn kept(&self, key: &K) -> Option<(T, Duration)> {
        let now = self.clock.now();
        let mut e = self.lock();
        let (value, at, seq) = e.map.get(key)?.clone();
        let age = now.saturating_sub(at);
        if age > self.max_staleness {
            // too old to serve ever again
            e.map.remove(key);
            e.order.remove(&seq);
            return None;
        }
        Some((value, age))
    }
}
