//! The state machine: admission, recording and transitions, driven by an injected clock.
//!
//! Closed-state cost per call: one atomic load to admit. To record a quick success into a
//! count window that holds only successes (a healthy breaker), with no listener and no
//! consecutive-failure count: a few loads, no write. Otherwise one load of the state
//! word, the window's ring update (one uncontended read-modify-write, two more only when
//! the window's counts change) and, with consecutive-failure counting, one more load. No
//! lock, no allocation, no clock read unless a time window or slow-call detection needs
//! one.

use super::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::events::{CircuitEvent, CircuitObserver, Observers, TransitionReason, TransitionSinks};
use super::health::{self, HealthCell, HealthCheck, HealthState, Hysteresis};
use super::recovery::Recovery;
use super::snapshot::CircuitSnapshot;
use super::state::{
    CircuitState, MAX_AHEAD, PhaseDeadline, Resolved, StateWord, longest_micros, split_token,
};
use super::store::{Proposal, RemoteStore, RemoteSync, SharedPhase, Store};
use super::window::{Counts, SlidingWindow, Window, code};
use crate::engine::clock::Time;
use crate::engine::count::ShardedCount;
use crate::engine::error::ConfigError;
use crate::engine::guard::Rejection;
use crate::engine::outcome::Outcome;
use crate::engine::timeouts::Timeouts;

use CircuitState::*;

/// Everything the builder validated.
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) store: Store,
    pub(crate) window: Option<SlidingWindow>,
    pub(crate) window_config: Option<Window>,
    /// The failure-rate threshold in (0, 1], `0.0` when not configured.
    pub(crate) failure_rate: f64,
    /// The slow-call-rate threshold in (0, 1], `0.0` when not configured.
    pub(crate) slow_rate: f64,
    pub(crate) slow_after: Option<Duration>,
    pub(crate) minimum_calls: u64,
    pub(crate) consecutive_limit: u32,
    pub(crate) recovery: Recovery,
    pub(crate) probes: u32,
    pub(crate) required: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
    /// Unfinished standalone calls dropped after this long are failures.
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) clock: Time,
    pub(crate) observers: Vec<Arc<dyn CircuitObserver>>,
}

/// What admission granted.
pub(crate) enum Admit {
    /// A permit with this token, to be released through [`Breaker::release`].
    Token(u64),
    /// Nothing to track (disabled breaker).
    Free,
}

/// The shared state of one breaker.
pub(crate) struct Breaker {
    pub(crate) name: Arc<str>,
    store: Store,
    window: Option<SlidingWindow>,
    window_config: Option<Window>,
    failure_rate: f64,
    slow_rate: f64,
    /// Calls at least this long are slow (`Duration::MAX`: never).
    slow_after: Duration,
    minimum_calls: u64,
    consecutive_limit: u32,
    /// Consecutive failures (low 32 bits) of the closed phase whose epoch is in the high
    /// bits: a late result of an older phase cannot count in a newer one.
    consecutive: AtomicU64,
    recovery: Recovery,
    /// The longest break, in whole microseconds (see `state::longest_micros`): what an
    /// open breaker's rejection compares its deadline with. It follows the recovery's cap
    /// (see [`Breaker::attach`]), so it is always `longest_phase(Open)`'s.
    longest_open_micros: AtomicU64,
    failed_recoveries: AtomicU32,
    probes: u32,
    required: u32,
    max_half_open_wait: Option<Duration>,
    /// Unfinished standalone calls dropped after this long are failures (`MAX`: never).
    call_timeout: Duration,
    pub(crate) clock: Time,
    observers: Observers,
    /// Pipelines' transition sinks (telemetry).
    pub(crate) transitions: TransitionSinks,
    /// Calls rejected (counted per thread: see `ShardedCount`).
    rejected: ShardedCount,
    health: HealthCell,
    /// Keep an open breaker open while the health check says unhealthy.
    hold_open_while_unhealthy: bool,
    /// Metrics-only: the last recorded call left a trip condition reached.
    over_threshold: AtomicBool,
    /// The store this breaker's phases are replicated to, if any (read on transitions and,
    /// when set, once per recorded closed-state outcome).
    remote: OnceLock<Arc<dyn RemoteStore>>,
    /// Neither observers nor a remote store listen to outcomes.
    quiet: AtomicBool,
    _stop_health: Option<DropGuard>,
}

