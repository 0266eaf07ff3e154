//! Keyed limiters: one packed state per key (user, API key, IP), with bounded memory.
//!
//! Keys live in a sharded hash table (one `RwLock` per shard; the admission itself is a CAS
//! on the key's `AtomicU64`, under the shard's *read* lock). Memory is bounded two ways:
//!
//! - **idle keys expire**: a key whose state has fully recovered (its limiter is full again)
//!   is indistinguishable from a key never seen, so forgetting it loses nothing. Such keys
//!   are dropped by [`KeyedLimiter::retain_recent`] and automatically whenever a shard is
//!   full;
//! - **hard cap** ([`KeyedLimiterBuilder::max_keys`], split evenly over the shards): when a
//!   shard is full and holds no idle key, the sixteenth of its keys that would recover
//!   soonest (smallest time-to-idle, i.e. the least information lost) is evicted in one
//!   pass, so the eviction scan is amortised over the following inserts. An evicted key
//!   that returns starts with a full limiter, so under sustained pressure from more active
//!   keys than the cap, a key can get more than its share; size the cap above the number of
//!   keys active in one refill period.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hashbrown::HashTable;

use super::algorithm::Algorithm;
use super::decision::{CostError, Decision};
use super::time::Time;
use crate::{ConfigError, SharedClock, system_clock};

struct Entry<K> {
    key: K,
    state: AtomicU64,
}

/// The bytes one key occupies in a [`KeyedLimiter`] table slot: the key, its packed state,
/// plus one control byte, before the hash table's load factor (at most 7/8 full).
///
/// ```
/// // A u64 key: 8 (key) + 8 (state) + 1 (control byte).
/// assert_eq!(resilient::ratelimit::bytes_per_key::<u64>(), 17);
/// ```
pub const fn bytes_per_key<K>() -> usize {
    std::mem::size_of::<Entry<K>>() + 1
}

/// Per-key limiters sharing one algorithm configuration.
///
/// ```
/// use resilient::ManualClock;
/// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_second(2)).unwrap())
///     .max_keys(10_000)
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
/// assert!(per_user.check(&"ada", 2).unwrap().allowed);
/// assert!(!per_user.check(&"ada", 1).unwrap().allowed);
/// assert!(per_user.check(&"bob", 1).unwrap().allowed); // separate state
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(per_user.retain_recent(), 0); // both recovered: forgotten
/// assert_eq!(per_user.len(), 0);
/// ```
pub struct KeyedLimiter<K, A, S = RandomState> {
    alg: A,
    shards: Box<[RwLock<HashTable<Entry<K>>>]>,
    hasher: S,
    per_shard: usize,
    clock: Time,
}

/// Configures a [`KeyedLimiter`].
pub struct KeyedLimiterBuilder<A, S = RandomState> {
    alg: A,
    max_keys: usize,
    shards: usize,
    hasher: S,
    clock: Time,
}

impl<A: fmt::Debug, S> fmt::Debug for KeyedLimiterBuilder<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiterBuilder")
            .field("alg", &self.alg)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl<K, A: fmt::Debug, S> fmt::Debug for KeyedLimiter<K, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("alg", &self.alg)
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl<A: Algorithm> KeyedLimiter<(), A> {
    /// Starts a builder (1,000,000 keys at most by default, 16 shards). The key type is
    /// chosen by [`KeyedLimiterBuilder::build`].
    pub fn builder(alg: A) -> KeyedLimiterBuilder<A> {
        KeyedLimiterBuilder {
            alg,
            max_keys: 1_000_000,
            shards: 16,
            hasher: RandomState::new(),
            clock: Time::Shared(system_clock()),
        }
    }
}

impl<A: Algorithm, S: BuildHasher> KeyedLimiterBuilder<A, S> {
    /// The hard cap on keys held (default 1,000,000).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Number of shards (a power of two, default 16).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// The clock (default [`crate::system_clock`]).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Time::Shared(clock);
        self
    }

    /// Uses a [`FastClock`](super::FastClock), read inline (the fastest time source; it
    /// does not follow tokio's paused time).
    #[cfg(feature = "quanta")]
    pub fn fast_clock(mut self) -> Self {
        self.clock = Time::Fast(super::FastClock::new());
        self
    }

    /// The hasher for keys (default: std's DoS-resistant `RandomState`).
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> KeyedLimiterBuilder<A, S2> {
        KeyedLimiterBuilder {
            alg: self.alg,
            max_keys: self.max_keys,
            shards: self.shards,
            hasher,
            clock: self.clock,
        }
    }

    /// Validates and builds.
    pub fn build<K: Hash + Eq + Clone>(self) -> Result<KeyedLimiter<K, A, S>, ConfigError> {
        if self.shards == 0 || !self.shards.is_power_of_two() {
            return Err(ConfigError::new(
                "keyed_limiter.shards",
                format!("must be a power of two (got {})", self.shards),
            ));
        }
        if self.max_keys < self.shards {
            return Err(ConfigError::new(
                "keyed_limiter.max_keys",
                format!("must be at least the number of shards ({})", self.shards),
            ));
        }
        let per_shard = self.max_keys / self.shards;
        Ok(KeyedLimiter {
            alg: self.alg,
            shards: (0..self.shards)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            hasher: self.hasher,
            per_shard,
            clock: self.clock,
        })
    }
}

