//! Configuration files (feature `config`): every strategy's settings as serde types
//! (durations written as `"5s"`), and a file of named breakers, limiters, bulkheads and
//! pipelines loaded into a [`Registry`], validated as a whole, with errors naming the
//! file, the line and the field.
//!
//! ```toml
//! [breakers.payments]
//! failure_rate = 0.5
//! window = 20              # calls; or a time span: "60s"
//! open_for = "30s"
//!
//! [limiters.payments]
//! algorithm = "gcra"       # token_bucket, fixed_window, sliding_log, sliding_window
//! rate = 100
//! per = "1s"
//! burst = 20
//!
//! [bulkheads.db]
//! max_concurrent = 10
//! queue = 100
//! max_wait = "1s"
//!
//! [pipelines.payments]
//! timeout = { request = "30s", operation = "5s" }
//! retry = { attempts = 3, backoff = "exponential", base = "100ms", jitter = "full" }
//! circuit_breaker = "payments"   # by name: shared with every user of the name
//! rate_limit = "payments"
//!
//! [pipelines.fetch]
//! pattern = "network(attempts = 5)"
//! ```
//!
//! A pipeline's stages run in a fixed order: its timeouts; per call, the circuit breaker
//! then the bulkhead; the retry; per attempt, the hedge (`hedge = { delay = "50ms" }`,
//! with `idempotent = true`) and the rate limiter (the attributes' defaults).
//! A `pattern` pipeline is the pattern's pipeline under the file's name (nothing else goes
//! with it).
//!
//! ```
//! use resilient::registry::Registry;
//! let toml = r#"
//! [breakers.payments]
//! consecutive_failures = 5
//!
//! [pipelines.payments]
//! retry = { attempts = 3, base = "10ms" }
//! circuit_breaker = "payments"
//! "#;
//! let registry = Registry::new();
//! registry.load_toml(toml, "resilience.toml").unwrap();
//! assert_eq!(registry.pipeline("payments").unwrap().stages(), ["circuit_breaker(per call)", "Retry"]);
//!
//! let err = Registry::new()
//!     .load_toml("[breakers.payments]\nfailure_rate = 1.5\n", "bad.toml")
//!     .unwrap_err();
//! assert_eq!((err.line(), err.field()), (Some(2), "breakers.payments.failure_rate"));
//! assert!(err.to_string().starts_with("bad.toml:2: breakers.payments.failure_rate: "));
//! ```
//!
//! Other formats (YAML, JSON) go through serde: deserialize a [`ConfigFile`] with their
//! crate and hand it to [`Registry::load`] (its errors name the field, with no line).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bulkhead::{Bulkhead, BulkheadBuilder};
use crate::chaos::Chaos;
use crate::circuit::{CircuitBreaker, CircuitBreakerBuilder, Window};
use crate::engine::error::ConfigError;
use crate::ratelimit::{Rate, RateLimiter, RateLimiterBuilder};
use crate::registry::{Registry, RegistryError};
use crate::retry::{Jitter, Retry, RetryBudget};
use crate::timeout::Timeout;

/// Durations as strings (`"250ms"`, `"5s"`) in serde formats.
///
/// ```
/// #[derive(serde::Deserialize, serde::Serialize)]
/// struct S {
///     #[serde(with = "resilient::registry::config::duration")]
///     d: std::time::Duration,
/// }
/// let s: S = serde_json::from_str(r#"{"d": "1.5s"}"#).unwrap();
/// assert_eq!(s.d.as_millis(), 1500);
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"d":"1500ms"}"#);
/// ```
pub mod duration {
    use super::*;

    /// Writes a duration as a string: whole units when exact (`"5s"`, `"250ms"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Reads a duration string (see [`parse_duration`](crate::registry::parse_duration)).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::registry::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub(super) fn format(d: Duration) -> String {
        let n = d.as_nanos();
        for (unit, per) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ] {
            if n > 0 && n.is_multiple_of(per) {
                return format!("{}{unit}", n / per);
            }
        }
        format!("{n}ns")
    }
}

/// `Option<Duration>` as an optional string; use with `#[serde(default)]`.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct S {
///     #[serde(default, with = "resilient::registry::config::opt_duration")]
///     d: Option<std::time::Duration>,
/// }
/// let s: S = serde_json::from_str("{}").unwrap();
/// assert_eq!(s.d, None);
/// ```
pub mod opt_duration {
    use super::*;

    /// Writes `Some(d)` as a string, `None` as none.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

/// A breaker's window: a number of calls (`20`) or a time span (`"60s"`).
///
/// ```
/// use resilient::registry::config::WindowConfig;
/// let w: WindowConfig = serde_json::from_str("20").unwrap();
/// assert_eq!(w, WindowConfig::Calls(20));
/// let w: WindowConfig = serde_json::from_str("\"1m\"").unwrap();
/// assert_eq!(w, WindowConfig::Time(std::time::Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowConfig {
    /// The last N calls.
    Calls(u32),
    /// The calls of the last span of time.
    Time(Duration),
}

impl<'de> Deserialize<'de> for WindowConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = WindowConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of calls (20) or a time span (\"60s\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<WindowConfig, E> {
                u32::try_from(n)
                    .map(WindowConfig::Calls)
                    .map_err(|_| E::custom(format!("{n} calls is out of range")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<WindowConfig, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom("the window must be positive"))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WindowConfig, E> {
                crate::registry::parse_duration(s)
                    .map(WindowConfig::Time)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for WindowConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WindowConfig::Calls(n) => s.serialize_u32(*n),
            WindowConfig::Time(d) => s.serialize_str(&duration::format(*d)),
        }
    }
}