/// What entering a phase does to the failed-recovery count.
#[derive(Clone, Copy)]
enum Recoveries {
    Keep,
    Increment,
    Set(u32),
}

/// How a finished call was judged (before any event is emitted).
#[derive(Clone, Copy)]
enum Judged {
    Cancelled,
    Ignored(Duration),
    Counted {
        failed: bool,
        slow: bool,
        duration: Duration,
    },
}

/// An event owed after the state was updated.
#[derive(Clone, Copy)]
enum After {
    Moved(CircuitState, CircuitState, TransitionReason),
    Exceeded(TransitionReason),
}

/// Gives a half-open permit back if dropped, that is if user code (an observer, a break
/// generator) panics before the permit was accounted for; defused with `mem::forget`.
struct GiveBack<'a>(&'a Breaker, u32);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.give_back(self.1);
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.store.load())
            .field("window", &self.window_config)
            .field("recovery", &self.recovery)
            .field("observers", &self.observers)
            .finish_non_exhaustive()
    }
}

impl Breaker {
    pub(crate) fn start(
        s: Settings,
        health: Option<(HealthCheck, tokio::runtime::Handle)>,
    ) -> Arc<Self> {
        let stop = health.as_ref().map(|_| CancellationToken::new());
        let quiet = s.observers.is_empty();
        let b = Arc::new(Breaker {
            name: s.name,
            store: s.store,
            window: s.window,
            window_config: s.window_config,
            failure_rate: s.failure_rate,
            slow_rate: s.slow_rate,
            slow_after: s.slow_after.unwrap_or(Duration::MAX),
            minimum_calls: s.minimum_calls,
            consecutive_limit: s.consecutive_limit,
            consecutive: AtomicU64::new(0),
            longest_open_micros: AtomicU64::new(longest_micros(s.recovery.longest())),
            recovery: s.recovery,
            failed_recoveries: AtomicU32::new(0),
            probes: s.probes,
            required: s.required,
            max_half_open_wait: s.max_half_open_wait,
            call_timeout: s.call_timeout.unwrap_or(Duration::MAX),
            clock: s.clock,
            observers: Observers(s.observers.into()),
            transitions: TransitionSinks::default(),
            rejected: ShardedCount::default(),
            health: HealthCell::default(),
            hold_open_while_unhealthy: health
                .as_ref()
                .is_some_and(|(check, _)| check.hold_open_while_unhealthy),
            over_threshold: AtomicBool::new(false),
            remote: OnceLock::new(),
            quiet: AtomicBool::new(quiet),
            _stop_health: stop.clone().map(CancellationToken::drop_guard),
        });
        if let (Some((check, runtime)), Some(stop)) = (health, stop) {
            b.health.set(HealthState::Healthy);
            health::spawn(&runtime, Arc::downgrade(&b), check, stop);
        }
        b
    }

    /// Whether a standalone call needs to measure its duration.
    #[inline]
    pub(crate) fn measures_duration(&self) -> bool {
        self.slow_after != Duration::MAX
            || self.call_timeout != Duration::MAX
            || !self.observers.is_empty()
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.store.load().state()
    }

    pub(crate) fn health(&self) -> Option<HealthState> {
        self.health.get()
    }

    /// For readiness endpoints: calls would be admitted (an open breaker whose break has
    /// elapsed admits the next call as a probe) and the health check, if any, does not
    /// report the dependency unhealthy.
    pub(crate) fn is_ready(&self) -> bool {
        if self.health.get() == Some(HealthState::Unhealthy) {
            return false;
        }
        let w = self.store.load();
        match w.state() {
            Isolated => false,
            Open => {
                let now = self.clock.now();
                self.deadline(self.store.load_deadline(), w, now)
                    .is_some_and(|until| now >= until)
            }
            _ => true,
        }
    }

    // ---- admission -------------------------------------------------------------------

    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admit, Rejection> {
        let w = self.store.load();
        match w.state() {
            Closed | MetricsOnly => Ok(Admit::Token(w.token())),
            Disabled => Ok(Admit::Free),
            _ => self.acquire_open(w),
        }
    }

    /// Admission by a breaker that is not closed: an open one's rejection while the
    /// break lasts (in u64 arithmetic, see [`Breaker::still_open`]), else the whole
    /// decision of [`Breaker::acquire_slow`].
    #[inline(never)]
    fn acquire_open(&self, w: StateWord) -> Result<Admit, Rejection> {
        if w.state() == Open
            && let Some(rejected) = self.still_open(w, self.clock.nanos())
        {
            return Err(rejected);
        }
        self.acquire_slow(w)
    }

