//! # resilient
//!
//! Wrap any async (or blocking) operation in retry, timeouts, bulkheads and other
//! resilience strategies, and get a typed `Result<T, resilient::Error<E>>` back.
//!
//! ```
//! use resilient::{Error, Jitter, Pipeline, Retry, Timeout};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .timeout(Timeout::request(Duration::from_secs(30)))
//!     .retry(Retry::exponential(Duration::from_millis(100)).attempts(3).jitter(Jitter::Full))
//!     .timeout(Timeout::operation(Duration::from_secs(5)))
//!     .build()
//!     .expect("valid configuration");
//!
//! let user: Result<&str, Error<std::io::Error>> =
//!     pipeline.execute(|| async { Ok("ada") }).await;
//! assert_eq!(user.unwrap(), "ada");
//! # }
//! ```
//!
//! See [`Pipeline`] for the phases a call goes through, [`Guard`] for the seam that
//! admission strategies plug into, and [`testing`] for deterministic tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (and scripts/docsrs.sh) build with `--cfg docsrs`: items behind a cargo feature
// then carry an "Available on crate feature ..." badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod engine;
mod pipeline;

pub mod bulkhead;
/// JSON parsing with correction, for malformed JSON from LLMs and truncated responses: see
/// the `resilient-json` crate (feature `json`).
///
/// ```
/// let fixed = resilient::json::repair("{name: 'Ada', tags: ['x', 'y',]").unwrap();
/// assert_eq!(fixed, r#"{"name": "Ada", "tags": ["x", "y"]}"#);
/// ```
#[cfg(feature = "json")]
pub use resilient_json as json;
pub mod chaos;
pub mod circuit;
pub mod experiment;
pub mod failover;
pub mod fallback;
pub mod guide;
pub mod health;
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod ratelimit;
pub mod registry;
pub mod retry;
pub mod telemetry;
pub mod testing;
pub mod timeout;
#[cfg(feature = "tower")]
pub mod tower;

pub use crate::bulkhead::{Bulkhead, BulkheadBuilder};
pub use crate::circuit::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitEvent, CircuitObserver, CircuitSnapshot,
    CircuitState,
};
pub use crate::engine::attempt::{FailedAttempt, RetryEvent, RetryReason};
pub use crate::engine::clock::{
    Clock, FastClock, ManualClock, SharedClock, SystemClock, system_clock,
};
pub use crate::engine::context::{Context, inherited_deadline};
pub use crate::engine::error::{
    BoxError, BoxedError, ConfigError, Error, RetryAfter, TimeoutScope,
};
pub use crate::engine::guard::{Acquire, Guard, Permit, RateLimitInfo, Rejection, WaitFuture};
pub use crate::engine::outcome::{
    AllErrors, Classify, DelayFrom, HonorRetryAfter, OnRetry, Outcome, Recovery, RetryCost,
    RetryIf, WithDelay,
};
pub use crate::engine::random::{
    RandomSource, SeededRandom, SharedRandom, ThreadRandom, thread_random,
};
pub use crate::engine::timeouts::Timeouts;
pub use crate::pipeline::{Call, Pipeline, PipelineBuilder, WithFallback};
pub use crate::ratelimit::{RateLimiter, RateLimiterBuilder};
pub use crate::registry::registry;
pub use crate::retry::{Backoff, Jitter, Retry, RetryBudget, RetryBudgetBuilder};
pub use crate::timeout::Timeout;
pub use tokio_util::sync::CancellationToken;

#[cfg(feature = "macros")]
pub use resilient_macros::{
    bulkhead, circuit, fallback, health_aware, hedge, pattern, rate_limit, retry, timeout,
};
#[cfg(feature = "macros")]
#[doc(hidden)]
pub mod __private;

/// The README's examples, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
