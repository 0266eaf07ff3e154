//! Keyed limiters: one packed state per key (user, API key, IP), with bounded memory.
//!
//! A key may also carry a **quota** of several limits ([`KeyedLimiter::quota`]: say 10/s
//! *and* 10,000/day per API key), one packed state per limit: a request is admitted only if
//! every limit admits it, and if one refuses, nothing is consumed from the others.
//!
//! Keys live in a sharded hash table (one `RwLock` per shard; the admission itself is a CAS
//! on the key's `AtomicU64`, under the shard's *read* lock). Memory is bounded two ways:
//!
//! - **idle keys expire**: a key whose state has fully recovered (its limiter is full again)
//!   is indistinguishable from a key never seen, so forgetting it loses nothing. Expiry is
//!   not driven by time alone: such keys stay in memory (harmlessly) until
//!   [`KeyedLimiter::retain_recent`] runs, which also shrinks the tables after a spike;
//!   call it periodically, or let [`KeyedLimiter::spawn_sweeper`] do it on tokio. A full
//!   shard also drops its idle keys before it evicts anything;
//! - **hard cap** ([`KeyedLimiterBuilder::max_keys`], split evenly over the shards): when a
//!   shard is full and holds no idle key, exactly a sixteenth of its keys (at least one) is
//!   evicted in one pass, so the eviction scan is amortised over the following inserts.
//!   The keys evicted are those whose loss matters least: the smallest fraction of a limit
//!   in use (what the key could take again if it came back fresh), then the soonest to
//!   recover, ties broken by the key's hash. Keys that tie (a fixed window's keys all
//!   recover at the window's end) are evicted only as far as the batch needs, so limited
//!   keys stay limited while lighter keys remain. An evicted key that returns starts with
//!   a full limiter, so under sustained pressure from more active keys than the cap, a key
//!   can get more than its share; size the cap above the number of keys active in one
//!   refill period.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hashbrown::HashTable;

use super::algorithm::Algorithm;
use super::decision::{CostError, Decision, Nanos, PollPause, Rate, nanos, wait};
use super::guard::{Mode, Verdict};
use super::quota;
use crate::engine::clock::{FastClock, SharedClock, Time};
use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard, Permit, Rejection};
use crate::engine::outcome::Outcome;

/// The longest period [`KeyedLimiter::spawn_sweeper`] sweeps at (a 365-day year); longer
/// ones are clamped to it.
pub const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(365 * 86_400);

struct Entry<K, const N: usize> {
    key: K,
    state: [AtomicU64; N],
}

/// The bytes one key occupies in a [`KeyedLimiter`] table slot (one limit per key): the
/// key, its packed state, plus one control byte, before the hash table's load factor (at
/// most 7/8 full). A quota of `n` limits adds 8 bytes per extra limit.
///
/// ```
/// // A u64 key: 8 (key) + 8 (state) + 1 (control byte).
/// assert_eq!(resilient::ratelimit::bytes_per_key::<u64>(), 17);
/// ```
pub const fn bytes_per_key<K>() -> usize {
    std::mem::size_of::<Entry<K, 1>>() + 1
}

/// Per-key limiters sharing one configuration: one algorithm ([`KeyedLimiter::builder`])
/// or a quota of `N` limits per key ([`KeyedLimiter::quota`]).
///
/// Use it directly ([`KeyedLimiter::check`], [`KeyedLimiter::allow`]), as a tower layer
/// that reads the key from each request (`KeyedLimiter::layer`, feature `tower`), or, over
/// `u64` keys, as a pipeline guard (`Pipeline::builder().rate_limit(keyed)`) that limits
/// each call under the key it gives with [`Call::key`](crate::Call::key) (see the `Guard`
/// implementation below).
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
/// assert!(per_user.check_n(&"ada", 2).unwrap().allowed);
/// assert!(!per_user.check_n(&"ada", 1).unwrap().allowed);
/// assert!(per_user.check_n(&"bob", 1).unwrap().allowed); // separate state
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(per_user.retain_recent(), 0); // both recovered: forgotten
/// assert_eq!(per_user.len(), 0);
/// ```
pub struct KeyedLimiter<K, A, S = RandomState, const N: usize = 1> {
    algs: [A; N],
    shards: Box<[RwLock<HashTable<Entry<K, N>>>]>,
    hasher: S,
    per_shard: usize,
    clock: Time,
    mode: Mode,
}

/// Configures a [`KeyedLimiter`].
pub struct KeyedLimiterBuilder<A, S = RandomState, const N: usize = 1> {
    algs: [A; N],
    max_keys: usize,
    shards: usize,
    hasher: S,
    clock: Time,
    mode: Mode,
}