    #[cold]
    fn acquire_slow(&self, mut w: StateWord) -> Result<Admit, Rejection> {
        loop {
            match w.state() {
                Closed | MetricsOnly => return Ok(Admit::Token(w.token())),
                Disabled => return Ok(Admit::Free),
                Isolated => return Err(self.reject(Isolated, None)),
                Open => {
                    let now = self.clock.now();
                    let Some(until) = self.phase_end(w, now, || {
                        self.recovery
                            .duration(self.failed_recoveries.load(Ordering::Acquire))
                    }) else {
                        w = self.store.load();
                        continue;
                    };
                    if now < until {
                        return Err(self.reject(Open, Some(until - now)));
                    }
                    if self.held_open_by_health() {
                        return Err(self.reject(Open, None));
                    }
                    // The caller that ends the break becomes the first probe.
                    let next = w.next(HalfOpen).with_issued(1);
                    match self.publish(w, next, now, TransitionReason::BreakElapsed) {
                        Ok(next) => {
                            // Should an observer panic, the permit goes back.
                            let permit = GiveBack(self, next.epoch());
                            self.emit_transition(Open, HalfOpen, TransitionReason::BreakElapsed);
                            std::mem::forget(permit);
                            return Ok(Admit::Token(next.token()));
                        }
                        Err(actual) => w = actual,
                    }
                }
                HalfOpen => {
                    // The maximum wait bounds the whole phase: once it is over, the breaker
                    // reopens whether or not probe permits are free.
                    let now = self.clock.now();
                    let Some(until) = self.phase_end(w, now, || self.half_open_wait()) else {
                        w = self.store.load();
                        continue;
                    };
                    if now >= until {
                        match self.transition(w, Open, TransitionReason::HalfOpenTimeout, now) {
                            Ok(next) => w = next,
                            Err(actual) => w = actual,
                        }
                        continue;
                    }
                    let issued = w.probes_issued();
                    if issued < self.probes {
                        match self.store.cas(w, w.with_issued(issued + 1)) {
                            Ok(()) => return Ok(Admit::Token(w.token())),
                            Err(actual) => {
                                w = actual;
                                continue;
                            }
                        }
                    }
                    // Every permit is out: the earliest a call can pass is when the phase
                    // ends (a probe may settle sooner, but that cannot be known).
                    return Err(self.reject(HalfOpen, Some(until - now)));
                }
            }
        }
    }

    /// An open breaker's rejection while its break lasts, in u64 arithmetic (see
    /// [`PhaseDeadline::remaining`]): the common case, with the break's deadline stored
    /// for this phase and ahead of the clock (`nanos`) by no more than a break can last.
    /// `None` leaves every other case to the exact reading of [`Breaker::phase_end`].
    #[inline]
    fn still_open(&self, w: StateWord, nanos: u64) -> Option<Rejection> {
        if nanos == u64::MAX {
            return None;
        }
        let left = self.store.load_deadline().remaining(
            w.epoch(),
            nanos,
            self.longest_open_micros.load(Ordering::Relaxed),
        )?;
        Some(self.reject(Open, Some(left)))
    }

    /// The longest half-open phase: the configured maximum wait or, by default, the base
    /// break (so that one hung probe cannot keep the breaker half-open forever).
    fn half_open_wait(&self) -> Duration {
        self.max_half_open_wait
            .unwrap_or_else(|| self.recovery.base())
    }

    /// When the phase `w` ends. A phase whose deadline is missing (its writer has not
    /// published it yet, or a store lost it) gets one of `length` from now instead of
    /// lasting forever; the phase's own writer still replaces it. `None` if the breaker
    /// has moved past `w` meanwhile.
    fn phase_end(
        &self,
        w: StateWord,
        now: Duration,
        length: impl FnOnce() -> Duration,
    ) -> Option<Duration> {
        let seen = self.store.load_deadline();
        if let Some(until) = self.deadline(seen, w, now) {
            return Some(until);
        }
        let until = now.saturating_add(length().min(MAX_AHEAD));
        let fresh = PhaseDeadline::new(w.epoch(), until);
        // `None` when the phase is already over: the caller must look at the new state
        // rather than act on an invented deadline of the old one.
        self.store
            .repair_deadline(seen, fresh, w.epoch())
            .and_then(|d| self.deadline(d, w, now))
    }