/// A circuit breaker's settings (see [`CircuitBreakerBuilder`]). One of `failure_rate`,
/// `consecutive_failures` or `slow_call` is needed.
///
/// ```
/// use resilient::registry::config::BreakerConfig;
/// let c: BreakerConfig = serde_json::from_str(r#"{"failure_rate": 0.5, "window": 20, "open_for": "10s"}"#).unwrap();
/// let breaker = c.build("payments").unwrap();
/// assert_eq!(breaker.name(), "payments");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Opens when this fraction of the window's calls failed, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Opens after this many failures in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// The calls a failure rate is measured over (default 100 calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowConfig>,
    /// Calls needed before the rate is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// How long it stays open (default 30s).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_for: Option<Duration>,
    /// With it, each consecutive break doubles, up to this.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_open_for: Option<Duration>,
    /// Random spread of each break, a fraction in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_jitter: Option<f64>,
    /// Probes let through when half-open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
    /// Probe successes needed to close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_successes: Option<u32>,
    /// The longest wait for probes before opening again.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_half_open_wait: Option<Duration>,
    /// A call slower than this counts as slow.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_call: Option<Duration>,
    /// Opens when this fraction of calls was slow (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_rate: Option<f64>,
}

impl BreakerConfig {
    /// The breaker's builder, named `name`.
    ///
    /// ```
    /// let c = resilient::registry::config::BreakerConfig {
    ///     consecutive_failures: Some(3),
    ///     ..Default::default()
    /// };
    /// assert!(c.builder("db").is_ok());
    /// ```
    pub fn builder(&self, name: &str) -> Result<CircuitBreakerBuilder, ConfigError> {
        let mut b = match (self.failure_rate, self.consecutive_failures) {
            (Some(r), Some(n)) => CircuitBreaker::failure_rate(r).consecutive_failures(n),
            (Some(r), None) => CircuitBreaker::failure_rate(r),
            (None, Some(n)) => CircuitBreaker::consecutive_failures(n),
            (None, None) if self.slow_call.is_some() => CircuitBreaker::builder(),
            (None, None) => {
                return Err(ConfigError::new(
                    "circuit.failure_rate",
                    "a breaker needs `failure_rate`, `consecutive_failures` or `slow_call`",
                ));
            }
        };
        b = b.name(name.to_owned());
        if let Some(w) = self.window {
            b = b.window(match w {
                WindowConfig::Calls(n) => Window::count(n),
                WindowConfig::Time(d) => Window::time(d),
            });
        }
        if let Some(n) = self.minimum_calls {
            b = b.minimum_calls(n);
        }
        if let Some(d) = self.open_for {
            b = b.open_for(d);
        }
        if let Some(max) = self.max_open_for {
            b = b.break_backoff(2.0, max);
        }
        if let Some(j) = self.break_jitter {
            b = b.break_jitter(j);
        }
        if let Some(n) = self.half_open_probes {
            b = b.half_open_probes(n);
        }
        if let Some(n) = self.required_successes {
            b = b.required_successes(n);
        }
        if let Some(d) = self.max_half_open_wait {
            b = b.max_half_open_wait(d);
        }
        match (self.slow_call, self.slow_rate) {
            (Some(d), r) => b = b.slow_calls(d, r.unwrap_or(1.0)),
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "circuit.slow_rate",
                    "`slow_rate` needs `slow_call`",
                ));
            }
            (None, None) => {}
        }
        Ok(b)
    }

    /// The breaker, validated.
    ///
    /// ```
    /// let c = resilient::registry::config::BreakerConfig { failure_rate: Some(2.0), ..Default::default() };
    /// assert_eq!(c.build("x").unwrap_err().field(), "circuit.failure_rate");
    /// ```
    pub fn build(&self, name: &str) -> Result<CircuitBreaker, ConfigError> {
        self.builder(name)?.build()
    }
}

/// A rate-limiting algorithm.
///
/// ```
/// use resilient::registry::config::Algorithm;
/// let a: Algorithm = serde_json::from_str("\"token_bucket\"").unwrap();
/// assert_eq!(a, Algorithm::TokenBucket);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// GCRA (the default): smooth, with a burst.
    #[default]
    Gcra,
    /// A token bucket of `burst` tokens refilled at the rate.
    TokenBucket,
    /// `rate` calls per fixed window of `per`.
    FixedWindow,
    /// `rate` calls in any window of `per` (exact, a log).
    SlidingLog,
    /// `rate` calls in any window of `per` (approximated from two counters).
    SlidingWindow,
}

fn default_per() -> Duration {
    Duration::from_secs(1)
}

/// A rate limiter's settings (see [`RateLimiter`]).
///
/// ```
/// use resilient::registry::config::LimiterConfig;
/// let c: LimiterConfig = serde_json::from_str(r#"{"rate": 100, "per": "1s", "burst": 10}"#).unwrap();
/// assert!(c.build().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterConfig {
    /// The algorithm (default `gcra`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Units admitted per `per`.
    pub rate: u64,
    /// The period of `rate` (default `"1s"`).
    #[serde(default = "default_per", with = "duration")]
    pub per: Duration,
    /// The burst (`gcra`, `token_bucket`); default `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Units each call costs (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    /// Wait up to this for capacity instead of rejecting at once.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
}

