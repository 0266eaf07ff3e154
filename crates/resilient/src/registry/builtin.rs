//! The built-in patterns, registered by `resilient` itself and found by name in every
//! registry.
//!
//! # `network`
//!
//! Transient network failures, classified by the error's type: an [`std::io::Error`]
//! (given directly, or found in the source chain of a boxed error) is retried when its
//! [`ErrorKind`](std::io::ErrorKind) is transient (refused, reset or aborted connections,
//! broken pipes, unreachable hosts or networks, timeouts, interruptions, unexpected end of
//! file) and not when it is permanent (not found, permission denied, invalid input or
//! data...). An error of any other type is retried if `retry_unknown` says so. Exponential
//! backoff with full jitter, bounded by a retry budget.
//!
//! | parameter | default | meaning |
//! | --- | --- | --- |
//! | `attempts` | `3` | total attempts, the first included |
//! | `base` | `"100ms"` | the first backoff (before jitter); each next one doubles |
//! | `max_delay` | `"10s"` | caps each backoff |
//! | `budget` | `0.2` | retries allowed as a fraction of calls (`0` for no budget) |
//! | `min_per_sec` | `10` | retries a second the budget always allows |
//! | `operation` | `"10s"` | timeout of each attempt |
//! | `request` | `"30s"` | timeout of the whole call |
//! | `retry_unknown` | `true` | whether an error that is no I/O error is retried |
//!
//! ```
//! use std::io::{Error, ErrorKind};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let network = resilient::registry().pipeline("network(attempts = 4)").unwrap();
//! let mut calls = 0;
//! let r = network
//!     .execute(|| {
//!         calls += 1;
//!         async move { Err::<(), _>(Error::from(ErrorKind::NotFound)) }
//!     })
//!     .await;
//! assert!(r.is_err());
//! assert_eq!(calls, 1); // a permanent kind: not retried
//! # }
//! ```
//!
//! # `http` (feature `http`)
//!
//! The standard HTTP client policy ([`HttpPolicy`](crate::http::HttpPolicy)): 408, 429,
//! 502, 503, 504 and connect errors retried (idempotent methods only, unless
//! `always_retry`), waits as `Retry-After` or rate-limit headers ask. Its classifier is
//! `HttpPolicy`: look it up with
//! `registry().pipeline_as::<resilient::http::HttpPolicy>("http")`.
//!
//! | parameter | default | meaning |
//! | --- | --- | --- |
//! | `method` | `GET` | the request method (decides whether retrying is safe) |
//! | `always_retry` | `false` | retry whatever the method (a POST with an idempotency key) |
//! | `attempts` | `3` | total attempts |
//! | `base` | `"100ms"` | the first backoff, doubling, full jitter |
//! | `max_server_delay` | `"60s"` | the longest `Retry-After` honoured; longer stops retrying |
//! | `operation` | `"10s"` | timeout of each attempt |
//! | `request` | `"30s"` | timeout of the whole call |
//!
//! # `parsing` (feature `json`)
//!
//! JSON parsing with correction, for operations whose text output (an LLM's answer, a
//! truncated response) should be JSON: output that does not parse is repaired (with
//! [`resilient::json`](crate::json)), and the call is retried (asked again) when repair
//! cannot help. Use it through [`parse_json`], which parses each attempt's text into the
//! type asked for; a function returning text through `#[resilient::pattern("parsing")]`
//! is retried when its text cannot be repaired.
//!
//! | parameter | default | meaning |
//! | --- | --- | --- |
//! | `attempts` | `3` | total attempts (the first included) |
//! | `delay` | `"0s"` | wait between attempts |
//! | `retry_errors` | `false` | whether the operation's own errors are retried too |

use std::any::Any;
use std::error::Error as StdError;
#[cfg(feature = "json")]
use std::future::Future;
use std::io;
use std::time::Duration;

use crate::engine::error::ConfigError;
use crate::engine::outcome::Outcome;
use crate::registry::classify::{AnyResult, Classifier, Judge};
use crate::registry::params::Params;
use crate::registry::pattern::AnyPipeline;
use crate::retry::{Jitter, Retry, RetryBudget};
use crate::timeout::Timeout;

/// Whether an I/O error of this kind is transient (worth another attempt).
///
/// ```
/// use resilient::registry::builtin::is_transient;
/// use std::io::ErrorKind;
/// assert!(is_transient(ErrorKind::ConnectionReset));
/// assert!(!is_transient(ErrorKind::PermissionDenied));
/// ```
pub fn is_transient(kind: io::ErrorKind) -> bool {
    use io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::TimedOut
            | K::Interrupted
            | K::WouldBlock
            | K::UnexpectedEof
            | K::ResourceBusy
    )
}

/// The first I/O error in `e`'s source chain, `e` included.
fn io_in<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        next = err.source();
    }
    None
}