    /// The deadline `d` of phase `w` (if it belongs to it) read relative to `now`: never
    /// more than the phase's longest length ahead. One further ahead (the clock stepped
    /// back) is cut to that length, and the cut deadline is stored.
    fn deadline(&self, d: PhaseDeadline, w: StateWord, now: Duration) -> Option<Duration> {
        match d.resolve(w.epoch(), now, self.longest_phase(w.state()))? {
            Resolved::At(until) => Some(until),
            Resolved::Clamped(until) => {
                let _ = self
                    .store
                    .cas_deadline(d, PhaseDeadline::new(w.epoch(), until));
                Some(until)
            }
        }
    }

    /// The longest a phase in `state` can last (a bound for its deadline).
    fn longest_phase(&self, state: CircuitState) -> Duration {
        match state {
            Open => self.recovery.longest(),
            HalfOpen => self.half_open_wait(),
            _ => MAX_AHEAD,
        }
        .min(MAX_AHEAD)
    }

    /// Whether the health check keeps an open breaker from probing.
    fn held_open_by_health(&self) -> bool {
        self.hold_open_while_unhealthy && self.health.get() == Some(HealthState::Unhealthy)
    }

    #[inline]
    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> Rejection {
        self.rejected.add_one();
        self.observers
            .emit(&self.name, || CircuitEvent::Rejected { state, retry_after });
        Rejection::CircuitOpen { retry_after }
    }

    // ---- recording -------------------------------------------------------------------

    /// How a standalone call (or a layer's) admitted at `started` is released when it is
    /// dropped before it finished: a failure if its thread is panicking (the operation
    /// panicked) or if it ran for at least the call timeout (an outer timeout the breaker
    /// cannot see cut it short), otherwise a cancellation.
    pub(crate) fn dropped(&self, started: Option<Duration>) -> Option<(Outcome, Duration)> {
        let took = || started.map_or(Duration::ZERO, |t| self.clock.now().saturating_sub(t));
        if std::thread::panicking() {
            return Some((Outcome::Failure, took()));
        }
        if self.call_timeout != Duration::MAX && started.is_some() {
            let took = took();
            if took >= self.call_timeout {
                return Some((Outcome::Failure, took));
            }
        }
        None
    }
    //
    // The state is updated first and events are emitted after: observers (user code) run
    // when the permit is already accounted for, so a panicking observer cannot leak it.

