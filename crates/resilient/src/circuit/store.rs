//! Where the breaker's state lives: in-process atomics by default, or any [`StateStore`]
//! (for example one backed by Redis, to share one breaker across processes).
//!
//! Only the state machine lives in the store (state, epoch, half-open probe counts and the
//! phase deadline): that is what must agree everywhere for "exactly N probes" to hold
//! cluster-wide. Sliding windows stay local to each process.
//!
//! Not yet solved for a cross-process store: a [`PhaseDeadline`] is a reading of the
//! breaker's own clock, and the default clock counts from an origin local to each process,
//! so processes sharing a store would disagree about when a break ends. Such a store needs
//! breakers built on a clock with a shared time base (for example wall-clock time).
//! The failed-recovery count that drives break backoff is also kept per process.

use super::state::{PhaseDeadline, StateWord};
use super::sync::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;

/// Storage for a breaker's state machine.
///
/// Implementations must make [`StateStore::compare_exchange`] atomic with respect to every
/// other breaker sharing the store. Calls are synchronous and sit on the admission path,
/// so a remote store should answer from a local cache it keeps in sync.
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
