//! The `llm` pattern, registered in `resilient`'s registry at link time: any program that
//! links this crate finds it by name, with no registration call.

use std::time::Duration;

use resilient::registry::{AnyPipeline, Params};
use resilient::{ConfigError, Jitter, Pipeline, Retry, Timeout};

use crate::client::LlmPolicy;
use crate::limits::Limits;

/// The name the pattern is registered under.
///
/// ```
/// assert_eq!(resilient_llm::PATTERN, "llm");
/// ```
pub const PATTERN: &str = "llm";

/// Builds the `llm` pattern: the pipeline each provider of a [`Client`](crate::Client)
/// runs, for calls of your own that fail with [`LlmError`](crate::LlmError)s. Its
/// classifier is [`LlmPolicy`] (only transient errors retried, after the wait the provider
/// asks for); look it up with `resilient::registry().pipeline_as::<LlmPolicy>(..)`.
///
/// Parameters: `attempts` (3), `base` (`"500ms"`, the first backoff, doubling, full
/// jitter), `max_server_delay` (`"60s"`, the longest wait a provider may ask for),
/// `operation` (`"120s"`, each attempt's timeout), `requests_per_minute` and
/// `tokens_per_minute` (0: no limit; each call's cost is its tokens, see
/// [`resilient::Call::cost`]), `max_wait` (`"0s"`, how long a call may wait for the limits).
///
/// ```
/// use resilient::Error;
/// use resilient_llm::{ApiError, LlmError, LlmPolicy};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let p = resilient::registry()
///     .pipeline_as::<LlmPolicy>("llm(attempts = 2, tokens_per_minute = 1000)")
///     .unwrap();
/// let r: Result<(), Error<LlmError>> = p
///     .call()
///     .cost(400)
///     .execute(|| async { Err(LlmError::Api(ApiError::from_response(503, b"", None))) })
///     .await;
/// assert!(matches!(r, Err(Error::RetriesExhausted { attempts: 2, .. })));
/// // each attempt was charged 400 tokens: 200 are left
/// let r: Result<(), Error<LlmError>> = p.call().cost(400).execute(|| async { Ok(()) }).await;
/// assert!(matches!(r, Err(Error::RateLimited { .. })));
/// # }
/// ```
pub fn pattern(params: &Params) -> Result<AnyPipeline, ConfigError> {
    let retry = Retry::exponential(params.duration("base", Duration::from_millis(500))?)
        .attempts(params.u32("attempts", 3)?)
        .jitter(Jitter::Full)
        .max_server_delay(params.duration("max_server_delay", Duration::from_secs(60))?);
    let mut limits = Limits::new().max_wait(params.duration("max_wait", Duration::ZERO)?);
    let mut limited = false;
    match params.u64("requests_per_minute", 0)? {
        0 => {}
        n => {
            limits = limits.requests_per_minute(n);
            limited = true;
        }
    }
    match params.u64("tokens_per_minute", 0)? {
        0 => {}
        n => {
            limits = limits.tokens_per_minute(n);
            limited = true;
        }
    }
    let mut builder = Pipeline::builder().name(PATTERN).retry(retry);
    if limited {
        builder = builder.guard_arc(limits.guard()?);
    }
    Ok(builder
        .timeout(Timeout::operation(
            params.duration("operation", Duration::from_secs(120))?,
        ))
        .classify(LlmPolicy::new())
        .build()?
        .into())
}

resilient::register_pattern! {
    name: PATTERN,
    description: "LLM API calls: transient errors (connect, 408, 429 rate limits, 5xx) retried after the provider's Retry-After / x-ratelimit-reset, per-attempt request and token limits (classifier LlmPolicy)",
    params: [
        attempts = "3": "total attempts, the first included",
        base = "\"500ms\"": "first backoff, doubling, full jitter",
        max_server_delay = "\"60s\"": "longest wait a provider may ask for",
        operation = "\"120s\"": "timeout of each attempt",
        requests_per_minute = "0": "requests a minute (0: no limit)",
        tokens_per_minute = "0": "estimated tokens a minute, each call's cost (0: no limit)",
        max_wait = "\"0s\"": "how long a call may wait for the limits",
    ],
    factory: pattern,
}
