//! [`RedisLimiter`]: per-key limits shared by every process through Redis.

use std::collections::HashMap;
use std::fmt::{self, Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{Cmd, Script};
use resilient::ConfigError;
use resilient::ratelimit::{Algorithm, CostError, Decision, KeyedLimiter, Mode, Policy, Verdict};
use smallvec::SmallVec;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::batch::{Batcher, LaneId, Pending};
use crate::connection::Connection;
use crate::limit::Limit;

/// The script every decision runs (see `src/limit.lua`).
const LUA: &str = include_str!("limit.lua");

/// The most decisions one script decides unless configured.
const DEFAULT_MAX_BATCH: usize = 64;

/// What a limiter does when Redis does not answer within its timeout (down, unreachable,
/// slow, or an error reply). There is no default: a limiter is built only once one is
/// chosen ([`RedisLimiterBuilder::failure_mode`]).
///
/// ```
/// use resilient_redis::FailureMode;
/// // Keep serving, each process admitting up to a quarter of the global limits.
/// let insurance = FailureMode::Local { share: 0.25 };
/// assert_ne!(insurance, FailureMode::Open);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureMode {
    /// Admit every request (availability first: nothing is limited while Redis is away;
    /// Stripe once let a surge through to its database this way).
    Open,
    /// Reject every request, with the probe interval as its `retry_after` (protection
    /// first: nothing is served while Redis is away).
    Closed,
    /// Decide with a limiter in this process sized as `share` (0 < share <= 1) of each
    /// global limit ("insurance", as in rate-limiter-flexible): with `n` instances, a
    /// share of `1/n` keeps the fleet near the global limit. A sliding log is stood in
    /// for by a sliding window counter. Its state is this process's alone and is not
    /// merged back when Redis returns.
    Local {
        /// The fraction of each limit's rate and capacity this process may use.
        share: f64,
    },
}

/// Where the decisions of a [`RedisLimiter`] came from, counted since it was built.
///
/// ```
/// let s = resilient_redis::Stats::default();
/// assert_eq!(s.redis + s.cached + s.fallback, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Decided by Redis (one round trip each).
    pub redis: u64,
    /// Denied without a round trip of their own: from the local cache of keys over
    /// their limit, or with the denial of the lease fetch they waited for (see
    /// [`RedisLimiterBuilder::lease`]).
    pub cached: u64,
    /// Decided by the failure mode (Redis failed, timed out, or is being given time to
    /// come back).
    pub fallback: u64,
    /// Decisions whose round trip failed or timed out.
    pub errors: u64,
    /// Round trips (`EVALSHA`s) that carried the `redis` decisions: fewer than `redis`
    /// when decisions were batched (see [`RedisLimiterBuilder::max_batch`]).
    pub batches: u64,
    /// Admitted from a lease this instance held (no round trip; see
    /// [`RedisLimiterBuilder::lease`]).
    pub leased: u64,
    /// Leases Redis granted: decisions that took a lease's `units` at once (at most one
    /// fetch in flight per key; see [`RedisLimiterBuilder::lease`]).
    pub leases: u64,
}

#[derive(Default)]
struct Counters {
    redis: AtomicU64,
    cached: AtomicU64,
    fallback: AtomicU64,
    errors: AtomicU64,
    batches: AtomicU64,
    leased: AtomicU64,
    leases: AtomicU64,
}

/// The most keys whose leases an instance holds (or fetches) at once: a decision for
/// another key, while the map is full of live leases and fetches, is decided exactly
/// (its cost alone, no lease).
const MAX_LEASED_KEYS: usize = 65_536;

/// The keys' leases and their fetches in flight.
type LeaseMap = Arc<Mutex<HashMap<String, Entry>>>;

