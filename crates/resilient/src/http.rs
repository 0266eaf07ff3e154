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
//! - [`pool`]: after a connection breaks, the next attempt gets a fresh connection
//!   (eviction hooks for deadpool/bb8-style pools, a rebuilt client for reqwest/hyper).
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

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod dns;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod server;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod attempts;

pub mod pool;

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

/// The class of any error, by the types in its source chain (the message is never read):
/// a [`DnsFailure`] is [`ErrorClass::Dns`]; with feature `reqwest` a `reqwest::Error`, and
/// with feature `hyper` a `hyper::Error`, is classified by its own flags (timeout,
/// connect, a connection closed mid-message); otherwise the first [`std::io::Error`]
/// decides (an HTTP client's connect error wraps one) by its kind, or
/// [`ErrorClass::Dns`] when its own source is a [`DnsFailure`]. Without any of these,
/// [`ErrorClass::Permanent`].
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
        #[cfg(feature = "reqwest")]
        if let Some(e) = err.downcast_ref::<reqwest::Error>() {
            return reqwest_class(e);
        }
        #[cfg(feature = "hyper")]
        if let Some(class) = err.downcast_ref::<hyper::Error>().and_then(hyper_class) {
            return class;
        }
        if let Some(class) = err.downcast_ref::<NotReplayable>().map(|e| e.class) {
            return class;
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
    standard("http", HttpPolicy::for_method(method), 3)
}

/// The presets' pipeline: `attempts` with exponential backoff from 100 ms and full jitter,
/// a 20% retry budget (plus 10 a second), 10 s per attempt and 30 s in all.
fn standard<C>(name: &'static str, classify: C, attempts: u32) -> PipelineBuilder<C> {
    let budget = RetryBudget::builder(0.2).min_per_sec(10).build();
    let mut retry = Retry::default().attempts(attempts);
    if let Ok(budget) = budget {
        retry = retry.budget(budget);
    }
    Pipeline::builder()
        .name(name)
        .classify(classify)
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(retry)
        .timeout(Timeout::operation(Duration::from_secs(10)))
}

/// Errors (and status codes) that know their own [`ErrorClass`]: implement it for your own
/// error types to have them classified by type. `None` means "no failure" (a success
/// status or gRPC code); an error always has a class.
///
/// Implemented for [`std::io::Error`] (by its kind), [`StatusCode`] ([`status_class`]),
/// [`GrpcCode`] ([`grpc_status_class`]), [`DnsFailure`], [`NotReplayable`], and with
/// features `hyper` and `reqwest` for `hyper::Error` and `reqwest::Error`.
///
/// ```
/// use resilient::http::{ClassifyError, ErrorClass};
/// enum DbError { Deadlock, Constraint }
/// impl ClassifyError for DbError {
///     fn error_class(&self) -> Option<ErrorClass> {
///         Some(match self {
///             DbError::Deadlock => ErrorClass::Transient,
///             DbError::Constraint => ErrorClass::Permanent,
///         })
///     }
/// }
/// assert_eq!(DbError::Deadlock.error_class(), Some(ErrorClass::Transient));
/// assert_eq!(std::io::Error::from(std::io::ErrorKind::TimedOut).error_class(), Some(ErrorClass::Timeout));
/// assert_eq!(::http::StatusCode::OK.error_class(), None);
/// ```
pub trait ClassifyError {
    /// This failure's class, `None` if it is no failure.
    fn error_class(&self) -> Option<ErrorClass>;
}

impl ClassifyError for io::Error {
    fn error_class(&self) -> Option<ErrorClass> {
        Some(classify_error(self))
    }
}

impl ClassifyError for StatusCode {
    fn error_class(&self) -> Option<ErrorClass> {
        status_class(*self)
    }
}

impl ClassifyError for DnsFailure {
    fn error_class(&self) -> Option<ErrorClass> {
        Some(ErrorClass::Dns)
    }
}

