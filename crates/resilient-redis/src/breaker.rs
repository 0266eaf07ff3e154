//! [`SharedBreaker`]: one circuit breaker's open/closed decision shared by every instance
//! of a service through Redis.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::{RedisError, Script};
use resilient::circuit::{Proposal, RemoteStore, RemoteSync, SharedPhase};
use resilient::{
    Acquire, CircuitBreaker, CircuitState, ConfigError, Context, Guard, Outcome, Permit, Rejection,
    SharedClock, system_clock,
};

use crate::connection::Connection;

const LUA: &str = include_str!("breaker.lua");

/// A circuit breaker whose open decision is shared by all instances through Redis, with
/// a local breaker for everything else.
///
/// **How it works.** Each instance runs calls through its own local
/// [`CircuitBreaker`] (the same API, states and events as ever) and counts their outcomes
/// in two atomics. A background task ([`SharedBreaker::spawn_sync`]) reports those counts
/// every `sync_interval` in one round trip (a Lua script) and reads back the shared view:
/// the failures and calls of every instance over the last `window` (buckets on Redis
/// `TIME`, never a client clock). The script opens the shared circuit when, over the
/// window, there were at least `min_calls` calls, the failure rate reached `failure_rate`,
/// and at least `min_instances` distinct instances reported failures; it stays open for
/// `open_for` (a key with a time to live, on Redis' clock), and every instance then rejects
/// calls with `CircuitOpen`. After the break, the window starts afresh.
///
/// - **No round trip on the call path**: admission reads an atomic (the shared deadline)
///   and then asks the local breaker; outcomes are batched.
/// - **Staleness bound**: an instance sees the shared circuit open at most
///   `sync_interval` plus one round trip (bounded by `timeout`) after the report that
///   opened it.
/// - **One bad node does not poison all**: failures from fewer than `min_instances`
///   instances never open the shared circuit (that instance's local breaker still
///   protects it).
/// - **Redis down**: reports fail (counted in [`SharedBreaker::stats`]); a shared open
///   state already known runs out at its deadline, and each instance falls back to its
///   local breaker alone until Redis answers again.
/// - **The local breaker's API**: the shared breaker is the local breaker's
///   [`RemoteStore`] (attached at build; a local breaker that already has one is
///   refused). The local [`CircuitBreaker`] itself follows the shared phases: it opens
///   with the shared deadline (on Redis' clock, converted to the local clock) and the
///   shared failed-recovery count, so [`SharedBreaker::local`] works anywhere a breaker
///   does (`call`, pipelines, the tower layer) and reports its outcomes all the same.
///   When a shared break ends, each instance probes on its own; the first recovery that
///   ends decides for all: a failed probe starts the break again, backed off (the local
///   breaker's schedule, the shared count), and succeeded probes close it everywhere (at
///   each instance's next report). A trip from closed stays local: only the reported
///   counts open the circuit for the fleet.
///
/// Keys share one `{hash tag}` (`resilient:breaker:{NAME}:...`), so Redis Cluster keeps
/// them on one slot.
///
/// ```no_run
/// use resilient::{CircuitBreaker, Pipeline};
/// use resilient_redis::{Connection, SharedBreaker};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() {
/// let conn = Connection::open("redis://127.0.0.1/").unwrap();
/// let breaker = SharedBreaker::builder(conn, "payments")
///     .local(CircuitBreaker::consecutive_failures(5).build().unwrap())
///     .failure_rate(0.5)
///     .min_calls(20)
///     .min_instances(2)
///     .open_for(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// let _sync = breaker.spawn_sync(); // reports every 100 ms until dropped
/// let pipeline = Pipeline::builder().guard(breaker.clone()).build().unwrap();
/// # let _ = pipeline;
/// # }
/// ```
#[derive(Clone)]
pub struct SharedBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    local: CircuitBreaker,
    link: Arc<Link>,
    conn: Connection,
    script: Script,
    keys: [String; 4],
    instance: String,
    settings: Settings,
    clock: SharedClock,
    /// The shared circuit's end, in nanoseconds on `clock`; 0 when it is closed.
    open_until: AtomicU64,
    syncs: AtomicU64,
    errors: AtomicU64,
    last: Mutex<(SharedView, Option<String>)>,
}