/// The I/O error an error of unknown type is or carries: an `io::Error`, or one in the
/// chain of a boxed error. `None` for other types.
fn io_of(e: &dyn Any) -> Option<Option<&io::Error>> {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return Some(Some(io));
    }
    if let Some(b) = e.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
        return Some(io_in(&**b));
    }
    if let Some(b) = e.downcast_ref::<Box<dyn StdError>>() {
        return Some(io_in(&**b));
    }
    None
}

/// The `network` pattern's judge.
struct Network {
    retry_unknown: bool,
}

impl Judge for Network {
    fn classify(&self, result: AnyResult<'_>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    fn should_retry(&self, result: AnyResult<'_>, outcome: Outcome) -> bool {
        if outcome != Outcome::Failure {
            return false;
        }
        match result {
            Ok(_) => true,
            Err(e) => match io_of(e) {
                Some(Some(io)) => is_transient(io.kind()),
                // a boxed error without an I/O error in it, or another type
                Some(None) | None => self.retry_unknown,
            },
        }
    }
}

fn network(p: &Params) -> Result<AnyPipeline, ConfigError> {
    let attempts = p.u32("attempts", 3)?;
    let base = p.duration("base", Duration::from_millis(100))?;
    let max_delay = p.duration("max_delay", Duration::from_secs(10))?;
    let ratio = p.f64("budget", 0.2)?;
    let min_per_sec = p.u32("min_per_sec", 10)?;
    let operation = p.duration("operation", Duration::from_secs(10))?;
    let request = p.duration("request", Duration::from_secs(30))?;
    let retry_unknown = p.bool("retry_unknown", true)?;
    let mut retry = Retry::exponential(base)
        .attempts(attempts)
        .jitter(Jitter::Full)
        .max_delay(max_delay);
    if ratio > 0.0 {
        retry = retry.budget(
            RetryBudget::builder(ratio)
                .min_per_sec(min_per_sec)
                .build()?,
        );
    }
    Ok(crate::pipeline::Pipeline::builder()
        .name("network")
        .classify(Classifier::new(Network { retry_unknown }))
        .timeout(Timeout::request(request))
        .retry(retry)
        .timeout(Timeout::operation(operation))
        .build()?
        .into())
}

crate::register_pattern! {
    name: "network",
    description: "transient network errors (by io::ErrorKind) retried with exponential backoff, full jitter and a budget",
    params: [
        attempts = "3": "total attempts, the first included",
        base = "\"100ms\"": "first backoff, doubling",
        max_delay = "\"10s\"": "caps each backoff",
        budget = "0.2": "retries as a fraction of calls (0: no budget)",
        min_per_sec = "10": "retries a second the budget always allows",
        operation = "\"10s\"": "timeout of each attempt",
        request = "\"30s\"": "timeout of the whole call",
        retry_unknown = "true": "retry errors that are no I/O error",
    ],
    factory: network,
}

#[cfg(feature = "http")]
fn http(p: &Params) -> Result<AnyPipeline, ConfigError> {
    use crate::http::HttpPolicy;
    let method = p.str("method", "GET")?;
    let method: ::http::Method = method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ConfigError::new("method", format!("`{method}` is not an HTTP method")))?;
    let policy = if p.bool("always_retry", false)? {
        HttpPolicy::always_retry()
    } else {
        HttpPolicy::for_method(&method)
    };
    let retry = Retry::exponential(p.duration("base", Duration::from_millis(100))?)
        .attempts(p.u32("attempts", 3)?)
        .jitter(Jitter::Full)
        .max_server_delay(p.duration("max_server_delay", Duration::from_secs(60))?)
        .budget(RetryBudget::builder(0.2).min_per_sec(10).build()?);
    Ok(crate::pipeline::Pipeline::builder()
        .name("http")
        .classify(policy)
        .timeout(Timeout::request(
            p.duration("request", Duration::from_secs(30))?,
        ))
        .retry(retry)
        .timeout(Timeout::operation(
            p.duration("operation", Duration::from_secs(10))?,
        ))
        .build()?
        .into())
}

#[cfg(feature = "http")]
crate::register_pattern! {
    name: "http",
    description: "HTTP client policy: 408/429/502/503/504 and connect errors retried, Retry-After honoured (classifier HttpPolicy)",
    params: [
        method = "GET": "request method (only idempotent ones are retried)",
        always_retry = "false": "retry whatever the method",
        attempts = "3": "total attempts",
        base = "\"100ms\"": "first backoff, doubling, full jitter",
        max_server_delay = "\"60s\"": "longest Retry-After honoured",
        operation = "\"10s\"": "timeout of each attempt",
        request = "\"30s\"": "timeout of the whole call",
    ],
    factory: http,
}

