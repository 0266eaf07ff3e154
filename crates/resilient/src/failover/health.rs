//! [`HealthGate`]: a guard whose verdict comes from a background health probe.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard, Permit, Rejection};
use crate::engine::outcome::Outcome;

type ProbeFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type ProbeFn = Box<dyn FnMut() -> ProbeFuture + Send>;

/// The longest wait between probes (about 30 years); longer intervals are cut to it.
const LONGEST_INTERVAL: Duration = Duration::from_secs(30 * 365 * 86_400);

/// A [`Guard`] that admits calls while a background health probe says the dependency is
/// healthy and rejects them at once otherwise, with
/// [`Rejection::Other`]` { guard: "health", retry_after }` (`retry_after` being the time to
/// the next probe), so that a [`Fallback`](crate::fallback::Fallback) chain or another
/// region can answer instead.
///
/// The probe runs every `interval` on the tokio runtime the gate was built in (the first
/// run one interval after the build). The verdict has hysteresis: healthy at first,
/// unhealthy after [`unhealthy_after`](HealthGateBuilder::unhealthy_after) failed probes in
/// a row (default 3), healthy again after [`healthy_after`](HealthGateBuilder::healthy_after)
/// successful ones (default 2). A probe that panics or overruns its timeout counts as
/// failed; the task survives it. The task holds only a weak reference and stops as soon as
/// the last clone of the gate is dropped.
///
/// Clones share the verdict. Use it in a pipeline with `.guard(gate.clone())`:
///
/// ```
/// use resilient::failover::HealthGate;
/// use resilient::{Error, Pipeline};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let gate = HealthGate::builder(Duration::from_secs(30), || async {
///     Ok::<_, std::io::Error>(()) // e.g. GET /health
/// })
/// .timeout(Duration::from_secs(2))
/// .build()
/// .unwrap();
/// let pipeline = Pipeline::builder().guard(gate.clone()).build().unwrap();
/// let r: Result<u8, Error<()>> = pipeline.execute(|| async { Ok(1) }).await;
/// assert_eq!(r.unwrap(), 1);
/// assert!(gate.is_healthy());
/// # }
/// ```
#[derive(Clone)]
pub struct HealthGate {
    inner: Arc<Shared>,
}

/// The state shared by the gate's clones and read (weakly) by its task.
struct Shared {
    healthy: AtomicBool,
    next_probe: Mutex<Instant>,
    _stop: DropGuard,
}

impl fmt::Debug for HealthGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthGate")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// Configures a [`HealthGate`]; [`HealthGateBuilder::build`] validates it and starts the
/// probe.
///
/// ```
/// use resilient::failover::HealthGate;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let err = HealthGate::builder(Duration::ZERO, || async { true }).build().unwrap_err();
/// assert_eq!(err.field(), "health.interval");
/// # }
/// ```
pub struct HealthGateBuilder {
    interval: Duration,
    timeout: Duration,
    unhealthy_after: u32,
    healthy_after: u32,
    probe: ProbeFn,
}

impl fmt::Debug for HealthGateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthGateBuilder")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("healthy_after", &self.healthy_after)
            .finish_non_exhaustive()
    }
}

impl HealthGate {
    /// A gate probing with `probe` every `interval`. The probe returns `bool` (`true` =
    /// healthy) or any `Result` (`Ok` = healthy), like
    /// [`HealthCheck`](crate::circuit::HealthCheck)'s. Its timeout defaults to the
    /// interval.
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let gate = HealthGate::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// assert!(gate.is_healthy());
    /// # }
    /// ```
    pub fn builder<F, Fut, O>(interval: Duration, mut probe: F) -> HealthGateBuilder
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: crate::circuit::ProbeOutput,
    {
        HealthGateBuilder {
            interval,
            timeout: interval,
            unhealthy_after: 3,
            healthy_after: 2,
            probe: Box::new(move || {
                let fut = probe();
                Box::pin(async move { fut.await.is_healthy() })
            }),
        }
    }

    /// The current verdict.
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let gate = HealthGate::builder(Duration::from_secs(1), || async { false })
    ///     .unhealthy_after(1)
    ///     .build()
    ///     .unwrap();
    /// assert!(gate.is_healthy()); // healthy until a probe says otherwise
    /// tokio::time::sleep(Duration::from_millis(1500)).await;
    /// assert!(!gate.is_healthy());
    /// # }
    /// ```
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    /// Time until the next probe runs (zero when it is due or running).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let gate = HealthGate::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// assert_eq!(gate.next_probe_in(), Duration::from_secs(10));
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
}