impl<K: Hash + Eq + Clone, A: Algorithm, S: BuildHasher> KeyedLimiter<K, A, S> {
    /// The shared algorithm (its configuration can change at runtime).
    pub fn algorithm(&self) -> &A {
        &self.alg
    }

    /// Decides `cost` units for `key` now, consuming them if allowed.
    pub fn check(&self, key: &K, cost: u64) -> Result<Decision, CostError> {
        let max = self.alg.max_cost();
        if cost > max {
            return Err(CostError { cost, max });
        }
        Ok(self.check_at(key, self.clock.nanos(), cost))
    }

    /// The fast path: admits `cost` units for `key` now, or returns the time until they
    /// would be admitted (`Duration::MAX` if `cost` exceeds the capacity).
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap()).build().unwrap();
    /// assert!(k.allow(&"10.0.0.1", 1).is_ok());
    /// assert!(k.allow(&"10.0.0.1", 1).is_err());
    /// ```
    #[inline]
    pub fn allow(&self, key: &K, cost: u64) -> Result<(), Duration> {
        if cost > self.alg.max_cost() {
            return Err(Duration::MAX);
        }
        let now = self.clock.nanos();
        let hash = self.hasher.hash_one(key);
        {
            let table = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = table.find(hash, |e| e.key == *key) {
                return self
                    .admit(&e.state, now, cost)
                    .map_err(Duration::from_nanos);
            }
        }
        let d = self.check_at(key, now, cost);
        if d.allowed {
            Ok(())
        } else {
            Err(d.retry_after)
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry<K>>> {
        &self.shards[(hash >> 48) as usize & (self.shards.len() - 1)]
    }

    #[inline]
    fn admit(&self, state: &AtomicU64, now: u64, cost: u64) -> Result<(), u64> {
        let mut s = state.load(Ordering::Relaxed);
        loop {
            let next = self.alg.admit(s, now, cost)?;
            if next == s {
                return Ok(());
            }
            match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(a) => s = a,
            }
        }
    }

    /// Decides `cost` for `key` at `now` nanoseconds (no cost check).
    pub fn check_at(&self, key: &K, now: u64, cost: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        {
            let table = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = table.find(hash, |e| e.key == *key) {
                return self.cas(&e.state, now, cost);
            }
        }
        let mut table = shard.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = table.find(hash, |e| e.key == *key) {
            return self.cas(&e.state, now, cost);
        }
        let (state, d) = self.alg.step(0, now, cost);
        if state == 0 {
            return d; // nothing to remember
        }
        if table.len() >= self.per_shard {
            self.make_room(&mut table, now);
        }
        table.insert_unique(
            hash,
            Entry {
                key: key.clone(),
                state: AtomicU64::new(state),
            },
            |e| self.hasher.hash_one(&e.key),
        );
        d
    }

    #[inline]
    fn cas(&self, state: &AtomicU64, now: u64, cost: u64) -> Decision {
        let mut s = state.load(Ordering::Relaxed);
        while let Ok(next) = self.alg.admit(s, now, cost) {
            if next == s {
                break;
            }
            match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(a) => s = a,
            }
        }
        self.alg.step(s, now, cost).1
    }

    fn make_room(&self, table: &mut HashTable<Entry<K>>, now: u64) {
        let ttl = |e: &Entry<K>| self.alg.time_to_idle(e.state.load(Ordering::Relaxed), now);
        table.retain(|e| ttl(e) > 0);
        if table.len() < self.per_shard {
            return;
        }
        // Evict a batch (1/16 of the shard) of the keys closest to recovery, so that the
        // scan is paid once per batch of new keys, not once per new key.
        let mut ttls: Vec<u64> = table.iter().map(ttl).collect();
        let k = (self.per_shard / 16).clamp(1, ttls.len()) - 1;
        let (_, &mut threshold, _) = ttls.select_nth_unstable(k);
        table.retain(|e| ttl(e) > threshold);
    }

    /// Forgets every key whose limiter has fully recovered; returns the keys kept.
    pub fn retain_recent(&self) -> usize {
        let now = self.clock.nanos();
        self.shards
            .iter()
            .map(|s| {
                let mut t = s.write().unwrap_or_else(|e| e.into_inner());
                t.retain(|e| self.alg.time_to_idle(e.state.load(Ordering::Relaxed), now) > 0);
                t.len()
            })
            .sum()
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hard cap on keys (rounded down to a multiple of the shard count).
    pub fn max_keys(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}
