//! The error every pipeline returns, and configuration errors.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::engine::guard::RateLimitInfo;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutScope {
    /// One attempt took longer than the operation timeout.
    Operation,
    /// The whole logical call (attempts, backoff waits, queueing) took longer than the
    /// request timeout.
    Request,
    /// A deadline inherited from an enclosing pipeline ran out first.
    Inherited,
}

impl fmt::Display for TimeoutScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutScope::Operation => "operation",
            TimeoutScope::Request => "request",
            TimeoutScope::Inherited => "inherited deadline",
        })
    }
}

/// The result of running an operation through a pipeline: the caller's own error `E`, or
/// what a strategy decided.
///
/// ```
/// use resilient::Error;
/// use std::time::Duration;
///
/// let e: Error<std::io::Error> = Error::RateLimited { retry_after: Some(Duration::from_secs(2)), info: None };
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// assert!(e.is_transient());
/// assert_eq!(e.to_string(), "rate limited; retry after 2s");
/// ```
///
/// Your own error, whether the call failed once (`Inner`) or after retries
/// (`RetriesExhausted`), comes out of [`Error::inner`] / [`Error::into_inner`]; match the
/// other variants for what a strategy decided:
///
/// ```
/// use resilient::{Error, Pipeline, Retry};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let p = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
/// let err = p.execute(|| async { Err::<(), _>("refused") }).await.unwrap_err();
/// match err.inner() {
///     Some(mine) => assert_eq!(*mine, "refused"),
///     None if err.is_transient() => { /* a timeout or a rejection: try later */ }
///     None => { /* cancelled */ }
/// }
/// assert_eq!(err.clone(), err); // Clone and PartialEq when `E` has them
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The operation failed with its own error and no retry was made (retry not configured,
    /// or the error was classified as not worth retrying). Transparent: it displays as `E`
    /// and its source is `E`'s source.
    Inner(E),
    /// Every permitted attempt failed; `last` is the final attempt's error. Displays as
    /// "gave up after N attempts"; `last` is its source.
    RetriesExhausted {
        /// Attempts made, including the first.
        attempts: u32,
        /// The error of the last attempt.
        last: E,
    },
    /// A timeout fired.
    Timeout {
        /// Which timeout.
        scope: TimeoutScope,
        /// Time spent in that scope.
        elapsed: Duration,
    },
    /// The caller cancelled the call (through its cancellation token).
    Cancelled,
    /// A circuit breaker is open and rejected the call.
    CircuitOpen {
        /// How long the breaker is expected to stay open, if known.
        retry_after: Option<Duration>,
    },
    /// A rate limiter rejected the call.
    RateLimited {
        /// When capacity for this call is expected, if known.
        retry_after: Option<Duration>,
        /// The limit's state when it rejected (limit, remaining, reset, policy), if the
        /// limiter reports it: enough to write `RateLimit` headers (see
        /// [`Error::rate_limit_info`]).
        info: Option<Box<RateLimitInfo>>,
    },
    /// A bulkhead had no free slot (and no queue room, or the queue wait ran out).
    BulkheadFull,
    /// A custom guard rejected the call.
    Rejected {
        /// The guard's name.
        guard: &'static str,
        /// When to try again, if the guard knows.
        retry_after: Option<Duration>,
    },
    /// A retry was refused by the retry's cost budget (`resilient::retry::CostBudget`): the
    /// call, or its tenant, has spent what it may on retries for now. `last` is how the last
    /// attempt ended; it is the [`source`](StdError::source).
    CostBudgetExhausted {
        /// Attempts made, including the first.
        attempts: u32,
        /// What the refused retry would have cost.
        cost: u64,
        /// The last attempt's failure (the caller's error, a timeout or a rejection).
        last: Box<Error<E>>,
    },
    /// A health check says the dependency is unhealthy: the call was rejected fast,
    /// without running (see `resilient::health::HealthAware`).
    Unhealthy {
        /// Time until the next health probe, if known.
        retry_after: Option<Duration>,
    },
    /// A fallback chain failed: the primary call and every alternative, in order (see
    /// `resilient::fallback`). A caller's own error handed on to the next alternative is
    /// recorded as `Rejected { guard: "fallback: ..", .. }` in its place; the last failure
    /// is kept whole.
    Fallback {
        /// Every failure, the primary's first and the last alternative's last.
        failures: Vec<Error<E>>,
    },
}

