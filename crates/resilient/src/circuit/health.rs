//! Health-check integration: a background task probes the dependency at an interval and
//! keeps a healthy / degraded / unhealthy verdict with hysteresis.
//!
//! The verdict can open the breaker before enough real calls failed, lets the breaker
//! probe early when the dependency is healthy again, and answers readiness endpoints
//! through [`crate::CircuitBreaker::health`] and [`crate::CircuitBreaker::is_ready`]. The
//! task holds only a weak reference and stops as soon as the last handle to the breaker is
//! dropped.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::machine::Breaker;
use crate::engine::error::ConfigError;

/// The health check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// The probe keeps succeeding.
    Healthy,
    /// Recent probes disagree: between the two thresholds.
    Degraded,
    /// The probe failed (or timed out) enough times in a row.
    Unhealthy,
}

impl HealthState {
    fn code(self) -> u8 {
        match self {
            HealthState::Healthy => 1,
            HealthState::Degraded => 2,
            HealthState::Unhealthy => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(HealthState::Healthy),
            2 => Some(HealthState::Degraded),
            3 => Some(HealthState::Unhealthy),
            _ => None,
        }
    }
}

/// What a health probe returns: `bool` (`true` = healthy) or any `Result` (`Ok` =
/// healthy).
pub trait ProbeOutput {
    /// Whether the probe found the dependency healthy.
    fn is_healthy(&self) -> bool;
}

impl ProbeOutput for bool {
    fn is_healthy(&self) -> bool {
        *self
    }
}

impl<T, E> ProbeOutput for Result<T, E> {
    fn is_healthy(&self) -> bool {
        self.is_ok()
    }
}

pub(crate) type ProbeFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
pub(crate) type ProbeFn = Box<dyn FnMut() -> ProbeFuture + Send>;

/// A periodic health probe for a breaker (see [`crate::CircuitBreakerBuilder::health_check`]).
///
/// ```
/// use resilient::circuit::{HealthCheck, HealthState};
/// use resilient::CircuitBreaker;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::failure_rate(0.5)
///     .health_check(
///         HealthCheck::new(Duration::from_secs(30), || async {
///             Ok::<_, std::io::Error>(()) // e.g. GET /health
///         })
///         .timeout(Duration::from_secs(2))
///         .unhealthy_after(3)
///         .healthy_after(2),
///     )
///     .build()
///     .unwrap();
/// assert_eq!(breaker.health(), Some(HealthState::Healthy));
/// assert!(breaker.is_ready());
/// # }
/// ```
pub struct HealthCheck {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) unhealthy_after: u32,
    pub(crate) healthy_after: u32,
    pub(crate) open_when_unhealthy: bool,
    pub(crate) probe_when_healthy: bool,
    pub(crate) hold_open_while_unhealthy: bool,
    probe: ProbeFn,
}