impl LimiterConfig {
    /// The limiter's builder.
    ///
    /// ```
    /// use resilient::registry::config::{Algorithm, LimiterConfig};
    /// let c = LimiterConfig { algorithm: Algorithm::FixedWindow, rate: 10, per: std::time::Duration::from_secs(1), burst: None, cost: None, max_wait: None };
    /// assert!(c.builder().build().is_ok());
    /// ```
    pub fn builder(&self) -> RateLimiterBuilder {
        let rate = Rate::new(self.rate, self.per);
        let burst = self.burst.unwrap_or(self.rate);
        let mut b = match self.algorithm {
            Algorithm::Gcra => RateLimiter::gcra_with_burst(rate, burst),
            Algorithm::TokenBucket => RateLimiter::token_bucket(burst, rate),
            Algorithm::FixedWindow => RateLimiter::fixed_window(self.rate, self.per),
            Algorithm::SlidingLog => RateLimiter::sliding_window_log(self.rate, self.per),
            Algorithm::SlidingWindow => RateLimiter::sliding_window_counter(self.rate, self.per),
        };
        if let Some(c) = self.cost {
            b = b.cost(c);
        }
        if let Some(d) = self.max_wait {
            b = b.max_wait(d);
        }
        b
    }

    /// The limiter, validated.
    ///
    /// ```
    /// use resilient::registry::config::LimiterConfig;
    /// let c: LimiterConfig = serde_json::from_str(r#"{"rate": 0}"#).unwrap();
    /// assert!(c.build().is_err());
    /// ```
    pub fn build(&self) -> Result<RateLimiter, ConfigError> {
        if self.burst.is_some()
            && !matches!(self.algorithm, Algorithm::Gcra | Algorithm::TokenBucket)
        {
            return Err(ConfigError::new(
                "ratelimit.burst",
                "`burst` only applies to `gcra` and `token_bucket`",
            ));
        }
        self.builder().build()
    }
}

/// A bulkhead's settings (see [`Bulkhead`]).
///
/// ```
/// use resilient::registry::config::BulkheadConfig;
/// let c: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 4, "queue": 8, "max_wait": "1s"}"#).unwrap();
/// assert_eq!(c.build().unwrap().limit(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls running at once.
    pub max_concurrent: usize,
    /// Callers waiting for a slot (default 0: rejected at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    /// The longest a queued caller waits.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
}

impl BulkheadConfig {
    /// The bulkhead's builder.
    ///
    /// ```
    /// let c = resilient::registry::config::BulkheadConfig { max_concurrent: 2, queue: None, max_wait: None };
    /// assert!(c.builder().build().is_ok());
    /// ```
    pub fn builder(&self) -> BulkheadBuilder {
        let mut b = Bulkhead::builder(self.max_concurrent);
        if let Some(q) = self.queue {
            b = b.queue(q);
        }
        if let Some(d) = self.max_wait {
            b = b.max_wait(d);
        }
        b
    }

    /// The bulkhead, validated.
    ///
    /// ```
    /// let c = resilient::registry::config::BulkheadConfig { max_concurrent: 0, queue: None, max_wait: None };
    /// assert!(c.build().is_err());
    /// ```
    pub fn build(&self) -> Result<Bulkhead, ConfigError> {
        self.builder().build()
    }
}

/// A pipeline's timeouts (see [`Timeout`]).
///
/// ```
/// use resilient::registry::config::TimeoutConfig;
/// let t: TimeoutConfig = serde_json::from_str(r#"{"operation": "5s", "request": "30s"}"#).unwrap();
/// assert_eq!(t.operation, Some(std::time::Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Bounds each attempt.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub operation: Option<Duration>,
    /// Bounds the whole call.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub request: Option<Duration>,
    /// The breakers' time scale.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub circuit: Option<Duration>,
}

/// A retry's backoff.
///
/// ```
/// use resilient::registry::config::BackoffKind;
/// let b: BackoffKind = serde_json::from_str("\"constant\"").unwrap();
/// assert_eq!(b, BackoffKind::Constant);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// `base * factor^(n - 1)` (the default).
    #[default]
    Exponential,
    /// `base` every time.
    Constant,
    /// `base + step * (n - 1)`.
    Linear,
    /// No wait.
    Immediate,
}

/// A retry's jitter.
///
/// ```
/// use resilient::registry::config::JitterKind;
/// let j: JitterKind = serde_json::from_str("\"full\"").unwrap();
/// assert_eq!(j, JitterKind::Full);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JitterKind {
    /// None (the default).
    #[default]
    None,
    /// Uniform in `[0, delay]`.
    Full,
    /// `delay / 2` plus uniform in `[0, delay / 2]`.
    Equal,
    /// Decorrelated (each delay from the previous one).
    Decorrelated,
}

/// A retry budget's settings (see [`RetryBudget`]).
///
/// ```
/// use resilient::registry::config::BudgetConfig;
/// let b: BudgetConfig = serde_json::from_str(r#"{"ratio": 0.1}"#).unwrap();
/// assert_eq!(b.min_per_sec, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Retries allowed as a fraction of calls.
    pub ratio: f64,
    /// Retries a second always allowed (default 10).
    #[serde(default = "default_min_per_sec")]
    pub min_per_sec: u32,
}

fn default_min_per_sec() -> u32 {
    10
}

fn default_attempts() -> u32 {
    3
}

fn default_base() -> Duration {
    Duration::from_millis(100)
}

