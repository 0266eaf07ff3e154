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
//! # Modes, costs, debt and warm-up
//!
//! - **Reject or wait** ([`Mode`]): a [`RateLimiter`] guard rejects at once with
//!   [`crate::Error::RateLimited`] and its `retry_after`, or waits up to a maximum (never
//!   past the call's deadline). GCRA and [`Smooth`] *reserve* the future capacity and the
//!   caller sleeps until it is due; a cancelled waiter (its future dropped) gives the
//!   reservation back if it is still the last one, and otherwise keeps it used: waiters
//!   queued behind it hold the later slots, and moving the queue's end back under them
//!   would hand those slots out twice. So the operations that start in any window of
//!   length `w` never exceed `burst + rate·w`, whatever arrives, is cancelled or waits
//!   (`tests/ratelimit_cancel.rs`; a loom model, `tests/loom_gcra.rs`, checks the
//!   interleavings). A quota that refuses gives back what its other limits
//!   took on the same rule ([`Algorithm::undo`]). The window algorithms hold nothing while waiting and re-check at
//!   their `retry_after`.
//! - **Weighted requests**: every call takes a `cost`; a cost above a limiter's capacity
//!   is a [`CostError`] (and a guard's configured cost is checked at build). In a
//!   pipeline, a call may bring its own cost ([`pipeline.call().cost(n)`](crate::Call::cost)),
//!   which the limiter charges instead of its configured one.
//! - **Burst debt** ([`Smooth`]): Guava's "pay later": a request is admitted once earlier
//!   debt is paid, whatever its own size, and leaves at most `max_debt` permits of debt.
//! - **Warm-up** ([`Smooth::warming_up`], Guava's `SmoothWarmingUp`, cold factor 3) and a
//!   linear ramp ([`Smooth::linear_ramp`]).
//! - **Quotas**: several limits on one [`RateLimiter`] (10/s *and* 10,000/day) admit only
//!   if all admit; if one refuses, the units taken from the others are given back.
//!   [`RateLimiter::check_quota`] reports each limit.
//! - **Runtime changes** keep state, and go through the owner of the clock, which knows
//!   the limiter's time: [`RateLimiter::set_rate`] and [`KeyedLimiter::set_rate`] (GCRA
//!   keeps the units in use, a rate drop forgiving those beyond a full new burst; a
//!   token bucket its tokens; a smooth
//!   limiter its debt; windows their counts). On a shared handle (an `Arc` of a limit a
//!   guard uses), [`AtomicLimiter::set_rate`] takes a `now` that must be the limiter's
//!   time ([`RateLimiter::now`]); [`TokenBucket::set`], [`FixedWindow::set_limit`],
//!   [`SlidingWindowCounter::set_limit`], [`SlidingWindowLog::set_limit`] and
//!   [`Smooth::set_rate`] need none. The configuration is read as one snapshot per
//!   decision (a sequence lock: readers never block).
//! - **Keyed** ([`KeyedLimiter`]): one packed `u64` per key; idle keys (a fully
//!   recovered key equals a fresh one, so dropping it loses nothing) are forgotten by
//!   [`KeyedLimiter::retain_recent`], run periodically or by
//!   [`KeyedLimiter::spawn_sweeper`], and by a full shard; a hard cap evicts a sixteenth
//!   of a full shard, the keys with the least in use. [`KeyedLimiter::quota`] gives every key several limits
//!   (one packed `u64` each), admitted only if all admit, with the same all-or-nothing
//!   rule as a [`RateLimiter`] quota. Over `u64` keys it is also a pipeline guard: each
//!   call gives its key (any `Hash` value, hashed) with
//!   [`pipeline.call().key(&user)`](crate::Call::key).
//! - **tower**: [`RateLimiter::layer`] and, per key, [`KeyedLimiter::layer`] (a `Clone`
//!   [`KeyedLayer`] taking the key from each request: user, API key, IP, and optionally
//!   its cost, [`KeyedLayer::cost`]), both rejecting
//!   with [`crate::Error::RateLimited`] or waiting in wait mode.
//! - **HTTP** ([`headers`], feature `http-headers`): `RateLimit`/`RateLimit-Policy`
//!   (draft-ietf-httpapi-ratelimit-headers-10, as Structured Fields), `X-RateLimit-*` and
//!   `Retry-After`, written from decisions and parsed on the client side
//!   ([`headers::ServerLimits`] implements [`crate::RetryAfter`]). The parsers never
//!   panic: a proptest runs in the normal suite, and the cargo-fuzz target `headers`
//!   (`crates/resilient/fuzz`, `RUSTC_BOOTSTRAP=1 cargo fuzz run headers`) ran 8.4 million
//!   inputs in two sessions (241 s + 301 s) without a crash.
//! - **Hot paths**: [`RateLimiter::allow`] and [`KeyedLimiter::allow`] only admit or say
//!   when (no remaining/reset computed); the default clock, [`FastClock`], reads the
//!   CPU's time-stamp counter, inline (without a virtual call) instead of
//!   `std::time::Instant`.
//!
//! Packed states also stay monotonic under racing clock reads: a caller whose clock
//! reading is slightly older than the one that last moved the window or refill period
//! counts in the newer one (conservative), instead of rolling the state back.
//!
//! # Measurements
//!
//! ## Memory per key
//!
//! A [`KeyedLimiter`] slot is the key, its 8-byte packed state and one control byte
//! ([`bytes_per_key`]). Measured with a counting allocator at 100,000 keys
//! (`tests/ratelimit_memory.rs`, GCRA, default 16 shards): **22.3 bytes per key** for
//! `u64` keys (slot 17 B) and **43.3 bytes per key** for `IpAddr` keys (slot 33 B); the
//! rest is the hash tables' spare capacity (they are at most 7/8 full and grow by
//! doubling). Keys with heap data (e.g. `String`) add their own allocation.
//!
//! ## Sliding window counter error
//!
//! Measured against an exact sliding log (`tests/ratelimit_sliding_error.rs`, limit 100
//! per 60 s, Poisson arrivals, deterministic seed). *Shadow* error: the counter decides,
//! and each decision is compared with what an exact window over the same admitted history
//! would say. *Throughput*: an exact [`SlidingWindowLog`] runs independently on the same
//! arrivals.
//!
//! | trace | requests | wrongly allowed | wrongly denied | worst exact window | admitted counter / exact |
//! | --- | --- | --- | --- | --- | --- |
//! | steady, 0.5× the limit | 332,225 | 0.000% | 0.000% | 84 | 1.000 |
//! | steady, 0.9× the limit | 598,525 | 5.164% | 0.992% | 117 | 1.008 |
//! | alternating 0.5× / 3× every 2 windows | 578,296 | 2.624% | 42.929% | 114 | 0.998 |
//!
//! Below the limit it is exact. Near the limit it lets a true window exceed the limit by
//! up to ~17% (requests are not spread evenly within a window, which the weighting
//! assumes). Right after a burst it over-counts the previous window and denies requests an
//! exact log would admit (the 43% are the marginal requests of an overloaded trace);
//! throughput over the whole trace stays within 1% of the exact log. Use
//! [`SlidingWindowLog`] when exactness matters more than memory.
//!
//! ## Speed
//!
//! Speed is measured side by side with governor by the bench crate
//! (`cargo bench -p resilient-bench --bench ratelimit`); the figures, with the commands and
//! the machine they ran on, are kept in `crates/resilient-bench/RESULTS.md` of the source
//! repository rather than here, where they would go stale. Most of a check is reading the
//! clock: the default [`FastClock`] avoids the cost of `std::time::Instant` on virtual
//! machines (choose [`crate::SystemClock`] with `.clock(..)` to compare).

