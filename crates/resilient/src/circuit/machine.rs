//! The state machine: admission, recording and transitions, driven by an injected clock.
//!
//! Closed-state cost per call: one atomic load to admit; to record, one load of the state
//! word, the window's ring update (two uncontended read-modify-writes, a third only when
//! the window's counts change) and, with consecutive-failure counting, one more load. No
//! lock, no allocation, no clock read unless a time window or slow-call detection needs
//! one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::events::{CircuitEvent, CircuitObserver, Observers, TransitionReason};
use super::health::{self, HealthCell, HealthCheck, HealthState, Hysteresis};
use super::recovery::Recovery;
use super::snapshot::CircuitSnapshot;
use super::state::{CircuitState, PhaseDeadline, StateWord, split_token};
use super::store::Store;
use super::window::{Counts, SlidingWindow, Window, code};
use crate::{ConfigError, Outcome, Rejection, SharedClock, Timeouts};

use CircuitState::*;

/// Everything the builder validated.
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) store: Store,
    pub(crate) window: Option<SlidingWindow>,
    pub(crate) window_config: Option<Window>,
    pub(crate) failure_ppm: u64,
    pub(crate) slow_ppm: u64,
    pub(crate) slow_after: Option<Duration>,
    pub(crate) minimum_calls: u64,
    pub(crate) consecutive_limit: u32,
    pub(crate) recovery: Recovery,
    pub(crate) probes: u32,
    pub(crate) required: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
    pub(crate) clock: SharedClock,
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
    failure_ppm: u64,
    slow_ppm: u64,
    /// Calls at least this long are slow (`Duration::MAX`: never).
    slow_after: Duration,
    minimum_calls: u64,
    consecutive_limit: u32,
    consecutive: AtomicU32,
    recovery: Recovery,
    failed_recoveries: AtomicU32,
    probes: u32,
    required: u32,
    max_half_open_wait: Option<Duration>,
    pub(crate) clock: SharedClock,
    observers: Observers,
    rejected: AtomicU64,
    health: HealthCell,
    _stop_health: Option<DropGuard>,
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
        let b = Arc::new(Breaker {
            name: s.name,
            store: s.store,
            window: s.window,
            window_config: s.window_config,
            failure_ppm: s.failure_ppm,
            slow_ppm: s.slow_ppm,
            slow_after: s.slow_after.unwrap_or(Duration::MAX),
            minimum_calls: s.minimum_calls,
            consecutive_limit: s.consecutive_limit,
            consecutive: AtomicU32::new(0),
            recovery: s.recovery,
            failed_recoveries: AtomicU32::new(0),
            probes: s.probes,
            required: s.required,
            max_half_open_wait: s.max_half_open_wait,
            clock: s.clock,
            observers: Observers(s.observers.into()),
            rejected: AtomicU64::new(0),
            health: HealthCell::default(),
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
        self.slow_after != Duration::MAX || !self.observers.is_empty()
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.store.load().state()
    }

    pub(crate) fn health(&self) -> Option<HealthState> {
        self.health.get()
    }

    // ---- admission -------------------------------------------------------------------

    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admit, Rejection> {
        let w = self.store.load();
        match w.state() {
            Closed | MetricsOnly => Ok(Admit::Token(w.token())),
            Disabled => Ok(Admit::Free),
            _ => self.acquire_slow(w),
        }
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
                    match self.store.load_deadline().at(w.epoch()) {
                        // The opening thread has not published the deadline yet.
                        None => return Err(self.reject(Open, None)),
                        Some(until) if now < until => {
                            return Err(self.reject(Open, Some(until - now)));
                        }
                        Some(_) => {
                            // The caller that ends the break becomes the first probe.
                            let next = w.next(HalfOpen).with_issued(1);
                            match self.publish(w, next, TransitionReason::BreakElapsed, now) {
                                Ok(next) => return Ok(Admit::Token(next.token())),
                                Err(actual) => w = actual,
                            }
                        }
                    }
                }
                HalfOpen => {
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
                    if self.max_half_open_wait.is_some() {
                        let now = self.clock.now();
                        if self
                            .store
                            .load_deadline()
                            .at(w.epoch())
                            .is_some_and(|until| now >= until)
                        {
                            match self.transition(w, Open, TransitionReason::HalfOpenTimeout, now) {
                                Ok(next) => w = next,
                                Err(actual) => w = actual,
                            }
                            continue;
                        }
                    }
                    return Err(self.reject(HalfOpen, None));
                }
            }
        }
    }

    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> Rejection {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.observers
            .emit(&self.name, || CircuitEvent::Rejected { state, retry_after });
        Rejection::CircuitOpen { retry_after }
    }

    // ---- recording -------------------------------------------------------------------

    /// Releases a permit: `None` when it was dropped unrecorded.
    #[inline]
    pub(crate) fn release(&self, token: u64, outcome: Option<(Outcome, Duration)>) {
        let (epoch, state) = split_token(token);
        match state {
            Closed | MetricsOnly => self.release_closed(epoch, state, outcome),
            HalfOpen => self.release_probe(epoch, outcome),
            _ => {}
        }
    }

    /// Emits the outcome events; returns `(failed, slow)` or `None` if not counted.
    #[inline]
    fn judge_outcome(
        &self,
        outcome: Option<(Outcome, Duration)>,
        probe: bool,
    ) -> Option<(bool, bool)> {
        let Some((outcome, duration)) = outcome else {
            self.observers
                .emit(&self.name, || CircuitEvent::Cancelled { probe });
            return None;
        };
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => {
                self.observers
                    .emit(&self.name, || CircuitEvent::Ignored { duration });
                return None;
            }
        };
        let slow = duration >= self.slow_after;
        if !self.observers.is_empty() {
            if slow {
                self.observers
                    .emit(&self.name, || CircuitEvent::SlowCall { duration, failed });
            }
            self.observers.emit(&self.name, || {
                if failed {
                    CircuitEvent::Failure { duration }
                } else {
                    CircuitEvent::Success { duration }
                }
            });
        }
        Some((failed, slow))
    }

    #[inline]
    fn release_closed(
        &self,
        epoch: u32,
        state: CircuitState,
        outcome: Option<(Outcome, Duration)>,
    ) {
        let Some((failed, slow)) = self.judge_outcome(outcome, false) else {
            return;
        };
        let w = self.store.load();
        if w.epoch() != epoch {
            return; // the breaker moved on while this call ran
        }
        let mut trip = None;
        if self.consecutive_limit != 0 {
            if failed {
                let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= self.consecutive_limit {
                    trip = Some(TransitionReason::ConsecutiveFailures);
                }
            } else if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
        }
        if let Some(window) = &self.window
            && let Some(counts) = window.record(|| self.clock.now(), code(failed, slow))
            && trip.is_none()
        {
            trip = self.exceeded(counts);
        }
        if let Some(reason) = trip
            && state == Closed
        {
            let _ = self.transition(w, Open, reason, self.clock.now());
        }
    }

    /// Whether `counts` reach a rate threshold.
    #[inline]
    fn exceeded(&self, c: Counts) -> Option<TransitionReason> {
        if c.total < self.minimum_calls {
            return None;
        }
        let scaled = |n: u64| u128::from(n) * 1_000_000;
        let bar = |ppm: u64| u128::from(ppm) * u128::from(c.total);
        if self.failure_ppm != 0 && scaled(c.failures) >= bar(self.failure_ppm) {
            return Some(TransitionReason::FailureRate);
        }
        if self.slow_ppm != 0 && scaled(c.slow) >= bar(self.slow_ppm) {
            return Some(TransitionReason::SlowCallRate);
        }
        None
    }

    fn release_probe(&self, epoch: u32, outcome: Option<(Outcome, Duration)>) {
        let verdict = self
            .judge_outcome(outcome, true)
            .map(|(failed, slow)| failed || (slow && self.slow_ppm != 0));
        let mut w = self.store.load();
        loop {
            if w.state() != HalfOpen || w.epoch() != epoch {
                return;
            }
            let attempt = match verdict {
                // Cancelled or ignored: the permit goes back, nothing is counted.
                None => self
                    .store
                    .cas(w, w.with_issued(w.probes_issued().saturating_sub(1))),
                Some(true) => self
                    .transition(w, Open, TransitionReason::ProbeFailed, self.clock.now())
                    .map(drop),
                Some(false) => {
                    let successes = w.probe_successes() + 1;
                    if successes >= self.required {
                        self.transition(
                            w,
                            Closed,
                            TransitionReason::ProbesSucceeded,
                            self.clock.now(),
                        )
                        .map(drop)
                    } else {
                        self.store.cas(w, w.with_successes(successes))
                    }
                }
            };
            match attempt {
                Ok(()) => return,
                Err(actual) => w = actual,
            }
        }
    }

    // ---- transitions -----------------------------------------------------------------

    /// Moves from `from` to `to` if the state is still `from`.
    pub(crate) fn transition(
        &self,
        from: StateWord,
        to: CircuitState,
        reason: TransitionReason,
        now: Duration,
    ) -> Result<StateWord, StateWord> {
        self.publish(from, from.next(to), reason, now)
    }

    /// Replaces `from` with `next` (a word of the next epoch) and does what entering
    /// `next`'s state takes.
    fn publish(
        &self,
        from: StateWord,
        next: StateWord,
        reason: TransitionReason,
        now: Duration,
    ) -> Result<StateWord, StateWord> {
        let to = next.state();
        if matches!(to, Closed | MetricsOnly) {
            // Start the new phase with an empty window. Done before publishing it, so that
            // calls admitted in the new epoch never see the old counts.
            if let Some(w) = &self.window {
                w.reset();
            }
            self.consecutive.store(0, Ordering::Release);
        }
        // The break is computed before `Open` is published: a custom generator that panics
        // leaves the state as it was, instead of open with no deadline.
        let failed_recovery = from.state() == HalfOpen;
        let pause = (to == Open).then(|| {
            let failed = self.failed_recoveries.load(Ordering::Acquire);
            self.recovery
                .duration(failed.saturating_add(u32::from(failed_recovery)))
        });
        self.store.cas(from, next)?;
        match to {
            Open => {
                if failed_recovery {
                    self.failed_recoveries.fetch_add(1, Ordering::AcqRel);
                }
                let until = now.saturating_add(pause.unwrap_or_default());
                self.store
                    .store_deadline(PhaseDeadline::new(next.epoch(), until));
            }
            HalfOpen => {
                if let Some(max) = self.max_half_open_wait {
                    self.store
                        .store_deadline(PhaseDeadline::new(next.epoch(), now.saturating_add(max)));
                }
            }
            Closed => self.failed_recoveries.store(0, Ordering::Release),
            _ => {}
        }
        self.observers
            .emit(&self.name, || CircuitEvent::StateTransition {
                from: from.state(),
                to,
                reason,
            });
        Ok(next)
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

    pub(crate) fn attach(&self, timeouts: &Timeouts) -> Result<(), ConfigError> {
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
        self.recovery.cap_at(circuit);
        Ok(())
    }

    // ---- health ----------------------------------------------------------------------

    pub(crate) fn apply_health(&self, h: &mut Hysteresis, healthy: bool, check: &HealthCheck) {
        let current = self.health.get().unwrap_or(HealthState::Healthy);
        let next = h.step(current, healthy, check.healthy_after, check.unhealthy_after);
        if next == current {
            return;
        }
        self.health.set(next);
        self.observers
            .emit(&self.name, || CircuitEvent::HealthChanged {
                from: current,
                to: next,
            });
        let now = self.clock.now();
        match next {
            HealthState::Unhealthy if check.open_when_unhealthy => {
                let mut w = self.store.load();
                while matches!(w.state(), Closed | HalfOpen) {
                    match self.transition(w, Open, TransitionReason::Unhealthy, now) {
                        Ok(_) => break,
                        Err(actual) => w = actual,
                    }
                }
            }
            HealthState::Healthy if check.probe_when_healthy => {
                let w = self.store.load();
                if w.state() == Open {
                    let current = self.store.load_deadline();
                    if current.at(w.epoch()).is_some_and(|until| until > now) {
                        let _ = self
                            .store
                            .cas_deadline(current, PhaseDeadline::new(w.epoch(), now));
                    }
                }
            }
            _ => {}
        }
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
                .store
                .load_deadline()
                .at(w.epoch())
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
            rejected_calls: self.rejected.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
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