fn lock_map(map: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Leasing (see [`RedisLimiterBuilder::lease`]): units taken from Redis ahead of need and
/// spent locally, with at most one lease fetch in flight per key.
struct Leases {
    units: u64,
    ttl: Duration,
    held: LeaseMap,
    /// Tells the fetches apart (an abandoned one clears only its own mark).
    next_id: AtomicU64,
}

/// One key's lease, and the fetch of its next one if one is in flight.
#[derive(Default)]
struct Entry {
    lease: Option<Lease>,
    /// The fetch in flight: its id, and where its outcome is told (`None` until then;
    /// the channel closes unsent if the fetch is abandoned).
    fetch: Option<(u64, watch::Receiver<Option<Outcome>>)>,
}

/// Units of one key held by this instance.
struct Lease {
    left: u64,
    until: Instant,
    /// The verdict Redis gave when it granted them (for the remaining counts and limits).
    verdict: Verdict,
}

/// How a lease fetch ended, as told to the callers that waited for it.
#[derive(Clone)]
enum Outcome {
    /// Redis admitted the fetching decision; what it granted beyond its cost is held
    /// now (nothing, if it could grant the cost alone): take from it, or fetch again.
    Granted,
    /// Redis denied the fetching decision of `cost`: a waiter of at least that cost is
    /// denied with the same verdict (a smaller cost fetches again).
    Denied { cost: u64, verdict: Verdict },
    /// The round trip failed or timed out: the failure mode decides.
    Failed,
}

/// What a decision does about its key's lease.
enum Step {
    /// Admitted from the lease (no round trip).
    Take(Verdict),
    /// Another caller's fetch is in flight: wait for its outcome.
    Wait(watch::Receiver<Option<Outcome>>),
    /// This caller fetches the key's next lease.
    Fetch(LeaseFetch),
    /// No live lease covers the cost and no fetch is in flight (nothing claimed yet).
    Miss,
    /// No lease takes part: the cost alone goes to Redis (a cost of 0 or of at least
    /// `units`, or no room in the map for another key).
    Exact,
}

impl Leases {
    /// What a decision of `cost` for `base` does: take from the live lease, wait for the
    /// fetch in flight, or else (`claim`) become the fetch in flight.
    fn step(&self, base: &str, cost: u64, claim: bool) -> Step {
        if cost == 0 || cost >= self.units {
            return Step::Exact;
        }
        let now = Instant::now();
        let mut held = lock_map(&self.held);
        if let Some(e) = held.get_mut(base) {
            if let Some(lease) = &mut e.lease {
                if now >= lease.until {
                    e.lease = None;
                } else if lease.left >= cost {
                    lease.left -= cost;
                    let mut v = lease.verdict.clone();
                    for d in &mut v.decisions {
                        d.remaining = d.remaining.saturating_add(lease.left);
                    }
                    return Step::Take(v);
                }
            }
            if let Some((_, rx)) = &e.fetch {
                return Step::Wait(rx.clone());
            }
            if !claim {
                if e.lease.is_none() {
                    held.remove(base);
                }
                return Step::Miss;
            }
        } else if !claim {
            return Step::Miss;
        }
        if held.len() >= MAX_LEASED_KEYS && !held.contains_key(base) {
            held.retain(|_, e| {
                e.fetch.is_some() || e.lease.as_ref().is_some_and(|l| l.until > now)
            });
            if held.len() >= MAX_LEASED_KEYS {
                return Step::Exact;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        held.entry(base.to_owned()).or_default().fetch = Some((id, rx));
        Step::Fetch(LeaseFetch {
            held: self.held.clone(),
            base: base.to_owned(),
            id,
            ttl: self.ttl,
            tx: Some(tx),
        })
    }
}

/// The one lease fetch in flight for a key, owned by whoever receives Redis' reply for
/// it: the caller (batching off) or the batch driver. Settled, it holds the lease and
/// tells the waiters; dropped unsettled (its caller cancelled before the reply), it is
/// abandoned: its mark is cleared and the waiters wake to try again, one of them
/// fetching in its place.
pub(crate) struct LeaseFetch {
    held: LeaseMap,
    base: String,
    id: u64,
    ttl: Duration,
    /// `None` once settled.
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl LeaseFetch {
    /// Clears this fetch's mark, holds `hold` (units left and the verdict that granted
    /// them) in place of the key's lease, and tells the waiters `outcome`.
    fn end(&mut self, hold: Option<(u64, &Verdict)>, outcome: Option<Outcome>) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        {
            let mut held = lock_map(&self.held);
            if let Some(e) = held.get_mut(&self.base) {
                if e.fetch.as_ref().is_some_and(|(id, _)| *id == self.id) {
                    e.fetch = None;
                }
                if let Some((left, verdict)) = hold {
                    e.lease = Some(Lease {
                        left,
                        until: Instant::now() + self.ttl,
                        verdict: verdict.clone(),
                    });
                }
                if e.fetch.is_none() && e.lease.is_none() {
                    held.remove(&self.base);
                }
            }
        }
        // Sent after the lease is in place: a woken waiter finds it. Unsent (abandoned),
        // the dropped sender wakes them all the same.
        if let Some(o) = outcome {
            tx.send_replace(Some(o));
        }
    }

    /// Settles the fetch with Redis' verdict `v` for its decision of `cost`, which
    /// granted `granted` units: the units beyond the cost (all of them if the caller is
    /// `gone`: nobody spends its cost) are held as the key's lease, and the caller's
    /// verdict, returned, counts them in its remaining units.
    pub(crate) fn settle(mut self, cost: u64, granted: u64, mut v: Verdict, gone: bool) -> Verdict {
        if !v.allowed {
            let verdict = v.clone();
            self.end(None, Some(Outcome::Denied { cost, verdict }));
            return v;
        }
        let keep = if gone {
            granted
        } else {
            granted.saturating_sub(cost)
        };
        if keep == 0 {
            self.end(None, Some(Outcome::Granted));
            return v;
        }
        // held with Redis' own counts: a spend adds what is left of the lease
        self.end(Some((keep, &v)), Some(Outcome::Granted));
        for d in &mut v.decisions {
            d.remaining = d.remaining.saturating_add(keep);
        }
        v
    }

    /// The fetch's round trip failed or timed out: its waiters go to the failure mode.
    pub(crate) fn fail(mut self) {
        self.end(None, Some(Outcome::Failed));
    }
}

impl Drop for LeaseFetch {
    fn drop(&mut self) {
        self.end(None, None);
    }
}

/// Whether Redis is worth asking: after a failure, decisions go to the failure mode for
/// the probe interval; then one caller at a time probes Redis while the others keep
/// using the failure mode, until a probe succeeds.
struct Health {
    origin: Instant,
    /// Milliseconds since `origin` until which Redis is not asked, plus one; 0: healthy.
    down_until: AtomicU64,
    probe: Duration,
}

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether this caller should skip Redis.
    fn skip(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        let now = self.now_ms();
        if now < until {
            return true;
        }
        // Claim the probe: the others keep skipping until it answers or times out.
        let next = now.saturating_add(u64::try_from(self.probe.as_millis()).unwrap_or(u64::MAX));
        self.down_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    }

    /// A round trip sent at `sent` (a `now_ms` reading) succeeded: Redis is healthy again,
    /// unless a failure (or a probe's claim) was recorded after it was sent. A late reply
    /// to an old request (its task starved, say) must not undo a newer failure.
    fn ok(&self, sent: u64) {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return;
        }
        let probe = u64::try_from(self.probe.as_millis()).unwrap_or(u64::MAX);
        if until.saturating_sub(probe) <= sent {
            let _ = self
                .down_until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn failed(&self) {
        let next = self
            .now_ms()
            .saturating_add(u64::try_from(self.probe.as_millis()).unwrap_or(u64::MAX));
        self.down_until.store(next, Ordering::Release);
    }
}

/// A denial remembered until its `retry_after`.
struct Cached {
    at: Instant,
    until: Instant,
    cost: u64,
    verdict: Verdict,
}

/// The local "over its limit until T" cache: a key denied for cost `c` is denied again,
/// without a round trip, for any cost of at least `c` until the denial's `retry_after`
/// has passed (a larger cost cannot be admitted sooner than a smaller one).
struct DenyCache {
    map: Mutex<HashMap<String, Cached>>,
    max: usize,
}

impl DenyCache {
    fn get(&self, key: &str, cost: u64) -> Option<Verdict> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.get(key)?;
        let now = Instant::now();
        if now >= c.until {
            map.remove(key);
            return None;
        }
        if cost < c.cost {
            return None;
        }
        let elapsed = now - c.at;
        let mut v = c.verdict.clone();
        for d in &mut v.decisions {
            d.reset = d.reset.saturating_sub(elapsed);
            if !d.allowed && d.retry_after != Duration::MAX {
                d.retry_after = d
                    .retry_after
                    .saturating_sub(elapsed)
                    .max(Duration::from_micros(1));
            }
        }
        Some(v)
    }

    fn insert(&self, key: String, cost: u64, verdict: &Verdict) {
        let retry = verdict.binding().retry_after;
        let at = Instant::now();
        let Some(until) = at.checked_add(retry) else {
            return;
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, c| c.until > at);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(
            key,
            Cached {
                at,
                until,
                cost,
                verdict: verdict.clone(),
            },
        );
    }
}

/// Per-key rate limits shared by every process that talks to the same Redis: the
/// distributed counterpart of [`KeyedLimiter`].
///
/// Each decision is **one round trip**: a Lua script (sent by `EVALSHA`, loaded again if
/// the server lost it) that reads the server's clock (`TIME`, never the callers'),
/// decides every limit of the key's quota, writes only if all admit (and only what
/// changed), and lets idle keys expire (`PEXPIRE`: a key expires once it is full
/// again, which is the same as a fresh key). It returns the local limiters'
/// [`Decision`] and [`Verdict`], so the same `RateLimit` headers come out.
///
/// When Redis fails or does not answer within the timeout, the [`FailureMode`] decides;
/// Redis is then left alone for the probe interval, after which one caller at a time
/// probes it until it answers again. An optional cache of denials
/// ([`RedisLimiterBuilder::deny_cache`]) answers keys known to be over their limit
/// without a round trip.
///
/// Keys are `PREFIX{KEY}:i` for limit `i` (`KEY` is the key's `Display`; one that is
/// empty or starts with `}` or a NUL byte is stored with a NUL byte in front, so that
/// the hash tag is never empty): every limit of one key lives in one Redis Cluster slot.
///
/// ```no_run
/// use resilient::ratelimit::Rate;
/// use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisLimiter::builder(Connection::open("redis://127.0.0.1/")?)
///     .limit(Limit::gcra(Rate::per_second(10))?)
///     .limit(Limit::fixed_window(10_000, Duration::from_secs(86_400))?)
///     .failure_mode(FailureMode::Local { share: 0.25 })
///     .build()?;
/// let d = limiter.check(&"user-42", 1).await?;
/// if !d.allowed {
///     println!("retry in {:?}", d.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    script: Script,
    limits: SmallVec<[Limit; 2]>,
    args: Vec<[String; 4]>,
    prefix: String,
    timeout: Duration,
    mode: FailureMode,
    health: Health,
    local: Vec<KeyedLimiter<String, Box<dyn Algorithm>>>,
    cache: Option<DenyCache>,
    counters: Counters,
    wait: Mode,
    /// `None`: batching off (`max_batch(1)`).
    batcher: Option<Batcher>,
    /// `None`: no leases (the default).
    leases: Option<Leases>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("RedisLimiter")
            .field("conn", &i.conn)
            .field("limits", &i.limits)
            .field("prefix", &i.prefix)
            .field("timeout", &i.timeout)
            .field("failure_mode", &i.mode)
            .field("probe_interval", &i.health.probe)
            .field("deny_cache", &i.cache.as_ref().map(|c| c.max))
            .field("mode", &i.wait)
            .finish()
    }
}

