//! The errors of one request to one provider, typed by what went wrong.

use std::fmt;
use std::time::Duration;

use resilient::RetryAfter;
use resilient::http::{ErrorClass, classify_error};

/// What kind of API error a provider answered with, read from the status and the body's
/// `error.type` / `error.code` (never from the message).
///
/// ```
/// use resilient_llm::ApiErrorKind;
/// assert!(ApiErrorKind::RateLimited.is_retryable());
/// assert!(!ApiErrorKind::QuotaExhausted.is_retryable());
/// assert!(!ApiErrorKind::BadRequest.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 429 for a rate limit: the same key works again after the reset.
    RateLimited,
    /// 429 with `insufficient_quota`: the key's quota or credit is used up; waiting does
    /// not help, another key or provider may.
    QuotaExhausted,
    /// 400, 404, 409, 413, 422 and other client errors: the request itself is wrong.
    BadRequest,
    /// 401 or 403: the key was refused.
    Unauthorized,
    /// 408: the server timed out waiting for the request.
    Timeout,
    /// 5xx other than 501 and 505: the provider failed or is overloaded.
    Server,
    /// Any other status (501, 505, 1xx, 3xx).
    Other,
}

impl ApiErrorKind {
    /// The kind of an error response with `status` and the body's `error.type` /
    /// `error.code` (`insufficient_quota` tells a used-up quota from a rate limit).
    ///
    /// ```
    /// use resilient_llm::ApiErrorKind;
    /// assert_eq!(ApiErrorKind::from_status(429, Some("insufficient_quota")), ApiErrorKind::QuotaExhausted);
    /// assert_eq!(ApiErrorKind::from_status(429, Some("rate_limit_exceeded")), ApiErrorKind::RateLimited);
    /// assert_eq!(ApiErrorKind::from_status(503, None), ApiErrorKind::Server);
    /// assert_eq!(ApiErrorKind::from_status(401, None), ApiErrorKind::Unauthorized);
    /// ```
    pub fn from_status(status: u16, code: Option<&str>) -> Self {
        match status {
            429 if code == Some("insufficient_quota") => ApiErrorKind::QuotaExhausted,
            429 => ApiErrorKind::RateLimited,
            408 => ApiErrorKind::Timeout,
            401 | 403 => ApiErrorKind::Unauthorized,
            501 | 505 => ApiErrorKind::Other,
            500..=599 => ApiErrorKind::Server,
            400..=499 => ApiErrorKind::BadRequest,
            _ => ApiErrorKind::Other,
        }
    }

    /// Whether asking the same provider again may succeed: rate limits, 408 and server
    /// errors.
    ///
    /// ```
    /// use resilient_llm::ApiErrorKind;
    /// assert!(ApiErrorKind::Server.is_retryable());
    /// assert!(!ApiErrorKind::Unauthorized.is_retryable());
    /// ```
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ApiErrorKind::RateLimited | ApiErrorKind::Timeout | ApiErrorKind::Server
        )
    }
}

/// An error response from a provider: its status, kind, message and the wait it asked for.
///
/// ```
/// use resilient_llm::{ApiError, ApiErrorKind};
/// let body = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
/// let e = ApiError::from_response(429, body, None);
/// assert_eq!(e.kind, ApiErrorKind::QuotaExhausted);
/// assert_eq!(e.message, "You exceeded your current quota");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// What kind of error it is.
    pub kind: ApiErrorKind,
    /// The body's `error.message`, or the body itself when it has none.
    pub message: String,
    /// The body's `error.code` (or `error.type` when there is no code).
    pub code: Option<String>,
    /// The wait the response asked for (`retry-after-ms`, `Retry-After`,
    /// `x-ratelimit-reset-*`), see [`crate::headers::retry_delay`].
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Reads an error response: `status`, its body (OpenAI's `{"error": {..}}` shape, or
    /// anything else) and the wait its headers asked for.
    ///
    /// ```
    /// use resilient_llm::{ApiError, ApiErrorKind};
    /// use std::time::Duration;
    /// let e = ApiError::from_response(503, b"upstream overloaded", Some(Duration::from_secs(1)));
    /// assert_eq!((e.kind, e.message.as_str()), (ApiErrorKind::Server, "upstream overloaded"));
    /// assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
    /// ```
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            error
                .and_then(|e| e.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let code = field("code").or_else(|| field("type"));
        // `insufficient_quota` may come as the type with another code, or as the code
        let quota = field("type").as_deref() == Some("insufficient_quota")
            || code.as_deref() == Some("insufficient_quota");
        let kind = ApiErrorKind::from_status(status, quota.then_some("insufficient_quota"));
        let message = field("message").unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(500)
                .collect()
        });
        ApiError {
            status,
            kind,
            message,
            code,
            retry_after,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} ({:?}): {}",
            self.status, self.kind, self.message
        )?;
        if let Some(d) = self.retry_after {
            write!(f, "; retry after {d:?}")?;
        }
        Ok(())
    }
}

