//! HTTP client policy (feature `http`): failures classified by type and status code, never
//! by message, the standard retry semantics, and a preset pipeline in one line.
//!
//! - [`ErrorClass`] and [`classify_error`]: what kind of failure an error is, found by
//!   walking its source chain for a [`std::io::Error`] and reading its
//!   [`ErrorKind`](std::io::ErrorKind) (hyper's and reqwest's connect errors carry one).
//! - [`status_class`]: the same for a response's status: 408 is a timeout, 429 throttling,
//!   502/503/504 transient, any other status an answer (a 500 or a 501 is a failure of the
//!   dependency that asking again does not fix).
//! - [`server_delay`]: the wait a response asks for: `Retry-After` (seconds or an
//!   HTTP-date), else an exhausted `RateLimit` member's `t`, else `X-RateLimit-Reset`.
//! - [`client`]: the standard client policy for one request's method, as a
//!   [`PipelineBuilder`] to extend or build.
//!
//! ```
//! use ::http::{Method, Response, StatusCode};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = resilient::http::client(&Method::GET).build().unwrap();
//! let mut calls = 0;
//! let response = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         let status = if calls == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         async move {
//!             Ok::<_, std::io::Error>(
//!                 Response::builder().status(status).header("retry-after", "2").body(String::new()).unwrap(),
//!             )
//!         }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!((response.status(), calls), (StatusCode::OK, 2));
//! # }
//! ```

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use ::http::{HeaderMap, Method, Response, StatusCode};

use crate::engine::outcome::{Classify, Outcome};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::ratelimit::headers::ServerLimits;
use crate::retry::{Retry, RetryBudget};
use crate::timeout::Timeout;

/// What kind of failure a call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Worth trying again soon (a 502/503/504, an interrupted call).
    Transient,
    /// The server asked the caller to slow down (429).
    Throttled,
    /// Trying again will not help (a 4xx, a 500, an invalid request, an unknown error).
    Permanent,
    /// The connection could not be made or broke (refused, reset, aborted, broken pipe).
    Connect,
    /// The name did not resolve.
    Dns,
    /// The call or the server timed out (a 408, `ErrorKind::TimedOut`).
    Timeout,
}

impl ErrorClass {
    /// Whether another attempt may succeed: everything but [`ErrorClass::Permanent`].
    ///
    /// ```
    /// use resilient::http::ErrorClass;
    /// assert!(ErrorClass::Connect.is_retryable());
    /// assert!(!ErrorClass::Permanent.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        self != ErrorClass::Permanent
    }
}

/// The class of an I/O error, by its kind.
///
/// ```
/// use resilient::http::{ErrorClass, io_class};
/// use std::io::{Error, ErrorKind};
/// assert_eq!(io_class(&Error::from(ErrorKind::ConnectionRefused)), ErrorClass::Connect);
/// assert_eq!(io_class(&Error::from(ErrorKind::TimedOut)), ErrorClass::Timeout);
/// assert_eq!(io_class(&Error::from(ErrorKind::InvalidData)), ErrorClass::Permanent);
/// ```
pub fn io_class(e: &io::Error) -> ErrorClass {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::AddrNotAvailable
        | K::UnexpectedEof => ErrorClass::Connect,
        K::TimedOut => ErrorClass::Timeout,
        K::Interrupted | K::WouldBlock => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The class of any error: the first [`std::io::Error`] in its source chain decides (an
/// HTTP client's connect error wraps one); without one, [`ErrorClass::Permanent`]. A
/// resolver failure is recognised when the I/O error's own source is a
/// [`DnsFailure`]; the message is never read.
///
/// ```
/// use resilient::http::{ErrorClass, classify_error};
/// use std::io::{Error, ErrorKind};
/// #[derive(Debug)]
/// struct ClientError(Error);
/// impl std::fmt::Display for ClientError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("client error") }
/// }
/// impl std::error::Error for ClientError {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&self.0) }
/// }
/// let e = ClientError(Error::from(ErrorKind::ConnectionReset));
/// assert_eq!(classify_error(&e), ErrorClass::Connect);
/// ```
pub fn classify_error(e: &(dyn StdError + 'static)) -> ErrorClass {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<DnsFailure>() {
            return ErrorClass::Dns;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<DnsFailure>()) {
                return ErrorClass::Dns;
            }
            return io_class(io);
        }
        next = err.source();
    }
    ErrorClass::Permanent
}

/// A marker error for a failed name resolution, for resolvers that want their failures
/// classified as [`ErrorClass::Dns`] (wrap it in the `io::Error` they return).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure {
    /// The name that did not resolve.
    pub host: String,
}

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to resolve {}", self.host)
    }
}

impl StdError for DnsFailure {}

