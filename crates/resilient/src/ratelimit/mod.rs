//! Local rate limiting: five algorithms over one decision type, quotas, keyed limiters,
//! warm-up, burst debt and HTTP headers.
//!
//! | algorithm | state | hot path | notes |
//! | --- | --- | --- | --- |
//! | [`Gcra`] | one `u64` (TAT) | lock-free CAS | continuous token bucket; reserves for waiters |
//! | [`TokenBucket`] | one `u64` (period, deficit) | lock-free CAS | refills in steps |
//! | [`FixedWindow`] | one `u64` (window, count) | lock-free CAS | up to 2× limit across a boundary |
//! | [`SlidingWindowCounter`] | one `u64` (window, prev, cur) | lock-free CAS | weighted approximation |
//! | [`SlidingWindowLog`] | log of admissions | short lock | exact; memory grows with the limit |
//! | [`Smooth`] | stored permits, next free time | short lock | Guava: pay-later debt, warm-up, linear ramp |
//!
//! The packed algorithms implement [`Algorithm`], a pure function
//! `(state, now, cost) -> (state, Decision)` that a Redis script can mirror; every limiter
//! implements [`Limiter`]. **Burst** means total capacity: the most units a limiter that has
//! been idle long enough admits at one instant ([`Decision::limit`]).
//!
//! Every [`Decision`] carries `allowed`, `limit`, `remaining`, `reset` (time until full)
//! and `retry_after`. A request costing more than a limiter's capacity is a [`CostError`],
//! never a wait that cannot end.
//!
//! ```
//! use resilient::{ManualClock, Pipeline};
//! use resilient::ratelimit::{Gcra, Rate, RateLimiter};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! // 10 per second and 10,000 per day, on one key.
//! let limiter = RateLimiter::builder()
//!     .limit(Gcra::limiter(Rate::per_second(10)).unwrap())
//!     .limit(Gcra::limiter(Rate::per_day(10_000)).unwrap())
//!     .clock(Arc::new(clock.clone()))
//!     .build()
//!     .unwrap();
//! for _ in 0..10 {
//!     assert!(limiter.check().allowed);
//! }
//! let d = limiter.check();
//! assert!(!d.allowed);
//! assert_eq!(d.retry_after, Duration::from_millis(100));
//! // Use it as a guard: `Pipeline::builder().rate_limit(limiter)`.
//! let _p = Pipeline::builder().rate_limit(limiter).build().unwrap();
//! ```
//!
//! # Measurements
//!
//! MEASUREMENTS

pub mod algorithm;
pub mod decision;
#[cfg(feature = "quanta")]
pub mod fast_clock;
pub mod fixed_window;
pub mod gcra;
pub mod guard;
#[cfg(feature = "http-headers")]
pub mod headers;
pub mod keyed;
pub mod sliding_counter;
pub mod sliding_log;
pub mod smooth;
mod time;
pub mod token_bucket;

pub use algorithm::{Algorithm, AtomicLimiter, Limiter};
pub use decision::{CostError, Decision, Nanos, Policy, Rate, nanos};
#[cfg(feature = "quanta")]
pub use fast_clock::FastClock;
pub use fixed_window::FixedWindow;
pub use gcra::Gcra;
pub use guard::{Mode, RateLimiter, RateLimiterBuilder, Verdict};
pub use keyed::{KeyedLimiter, KeyedLimiterBuilder, bytes_per_key};
pub use sliding_counter::{MAX_SLIDING_LIMIT, SlidingWindowCounter};
pub use sliding_log::SlidingWindowLog;
pub use smooth::{Smooth, SmoothBuilder};
pub use token_bucket::TokenBucket;
