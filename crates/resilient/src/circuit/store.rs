//! Where the breaker's state lives: in-process atomics by default, another synchronous
//! [`StateStore`], or in-process atomics replicated to a [`RemoteStore`] (for example one
//! backed by Redis, to share one breaker's phases across processes).
//!
//! Two seams, for two consistency models:
//!
//! - [`StateStore`]: the state machine itself (state, epoch, half-open probe counts and the
//!   phase deadline), changed by synchronous compare-exchange on the admission path. That
//!   is what "exactly N probes" needs, and it suits stores that answer without I/O (shared
//!   memory, another breaker's atomics). Its deadlines are readings of the breaker's own
//!   clock and its failed-recovery count stays in the breaker, so breakers sharing one
//!   must share a clock too.
//! - [`RemoteStore`]: for a store behind a network. The breaker keeps deciding on its
//!   in-process atomics (admission never waits for the store, and costs what it costs
//!   with no store at all); it offers each of its transitions to the store
//!   ([`RemoteStore::propose`], which must not block: a remote store sends it in the
//!   background), and the store moves the breaker to the phases it learns from elsewhere
//!   ([`RemoteSync::adopt`]). Phases travel as [`SharedPhase`]s, whose deadlines are on
//!   the store's time base ([`RemoteStore::now`]: wall-clock time, or a server's clock
//!   such as Redis `TIME`), converted to and from the breaker's clock on each
//!   transition, and which carry the failed-recovery count that drives break backoff, so
//!   that count is shared too. The store decides what to share and resolves conflicts
//!   (the store wins); what stays per process is the half-open probing (each process
//!   admits its own probes) and the sliding windows.

use super::events::TransitionReason;
use super::machine::Breaker;
use super::state::{CircuitState, PhaseDeadline, StateWord};
use super::sync::{AtomicU64, Ordering};
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Storage for a breaker's state machine.
///
/// Implementations must make [`StateStore::compare_exchange`] atomic with respect to every
/// other breaker sharing the store. Calls are synchronous and sit on the admission path,
/// and deadlines are readings of the breaker's clock: a store behind a network, or shared
/// by breakers on different clocks, implements [`RemoteStore`] instead.
///
/// ```
/// use resilient::circuit::{LocalStore, PhaseDeadline, StateStore, StateWord};
/// use resilient::CircuitState;
/// use std::sync::Arc;
///
/// /// A store that delegates to the in-process one and counts transitions.
/// #[derive(Debug, Default)]
/// struct Counting { local: LocalStore, cas: std::sync::atomic::AtomicU32 }
/// impl StateStore for Counting {
///     fn load(&self) -> StateWord { self.local.load() }
///     fn compare_exchange(&self, current: StateWord, new: StateWord) -> Result<(), StateWord> {
///         self.cas.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         self.local.compare_exchange(current, new)
///     }
///     fn load_deadline(&self) -> PhaseDeadline { self.local.load_deadline() }
///     fn compare_exchange_deadline(
///         &self, current: PhaseDeadline, new: PhaseDeadline,
///     ) -> Result<(), PhaseDeadline> {
///         self.local.compare_exchange_deadline(current, new)
///     }
/// }
/// let breaker = resilient::CircuitBreaker::builder()
///     .store(Arc::new(Counting::default()))
///     .build()
///     .unwrap();
/// breaker.isolate();
/// assert_eq!(breaker.state(), CircuitState::Isolated);
/// ```
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// The current state word.
    fn load(&self) -> StateWord;

    /// Replaces `current` with `new` if the store still holds `current`; otherwise returns
    /// what it holds.
    fn compare_exchange(&self, current: StateWord, new: StateWord) -> Result<(), StateWord>;

    /// The current phase deadline.
    fn load_deadline(&self) -> PhaseDeadline;

    /// Replaces the deadline `current` with `new` if unchanged; otherwise returns what it
    /// holds.
    fn compare_exchange_deadline(
        &self,
        current: PhaseDeadline,
        new: PhaseDeadline,
    ) -> Result<(), PhaseDeadline>;
}

/// The default store: two atomics in this process.
#[derive(Debug, Default)]
pub struct LocalStore {
    word: AtomicU64,
    deadline: AtomicU64,
}