impl<A: fmt::Debug, S, const N: usize> fmt::Debug for KeyedLimiterBuilder<A, S, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiterBuilder")
            .field("algs", &self.algs)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<K, A: fmt::Debug, S, const N: usize> fmt::Debug for KeyedLimiter<K, A, S, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("algs", &self.algs)
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<A: Algorithm> KeyedLimiter<(), A> {
    /// Starts a builder (1,000,000 keys at most by default, 16 shards). The key type is
    /// chosen by [`KeyedLimiterBuilder::build`].
    pub fn builder(alg: A) -> KeyedLimiterBuilder<A> {
        KeyedLimiter::quota([alg])
    }
}

impl<A: Algorithm, const N: usize> KeyedLimiter<(), A, RandomState, N> {
    /// Starts a builder for a **quota per key**: every key gets one state per limit, and a
    /// request is admitted only if all `N` limits admit it (then it is consumed from all);
    /// if any refuses, none is consumed. [`KeyedLimiter::check_quota`] reports each limit,
    /// [`KeyedLimiter::check`] the binding one.
    ///
    /// The limits share one algorithm type; to mix algorithms, box them
    /// (`[Box<dyn Algorithm>; N]`).
    ///
    /// ```
    /// use resilient::ManualClock;
    /// use resilient::ratelimit::{Algorithm, FixedWindow, Gcra, KeyedLimiter, Rate};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// // Per API key: 10 per second and 10,000 per day.
    /// let per_key = KeyedLimiter::quota([
    ///     Gcra::new(Rate::per_second(10)).unwrap(),
    ///     Gcra::new(Rate::per_day(10_000)).unwrap(),
    /// ])
    /// .clock(Arc::new(clock.clone()))
    /// .build()
    /// .unwrap();
    /// let v = per_key.check_quota(&"key-1", 1).unwrap();
    /// assert!(v.allowed);
    /// assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (9, 9_999));
    ///
    /// // Mixed algorithms, boxed.
    /// let mixed = KeyedLimiter::quota([
    ///     Box::new(Gcra::new(Rate::per_second(10)).unwrap()) as Box<dyn Algorithm>,
    ///     Box::new(FixedWindow::new(10_000, Duration::from_secs(86_400)).unwrap()),
    /// ])
    /// .build::<u64>()
    /// .unwrap();
    /// assert!(mixed.check_n(&7, 1).unwrap().allowed);
    /// ```
    pub fn quota(limits: [A; N]) -> KeyedLimiterBuilder<A, RandomState, N> {
        KeyedLimiterBuilder {
            algs: limits,
            max_keys: 1_000_000,
            shards: 16,
            hasher: RandomState::new(),
            clock: Time::Fast(FastClock::new()),
            mode: Mode::Reject,
        }
    }
}

impl<A: Algorithm, S: BuildHasher, const N: usize> KeyedLimiterBuilder<A, S, N> {
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

    /// What the tower layer ([`KeyedLimiter::layer`]) does when a key has no capacity:
    /// reject at once (the default) or wait up to a maximum. The synchronous methods
    /// ([`KeyedLimiter::check`], [`KeyedLimiter::allow`]) always answer at once.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Mode, Rate};
    /// use std::time::Duration;
    /// let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
    ///     .mode(Mode::Wait(Duration::from_millis(250)))
    ///     .build::<u64>()
    ///     .unwrap();
    /// assert_eq!(k.mode(), Mode::Wait(Duration::from_millis(250)));
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `mode(Mode::Wait(max))`.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Mode, Rate};
    /// use std::time::Duration;
    /// let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
    ///     .max_wait(Duration::from_secs(1))
    ///     .build::<u64>()
    ///     .unwrap();
    /// assert_eq!(k.mode(), Mode::Wait(Duration::from_secs(1)));
    /// ```
    pub fn max_wait(self, max: Duration) -> Self {
        self.mode(Mode::Wait(max))
    }

    /// The hasher for keys (default: std's DoS-resistant `RandomState`).
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> KeyedLimiterBuilder<A, S2, N> {
        KeyedLimiterBuilder {
            algs: self.algs,
            max_keys: self.max_keys,
            shards: self.shards,
            hasher,
            clock: self.clock,
            mode: self.mode,
        }
    }

    /// Validates and builds.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let none: [Gcra; 0] = [];
    /// let e = KeyedLimiter::quota(none).build::<u64>().unwrap_err();
    /// assert_eq!(e.field(), "keyed_limiter.limits");
    /// let e = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
    ///     .shards(3)
    ///     .build::<u64>()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "keyed_limiter.shards");
    /// ```
    pub fn build<K: Hash + Eq + Clone>(self) -> Result<KeyedLimiter<K, A, S, N>, ConfigError> {
        if N == 0 {
            return Err(ConfigError::new(
                "keyed_limiter.limits",
                "needs at least one limit",
            ));
        }
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
            algs: self.algs,
            shards: (0..self.shards)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            hasher: self.hasher,
            per_shard,
            clock: self.clock,
            mode: self.mode,
        })
    }
}