/// A retry's settings (see [`Retry`]).
///
/// ```
/// use resilient::registry::config::RetryConfig;
/// let r: RetryConfig = serde_json::from_str(r#"{"attempts": 5, "base": "50ms", "jitter": "full"}"#).unwrap();
/// assert_eq!(r.build().unwrap().max_attempts(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts, the first included (default 3).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The backoff (default `exponential`).
    #[serde(default)]
    pub backoff: BackoffKind,
    /// The first wait (default `"100ms"`).
    #[serde(default = "default_base", with = "duration")]
    pub base: Duration,
    /// The growth of a `linear` backoff.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub step: Option<Duration>,
    /// The growth factor of an `exponential` backoff (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// The jitter (default `none`).
    #[serde(default)]
    pub jitter: JitterKind,
    /// Caps each wait.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<Duration>,
    /// Stops retrying past this since the first attempt.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_elapsed: Option<Duration>,
    /// Caps a wait the server asks for.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_server_delay: Option<Duration>,
    /// Whether an attempt that hit the operation timeout is retried (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_timeout: Option<bool>,
    /// A retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
}

impl RetryConfig {
    /// The retry, its budget validated (the rest is validated with the pipeline).
    ///
    /// ```
    /// use resilient::registry::config::RetryConfig;
    /// let r: RetryConfig = serde_json::from_str(r#"{"budget": {"ratio": -1}}"#).unwrap();
    /// assert!(r.build().is_err());
    /// ```
    pub fn build(&self) -> Result<Retry, ConfigError> {
        let mut r = match self.backoff {
            BackoffKind::Exponential => {
                Retry::exponential(self.base).factor(self.factor.unwrap_or(2.0))
            }
            BackoffKind::Constant => Retry::constant(self.base),
            BackoffKind::Linear => Retry::linear(self.base, self.step.unwrap_or(self.base)),
            BackoffKind::Immediate => Retry::immediate(),
        };
        r = r.attempts(self.attempts).jitter(match self.jitter {
            JitterKind::None => Jitter::None,
            JitterKind::Full => Jitter::Full,
            JitterKind::Equal => Jitter::Equal,
            JitterKind::Decorrelated => Jitter::Decorrelated,
        });
        if let Some(d) = self.max_delay {
            r = r.max_delay(d);
        }
        if let Some(d) = self.max_elapsed {
            r = r.max_elapsed(d);
        }
        if let Some(d) = self.max_server_delay {
            r = r.max_server_delay(d);
        }
        if let Some(b) = self.retry_on_timeout {
            r = r.retry_on_timeout(b);
        }
        if let Some(b) = &self.budget {
            r = r.budget(
                RetryBudget::builder(b.ratio)
                    .min_per_sec(b.min_per_sec)
                    .build()?,
            );
        }
        r.validate()?;
        Ok(r)
    }
}

/// How a hedge starts its extra attempts.
///
/// ```
/// use resilient::registry::config::HedgeMode;
/// let m: HedgeMode = serde_json::from_str("\"parallel\"").unwrap();
/// assert_eq!(m, HedgeMode::Parallel);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HedgeMode {
    /// A hedge each time `delay` passes without a result (the default).
    #[default]
    Delayed,
    /// Every attempt at once.
    Parallel,
    /// The next attempt once the previous one failed.
    Fallback,
}

/// A hedging policy's settings (see [`Hedge`](crate::hedge::Hedge)). A pipeline with one
/// must also say `idempotent = true`.
///
/// ```
/// use resilient::registry::config::HedgeConfig;
/// let h: HedgeConfig = serde_json::from_str(r#"{"delay": "50ms", "max_hedges": 2}"#).unwrap();
/// assert!(h.build().is_ok());
/// let h: HedgeConfig = serde_json::from_str(r#"{"mode": "delayed"}"#).unwrap();
/// assert_eq!(h.build().unwrap_err().field(), "hedge.delay");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// How extra attempts start (default `delayed`).
    #[serde(default)]
    pub mode: HedgeMode,
    /// The wait before each hedge (`delayed` only); with `percentile`, the wait until
    /// enough latencies are known.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
    /// Hedge after this quantile of recent latencies (`0.95`), learned from the calls
    /// (see [`Hedge::percentile`](crate::hedge::Hedge::percentile)); `delayed` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// The least a learned (`percentile`) delay may be (default 1 ms).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_delay: Option<Duration>,
    /// The most a learned (`percentile`) delay may be (default 1 minute).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<Duration>,
    /// Extra attempts at most (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hedges: Option<u32>,
    /// A budget bounding hedges as a fraction of calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
}

