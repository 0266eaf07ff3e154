//! Where the breaker's state lives: in-process atomics by default, or any [`StateStore`]
//! (for example one backed by Redis, to share one breaker across processes).
//!
//! Only the state machine lives in the store (state, epoch, half-open probe counts and the
//! phase deadline): that is what must agree everywhere for "exactly N probes" to hold
//! cluster-wide. Sliding windows stay local to each process.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::state::{PhaseDeadline, StateWord};

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

    /// Sets the deadline unconditionally.
    pub(crate) fn store_deadline(&self, new: PhaseDeadline) {
        let mut cur = self.load_deadline();
        while let Err(actual) = self.cas_deadline(cur, new) {
            cur = actual;
        }
    }
}