impl<E> Error<E> {
    /// The caller's own error, if this is one: from [`Error::Inner`] or the last attempt's
    /// in [`Error::RetriesExhausted`].
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Inner(e) | Error::RetriesExhausted { last: e, .. } => Some(e),
            Error::Fallback { failures } => failures.last().and_then(Error::inner),
            Error::CostBudgetExhausted { last, .. } => last.inner(),
            _ => None,
        }
    }

    /// Consumes `self`, returning the caller's own error if this is one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) | Error::RetriesExhausted { last: e, .. } => Some(e),
            Error::Fallback { mut failures } => failures.pop().and_then(Error::into_inner),
            Error::CostBudgetExhausted { last, .. } => last.into_inner(),
            _ => None,
        }
    }

    /// The rate limiter's state when it rejected the call (for `RateLimit` headers), if
    /// this is [`Error::RateLimited`] and the limiter reported it.
    pub fn rate_limit_info(&self) -> Option<&RateLimitInfo> {
        match self {
            Error::RateLimited { info, .. } => info.as_deref(),
            _ => None,
        }
    }

    /// How long to wait before trying again, when a strategy knows it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_after }
            | Error::RateLimited { retry_after, .. }
            | Error::Rejected { retry_after, .. }
            | Error::Unhealthy { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying the same call later may succeed: timeouts and rejections by a
    /// strategy are transient; the caller's own errors and cancellation are not judged here.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::CircuitOpen { .. }
                | Error::RateLimited { .. }
                | Error::BulkheadFull
                | Error::Rejected { .. }
                | Error::CostBudgetExhausted { .. }
                | Error::Unhealthy { .. }
        )
    }

    /// Whether a timeout (of any scope) ended the call.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Maps the caller's error type.
    pub fn map_inner<F, G: FnOnce(E) -> F>(self, f: G) -> Error<F> {
        match self {
            Error::Inner(e) => Error::Inner(f(e)),
            Error::RetriesExhausted { attempts, last } => Error::RetriesExhausted {
                attempts,
                last: f(last),
            },
            Error::Fallback { mut failures } => {
                // only the last failure holds the caller's error (a fallback chain records
                // the others without it)
                let last = failures.pop().map(|e| e.map_inner(f));
                let mut mapped: Vec<Error<F>> =
                    failures.into_iter().map(Error::without_inner).collect();
                mapped.extend(last);
                Error::Fallback { failures: mapped }
            }
            Error::CostBudgetExhausted {
                attempts,
                cost,
                last,
            } => Error::CostBudgetExhausted {
                attempts,
                cost,
                last: Box::new(last.map_inner(f)),
            },
            verdict => verdict.without_inner(),
        }
    }

    /// A copy of a strategy's verdict (a timeout, a rejection, a cancellation), which holds
    /// no caller's error and so stands for any error type; `None` for the caller's own
    /// error (`Inner`, `RetriesExhausted`, `Fallback`).
    pub(crate) fn verdict<F>(&self) -> Option<Error<F>> {
        Some(match self {
            Error::Inner(_) | Error::RetriesExhausted { .. } | Error::Fallback { .. } => {
                return None;
            }
            Error::Timeout { scope, elapsed } => Error::Timeout {
                scope: *scope,
                elapsed: *elapsed,
            },
            Error::Cancelled => Error::Cancelled,
            Error::CircuitOpen { retry_after } => Error::CircuitOpen {
                retry_after: *retry_after,
            },
            Error::RateLimited { retry_after, info } => Error::RateLimited {
                retry_after: *retry_after,
                info: info.clone(),
            },
            Error::BulkheadFull => Error::BulkheadFull,
            Error::Rejected { guard, retry_after } => Error::Rejected {
                guard,
                retry_after: *retry_after,
            },
            Error::CostBudgetExhausted {
                attempts,
                cost,
                last,
            } => Error::CostBudgetExhausted {
                attempts: *attempts,
                cost: *cost,
                last: Box::new(last.verdict()?),
            },
            Error::Unhealthy { retry_after } => Error::Unhealthy {
                retry_after: *retry_after,
            },
        })
    }

    /// This error with the caller's error dropped (recorded as a fallback rejection), so
    /// it can stand for any error type. Strategy verdicts are kept as they are.
    pub(crate) fn without_inner<F>(self) -> Error<F> {
        self.verdict().unwrap_or(Error::Rejected {
            guard: HANDED_ON,
            retry_after: None,
        })
    }
}