/// Configures a [`RedisLimiter`].
///
/// ```
/// use resilient::ratelimit::Rate;
/// use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let conn = Connection::open("redis://127.0.0.1:1/").unwrap(); // lazy
/// let limiter = RedisLimiter::builder(conn)
///     .limit(Limit::gcra(Rate::per_second(100)).unwrap())
///     .prefix("api:")
///     .timeout(Duration::from_millis(50))
///     .probe_interval(Duration::from_millis(500))
///     .failure_mode(FailureMode::Closed)
///     .deny_cache(10_000)
///     .build()
///     .unwrap();
/// assert_eq!(limiter.timeout(), Duration::from_millis(50));
/// # }
/// ```
pub struct RedisLimiterBuilder {
    conn: Connection,
    limits: SmallVec<[Limit; 2]>,
    prefix: String,
    timeout: Duration,
    probe: Duration,
    mode: Option<FailureMode>,
    cache: Option<usize>,
    wait: Mode,
    max_batch: usize,
    lease: Option<(u64, Duration)>,
    error: Option<ConfigError>,
}

impl fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiterBuilder")
            .field("limits", &self.limits)
            .field("prefix", &self.prefix)
            .field("failure_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Starts a builder on `conn` (no limits yet; prefix `rl:`, timeout 100 ms, probe
    /// interval 1 s, no deny cache, and a failure mode to choose).
    ///
    /// ```
    /// use resilient_redis::{Connection, RedisLimiter};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let b = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap());
    /// // No failure mode chosen, no limit: not built.
    /// assert_eq!(b.build().unwrap_err().field(), "redis_limiter.limits");
    /// # }
    /// ```
    pub fn builder(conn: impl Into<Connection>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            conn: conn.into(),
            limits: SmallVec::new(),
            prefix: "rl:".into(),
            timeout: Duration::from_millis(100),
            probe: Duration::from_secs(1),
            mode: None,
            cache: None,
            wait: Mode::Reject,
            max_batch: DEFAULT_MAX_BATCH,
            lease: None,
            error: None,
        }
    }

    /// The limits every key gets, in order.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.limits().len(), 1);
    /// # }
    /// ```
    pub fn limits(&self) -> &[Limit] {
        &self.inner.limits
    }

    /// The command timeout: the longest a decision waits for Redis before the failure
    /// mode decides.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.timeout(), Duration::from_millis(100));
    /// # }
    /// ```
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The largest cost a request may have (the smallest capacity among the limits).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .limit(Limit::gcra(Rate::per_minute(3)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.max_cost(), 3);
    /// # }
    /// ```
    pub fn max_cost(&self) -> u64 {
        self.inner
            .limits
            .iter()
            .map(Limit::max_cost)
            .min()
            .unwrap_or(0)
    }

    /// Where decisions came from so far (Redis, the deny cache, the failure mode).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.stats(), Stats::default());
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            redis: c.redis.load(Ordering::Relaxed),
            cached: c.cached.load(Ordering::Relaxed),
            fallback: c.fallback.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            leased: c.leased.load(Ordering::Relaxed),
            leases: c.leases.load(Ordering::Relaxed),
        }
    }

    /// Whether decisions currently go to the failure mode instead of Redis (a round
    /// trip failed and no probe has succeeded since).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert!(!l.is_degraded()); // nothing has failed yet
    /// # }
    /// ```
    pub fn is_degraded(&self) -> bool {
        self.inner.health.down_until.load(Ordering::Acquire) != 0
    }

    /// What the guard and the tower layer do when a key has no capacity (see
    /// [`RedisLimiterBuilder::mode`]).
    ///
    /// ```
    /// # use resilient::ratelimit::{Mode, Rate};
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(5)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.mode(), Mode::Reject);
    /// # }
    /// ```
    pub fn mode(&self) -> Mode {
        self.inner.wait
    }

    /// Decides, and in wait mode waits up to `max_wait` for capacity: sleeps for each
    /// denial's `retry_after` and asks again, giving up (with the last denial) as soon
    /// as the next try would fall past `max_wait`.
    pub(crate) async fn decide_waiting(
        &self,
        base: String,
        cost: u64,
        max_wait: Duration,
    ) -> Verdict {
        let start = Instant::now();
        loop {
            let v = self.decide(base.clone(), cost).await;
            if v.allowed {
                return v;
            }
            let retry = v.binding().retry_after;
            if retry == Duration::MAX || start.elapsed().saturating_add(retry) > max_wait {
                return v;
            }
            tokio::time::sleep(retry.max(Duration::from_millis(1))).await;
        }
    }

    /// The policy of limit `i` (for `RateLimit-Policy` headers).
    pub(crate) fn policy_of(&self, i: usize) -> Policy {
        self.inner.limits[i].policy()
    }

    fn cost_ok(&self, cost: u64) -> Result<(), CostError> {
        for l in &self.inner.limits {
            let max = l.max_cost();
            if cost > max {
                return Err(CostError { cost, max });
            }
        }
        Ok(())
    }

    /// The Redis key of `key`, without the limit's index: `PREFIX{KEY}`.
    fn base_key(&self, key: &(impl Display + ?Sized)) -> String {
        let mut s = String::with_capacity(self.inner.prefix.len() + 24);
        s.push_str(&self.inner.prefix);
        s.push('{');
        let start = s.len();
        let _ = write!(s, "{key}");
        if matches!(s.as_bytes().get(start), None | Some(b'}' | b'\0')) {
            s.insert(start, '\0');
        }
        s.push('}');
        s
    }

    /// Decides `cost` units for `key` under every limit, consuming them from all only if
    /// all admit. One round trip (none for a key the deny cache knows is over its limit).
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # async fn demo(limiter: RedisLimiter) {
    /// let v = limiter.check_quota(&"api-key-7", 1).await.unwrap();
    /// for d in &v.decisions {
    ///     println!("{} of {} left", d.remaining, d.limit);
    /// }
    /// # }
    /// ```
    pub async fn check_quota<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
    ) -> Result<Verdict, CostError> {
        self.cost_ok(cost)?;
        let base = self.base_key(key);
        Ok(self.decide(base, cost).await)
    }

    /// [`RedisLimiter::check_quota`], answering with the binding decision (see
    /// [`Verdict::binding`]): the same call as [`KeyedLimiter::check`], awaited.
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # async fn demo(limiter: RedisLimiter) {
    /// let d = limiter.check(&42u64, 1).await.unwrap();
    /// println!("allowed: {}, retry after {:?}", d.allowed, d.retry_after);
    /// # }
    /// ```
    pub async fn check<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
    ) -> Result<Decision, CostError> {
        Ok(self.check_quota(key, cost).await?.binding())
    }

    /// Admits `cost` units for `key`, or says how long until they would be admitted
    /// (`Duration::MAX`: never, the cost exceeds a limit's capacity).
    ///
    /// ```no_run
    /// # use resilient_redis::RedisLimiter;
    /// # async fn demo(limiter: RedisLimiter) {
    /// if let Err(wait) = limiter.allow(&"10.0.0.7", 1).await {
    ///     println!("over the limit for {wait:?}");
    /// }
    /// # }
    /// ```
    pub async fn allow<K: Display + ?Sized>(&self, key: &K, cost: u64) -> Result<(), Duration> {
        match self.check_quota(key, cost).await {
            Ok(v) if v.allowed => Ok(()),
            Ok(v) => Err(v.binding().retry_after),
            Err(_) => Err(Duration::MAX),
        }
    }

    /// The deny cache's answer for `base`, if it has one (no await: the guard's fast
    /// path).
    pub(crate) fn cached(&self, base: &str, cost: u64) -> Option<Verdict> {
        let v = self.inner.cache.as_ref()?.get(base, cost)?;
        self.inner.counters.cached.fetch_add(1, Ordering::Relaxed);
        Some(v)
    }

    pub(crate) fn key_for(&self, key: &(impl Display + ?Sized)) -> String {
        self.base_key(key)
    }

    pub(crate) fn cost_check(&self, cost: u64) -> Result<(), CostError> {
        self.cost_ok(cost)
    }

    pub(crate) async fn decide(&self, base: String, cost: u64) -> Verdict {
        let inner = &*self.inner;
        // Every caller's verdict within the timeout from when it asked, whatever it
        // waited for (a lease fetch, its batch, its round trip).
        let now = Instant::now();
        let deadline = now
            .checked_add(inner.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        let mut claim = false;
        let mut checked = false;
        let fetch = loop {
            let Some(leases) = &inner.leases else {
                break None;
            };
            match leases.step(&base, cost, claim) {
                Step::Take(v) => {
                    inner.counters.leased.fetch_add(1, Ordering::Relaxed);
                    return v;
                }
                Step::Exact => break None,
                Step::Fetch(f) => break Some(f),
                Step::Miss => {
                    if let Some(v) = self.cached(&base, cost) {
                        return v;
                    }
                    if inner.health.skip() {
                        return self.fallback(&base, cost);
                    }
                    checked = true;
                    claim = true;
                }
                Step::Wait(mut rx) => {
                    let told = tokio::time::timeout_at(deadline, async move {
                        rx.wait_for(Option::is_some).await.map(|o| o.clone())
                    })
                    .await;
                    match told {
                        // Waited as long as a queued decision may.
                        Err(_) => return self.failed(&base, cost),
                        Ok(Ok(Some(Outcome::Denied { cost: c, verdict }))) if cost >= c => {
                            inner.counters.cached.fetch_add(1, Ordering::Relaxed);
                            return verdict;
                        }
                        Ok(Ok(Some(Outcome::Failed))) => return self.fallback(&base, cost),
                        // Granted (take from the lease, or fetch the next one), denied
                        // for a larger cost, or abandoned by its caller: again.
                        Ok(_) => claim = false,
                    }
                }
            }
        };
        if !checked {
            if let Some(v) = self.cached(&base, cost) {
                return v;
            }
            if inner.health.skip() {
                return self.fallback(&base, cost);
            }
        }
        let want = match (&fetch, &inner.leases) {
            (Some(_), Some(l)) => l.units,
            _ => cost,
        };
        let Some(batcher) = &inner.batcher else {
            let sent = inner.health.now_ms();
            let reply =
                tokio::time::timeout_at(deadline, inner.round_trip(&base, cost, want)).await;
            return match reply {
                Ok(Ok((v, granted))) => {
                    let v = match fetch {
                        Some(f) => {
                            if v.allowed && granted > cost {
                                inner.counters.leases.fetch_add(1, Ordering::Relaxed);
                            }
                            f.settle(cost, granted, v, false)
                        }
                        None => v,
                    };
                    inner.health.ok(sent);
                    inner.counters.redis.fetch_add(1, Ordering::Relaxed);
                    inner.counters.batches.fetch_add(1, Ordering::Relaxed);
                    if !v.allowed
                        && let Some(cache) = &inner.cache
                    {
                        cache.insert(base, cost, &v);
                    }
                    v
                }
                Ok(Err(_)) | Err(_) => {
                    if let Some(f) = fetch {
                        f.fail();
                    }
                    self.failed(&base, cost)
                }
            };
        };
        // The local fallback is keyed: keep the key for it.
        let key = match inner.mode {
            FailureMode::Local { .. } => base.clone(),
            FailureMode::Open | FailureMode::Closed => String::new(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(lane) = batcher.submit(Pending {
            base,
            cost,
            want,
            tx,
            fetch,
        }) {
            let guard = DriverGuard {
                inner: self.inner.clone(),
                lane: Some(lane),
            };
            tokio::spawn(guard.drive());
        }
        match tokio::time::timeout_at(deadline, rx).await {
            // The driver settled the lease, if this decision fetched one.
            Ok(Ok(Some(v))) => v,
            // Timed out (queued or in flight), the round trip failed, or the driver
            // was dropped with its runtime.
            _ => self.failed(&key, cost),
        }
    }

    /// A decision whose round trip failed or timed out: the failure mode decides.
    fn failed(&self, key: &str, cost: u64) -> Verdict {
        let inner = &*self.inner;
        inner.health.failed();
        inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.fallback(key, cost)
    }

    /// The failure mode's verdict.
    fn fallback(&self, base: &str, cost: u64) -> Verdict {
        let inner = &*self.inner;
        inner.counters.fallback.fetch_add(1, Ordering::Relaxed);
        let decisions: SmallVec<[Decision; 2]> = match inner.mode {
            FailureMode::Open => inner
                .limits
                .iter()
                .map(|l| Decision {
                    allowed: true,
                    limit: l.max_cost(),
                    remaining: l.max_cost().saturating_sub(cost),
                    reset: Duration::ZERO,
                    retry_after: Duration::ZERO,
                })
                .collect(),
            FailureMode::Closed => inner
                .limits
                .iter()
                .map(|l| Decision {
                    allowed: false,
                    limit: l.max_cost(),
                    remaining: 0,
                    reset: inner.health.probe,
                    retry_after: inner.health.probe,
                })
                .collect(),
            FailureMode::Local { .. } => {
                let key = base.to_string();
                let mut denied = false;
                inner
                    .local
                    .iter()
                    .map(|l| {
                        // After a denial the remaining limits are only looked at.
                        let c = if denied { 0 } else { cost };
                        let d = l.check_n(&key, c).unwrap_or_else(|e| Decision {
                            allowed: false,
                            limit: e.max,
                            remaining: 0,
                            reset: inner.health.probe,
                            retry_after: inner.health.probe,
                        });
                        let d = if denied {
                            Decision { allowed: true, ..d }
                        } else {
                            d
                        };
                        denied |= !d.allowed;
                        d
                    })
                    .collect()
            }
        };
        Verdict {
            allowed: decisions.iter().all(|d| d.allowed),
            decisions,
        }
    }
}

impl Inner {
    /// The `EVALSHA` deciding `decisions` (`(PREFIX{KEY}, cost)`) in order.
    fn command<'a>(&self, decisions: impl Iterator<Item = (&'a str, u64, u64)> + Clone) -> Cmd {
        let n = self.limits.len();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(decisions.clone().count() * n);
        // One buffer for every key: no allocation per key.
        let mut key = String::with_capacity(64);
        for (base, _, _) in decisions.clone() {
            for i in 0..n {
                key.clear();
                let _ = write!(key, "{base}:{i}");
                cmd.arg(key.as_str());
            }
        }
        cmd.arg(n);
        for a in &self.args {
            for s in a {
                cmd.arg(s.as_str());
            }
        }
        // the stride: costs alone, or (cost, units wanted) pairs with leases on
        if self.leases.is_some() {
            cmd.arg(2);
            for (_, cost, want) in decisions {
                cmd.arg(cost).arg(want);
            }
        } else {
            cmd.arg(1);
            for (_, cost, _) in decisions {
                cmd.arg(cost);
            }
        }
        cmd
    }

    /// The reply's length per decision.
    fn stride(&self) -> usize {
        3 * self.limits.len() + usize::from(self.leases.is_some())
    }

    /// One decision in its own round trip (batching off).
    async fn round_trip(
        &self,
        base: &str,
        cost: u64,
        want: u64,
    ) -> redis::RedisResult<(Verdict, u64)> {
        let reply = self
            .conn
            .eval(
                &self.script,
                &self.command(std::iter::once((base, cost, want))),
            )
            .await?;
        decode(&reply, &self.limits, self.leases.is_some())
            .next()
            .filter(|_| reply.len() == self.stride())
            .ok_or_else(bad_reply)
    }

    /// A batch of decisions in one round trip, in order.
    async fn run(&self, batch: &[Pending]) -> redis::RedisResult<Vec<(Verdict, u64)>> {
        let cmd = self.command(batch.iter().map(|p| (p.base.as_str(), p.cost, p.want)));
        let reply = self.conn.eval(&self.script, &cmd).await?;
        if reply.len() != batch.len() * self.stride() {
            return Err(bad_reply());
        }
        Ok(decode(&reply, &self.limits, self.leases.is_some()).collect())
    }
}