impl HedgeConfig {
    /// The hedging policy, validated.
    ///
    /// ```
    /// use resilient::registry::config::{HedgeConfig, HedgeMode};
    /// let h = HedgeConfig { mode: HedgeMode::Parallel, ..Default::default() };
    /// assert!(h.build().is_ok());
    /// let p: HedgeConfig =
    ///     serde_json::from_str(r#"{"delay": "50ms", "percentile": 0.95, "max_delay": "2s"}"#)
    ///         .unwrap();
    /// assert_eq!(p.build().unwrap().current_delay(), Some(std::time::Duration::from_millis(50)));
    /// let bad: HedgeConfig = serde_json::from_str(r#"{"delay": "50ms", "percentile": 1.5}"#).unwrap();
    /// assert_eq!(bad.build().unwrap_err().field(), "hedge.percentile");
    /// ```
    pub fn build(&self) -> Result<crate::hedge::Hedge, ConfigError> {
        use crate::hedge::Hedge;
        if self.percentile.is_none() && (self.min_delay.is_some() || self.max_delay.is_some()) {
            return Err(ConfigError::new(
                "hedge.min_delay",
                "`min_delay` and `max_delay` bound a learned delay: they need `percentile`",
            ));
        }
        let mut b = match (self.mode, self.delay) {
            (HedgeMode::Delayed, Some(d)) => match self.percentile {
                Some(q) => Hedge::percentile(q, d).delay_bounds(
                    self.min_delay.unwrap_or(Duration::from_millis(1)),
                    self.max_delay.unwrap_or(Duration::from_secs(60)),
                ),
                None => Hedge::delayed(d),
            },
            (HedgeMode::Delayed, None) => {
                return Err(ConfigError::new(
                    "hedge.delay",
                    "a delayed hedge needs `delay` (the wait before each hedge)",
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    "hedge.delay",
                    "`delay` only applies to `mode = \"delayed\"`",
                ));
            }
            (_, None) if self.percentile.is_some() => {
                return Err(ConfigError::new(
                    "hedge.percentile",
                    "`percentile` only applies to `mode = \"delayed\"` (with `delay` as the \
                     initial wait)",
                ));
            }
            (HedgeMode::Parallel, None) => Hedge::parallel(),
            (HedgeMode::Fallback, None) => Hedge::fallback(),
        };
        if let Some(n) = self.max_hedges {
            b = b.max_hedges(n);
        }
        if let Some(budget) = &self.budget {
            b = b.budget(
                RetryBudget::builder(budget.ratio)
                    .min_per_sec(budget.min_per_sec)
                    .build()?,
            );
        }
        b.build()
    }
}

/// A named pipeline: its timeouts, retry and guards (by name, from the file's sections
/// or already in the registry), or a `pattern`'s spelling.
///
/// ```
/// use resilient::registry::config::PipelineConfig;
/// let p: PipelineConfig = serde_json::from_str(r#"{"pattern": "network(attempts = 5)"}"#).unwrap();
/// assert_eq!(p.pattern.as_deref(), Some("network(attempts = 5)"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A pattern's spelling: the pipeline is that pattern's (nothing else goes with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutConfig>,
    /// The retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// A breaker's name (per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<String>,
    /// A rate limiter's name (per attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// A bulkhead's name (per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<String>,
    /// Hedged attempts (needs `idempotent = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    /// Whether the operations are safe to run more than once at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// A chaos injector's name (per attempt: rejections and latency injected at its rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<String>,
}

/// A chaos injector (see `resilient::chaos`): the rejections and latency a pipeline's
/// attempts get, switchable at run time (`registry.chaos(name)`) and on reload.
///
/// ```
/// use resilient::registry::config::ChaosConfig;
/// let c: ChaosConfig = serde_json::from_str(
///     r#"{"reject_rate": 0.05, "latency_rate": 0.1, "latency": "200ms", "seed": 7}"#,
/// ).unwrap();
/// let chaos = c.build().unwrap();
/// assert_eq!(chaos.reject_rate(), 0.05);
/// assert!(chaos.is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// Whether injections are on (default `true`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The share of attempts rejected (`Error::Rejected { guard: "chaos" }`).
    #[serde(default)]
    pub reject_rate: f64,
    /// The share of attempts delayed.
    #[serde(default)]
    pub latency_rate: f64,
    /// How long a delayed attempt waits (default 0).
    #[serde(default, with = "duration")]
    pub latency: Duration,
    /// A seed for reproducible injections (default: thread-local randomness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_true() -> bool {
    true
}

impl ChaosConfig {
    /// Builds the injector; rates outside `[0, 1]` are refused, naming the field.
    pub fn build(&self) -> Result<Chaos, ConfigError> {
        let mut b = Chaos::builder()
            .enabled(self.enabled)
            .reject_rate(self.reject_rate)
            .latency(self.latency_rate, self.latency);
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        b.build()
    }

    /// Applies these settings to a running injector built with the same seed (a reload);
    /// `false` when they cannot be (another seed, or an invalid rate).
    pub fn apply_to(&self, chaos: &Chaos, was: &ChaosConfig) -> bool {
        if self.seed != was.seed || self.build().is_err() {
            return false;
        }
        chaos.set_enabled(self.enabled);
        chaos.set_reject_rate(self.reject_rate).is_ok()
            && chaos.set_latency(self.latency_rate, self.latency).is_ok()
    }
}

/// A whole configuration file: named breakers, limiters, bulkheads and pipelines.
///
/// ```
/// use resilient::registry::config::ConfigFile;
/// let c: ConfigFile = serde_json::from_str(r#"{"bulkheads": {"db": {"max_concurrent": 4}}}"#).unwrap();
/// assert_eq!(c.bulkheads["db"].max_concurrent, 4);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Named circuit breakers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, BreakerConfig>,
    /// Named rate limiters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limiters: BTreeMap<String, LimiterConfig>,
    /// Named bulkheads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bulkheads: BTreeMap<String, BulkheadConfig>,
    /// Named chaos injectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub chaos: BTreeMap<String, ChaosConfig>,
    /// Named pipelines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pipelines: BTreeMap<String, PipelineConfig>,
}

/// Why a configuration did not load: the file, the line (for TOML), the field (a dotted
/// path such as `pipelines.payments.retry.attempts`) and what is wrong.
///
/// ```
/// use resilient::registry::Registry;
/// let err = Registry::new()
///     .load_toml("[pipelines.a]\nretry = { atempts = 2 }\n", "x.toml")
///     .unwrap_err();
/// assert_eq!(err.line(), Some(2));
/// assert_eq!(err.field(), "pipelines.a.retry.atempts");
/// assert!(err.message().contains("unknown field `atempts`"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFileError {
    file: String,
    line: Option<usize>,
    field: String,
    message: String,
}

