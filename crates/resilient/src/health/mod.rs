//! Health-aware calls: a background health check decides whether calls are attempted at
//! all. While it says the dependency is unhealthy, calls are rejected fast with
//! [`Error::Unhealthy`] (a [`Rejection::Unhealthy`] in a pipeline) instead of being sent
//! to it; in a pipeline with a [`fallback`](crate::PipelineBuilder::fallback) step, the
//! fallback answers them instead.
//!
//! The check is the breaker's ([`HealthCheck`](crate::circuit::HealthCheck)'s probe loop,
//! shared with failover's [`HealthGate`](crate::failover::HealthGate)): a probe every
//! `check_interval`, bounded by a timeout, with hysteresis (unhealthy after
//! `unhealthy_after` failed probes in a row, healthy again after `healthy_after`
//! successful ones). A probe that panics or overruns counts as failed. The task never dies
//! silently: if it ends while the [`HealthAware`] lives on (its runtime shut down), the
//! verdict is withdrawn (calls are attempted again, real calls being the only judge left)
//! and [`HealthEvent::Stopped`] is reported.
//!
//! Standalone ([`HealthAware::call`]), in a pipeline (the builder's
//! [`health_aware`](crate::PipelineBuilder::health_aware) step, or `.guard(..)`), as a
//! tower layer ([`HealthAware::layer`], feature `tower`), and as the
//! `#[resilient::health_aware(check_interval = "30s", probe = ..)]` attribute.
//!
//! ```
//! use resilient::health::HealthAware;
//! use resilient::Error;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let health = HealthAware::builder(Duration::from_secs(30), || async { false })
//!     .unhealthy_after(1)
//!     .build()
//!     .unwrap();
//! assert!(health.call(|| async { Ok::<_, ()>(1) }).await.is_ok());
//! tokio::time::sleep(Duration::from_secs(31)).await; // one failed probe
//! let r = health.call(|| async { Ok::<_, ()>(1) }).await;
//! assert!(matches!(r, Err(Error::Unhealthy { .. })));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::circuit::health::{Hysteresis, ProbeFn, ProbeSink, Schedule, spawn_probes};
use crate::circuit::{HealthState, ProbeOutput};
use crate::engine::context::Context;
use crate::engine::error::{ConfigError, Error};
use crate::engine::guard::{Acquire, Guard, Permit, Rejection};
use crate::engine::outcome::Outcome;

#[cfg(feature = "tower")]
mod layer;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use self::layer::{HealthAwareLayer, HealthAwareService};

/// What a health check reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEvent {
    /// The verdict changed.
    Changed {
        /// The previous verdict.
        from: HealthState,
        /// The new verdict.
        to: HealthState,
    },
    /// The check ended while the health-aware guard lives on (its runtime shut down): its
    /// verdict is withdrawn and calls are attempted.
    Stopped,
}

type Observer = Arc<dyn Fn(&str, &HealthEvent) + Send + Sync>;

/// The verdict shared by the clones and written (weakly) by the probe loop.
struct Shared {
    name: Arc<str>,
    /// 0: no verdict (the check stopped); else a `HealthState` code.
    verdict: AtomicU8,
    /// Whether calls are attempted: it flips only at the hysteresis thresholds (to `false`
    /// on unhealthy, back to `true` on healthy), or on any degraded verdict with
    /// `reject_when_degraded`.
    admitting: AtomicBool,
    reject_degraded: bool,
    next_probe: Mutex<Instant>,
    observer: Option<Observer>,
    _stop: DropGuard,
}

impl Shared {
    fn state(&self) -> Option<HealthState> {
        match self.verdict.load(Ordering::Acquire) {
            1 => Some(HealthState::Healthy),
            2 => Some(HealthState::Degraded),
            3 => Some(HealthState::Unhealthy),
            _ => None,
        }
    }

    fn emit(&self, event: HealthEvent) {
        if let Some(o) = &self.observer {
            o(&self.name, &event);
        }
    }
}

fn code(s: HealthState) -> u8 {
    match s {
        HealthState::Healthy => 1,
        HealthState::Degraded => 2,
        HealthState::Unhealthy => 3,
    }
}