/// How a fallback chain records a caller's error it handed on to the next alternative.
pub(crate) const HANDED_ON: &str =
    "fallback: the caller's error was handed to the next alternative";

impl<E> From<crate::engine::guard::Rejection> for Error<E> {
    fn from(r: crate::engine::guard::Rejection) -> Self {
        match r {
            crate::engine::guard::Rejection::CircuitOpen { retry_after } => {
                Error::CircuitOpen { retry_after }
            }
            crate::engine::guard::Rejection::RateLimited { retry_after, info } => {
                Error::RateLimited { retry_after, info }
            }
            crate::engine::guard::Rejection::BulkheadFull => Error::BulkheadFull,
            crate::engine::guard::Rejection::Other { guard, retry_after } => {
                Error::Rejected { guard, retry_after }
            }
            crate::engine::guard::Rejection::Unhealthy { retry_after } => {
                Error::Unhealthy { retry_after }
            }
        }
    }
}

fn write_after(f: &mut fmt::Formatter<'_>, what: &str, after: &Option<Duration>) -> fmt::Result {
    match after {
        Some(d) => write!(f, "{what}; retry after {d:?}"),
        None => f.write_str(what),
    }
}

impl<E> Error<Error<E>> {
    /// Merges the error of a pipeline nested in another into one level.
    ///
    /// The caller's error comes out as `Inner`, or as `RetriesExhausted` if either pipeline
    /// gave up retrying it (with the outer pipeline's attempt count when the outer one
    /// did); a strategy's verdict (a timeout, an open circuit, ...) comes out as is,
    /// whichever pipeline reached it.
    ///
    /// ```
    /// use resilient::{Error, TimeoutScope};
    /// use std::time::Duration;
    ///
    /// let nested: Error<Error<&str>> = Error::Inner(Error::Timeout {
    ///     scope: TimeoutScope::Inherited,
    ///     elapsed: Duration::from_secs(1),
    /// });
    /// assert!(matches!(nested.flatten(), Error::Timeout { .. }));
    /// let nested: Error<Error<&str>> = Error::Inner(Error::Inner("refused"));
    /// assert!(matches!(nested.flatten(), Error::Inner("refused")));
    /// ```
    pub fn flatten(self) -> Error<E> {
        match self {
            Error::Inner(inner) => inner,
            Error::RetriesExhausted { attempts, last } => match last {
                Error::Inner(e) | Error::RetriesExhausted { last: e, .. } => {
                    Error::RetriesExhausted { attempts, last: e }
                }
                verdict => verdict,
            },
            Error::Fallback { failures } => Error::Fallback {
                failures: failures.into_iter().map(Error::flatten).collect(),
            },
            Error::CostBudgetExhausted {
                attempts,
                cost,
                last,
            } => Error::CostBudgetExhausted {
                attempts,
                cost,
                last: Box::new(last.flatten()),
            },
            verdict => verdict.without_inner(),
        }
    }
}