fn bad_reply() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "resilient-redis: unexpected script reply",
    ))
}

/// The task that sends one lane's batches, one round trip at a time, until its queue is
/// empty. If it is dropped mid-flight (its runtime shut down), it releases the lane.
struct DriverGuard {
    inner: Arc<Inner>,
    /// `Some` until the driver returned normally.
    lane: Option<LaneId>,
}

impl DriverGuard {
    async fn drive(mut self) {
        let inner = &*self.inner;
        let Some(batcher) = &inner.batcher else {
            return;
        };
        let Some(lane) = self.lane.as_ref() else {
            return;
        };
        while let Some(batch) = batcher.next(lane) {
            let sent = inner.health.now_ms();
            match tokio::time::timeout(inner.timeout, inner.run(&batch)).await {
                Ok(Ok(verdicts)) => {
                    inner.health.ok(sent);
                    let c = &inner.counters;
                    c.redis.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    for (p, (v, granted)) in batch.into_iter().zip(verdicts) {
                        if !v.allowed
                            && let Some(cache) = &inner.cache
                        {
                            cache.insert(p.base, p.cost, &v);
                        }
                        // The lease is settled here, where the verdict arrives: its
                        // waiters are told even if the caller that fetched it is gone.
                        let v = match p.fetch {
                            Some(f) => {
                                if v.allowed && granted > p.cost {
                                    c.leases.fetch_add(1, Ordering::Relaxed);
                                }
                                f.settle(p.cost, granted, v, p.tx.is_closed())
                            }
                            None => v,
                        };
                        // A caller that gave up after its decision was sent: the
                        // decision stands (Redis counted it; a lease fetch's units
                        // are all held).
                        let _ = p.tx.send(Some(v));
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    // Fail this batch and everything queued behind it at once: the
                    // callers go to the failure mode (and Redis to its probe interval).
                    inner.health.failed();
                    for p in batch.into_iter().chain(batcher.drain(lane)) {
                        if let Some(f) = p.fetch {
                            f.fail();
                        }
                        let _ = p.tx.send(None);
                    }
                }
            }
        }
        self.lane = None;
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let (Some(lane), Some(b)) = (&self.lane, &self.inner.batcher) {
            b.release(lane);
        }
    }
}

/// The script's reply as verdicts: per decision and limit `[remaining if admitted, else
/// -1 - remaining; reset_us; retry_us]`; the limits' capacities come from `limits`.
fn decode<'a>(
    reply: &'a [i64],
    limits: &'a [Limit],
    leases: bool,
) -> impl Iterator<Item = (Verdict, u64)> + 'a {
    let u = |x: i64| u64::try_from(x).unwrap_or(0);
    let n = 3 * limits.len();
    reply.chunks_exact(n + usize::from(leases)).map(move |d| {
        let granted = if leases { u(d[n]) } else { 0 };
        let decisions: SmallVec<[Decision; 2]> = d[..n]
            .chunks_exact(3)
            .zip(limits)
            .map(|(c, l)| Decision {
                allowed: c[0] >= 0,
                limit: l.max_cost(),
                remaining: if c[0] >= 0 { u(c[0]) } else { u(-1 - c[0]) },
                reset: Duration::from_micros(u(c[1])),
                retry_after: Duration::from_micros(u(c[2])),
            })
            .collect();
        (
            Verdict {
                allowed: decisions.iter().all(|d| d.allowed),
                decisions,
            },
            granted,
        )
    })
}