/// Calls gated by a background health check (see the [module docs](self)). A cheap handle:
/// clones share the verdict; the check stops when the last clone is dropped.
///
/// ```
/// use resilient::health::HealthAware;
/// use resilient::{Error, Pipeline};
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let health = HealthAware::builder(Duration::from_secs(30), || async { true }).build().unwrap();
/// let p = Pipeline::builder().health_aware(&health).build().unwrap();
/// let r: Result<u8, Error<()>> = p.execute(|| async { Ok(1) }).await;
/// assert_eq!(r.unwrap(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthAware {
    inner: Arc<Shared>,
}

impl fmt::Debug for HealthAware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthAware")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .field("admits", &self.admits())
            .finish_non_exhaustive()
    }
}

/// Configures a [`HealthAware`]; [`HealthAwareBuilder::build`] validates it and starts the
/// check on the current tokio runtime.
pub struct HealthAwareBuilder {
    name: Arc<str>,
    schedule: Schedule,
    unhealthy_after: u32,
    healthy_after: u32,
    reject_degraded: bool,
    observer: Option<Observer>,
    probe: ProbeFn,
}

impl fmt::Debug for HealthAwareBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthAwareBuilder")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("healthy_after", &self.healthy_after)
            .finish_non_exhaustive()
    }
}

impl HealthAware {
    /// A check running `probe` every `check_interval` (the first run one interval after
    /// the build). The probe returns `bool` (`true` = healthy) or any `Result` (`Ok` =
    /// healthy); its timeout defaults to the interval; unhealthy after 3 failed probes in
    /// a row, healthy again after 2 successful ones.
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let h = HealthAware::builder(Duration::from_secs(30), || async { Ok::<_, std::io::Error>(()) })
    ///     .timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// assert!(h.admits());
    /// # }
    /// ```
    pub fn builder<F, Fut, O>(check_interval: Duration, mut probe: F) -> HealthAwareBuilder
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: ProbeOutput,
    {
        HealthAwareBuilder {
            name: "health".into(),
            schedule: Schedule {
                interval: check_interval,
                timeout: check_interval,
            },
            unhealthy_after: 3,
            healthy_after: 2,
            reject_degraded: false,
            observer: None,
            probe: Box::new(move || {
                let fut = probe();
                Box::pin(async move { fut.await.is_healthy() })
            }),
        }
    }

    /// The check's verdict; `None` once the check has stopped (its runtime shut down).
    ///
    /// ```
    /// use resilient::circuit::HealthState;
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let h = HealthAware::builder(Duration::from_secs(1), || async { true }).build().unwrap();
    /// assert_eq!(h.state(), Some(HealthState::Healthy));
    /// # }
    /// ```
    pub fn state(&self) -> Option<HealthState> {
        self.inner.state()
    }

    /// Whether calls are attempted now.
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let h = HealthAware::builder(Duration::from_secs(1), || async { true }).build().unwrap();
    /// assert!(h.admits());
    /// # }
    /// ```
    #[inline]
    pub fn admits(&self) -> bool {
        self.inner.admitting.load(Ordering::Acquire)
    }

    /// Time until the next probe (zero when it is due or running).
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let h = HealthAware::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// assert_eq!(h.next_probe_in(), Duration::from_secs(10));
    /// # }
    /// ```
    pub fn next_probe_in(&self) -> Duration {
        let at = *self
            .inner
            .next_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        at.saturating_duration_since(Instant::now())
    }

    /// The rejection of a call made while the check says unhealthy.
    fn rejection(&self) -> Rejection {
        Rejection::Unhealthy {
            retry_after: Some(self.next_probe_in()),
        }
    }

    /// Runs `op` if the check admits calls, else rejects it fast with
    /// [`Error::Unhealthy`] (its `retry_after` the time to the next probe).
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let h = HealthAware::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// assert_eq!(h.call(|| async { Ok::<_, ()>(7) }).await.unwrap(), 7);
    /// # }
    /// ```
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.admits() {
            return Err(self.rejection().into());
        }
        op().await.map_err(Error::Inner)
    }
}