/// `Inner` is transparent: it displays as the caller's error and passes on that error's
/// source. `RetriesExhausted` says how many attempts were made and returns the last error
/// as its [`source`](StdError::source), so that reporters walking the chain (anyhow's
/// `{:#}`, `tracing`'s error fields) print each message once. To print the last error with
/// it, walk the chain, or match `RetriesExhausted { last, .. }`.
impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Inner(e) => e.fmt(f),
            Error::RetriesExhausted { attempts, .. } => {
                write!(f, "gave up after {attempts} attempts")
            }
            Error::Timeout { scope, elapsed } => {
                write!(f, "{scope} timeout after {elapsed:?}")
            }
            Error::Cancelled => f.write_str("cancelled by the caller"),
            Error::CircuitOpen { retry_after } => write_after(f, "circuit open", retry_after),
            Error::RateLimited { retry_after, .. } => write_after(f, "rate limited", retry_after),
            Error::BulkheadFull => f.write_str("bulkhead full"),
            Error::Rejected { guard, retry_after } => {
                write_after(f, &format!("rejected by {guard}"), retry_after)
            }
            Error::CostBudgetExhausted { attempts, cost, .. } => write!(
                f,
                "retry cost budget exhausted after {attempts} attempts (the next retry would cost {cost})"
            ),
            Error::Unhealthy { retry_after } => {
                write_after(f, "unhealthy (health check)", retry_after)
            }
            Error::Fallback { failures } => write!(
                f,
                "the call and its {} fallback alternatives failed",
                failures.len().saturating_sub(1)
            ),
        }
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Inner(e) => e.source(),
            Error::RetriesExhausted { last, .. } => Some(last),
            Error::Fallback { failures } => failures.last().map(|e| e as &(dyn StdError + 'static)),
            Error::CostBudgetExhausted { last, .. } => Some(&**last),
            _ => None,
        }
    }
}

/// A boxed, thread-safe error, as tower stacks and many libraries pass them around.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A [`BoxError`] that is itself a [`std::error::Error`] (a `Box<dyn Error>` is not), so
/// that `Error<BoxedError>` is one too. Transparent: it displays as the boxed error and
/// passes on its source.
///
/// Made by [`Error::into_boxed`]; downcast a [`BoxError`] to `Error<BoxedError>` to see
/// which strategy stopped a call.
#[derive(Debug)]
pub struct BoxedError(pub BoxError);

impl fmt::Display for BoxedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for BoxedError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

impl<E> Error<E> {
    /// Converts into a [`BoxError`], for error types (such as `BoxError` itself) that make
    /// `Error<E>` no [`std::error::Error`].
    ///
    /// The caller's own error (`Inner`) is returned as itself, boxed: downcast it to `E`'s
    /// type as if no pipeline were there. Every other variant becomes a boxed
    /// `Error<BoxedError>` (a `RetriesExhausted` keeps its last error, boxed).
    ///
    /// ```
    /// use resilient::{BoxError, BoxedError, Error, TimeoutScope};
    /// use std::time::Duration;
    ///
    /// let refused: Error<BoxError> = Error::Inner(std::io::Error::other("refused").into());
    /// let boxed = refused.into_boxed();
    /// assert!(boxed.downcast_ref::<std::io::Error>().is_some());
    ///
    /// let timeout: Error<BoxError> = Error::Timeout {
    ///     scope: TimeoutScope::Request,
    ///     elapsed: Duration::from_secs(1),
    /// };
    /// let boxed = timeout.into_boxed();
    /// assert!(boxed.downcast_ref::<Error<BoxedError>>().unwrap().is_timeout());
    /// ```
    pub fn into_boxed(self) -> BoxError
    where
        E: Into<BoxError>,
    {
        match self {
            Error::Inner(e) => e.into(),
            other => Box::new(other.map_inner(|e| BoxedError(e.into()))),
        }
    }
}

/// An error type that can say how long to wait before retrying (a server-directed delay,
/// such as an HTTP `Retry-After`).
///
/// Retry honours it through [`crate::HonorRetryAfter`].
pub trait RetryAfter {
    /// The requested delay, if any.
    fn retry_after(&self) -> Option<Duration>;
}

impl<E> RetryAfter for Error<E> {
    fn retry_after(&self) -> Option<Duration> {
        Error::retry_after(self)
    }
}