impl ConfigFileError {
    /// An error with no line or field (an unreadable file, a watch failure).
    #[cfg(feature = "reload")]
    pub(crate) fn other(file: &str, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            field: String::new(),
            message,
        }
    }

    /// The file (as given to the loader).
    ///
    /// ```
    /// let err = resilient::registry::Registry::new().load_toml("x = 1", "a.toml").unwrap_err();
    /// assert_eq!(err.file(), "a.toml");
    /// ```
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line, when known.
    ///
    /// ```
    /// let err = resilient::registry::Registry::new().load_toml("\nx = 1", "a.toml").unwrap_err();
    /// assert_eq!(err.line(), Some(2));
    /// ```
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The field, as a dotted path.
    ///
    /// ```
    /// let err = resilient::registry::Registry::new().load_toml("x = 1", "a.toml").unwrap_err();
    /// assert_eq!(err.field(), "x");
    /// ```
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    ///
    /// ```
    /// let err = resilient::registry::Registry::new().load_toml("x = 1", "a.toml").unwrap_err();
    /// assert!(err.message().contains("unknown field `x`"));
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// Where each key of a TOML document is: its dotted path, the span of the key and of its
/// value.
struct Locations {
    entries: Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)>,
    lines: Vec<usize>,
}

impl Locations {
    fn new(src: &str) -> Self {
        let mut entries = Vec::new();
        if let Ok(doc) = toml::de::DeTable::parse(src) {
            walk(doc.get_ref(), "", &mut entries);
        }
        let lines = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { entries, lines }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.lines.partition_point(|&start| start <= offset)
    }

    /// The line of the key `path`, or of its nearest ancestor that is in the document.
    fn line_of_path(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some((_, key, _)) = self.entries.iter().find(|(q, _, _)| q == p) {
                return Some(self.line_of(key.start));
            }
            p = &p[..p.rfind('.')?];
        }
    }

    /// The deepest key whose key or value contains `offset`.
    fn path_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, k, v)| k.contains(&offset) || v.contains(&offset))
            .max_by_key(|(p, _, _)| p.matches('.').count())
            .map(|(p, _, _)| p.as_str())
    }
}

fn walk(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)>,
) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.push((path.clone(), k.span(), v.span()));
        if let toml::de::DeValue::Table(t) = v.get_ref() {
            walk(t, &path, out);
        }
    }
}

/// A validation failure: the field's path and the error.
struct Invalid {
    path: String,
    message: String,
}

/// The config key a builder's [`ConfigError`] field names (`circuit.failure_rate` is
/// `failure_rate`), when `section` has it.
fn field_path(section: &str, error: &ConfigError, keys: &[&str]) -> String {
    let last = error.field().rsplit('.').next().unwrap_or("");
    let key = match last {
        "max_concurrent"
        | "queue"
        | "max_wait"
        | "failure_rate"
        | "consecutive_failures"
        | "window"
        | "minimum_calls"
        | "open_for"
        | "break_jitter"
        | "half_open_probes"
        | "required_successes"
        | "max_half_open_wait"
        | "slow_rate"
        | "burst"
        | "cost"
        | "rate"
        | "per"
        | "attempts"
        | "operation"
        | "request"
        | "circuit"
        | "factor"
        | "max_delay"
        | "max_elapsed"
        | "max_server_delay"
        | "reject_rate"
        | "latency_rate" => last,
        "slow_call" | "slow_calls" => "slow_call",
        "break_backoff" => "max_open_for",
        "limit" | "capacity" => "rate",
        "ratio" => "budget",
        _ => "",
    };
    if !key.is_empty() && keys.contains(&key) {
        format!("{section}.{key}")
    } else {
        section.to_owned()
    }
}

impl ConfigFile {
    /// Parses a TOML document (`file` names it in errors).
    ///
    /// ```
    /// use resilient::registry::config::ConfigFile;
    /// let c = ConfigFile::from_toml("[limiters.api]\nrate = 5\n", "x.toml").unwrap();
    /// assert_eq!(c.limiters["api"].rate, 5);
    /// ```
    pub fn from_toml(src: &str, file: &str) -> Result<Self, ConfigFileError> {
        toml::from_str(src).map_err(|e| {
            let loc = Locations::new(src);
            let offset = e.span().map(|s| s.start);
            let field = offset
                .and_then(|o| loc.path_at(o))
                .unwrap_or_default()
                .to_owned();
            let mut message = e.message().trim().to_owned();
            // an unknown key: the span covers the key, which `path_at` found only if it
            // is a table's
            if let Some(unknown) = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                && !field.ends_with(unknown)
            {
                let field = if field.is_empty() {
                    unknown.to_owned()
                } else {
                    format!("{field}.{unknown}")
                };
                return ConfigFileError {
                    file: file.to_owned(),
                    line: offset.map(|o| loc.line_of(o)),
                    field,
                    message,
                };
            }
            if message.is_empty() {
                message = "invalid".into();
            }
            ConfigFileError {
                file: file.to_owned(),
                line: offset.map(|o| loc.line_of(o)),
                field,
                message,
            }
        })
    }