impl HealthAwareBuilder {
    /// The name events report (default `"health"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The longest one probe may take; a probe that overruns counts as failed (default:
    /// the interval).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.schedule.timeout = timeout;
        self
    }

    /// Failed probes in a row that make the check reject calls (default 3).
    pub fn unhealthy_after(mut self, n: u32) -> Self {
        self.unhealthy_after = n;
        self
    }

    /// Successful probes in a row that make it admit calls again (default 2).
    pub fn healthy_after(mut self, n: u32) -> Self {
        self.healthy_after = n;
        self
    }

    /// Whether a degraded verdict (recent probes disagree) rejects calls too (default
    /// `false`: calls are rejected only from the unhealthy verdict until the healthy one).
    pub fn reject_when_degraded(mut self, yes: bool) -> Self {
        self.reject_degraded = yes;
        self
    }

    /// Called with the name and each [`HealthEvent`] (verdict changes, the check
    /// stopping). Runs on the check's task; a panic in it is contained.
    pub fn on_event(mut self, f: impl Fn(&str, &HealthEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Validates the configuration and starts the check on the current tokio runtime (an
    /// error outside one).
    ///
    /// ```
    /// use resilient::health::HealthAware;
    /// use std::time::Duration;
    /// let err = HealthAware::builder(Duration::from_secs(1), || async { true }).build().unwrap_err();
    /// assert_eq!(err.field(), "health");
    /// let err = HealthAware::builder(Duration::ZERO, || async { true }).build().unwrap_err();
    /// assert_eq!(err.field(), "health.check_interval");
    /// ```
    pub fn build(self) -> Result<HealthAware, ConfigError> {
        let checks = [
            (
                self.schedule.interval.is_zero(),
                "health.check_interval",
                "must be greater than zero",
            ),
            (
                self.schedule.timeout.is_zero(),
                "health.timeout",
                "must be greater than zero",
            ),
            (
                self.unhealthy_after == 0,
                "health.unhealthy_after",
                "must be at least 1",
            ),
            (
                self.healthy_after == 0,
                "health.healthy_after",
                "must be at least 1",
            ),
        ];
        if let Some((_, field, msg)) = checks.into_iter().find(|c| c.0) {
            return Err(ConfigError::new(field, msg));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("health", "must be built inside a tokio runtime"))?;
        let stop = CancellationToken::new();
        let first = Instant::now() + self.schedule.interval.min(LONGEST);
        let inner = Arc::new(Shared {
            name: self.name,
            verdict: AtomicU8::new(code(HealthState::Healthy)),
            admitting: AtomicBool::new(true),
            reject_degraded: self.reject_degraded,
            next_probe: Mutex::new(first),
            observer: self.observer,
            _stop: stop.clone().drop_guard(),
        });
        spawn_probes(
            &runtime,
            self.schedule,
            self.probe,
            stop,
            Sink {
                shared: Arc::downgrade(&inner),
                hysteresis: Hysteresis::default(),
                unhealthy_after: self.unhealthy_after,
                healthy_after: self.healthy_after,
            },
        );
        Ok(HealthAware { inner })
    }
}

/// The same cap as the probe loop's (about 30 years).
const LONGEST: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The guard's side of the shared probe loop.
struct Sink {
    shared: Weak<Shared>,
    hysteresis: Hysteresis,
    unhealthy_after: u32,
    healthy_after: u32,
}

impl ProbeSink for Sink {
    fn probed(&mut self, healthy: bool, next: Instant) -> bool {
        let Some(s) = self.shared.upgrade() else {
            return false;
        };
        *s.next_probe.lock().unwrap_or_else(|e| e.into_inner()) = next;
        let current = s.state().unwrap_or(HealthState::Healthy);
        let to = self
            .hysteresis
            .step(current, healthy, self.healthy_after, self.unhealthy_after);
        let admit = match to {
            HealthState::Healthy => true,
            HealthState::Unhealthy => false,
            HealthState::Degraded if s.reject_degraded => false,
            HealthState::Degraded => s.admitting.load(Ordering::Acquire),
        };
        s.admitting.store(admit, Ordering::Release);
        if to != current {
            s.verdict.store(code(to), Ordering::Release);
            s.emit(HealthEvent::Changed { from: current, to });
        }
        true
    }

    fn stopped(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            s.verdict.store(0, Ordering::Release);
            s.admitting.store(true, Ordering::Release);
            s.emit(HealthEvent::Stopped);
        }
    }
}

impl Guard for HealthAware {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "health_aware"
    }

    #[inline]
    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        Acquire::Ready(if self.admits() {
            Ok(Permit::none())
        } else {
            Err(self.rejection())
        })
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}