impl<K, A, S> KeyedLimiter<K, A, S, 1> {
    /// The shared algorithm (its configuration can change at runtime).
    pub fn algorithm(&self) -> &A {
        &self.algs[0]
    }
}

/// Admits `cost` on one packed state by CAS: `Err(retry_after)` in nanoseconds, `u64::MAX`
/// for a cost above the capacity (checked on the same reading of the configuration).
#[inline]
fn cas_admit<A: Algorithm>(alg: &A, state: &AtomicU64, now: u64, cost: u64) -> Result<(), u64> {
    let mut s = state.load(Ordering::Relaxed);
    loop {
        let next = alg.admit_any(s, now, cost)?;
        if next == s {
            return Ok(());
        }
        match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(a) => s = a,
        }
    }
}

/// Decides `cost` on one packed state by CAS, consuming it if allowed. The next state and
/// the decision come from one step (one reading of the configuration), so the decision
/// says allowed exactly when it consumed, even racing a rate change.
#[inline]
fn cas<A: Algorithm>(alg: &A, state: &AtomicU64, now: u64, cost: u64) -> Decision {
    let mut s = state.load(Ordering::Relaxed);
    loop {
        let (next, d) = alg.step(s, now, cost);
        if !d.allowed || next == s {
            return d;
        }
        match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return d,
            Err(a) => s = a,
        }
    }
}

/// [`cas`], also returning the states before and after (equal when nothing was taken).
fn cas_ticket<A: Algorithm>(
    alg: &A,
    state: &AtomicU64,
    now: u64,
    cost: u64,
) -> (Decision, (u64, u64)) {
    let mut s = state.load(Ordering::Relaxed);
    loop {
        let (next, d) = alg.step(s, now, cost);
        if !d.allowed || next == s {
            return (d, (s, s));
        }
        match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return (d, (s, next)),
            Err(a) => s = a,
        }
    }
}

/// Gives back what moved `state` from `before` to `after`, if no later admission depends
/// on it ([`Algorithm::undo`]).
fn cas_undo<A: Algorithm>(
    alg: &A,
    state: &AtomicU64,
    now: u64,
    cost: u64,
    (before, after): (u64, u64),
) {
    if before == after {
        return;
    }
    let mut s = state.load(Ordering::Acquire);
    while let Some(next) = alg.undo(s, before, after, now, cost) {
        if next == s {
            return;
        }
        match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(a) => s = a,
        }
    }
}

fn cas_reserve<A: Algorithm>(
    alg: &A,
    state: &AtomicU64,
    now: u64,
    cost: u64,
    max_wait: u64,
) -> Option<(Decision, (u64, u64))> {
    let mut s = state.load(Ordering::Acquire);
    loop {
        let (next, d) = alg.reserve(s, now, cost, max_wait)?;
        if !d.allowed || next == s {
            return Some((d, (s, s)));
        }
        match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some((d, (s, next))),
            Err(a) => s = a,
        }
    }
}

/// What a keyed reservation took from each limit of its key: the states before and
/// after, to undo it if the waiter is cancelled.
pub(crate) type KeyedTickets = smallvec::SmallVec<[(u64, u64); 2]>;

impl<K: Hash + Eq + Clone, A: Algorithm, S: BuildHasher, const N: usize> KeyedLimiter<K, A, S, N> {
    /// The limits every key gets, in order (one, unless built with [`KeyedLimiter::quota`]);
    /// their configuration can change at runtime.
    ///
    /// ```
    /// use resilient::ratelimit::{Algorithm, FixedWindow, KeyedLimiter, Mode};
    /// use std::time::Duration;
    /// let k = KeyedLimiter::quota([
    ///     FixedWindow::new(10, Duration::from_secs(1)).unwrap(),
    ///     FixedWindow::new(600, Duration::from_secs(3600)).unwrap(),
    /// ])
    /// .build::<u64>()
    /// .unwrap();
    /// assert_eq!(k.algorithms()[1].policy().quota, 600);
    /// assert_eq!(k.max_cost(), 10); // the smallest capacity
    /// assert_eq!(k.mode(), Mode::Reject);
    /// // Raise the per-second limit of every key at runtime.
    /// k.algorithms()[0].set_limit(20).unwrap();
    /// assert_eq!(k.max_cost(), 20);
    /// ```
    pub fn algorithms(&self) -> &[A; N] {
        &self.algs
    }