    /// Checks every breaker, limiter, bulkhead and pipeline (building them), and that
    /// every name a pipeline refers to is defined here or in `registry`.
    fn validate(&self, registry: &Registry) -> Result<(), Invalid> {
        const BREAKER: &[&str] = &[
            "failure_rate",
            "consecutive_failures",
            "window",
            "minimum_calls",
            "open_for",
            "max_open_for",
            "break_jitter",
            "half_open_probes",
            "required_successes",
            "max_half_open_wait",
            "slow_call",
            "slow_rate",
        ];
        for (name, c) in &self.breakers {
            c.build(name).map_err(|e| Invalid {
                path: field_path(&format!("breakers.{name}"), &e, BREAKER),
                message: e.to_string(),
            })?;
        }
        for (name, c) in &self.limiters {
            c.build().map_err(|e| Invalid {
                path: field_path(
                    &format!("limiters.{name}"),
                    &e,
                    &["rate", "per", "burst", "cost", "max_wait"],
                ),
                message: e.to_string(),
            })?;
        }
        for (name, c) in &self.bulkheads {
            c.build().map_err(|e| Invalid {
                path: field_path(
                    &format!("bulkheads.{name}"),
                    &e,
                    &["max_concurrent", "queue", "max_wait"],
                ),
                message: e.to_string(),
            })?;
        }
        for (name, c) in &self.chaos {
            c.build().map_err(|e| Invalid {
                path: field_path(
                    &format!("chaos.{name}"),
                    &e,
                    &["reject_rate", "latency_rate"],
                ),
                message: e.to_string(),
            })?;
        }
        for (name, p) in &self.pipelines {
            let at = format!("pipelines.{name}");
            self.check_refs(registry, &at, p)?;
            self.pipeline(registry, &at, p).map(drop)?;
        }
        Ok(())
    }

    fn check_refs(&self, registry: &Registry, at: &str, p: &PipelineConfig) -> Result<(), Invalid> {
        let check = |key: &str, name: &Option<String>, here: Vec<String>, there: Vec<String>| {
            let Some(name) = name else { return Ok(()) };
            if here.contains(name) || there.contains(name) {
                return Ok(());
            }
            let mut known: Vec<String> = here.into_iter().chain(there).collect();
            known.sort();
            known.dedup();
            Err(Invalid {
                path: format!("{at}.{key}"),
                message: format!(
                    "no {key} named `{name}`; {}",
                    if known.is_empty() {
                        "none is defined".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    }
                ),
            })
        };
        check(
            "circuit_breaker",
            &p.circuit_breaker,
            self.breakers.keys().cloned().collect(),
            registry.breaker_names(),
        )?;
        check(
            "rate_limit",
            &p.rate_limit,
            self.limiters.keys().cloned().collect(),
            registry.limiter_names(),
        )?;
        check(
            "bulkhead",
            &p.bulkhead,
            self.bulkheads.keys().cloned().collect(),
            registry.bulkhead_names(),
        )?;
        check(
            "chaos",
            &p.chaos,
            self.chaos.keys().cloned().collect(),
            registry.chaos_names(),
        )
    }

    /// Builds pipeline `p` (at `at`), its named guards taken from `registry`, or checked
    /// with stand-ins built from this file before they are in it.
    fn pipeline(
        &self,
        registry: &Registry,
        at: &str,
        p: &PipelineConfig,
    ) -> Result<super::AnyPipeline, Invalid> {
        let fail = |key: &str, e: ConfigError| {
            let keys: &[&str] = match key {
                "timeout" => &["operation", "request", "circuit"],
                "hedge" => &["delay", "max_hedges", "budget"],
                "retry" => &[
                    "attempts",
                    "factor",
                    "max_delay",
                    "max_elapsed",
                    "max_server_delay",
                    "budget",
                ],
                _ => &[],
            };
            Invalid {
                path: field_path(&format!("{at}.{key}"), &e, keys),
                message: e.to_string(),
            }
        };
        if let Some(spelling) = &p.pattern {
            if p != &(PipelineConfig {
                pattern: p.pattern.clone(),
                ..Default::default()
            }) {
                return Err(Invalid {
                    path: format!("{at}.pattern"),
                    message: "a `pattern` pipeline is the pattern's: nothing else goes with it \
                              (give the pattern parameters instead)"
                        .into(),
                });
            }
            return registry.any_pipeline(spelling).map_err(|e| Invalid {
                path: format!("{at}.pattern"),
                message: e.to_string(),
            });
        }
        let mut b = super::builder().name(at.trim_start_matches("pipelines.").to_owned());
        if let Some(t) = &p.timeout {
            if let Some(d) = t.request {
                b = b.timeout(Timeout::request(d));
            }
            if let Some(d) = t.operation {
                b = b.timeout(Timeout::operation(d));
            }
            if let Some(d) = t.circuit {
                b = b.timeout(Timeout::circuit(d));
            }
        }
        if let Some(name) = &p.circuit_breaker {
            let breaker = match registry.breaker(name) {
                Ok(b) => b,
                Err(_) => self.breakers[name]
                    .build(name)
                    .map_err(|e| fail("circuit_breaker", e))?,
            };
            b = b.circuit_breaker(breaker);
        }
        if let Some(name) = &p.bulkhead {
            let bulkhead = match registry.bulkhead(name) {
                Ok(b) => b,
                Err(_) => self.bulkheads[name]
                    .build()
                    .map_err(|e| fail("bulkhead", e))?,
            };
            b = b.bulkhead(bulkhead);
        }
        if let Some(r) = &p.retry {
            b = b.retry(r.build().map_err(|e| fail("retry", e))?);
        }
        if let Some(yes) = p.idempotent {
            b = b.idempotent(yes);
        }
        if let Some(h) = &p.hedge {
            b = b.hedge(h.build().map_err(|e| fail("hedge", e))?);
        }
        if let Some(name) = &p.rate_limit {
            let limiter = match registry.limiter(name) {
                Ok(l) => l,
                Err(_) => self.limiters[name]
                    .build()
                    .map_err(|e| fail("rate_limit", e))?,
            };
            b = b.rate_limit(limiter);
        }
        if let Some(name) = &p.chaos {
            let chaos = match registry.chaos(name) {
                Ok(c) => c,
                Err(_) => self.chaos[name].build().map_err(|e| fail("chaos", e))?,
            };
            b = b.guard(chaos);
        }
        let built = b.build().map_err(|e| {
            let key = match e.field().split('.').next() {
                Some("timeout") => "timeout",
                Some("retry") => "retry",
                Some("hedge") => "hedge",
                Some("circuit") if p.timeout.as_ref().is_some_and(|t| t.circuit.is_some()) => {
                    "timeout"
                }
                Some("circuit") => "circuit_breaker",
                _ => "",
            };
            if key.is_empty() {
                Invalid {
                    path: at.to_owned(),
                    message: e.to_string(),
                }
            } else {
                fail(key, e)
            }
        })?;
        Ok(built.into())
    }