impl ClassifyError for NotReplayable {
    fn error_class(&self) -> Option<ErrorClass> {
        Some(self.class)
    }
}

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
impl ClassifyError for hyper::Error {
    fn error_class(&self) -> Option<ErrorClass> {
        Some(classify_error(self))
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl ClassifyError for reqwest::Error {
    fn error_class(&self) -> Option<ErrorClass> {
        Some(reqwest_class(self))
    }
}

/// hyper's own verdict, when its flags give one (else its source chain decides).
#[cfg(feature = "hyper")]
fn hyper_class(e: &hyper::Error) -> Option<ErrorClass> {
    if e.is_timeout() {
        Some(ErrorClass::Timeout)
    } else if e.is_incomplete_message()
        || e.is_canceled()
        || e.is_closed()
        || e.is_body_write_aborted()
    {
        // the connection went away under the message
        Some(ErrorClass::Connect)
    } else if e.is_parse() || e.is_user() {
        Some(ErrorClass::Permanent)
    } else {
        None
    }
}

/// reqwest's verdict: its timeout, status and connect flags, refined by its source chain.
#[cfg(feature = "reqwest")]
fn reqwest_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() {
        return ErrorClass::Timeout;
    }
    if let Some(status) = e.status() {
        return status_class(status).unwrap_or(ErrorClass::Permanent);
    }
    let inner = e.source().map(classify_error);
    if e.is_connect() {
        match inner {
            Some(class @ (ErrorClass::Dns | ErrorClass::Timeout)) => class,
            _ => ErrorClass::Connect,
        }
    } else if e.is_request() {
        inner.unwrap_or(ErrorClass::Permanent)
    } else {
        // building, redirects, body and decoding errors: asking again will not help
        ErrorClass::Permanent
    }
}

/// A gRPC status code (`grpc-status`), classified by [`grpc_status_class`].
///
/// ```
/// use resilient::http::{ClassifyError, ErrorClass, GrpcCode};
/// assert_eq!(GrpcCode::UNAVAILABLE.error_class(), Some(ErrorClass::Transient));
/// assert_eq!(GrpcCode(0).error_class(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCode(pub i32);

impl GrpcCode {
    /// `OK` (0).
    pub const OK: GrpcCode = GrpcCode(0);
    /// `CANCELLED` (1).
    pub const CANCELLED: GrpcCode = GrpcCode(1);
    /// `DEADLINE_EXCEEDED` (4).
    pub const DEADLINE_EXCEEDED: GrpcCode = GrpcCode(4);
    /// `RESOURCE_EXHAUSTED` (8).
    pub const RESOURCE_EXHAUSTED: GrpcCode = GrpcCode(8);
    /// `ABORTED` (10).
    pub const ABORTED: GrpcCode = GrpcCode(10);
    /// `INTERNAL` (13).
    pub const INTERNAL: GrpcCode = GrpcCode(13);
    /// `UNAVAILABLE` (14).
    pub const UNAVAILABLE: GrpcCode = GrpcCode(14);
}

impl ClassifyError for GrpcCode {
    fn error_class(&self) -> Option<ErrorClass> {
        grpc_status_class(self.0)
    }
}

/// The class of a gRPC status code: `OK` is no failure, `UNAVAILABLE` (14) transient,
/// `DEADLINE_EXCEEDED` (4) a timeout, `RESOURCE_EXHAUSTED` (8) throttling, and every other
/// code (`CANCELLED`, `INVALID_ARGUMENT`, `INTERNAL`, unknown codes...) permanent: gRPC's
/// retry design retries only the codes a service lists, and these three are the ones that
/// mean "not now" rather than "not this request".
///
/// ```
/// use resilient::http::{ErrorClass, grpc_status_class};
/// assert_eq!(grpc_status_class(14), Some(ErrorClass::Transient));
/// assert_eq!(grpc_status_class(4), Some(ErrorClass::Timeout));
/// assert_eq!(grpc_status_class(8), Some(ErrorClass::Throttled));
/// assert_eq!(grpc_status_class(3), Some(ErrorClass::Permanent));
/// assert_eq!(grpc_status_class(0), None);
/// ```
pub fn grpc_status_class(code: i32) -> Option<ErrorClass> {
    match code {
        0 => None,
        14 => Some(ErrorClass::Transient),
        4 => Some(ErrorClass::Timeout),
        8 => Some(ErrorClass::Throttled),
        _ => Some(ErrorClass::Permanent),
    }
}

/// The gRPC status a response carries in its headers (`grpc-status`, as in a
/// trailers-only response), if any.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What a response's `grpc-retry-pushback-ms` says: `Some(Ok(delay))` to wait,
/// `Some(Err(()))` for "do not retry" (a negative or unreadable value, as gRPC's retry
/// design specifies), `None` without the header.
fn grpc_pushback(headers: &HeaderMap) -> Option<Result<Duration, ()>> {
    let value = headers.get("grpc-retry-pushback-ms")?;
    let ms = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok());
    Some(match ms {
        Some(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(()),
    })
}

/// The gRPC client policy as a classifier: a response whose `grpc-status` header (a
/// trailers-only response, or an HTTP status the gRPC spec maps: 429 and 502-504 are
/// `UNAVAILABLE`) has a failing code, or any error, is a failure; `UNAVAILABLE`,
/// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` and connection-level errors are retried;
/// `grpc-retry-pushback-ms` replaces the backoff, and a negative or invalid pushback stops
/// the retries.
///
/// ```
/// use resilient::{Classify, Outcome};
/// use resilient::http::GrpcPolicy;
/// let r: Result<::http::Response<()>, std::io::Error> = Ok(
///     ::http::Response::builder().header("grpc-status", "14").header("grpc-retry-pushback-ms", "250").body(()).unwrap(),
/// );
/// assert_eq!(GrpcPolicy.classify(&r), Outcome::Failure);
/// assert!(GrpcPolicy.should_retry(&r, Outcome::Failure));
/// assert_eq!(GrpcPolicy.retry_after(1, &r), Some(std::time::Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcPolicy;

impl GrpcPolicy {
    fn class<B, E: StdError + 'static>(result: &Result<Response<B>, E>) -> Option<ErrorClass> {
        match result {
            Ok(response) => match grpc_status(response.headers()) {
                Some(code) => grpc_status_class(code),
                // gRPC maps these HTTP statuses to UNAVAILABLE; other non-200s are answers
                None => match response.status().as_u16() {
                    429 | 502..=504 => Some(ErrorClass::Transient),
                    200 => None,
                    _ => Some(ErrorClass::Permanent),
                },
            },
            Err(e) => Some(classify_error(e)),
        }
    }
}