/// An invalid configuration, naming the field and the rule it broke.
///
/// ```
/// use resilient::{Pipeline, Retry};
/// use std::time::Duration;
/// let err = Pipeline::builder()
///     .retry(Retry::constant(Duration::from_millis(10)).attempts(0))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "retry.attempts");
/// assert!(err.to_string().contains("at least 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    rule: String,
}

impl ConfigError {
    /// A configuration error for `field` that broke `rule`.
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }

    /// The dotted name of the offending field, e.g. `timeout.operation`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule that was broken.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: `{}` {}", self.field, self.rule)
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Boom;
    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("boom")
        }
    }
    impl StdError for Boom {}

    #[derive(Debug)]
    struct Wrapper(Boom);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    /// What anyhow's `{:#}` and most error reporters print: each error in the chain once.
    fn chain(e: &dyn StdError) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out = format!("{out}: {s}");
            next = s.source();
        }
        out
    }

    #[test]
    fn display_source_and_helpers() {
        let e: Error<Boom> = Error::RetriesExhausted {
            attempts: 3,
            last: Boom,
        };
        assert_eq!(e.to_string(), "gave up after 3 attempts");
        assert_eq!(e.source().unwrap().to_string(), "boom");
        assert!(!e.is_transient());
        assert!(e.inner().is_some());
        let t: Error<Boom> = Error::Timeout {
            scope: TimeoutScope::Request,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(t.to_string(), "request timeout after 1.5s");
        assert!(t.is_transient() && t.is_timeout() && t.source().is_none());
        let c: Error<Boom> = Error::CircuitOpen { retry_after: None };
        assert_eq!(c.to_string(), "circuit open");
        let mapped = Error::Inner(Boom).map_inner(|_| 5u8);
        assert_eq!(mapped.into_inner(), Some(5));
        assert_eq!(
            Error::<Boom>::Cancelled.to_string(),
            "cancelled by the caller"
        );
    }

    #[test]
    fn error_chains_print_each_message_once() {
        // `Inner` is transparent: the caller's error, with the caller's source
        let e = Error::Inner(Wrapper(Boom));
        assert_eq!(e.to_string(), "wrapper");
        assert_eq!(chain(&e), "wrapper: boom");
        let e = Error::RetriesExhausted {
            attempts: 3,
            last: Wrapper(Boom),
        };
        assert_eq!(chain(&e), "gave up after 3 attempts: wrapper: boom");
        let e: Error<Wrapper> = Error::BulkheadFull;
        assert_eq!(chain(&e), "bulkhead full");
        // nested pipelines
        let e = Error::RetriesExhausted {
            attempts: 2,
            last: Error::Inner(Boom),
        };
        assert_eq!(chain(&e), "gave up after 2 attempts: boom");
    }

    #[test]
    fn flatten_merges_nested_pipeline_errors() {
        let timeout = || Error::<Boom>::Timeout {
            scope: TimeoutScope::Inherited,
            elapsed: Duration::from_secs(1),
        };
        assert!(matches!(
            Error::Inner(Error::Inner(Boom)).flatten(),
            Error::Inner(Boom)
        ));
        assert!(matches!(
            Error::Inner(Error::<Boom>::RetriesExhausted {
                attempts: 4,
                last: Boom
            })
            .flatten(),
            Error::RetriesExhausted { attempts: 4, .. }
        ));
        assert!(matches!(
            Error::Inner(timeout()).flatten(),
            Error::Timeout {
                scope: TimeoutScope::Inherited,
                ..
            }
        ));
        // the outer retries ran out on the caller's error: the outer count is kept
        assert!(matches!(
            Error::RetriesExhausted {
                attempts: 3,
                last: Error::RetriesExhausted {
                    attempts: 5,
                    last: Boom
                }
            }
            .flatten(),
            Error::RetriesExhausted { attempts: 3, .. }
        ));
        // ... or on a strategy's verdict in the inner pipeline, which is returned
        assert!(matches!(
            Error::RetriesExhausted {
                attempts: 3,
                last: timeout()
            }
            .flatten(),
            Error::Timeout { .. }
        ));
        assert!(matches!(
            Error::<Error<Boom>>::Cancelled.flatten(),
            Error::Cancelled
        ));
    }
}