impl HealthCheck {
    /// Runs `probe` every `interval` (first run one interval after the breaker is built).
    /// The probe's timeout defaults to the interval; unhealthy after 3 failed probes in a
    /// row, healthy again after 2 successful ones. Intervals longer than about 30 years
    /// (up to `Duration::MAX`) count as 30 years; timeouts saturate the same way.
    pub fn new<F, Fut, R>(interval: Duration, mut probe: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: ProbeOutput,
    {
        Self {
            interval,
            timeout: interval,
            unhealthy_after: 3,
            healthy_after: 2,
            open_when_unhealthy: true,
            probe_when_healthy: true,
            hold_open_while_unhealthy: false,
            probe: Box::new(move || {
                let fut = probe();
                Box::pin(async move { fut.await.is_healthy() })
            }),
        }
    }

    /// The longest one probe may take; a probe that overruns counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Consecutive failed probes that make the dependency unhealthy (default 3).
    pub fn unhealthy_after(mut self, n: u32) -> Self {
        self.unhealthy_after = n;
        self
    }

    /// Consecutive successful probes that make it healthy again (default 2).
    pub fn healthy_after(mut self, n: u32) -> Self {
        self.healthy_after = n;
        self
    }

    /// Whether becoming unhealthy opens a closed or half-open breaker (default `true`).
    pub fn open_when_unhealthy(mut self, yes: bool) -> Self {
        self.open_when_unhealthy = yes;
        self
    }

    /// Whether becoming healthy ends an open breaker's break at once, so the next call
    /// probes (default `true`).
    pub fn probe_when_healthy(mut self, yes: bool) -> Self {
        self.probe_when_healthy = yes;
        self
    }

    /// Whether an open breaker stays open while the verdict is unhealthy, even after its
    /// break elapsed (default `false`).
    ///
    /// By default the break ends on schedule and real calls probe the dependency: a probe
    /// that succeeds closes the breaker even while the health check still says unhealthy
    /// (real traffic is the ground truth, and a broken health endpoint cannot keep a working
    /// dependency cut off). With `true` the health check has the last word: no call probes
    /// until the verdict is degraded or healthy again, and rejections carry no
    /// `retry_after` meanwhile. A half-open breaker is not affected (see
    /// [`HealthCheck::open_when_unhealthy`]).
    ///
    /// ```
    /// use resilient::circuit::HealthCheck;
    /// use std::time::Duration;
    /// let check = HealthCheck::new(Duration::from_secs(10), || async { true })
    ///     .hold_open_while_unhealthy(true);
    /// # let _ = check;
    /// ```
    pub fn hold_open_while_unhealthy(mut self, yes: bool) -> Self {
        self.hold_open_while_unhealthy = yes;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::new(
                "circuit.health_check.interval",
                "must be greater than zero",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "circuit.health_check.timeout",
                "must be greater than zero",
            ));
        }
        if self.unhealthy_after == 0 {
            return Err(ConfigError::new(
                "circuit.health_check.unhealthy_after",
                "must be at least 1",
            ));
        }
        if self.healthy_after == 0 {
            return Err(ConfigError::new(
                "circuit.health_check.healthy_after",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("healthy_after", &self.healthy_after)
            .finish_non_exhaustive()
    }
}

/// The verdict shared between the task and the breaker (0 = no health check).
#[derive(Debug, Default)]
pub(crate) struct HealthCell(AtomicU8);

impl HealthCell {
    pub(crate) fn get(&self) -> Option<HealthState> {
        HealthState::from_code(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, s: HealthState) {
        self.0.store(s.code(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Consecutive-result counters behind the verdict.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hysteresis {
    ok: u32,
    failed: u32,
}

impl Hysteresis {
    /// The verdict after one more probe result.
    pub(crate) fn step(
        &mut self,
        current: HealthState,
        healthy: bool,
        healthy_after: u32,
        unhealthy_after: u32,
    ) -> HealthState {
        if healthy {
            self.ok = self.ok.saturating_add(1);
            self.failed = 0;
        } else {
            self.failed = self.failed.saturating_add(1);
            self.ok = 0;
        }
        if self.failed >= unhealthy_after {
            HealthState::Unhealthy
        } else if self.ok >= healthy_after {
            HealthState::Healthy
        } else if (current == HealthState::Healthy && !healthy)
            || (current == HealthState::Unhealthy && healthy)
        {
            HealthState::Degraded
        } else {
            current
        }
    }
}

/// The longest interval the task waits between probes (about 30 years); longer intervals
/// are cut to it.
const LONGEST_INTERVAL: Duration = Duration::from_secs(30 * 365 * 86_400);

/// What a probe loop reports to: a breaker, a failover region's health gate, a
/// health-aware guard. One loop serves them all (see [`spawn_probes`]).
pub(crate) trait ProbeSink: Send + 'static {
    /// One probe's result; the next probe runs at `next`. `false` ends the loop (the
    /// owner is gone).
    fn probed(&mut self, healthy: bool, next: Instant) -> bool;
    /// The loop ended: its owner was dropped, or its runtime shut down while the owner
    /// lives on. A verdict that can no longer change must not stay frozen: withdraw it
    /// and report it.
    fn stopped(&mut self);
}

/// How often and how long one probe runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// Takes the probe out of a check (the loop owns it; the check keeps its thresholds).
pub(crate) fn take_probe(check: &mut HealthCheck) -> ProbeFn {
    std::mem::replace(&mut check.probe, Box::new(|| Box::pin(async { true })))
}

/// Spawns the probe loop on `runtime`: `probe` runs every `schedule.interval` (the first
/// run one interval from now), bounded by `schedule.timeout`, and `sink` gets each result.
///
/// The loop survives a panicking probe or a probe that overruns its timeout (counted as a
/// failed probe) and a panicking sink (its observer's panic). It ends when `stop` is
/// cancelled or the sink says its owner is gone; however it ends, even when its runtime
/// shuts down and drops it, the sink hears [`ProbeSink::stopped`]: the task never dies
/// silently.
pub(crate) fn spawn_probes(
    runtime: &tokio::runtime::Handle,
    schedule: Schedule,
    mut probe: ProbeFn,
    stop: CancellationToken,
    sink: impl ProbeSink,
) {
    runtime.spawn(async move {
        let mut sink = OnStop(sink);
        // Saturated: an interval too long for the timer (`Duration::MAX`) means "rarely".
        let interval = schedule.interval.min(LONGEST_INTERVAL);
        let timeout = schedule.timeout.min(LONGEST_INTERVAL);
        let mut next = Instant::now() + interval;
        loop {
            if stop
                .run_until_cancelled(tokio::time::sleep_until(next))
                .await
                .is_none()
            {
                return;
            }
            let healthy = match catch_unwind(AssertUnwindSafe(&mut probe)) {
                Err(_panicked) => false,
                Ok(fut) => match stop
                    .run_until_cancelled(tokio::time::timeout(timeout, CatchUnwind(fut)))
                    .await
                {
                    None => return,
                    Some(Ok(Ok(healthy))) => healthy,
                    // panicked or timed out
                    Some(Ok(Err(_))) | Some(Err(_)) => false,
                },
            };
            // Missed ticks are delayed: the next probe is one interval after this one
            // ended at the earliest.
            next = (next + interval).max(Instant::now());
            // A sink's (its observer's) panic must not end the health checks.
            if let Ok(false) = catch_unwind(AssertUnwindSafe(|| sink.0.probed(healthy, next))) {
                return;
            }
        }
    });
}

/// Tells the sink that the loop ended, however it ended (dropped with its runtime too).
struct OnStop<S: ProbeSink>(S);

impl<S: ProbeSink> Drop for OnStop<S> {
    fn drop(&mut self) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.stopped()));
    }
}

/// Spawns a breaker's health checks (see [`spawn_probes`]). If they end while the breaker
/// lives on (its runtime shut down), the verdict is withdrawn:
/// [`crate::CircuitBreaker::health`] reports `None` rather than a frozen verdict.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    breaker: Weak<Breaker>,
    mut check: HealthCheck,
    stop: CancellationToken,
) {
    let probe = take_probe(&mut check);
    let schedule = Schedule {
        interval: check.interval,
        timeout: check.timeout,
    };
    spawn_probes(
        runtime,
        schedule,
        probe,
        stop,
        BreakerSink {
            breaker,
            hysteresis: Hysteresis::default(),
            check,
        },
    );
}

/// A breaker's side of the probe loop.
struct BreakerSink {
    breaker: Weak<Breaker>,
    hysteresis: Hysteresis,
    check: HealthCheck,
}

impl ProbeSink for BreakerSink {
    fn probed(&mut self, healthy: bool, _next: Instant) -> bool {
        let Some(b) = self.breaker.upgrade() else {
            return false;
        };
        b.apply_health(&mut self.hysteresis, healthy, &self.check);
        true
    }

    fn stopped(&mut self) {
        if let Some(b) = self.breaker.upgrade() {
            b.health_stopped();
        }
    }
}

/// A probe future whose panic becomes `Err`.
struct CatchUnwind(ProbeFuture);

impl Future for CatchUnwind {
    type Output = std::thread::Result<bool>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(healthy)) => Poll::Ready(Ok(healthy)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::*;

    #[test]
    fn hysteresis_needs_streaks_to_flip() {
        let mut h = Hysteresis::default();
        let mut s = Healthy;
        let mut run = |results: &[bool]| {
            results
                .iter()
                .map(|&r| {
                    s = h.step(s, r, 2, 3);
                    s
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run(&[false, true, false, false, false]),
            [Degraded, Degraded, Degraded, Degraded, Unhealthy]
        );
        assert_eq!(
            run(&[true, false, true, true]),
            [Degraded, Degraded, Degraded, Healthy]
        );
    }
}