pub mod algorithm;
mod config;
pub mod decision;
pub mod fixed_window;
pub mod gcra;
pub mod guard;
#[cfg(feature = "http-headers")]
pub mod headers;
pub mod keyed;
#[cfg(feature = "tower")]
mod keyed_layer;
mod quota;
pub mod sliding_counter;
pub mod sliding_log;
pub mod smooth;
mod sync;
pub mod token_bucket;

/// The default clock, [`crate::FastClock`], under its former name here (it was a limiter-only
/// clock behind the `quanta` feature).
pub use crate::engine::clock::FastClock;
pub use algorithm::{Algorithm, AtomicLimiter, Limiter, Rescale, Ticket};
pub use decision::{CostError, Decision, Nanos, Policy, Rate, nanos};
pub use fixed_window::{FixedWindow, MAX_WINDOW};
pub use gcra::Gcra;
pub use guard::{IntoRateLimiter, Mode, RateLimiter, RateLimiterBuilder, Verdict};
pub use keyed::{KeyedLimiter, KeyedLimiterBuilder, MAX_SWEEP_PERIOD, bytes_per_key};
#[cfg(feature = "tower")]
pub use keyed_layer::{KeyedLayer, KeyedService, RequestCost, UnitCost};
pub use sliding_counter::{MAX_SLIDING_LIMIT, SlidingWindowCounter};
pub use sliding_log::SlidingWindowLog;
pub use smooth::{Smooth, SmoothBuilder};
pub use token_bucket::TokenBucket;