/// The local breaker's [`RemoteStore`]: it counts the breaker's closed-state outcomes for
/// the next report, keeps the time base (Redis `TIME`, estimated from the last reply),
/// queues the ends of shared recoveries for the next report, and moves the breaker to the
/// phases the reports read back.
struct Link {
    clock: SharedClock,
    /// Redis' time minus `clock`, in milliseconds, as the last reply measured it (the
    /// wall clock's until the first reply).
    offset_ms: AtomicI64,
    successes: AtomicU64,
    failures: AtomicU64,
    sync: Mutex<Option<RemoteSync>>,
    /// The end of a shared recovery, for the next report.
    pending: Mutex<Option<Pending>>,
    /// Wakes the background report at once when something is pending.
    wake: tokio::sync::Notify,
    /// The local breaker's phase descends from a shared break (its recovery is shared).
    in_shared: AtomicBool,
    /// The generation of the shared state last read back (`u64::MAX`: none yet).
    generation: AtomicU64,
}

/// How a shared recovery ended in this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The probe failed: open until this Redis time (ms), after this many failed recoveries.
    Open { until_ms: u64, recoveries: u32 },
    /// The probes succeeded: close.
    Close,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreakerStore")
            .field("offset_ms", &self.offset_ms.load(Ordering::Relaxed))
            .field("in_shared", &self.in_shared.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Link {
    fn local_ms(&self) -> i64 {
        millis(self.clock.now())
    }

    fn adopt(&self, phase: SharedPhase) {
        let sync = self
            .sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sync) = sync {
            sync.adopt(phase);
        }
    }

    fn local_state(&self) -> Option<CircuitState> {
        self.sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(RemoteSync::state)
    }
}

