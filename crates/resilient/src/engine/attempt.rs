//! What the engine reports about a failed attempt it is about to retry: the retry event
//! (for hooks and observers) and the typed failed attempt (for classifiers).

use std::sync::Arc;
use std::time::Duration;

use crate::engine::guard::Rejection;

/// Why an attempt is being retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The operation returned an error classified as a failure.
    Error,
    /// The operation returned `Ok` classified as a failure.
    FailedResult,
    /// The attempt hit the operation timeout.
    Timeout,
    /// A per-attempt guard rejected the attempt.
    Rejected,
}

/// Emitted before each retry wait.
#[derive(Debug, Clone)]
pub struct RetryEvent<'a> {
    /// The pipeline's operation name.
    pub operation: Option<&'a str>,
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// Why it is retried.
    pub reason: RetryReason,
}

/// A hook called before each retry.
pub type RetryHook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// The failed attempt that is about to be retried, as the typed retry hook sees it (see
/// [`crate::PipelineBuilder::on_retry`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum FailedAttempt<'a, T, E> {
    /// The operation returned an error classified as a failure.
    Error(&'a E),
    /// The operation returned `Ok` classified as a failure (e.g. an HTTP 503).
    FailedResult(&'a T),
    /// The attempt ran into the operation timeout after this long.
    Timeout(Duration),
    /// A per-attempt guard rejected the attempt (see [`Retry::retry_rejected`](crate::retry::Retry::retry_rejected)).
    Rejected(&'a Rejection),
}

impl<T, E> Clone for FailedAttempt<'_, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for FailedAttempt<'_, T, E> {}

impl<'a, T, E> FailedAttempt<'a, T, E> {
    /// The operation's error, if the attempt failed with one.
    pub fn error(&self) -> Option<&'a E> {
        match *self {
            FailedAttempt::Error(e) => Some(e),
            _ => None,
        }
    }
}
