//! The validated builder of a [`CircuitBreaker`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitBreaker;
use super::events::CircuitObserver;
use super::health::HealthCheck;
use super::machine::{Breaker, Settings};
use super::recovery::{BreakFn, Recovery, Schedule};
use super::state::MAX_PROBES;
use super::store::{RemoteStore, StateStore, Store};
use super::window::{SlidingWindow, Window};
use crate::engine::clock::{SharedClock, Time};
use crate::engine::error::ConfigError;
use crate::engine::random::{SharedRandom, thread_random};

/// Configures a [`CircuitBreaker`]; [`CircuitBreakerBuilder::build`] validates it.
///
/// Trip conditions (any of them opens the breaker; rates are compared with `>=` once the
/// window holds at least `minimum_calls` calls):
/// - failure rate over a sliding [`Window`] (default: 50% over the last 100 calls, judged
///   once the window is full: unless set, `minimum_calls` is a count window's size, and
///   10 for a time window);
/// - slow-call rate: the share of calls that took at least the slow-call duration;
/// - consecutive failures.
///
/// ```
/// use resilient::circuit::Window;
/// use resilient::CircuitBreaker;
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::failure_rate(0.5)
///     .window(Window::time(Duration::from_secs(60)))
///     .minimum_calls(20)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .open_for(Duration::from_secs(5))
///     .break_backoff(2.0, Duration::from_secs(60))
///     .break_jitter(0.2)
///     .half_open_probes(3)
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "circuit");
///
/// let err = CircuitBreaker::failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "circuit.failure_rate");
/// ```
pub struct CircuitBreakerBuilder {
    name: Arc<str>,
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    consecutive: Option<u32>,
    window: Option<Window>,
    minimum_calls: Option<u32>,
    open_for: Duration,
    backoff: Option<(f64, Duration)>,
    jitter: f64,
    custom_break: Option<BreakFn>,
    probes: u32,
    required: Option<u32>,
    max_half_open_wait: Option<Duration>,
    call_timeout: Option<Duration>,
    clock: Time,
    random: SharedRandom,
    observers: Vec<Arc<dyn CircuitObserver>>,
    store: Option<Arc<dyn StateStore>>,
    remote: Option<Arc<dyn RemoteStore>>,
    health: Option<HealthCheck>,
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("consecutive", &self.consecutive)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_for", &self.open_for)
            .field("probes", &self.probes)
            .finish_non_exhaustive()
    }
}

/// The default window for rate-based trip conditions.
const DEFAULT_WINDOW: Window = Window::Count { size: 100 };
const DEFAULT_MINIMUM_CALLS: u32 = 10;

impl CircuitBreakerBuilder {
    pub(crate) fn new() -> Self {
        Self {
            name: Arc::from("circuit"),
            failure_rate: Some(0.5),
            slow: None,
            consecutive: None,
            window: None,
            minimum_calls: None,
            open_for: Duration::from_secs(30),
            backoff: None,
            jitter: 0.0,
            custom_break: None,
            probes: 1,
            required: None,
            max_half_open_wait: None,
            call_timeout: None,
            clock: Time::fast(),
            random: thread_random(),
            observers: Vec::new(),
            store: None,
            remote: None,
            health: None,
        }
    }