impl RemoteStore for Link {
    fn now(&self) -> Duration {
        let ms = self
            .local_ms()
            .saturating_add(self.offset_ms.load(Ordering::Acquire));
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Shares only the end of a recovery from a shared break: a failed one (the break
    /// starts again, backed off) or a successful one (the shared circuit closes). A trip
    /// from closed stays local: the fleet trips on the reported counts, from
    /// `min_instances` instances.
    fn propose(&self, p: Proposal) {
        let shared = self.in_shared.load(Ordering::Acquire);
        // A phase with no end (closed, or forced by hand) no longer descends from a
        // shared break.
        if !matches!(p.phase.state, CircuitState::Open | CircuitState::HalfOpen) {
            self.in_shared.store(false, Ordering::Release);
        }
        if !shared || p.from != CircuitState::HalfOpen {
            return;
        }
        let pending = match (p.phase.state, p.phase.until) {
            (CircuitState::Open, Some(until)) => Pending::Open {
                until_ms: u64::try_from(until.as_millis()).unwrap_or(u64::MAX),
                recoveries: p.phase.failed_recoveries,
            },
            (CircuitState::Closed, _) => Pending::Close,
            _ => return,
        };
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(pending);
        self.wake.notify_one();
    }

    fn attach(&self, sync: RemoteSync) {
        *self.sync.lock().unwrap_or_else(PoisonError::into_inner) = Some(sync);
    }

    fn record(&self, failed: bool) {
        let c = if failed {
            &self.failures
        } else {
            &self.successes
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    window: Duration,
    bucket: Duration,
    min_calls: u64,
    failure_rate: f64,
    min_instances: u64,
    open_for: Duration,
    sync_interval: Duration,
    timeout: Duration,
}

/// The shared state as the last report read it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedView {
    /// Whether the shared circuit is open.
    pub open: bool,
    /// How long it stays open (Redis' time to live).
    pub remaining: Duration,
    /// Calls of every instance in the window.
    pub calls: u64,
    /// Failures of every instance in the window.
    pub failures: u64,
    /// Distinct instances that reported failures in the window.
    pub failing_instances: u64,
}

/// Counts of a [`SharedBreaker`]'s reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStats {
    /// Reports that reached Redis.
    pub syncs: u64,
    /// Reports that failed (Redis down, slow or refusing).
    pub errors: u64,
    /// The last report's error, if the last report failed.
    pub last_error: Option<String>,
    /// What the last successful report read back.
    pub view: SharedView,
}

/// Builds a [`SharedBreaker`].
#[derive(Debug)]
pub struct SharedBreakerBuilder {
    conn: Connection,
    name: String,
    local: Option<CircuitBreaker>,
    settings: Settings,
    instance: Option<String>,
    prefix: String,
    clock: Option<SharedClock>,
}

impl SharedBreaker {
    /// A shared breaker named `name` (instances using the same name and Redis share it).
    /// Defaults: a window of 10 s in 1 s buckets, at least 20 calls, a failure rate of
    /// 0.5, failures from at least 2 instances, open for 30 s, a report every 100 ms with a
    /// 250 ms timeout, and a local breaker that opens after 5 consecutive failures.
    pub fn builder(conn: impl Into<Connection>, name: &str) -> SharedBreakerBuilder {
        SharedBreakerBuilder {
            conn: conn.into(),
            name: name.to_owned(),
            local: None,
            settings: Settings {
                window: Duration::from_secs(10),
                bucket: Duration::from_secs(1),
                min_calls: 20,
                failure_rate: 0.5,
                min_instances: 2,
                open_for: Duration::from_secs(30),
                sync_interval: Duration::from_millis(100),
                timeout: Duration::from_millis(250),
            },
            instance: None,
            prefix: "resilient:breaker:".into(),
            clock: None,
        }
    }

    /// The local breaker, following the shared phases (see [`SharedBreaker`]): usable
    /// anywhere a [`CircuitBreaker`] is.
    ///
    /// ```no_run
    /// # use resilient_redis::SharedBreaker;
    /// # async fn demo(shared: SharedBreaker) {
    /// let r = shared.local().call(|| async { Ok::<_, std::io::Error>(1) }).await;
    /// # let _ = r; }
    /// ```
    pub fn local(&self) -> &CircuitBreaker {
        &self.inner.local
    }

    /// This instance's id in the shared state.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    fn now(&self) -> u64 {
        u64::try_from(self.inner.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long the shared circuit stays open, as this instance last heard; `None` when
    /// it is closed.
    pub fn shared_open_for(&self) -> Option<Duration> {
        let until = self.inner.open_until.load(Ordering::Acquire);
        if until == 0 {
            return None; // closed: no clock read on the call path
        }
        let now = self.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// `Open` while the shared circuit is open, else the local breaker's state.
    pub fn state(&self) -> CircuitState {
        if self.shared_open_for().is_some() {
            CircuitState::Open
        } else {
            self.inner.local.state()
        }
    }

    /// Report counts.
    pub fn stats(&self) -> SharedStats {
        let (view, last_error) = self
            .inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        SharedStats {
            syncs: self.inner.syncs.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
            last_error,
            view,
        }
    }

    /// Reports this instance's outcomes since the last report and reads the shared view
    /// back (one round trip, bounded by the timeout). The background task calls it every
    /// `sync_interval`; call it yourself to report at once. A failed report keeps its
    /// counts for the next one.
    pub async fn sync(&self) -> Result<SharedView, RedisError> {
        sync(&self.inner).await
    }

    /// Starts reporting every `sync_interval` on the current tokio runtime, until the
    /// returned handle (or every clone of this breaker) is dropped. A failed report is
    /// counted and retried at the next interval: the task does not stop on errors.
    pub fn spawn_sync(&self) -> SyncTask {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.settings.sync_interval;
        SyncTask(tokio::spawn(async move {
            loop {
                // Every interval, or at once when a shared recovery ended here.
                let link = match weak.upgrade() {
                    Some(inner) => inner.link.clone(),
                    None => return,
                };
                let _ = tokio::time::timeout(every, link.wake.notified()).await;
                drop(link);
                let Some(inner) = weak.upgrade() else { return };
                let _ = sync(&inner).await;
            }
        }))
    }
}

async fn sync(inner: &Inner) -> Result<SharedView, RedisError> {
    let link = &*inner.link;
    let s = link.successes.swap(0, Ordering::AcqRel);
    let f = link.failures.swap(0, Ordering::AcqRel);
    let pending = link
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let (proposal, until_ms, recoveries) = match pending {
        None => ("", 0, 0),
        Some(Pending::Open {
            until_ms,
            recoveries,
        }) => ("open", until_ms, recoveries),
        Some(Pending::Close) => ("close", 0, 0),
    };
    let st = inner.settings;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut inv = inner.script.prepare_invoke();
    for k in &inner.keys {
        inv.key(k);
    }
    inv.arg(&inner.instance)
        .arg(s)
        .arg(f)
        .arg(ms(st.window))
        .arg(ms(st.bucket))
        .arg(st.min_calls)
        .arg((st.failure_rate * 1000.0).round() as u64)
        .arg(st.min_instances)
        .arg(ms(st.open_for))
        .arg(proposal)
        .arg(until_ms)
        .arg(recoveries);
    let reply = tokio::time::timeout(st.timeout, inner.conn.invoke(&inv)).await;
    let reply = match reply {
        Ok(Ok(r)) if r.len() == 8 => Ok(r),
        Ok(Ok(r)) => Err(RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply from the shared breaker script",
            format!("{r:?}"),
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RedisError::from((
            redis::ErrorKind::Io,
            "the shared breaker's report timed out",
        ))),
    };
    let mut last = inner.last.lock().unwrap_or_else(PoisonError::into_inner);
    match reply {
        Ok(r) => {
            let n = |i: usize| u64::try_from(r[i]).unwrap_or(0);
            let view = SharedView {
                open: r[0] == 1,
                remaining: Duration::from_millis(n(1)),
                calls: n(2),
                failures: n(3),
                failing_instances: n(4),
            };
            let now = u64::try_from(inner.clock.now().as_nanos()).unwrap_or(u64::MAX);
            let until = if view.open {
                now.saturating_add(u64::try_from(view.remaining.as_nanos()).unwrap_or(u64::MAX))
            } else {
                0
            };
            inner.open_until.store(until, Ordering::Release);
            inner.syncs.fetch_add(1, Ordering::Relaxed);
            *last = (view, None);
            drop(last);
            // Redis' clock, as of this reply: the time base of shared deadlines.
            let redis_ms = r[5];
            link.offset_ms
                .store(redis_ms.saturating_sub(link.local_ms()), Ordering::Release);
            // A shared transition happened (a trip, or a recovery that ended somewhere):
            // the local breaker follows.
            let generation = n(6);
            let changed = link.generation.swap(generation, Ordering::AcqRel) != generation;
            if view.open {
                link.in_shared.store(true, Ordering::Release);
                if changed || link.local_state() == Some(CircuitState::Closed) {
                    let until = Duration::from_millis(n(5).saturating_add(n(1)));
                    let recoveries = u32::try_from(n(7)).unwrap_or(u32::MAX);
                    link.adopt(SharedPhase::new(
                        CircuitState::Open,
                        Some(until),
                        recoveries,
                    ));
                }
            } else if changed
                && link.in_shared.swap(false, Ordering::AcqRel)
                && matches!(
                    link.local_state(),
                    Some(CircuitState::Open | CircuitState::HalfOpen)
                )
            {
                link.adopt(SharedPhase::new(CircuitState::Closed, None, 0));
            }
            Ok(view)
        }
        Err(e) => {
            // keep the counts (and a pending recovery) for the next report
            link.successes.fetch_add(s, Ordering::AcqRel);
            link.failures.fetch_add(f, Ordering::AcqRel);
            if let Some(p) = pending {
                link.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(p);
            }
            inner.errors.fetch_add(1, Ordering::Relaxed);
            last.1 = Some(e.to_string());
            Err(e)
        }
    }
}

/// The background report task of a [`SharedBreaker`]; dropping it stops the task.
#[derive(Debug)]
pub struct SyncTask(tokio::task::JoinHandle<()>);

impl Drop for SyncTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SharedBreakerBuilder {
    /// The local breaker (default: open after 5 consecutive failures).
    pub fn local(mut self, breaker: CircuitBreaker) -> Self {
        self.local = Some(breaker);
        self
    }

    /// The window over which all instances' outcomes are counted, and its bucket size.
    pub fn window(mut self, window: Duration, bucket: Duration) -> Self {
        self.settings.window = window;
        self.settings.bucket = bucket;
        self
    }

    /// Calls (of all instances, in the window) needed before the shared circuit opens.
    pub fn min_calls(mut self, n: u64) -> Self {
        self.settings.min_calls = n;
        self
    }

    /// The failure rate (over all instances' calls in the window) that opens it.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.settings.failure_rate = rate;
        self
    }

    /// Distinct instances that must have reported failures in the window before it opens.
    pub fn min_instances(mut self, n: u64) -> Self {
        self.settings.min_instances = n;
        self
    }

    /// How long the shared circuit stays open.
    pub fn open_for(mut self, d: Duration) -> Self {
        self.settings.open_for = d;
        self
    }

    /// How often the background task reports (the staleness bound, with `timeout`).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.settings.sync_interval = d;
        self
    }

    /// The longest a report may take.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = d;
        self
    }

    /// This instance's id (default: a random one).
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// The key prefix (default `resilient:breaker:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The clock the shared deadline is kept on locally (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the breaker.
    ///
    /// ```
    /// use resilient_redis::{Connection, SharedBreaker};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let conn = Connection::open("redis://127.0.0.1:1/").unwrap(); // lazy: nothing dialled
    /// let err = SharedBreaker::builder(conn, "x").failure_rate(1.5).build().unwrap_err();
    /// assert_eq!(err.field(), "shared_breaker.failure_rate");
    /// # }
    /// ```
    pub fn build(self) -> Result<SharedBreaker, ConfigError> {
        let st = self.settings;
        let positive = |field: &'static str, d: Duration| {
            if d.is_zero() || d > Duration::from_secs(86_400 * 365) {
                Err(ConfigError::new(field, "must be between 1 ms and a year"))
            } else {
                Ok(())
            }
        };
        positive("shared_breaker.window", st.window)?;
        positive("shared_breaker.bucket", st.bucket)?;
        positive("shared_breaker.open_for", st.open_for)?;
        positive("shared_breaker.sync_interval", st.sync_interval)?;
        positive("shared_breaker.timeout", st.timeout)?;
        if st.bucket > st.window || st.window.as_millis() / st.bucket.as_millis().max(1) > 1_000 {
            return Err(ConfigError::new(
                "shared_breaker.bucket",
                "must be at most the window, and the window at most 1,000 buckets",
            ));
        }
        if !(st.failure_rate.is_finite() && st.failure_rate > 0.0 && st.failure_rate <= 1.0) {
            return Err(ConfigError::new(
                "shared_breaker.failure_rate",
                format!("must be in (0, 1], got {}", st.failure_rate),
            ));
        }
        if st.min_instances == 0 || st.min_calls == 0 {
            return Err(ConfigError::new(
                "shared_breaker.min_instances",
                "min_instances and min_calls must be at least 1",
            ));
        }
        let local = match self.local {
            Some(b) => b,
            None => CircuitBreaker::consecutive_failures(5)
                .name(self.name.clone())
                .build()?,
        };
        let tag = format!("{}{{{}}}", self.prefix, self.name);
        let instance = self
            .instance
            .unwrap_or_else(|| format!("{:016x}", random_id()));
        let clock = self.clock.unwrap_or_else(system_clock);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let link = Arc::new(Link {
            offset_ms: AtomicI64::new(millis(wall).saturating_sub(millis(clock.now()))),
            clock: clock.clone(),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            sync: Mutex::new(None),
            pending: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            in_shared: AtomicBool::new(false),
            generation: AtomicU64::new(u64::MAX),
        });
        local.attach_remote_store(link.clone())?;
        Ok(SharedBreaker {
            inner: Arc::new(Inner {
                local,
                link,
                conn: self.conn,
                script: Script::new(LUA),
                keys: [
                    format!("{tag}:counts"),
                    format!("{tag}:failing"),
                    format!("{tag}:open"),
                    format!("{tag}:generation"),
                ],
                instance,
                settings: st,
                clock,
                open_until: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                last: Mutex::new((SharedView::default(), None)),
            }),
        })
    }
}