/// Why a [`parse_json`] attempt failed: the operation's own error, or text that is not
/// JSON of the type asked for even after repair.
///
/// ```
/// use resilient::registry::builtin::ParsingError;
/// let e = ParsingError::Call("boom".into());
/// assert_eq!(e.to_string(), "boom");
/// ```
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Debug)]
#[non_exhaustive]
pub enum ParsingError {
    /// The operation failed.
    Call(crate::engine::error::BoxError),
    /// The output did not parse, even repaired.
    Unparseable {
        /// The text the operation returned.
        text: String,
        /// Why it did not parse.
        error: resilient_json::ParseError,
    },
}

#[cfg(feature = "json")]
impl std::fmt::Display for ParsingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParsingError::Call(e) => write!(f, "{e}"),
            ParsingError::Unparseable { error, .. } => write!(f, "unparseable output: {error}"),
        }
    }
}

#[cfg(feature = "json")]
impl StdError for ParsingError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ParsingError::Call(e) => e.source(),
            ParsingError::Unparseable { error, .. } => Some(error),
        }
    }
}

/// The `parsing` pattern's judge.
#[cfg(feature = "json")]
struct Parsing {
    retry_errors: bool,
}

#[cfg(feature = "json")]
impl Judge for Parsing {
    fn classify(&self, result: AnyResult<'_>) -> Outcome {
        match result {
            Ok(v) => {
                let text = v
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| v.downcast_ref::<&'static str>().copied());
                match text {
                    // text that repair cannot turn into JSON: ask again
                    Some(t) if resilient_json::repair(t).is_err() => Outcome::Failure,
                    _ => Outcome::Success,
                }
            }
            Err(_) => Outcome::Failure,
        }
    }

    fn should_retry(&self, result: AnyResult<'_>, outcome: Outcome) -> bool {
        if outcome != Outcome::Failure {
            return false;
        }
        match result {
            Ok(_) => true,
            Err(e) => {
                matches!(
                    e.downcast_ref::<ParsingError>(),
                    Some(ParsingError::Unparseable { .. })
                ) || e.is::<resilient_json::ParseError>()
                    || self.retry_errors
            }
        }
    }
}

#[cfg(feature = "json")]
fn parsing(p: &Params) -> Result<AnyPipeline, ConfigError> {
    let attempts = p.u32("attempts", 3)?;
    let delay = p.duration("delay", Duration::ZERO)?;
    let retry_errors = p.bool("retry_errors", false)?;
    Ok(crate::pipeline::Pipeline::builder()
        .name("parsing")
        .classify(Classifier::new(Parsing { retry_errors }))
        .retry(Retry::constant(delay).attempts(attempts))
        .build()?
        .into())
}

#[cfg(feature = "json")]
crate::register_pattern! {
    name: "parsing",
    description: "JSON output repaired when malformed, the call retried when repair cannot help",
    params: [
        attempts = "3": "total attempts, the first included",
        delay = "\"0s\"": "wait between attempts",
        retry_errors = "false": "retry the operation's own errors too",
    ],
    factory: parsing,
}

/// Runs `op`, which produces text that should be JSON, through `pipeline` (the `parsing`
/// pattern's, or any [`NamedPipeline`](super::NamedPipeline)) and parses each attempt's
/// text into `T`, repairing it when malformed (see [`resilient::json::parse`](crate::json::parse)).
/// An attempt whose text cannot be made into a `T` fails with
/// [`ParsingError::Unparseable`], which the `parsing` pattern retries.
///
/// ```
/// use resilient::registry::builtin::parse_json;
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Answer { city: String }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pipeline = resilient::registry().pipeline("parsing").unwrap();
/// let mut calls = 0;
/// let answer: Answer = parse_json(&pipeline, || {
///     calls += 1;
///     // the first answer is no JSON at all; the second has single quotes, repaired
///     let text = if calls == 1 { "Sorry, I cannot" } else { "{city: 'Paris'" };
///     async move { Ok::<_, std::io::Error>(text.to_owned()) }
/// })
/// .await
/// .unwrap();
/// assert_eq!((answer, calls), (Answer { city: "Paris".into() }, 2));
/// # }
/// ```
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub async fn parse_json<T, E, F, Fut>(
    pipeline: &super::NamedPipeline,
    mut op: F,
) -> Result<T, crate::engine::error::Error<ParsingError>>
where
    T: serde::de::DeserializeOwned + 'static,
    E: Into<crate::engine::error::BoxError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, E>>,
{
    pipeline
        .execute(|| {
            let call = op();
            async move {
                let text = call.await.map_err(|e| ParsingError::Call(e.into()))?;
                resilient_json::parse::<T>(&text)
                    .map_err(|error| ParsingError::Unparseable { text, error })
            }
        })
        .await
}