    /// What the tower layer does when a key has no capacity (see
    /// [`KeyedLimiterBuilder::mode`]).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The largest cost a single request may have: the smallest capacity of the limits.
    pub fn max_cost(&self) -> u64 {
        self.algs.iter().map(|a| a.max_cost()).min().unwrap_or(0)
    }

    fn cost_ok(&self, cost: u64) -> Result<(), CostError> {
        for a in &self.algs {
            let max = a.max_cost();
            if cost > max {
                return Err(CostError { cost, max });
            }
        }
        Ok(())
    }

    /// Decides one unit for `key` now, consuming it if allowed (the keyed form of
    /// [`RateLimiter::check`](super::RateLimiter::check)). With a quota, the binding
    /// decision (see [`Verdict::binding`]). If a limit's capacity was cut at runtime to
    /// zero, a denial with `retry_after` `Duration::MAX`.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_minute(1)).unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert!(per_user.check(&"ada").allowed);
    /// assert!(!per_user.check(&"ada").allowed);
    /// assert!(per_user.check(&"bob").allowed);
    /// ```
    pub fn check(&self, key: &K) -> Decision {
        match self.check_n(key, 1) {
            Ok(d) => d,
            Err(_) => Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: Duration::MAX,
            },
        }
    }

    /// Decides `cost` units for `key` now, consuming them if allowed (the keyed form of
    /// [`RateLimiter::check_n`](super::RateLimiter::check_n)). With a quota, the binding
    /// decision (see [`Verdict::binding`]). A cost above the key's capacity is a
    /// [`CostError`].
    pub fn check_n(&self, key: &K, cost: u64) -> Result<Decision, CostError> {
        self.cost_ok(cost)?;
        Ok(self.check_at(key, self.clock.nanos(), cost))
    }

    /// Decides `cost` units for `key` now, reporting every limit of the key's quota:
    /// admitted only if all admit, and then consumed from all; if any refuses, nothing is
    /// consumed.
    ///
    /// ```
    /// use resilient::ManualClock;
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let k = KeyedLimiter::quota([
    ///     Gcra::new(Rate::per_second(2)).unwrap(),
    ///     Gcra::new(Rate::per_minute(3)).unwrap(),
    /// ])
    /// .clock(Arc::new(clock.clone()))
    /// .build()
    /// .unwrap();
    /// assert!(k.check_quota(&"u", 2).unwrap().allowed);
    /// clock.advance(Duration::from_secs(1));
    /// // The per-second limit is full again, the per-minute one has one unit left.
    /// let v = k.check_quota(&"u", 2).unwrap();
    /// assert!(!v.allowed);
    /// assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
    /// assert_eq!(v.binding().retry_after, Duration::from_secs(19));
    /// // Nothing was consumed: one unit still fits both.
    /// assert!(k.check_quota(&"u", 1).unwrap().allowed);
    /// ```
    pub fn check_quota(&self, key: &K, cost: u64) -> Result<Verdict, CostError> {
        self.cost_ok(cost)?;
        let now = self.clock.nanos();
        Ok(self.with_states(key, now, |st| self.decide(st, now, cost)))
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
        let now = self.clock.nanos();
        if N == 1 {
            let hash = self.hash(key);
            let table = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = table.find(hash, |e| e.key == *key) {
                // (A cost above the capacity is refused by the admission itself.)
                return cas_admit(&self.algs[0], &e.state[0], now, cost).map_err(wait);
            }
        }
        if self.cost_ok(cost).is_err() {
            return Err(Duration::MAX);
        }
        let d = self.check_at(key, now, cost);
        if d.allowed {
            Ok(())
        } else {
            Err(d.retry_after)
        }
    }

    /// `key`'s hash, the one every lookup and insertion uses (written out, where
    /// `BuildHasher::hash_one` was a call of its own on the fast path; a hasher that
    /// overrides `hash_one` is not asked for it, so that all agree).
    #[inline(always)]
    #[allow(clippy::manual_hash_one)] // written out on purpose: see above
    fn hash(&self, key: &K) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// [`KeyedLimiter::hash`] out of line, for the paths past `allow`'s (one copy of the
    /// hashing for them all, which keeps the fast path's inline one within the inliner's
    /// budget in builds with many code generation units).
    #[inline(never)]
    fn hash_cold(&self, key: &K) -> u64 {
        self.hash(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry<K, N>>> {
        &self.shards[(hash >> 48) as usize & (self.shards.len() - 1)]
    }

    /// Runs `f` on `key`'s states. A new key's states start fresh; the key is stored only
    /// if `f` changed them (a request that leaves a fresh state stores nothing).
    #[inline]
    fn with_states<R>(&self, key: &K, now: u64, f: impl FnOnce(&[AtomicU64; N]) -> R) -> R {
        let hash = self.hash_cold(key);
        let shard = self.shard(hash);
        {
            let table = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = table.find(hash, |e| e.key == *key) {
                return f(&e.state);
            }
        }
        let mut table = shard.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = table.find(hash, |e| e.key == *key) {
            return f(&e.state);
        }
        let state: [AtomicU64; N] = std::array::from_fn(|_| AtomicU64::new(0));
        let r = f(&state);
        if self.time_to_idle(&state, now) == 0 {
            return r; // as good as fresh: nothing to remember
        }
        if table.len() >= self.per_shard {
            self.make_room(&mut table, now);
        }
        let entry = Entry {
            key: key.clone(),
            state,
        };
        table.insert_unique(hash, entry, |e| self.hash_cold(&e.key));
        r
    }

    /// Every limit's decision on `states` (all or none consumed).
    fn decide(&self, states: &[AtomicU64; N], now: u64, cost: u64) -> Verdict {
        let algs = &self.algs;
        quota::all_or_none(
            N,
            |i| Ok(cas_ticket(&algs[i], &states[i], now, cost)),
            |i| algs[i].step(states[i].load(Ordering::Acquire), now, cost).1,
            |i, t| cas_undo(&algs[i], &states[i], now, cost, t),
        )
        .expect("acquire never fails")
    }

    /// Decides `cost` for `key` at `now` nanoseconds (no cost check). With a quota, the
    /// binding decision.
    pub fn check_at(&self, key: &K, now: u64, cost: u64) -> Decision {
        self.with_states(key, now, |st| {
            if N == 1 {
                cas(&self.algs[0], &st[0], now, cost)
            } else {
                self.decide(st, now, cost).binding()
            }
        })
    }

    /// Reserves `cost` for `key` on every limit, available within `max_wait`:
    /// `Ok((wait, tickets))` (sleep that long, or give the units back with `undo`), the
    /// rejection, or `None` if some limit cannot reserve future capacity.
    pub(crate) fn reserve(
        &self,
        key: &K,
        cost: u64,
        max_wait: Duration,
    ) -> Option<Result<(Duration, KeyedTickets), Rejection>> {
        if self.cost_ok(cost).is_err() {
            return Some(Err(Rejection::RateLimited {
                retry_after: None,
                info: None,
            }));
        }
        let now = self.clock.nanos();
        let max_wait = nanos(max_wait);
        let algs = &self.algs;
        self.with_states(key, now, |st| {
            quota::reserve_all(
                N,
                |i| cas_reserve(&algs[i], &st[i], now, cost, max_wait).map(Ok),
                |i, t| cas_undo(&algs[i], &st[i], now, cost, t),
            )
        })
    }

    /// Gives back what a reservation of `cost` for `key` took (a cancelled waiter), on each
    /// limit only while no later admission depends on it (see [`Algorithm::undo`]). A key
    /// forgotten since is left alone.
    pub(crate) fn undo(&self, key: &K, cost: u64, tickets: &KeyedTickets) {
        let now = self.clock.nanos();
        let hash = self.hash_cold(key);
        let table = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = table.find(hash, |e| e.key == *key) {
            for ((alg, state), t) in self.algs.iter().zip(&e.state).zip(tickets).rev() {
                cas_undo(alg, state, now, cost, *t);
            }
        }
    }

    /// The rejection of `cost` units for `key` that must wait `after` (`Duration::MAX`:
    /// never, so no `retry_after`), with the state of the key's binding limit for headers
    /// (peeked: a rejection consumes nothing, and a key never seen is not stored). Only
    /// rejections pay for it.
    #[cold]
    pub(crate) fn rejection_for(&self, key: &K, cost: u64, after: Duration) -> Rejection {
        let now = self.clock.nanos();
        let hash = self.hash_cold(key);
        let states: [u64; N] = {
            let table = self.shard(hash).read().unwrap_or_else(|e| e.into_inner());
            match table.find(hash, |e| e.key == *key) {
                Some(e) => std::array::from_fn(|i| e.state[i].load(Ordering::Acquire)),
                None => [0; N],
            }
        };
        let info = self
            .algs
            .iter()
            .zip(states)
            .map(|(a, s)| {
                // A cost above the capacity can never pass: that limit binds, with its
                // state as it is (nothing taken).
                let d = if cost > a.max_cost() {
                    a.step(s, now, 0).1.never()
                } else {
                    a.step(s, now, cost).1
                };
                (d, a)
            })
            .max_by_key(|(d, _)| d.retry_after)
            .map(|(d, a)| Box::new(d.info(a.policy())));
        Rejection::RateLimited {
            retry_after: (after != Duration::MAX).then_some(after),
            info,
        }
    }

    /// Admits `cost` units for `key`, waiting at most `max_wait` for them: a reservation
    /// where every limit can reserve (dropping the future gives it back while no later
    /// reservation depends on it), otherwise polling at the limits' `retry_after`. A
    /// zero `max_wait` answers at once. Rejections carry the key's [`RateLimitInfo`](
    /// crate::RateLimitInfo).
    pub(crate) async fn admit(
        &self,
        key: &K,
        cost: u64,
        max_wait: Duration,
    ) -> Result<(), Rejection> {
        if max_wait.is_zero() {
            return self
                .allow(key, cost)
                .map_err(|after| self.rejection_for(key, cost, after));
        }
        let start = self.now();
        match self.reserve(key, cost, max_wait) {
            Some(Ok((wait, _))) if wait.is_zero() => Ok(()),
            Some(Ok((wait, tickets))) => {
                let mut held = Reservation {
                    limiter: self,
                    key,
                    cost,
                    tickets,
                    armed: true,
                };
                tokio::time::sleep(wait).await;
                held.armed = false;
                Ok(())
            }
            Some(Err(r)) => {
                Err(self.rejection_for(key, cost, r.retry_after().unwrap_or(Duration::MAX)))
            }
            None => {
                // Limits that cannot reserve: poll at their retry_after, holding nothing.
                // Saturating: `Mode::Wait(Duration::MAX)` waits without a bound.
                let until = start.saturating_add(max_wait);
                let mut pause = PollPause::new(start, max_wait);
                loop {
                    let at = self.now();
                    let d = match self.check_n(key, cost) {
                        Ok(d) => d,
                        // The key's capacity was cut below the cost: it can never pass.
                        Err(_) => return Err(self.rejection_for(key, cost, Duration::MAX)),
                    };
                    if d.allowed {
                        return Ok(());
                    }
                    if d.retry_after == Duration::MAX
                        || at.saturating_add(d.retry_after) > until
                        || pause.expired()
                    {
                        return Err(self.rejection_for(key, cost, d.retry_after));
                    }
                    tokio::time::sleep(pause.next(at, d.retry_after)).await;
                }
            }
        }
    }

    /// This limiter's time: the reading of its clock, the `now` every decision is made at
    /// (what low-level calls taking a `now`, such as [`KeyedLimiter::check_at`], expect).
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Changes the rate and burst of limit `limit` (`0` unless built with
    /// [`KeyedLimiter::quota`]) for every key at runtime, at this limiter's time, keeping
    /// each key's state (see [`Algorithm::set_rate`]: GCRA keeps the units in use (a rate
    /// drop forgives those beyond a full new burst); a token bucket its tokens; a window
    /// its counts).
    ///
    /// The change holds every shard's lock while it carries the keys' states over (a pass
    /// over all keys), so decisions wait for it; the hot path is not slowed otherwise.
    /// Change the rate through this method rather than on a shared algorithm directly,
    /// which would leave the keys' states in the old rate's terms.
    ///
    /// ```
    /// use resilient::ManualClock;
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// clock.set(Duration::from_secs(86_400));
    /// let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
    ///     .clock(Arc::new(clock.clone()))
    ///     .build::<&str>()
    ///     .unwrap();
    /// assert!(k.check_n(&"ada", 10).unwrap().allowed);
    /// k.set_rate(0, Rate::per_second(100), 100).unwrap();
    /// // ada's 10 units stay in use; 90 more fit at once.
    /// assert_eq!(k.check_n(&"ada", 0).unwrap().remaining, 90);
    /// ```
    pub fn set_rate(&self, limit: usize, rate: Rate, burst: u64) -> Result<(), ConfigError> {
        let alg = self.algs.get(limit).ok_or_else(|| {
            ConfigError::new(
                "keyed_limiter.limit",
                format!("no limit {limit} (there are {N})"),
            )
        })?;
        // Every shard, in order (the only place holding more than one): no decision sees
        // the new configuration with an old state.
        let tables: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.write().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let rescale = alg.set_rate(self.clock.nanos(), rate, burst)?;
        if !rescale.is_none() {
            for table in &tables {
                for e in table.iter() {
                    let s = &e.state[limit];
                    s.store(rescale.apply(s.load(Ordering::Relaxed)), Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    fn time_to_idle(&self, states: &[AtomicU64; N], now: Nanos) -> Nanos {
        self.algs
            .iter()
            .zip(states)
            .map(|(a, s)| a.time_to_idle(s.load(Ordering::Relaxed), now))
            .max()
            .unwrap_or(0)
    }

    /// How much forgetting `e` loses, smallest first: the largest fraction of a limit it
    /// has in use (what it could take again if it came back fresh), then its time to idle,
    /// then its hash (a deterministic tie-break).
    fn eviction_rank(&self, e: &Entry<K, N>, now: u64) -> (u64, u64, u64) {
        let used = self
            .algs
            .iter()
            .zip(&e.state)
            .map(|(a, s)| {
                let d = a.step(s.load(Ordering::Relaxed), now, 0).1;
                let in_use = d.limit.saturating_sub(d.remaining);
                ((u128::from(in_use) << 32) / u128::from(d.limit.max(1))) as u64
            })
            .max()
            .unwrap_or(0);
        (
            used,
            self.time_to_idle(&e.state, now),
            self.hash_cold(&e.key),
        )
    }

    fn make_room(&self, table: &mut HashTable<Entry<K, N>>, now: u64) {
        table.retain(|e| self.time_to_idle(&e.state, now) > 0);
        if table.len() < self.per_shard {
            return;
        }
        // Evict exactly a batch (1/16 of the shard) of the keys that lose least, so that
        // the scan is paid once per batch of new keys, not once per new key. Keys may tie
        // (a fixed window's all end together): the batch takes only as many of the tied
        // ones as it needs.
        // Each key is ranked once, with its bucket: the batch is exactly the `k` ranked
        // lowest, even if ranks would come out differently a moment later (a
        // configuration changing meanwhile).
        let mut ranks: Vec<_> = table
            .iter_buckets()
            .filter_map(|i| Some((self.eviction_rank(table.get_bucket(i)?, now), i)))
            .collect();
        let k = (self.per_shard / 16).clamp(1, ranks.len());
        ranks.select_nth_unstable(k - 1);
        for &(_, i) in &ranks[..k] {
            // Removing an entry moves no other: the remaining indices stay valid.
            if let Ok(e) = table.get_bucket_entry(i) {
                e.remove();
            }
        }
    }

    /// Forgets every key whose limiter has fully recovered (every limit of its quota), and
    /// gives memory back after a spike (a table at most a quarter full shrinks); returns
    /// the keys kept. Takes each shard's lock in turn, for a pass over its keys.
    ///
    /// Idle keys are not forgotten by time alone: call this periodically (or
    /// [`KeyedLimiter::spawn_sweeper`]); otherwise they are only dropped when their shard is
    /// full and needs room.
    pub fn retain_recent(&self) -> usize {
        let now = self.clock.nanos();
        self.shards
            .iter()
            .map(|s| {
                let mut t = s.write().unwrap_or_else(|e| e.into_inner());
                t.retain(|e| self.time_to_idle(&e.state, now) > 0);
                if t.capacity() > 4 * t.len() {
                    let len = t.len();
                    t.shrink_to(2 * len, |e| self.hash_cold(&e.key));
                }
                t.len()
            })
            .sum()
    }

    /// Keys the tables can hold before they grow (their memory is this times
    /// [`bytes_per_key`], roughly).
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).capacity())
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

impl<K, A, S, const N: usize> KeyedLimiter<K, A, S, N>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: Algorithm,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Spawns a tokio task that calls [`KeyedLimiter::retain_recent`] every `every`
    /// (clamped to between 1 ms and [`MAX_SWEEP_PERIOD`], a year: any `Duration` is
    /// accepted, and the task never panics on it), so idle keys are forgotten and memory
    /// given back without a caller doing it. The task holds only a weak reference: it stops at its next tick once the
    /// limiter is dropped (or abort it through the handle). Must be called within a tokio
    /// runtime. Each sweep runs on the runtime's thread, taking each shard's lock in turn.
    ///
    /// ```
    /// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let per_ip = Arc::new(
    ///     KeyedLimiter::builder(Gcra::new(Rate::per_minute(60)).unwrap())
    ///         .build::<std::net::IpAddr>()
    ///         .unwrap(),
    /// );
    /// let sweeper = per_ip.spawn_sweeper(Duration::from_secs(60));
    /// // ... use `per_ip`, e.g. as `KeyedLayer::new(per_ip.clone(), |req| ...)` ...
    /// # sweeper.abort();
    /// # }
    /// ```
    pub fn spawn_sweeper(
        self: &std::sync::Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let limiter = std::sync::Arc::downgrade(self);
        let every = every.clamp(Duration::from_millis(1), MAX_SWEEP_PERIOD);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.retain_recent();
            }
        })
    }
}

/// Gives a keyed reservation back unless the wait completed (only while no later
/// reservation depends on it: see [`Algorithm::undo`]).
struct Reservation<'a, K, A, S, const N: usize>
where
    K: Hash + Eq + Clone,
    A: Algorithm,
    S: BuildHasher,
{
    limiter: &'a KeyedLimiter<K, A, S, N>,
    key: &'a K,
    cost: u64,
    tickets: KeyedTickets,
    armed: bool,
}

impl<K: Hash + Eq + Clone, A: Algorithm, S: BuildHasher, const N: usize> Drop
    for Reservation<'_, K, A, S, N>
{
    fn drop(&mut self) {
        if self.armed {
            self.limiter.undo(self.key, self.cost, &self.tickets);
        }
    }
}

/// A keyed limiter over `u64` keys is a pipeline guard: each call is limited under the
/// key it was given ([`Call::key`](crate::Call::key), which hashes any `Hash`
/// value to a `u64`; see [`Context::key`]) and charged its cost ([`Context::cost`], 1 by
/// default). Calls made without a key share one limit (key `0`). In wait mode
/// ([`KeyedLimiterBuilder::max_wait`]) a call waits for its key's capacity, never past its
/// deadline. Rejections are [`Rejection::RateLimited`] with the key's
/// [`RateLimitInfo`](crate::RateLimitInfo).
///
/// ```
/// use resilient::{Error, Pipeline};
/// use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
///     .build::<u64>()
///     .unwrap();
/// let p = Pipeline::builder().rate_limit(per_user).build().unwrap();
/// let ok: Result<(), Error<()>> = p.call().key("ada").execute(|| async { Ok(()) }).await;
/// assert!(ok.is_ok());
/// let over: Result<(), Error<()>> = p.call().key("ada").execute(|| async { Ok(()) }).await;
/// assert_eq!(over.unwrap_err().rate_limit_info().unwrap().remaining, 0);
/// // another key has its own limit
/// let bob: Result<(), Error<()>> = p.call().key("bob").execute(|| async { Ok(()) }).await;
/// assert!(bob.is_ok());
/// # }
/// ```
impl<A, S, const N: usize> Guard for KeyedLimiter<u64, A, S, N>
where
    A: Algorithm,
    S: BuildHasher + Send + Sync + 'static,
{
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "keyed_rate_limiter"
    }

    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        let key = ctx.key().unwrap_or(0);
        let cost = ctx.cost().unwrap_or(1);
        let max_wait = match (self.allow(&key, cost), self.mode) {
            // Admitted at once: no future to box.
            (Ok(()), _) => return Acquire::Ready(Ok(Permit::none())),
            (Err(after), Mode::Reject) => {
                return Acquire::Ready(Err(self.rejection_for(&key, cost, after)));
            }
            (Err(_), Mode::Wait(w)) => ctx.remaining().map_or(w, |r| r.min(w)),
        };
        Acquire::Wait(Box::pin(async move {
            self.admit(&key, cost, max_wait)
                .await
                .map(|()| Permit::none())
        }))
    }

    /// Blocking callers never wait: over the limit they get
    /// [`Rejection::RateLimited`] with the time until the key has capacity.
    fn acquire_now(&self, ctx: &Context) -> Result<Permit<'_>, Rejection> {
        let key = ctx.key().unwrap_or(0);
        let cost = ctx.cost().unwrap_or(1);
        self.allow(&key, cost)
            .map(|()| Permit::none())
            .map_err(|after| self.rejection_for(&key, cost, after))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}

impl<A, S, const N: usize> super::guard::IntoRateLimiter for KeyedLimiter<u64, A, S, N>
where
    A: Algorithm,
    S: BuildHasher + Send + Sync + 'static,
{
    fn into_guard(self) -> std::sync::Arc<dyn Guard> {
        std::sync::Arc::new(self)
    }
}

impl<A, S, const N: usize> super::guard::IntoRateLimiter
    for std::sync::Arc<KeyedLimiter<u64, A, S, N>>
where
    A: Algorithm,
    S: BuildHasher + Send + Sync + 'static,
{
    fn into_guard(self) -> std::sync::Arc<dyn Guard> {
        self
    }
}
