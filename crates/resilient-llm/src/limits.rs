//! Per-provider request and token limits, as a [`resilient::Guard`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use resilient::ratelimit::{Rate, RateLimiter};
use resilient::{Acquire, ConfigError, Context, Guard, Outcome, Permit};

/// A provider's client-side limits: requests per minute and tokens per minute, each
/// attempt charged one request and its [`estimate_tokens`](crate::estimate_tokens)
/// tokens. A call that would exceed a limit waits for it up to
/// [`max_wait`](Limits::max_wait) (zero by default: no wait) and is otherwise rejected
/// with [`resilient::Error::RateLimited`], which moves the call to the next provider.
///
/// ```
/// use resilient_llm::{Limits, Provider};
/// use std::time::Duration;
/// let limits = Limits::new()
///     .requests_per_minute(500)
///     .tokens_per_minute(30_000)
///     .max_wait(Duration::from_secs(2));
/// let provider = Provider::new("openai", "https://api.openai.com/v1", "sk-...").limits(limits);
/// # let _ = provider;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    max_wait: Duration,
}

impl Limits {
    /// No limit yet.
    ///
    /// ```
    /// let _ = resilient_llm::Limits::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` requests a minute (attempts, retries included), in a burst of `n`.
    ///
    /// ```
    /// let _ = resilient_llm::Limits::new().requests_per_minute(60);
    /// ```
    pub fn requests_per_minute(mut self, n: u64) -> Self {
        self.requests_per_minute = Some(n);
        self
    }

    /// At most `n` estimated tokens a minute, in a burst of `n`. A request estimated above
    /// `n` can never pass this provider.
    ///
    /// ```
    /// let _ = resilient_llm::Limits::new().tokens_per_minute(90_000);
    /// ```
    pub fn tokens_per_minute(mut self, n: u64) -> Self {
        self.tokens_per_minute = Some(n);
        self
    }

    /// How long a call may wait for capacity before it is rejected (default zero).
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::Limits::new().requests_per_minute(60).max_wait(Duration::from_secs(1));
    /// ```
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// The guard enforcing these limits, for a pipeline of your own
    /// (`Pipeline::builder().guard_arc(..)`); each call's cost
    /// ([`resilient::Call::cost`]) is its tokens.
    ///
    /// ```
    /// use resilient::{Error, Pipeline};
    /// use resilient_llm::Limits;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let guard = Limits::new().tokens_per_minute(1_000).guard().unwrap();
    /// let p = Pipeline::builder().guard_arc(guard).build().unwrap();
    /// let r: Result<(), Error<()>> = p.call().cost(800).execute(|| async { Ok(()) }).await;
    /// assert!(r.is_ok());
    /// let r: Result<(), Error<()>> = p.call().cost(800).execute(|| async { Ok(()) }).await;
    /// assert!(matches!(r, Err(Error::RateLimited { .. })));
    /// # }
    /// ```
    pub fn guard(&self) -> Result<Arc<dyn Guard>, ConfigError> {
        let limiter = |n: Option<u64>, field: &'static str| {
            n.map(|n| {
                if n == 0 {
                    return Err(ConfigError::new(field, "must be at least 1"));
                }
                RateLimiter::gcra(Rate::per_minute(n)).build()
            })
            .transpose()
        };
        Ok(Arc::new(LimitsGuard {
            requests: limiter(self.requests_per_minute, "limits.requests_per_minute")?,
            tokens: limiter(self.tokens_per_minute, "limits.tokens_per_minute")?,
            max_wait: self.max_wait,
        }))
    }
}

struct LimitsGuard {
    requests: Option<RateLimiter>,
    tokens: Option<RateLimiter>,
    max_wait: Duration,
}

impl fmt::Debug for LimitsGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitsGuard")
            .field("requests", &self.requests.is_some())
            .field("tokens", &self.tokens.is_some())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl Guard for LimitsGuard {
    fn name(&self) -> &'static str {
        "llm-limits"
    }

    fn acquire<'a>(&'a self, ctx: &Context) -> Acquire<'a> {
        let tokens = ctx.cost().unwrap_or(1);
        Acquire::Wait(Box::pin(async move {
            // tokens first: the scarcer limit, and a request unit is not taken for a call
            // that the token limit refuses
            if let Some(limiter) = &self.tokens {
                limiter.acquire_n(tokens, self.max_wait).await?;
            }
            if let Some(limiter) = &self.requests {
                limiter.acquire_n(1, self.max_wait).await?;
            }
            Ok(Permit::new(self, 0))
        }))
    }

    fn on_release(&self, _token: u64, _outcome: Option<(Outcome, Duration)>) {}
}
