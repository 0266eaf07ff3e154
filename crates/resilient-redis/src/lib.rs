//! Distributed rate limiting on Redis (and Valkey) for the [`resilient`] crate: per-key
//! limits shared by every process of a fleet, with the local limiters' decisions.
//!
//! - **Every local algorithm** ([`Limit`]): GCRA, token bucket, fixed window, sliding
//!   window log and sliding window counter, with weighted requests (a cost per request)
//!   and quotas (several limits per key, admitted only if all admit, e.g. 10/s *and*
//!   10,000/day).
//! - **One round trip per decision**: a Lua script run by `EVALSHA` (loaded again if the
//!   server forgot it) decides every limit of a key at once on the server's clock
//!   (`TIME`: callers' clocks never matter), writes only when every limit admits, and
//!   sets each key to expire once it is full again (an expired key equals a fresh one).
//!   Concurrent decisions share round trips: while one script is in flight, those that
//!   arrive go together in the next, decided in order
//!   ([`RedisLimiterBuilder::max_batch`]).
//! - **The same [`Decision`](resilient::ratelimit::Decision) and
//!   [`Verdict`](resilient::ratelimit::Verdict)** as the local limiters, so the same
//!   `RateLimit`/`Retry-After` headers come out (`resilient::ratelimit::headers`).
//! - **Explicit failure modes** ([`FailureMode`]): fail open, fail closed, or fall back
//!   to a local limiter sized as a share of the global limit; a command timeout bounds
//!   every decision, Redis is left alone for a probe interval after a failure, and
//!   decisions go back to Redis as soon as a probe succeeds.
//! - **A local deny cache** ([`RedisLimiterBuilder::deny_cache`]): keys known to be over
//!   their limit are rejected with no round trip until their `retry_after`.
//! - **The keyed limiter's shapes**: [`RedisLimiter::check`], `check_quota` and `allow`
//!   (awaited), a pipeline [`Guard`](resilient::Guard) ([`RedisLimiter::guard`], keyed by
//!   the call's context) and a tower layer ([`RedisLimiter::layer`], keyed by the
//!   request, feature `tower`).
//! - **Redis Cluster** (feature `cluster`): all the limits of one key share a `{hash
//!   tag}`, so the script runs on one node.
//!
//! ```no_run
//! use resilient::ratelimit::Rate;
//! use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisLimiter::builder(Connection::open("redis://127.0.0.1/")?)
//!     .limit(Limit::gcra(Rate::per_second(10))?)
//!     .limit(Limit::fixed_window(10_000, Duration::from_secs(86_400))?)
//!     .failure_mode(FailureMode::Local { share: 0.25 }) // 4 instances
//!     .timeout(Duration::from_millis(50))
//!     .deny_cache(100_000)
//!     .build()?;
//! let d = limiter.check(&"user-42", 1).await?;
//! println!("allowed {}, {} left, retry after {:?}", d.allowed, d.remaining, d.retry_after);
//! # Ok(()) }
//! ```
//!
//! # Accuracy and slack
//!
//! Decisions are serialized by Redis, so concurrent callers in any number of processes
//! never admit more than the algorithm allows: a fixed window admits at most `limit` per
//! window (and up to twice that across a boundary, as locally), GCRA at most
//! `burst + rate·t` over any span `t`, the sliding log exactly `limit` per sliding
//! window, the sliding counter its weighted approximation (see
//! [`resilient::ratelimit`]). Times have microsecond resolution. The slack comes only
//! from the failure modes: while Redis is unreachable, `Open` admits everything and
//! `Local` admits up to `share` of each limit per process.
//!
//! # Shared circuit breaker state
//!
//! [`SharedBreaker`] shares one circuit's open decision among a fleet: outcomes are
//! reported in batches (no round trip on the call path), the fleet trips only on failures
//! from `min_instances` distinct instances, and each instance's local
//! [`CircuitBreaker`](resilient::CircuitBreaker) follows the shared phases through the
//! breaker's [`RemoteStore`](resilient::circuit::RemoteStore) seam (deadlines on Redis'
//! clock, a shared failed-recovery count).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod breaker;
mod connection;
mod guard;
#[cfg(feature = "tower")]
mod layer;
mod limit;
mod limiter;

pub use breaker::{SharedBreaker, SharedBreakerBuilder, SharedStats, SharedView, SyncTask};
pub use connection::Connection;
pub use guard::RedisGuard;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{RedisLayer, RedisService};
pub use limit::{Limit, MIN_PERIOD};
pub use limiter::{FailureMode, RedisLimiter, RedisLimiterBuilder, Stats};