impl HealthGateBuilder {
    /// The longest one probe may take; a probe that overruns counts as failed (default:
    /// the interval).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// let b = HealthGate::builder(Duration::from_secs(10), || async { true })
    ///     .timeout(Duration::from_secs(1));
    /// # let _ = b;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Failed probes in a row that make the gate reject calls (default 3).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// let b = HealthGate::builder(Duration::from_secs(10), || async { true }).unhealthy_after(2);
    /// # let _ = b;
    /// ```
    pub fn unhealthy_after(mut self, n: u32) -> Self {
        self.unhealthy_after = n;
        self
    }

    /// Successful probes in a row that make an unhealthy gate admit calls again (default 2).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// let b = HealthGate::builder(Duration::from_secs(10), || async { true }).healthy_after(3);
    /// # let _ = b;
    /// ```
    pub fn healthy_after(mut self, n: u32) -> Self {
        self.healthy_after = n;
        self
    }

    /// Validates the configuration and starts the probe on the current tokio runtime
    /// (an error outside one).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// // outside a runtime
    /// let err = HealthGate::builder(Duration::from_secs(1), || async { true }).build().unwrap_err();
    /// assert_eq!(err.field(), "health");
    /// ```
    pub fn build(self) -> Result<HealthGate, ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::new(
                "health.interval",
                "must be greater than zero",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "health.timeout",
                "must be greater than zero",
            ));
        }
        if self.unhealthy_after == 0 {
            return Err(ConfigError::new(
                "health.unhealthy_after",
                "must be at least 1",
            ));
        }
        if self.healthy_after == 0 {
            return Err(ConfigError::new(
                "health.healthy_after",
                "must be at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("health", "must be built inside a tokio runtime"))?;
        let interval = self.interval.min(LONGEST_INTERVAL);
        let timeout = self.timeout.min(LONGEST_INTERVAL);
        let stop = CancellationToken::new();
        let first = Instant::now() + interval;
        let inner = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            next_probe: Mutex::new(first),
            _stop: stop.clone().drop_guard(),
        });
        let weak = Arc::downgrade(&inner);
        let (mut probe, unhealthy_after, healthy_after) =
            (self.probe, self.unhealthy_after, self.healthy_after);
        runtime.spawn(run(
            weak,
            stop,
            first,
            interval,
            timeout,
            move || probe(),
            (unhealthy_after, healthy_after),
        ));
        Ok(HealthGate { inner })
    }
}

/// The probe loop: ends when the gate is dropped (its token is cancelled, or the weak
/// reference no longer upgrades).
async fn run(
    gate: Weak<Shared>,
    stop: CancellationToken,
    mut next: Instant,
    interval: Duration,
    timeout: Duration,
    mut probe: impl FnMut() -> ProbeFuture,
    (unhealthy_after, healthy_after): (u32, u32),
) {
    let (mut ok, mut failed) = (0u32, 0u32);
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
        if healthy {
            ok = ok.saturating_add(1);
            failed = 0;
        } else {
            failed = failed.saturating_add(1);
            ok = 0;
        }
        // Delay missed ticks: the next probe is one interval after this one ended at the
        // earliest.
        next = (next + interval).max(Instant::now());
        let Some(shared) = gate.upgrade() else { return };
        *shared.next_probe.lock().unwrap_or_else(|e| e.into_inner()) = next;
        if failed >= unhealthy_after {
            shared.healthy.store(false, Ordering::Release);
        } else if ok >= healthy_after {
            shared.healthy.store(true, Ordering::Release);
        }
    }
}

/// A probe future whose panic becomes `Err`.
struct CatchUnwind(ProbeFuture);

impl Future for CatchUnwind {
    type Output = std::thread::Result<bool>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(healthy)) => Poll::Ready(Ok(healthy)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

impl Guard for HealthGate {
    fn name(&self) -> &'static str {
        "health"
    }

    fn acquire<'a>(&'a self, _ctx: &Context) -> Acquire<'a> {
        Acquire::Ready(if self.is_healthy() {
            Ok(Permit::none())
        } else {
            Err(Rejection::Other {
                guard: "health",
                retry_after: Some(self.next_probe_in()),
            })
        })
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}
