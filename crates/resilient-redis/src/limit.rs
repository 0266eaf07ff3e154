//! [`Limit`]: one limit of a key's quota, as the Redis script runs it.

use std::time::Duration;

use resilient::ConfigError;
use resilient::ratelimit::{
    Algorithm, FixedWindow, Gcra, Policy, Rate, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
};

/// The largest limit of a sliding window counter when Redis is down and the local
/// fallback stands in for it (see [`resilient::ratelimit::MAX_SLIDING_LIMIT`]).
const LOCAL_SLIDING_MAX: u64 = resilient::ratelimit::MAX_SLIDING_LIMIT;

/// The shortest window or refill period: Redis `TIME` has microsecond resolution and keys
/// expire in milliseconds.
pub const MIN_PERIOD: Duration = Duration::from_millis(1);

/// One limit of a key's quota, run by the Redis script: the same five algorithms as the
/// local limiters of [`resilient::ratelimit`], with the same parameters and checks.
///
/// ```
/// use resilient::ratelimit::Rate;
/// use resilient_redis::Limit;
/// use std::time::Duration;
///
/// let per_second = Limit::gcra(Rate::per_second(10)).unwrap();
/// assert_eq!(per_second.policy().quota, 10);
/// assert_eq!(per_second.algorithm(), "gcra");
/// let per_day = Limit::fixed_window(10_000, Duration::from_secs(86_400)).unwrap();
/// assert_eq!(per_day.max_cost(), 10_000);
/// assert!(Limit::fixed_window(0, Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gcra { rate: Rate, burst: u64 },
    TokenBucket { capacity: u64, refill: Rate },
    FixedWindow { limit: u64, window: Duration },
    SlidingCounter { limit: u64, window: Duration },
    SlidingLog { limit: u64, window: Duration },
}

fn check_period(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d < MIN_PERIOD {
        return Err(ConfigError::new(
            field,
            format!("must be at least {MIN_PERIOD:?} (got {d:?})"),
        ));
    }
    Ok(())
}

/// `d` in whole microseconds.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `x · share`, rounded up, at least 1.
fn scale(x: u64, share: f64) -> u64 {
    ((x as f64 * share).ceil() as u64).clamp(1, x.max(1))
}

impl Limit {
    /// GCRA at `rate`, with a burst of `rate.count` (see [`Gcra::new`]).
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// let l = resilient_redis::Limit::gcra(Rate::per_minute(60)).unwrap();
    /// assert_eq!(l.max_cost(), 60);
    /// ```
    pub fn gcra(rate: Rate) -> Result<Self, ConfigError> {
        Self::gcra_with_burst(rate, rate.count)
    }

    /// GCRA at `rate` with a burst (total capacity) of `burst` (see [`Gcra::with_burst`]).
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// let l = resilient_redis::Limit::gcra_with_burst(Rate::per_second(10), 20).unwrap();
    /// assert_eq!(l.max_cost(), 20);
    /// ```
    pub fn gcra_with_burst(rate: Rate, burst: u64) -> Result<Self, ConfigError> {
        Gcra::with_burst(rate, burst)?;
        check_period("redis_limit.rate", rate.per)?;
        Ok(Self {
            kind: Kind::Gcra { rate, burst },
        })
    }

    /// A token bucket of `capacity` tokens, refilled `refill.count` tokens every
    /// `refill.per` (see [`TokenBucket::new`]). A key's refill periods start at its first
    /// use after it was last full (the local bucket's start at the bucket's first use).
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// let l = resilient_redis::Limit::token_bucket(100, Rate::per_second(10)).unwrap();
    /// assert_eq!(l.max_cost(), 100);
    /// ```
    pub fn token_bucket(capacity: u64, refill: Rate) -> Result<Self, ConfigError> {
        TokenBucket::new(capacity, refill)?;
        check_period("redis_limit.refill", refill.per)?;
        Ok(Self {
            kind: Kind::TokenBucket { capacity, refill },
        })
    }

    /// At most `limit` units per window `[k·window, (k+1)·window)` of the server's time
    /// (see [`FixedWindow::new`]); windows of a day or less start at UTC midnight.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = resilient_redis::Limit::fixed_window(100, Duration::from_secs(60)).unwrap();
    /// assert_eq!(l.policy().window, Duration::from_secs(60));
    /// ```
    pub fn fixed_window(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        FixedWindow::new(limit, window)?;
        check_period("redis_limit.window", window)?;
        Ok(Self {
            kind: Kind::FixedWindow { limit, window },
        })
    }