    pub(crate) fn without_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// Names the breaker (in events and debug output; default `"circuit"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Opens when failures make up at least `rate` (0 < rate <= 1) of the window.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Counts calls taking at least `duration` as slow and opens when slow calls make up
    /// at least `rate` of the window. A slow half-open probe counts as a failed probe.
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.slow = Some((duration, rate));
        self
    }

    /// Also opens after `n` failures in a row (successes reset the count; ignored results
    /// do not).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = Some(n);
        self
    }

    /// The sliding window the rates are judged over (default [`Window::count`]`(100)`).
    pub fn window(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }

    /// Rates are only judged once the window holds this many calls (at most the size of a
    /// count window). Default: a count window's size (judged once it is full), 10 for a
    /// time window.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = Some(n);
        self
    }

    /// The break: how long the breaker stays open before probing (default 30 s).
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }

    /// Multiplies the break by `multiplier` after each failed recovery (a half-open probe
    /// that failed), up to `max`; a successful close resets it.
    pub fn break_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.backoff = Some((multiplier, max));
        self
    }

    /// Shortens each break by a random share of up to `fraction` (0..=1), so that many
    /// clients do not probe in lock-step. The break never exceeds its cap.
    pub fn break_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Computes each break with `f(failed_recoveries)` instead (still capped by a pipeline's
    /// `circuit` timeout).
    ///
    /// ```
    /// use resilient::CircuitBreaker;
    /// use std::time::Duration;
    /// let b = CircuitBreaker::consecutive_failures(3)
    ///     .break_duration_with(|failed| Duration::from_secs(5 + 5 * u64::from(failed)))
    ///     .build();
    /// assert!(b.is_ok());
    /// ```
    pub fn break_duration_with(
        mut self,
        f: impl Fn(u32) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.custom_break = Some(Arc::new(f));
        self
    }

    /// How many probe calls half-open admits (default 1). A cancelled probe gives its
    /// permit back.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.probes = n;
        self
    }

    /// Successful probes needed to close (default: all of them).
    pub fn required_successes(mut self, n: u32) -> Self {
        self.required = Some(n);
        self
    }

    /// Reopens if half-open has not concluded within `d` (for example because probes
    /// hang): once `d` has passed since the breaker went half-open, the next call or probe
    /// result moves it back to open (a new break), whether or not probe permits are free,
    /// and a probe result arriving after that is not counted.
    ///
    /// Default: the base break ([`open_for`](Self::open_for), or the first break of
    /// [`break_duration_with`](Self::break_duration_with)), capped by a pipeline's `circuit`
    /// timeout. So a hung probe never keeps the breaker half-open for longer than a break.
    pub fn max_half_open_wait(mut self, d: Duration) -> Self {
        self.max_half_open_wait = Some(d);
        self
    }

    /// A standalone call ([`CircuitBreaker::call`](crate::CircuitBreaker::call)) or a
    /// [layer](crate::CircuitBreaker::layer)'s call whose future is dropped unfinished after
    /// running at least `d` counts as a failure (timed out), not as a cancellation; one
    /// dropped sooner stays a cancellation.
    ///
    /// The breaker cannot see a timeout wrapped around it (tower's `Timeout` around
    /// `breaker.layer()`, `tokio::time::timeout` around `breaker.call(..)`): set `d` to a
    /// little under that timeout, so that a dependency that only hangs still trips the
    /// breaker. Default: the slow-call duration when [slow calls](Self::slow_calls) are
    /// configured, otherwise none (every unfinished drop is a cancellation). In a pipeline
    /// this is not needed: a request deadline that fires is always recorded as a failure.
    ///
    /// ```
    /// use resilient::CircuitBreaker;
    /// use std::time::Duration;
    /// // under `tower::timeout::TimeoutLayer::new(Duration::from_secs(2))`:
    /// let b = CircuitBreaker::consecutive_failures(5)
    ///     .call_timeout(Duration::from_millis(1900))
    ///     .build();
    /// assert!(b.is_ok());
    /// ```
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = Some(d);
        self
    }

    /// The clock for breaks, time windows and standalone calls (default: a
    /// [`FastClock`](crate::FastClock), the clock [`system_clock`](crate::system_clock)
    /// hands out, read without a virtual call).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Time::Shared(clock);
        self
    }

    /// The randomness for break jitter (default: thread-local).
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }

    /// Adds an observer of every event.
    pub fn observer(mut self, observer: impl CircuitObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Adds a shared observer.
    pub fn observer_arc(mut self, observer: Arc<dyn CircuitObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Keeps the state machine in `store` instead of in-process atomics (a synchronous
    /// store; for one behind a network see [`remote_store`](Self::remote_store)).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Replicates the breaker's phases to `remote` (shared deadlines on the store's time
    /// base, a shared failed-recovery count), while admission keeps deciding on the
    /// in-process state: see [`RemoteStore`]. The same as
    /// [`CircuitBreaker::attach_remote_store`] right after building.
    ///
    /// ```
    /// # use resilient::circuit::{Proposal, RemoteStore, RemoteSync};
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// #[derive(Debug)]
    /// struct Wall;
    /// impl RemoteStore for Wall {
    ///     fn now(&self) -> Duration {
    ///         std::time::UNIX_EPOCH.elapsed().unwrap_or_default()
    ///     }
    ///     fn propose(&self, _: Proposal) {}
    ///     fn attach(&self, _: RemoteSync) {}
    /// }
    /// let b = resilient::CircuitBreaker::consecutive_failures(3)
    ///     .remote_store(Arc::new(Wall))
    ///     .build()
    ///     .unwrap();
    /// # let _ = b;
    /// ```
    pub fn remote_store(mut self, remote: Arc<dyn RemoteStore>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Runs `check` in a background task (requires building inside a tokio runtime).
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Validates and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        let rate = |field: &'static str, r: f64| {
            if r > 0.0 && r <= 1.0 {
                Ok(r)
            } else {
                Err(ConfigError::new(
                    field,
                    format!("must be in (0, 1] (got {r})"),
                ))
            }
        };
        let failure_rate = self
            .failure_rate
            .map(|r| rate("circuit.failure_rate", r))
            .transpose()?;
        let slow_rate = self
            .slow
            .map(|(_, r)| rate("circuit.slow_call_rate", r))
            .transpose()?;
        if let Some((d, _)) = self.slow
            && d.is_zero()
        {
            return Err(ConfigError::new(
                "circuit.slow_call_duration",
                "must be greater than zero",
            ));
        }
        if self.consecutive == Some(0) {
            return Err(ConfigError::new(
                "circuit.consecutive_failures",
                "must be at least 1",
            ));
        }
        if failure_rate.is_none() && slow_rate.is_none() && self.consecutive.is_none() {
            return Err(ConfigError::new(
                "circuit",
                "needs a trip condition: failure_rate, slow_calls or consecutive_failures",
            ));
        }
        let rated = failure_rate.is_some() || slow_rate.is_some();
        let window = match self.window {
            Some(w) => Some(w),
            None if rated => Some(DEFAULT_WINDOW),
            None => None,
        };
        let minimum_calls = match (self.minimum_calls, window) {
            (Some(0), _) => {
                return Err(ConfigError::new(
                    "circuit.minimum_calls",
                    "must be at least 1",
                ));
            }
            (Some(n), _) => n,
            // Unset with a count window: judged once the window is full (resilience4j's
            // default pairs a window of 100 with a minimum of 100).
            (None, Some(Window::Count { size })) => size.max(1),
            (None, _) => DEFAULT_MINIMUM_CALLS,
        };
        match window {
            Some(Window::Count { size }) => {
                if size == 0 || size > Window::MAX_COUNT {
                    return Err(ConfigError::new(
                        "circuit.window",
                        format!(
                            "count must be between 1 and {} (got {size})",
                            Window::MAX_COUNT
                        ),
                    ));
                }
                if minimum_calls > size {
                    return Err(ConfigError::new(
                        "circuit.minimum_calls",
                        format!("must not exceed the count window ({minimum_calls} > {size})"),
                    ));
                }
            }
            Some(Window::Time { duration, buckets }) => {
                if buckets == 0 || buckets > 10_000 {
                    return Err(ConfigError::new(
                        "circuit.window",
                        format!("buckets must be between 1 and 10000 (got {buckets})"),
                    ));
                }
                if duration < Duration::from_micros(u64::from(buckets)) {
                    return Err(ConfigError::new(
                        "circuit.window",
                        format!(
                            "duration must allow at least 1µs per bucket (got {duration:?} for \
                             {buckets} buckets)"
                        ),
                    ));
                }
            }
            None => {}
        }
        if self.custom_break.is_none() && self.open_for.is_zero() {
            return Err(ConfigError::new(
                "circuit.open_for",
                "must be greater than zero",
            ));
        }
        let (multiplier, max) = self.backoff.unwrap_or((1.0, self.open_for));
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(ConfigError::new(
                "circuit.break_backoff.multiplier",
                format!("must be a finite number >= 1 (got {multiplier})"),
            ));
        }
        if max < self.open_for {
            return Err(ConfigError::new(
                "circuit.break_backoff.max",
                format!("must be at least open_for ({max:?} < {:?})", self.open_for),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::new(
                "circuit.break_jitter",
                format!("must be in [0, 1] (got {})", self.jitter),
            ));
        }
        if self.probes == 0 || self.probes > MAX_PROBES {
            return Err(ConfigError::new(
                "circuit.half_open_probes",
                format!("must be between 1 and {MAX_PROBES} (got {})", self.probes),
            ));
        }
        let required = self.required.unwrap_or(self.probes);
        if required == 0 || required > self.probes {
            return Err(ConfigError::new(
                "circuit.required_successes",
                format!(
                    "must be between 1 and half_open_probes ({}) (got {required})",
                    self.probes
                ),
            ));
        }
        if self.call_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "circuit.call_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_half_open_wait.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "circuit.max_half_open_wait",
                "must be greater than zero",
            ));
        }
        let runtime = match &self.health {
            Some(h) => {
                h.validate()?;
                Some(tokio::runtime::Handle::try_current().map_err(|_| {
                    ConfigError::new(
                        "circuit.health_check",
                        "needs a tokio runtime: build the breaker inside one (the check runs \
                         as a background task)",
                    )
                })?)
            }
            None => None,
        };
        let schedule = match self.custom_break {
            Some(f) => Schedule::Custom(f),
            None => Schedule::Backoff {
                base: self.open_for,
                multiplier,
                max,
                jitter: self.jitter,
            },
        };
        let settings = Settings {
            name: self.name,
            store: match self.store {
                Some(s) => Store::Custom(s),
                None => Store::Local(Default::default()),
            },
            window: window.map(SlidingWindow::new),
            window_config: window,
            failure_rate: failure_rate.unwrap_or(0.0),
            slow_rate: slow_rate.unwrap_or(0.0),
            slow_after: self.slow.map(|(d, _)| d),
            minimum_calls: u64::from(minimum_calls),
            consecutive_limit: self.consecutive.unwrap_or(0),
            recovery: Recovery::new(schedule, self.random),
            probes: self.probes,
            required,
            max_half_open_wait: self.max_half_open_wait,
            call_timeout: self.call_timeout.or(self.slow.map(|(d, _)| d)),
            clock: self.clock,
            observers: self.observers,
        };
        let breaker = Breaker::start(settings, self.health.zip(runtime));
        if let Some(remote) = self.remote {
            breaker.attach_remote(remote);
        }
        Ok(CircuitBreaker::from_breaker(breaker))
    }
}
