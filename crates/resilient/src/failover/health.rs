//! [`HealthGate`]: a guard whose verdict comes from a background health probe (a
//! [`HealthAware`] check under a failover-friendly name).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::engine::context::Context;
use crate::engine::error::ConfigError;
use crate::engine::guard::{Acquire, Guard};
use crate::engine::outcome::Outcome;
use crate::health::{HealthAware, HealthAwareBuilder};

/// A [`Guard`] that admits calls while a background health probe says the dependency is
/// healthy and rejects them at once otherwise, with [`Rejection::Unhealthy`](crate::Rejection::Unhealthy)`{ retry_after }`
/// (`retry_after` being the time to the next probe), so that a
/// [`Fallback`](crate::fallback::Fallback) chain or another region can answer instead.
///
/// The probe runs every `interval` on the tokio runtime the gate was built in (the first
/// run one interval after the build). The verdict has hysteresis: healthy at first,
/// unhealthy after [`unhealthy_after`](HealthGateBuilder::unhealthy_after) failed probes in
/// a row (default 3), healthy again after [`healthy_after`](HealthGateBuilder::healthy_after)
/// successful ones (default 2). A probe that panics or overruns its timeout counts as
/// failed; the task survives it. The task holds only a weak reference and stops as soon as
/// the last clone of the gate is dropped. It is a
/// [`HealthAware`](crate::health::HealthAware) check (the breaker's probe loop, shared): if
/// the task ends while the gate lives on (its runtime shut down), the gate admits calls
/// again rather than keep a frozen verdict.
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
    check: HealthAware,
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
/// assert_eq!(err.field(), "health.check_interval");
/// # }
/// ```
#[derive(Debug)]
pub struct HealthGateBuilder {
    check: HealthAwareBuilder,
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
    pub fn builder<F, Fut, O>(interval: Duration, probe: F) -> HealthGateBuilder
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: crate::circuit::ProbeOutput,
    {
        HealthGateBuilder {
            check: HealthAware::builder(interval, probe),
        }
    }

    /// The current verdict (whether calls are admitted).
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
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.check.admits()
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
        self.check.next_probe_in()
    }

    /// The health check behind the gate (its verdict, including the degraded one).
    ///
    /// ```
    /// use resilient::circuit::HealthState;
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let gate = HealthGate::builder(Duration::from_secs(10), || async { true }).build().unwrap();
    /// assert_eq!(gate.check().state(), Some(HealthState::Healthy));
    /// # }
    /// ```
    pub fn check(&self) -> &HealthAware {
        &self.check
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
        self.check = self.check.timeout(timeout);
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
        self.check = self.check.unhealthy_after(n);
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
        self.check = self.check.healthy_after(n);
        self
    }

    /// Called with the gate's name and each [`HealthEvent`](crate::health::HealthEvent)
    /// (verdict changes, the check stopping).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use resilient::health::HealthEvent;
    /// use std::time::Duration;
    /// let b = HealthGate::builder(Duration::from_secs(10), || async { true })
    ///     .name("eu-west")
    ///     .on_event(|name: &str, e: &HealthEvent| eprintln!("{name}: {e:?}"));
    /// # let _ = b;
    /// ```
    pub fn on_event(
        mut self,
        f: impl Fn(&str, &crate::health::HealthEvent) + Send + Sync + 'static,
    ) -> Self {
        self.check = self.check.on_event(f);
        self
    }

    /// The name events report (default `"health"`).
    ///
    /// ```
    /// use resilient::failover::HealthGate;
    /// use std::time::Duration;
    /// let b = HealthGate::builder(Duration::from_secs(10), || async { true }).name("eu-west");
    /// # let _ = b;
    /// ```
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.check = self.check.name(name);
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
        Ok(HealthGate {
            check: self.check.build()?,
        })
    }
}

impl Guard for HealthGate {
    fn reads_labels(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "health"
    }

    #[inline]
    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        self.check.acquire(ctx)
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}

    fn measures_duration(&self) -> bool {
        false
    }
}