    /// Releases a permit: `None` when it was dropped unrecorded.
    #[inline]
    pub(crate) fn release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
        let (epoch, state) = split_token(token);
        if state == Closed && self.changes_nothing(outcome) {
            return;
        }
        self.record_release(epoch, state, outcome);
    }

    /// [`Breaker::release`] of a call that may change the breaker (out of line, so that the
    /// healthy breaker's check pays for no frame).
    #[inline(never)]
    fn record_release(
        &self,
        epoch: u32,
        state: CircuitState,
        outcome: Option<(Outcome, Duration)>,
    ) {
        match state {
            Closed | MetricsOnly => self.release_closed(epoch, state, outcome),
            HalfOpen => self.release_probe(epoch, outcome),
            _ => {}
        }
    }

    /// Whether a closed breaker's call with this outcome would record, trip and emit
    /// nothing: a quick success, no consecutive-failure count, a count window holding only
    /// successes (see `CountWindow::all_ok`), and no listener. A healthy breaker's calls
    /// end here, in a few loads.
    #[inline(always)]
    fn changes_nothing(&self, outcome: Option<(Outcome, Duration)>) -> bool {
        matches!(outcome, Some((Outcome::Success, duration)) if duration < self.slow_after)
            && self.consecutive_limit == 0
            && matches!(&self.window, Some(SlidingWindow::Count(w)) if w.all_ok())
            && self.quiet.load(Ordering::Relaxed)
    }

    #[inline]
    fn judge(&self, outcome: Option<(Outcome, Duration)>) -> Judged {
        match outcome {
            None => Judged::Cancelled,
            Some((Outcome::Ignored, duration)) => Judged::Ignored(duration),
            Some((outcome, duration)) => Judged::Counted {
                failed: matches!(outcome, Outcome::Failure),
                slow: duration >= self.slow_after,
                duration,
            },
        }
    }

    /// Emits the events of one call's outcome.
    #[inline(always)]
    fn emit_outcome(&self, judged: Judged, probe: bool) {
        // One check for both listeners, so that a breaker with neither pays one load (and
        // no call).
        if !self.quiet.load(Ordering::Relaxed) {
            self.emit_outcome_to_listeners(judged, probe);
        }
    }

    /// [`Breaker::emit_outcome`] for a breaker with a listener (out of line).
    #[inline(never)]
    fn emit_outcome_to_listeners(&self, judged: Judged, probe: bool) {
        if !probe
            && let Judged::Counted { failed, .. } = judged
            && let Some(remote) = self.remote.get()
        {
            remote.record(failed);
        }
        if self.observers.is_empty() {
            return;
        }
        let name = &self.name;
        match judged {
            Judged::Cancelled => self
                .observers
                .emit(name, || CircuitEvent::Cancelled { probe }),
            Judged::Ignored(duration) => self
                .observers
                .emit(name, || CircuitEvent::Ignored { duration }),
            Judged::Counted {
                failed,
                slow,
                duration,
            } => {
                if slow {
                    self.observers
                        .emit(name, || CircuitEvent::SlowCall { duration, failed });
                }
                self.observers.emit(name, || {
                    if failed {
                        CircuitEvent::Failure { duration }
                    } else {
                        CircuitEvent::Success { duration }
                    }
                });
            }
        }
    }

    fn emit_after(&self, after: After) {
        match after {
            After::Moved(from, to, reason) => self.emit_transition(from, to, reason),
            After::Exceeded(reason) => self
                .observers
                .emit(&self.name, || CircuitEvent::ThresholdExceeded { reason }),
        }
    }

    fn emit_transition(&self, from: CircuitState, to: CircuitState, reason: TransitionReason) {
        self.transitions.emit(&self.name, from, to);
        self.observers
            .emit(&self.name, || CircuitEvent::StateTransition {
                from,
                to,
                reason,
            });
    }

    #[inline]
    fn release_closed(
        &self,
        epoch: u32,
        state: CircuitState,
        outcome: Option<(Outcome, Duration)>,
    ) {
        let judged = self.judge(outcome);
        let after = match judged {
            Judged::Counted { failed, slow, .. } => self.record_closed(epoch, state, failed, slow),
            _ => None,
        };
        self.emit_outcome(judged, false);
        if let Some(after) = after {
            self.emit_after(after);
        }
    }

    #[inline]
    fn record_closed(
        &self,
        epoch: u32,
        state: CircuitState,
        failed: bool,
        slow: bool,
    ) -> Option<After> {
        let w = self.store.load();
        if w.epoch() != epoch {
            return None; // the breaker moved on while this call ran
        }
        let mut trip = None;
        if self.consecutive_limit != 0 {
            let tag = u64::from(epoch) << 32;
            if failed {
                let counted =
                    self.consecutive
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                            (c & !u64::from(u32::MAX) == tag)
                                .then(|| tag | u64::from((c as u32).saturating_add(1)))
                        });
                if let Ok(before) = counted
                    && (before as u32).saturating_add(1) >= self.consecutive_limit
                {
                    trip = Some(TransitionReason::ConsecutiveFailures);
                }
            } else {
                // a success resets the count of its own phase only
                let current = self.consecutive.load(Ordering::Relaxed);
                if current != tag && current & !u64::from(u32::MAX) == tag {
                    let _ = self.consecutive.compare_exchange(
                        current,
                        tag,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        // Whether the window's verdict is known (a count window reports nothing when a
        // call replaced an identical one).
        let mut judged_window = self.window.is_none();
        if let Some(window) = &self.window
            && let Some(counts) = window.record(|| self.clock.now(), code(failed, slow))
        {
            judged_window = true;
            if trip.is_none() {
                trip = self.exceeded(counts);
            }
        }
        match (trip, state) {
            (Some(reason), Closed) => self
                .publish(w, w.next(Open), self.clock.now(), reason)
                .ok()
                .map(|_| After::Moved(Closed, Open, reason)),
            // Metrics-only: report that the breaker would have opened, once per crossing.
            (Some(reason), _) => (!self.over_threshold.load(Ordering::Relaxed)
                && !self.over_threshold.swap(true, Ordering::AcqRel))
            .then_some(After::Exceeded(reason)),
            (None, MetricsOnly) if judged_window => {
                if self.over_threshold.load(Ordering::Relaxed) {
                    self.over_threshold.store(false, Ordering::Relaxed);
                }
                None
            }
            (None, _) => None,
        }
    }

    /// Whether `counts` reach a rate threshold.
    #[inline]
    fn exceeded(&self, c: Counts) -> Option<TransitionReason> {
        if c.total < self.minimum_calls {
            return None;
        }
        // The observed rate is the correctly rounded quotient, like the configured one: a
        // rate of `p as f64 / q as f64` is reached by exactly `p` in `q` calls (rounding is
        // monotonic, and distinct fractions of realistic windows are far more than an ulp
        // apart). No rounding of the threshold to a coarser grid.
        let reached = |n: u64, rate: f64| rate > 0.0 && n as f64 / c.total as f64 >= rate;
        if reached(c.failures, self.failure_rate) {
            return Some(TransitionReason::FailureRate);
        }
        if reached(c.slow, self.slow_rate) {
            return Some(TransitionReason::SlowCallRate);
        }
        None
    }

    fn release_probe(&self, epoch: u32, outcome: Option<(Outcome, Duration)>) {
        let judged = self.judge(outcome);
        let verdict = match judged {
            Judged::Counted { failed, slow, .. } => Some(failed || (slow && self.slow_rate > 0.0)),
            Judged::Cancelled | Judged::Ignored(_) => None,
        };
        // A panic while settling (a custom break generator) gives the permit back.
        let permit = GiveBack(self, epoch);
        let moved = self.settle_probe(epoch, verdict);
        std::mem::forget(permit);
        self.emit_outcome(judged, true);
        if let Some(moved) = moved {
            self.emit_after(moved);
        }
    }

    /// Counts a probe's verdict (`None`: cancelled or ignored, the permit goes back).
    fn settle_probe(&self, epoch: u32, verdict: Option<bool>) -> Option<After> {
        let Some(failed) = verdict else {
            self.give_back(epoch);
            return None;
        };
        let mut w = self.store.load();
        loop {
            if w.state() != HalfOpen || w.epoch() != epoch {
                return None;
            }
            let now = || self.clock.now();
            let t = now();
            let Some(until) = self.phase_end(w, t, || self.half_open_wait()) else {
                w = self.store.load();
                continue;
            };
            let attempt = if t >= until {
                // The phase is over: the verdict comes too late, the breaker reopens.
                self.publish(w, w.next(Open), t, TransitionReason::HalfOpenTimeout)
                    .map(|_| {
                        Some(After::Moved(
                            HalfOpen,
                            Open,
                            TransitionReason::HalfOpenTimeout,
                        ))
                    })
            } else if failed {
                self.publish(w, w.next(Open), now(), TransitionReason::ProbeFailed)
                    .map(|_| Some(After::Moved(HalfOpen, Open, TransitionReason::ProbeFailed)))
            } else if w.probe_successes() + 1 >= self.required {
                self.publish(w, w.next(Closed), now(), TransitionReason::ProbesSucceeded)
                    .map(|_| {
                        Some(After::Moved(
                            HalfOpen,
                            Closed,
                            TransitionReason::ProbesSucceeded,
                        ))
                    })
            } else {
                self.store
                    .cas(w, w.with_successes(w.probe_successes() + 1))
                    .map(|()| None)
            };
            match attempt {
                Ok(moved) => return moved,
                Err(actual) => w = actual,
            }
        }
    }

    /// Returns a half-open permit of `epoch` uncounted (if that phase still lasts).
    fn give_back(&self, epoch: u32) {
        let mut w = self.store.load();
        while w.state() == HalfOpen && w.epoch() == epoch {
            match self
                .store
                .cas(w, w.with_issued(w.probes_issued().saturating_sub(1)))
            {
                Ok(()) => return,
                Err(actual) => w = actual,
            }
        }
    }

    // ---- transitions -----------------------------------------------------------------

    /// Moves from `from` to `to` if the state is still `from`, and reports it.
    pub(crate) fn transition(
        &self,
        from: StateWord,
        to: CircuitState,
        reason: TransitionReason,
        now: Duration,
    ) -> Result<StateWord, StateWord> {
        let next = self.publish(from, from.next(to), now, reason)?;
        self.emit_transition(from.state(), to, reason);
        Ok(next)
    }

    /// Replaces `from` with `next` (a word of the next epoch) and does what entering
    /// `next`'s state takes; emits nothing, and offers the transition to the remote store.
    fn publish(
        &self,
        from: StateWord,
        next: StateWord,
        now: Duration,
        reason: TransitionReason,
    ) -> Result<StateWord, StateWord> {
        let to = next.state();
        // The break is computed before `Open` is published: a custom generator that panics
        // leaves the state as it was, instead of open with no deadline.
        let failed_recovery = from.state() == HalfOpen;
        let until = match to {
            Open => {
                let failed = self.failed_recoveries.load(Ordering::Acquire);
                let length = self
                    .recovery
                    .duration(failed.saturating_add(u32::from(failed_recovery)));
                now.saturating_add(length.min(self.longest_phase(Open)))
            }
            HalfOpen => now.saturating_add(self.longest_phase(HalfOpen)),
            _ => Duration::MAX,
        };
        let recoveries = match to {
            Open if failed_recovery => Recoveries::Increment,
            Closed => Recoveries::Set(0),
            _ => Recoveries::Keep,
        };
        let next = self.enter(from, next, until, recoveries)?;
        if let Some(remote) = self.remote.get() {
            let shared_until =
                (until != Duration::MAX).then(|| remote.now().saturating_add(until - now));
            remote.propose(Proposal {
                from: from.state(),
                phase: SharedPhase::new(
                    to,
                    shared_until,
                    self.failed_recoveries.load(Ordering::Acquire),
                ),
                reason,
            });
        }
        Ok(next)
    }

    /// Replaces `from` with `next`, ending at `until` on the breaker's clock, and updates
    /// what the new phase resets.
    fn enter(
        &self,
        from: StateWord,
        next: StateWord,
        until: Duration,
        recoveries: Recoveries,
    ) -> Result<StateWord, StateWord> {
        if matches!(next.state(), Closed | MetricsOnly) {
            // Start the new phase with an empty window. Done before publishing it, so that
            // calls admitted in the new epoch never see the old counts.
            if let Some(w) = &self.window {
                w.reset();
            }
            self.consecutive
                .store(u64::from(next.epoch()) << 32, Ordering::Release);
            self.over_threshold.store(false, Ordering::Release);
        }
        self.store.cas(from, next)?;
        match recoveries {
            Recoveries::Increment => {
                self.failed_recoveries.fetch_add(1, Ordering::AcqRel);
            }
            Recoveries::Set(n) => self.failed_recoveries.store(n, Ordering::Release),
            Recoveries::Keep => {}
        }
        // Every phase writes a deadline ("never" where it has none), so the stored one
        // always belongs to a recent phase and its 12-bit epoch tag cannot pass for the
        // current phase's after 4096 transitions without one.
        self.store
            .publish_deadline(PhaseDeadline::new(next.epoch(), until), next.epoch());
        Ok(next)
    }

    // ---- remote store ----------------------------------------------------------------

    /// Replicates this breaker's phases to `remote` from now on; `false` if one is
    /// attached already.
    pub(crate) fn attach_remote(self: &Arc<Self>, remote: Arc<dyn RemoteStore>) -> bool {
        if self.remote.set(remote.clone()).is_err() {
            return false;
        }
        self.quiet.store(false, Ordering::Release);
        remote.attach(RemoteSync {
            breaker: Arc::downgrade(self),
        });
        true
    }

    /// Moves to a phase the remote store decided (see [`RemoteSync::adopt`]).
    pub(crate) fn adopt(&self, phase: SharedPhase) {
        let now = self.clock.now();
        let until = match (phase.until, self.remote.get()) {
            (Some(shared), Some(remote)) => {
                now.saturating_add(shared.saturating_sub(remote.now()).min(MAX_AHEAD))
            }
            (Some(_), None) => now,
            (None, _) => Duration::MAX,
        };
        let mut w = self.store.load();
        loop {
            // A state forced by hand here is left only by hand (or for another forced one).
            if matches!(w.state(), Isolated | Disabled | MetricsOnly)
                && matches!(phase.state, Closed | Open | HalfOpen)
            {
                return;
            }
            if w.state() == phase.state {
                self.failed_recoveries
                    .store(phase.failed_recoveries, Ordering::Release);
                if matches!(phase.state, Open | HalfOpen) {
                    self.store
                        .publish_deadline(PhaseDeadline::new(w.epoch(), until), w.epoch());
                }
                return;
            }
            match self.enter(
                w,
                w.next(phase.state),
                until,
                Recoveries::Set(phase.failed_recoveries),
            ) {
                Ok(_) => {
                    self.emit_transition(w.state(), phase.state, TransitionReason::Shared);
                    return;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// Forces `to` (manual control).
    pub(crate) fn force(&self, to: CircuitState) {
        let now = self.clock.now();
        let mut w = self.store.load();
        while w.state() != to || to == Closed {
            match self.transition(w, to, TransitionReason::Manual, now) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    // ---- timeouts hierarchy ----------------------------------------------------------

    /// Checks the breaker against a pipeline's timeouts, changing nothing.
    pub(crate) fn check(&self, timeouts: &Timeouts) -> Result<(), ConfigError> {
        let Some(circuit) = timeouts.circuit else {
            return Ok(());
        };
        if let Some(Window::Time { duration, .. }) = self.window_config
            && duration > circuit
        {
            return Err(ConfigError::new(
                "circuit.window",
                format!("time window ({duration:?}) must not exceed timeout.circuit ({circuit:?})"),
            ));
        }
        if let super::recovery::Schedule::Backoff { base, .. } = &self.recovery.schedule
            && *base > circuit
        {
            return Err(ConfigError::new(
                "circuit.open_for",
                format!("({base:?}) must not exceed timeout.circuit ({circuit:?})"),
            ));
        }
        Ok(())
    }

    /// Adopts a pipeline's `circuit` timeout (already checked) as the longest break.
    pub(crate) fn attach(&self, timeouts: &Timeouts) {
        if let Some(circuit) = timeouts.circuit {
            self.recovery.cap_at(circuit);
            // Caps only ever lower the longest break: the smallest one computed wins.
            self.longest_open_micros
                .fetch_min(longest_micros(self.recovery.longest()), Ordering::Relaxed);
        }
    }

    // ---- health ----------------------------------------------------------------------

    pub(crate) fn apply_health(&self, h: &mut Hysteresis, healthy: bool, check: &HealthCheck) {
        let current = self.health.get().unwrap_or(HealthState::Healthy);
        let next = h.step(current, healthy, check.healthy_after, check.unhealthy_after);
        if next == current {
            return;
        }
        self.health.set(next);
        let now = self.clock.now();
        let mut moved = None;
        match next {
            HealthState::Unhealthy if check.open_when_unhealthy => {
                let mut w = self.store.load();
                while matches!(w.state(), Closed | HalfOpen) {
                    match self.publish(w, w.next(Open), now, TransitionReason::Unhealthy) {
                        Ok(_) => {
                            moved = Some(w.state());
                            break;
                        }
                        Err(actual) => w = actual,
                    }
                }
            }
            HealthState::Healthy if check.probe_when_healthy => {
                let w = self.store.load();
                if w.state() == Open {
                    let current = self.store.load_deadline();
                    if self
                        .deadline(current, w, now)
                        .is_some_and(|until| until > now)
                    {
                        let _ = self
                            .store
                            .cas_deadline(current, PhaseDeadline::new(w.epoch(), now));
                    }
                }
            }
            _ => {}
        }
        self.observers
            .emit(&self.name, || CircuitEvent::HealthChanged {
                from: current,
                to: next,
            });
        if let Some(from) = moved {
            self.emit_transition(from, Open, TransitionReason::Unhealthy);
        }
    }

    /// The health task stopped while the breaker lives on (its runtime shut down): its
    /// verdict would never change again, so it no longer counts.
    pub(crate) fn health_stopped(&self) {
        self.health.clear();
    }

    // ---- snapshot --------------------------------------------------------------------

    pub(crate) fn snapshot(&self) -> CircuitSnapshot {
        let w = self.store.load();
        let now = self.clock.now();
        let counts = self
            .window
            .as_ref()
            .map(|win| win.counts(now))
            .unwrap_or_default();
        let rate = |n: u64| (counts.total > 0).then(|| n as f64 / counts.total as f64);
        let retry_after = match w.state() {
            Open => self
                .deadline(self.store.load_deadline(), w, now)
                .map(|until| until.saturating_sub(now)),
            _ => None,
        };
        CircuitSnapshot {
            state: w.state(),
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow),
            buffered_calls: counts.total,
            failed_calls: counts.failures,
            slow_calls: counts.slow,
            rejected_calls: self.rejected.get(),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed) as u32,
            retry_after,
            failed_recoveries: self.failed_recoveries.load(Ordering::Relaxed),
            probes_in_flight: if w.state() == HalfOpen {
                w.probes_issued() - w.probe_successes()
            } else {
                0
            },
            health: self.health.get(),
        }
    }
}