impl<B: 'static, E: StdError + 'static> Classify<Response<B>, E> for GrpcPolicy {
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match Self::class(result) {
            Some(_) => Outcome::Failure,
            None => Outcome::Success,
        }
    }

    fn should_retry(&self, result: &Result<Response<B>, E>, _outcome: Outcome) -> bool {
        if let Ok(response) = result
            && let Some(Err(())) = grpc_pushback(response.headers())
        {
            return false;
        }
        Self::class(result).is_some_and(ErrorClass::is_retryable)
    }

    fn retry_after(&self, _attempt: u32, result: &Result<Response<B>, E>) -> Option<Duration> {
        grpc_pushback(result.as_ref().ok()?.headers())?.ok()
    }
}

/// The gRPC client preset: 5 attempts with exponential backoff from 100 ms and full
/// jitter, retrying `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` and
/// connection errors, honouring `grpc-retry-pushback-ms` ([`GrpcPolicy`]), 10 s per
/// attempt and 30 s in all, and a retry budget of 20% of calls (plus 10 a second).
///
/// ```
/// let pipeline = resilient::http::grpc().build().unwrap();
/// # let _ = pipeline;
/// ```
pub fn grpc() -> PipelineBuilder<GrpcPolicy> {
    standard("grpc", GrpcPolicy, 5)
}

/// A request that failed in a way worth retrying but could not be sent again: its body is
/// a stream (not replayable), so the retry was refused. `class` is the failure's class;
/// the failure itself is the [`source`](StdError::source), when it was an error.
///
/// ```
/// use resilient::http::{ErrorClass, NotReplayable};
/// let e = NotReplayable::new(ErrorClass::Transient, Some(::http::StatusCode::SERVICE_UNAVAILABLE), None);
/// assert_eq!(e.class, ErrorClass::Transient);
/// assert!(e.to_string().contains("cannot be replayed"));
/// ```
#[derive(Debug)]
pub struct NotReplayable {
    /// The class of the failure that would have been retried.
    pub class: ErrorClass,
    /// The response's status, when the failure was a response.
    pub status: Option<StatusCode>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl NotReplayable {
    /// The refusal of a retry after a failure of `class`: a response with `status`, or the
    /// error `source`.
    ///
    /// ```
    /// use resilient::http::{ErrorClass, NotReplayable};
    /// let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// let e = NotReplayable::new(ErrorClass::Connect, None, Some(Box::new(io)));
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn new(
        class: ErrorClass,
        status: Option<StatusCode>,
        source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            class,
            status,
            source,
        }
    }
}

impl std::fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request failed ({:?}{}) and cannot be replayed: its body is a stream, so it was not retried",
            self.class,
            match self.status {
                Some(s) => format!(", status {}", s.as_u16()),
                None => String::new(),
            }
        )
    }
}

impl StdError for NotReplayable {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