    /// The sliding window counter (Cloudflare's weighted approximation, see
    /// [`SlidingWindowCounter::new`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = resilient_redis::Limit::sliding_window_counter(100, Duration::from_secs(60));
    /// assert_eq!(l.unwrap().algorithm(), "sliding_counter");
    /// ```
    pub fn sliding_window_counter(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        SlidingWindowCounter::new(limit, window)?;
        check_period("redis_limit.window", window)?;
        Ok(Self {
            kind: Kind::SlidingCounter { limit, window },
        })
    }

    /// The exact sliding window log (see [`SlidingWindowLog::new`]): a sorted set of
    /// admission times per key, read whole on each decision, so it suits small limits.
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = resilient_redis::Limit::sliding_window_log(20, Duration::from_secs(1));
    /// assert_eq!(l.unwrap().algorithm(), "sliding_log");
    /// ```
    pub fn sliding_window_log(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        SlidingWindowLog::new(limit, window)?;
        check_period("redis_limit.window", window)?;
        Ok(Self {
            kind: Kind::SlidingLog { limit, window },
        })
    }

    /// The algorithm's name, as the script knows it: `gcra`, `token_bucket`,
    /// `fixed_window`, `sliding_counter` or `sliding_log`.
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// let l = resilient_redis::Limit::token_bucket(5, Rate::per_second(5)).unwrap();
    /// assert_eq!(l.algorithm(), "token_bucket");
    /// ```
    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            Kind::Gcra { .. } => "gcra",
            Kind::TokenBucket { .. } => "token_bucket",
            Kind::FixedWindow { .. } => "fixed_window",
            Kind::SlidingCounter { .. } => "sliding_counter",
            Kind::SlidingLog { .. } => "sliding_log",
        }
    }

    /// The largest cost one request may have (the capacity).
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// let l = resilient_redis::Limit::gcra_with_burst(Rate::per_second(1), 3).unwrap();
    /// assert_eq!(l.max_cost(), 3);
    /// ```
    pub fn max_cost(&self) -> u64 {
        match self.kind {
            Kind::Gcra { burst, .. } => burst,
            Kind::TokenBucket { capacity, .. } => capacity,
            Kind::FixedWindow { limit, .. }
            | Kind::SlidingCounter { limit, .. }
            | Kind::SlidingLog { limit, .. } => limit,
        }
    }

    /// The quota this limit enforces, as the local limiter with the same parameters
    /// publishes it (so `RateLimit-Policy` headers are the same).
    ///
    /// ```
    /// use resilient::ratelimit::Rate;
    /// use std::time::Duration;
    /// let l = resilient_redis::Limit::gcra(Rate::per_second(10)).unwrap();
    /// assert_eq!(l.policy().window, Duration::from_secs(1));
    /// ```
    pub fn policy(&self) -> Policy {
        self.local(1.0).map(|l| l.policy()).unwrap_or(Policy {
            quota: self.max_cost(),
            window: Duration::ZERO,
        })
    }

    /// The script's four arguments for this limit: algorithm and three numbers.
    pub(crate) fn args(&self) -> [String; 4] {
        let name = self.algorithm().to_string();
        match self.kind {
            Kind::Gcra { rate, burst } => {
                let interval = rate.per.as_nanos() as f64 / 1000.0 / rate.count as f64;
                [name, format!("{interval:?}"), burst.to_string(), "0".into()]
            }
            Kind::TokenBucket { capacity, refill } => [
                name,
                capacity.to_string(),
                refill.count.to_string(),
                micros(refill.per).to_string(),
            ],
            Kind::FixedWindow { limit, window }
            | Kind::SlidingCounter { limit, window }
            | Kind::SlidingLog { limit, window } => [
                name,
                limit.to_string(),
                micros(window).to_string(),
                "0".into(),
            ],
        }
    }

    /// A local limiter for this limit sized as `share` of it (the fallback while Redis
    /// is unreachable). A sliding log stands in as a sliding window counter (whose
    /// packed state a keyed limiter can hold).
    pub(crate) fn local(&self, share: f64) -> Result<Box<dyn Algorithm>, ConfigError> {
        Ok(match self.kind {
            Kind::Gcra { rate, burst } => {
                let rate = Rate::new(scale(rate.count, share), rate.per);
                Box::new(Gcra::with_burst(rate, scale(burst, share))?)
            }
            Kind::TokenBucket { capacity, refill } => Box::new(TokenBucket::new(
                scale(capacity, share),
                Rate::new(scale(refill.count, share), refill.per),
            )?),
            Kind::FixedWindow { limit, window } => {
                Box::new(FixedWindow::new(scale(limit, share), window)?)
            }
            Kind::SlidingCounter { limit, window } | Kind::SlidingLog { limit, window } => {
                Box::new(SlidingWindowCounter::new(
                    scale(limit, share).min(LOCAL_SLIDING_MAX),
                    window,
                )?)
            }
        })
    }
}