/// Why one request to one provider failed.
///
/// The client wraps it in [`resilient::Error`]: `Inner` when the provider failed once,
/// `RetriesExhausted` after retries, `Fallback` with every provider's failure after
/// rotation.
///
/// ```
/// use resilient_llm::LlmError;
/// use std::time::Duration;
/// let e = LlmError::FirstTokenTimeout { after: Duration::from_secs(10) };
/// assert!(e.is_retryable());
/// assert_eq!(e.to_string(), "no token within 10s of the request");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LlmError {
    /// The HTTP exchange failed (connect, reset, TLS, a body cut off).
    Transport(reqwest::Error),
    /// The provider answered with an error status.
    Api(ApiError),
    /// A streamed answer sent no token within the time-to-first-token limit.
    FirstTokenTimeout {
        /// The limit.
        after: Duration,
    },
    /// A streamed answer stalled: no chunk arrived for the idle-gap limit.
    IdleTimeout {
        /// The limit.
        after: Duration,
        /// Chunks received before the stall.
        chunks: usize,
    },
    /// A success response whose body is not a chat completion (or a stream event that is
    /// not a chunk).
    Decode(String),
    /// Structured output that could neither be repaired nor fixed by re-asking.
    InvalidOutput {
        /// Why the last answer did not parse.
        reason: String,
        /// The last answer.
        content: String,
        /// Re-asks made.
        reasks: u32,
    },
}

impl LlmError {
    /// Whether asking the same provider again may succeed: connection failures, 408, 429
    /// rate limits (not a used-up quota), 5xx and a missed first token. Never a 400, 401
    /// or 403.
    ///
    /// ```
    /// use resilient_llm::{ApiError, LlmError};
    /// assert!(LlmError::Api(ApiError::from_response(502, b"", None)).is_retryable());
    /// assert!(!LlmError::Api(ApiError::from_response(400, b"", None)).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Transport(e) => {
                e.is_connect()
                    || e.is_timeout()
                    || classify_error(e) != ErrorClass::Permanent
                    // a body cut off mid-answer
                    || e.is_body()
            }
            LlmError::Api(api) => api.kind.is_retryable(),
            LlmError::FirstTokenTimeout { .. } => true,
            LlmError::IdleTimeout { .. } | LlmError::Decode(_) | LlmError::InvalidOutput { .. } => {
                false
            }
        }
    }

    /// The API error, if the provider answered with one.
    ///
    /// ```
    /// use resilient_llm::{ApiError, LlmError};
    /// let e = LlmError::Api(ApiError::from_response(404, b"", None));
    /// assert_eq!(e.api().map(|a| a.status), Some(404));
    /// ```
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            LlmError::Api(api) => Some(api),
            _ => None,
        }
    }

    /// Whether the provider said the key's quota is used up (429 `insufficient_quota`).
    ///
    /// ```
    /// use resilient_llm::{ApiError, LlmError};
    /// let body = br#"{"error": {"type": "insufficient_quota", "message": "no credit"}}"#;
    /// assert!(LlmError::Api(ApiError::from_response(429, body, None)).is_quota_exhausted());
    /// ```
    pub fn is_quota_exhausted(&self) -> bool {
        self.api()
            .is_some_and(|a| a.kind == ApiErrorKind::QuotaExhausted)
    }
}

impl RetryAfter for LlmError {
    fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|a| a.retry_after)
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Transport(e) => write!(f, "transport: {e}"),
            LlmError::Api(e) => e.fmt(f),
            LlmError::FirstTokenTimeout { after } => {
                write!(f, "no token within {after:?} of the request")
            }
            LlmError::IdleTimeout { after, chunks } => {
                write!(
                    f,
                    "stream stalled: no chunk for {after:?} after {chunks} chunks"
                )
            }
            LlmError::Decode(msg) => write!(f, "unexpected response: {msg}"),
            LlmError::InvalidOutput { reason, reasks, .. } => write!(
                f,
                "invalid structured output after {reasks} re-asks: {reason}"
            ),
        }
    }
}

impl std::error::Error for LlmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LlmError::Transport(e) => Some(e),
            _ => None,
        }
    }
}