    /// Adds everything to `registry`: validated first as a whole (nothing is added if
    /// anything is invalid), then breakers, limiters and bulkheads built and added under
    /// their names, and pipelines built from them.
    fn apply(&self, registry: &Registry) -> Result<(), Invalid> {
        self.validate(registry)?;
        let taken = |kind: &str, name: &str, e: RegistryError| Invalid {
            path: format!("{kind}.{name}"),
            message: e.to_string(),
        };
        for (name, c) in &self.breakers {
            let b = c
                .build(name)
                .map_err(|e| taken("breakers", name, e.into()))?;
            registry
                .insert_breaker(name.clone(), b)
                .map_err(|e| taken("breakers", name, e))?;
        }
        for (name, c) in &self.limiters {
            let l = c.build().map_err(|e| taken("limiters", name, e.into()))?;
            registry
                .insert_limiter(name.clone(), l)
                .map_err(|e| taken("limiters", name, e))?;
        }
        for (name, c) in &self.bulkheads {
            let b = c.build().map_err(|e| taken("bulkheads", name, e.into()))?;
            registry
                .insert_bulkhead(name.clone(), b)
                .map_err(|e| taken("bulkheads", name, e))?;
        }
        for (name, c) in &self.chaos {
            let b = c.build().map_err(|e| taken("chaos", name, e.into()))?;
            registry
                .insert_chaos(name.clone(), b)
                .map_err(|e| taken("chaos", name, e))?;
        }
        for (name, p) in &self.pipelines {
            let at = format!("pipelines.{name}");
            let built = self.pipeline(registry, &at, p)?;
            let mut s = registry.lock();
            if s.pipelines.has(name) {
                return Err(taken(
                    "pipelines",
                    name,
                    RegistryError::Duplicate {
                        kind: "pipeline",
                        name: name.clone(),
                    },
                ));
            }
            s.pipelines.built.insert(name.clone(), built);
        }
        Ok(())
    }
}

impl Registry {
    /// Loads a configuration (from any serde format) into this registry: validated as a
    /// whole first, so nothing is added if anything is invalid. `file` names it in errors.
    ///
    /// ```
    /// use resilient::registry::Registry;
    /// use resilient::registry::config::ConfigFile;
    /// let config: ConfigFile = serde_json::from_str(
    ///     r#"{"limiters": {"api": {"rate": 0}}}"#,
    /// ).unwrap();
    /// let err = Registry::new().load(&config, "config.json").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "config.json: limiters.api.rate: invalid configuration: `gcra.rate` count must be at least 1"
    /// );
    /// ```
    pub fn load(&self, config: &ConfigFile, file: &str) -> Result<(), ConfigFileError> {
        config.apply(self).map_err(|i| ConfigFileError {
            file: file.to_owned(),
            line: None,
            field: i.path,
            message: i.message,
        })
    }

    /// Loads a TOML configuration; errors name `file`, the line and the field.
    ///
    /// ```
    /// use resilient::registry::Registry;
    /// let r = Registry::new();
    /// r.load_toml("[bulkheads.db]\nmax_concurrent = 4\n", "db.toml").unwrap();
    /// assert_eq!(r.bulkhead("db").unwrap().limit(), 4);
    /// ```
    pub fn load_toml(&self, src: &str, file: &str) -> Result<(), ConfigFileError> {
        let config = ConfigFile::from_toml(src, file)?;
        config.apply(self).map_err(|i| {
            let loc = Locations::new(src);
            ConfigFileError {
                file: file.to_owned(),
                line: loc.line_of_path(&i.path),
                field: i.path,
                message: i.message,
            }
        })
    }

    /// Reads and loads a TOML file.
    ///
    /// ```
    /// let err = resilient::registry::Registry::new().load_toml_file("/no/such.toml").unwrap_err();
    /// assert_eq!(err.file(), "/no/such.toml");
    /// ```
    pub fn load_toml_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigFileError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            file: file.clone(),
            line: None,
            field: String::new(),
            message: e.to_string(),
        })?;
        self.load_toml(&src, &file)
    }
}