impl StateStore for LocalStore {
    #[inline]
    fn load(&self) -> StateWord {
        StateWord::from_raw(self.word.load(Ordering::Acquire))
    }

    #[inline]
    fn compare_exchange(&self, current: StateWord, new: StateWord) -> Result<(), StateWord> {
        self.word
            .compare_exchange(
                current.raw(),
                new.raw(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(StateWord::from_raw)
    }

    #[inline]
    fn load_deadline(&self) -> PhaseDeadline {
        PhaseDeadline::from_raw(self.deadline.load(Ordering::Acquire))
    }

    fn compare_exchange_deadline(
        &self,
        current: PhaseDeadline,
        new: PhaseDeadline,
    ) -> Result<(), PhaseDeadline> {
        self.deadline
            .compare_exchange(
                current.raw(),
                new.raw(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(PhaseDeadline::from_raw)
    }
}

/// Static dispatch for the default store, dynamic for custom ones (keeps the hot path free
/// of a virtual call).
#[derive(Debug)]
pub(crate) enum Store {
    Local(LocalStore),
    Custom(Arc<dyn StateStore>),
}

impl Store {
    #[inline]
    pub(crate) fn load(&self) -> StateWord {
        match self {
            Store::Local(s) => s.load(),
            Store::Custom(s) => s.load(),
        }
    }

    #[inline]
    pub(crate) fn cas(&self, current: StateWord, new: StateWord) -> Result<(), StateWord> {
        match self {
            Store::Local(s) => s.compare_exchange(current, new),
            Store::Custom(s) => s.compare_exchange(current, new),
        }
    }

    pub(crate) fn load_deadline(&self) -> PhaseDeadline {
        match self {
            Store::Local(s) => s.load_deadline(),
            Store::Custom(s) => s.load_deadline(),
        }
    }

    pub(crate) fn cas_deadline(
        &self,
        current: PhaseDeadline,
        new: PhaseDeadline,
    ) -> Result<(), PhaseDeadline> {
        match self {
            Store::Local(s) => s.compare_exchange_deadline(current, new),
            Store::Custom(s) => s.compare_exchange_deadline(current, new),
        }
    }

    /// Publishes `new`, the deadline of the phase that began at `epoch`, unless the state
    /// has already moved past that phase.
    ///
    /// The writer of a phase is paused between publishing the state and writing its
    /// deadline; meanwhile the breaker may move on and a later phase publish its own
    /// deadline. An unconditional write would then replace the newer deadline with a stale
    /// one (an open phase without a deadline of its own). Here a stale write can only land
    /// before the newer phase's writer, which then replaces it: its compare-exchange sees
    /// the change, and the state it reads after the deadline it read is at least as new.
    pub(crate) fn publish_deadline(&self, new: PhaseDeadline, epoch: u32) {
        let mut cur = self.load_deadline();
        while self.load().epoch() == epoch {
            match self.cas_deadline(cur, new) {
                Ok(()) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Replaces `seen` (a deadline that does not belong to the phase of `epoch`) with
    /// `fresh` while that phase lasts; returns the deadline now in the store if it belongs
    /// to that phase.
    pub(crate) fn repair_deadline(
        &self,
        seen: PhaseDeadline,
        fresh: PhaseDeadline,
        epoch: u32,
    ) -> Option<PhaseDeadline> {
        if self.load().epoch() != epoch {
            return None;
        }
        let now_stored = match self.cas_deadline(seen, fresh) {
            Ok(()) => fresh,
            Err(actual) => actual,
        };
        now_stored.at(epoch).map(|_| now_stored)
    }
}

/// A phase of a breaker as a [`RemoteStore`] shares it: its state, when it ends on the
/// store's time base, and the failed-recovery count that sizes the next break.
///
/// ```
/// use resilient::circuit::SharedPhase;
/// use resilient::CircuitState;
/// use std::time::Duration;
///
/// let p = SharedPhase::new(CircuitState::Open, Some(Duration::from_secs(1_700_000_030)), 1);
/// assert_eq!(p.state, CircuitState::Open);
/// assert_eq!(p.failed_recoveries, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedPhase {
    /// The state.
    pub state: CircuitState,
    /// When the phase ends, on the store's time base ([`RemoteStore::now`]); `None` for a
    /// phase without an end (closed, isolated, disabled, metrics-only).
    pub until: Option<Duration>,
    /// How many recoveries in a row failed before this phase (0 after a close).
    pub failed_recoveries: u32,
}

impl SharedPhase {
    /// A phase.
    ///
    /// ```
    /// use resilient::circuit::SharedPhase;
    /// let closed = SharedPhase::new(resilient::CircuitState::Closed, None, 0);
    /// assert_eq!(closed.until, None);
    /// ```
    pub fn new(state: CircuitState, until: Option<Duration>, failed_recoveries: u32) -> Self {
        Self {
            state,
            until,
            failed_recoveries,
        }
    }
}

/// One of a breaker's own transitions, offered to its [`RemoteStore`].
///
/// ```
/// use resilient::circuit::{Proposal, SharedPhase, TransitionReason};
/// use resilient::CircuitState;
/// fn shared_worthy(p: &Proposal) -> bool {
///     // e.g. share what ends a recovery, keep local trips local
///     p.from == CircuitState::HalfOpen
/// }
/// # let _ = shared_worthy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Proposal {
    /// The state it left.
    pub from: CircuitState,
    /// The phase it entered, its deadline on the store's time base.
    pub phase: SharedPhase,
    /// Why.
    pub reason: TransitionReason,
}

/// A store that shares a breaker's phases with other processes over a network.
///
/// The breaker decides on its in-process state; nothing here sits on the admission path:
///
/// - [`propose`](RemoteStore::propose) is called after each of the breaker's own
///   transitions, on the thread that made it (it must not block or wait for I/O: queue
///   it and send it in the background);
/// - [`record`](RemoteStore::record) is called with each counted outcome of a closed
///   breaker (cheap: an atomic increment, for a store that aggregates outcomes across
///   processes); the default ignores them;
/// - the store moves the breaker to a phase decided elsewhere with the [`RemoteSync`]
///   it receives in [`attach`](RemoteStore::attach), whenever it learns of one (from a
///   background poll, a subscription, or the reply to a proposal). The store is the
///   authority: a proposal it refuses is answered by adopting its phase.
///
/// [`now`](RemoteStore::now) is the store's clock, the time base of every
/// [`SharedPhase::until`]: wall-clock time, or a server's clock estimated from its last
/// reply (Redis `TIME`). It is read on transitions only.
///
/// Unlike a [`StateStore`], a remote store does not make half-open probing exact across
/// processes: each process admits its own `half_open_probes` while a shared phase is
/// half-open (the store decides which proposal ends the phase), and sliding windows stay
/// per process. Deadlines convert between clocks on each transition: a shared deadline is
/// `store.now() + (local deadline - local now)`, and back.
///
/// ```
/// use resilient::circuit::{Proposal, RemoteStore, RemoteSync, SharedPhase};
/// use resilient::{CircuitBreaker, CircuitState};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// /// A "remote" store in memory: it records what it is offered, and can push a phase.
/// #[derive(Debug, Default)]
/// struct Memory { sync: Mutex<Option<RemoteSync>>, seen: Mutex<Vec<Proposal>> }
/// impl RemoteStore for Memory {
///     fn now(&self) -> Duration { Duration::from_secs(1_700_000_000) }
///     fn propose(&self, p: Proposal) { self.seen.lock().unwrap().push(p) }
///     fn attach(&self, sync: RemoteSync) { *self.sync.lock().unwrap() = Some(sync) }
/// }
///
/// let store = Arc::new(Memory::default());
/// let breaker = CircuitBreaker::consecutive_failures(3)
///     .remote_store(store.clone())
///     .build()
///     .unwrap();
/// // Another process opened it for 30 s on the store's clock: this breaker follows.
/// let until = store.now() + Duration::from_secs(30);
/// let sync = store.sync.lock().unwrap().clone().unwrap();
/// assert!(sync.adopt(SharedPhase::new(CircuitState::Open, Some(until), 2)));
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert_eq!(breaker.snapshot().failed_recoveries, 2);
/// // Its own transitions are offered to the store.
/// breaker.reset();
/// assert_eq!(store.seen.lock().unwrap()[0].phase.state, CircuitState::Closed);
/// ```
pub trait RemoteStore: Send + Sync + fmt::Debug + 'static {
    /// The store's clock: the time base of shared deadlines.
    fn now(&self) -> Duration;

    /// One of the breaker's own transitions (must not block).
    fn propose(&self, proposal: Proposal);

    /// Hands the store the breaker's [`RemoteSync`] (once, when the store is attached).
    fn attach(&self, sync: RemoteSync);

    /// A counted outcome of a closed breaker (`failed`: a failure). Default: ignored.
    fn record(&self, failed: bool) {
        let _ = failed;
    }
}

/// What a [`RemoteStore`] moves its breaker with; cheap to clone, and holds the breaker
/// weakly (a dropped breaker makes [`RemoteSync::adopt`] answer `false`).
///
/// ```
/// # use resilient::circuit::{Proposal, RemoteStore, RemoteSync, SharedPhase};
/// # use resilient::{CircuitBreaker, CircuitState};
/// # use std::sync::{Arc, Mutex};
/// # use std::time::Duration;
/// # #[derive(Debug, Default)]
/// # struct Memory(Mutex<Option<RemoteSync>>);
/// # impl RemoteStore for Memory {
/// #     fn now(&self) -> Duration { Duration::from_secs(100) }
/// #     fn propose(&self, _: Proposal) {}
/// #     fn attach(&self, sync: RemoteSync) { *self.0.lock().unwrap() = Some(sync) }
/// # }
/// let store = Arc::new(Memory::default());
/// let b = CircuitBreaker::builder().remote_store(store.clone()).build().unwrap();
/// let sync = store.0.lock().unwrap().clone().unwrap();
/// sync.adopt(SharedPhase::new(CircuitState::Isolated, None, 0));
/// assert_eq!(b.state(), CircuitState::Isolated);
/// drop(b);
/// assert!(!sync.adopt(SharedPhase::new(CircuitState::Closed, None, 0)));
/// ```
#[derive(Clone)]
pub struct RemoteSync {
    pub(crate) breaker: Weak<Breaker>,
}

impl fmt::Debug for RemoteSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSync")
            .field("alive", &(self.breaker.strong_count() > 0))
            .finish()
    }
}

impl RemoteSync {
    /// Moves the breaker to `phase` (a transition with reason
    /// [`TransitionReason::Shared`], observed as any other), or, if it is already in that
    /// state, adopts the phase's deadline and failed-recovery count. A half-open phase
    /// starts with this process's full set of probes. A state forced by hand in this
    /// process (isolated, disabled, metrics-only) is not left for a closed, open or
    /// half-open phase (only for another forced state). Returns whether the breaker still
    /// exists.
    pub fn adopt(&self, phase: SharedPhase) -> bool {
        match self.breaker.upgrade() {
            Some(b) => {
                b.adopt(phase);
                true
            }
            None => false,
        }
    }

    /// The breaker's current state (`None` once it is dropped).
    ///
    /// ```
    /// # use resilient::circuit::{Proposal, RemoteStore, RemoteSync};
    /// # use resilient::{CircuitBreaker, CircuitState};
    /// # use std::sync::{Arc, Mutex};
    /// # use std::time::Duration;
    /// # #[derive(Debug, Default)]
    /// # struct Memory(Mutex<Option<RemoteSync>>);
    /// # impl RemoteStore for Memory {
    /// #     fn now(&self) -> Duration { Duration::from_secs(100) }
    /// #     fn propose(&self, _: Proposal) {}
    /// #     fn attach(&self, sync: RemoteSync) { *self.0.lock().unwrap() = Some(sync) }
    /// # }
    /// let store = Arc::new(Memory::default());
    /// let b = CircuitBreaker::builder().remote_store(store.clone()).build().unwrap();
    /// let sync = store.0.lock().unwrap().clone().unwrap();
    /// assert_eq!(sync.state(), Some(CircuitState::Closed));
    /// # drop(b);
    /// ```
    pub fn state(&self) -> Option<CircuitState> {
        self.breaker.upgrade().map(|b| b.state())
    }
}