/// The index of the binding decision in `v` (see [`Verdict::binding`]).
pub(crate) fn binding_index(v: &Verdict) -> usize {
    let it = v.decisions.iter().enumerate();
    let pick = if v.allowed {
        it.min_by_key(|(_, d)| d.remaining)
    } else {
        it.filter(|(_, d)| !d.allowed)
            .max_by_key(|(_, d)| d.retry_after)
    };
    pick.map_or(0, |(i, _)| i)
}

impl RedisLimiterBuilder {
    /// Adds a limit: every key gets all of them (a quota, admitted only if all admit).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .limit(Limit::gcra(Rate::per_day(10_000)).unwrap())
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.limits().len(), 2);
    /// # }
    /// ```
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// Adds a limit from its constructor's result; an error fails [`build`](Self::build).
    ///
    /// ```
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let e = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .try_limit(Limit::fixed_window(0, Duration::from_secs(1)))
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "fixed_window.limit");
    /// # }
    /// ```
    pub fn try_limit(mut self, limit: Result<Limit, ConfigError>) -> Self {
        match limit {
            Ok(l) => self.limits.push(l),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// The prefix of every key (default `rl:`). It must not contain `{` or `}` (the key
    /// itself is the hash tag).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let e = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .prefix("bad{")
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "redis_limiter.prefix");
    /// # }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a decision waits for Redis (default 100 ms) before the failure mode
    /// decides. It bounds every decision's latency, whatever state Redis is in.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .timeout(Duration::from_millis(20))
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.timeout(), Duration::from_millis(20));
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After a failed round trip, how long decisions go straight to the failure mode
    /// before Redis is probed again (default 1 s). Also the `retry_after` of
    /// [`FailureMode::Closed`] rejections.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .probe_interval(Duration::from_millis(250))
    ///     .failure_mode(FailureMode::Closed)
    ///     .build()
    ///     .unwrap();
    /// # let _ = l;
    /// # }
    /// ```
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.probe = every;
        self
    }

    /// What to do while Redis is unreachable (required: see [`FailureMode`]).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let e = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "redis_limiter.failure_mode");
    /// # }
    /// ```
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// What the guard ([`RedisLimiter::guard`]) and the tower layer do when a key has no
    /// capacity: reject at once (the default) or wait up to a maximum (never past the
    /// call's deadline), as a [`KeyedLimiter`]'s layer does. A waiter holds nothing: it
    /// sleeps for the denial's `retry_after` and asks again (one round trip per try),
    /// and is rejected as soon as the next try would fall past its maximum. The
    /// `check` methods always answer at once.
    ///
    /// ```
    /// # use resilient::ratelimit::{Mode, Rate};
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .mode(Mode::Wait(Duration::from_millis(250)))
    ///     .failure_mode(FailureMode::Closed)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.mode(), Mode::Wait(Duration::from_millis(250)));
    /// # }
    /// ```
    pub fn mode(mut self, mode: Mode) -> Self {
        self.wait = mode;
        self
    }

    /// Shorthand for `mode(Mode::Wait(max))`.
    ///
    /// ```
    /// # use resilient::ratelimit::{Mode, Rate};
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .max_wait(Duration::from_secs(1))
    ///     .failure_mode(FailureMode::Closed)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(l.mode(), Mode::Wait(Duration::from_secs(1)));
    /// # }
    /// ```
    pub fn max_wait(self, max: Duration) -> Self {
        self.mode(Mode::Wait(max))
    }

    /// Remembers denials for up to `max_keys` keys: a key denied for a cost is denied
    /// again for the same or a larger cost, with no round trip, until its `retry_after`
    /// has passed (measured from when the reply arrived, so a little longer than the
    /// server said). A full cache drops its expired entries, then everything.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .deny_cache(100_000)
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// # let _ = l;
    /// # }
    /// ```
    pub fn deny_cache(mut self, max_keys: usize) -> Self {
        self.cache = Some(max_keys);
        self
    }

    /// The most decisions one script decides (default 64; 1 turns batching off).
    ///
    /// While a script is in flight, the decisions that arrive meanwhile queue up and go
    /// to Redis together as the next `EVALSHA`, which decides them in order, each seeing
    /// the writes of the ones before it: the same decisions as one script each, made
    /// at the same instant of the server's clock. Nothing waits for a timer: a decision
    /// arriving with nothing in flight is sent at once, and the next batch is whatever
    /// queued meanwhile (up to this many, oldest first). Redis then runs one script for
    /// many decisions, which is what brings decisions near the throughput of plain
    /// `SET`s (see the crate's README).
    ///
    /// Each caller still gets its own verdict, bounded by the timeout from when it
    /// asked (queued time included). A caller dropped (or timed out) while queued is
    /// never sent and counts nowhere; one dropped after its batch was sent cannot call
    /// it back: its decision stands (Redis counted it) and nothing is refunded. A
    /// failed round trip sends its batch and every decision queued behind it to the
    /// failure mode at once.
    ///
    /// On a Redis Cluster a script's keys must share a slot, so decisions batch only
    /// with others for the same key (the same `{hash tag}`); different keys go in
    /// parallel, each key one script at a time.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .max_batch(1) // one script per decision
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// # let _ = l;
    /// # }
    /// ```
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max;
        self
    }

    /// Leases: when a decision goes to Redis, ask for `units` (instead of its cost alone)
    /// and spend what is left of them on this key's next decisions here, without a round
    /// trip, for at most `ttl`. If Redis cannot grant `units`, the same script decides the
    /// cost alone (still one round trip). Units not spent within `ttl` go unused.
    /// Decisions of a cost of `units` or more (or of 0) take no part in leases.
    ///
    /// **One fetch in flight per key.** An instance sends at most one lease fetch for a
    /// key at a time, and only once the key's lease cannot cover a decision (spent, or
    /// expired): the decisions that miss the lease meanwhile wait for that fetch (within
    /// the timeout from when they asked), then take from the lease it brought. If it
    /// cannot cover them, the next one of them fetches again, one in flight again. If
    /// Redis denied the fetch, every waiter of at least the fetching decision's cost gets
    /// the same denial (same `retry_after`; counted in [`Stats::cached`]); if its round
    /// trip failed or timed out, the waiters go to the [`FailureMode`]. A fetch is
    /// settled where its reply arrives (with batching, by the batch's driver, even if
    /// its caller is gone: then the caller's units are held too); a caller dropped
    /// before its fetch was sent abandons it, and one of the waiters fetches instead.
    /// So no lease replaces another that still had units, and an instance never holds
    /// more than `units` of a key.
    ///
    /// **The trade.** A hot key costs one round trip per `units` decisions instead of one
    /// each. Admissions never exceed what Redis granted, but a lease's units are counted
    /// when granted and spent up to `ttl` later, so over any window the admissions may
    /// exceed the limit by up to `units` per instance (the documented slack), and an
    /// instance may hold units that another could have used (a cold key leaves them
    /// unused). Keep `units` a small share of the limit and `ttl` short. Off by default:
    /// every decision exact.
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let l = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(1_000)).unwrap())
    ///     .lease(20, Duration::from_millis(50)) // at most 20 units ahead, spent within 50 ms
    ///     .failure_mode(FailureMode::Open)
    ///     .build()
    ///     .unwrap();
    /// # let _ = l;
    /// # }
    /// ```
    pub fn lease(mut self, units: u64, ttl: Duration) -> Self {
        self.lease = Some((units, ttl));
        self
    }

    /// Validates and builds (no round trip: the connection may still be down).
    ///
    /// ```
    /// # use resilient::ratelimit::Rate;
    /// # use resilient_redis::*;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let e = RedisLimiter::builder(Connection::open("redis://127.0.0.1:1/").unwrap())
    ///     .limit(Limit::gcra(Rate::per_second(10)).unwrap())
    ///     .failure_mode(FailureMode::Local { share: 0.0 })
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(e.field(), "redis_limiter.failure_mode");
    /// # }
    /// ```
    pub fn build(self) -> Result<RedisLimiter, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.limits.is_empty() {
            return Err(ConfigError::new(
                "redis_limiter.limits",
                "needs at least one limit",
            ));
        }
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "redis_limiter.prefix",
                "must not contain '{' or '}' (the key is the hash tag)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "redis_limiter.timeout",
                "must be longer than zero",
            ));
        }
        let Some(mode) = self.mode else {
            return Err(ConfigError::new(
                "redis_limiter.failure_mode",
                "must be chosen: FailureMode::Open, Closed or Local { share }",
            ));
        };
        let mut local = Vec::new();
        if let FailureMode::Local { share } = mode {
            if !(share > 0.0 && share <= 1.0) {
                return Err(ConfigError::new(
                    "redis_limiter.failure_mode",
                    format!("the local share must be in (0, 1] (got {share})"),
                ));
            }
            for l in &self.limits {
                local.push(KeyedLimiter::builder(l.local(share)?).build::<String>()?);
            }
        }
        if self.max_batch == 0 {
            return Err(ConfigError::new(
                "redis_limiter.max_batch",
                "must be at least 1 (1: no batching)",
            ));
        }
        if let Some((units, ttl)) = self.lease {
            let capacity = self.limits.iter().map(Limit::max_cost).min().unwrap_or(0);
            if units < 2 || units > capacity {
                return Err(ConfigError::new(
                    "redis_limiter.lease",
                    format!(
                        "units must be at least 2 and at most the smallest limit's capacity ({capacity}); got {units}"
                    ),
                ));
            }
            if ttl.is_zero() || ttl > Duration::from_secs(60) {
                return Err(ConfigError::new(
                    "redis_limiter.lease",
                    format!("ttl must be longer than zero and at most 60 s (got {ttl:?})"),
                ));
            }
        }
        if self.cache == Some(0) {
            return Err(ConfigError::new(
                "redis_limiter.deny_cache",
                "must hold at least one key",
            ));
        }
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                batcher: (self.max_batch > 1)
                    .then(|| Batcher::new(self.max_batch, self.conn.is_cluster())),
                conn: self.conn,
                script: Script::new(LUA),
                args: self.limits.iter().map(Limit::args).collect(),
                limits: self.limits,
                prefix: self.prefix,
                timeout: self.timeout,
                mode,
                health: Health {
                    origin: Instant::now(),
                    down_until: AtomicU64::new(0),
                    probe: self.probe,
                },
                local,
                cache: self.cache.map(|max| DenyCache {
                    map: Mutex::new(HashMap::new()),
                    max,
                }),
                counters: Counters::default(),
                wait: self.wait,
                leases: self.lease.map(|(units, ttl)| Leases {
                    units,
                    ttl,
                    held: Arc::default(),
                    next_id: AtomicU64::new(0),
                }),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(units: u64, ttl: Duration) -> Leases {
        Leases {
            units,
            ttl,
            held: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }

    fn verdict(allowed: bool, remaining: u64) -> Verdict {
        let d = Decision {
            allowed,
            limit: 100,
            remaining,
            reset: Duration::from_secs(1),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            },
        };
        Verdict {
            allowed,
            decisions: std::iter::once(d).collect(),
        }
    }

    fn fetch(s: Step) -> LeaseFetch {
        match s {
            Step::Fetch(f) => f,
            _ => panic!("not a fetch"),
        }
    }

    fn wait(s: Step) -> watch::Receiver<Option<Outcome>> {
        match s {
            Step::Wait(rx) => rx,
            _ => panic!("not a wait"),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn one_fetch_in_flight_then_its_lease_is_spent() {
        let l = leases(10, Duration::from_secs(1));
        assert!(matches!(l.step("k", 1, false), Step::Miss));
        let f = fetch(l.step("k", 1, true));
        // a second miss waits for the fetch in flight, even when it would claim
        assert!(matches!(l.step("k", 1, false), Step::Wait(_)));
        let mut rx = wait(l.step("k", 1, true));
        let v = f.settle(1, 10, verdict(true, 90), false);
        assert_eq!(v.decisions[0].remaining, 99);
        assert!(matches!(
            rx.wait_for(Option::is_some).await.unwrap().clone(),
            Some(Outcome::Granted)
        ));
        // 9 units held: spent one by one, then a miss again
        for left in (0..9).rev() {
            match l.step("k", 1, false) {
                Step::Take(v) => assert_eq!(v.decisions[0].remaining, 90 + left),
                _ => panic!("not taken"),
            }
        }
        assert!(matches!(l.step("k", 1, false), Step::Miss));
        // decisions of `units` or more, or of 0, take no part
        assert!(matches!(l.step("k", 10, true), Step::Exact));
        assert!(matches!(l.step("k", 0, true), Step::Exact));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_abandoned_fetch_wakes_its_waiters_and_can_be_claimed_again() {
        let l = leases(10, Duration::from_secs(1));
        let f = fetch(l.step("k", 1, true));
        let mut rx = wait(l.step("k", 1, true));
        drop(f);
        assert!(rx.wait_for(Option::is_some).await.is_err());
        let f = fetch(l.step("k", 1, true));
        let mut rx = wait(l.step("k", 3, true));
        f.fail();
        assert!(matches!(
            rx.wait_for(Option::is_some).await.unwrap().clone(),
            Some(Outcome::Failed)
        ));
        let f = fetch(l.step("k", 1, true));
        let mut rx = wait(l.step("k", 3, true));
        let denied = f.settle(2, 0, verdict(false, 1), false);
        match rx.wait_for(Option::is_some).await.unwrap().clone() {
            Some(Outcome::Denied { cost: 2, verdict }) => assert_eq!(verdict, denied),
            _ => panic!("not the denial"),
        }
        // nothing held, nothing in flight: the entry is gone
        assert!(lock_map(&l.held).is_empty());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_full_map_decides_other_keys_exactly_until_leases_expire() {
        let ttl = Duration::from_secs(1);
        let l = leases(10, ttl);
        for i in 0..MAX_LEASED_KEYS {
            fetch(l.step(&i.to_string(), 1, true)).settle(1, 10, verdict(true, 90), false);
        }
        assert_eq!(lock_map(&l.held).len(), MAX_LEASED_KEYS);
        // a key already held still fetches; another is decided exactly
        assert!(matches!(l.step("0", 9, true), Step::Take(_)));
        let _in_flight = fetch(l.step("0", 1, true));
        assert!(matches!(l.step("new", 1, true), Step::Exact));
        tokio::time::advance(ttl).await;
        // the expired leases make room
        assert!(matches!(l.step("new", 1, true), Step::Fetch(_)));
        assert!(lock_map(&l.held).len() <= 2);
    }
}