/// A random instance id without another dependency: the process id and the time, hashed
/// with a randomly seeded hasher.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
}

impl fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("instance", &self.inner.instance)
            .field("key", &self.inner.keys[2])
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Admission: rejected while the shared circuit is open, else the local breaker decides;
/// each outcome is counted for the next report and handed to the local breaker.
impl Guard for SharedBreaker {
    fn name(&self) -> &'static str {
        "shared-breaker"
    }

    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        if let Some(left) = self.shared_open_for() {
            return Acquire::Ready(Err(Rejection::CircuitOpen {
                retry_after: Some(left),
            }));
        }
        // The local permit's token, re-issued as ours so that its release comes here first.
        let rewrap = move |p: Permit<'a>| {
            let token = p.token();
            std::mem::forget(p); // it holds only a reference and the token
            Permit::new(self, token)
        };
        match self.inner.local.acquire(ctx) {
            Acquire::Ready(r) => Acquire::Ready(r.map(rewrap)),
            Acquire::Wait(w) => Acquire::Wait(Box::pin(async move { w.await.map(rewrap) })),
        }
    }

    fn on_release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
        // The local breaker hands counted outcomes to its store (`Link::record`).
        self.inner.local.on_release(token, outcome);
    }

    fn measures_duration(&self) -> bool {
        self.inner.local.measures_duration()
    }
}