/// The class of a response's status; `None` for an answer that is no failure of the
/// dependency (2xx, 3xx, and 4xx other than 408 and 429).
///
/// ```
/// use resilient::http::{ErrorClass, status_class};
/// use ::http::StatusCode;
/// assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), Some(ErrorClass::Throttled));
/// assert_eq!(status_class(StatusCode::BAD_GATEWAY), Some(ErrorClass::Transient));
/// assert_eq!(status_class(StatusCode::NOT_IMPLEMENTED), Some(ErrorClass::Permanent));
/// assert_eq!(status_class(StatusCode::NOT_FOUND), None);
/// ```
pub fn status_class(status: StatusCode) -> Option<ErrorClass> {
    match status.as_u16() {
        408 => Some(ErrorClass::Timeout),
        429 => Some(ErrorClass::Throttled),
        502..=504 => Some(ErrorClass::Transient),
        500..=599 => Some(ErrorClass::Permanent),
        _ => None,
    }
}

/// The wait the server asks for in `headers`: `Retry-After` (seconds or HTTP-date), else
/// the reset of an exhausted `RateLimit` member, else `X-RateLimit-Reset` when
/// `X-RateLimit-Remaining` is 0. `now` resolves dates.
///
/// ```
/// use resilient::http::server_delay;
/// use ::http::HeaderMap;
/// use std::time::{Duration, SystemTime};
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(server_delay(&h, SystemTime::now()), Some(Duration::from_secs(120)));
/// ```
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let pairs = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    ServerLimits::from_headers(pairs, now).delay()
}

/// Whether a method may be retried without the caller's say-so: GET, HEAD, OPTIONS, TRACE,
/// PUT and DELETE (RFC 9110's idempotent methods).
///
/// ```
/// use resilient::http::is_idempotent;
/// use ::http::Method;
/// assert!(is_idempotent(&Method::PUT));
/// assert!(!is_idempotent(&Method::POST));
/// ```
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The standard client policy as a classifier: a response with a status
/// [`status_class`] reports, or any error, is a failure; a failure is retried when its
/// class is retryable and the method may be retried; a response's
/// [`server_delay`] replaces the backoff.
#[derive(Debug, Clone, Copy)]
pub struct HttpPolicy {
    retry_allowed: bool,
}

impl HttpPolicy {
    /// The policy for a request with `method` (retries only for idempotent methods).
    ///
    /// ```
    /// use resilient::http::HttpPolicy;
    /// use http::Method;
    /// let _ = HttpPolicy::for_method(&Method::GET);
    /// ```
    pub fn for_method(method: &Method) -> Self {
        Self {
            retry_allowed: is_idempotent(method),
        }
    }

    /// Retries a request whatever its method (a POST with an idempotency key).
    pub fn always_retry() -> Self {
        Self {
            retry_allowed: true,
        }
    }

    fn class<B, E: StdError + 'static>(result: &Result<Response<B>, E>) -> Option<ErrorClass> {
        match result {
            Ok(response) => status_class(response.status()),
            Err(e) => Some(classify_error(e)),
        }
    }
}

impl<B: 'static, E: StdError + 'static> Classify<Response<B>, E> for HttpPolicy {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match Self::class(result) {
            Some(_) => Outcome::Failure,
            None => Outcome::Success,
        }
    }

    fn should_retry(&self, result: &Result<Response<B>, E>, _outcome: Outcome) -> bool {
        self.retry_allowed && Self::class(result).is_some_and(ErrorClass::is_retryable)
    }

    fn retry_after(&self, _attempt: u32, result: &Result<Response<B>, E>) -> Option<Duration> {
        let response = result.as_ref().ok()?;
        server_delay(response.headers(), SystemTime::now())
    }
}

/// The standard client policy for a request with `method`, in one line: 3 attempts with
/// exponential backoff from 100 ms and full jitter, retrying connect errors, timeouts,
/// 408, 429, 502, 503 and 504 (idempotent methods only), waiting as a response's
/// `Retry-After` or rate-limit headers ask (up to 60 s), 10 s per attempt and 30 s in all,
/// and a retry budget of 20% of calls (plus 10 a second). Add strategies (a breaker, a
/// limiter) before building.
///
/// ```
/// use ::http::Method;
/// // a POST is not retried unless the caller says it may be (`HttpPolicy::always_retry`)
/// let pipeline = resilient::http::client(&Method::POST).build().unwrap();
/// # let _ = pipeline;
/// ```
pub fn client(method: &Method) -> PipelineBuilder<HttpPolicy> {
    let budget = RetryBudget::builder(0.2).min_per_sec(10).build();
    let mut retry = Retry::default().attempts(3);
    if let Ok(budget) = budget {
        retry = retry.budget(budget);
    }
    Pipeline::builder()
        .name("http")
        .classify(HttpPolicy::for_method(method))
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(retry)
        .timeout(Timeout::operation(Duration::from_secs(10)))
}
