//! # User guide
//!
//! From one retry to a full pipeline: every strategy with an example you can run, the order
//! in which a call goes through them, how to choose a rate-limiting algorithm, and what to
//! do when one process becomes a fleet. The examples are doctests: they run (on tokio's
//! paused clock, so their seconds of backoff take no time) with every `cargo test`.
//!
//! 1. [One retry](#1-one-retry)
//! 2. [Which results count as failures](#2-which-results-count-as-failures)
//! 3. [Timeouts](#3-timeouts)
//! 4. [Bulkhead](#4-bulkhead)
//! 5. [Circuit breaker](#5-circuit-breaker)
//! 6. [Rate limiting](#6-rate-limiting)
//! 7. [The full pipeline and its phases](#7-the-full-pipeline-and-its-phases)
//! 8. [Other ways to run a pipeline](#8-other-ways-to-run-a-pipeline)
//! 9. [Choosing a rate-limiting algorithm](#9-choosing-a-rate-limiting-algorithm)
//! 10. [Testing code that uses resilience](#10-testing-code-that-uses-resilience)
//! 11. [From one process to a fleet](#11-from-one-process-to-a-fleet)
//! 12. [Names, configuration files and patterns](#12-names-configuration-files-and-patterns)
//! 13. [Graceful degradation](#13-graceful-degradation)
//! 14. [Telemetry: events, traces, metrics, dashboards](#14-telemetry-events-traces-metrics-dashboards)
//! 15. [Operations: reloads, experiments, retry costs, chaos](#15-operations-reloads-experiments-retry-costs-chaos)
//!
//! Every strategy is configured through a builder whose `build()` checks the settings and
//! returns a [`ConfigError`](crate::ConfigError) naming the field and the rule it breaks; a
//! built pipeline never panics at call time. A [`Pipeline`](crate::Pipeline) is cheap to
//! clone, and clones share their state (budgets, breakers, limiters): build it once, at
//! start-up, and share it.
//!
//! # 1. One retry
//!
//! ```
//! use resilient::{Error, Pipeline, Retry};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::exponential(Duration::from_millis(100)).attempts(3)) // 100 ms, then 200 ms
//!     .build()
//!     .expect("valid configuration");
//!
//! // The operation is a closure that makes a fresh future for every attempt.
//! let mut calls = 0;
//! let result: Result<&str, Error<&str>> = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         let n = calls;
//!         async move { if n < 3 { Err("connection reset") } else { Ok("done") } }
//!     })
//!     .await;
//! assert_eq!(result.unwrap(), "done");
//! assert_eq!(calls, 3);
//!
//! // When every attempt fails, the last error comes back with the number of attempts.
//! let result: Result<(), Error<&str>> = pipeline.execute(|| async { Err("down") }).await;
//! assert!(matches!(result, Err(Error::RetriesExhausted { attempts: 3, last: "down" })));
//! # }
//! ```
//!
//! The result is always `Result<T, resilient::Error<E>>`: your own error (in
//! [`Error::Inner`](crate::Error::Inner) or [`Error::RetriesExhausted`](crate::Error::RetriesExhausted)),
//! or a variant that says which strategy stopped the call.
//!
//! Schedules: [`Retry::immediate`](crate::Retry::immediate),
//! [`constant`](crate::Retry::constant), [`linear`](crate::Retry::linear),
//! [`exponential`](crate::Retry::exponential) (with [`factor`](crate::Retry::factor) and a
//! cap, [`max_delay`](crate::Retry::max_delay)) and [`custom`](crate::Retry::custom).
//! [`Jitter`](crate::Jitter) spreads the retries of many clients (`Full` is a good default
//! for calls to a shared service); [`max_elapsed`](crate::Retry::max_elapsed) bounds the
//! total time spent retrying, and a [`RetryBudget`](crate::RetryBudget) bounds retries as a
//! share of all calls, so that a struggling dependency is not hit by a retry storm.
//!
//! ## Server-directed delays
//!
//! When your error knows how long the server asked you to wait (a `Retry-After` header),
//! implement [`RetryAfter`](crate::RetryAfter) for it and wrap the classifier in
//! [`HonorRetryAfter`](crate::HonorRetryAfter): that delay replaces the computed backoff,
//! bounded by [`max_server_delay`](crate::Retry::max_server_delay).
//!
//! ```
//! use resilient::{AllErrors, Error, HonorRetryAfter, Pipeline, Retry, RetryAfter};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! #[derive(Debug)]
//! struct Throttled(Duration);
//! impl RetryAfter for Throttled {
//!     fn retry_after(&self) -> Option<Duration> {
//!         Some(self.0)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .retry(
//!         Retry::exponential(Duration::from_millis(10))
//!             .attempts(2)
//!             .max_server_delay(Duration::from_secs(5)),
//!     )
//!     .classify(HonorRetryAfter(AllErrors))
//!     .build()
//!     .unwrap();
//!
//! let start = Instant::now();
//! let mut calls = 0;
//! let result: Result<u32, Error<Throttled>> = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         let first = calls == 1;
//!         async move { if first { Err(Throttled(Duration::from_secs(2))) } else { Ok(200) } }
//!     })
//!     .await;
//! assert_eq!(result.unwrap(), 200);
//! assert_eq!(start.elapsed(), Duration::from_secs(2)); // the server's delay, not 10 ms
//! # }
//! ```
//!
//! When the server's answer arrives as a *successful* result (HTTP clients return a 429 or
//! a 503 as `Ok(response)`), read the delay from any result with
//! [`delay_from`](crate::PipelineBuilder::delay_from), a closure returning
//! `Option<Duration>`; `None` keeps the backoff. The attribute takes the same closure or
//! function as `delay_from = ..` (the `http_retry_after` example does both over real HTTP).
//!
//! ```
//! use resilient::{Outcome, Pipeline, Retry};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! /// What an HTTP client hands back: a status and the parsed `Retry-After`.
//! struct Response {
//!     status: u16,
//!     retry_after: Option<Duration>,
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::exponential(Duration::from_millis(10)).attempts(3))
//!     // a 503 is a failure even though it arrived as `Ok`
//!     .classify(|r: &Result<Response, std::io::Error>| match r {
//!         Ok(resp) if resp.status == 503 => Outcome::Failure,
//!         Ok(_) => Outcome::Success,
//!         Err(_) => Outcome::Failure,
//!     })
//!     .delay_from(|r: &Result<Response, std::io::Error>| r.as_ref().ok()?.retry_after)
//!     .build()
//!     .unwrap();
//!
//! let start = Instant::now();
//! let mut calls = 0;
//! let response = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         let status = if calls == 1 { 503 } else { 200 };
//!         let retry_after = (status == 503).then(|| Duration::from_secs(3));
//!         async move { Ok(Response { status, retry_after }) }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(response.status, 200);
//! assert_eq!(start.elapsed(), Duration::from_secs(3));
//! # }
//! ```
//!
//! For HTTP and gRPC clients, `resilient::http` (feature `http`) has all of this ready:
//! `http::client(&method)` and `http::grpc()` are one-line presets; failures are classified
//! by type, never by message (`http::ClassifyError` for I/O,
//! hyper and reqwest errors, HTTP statuses and gRPC codes); with feature
//! `reqwest-middleware`, `http::middleware::RetryMiddleware` retries reqwest requests
//! (idempotent methods or an `Idempotency-Key` only, streaming bodies refused with a typed
//! `NotReplayable`, hooks that add attempt and deadline headers); `http::attempts` adds the same headers on the tower path; `http::dns` re-resolves
//! failed names; and `http::server::RateLimitLayer` limits an axum or hyper server per
//! client, answering 429 with `Retry-After` and the `RateLimit` fields.
//!
//! # 2. Which results count as failures
//!
//! By default ([`AllErrors`](crate::AllErrors)) every `Err` is a failure and every `Ok` a
//! success. A classifier — any `Fn(&Result<T, E>) -> Outcome` — changes that: an error that
//! retrying cannot fix (a 404, a validation error) is [`Outcome::Ignored`](crate::Outcome)
//! (returned at once, not counted by a breaker), and an `Ok` can be a failure (an HTTP 503
//! response).
//!
//! ```
//! use resilient::{Error, Outcome, Pipeline, Retry};
//!
//! #[derive(Debug, PartialEq)]
//! enum ApiError {
//!     NotFound,
//!     Unavailable,
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::immediate().attempts(3))
//!     .classify(|r: &Result<u32, ApiError>| match r {
//!         Ok(_) => Outcome::Success,
//!         Err(ApiError::NotFound) => Outcome::Ignored,
//!         Err(ApiError::Unavailable) => Outcome::Failure,
//!     })
//!     .build()
//!     .unwrap();
//!
//! let mut calls = 0;
//! let result = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         async { Err(ApiError::NotFound) }
//!     })
//!     .await;
//! assert!(matches!(result, Err(Error::Inner(ApiError::NotFound))));
//! assert_eq!(calls, 1); // not retried
//! # }
//! ```
//!
//! "Does this count as a failure?" (for breakers and metrics) and "should this be retried?"
//! are two questions. The classifier answers the first, and by default a failure is
//! retried; [`retry_if`](crate::PipelineBuilder::retry_if) answers the second on its own.
//! A 501 is a failure of the dependency that asking again will not fix; a bad request
//! (400) is neither a dependency failure nor worth retrying (classify it
//! [`Ignored`](crate::Outcome::Ignored)); a 503 is both. Attributes take the same closures
//! or functions as `classify = ..` and `retry_if = ..`.
//!
//! ```
//! use resilient::{Outcome, Pipeline, Retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .retry(Retry::immediate().attempts(3))
//!     .classify(|r: &Result<u16, ()>| match r {
//!         Ok(status) if *status >= 500 => Outcome::Failure,
//!         Ok(400..=499) => Outcome::Ignored,
//!         _ => Outcome::Success,
//!     })
//!     // only a 503 is worth another attempt
//!     .retry_if(|r: &Result<u16, ()>| matches!(r, Ok(503)))
//!     .build()
//!     .unwrap();
//!
//! let mut calls = 0;
//! let status = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         async { Ok(501) }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!((status, calls), (501, 1)); // a failure, not retried
//! # }
//! ```
//!
//! # 3. Timeouts
//!
//! Three scopes, each optional, checked against each other at build time:
//! `operation` (one attempt) <= `request` (the whole call: attempts, backoff waits and
//! queueing) <= `circuit` (the breaker's time scale). Where the timeouts go in the builder
//! matters: a request timeout goes before `.retry(..)`, an operation timeout after it.
//!
//! ```
//! use resilient::{Error, Pipeline, Timeout, TimeoutScope};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .timeout(Timeout::request(Duration::from_secs(10)))
//!     .timeout(Timeout::operation(Duration::from_millis(500)))
//!     .build()
//!     .unwrap();
//!
//! let result: Result<(), Error<()>> = pipeline
//!     .execute(|| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await; // a dependency that hangs
//!         Ok(())
//!     })
//!     .await;
//! match result {
//!     Err(Error::Timeout { scope, elapsed }) => {
//!         assert_eq!(scope, TimeoutScope::Operation);
//!         assert_eq!(elapsed, Duration::from_millis(500));
//!     }
//!     other => panic!("expected a timeout, got {other:?}"),
//! }
//!
//! // Contradictions are configuration errors, found before the first call.
//! let err = Pipeline::builder()
//!     .timeout(Timeout::request(Duration::from_secs(1)))
//!     .timeout(Timeout::operation(Duration::from_secs(5)))
//!     .build()
//!     .unwrap_err();
//! println!("{err}");
//! # }
//! ```
//!
//! A pipeline called from inside another one's operation inherits the tighter deadline
//! (reported as [`TimeoutScope::Inherited`](crate::TimeoutScope::Inherited)) and the
//! caller's cancellation.
//!
//! # 4. Bulkhead
//!
//! A [`Bulkhead`](crate::Bulkhead) caps how many calls run at once, with an optional
//! bounded queue and a maximum wait in it. Slots are RAII permits: a finished, failed or
//! cancelled call gives its slot back.
//!
//! ```
//! use resilient::{Bulkhead, Error, Pipeline};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .bulkhead(Bulkhead::builder(1)) // one call at a time, no queue
//!     .build()
//!     .unwrap();
//!
//! let slow = pipeline.execute(|| async {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, ()>("slow")
//! });
//! let fast = pipeline.execute(|| async { Ok::<_, ()>("fast") });
//! let (slow, fast) = tokio::join!(slow, fast);
//! assert_eq!(slow.unwrap(), "slow");
//! assert!(matches!(fast, Err(Error::BulkheadFull)));
//! # }
//! ```
//!
//! # 5. Circuit breaker
//!
//! A [`CircuitBreaker`](crate::CircuitBreaker) stops calling a dependency that keeps
//! failing, lets a few probes through after a break, and closes again when they succeed.
//! It trips on a failure rate over a sliding window, a slow-call rate, or a run of
//! consecutive failures; see [`circuit`](mod@crate::circuit) for all settings.
//!
//! ```
//! use resilient::{CircuitBreaker, CircuitState, Error, Pipeline};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let breaker = CircuitBreaker::consecutive_failures(3)
//!     .open_for(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! // The pipeline holds a handle: the breaker can be shared by several pipelines and
//! // inspected from outside.
//! let pipeline = Pipeline::builder().circuit_breaker(&breaker).build().unwrap();
//!
//! for _ in 0..3 {
//!     let r: Result<(), Error<&str>> = pipeline.execute(|| async { Err("down") }).await;
//!     assert!(matches!(r, Err(Error::Inner("down"))));
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! // Open: calls fail fast, without running the operation, and say when to come back.
//! let r: Result<(), Error<&str>> = pipeline.execute(|| async { unreachable!() }).await;
//! let wait = match r {
//!     Err(Error::CircuitOpen { retry_after }) => retry_after.unwrap(),
//!     other => panic!("expected an open circuit, got {other:?}"),
//! };
//!
//! // After the break, a probe is let through; its success closes the breaker.
//! tokio::time::sleep(wait).await;
//! let r: Result<&str, Error<&str>> = pipeline.execute(|| async { Ok("back") }).await;
//! assert_eq!(r.unwrap(), "back");
//! assert_eq!(breaker.state(), CircuitState::Closed);
//! # }
//! ```
//!
//! The breaker also works on its own (`breaker.call(..)`) and as a tower layer
//! (`breaker.layer()`, feature `tower`).
//!
//! # 6. Rate limiting
//!
//! A [`RateLimiter`](crate::RateLimiter) admits calls at a rate. By default it rejects at
//! once with [`Error::RateLimited`](crate::Error::RateLimited) and a `retry_after`; in
//! [`Mode::Wait`](crate::ratelimit::Mode::Wait) it waits (up to a maximum, never past the
//! call's deadline) for capacity.
//!
//! ```
//! use resilient::ratelimit::{Mode, Rate, RateLimiter};
//! use resilient::{Error, Pipeline};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // 2 per second, rejecting.
//! let rejecting = Pipeline::builder()
//!     .rate_limit(RateLimiter::gcra(Rate::per_second(2)).build().unwrap())
//!     .build()
//!     .unwrap();
//! for _ in 0..2 {
//!     let r: Result<(), Error<()>> = rejecting.execute(|| async { Ok(()) }).await;
//!     assert!(r.is_ok());
//! }
//! let r: Result<(), Error<()>> = rejecting.execute(|| async { Ok(()) }).await;
//! assert!(matches!(r, Err(Error::RateLimited { retry_after: Some(_), .. })));
//!
//! // The same rate, waiting up to a second for capacity.
//! let waiting = Pipeline::builder()
//!     .rate_limit(
//!         RateLimiter::gcra(Rate::per_second(2))
//!             .mode(Mode::Wait(Duration::from_secs(1)))
//!             .build()
//!             .unwrap(),
//!     )
//!     .build()
//!     .unwrap();
//! let start = Instant::now();
//! for _ in 0..3 {
//!     let r: Result<(), Error<()>> = waiting.execute(|| async { Ok(()) }).await;
//!     assert!(r.is_ok());
//! }
//! assert_eq!(start.elapsed(), Duration::from_millis(500)); // the third waited its turn
//! # }
//! ```
//!
//! Beyond one rate: quotas (several limits on one limiter, e.g. 10 per second *and* 10,000
//! per day), weighted calls (`cost`, or per call: `pipeline.call().cost(n)`), per-key
//! limiters ([`KeyedLimiter`](crate::ratelimit::KeyedLimiter): per user, API key or IP;
//! in a pipeline, each call gives its key with `pipeline.call().key(&user)`), rate
//! changes at runtime, and the HTTP rate-limit headers (feature `http-headers`). See
//! [`ratelimit`](crate::ratelimit), and [section 9](#9-choosing-a-rate-limiting-algorithm)
//! to choose an algorithm.
//!
//! # 7. The full pipeline and its phases
//!
//! Every call goes through the same phases, outermost first. The builder shows the order:
//! guards (breaker, limiter, bulkhead, your own [`Guard`](crate::Guard)s) added **before**
//! `.retry(..)` admit a logical call once; guards added **after** it admit every attempt.
//!
//! ```text
//!  caller
//!    │
//!    ▼
//!  ┌──────────────────────────────────────────────────────────────────┐
//!  │ 1. request timeout + caller cancellation   (whole call)          │
//!  │  ┌────────────────────────────────────────────────────────────┐  │
//!  │  │ 2. per-call guards        (added before .retry(..))        │  │
//!  │  │  ┌──────────────────────────────────────────────────────┐  │  │
//!  │  │  │ 3. retry loop  (backoff, jitter, budget, Retry-After)│  │  │
//!  │  │  │  ┌────────────────────────────────────────────────┐  │  │  │
//!  │  │  │  │ 4. per-attempt guards  (added after .retry(..))│  │  │  │
//!  │  │  │  │  ┌──────────────────────────────────────────┐  │  │  │  │
//!  │  │  │  │  │ 5. operation timeout   (each attempt)    │  │  │  │  │
//!  │  │  │  │  │  ┌────────────────────────────────────┐  │  │  │  │  │
//!  │  │  │  │  │  │ 6. your operation                  │  │  │  │  │  │
//!  │  │  │  │  │  └────────────────────────────────────┘  │  │  │  │  │
//!  │  │  │  │  └──────────────────────────────────────────┘  │  │  │  │
//!  │  │  │  └────────────────────────────────────────────────┘  │  │  │
//!  │  │  └──────────────────────────────────────────────────────┘  │  │
//!  │  └────────────────────────────────────────────────────────────┘  │
//!  └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Two more steps wrap these phases: a [`fallback`](crate::PipelineBuilder::fallback) step
//! is outermost (phase 0, outside the request timeout: it answers whatever the pipeline
//! gave up on), and a [`hedge`](crate::PipelineBuilder::hedge) step runs each attempt's
//! hedges through phases 4 to 6 on their own (see
//! [Graceful degradation](#12-graceful-degradation)).
//!
//! A typical client of a remote service: the breaker judges logical calls (a call that
//! succeeded on its second attempt is a success), every attempt takes a rate unit and a
//! concurrency slot, and each attempt has its own timeout inside the overall one.
//!
//! ```
//! use resilient::circuit::Window;
//! use resilient::ratelimit::{Mode, Rate, RateLimiter};
//! use resilient::{Bulkhead, CircuitBreaker, Error, Jitter, Pipeline, Retry, Timeout};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::failure_rate(0.5)
//!     .window(Window::count(20))
//!     .minimum_calls(10)
//!     .open_for(Duration::from_secs(10))
//!     .build()?;
//!
//! let pipeline = Pipeline::builder()
//!     .name("users-api")
//!     .timeout(Timeout::request(Duration::from_secs(10)))   // 1. whole call
//!     .circuit_breaker(&breaker)                             // 2. once per call
//!     .retry(                                                // 3.
//!         Retry::exponential(Duration::from_millis(100))
//!             .attempts(3)
//!             .max_delay(Duration::from_secs(2))
//!             .jitter(Jitter::Full),
//!     )
//!     .rate_limit(                                           // 4. every attempt
//!         RateLimiter::gcra(Rate::per_second(100))
//!             .mode(Mode::Wait(Duration::from_millis(200)))
//!             .build()?,
//!     )
//!     .bulkhead(Bulkhead::builder(32).queue(64).max_wait(Duration::from_secs(1)))
//!     .timeout(Timeout::operation(Duration::from_secs(2)))   // 5. each attempt
//!     .build()?;
//!
//! let mut calls = 0;
//! let user: Result<String, Error<std::io::Error>> = pipeline
//!     .execute(|| {
//!         calls += 1;
//!         let n = calls;
//!         async move {
//!             if n == 1 {
//!                 Err(std::io::Error::other("connection reset"))
//!             } else {
//!                 Ok(format!("user after {n} attempts"))
//!             }
//!         }
//!     })
//!     .await;
//! assert_eq!(user?, "user after 2 attempts");
//! # Ok(()) }
//! ```
//!
//! The same pipeline can be written as stacked attributes on a function
//! (`#[resilient::retry]`, `#[resilient::timeout]`, `#[resilient::circuit]`,
//! `#[resilient::rate_limit]`, `#[resilient::bulkhead]`, feature `macros`); they build one
//! such pipeline per function. See the crate README and `resilient_macros`.
//!
//! # 8. Other ways to run a pipeline
//!
//! - [`execute_blocking`](crate::Pipeline::execute_blocking) for synchronous code: the
//!   same phases, with waits on the current thread (a running blocking call cannot be
//!   interrupted; an attempt that overruns its timeout counts as a timeout when it
//!   returns).
//! - [`execute_cancellable`](crate::Pipeline::execute_cancellable) with a
//!   [`CancellationToken`](crate::CancellationToken): cancelling ends the call with
//!   [`Error::Cancelled`](crate::Error::Cancelled) and releases every permit.
//! - [`execute_with`](crate::Pipeline::execute_with): the operation receives the call's
//!   [`Context`](crate::Context) (attempt number, deadline, name, tags).
//! - [`call`](crate::Pipeline::call) for a call with settings of its own: its cost in
//!   the rate limiters and its key in keyed limiters
//!   (`pipeline.call().cost(7).key(&user).execute(op)`).
//! - As a tower layer (feature `tower`): `pipeline.layer()`, `breaker.layer()`,
//!   `limiter.layer()` and per-key limiter layers. Requests that are not `Clone` work
//!   with `pipeline.layer().clone_request(|req| ..)`, which copies a request only before
//!   an attempt that may be retried.
//!
//! ```
//! use resilient::{Pipeline, Retry};
//!
//! let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
//! let mut calls = 0;
//! let result = pipeline.execute_blocking(|| {
//!     calls += 1;
//!     if calls == 1 { Err("first attempt fails") } else { Ok(calls) }
//! });
//! assert_eq!(result.unwrap(), 2);
//! ```
//!
//! # 9. Choosing a rate-limiting algorithm
//!
//! All algorithms give the same kind of [`Decision`](crate::ratelimit::Decision) (allowed,
//! limit, remaining, reset, retry after) and plug into the same
//! [`RateLimiter`](crate::RateLimiter). They differ in what "N per period" means at the
//! edges, in memory, and in how they treat bursts.
//!
//! | algorithm | choose it when | trade-off |
//! | --- | --- | --- |
//! | [`Gcra`](crate::ratelimit::Gcra) (`RateLimiter::gcra`) | the default: smooth spacing with a configurable burst | none worth naming: one `u64`, lock-free; waiters reserve their slot, so waiting is fair |
//! | [`TokenBucket`](crate::ratelimit::TokenBucket) | you want refills in steps ("100 tokens every second") | admits a full bucket right after each refill |
//! | [`FixedWindow`](crate::ratelimit::FixedWindow) | the limit is stated per window and must reset at its edges (an API quota) | up to twice the limit across a window boundary |
//! | [`SlidingWindowCounter`](crate::ratelimit::SlidingWindowCounter) | a rolling window in one `u64` | an approximation: exact below the limit, slightly over or under near it (measured in [`ratelimit`](crate::ratelimit)) |
//! | [`SlidingWindowLog`](crate::ratelimit::SlidingWindowLog) | a rolling window that must be exact | memory grows with the limit; a short lock instead of a CAS |
//! | [`Smooth`](crate::ratelimit::Smooth) | Guava semantics: big requests admitted now and paid for later (debt), or a warm-up for a cold backend | a short lock; "burst" means stored permits, not instant capacity |
//!
//! More than one horizon (per second *and* per day)? Give one limiter several limits (a
//! quota). Per user, API key or IP? A [`KeyedLimiter`](crate::ratelimit::KeyedLimiter)
//! keeps one packed state per key and forgets idle keys. Hot paths:
//! [`RateLimiter::allow`](crate::RateLimiter::allow) skips the remaining/reset
//! computation, and the default clock, [`FastClock`](crate::FastClock), reads the CPU's
//! time-stamp counter instead of `std::time::Instant` (inline, in a limiter).
//!
//! Measured speed against `governor` (the packed GCRA and the keyed limiter, on the std
//! and the fast clock) is recorded in `crates/resilient-bench/RESULTS.md` in the
//! repository, with the commands to reproduce it; the memory per key and the sliding
//! window counter's measured error are in the [`ratelimit`](crate::ratelimit) module docs.
//!
//! # 10. Testing code that uses resilience
//!
//! All timing goes through a [`Clock`](crate::Clock) and all jitter through a
//! [`RandomSource`](crate::RandomSource), so tests control both: tokio's paused time (as in
//! this guide; the default [`FastClock`](crate::FastClock) follows it for strategies built
//! after time is paused, as in a `start_paused` test), a
//! [`ManualClock`](crate::ManualClock) that moves only when told, and
//! [`SeededRandom`](crate::SeededRandom). [`testing::Script`](crate::testing::Script) is a
//! flaky operation that returns scripted results.
//!
//! ```
//! use resilient::ratelimit::{Rate, RateLimiter};
//! use resilient::testing::Script;
//! use resilient::{Error, ManualClock, Pipeline, Retry};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // A limiter on a manual clock: time moves only when the test says so.
//! let clock = ManualClock::new();
//! let limiter = RateLimiter::gcra(Rate::per_second(1))
//!     .clock(Arc::new(clock.clone()))
//!     .build()
//!     .unwrap();
//! assert!(limiter.check().allowed);
//! assert!(!limiter.check().allowed);
//! clock.advance(Duration::from_secs(1));
//! assert!(limiter.check().allowed);
//!
//! // A scripted dependency: two failures, then a success.
//! let script = Script::new([Err("down"), Err("down"), Ok(7)]);
//! let pipeline = Pipeline::builder().retry(Retry::immediate().attempts(3)).build().unwrap();
//! let result: Result<i32, Error<&str>> = pipeline.execute(|| script.next()).await;
//! assert_eq!(result.unwrap(), 7);
//! assert_eq!(script.calls(), 3);
//! # }
//! ```
//!
//! # 11. From one process to a fleet
//!
//! Everything in this crate keeps its state **in the process**: a rate limiter, a breaker,
//! a bulkhead or a retry budget in each instance of a service knows only about that
//! instance's calls. Shared state across processes lives in the `resilient-redis` crate
//! (this crate does not depend on it): per-key limits decided by Redis with the same
//! decisions and headers, and a breaker whose phases the fleet shares.
//!
//! The seams it plugs into:
//!
//! - The packed rate-limiting algorithms are pure steps,
//!   [`Algorithm::step`](crate::ratelimit::Algorithm::step)`(state, now, cost) -> (state,
//!   decision)` over one `u64`, written so that a Redis script can mirror them exactly.
//! - A breaker replicates its phases through a
//!   [`RemoteStore`](crate::circuit::RemoteStore): admission decides on the in-process
//!   state (no round trip), transitions are offered to the store, phases decided
//!   elsewhere are adopted, deadlines travel on the store's clock and the failed-recovery
//!   count is shared; half-open probing and sliding windows stay per process.
//!
//! Without a shared store, for a fleet of `n` instances:
//!
//! - **Rate limits**: give each instance `1/n` of the global limit (and of its burst). It
//!   is exact when load is spread evenly, and errs on the safe side (rejecting early)
//!   when it is not; revisit `n` when the fleet scales, or change the rate at runtime with
//!   [`RateLimiter::set_rate`](crate::RateLimiter::set_rate). Per-key limits work per
//!   instance when a key's requests are routed to one instance (sticky routing).
//! - **Circuit breakers**: per-instance breakers are usually what you want: each instance
//!   stops calling a dependency it sees failing, and all of them see it when it is down.
//! - **Bulkheads** protect the instance's own resources and are per process by nature.
//!
//! # 12. Names, configuration files and patterns
//!
//! Two functions cannot share a breaker they each build. The
//! [registry](mod@crate::registry) gives strategies names: `resilient::registry()` builds each
//! named breaker, limiter, bulkhead and pipeline once, on first lookup, and hands every
//! user of the name the same one. `#[resilient::pattern(NAME)]` runs a function through
//! the registry's pipeline; `breaker = NAME` (and `limiter =`, `bulkhead =`) takes one
//! strategy from it into a pipeline the attributes build; a tower service uses
//! `registry().pipeline(NAME)?.layer()`. Declare names with
//! [`names!`](crate::names) so that a misspelling is a compile error.
//!
//! ```
//! use resilient::registry::{self, Registry};
//! use resilient::{CircuitBreaker, Error};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let r = Registry::new();
//! r.define_breaker("inventory", || CircuitBreaker::consecutive_failures(1).build()).unwrap();
//! let first = registry::builder().circuit_breaker(&r.breaker("inventory").unwrap()).build().unwrap();
//! let second = registry::builder().circuit_breaker(&r.breaker("inventory").unwrap()).build().unwrap();
//! let _ = first.execute(|| async { Err::<(), _>("down") }).await;
//! // opened through the first pipeline, open for the second
//! let r2: Result<(), Error<&str>> = second.execute(|| async { Ok(()) }).await;
//! assert!(matches!(r2, Err(Error::CircuitOpen { .. })));
//! # }
//! ```
//!
//! With feature `config`, a TOML file (or any serde format) describes named breakers,
//! limiters, bulkheads and pipelines ([`registry::config`](mod@crate::registry)); loading
//! validates all of it before adding anything, and an error names the file, the line and
//! the field. `resilient check FILE` does the same from the command line and prints each
//! pipeline's stages.
//!
//! ```
//! # #[cfg(feature = "config")] {
//! let err = resilient::registry::Registry::new()
//!     .load_toml("[pipelines.search]\nretry = { attempts = 0 }\n", "app.toml")
//!     .unwrap_err();
//! assert_eq!((err.line(), err.field()), (Some(2), "pipelines.search.retry.attempts"));
//! # }
//! ```
//!
//! *Patterns* are pipelines built from parameters: `registry().pipeline("network(attempts
//! = 5)")`. The built-in ones ([`registry::builtin`](crate::registry::builtin)) are
//! `network` (transient I/O errors by kind, exponential backoff with full jitter, a retry
//! budget), `http` (feature `http`: 408/429/502-504 and `Retry-After`) and `parsing`
//! (feature `json`: JSON output repaired, or the call retried when repair cannot help).
//! Any crate registers more with [`register_pattern!`](crate::register_pattern); they are
//! found by name in every program that links the crate, with no registration call.
//!
//! # 13. Graceful degradation
//!
//! Three builder steps keep answering when a dependency is slow or down, each also a
//! standalone type, a tower layer and an attribute:
//!
//! - [`.health_aware(&check)`](crate::PipelineBuilder::health_aware): a background probe
//!   ([`HealthAware`](crate::health::HealthAware)) rejects calls fast, with
//!   [`Error::Unhealthy`](crate::Error::Unhealthy), while the dependency is unhealthy
//!   (`#[resilient::health_aware(check_interval = "30s", probe = ping)]`);
//! - [`.hedge(..)`](crate::PipelineBuilder::hedge) with `.idempotent(true)`: a slow attempt
//!   gets a second one after a delay, the first answer wins and the other is dropped; each
//!   hedge passes the per-attempt guards and draws from the retry budget
//!   (`#[resilient::hedge(delay = "50ms", idempotent = true)]`);
//! - [`.fallback(..)`](crate::PipelineBuilder::fallback): a chain of alternatives
//!   ([`Fallback`](crate::fallback::Fallback)) answers whatever the pipeline gave up on,
//!   rejections and timeouts included (`#[resilient::fallback(with = cache, value = 0)]`).
//!   Count its events: a fallback that hides every failure hides the outage too.
//!
//! For several regions or endpoints, see [`failover`](crate::failover); for the last good
//! answer per key, [`StaleCache`](crate::fallback::StaleCache); for a concurrency limit that
//! follows latency, [`BulkheadBuilder::adaptive`](crate::BulkheadBuilder::adaptive).
//!
//! ```
//! use resilient::fallback::Fallback;
//! use resilient::health::HealthAware;
//! use resilient::hedge::Hedge;
//! use resilient::{Error, Pipeline, Retry, Timeout};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let health = HealthAware::builder(Duration::from_secs(30), || async { true }).build().unwrap();
//! let pipeline = Pipeline::builder()
//!     .timeout(Timeout::request(Duration::from_secs(2)))
//!     .health_aware(&health)
//!     .retry(Retry::immediate().attempts(2))
//!     .hedge(Hedge::delayed(Duration::from_millis(100)).build().unwrap())
//!     .idempotent(true)
//!     .fallback(Fallback::builder().or_value("cached".to_string()).build().unwrap())
//!     .build()
//!     .unwrap();
//! assert_eq!(pipeline.stages()[0], "fallback(outermost)");
//! let mut attempts = 0;
//! let r: Result<String, Error<()>> = pipeline
//!     .execute(|| {
//!         attempts += 1;
//!         let first = attempts == 1;
//!         async move {
//!             if first {
//!                 std::future::pending::<()>().await; // stuck: hedged after 100 ms
//!             }
//!             Ok("live".to_string())
//!         }
//!     })
//!     .await;
//! assert_eq!(r.unwrap(), "live");
//! # }
//! ```
//!
//! # 14. Telemetry: events, traces, metrics, dashboards
//!
//! Every strategy reports what it did as one kind of [`Event`](crate::telemetry::Event)
//! (a call or an attempt ended, a retry was scheduled, the retry budget refused one, a
//! timeout fired, a guard admitted, queued or rejected a call, a breaker changed state,
//! a fallback or a hedge was used) to the observer of the pipeline
//! ([`PipelineBuilder::observer`](crate::PipelineBuilder::observer)). A pipeline without
//! an observer pays nothing for this: no allocation and no clock read on its calls.
//!
//! ```
//! use resilient::telemetry::{CallOutcome, Event, EventKind};
//! use resilient::{CircuitBreaker, Error, Pipeline, Retry};
//! use std::sync::{Arc, Mutex};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let seen = log.clone();
//! let breaker = CircuitBreaker::consecutive_failures(2).name("db").build().unwrap();
//! let p = Pipeline::builder()
//!     .name("orders")
//!     .tag("team", "checkout")
//!     .retry(Retry::immediate().attempts(2))
//!     .circuit_breaker(&breaker)
//!     .observer(move |e: &Event<'_>| match &e.kind {
//!         EventKind::BreakerTransition { from, to, .. } => {
//!             seen.lock().unwrap().push(format!("{}: breaker {from} -> {to}", e.pipeline))
//!         }
//!         EventKind::CallFinished { outcome, attempts, .. } => {
//!             seen.lock().unwrap().push(format!("{}: {outcome} after {attempts}", e.pipeline))
//!         }
//!         _ => {}
//!     })
//!     .build()
//!     .unwrap();
//! let r: Result<(), Error<&str>> = p.execute(|| async { Err("down") }).await;
//! assert!(r.is_err());
//! assert_eq!(
//!     *log.lock().unwrap(),
//!     ["orders: breaker closed -> open", "orders: failure after 2"]
//! );
//! # }
//! ```
//!
//! The backends are observers too, each behind a cargo feature:
//!
//! - `tracing`: [`telemetry::tracing::Tracing`](crate::telemetry) opens a span per call
//!   (`resilient.call`) and per attempt (`resilient.attempt`) with the pipeline's name,
//!   tags, deadline and attempt number, and logs every event inside them; with
//!   `tracing-opentelemetry` they become OpenTelemetry spans.
//! - `prometheus`: `telemetry::prometheus::PrometheusMetrics` keeps the instruments in a
//!   `prometheus-client` registry; `render()` gives the text format and `service()` a tower
//!   service to mount at `/metrics`.
//! - `opentelemetry`: `telemetry::otel::OtelMetrics` records the same instruments on an
//!   OpenTelemetry `Meter`.
//!
//! Both metric backends export one set of instruments, listed with their units and labels
//! in [`telemetry::metrics`](crate::telemetry::metrics): calls and attempts by outcome,
//! attempts per call, call and attempt durations, retries and the retry budget, timeouts,
//! guard admissions, rejections and waits, breaker state, failure rate and transitions,
//! bulkhead occupancy, fallbacks and hedges. The repository's
//! `dashboards/resilient.json` is a Grafana dashboard over them, and `resilient dashboard`
//! (the `resilient-cli` crate; `resilient demo` serves it too) shows a live page of them
//! without any other service.
//!
//! Hedges and fallbacks run outside a pipeline's engine: give them
//! [`hedge_observer`](crate::telemetry::hedge_observer) and
//! [`fallback_observer`](crate::telemetry::fallback_observer) to report to the same
//! observer.
//!
//! # 15. Operations: reloads, experiments, retry costs, chaos
//!
//! Four tools for running resilience in production rather than writing it:
//!
//! - **Hot reload** (feature `reload`): a [`LiveConfig`](crate::registry::reload) loads
//!   named pipelines from a configuration file and replaces them while they serve, when
//!   the file changes (`live.watch(path)`) or on an API call (`live.reload(config, ..)`).
//!   Calls in flight finish on their settings; breakers, limiters and bulkheads that did
//!   not change keep their state, and a limiter whose rate changed keeps its units in use.
//!   An invalid file is rejected with its line and field, and the old settings go on
//!   serving.
//! - **A/B tests** ([`experiment`](crate::experiment)): route a share of calls (or of keys)
//!   to a candidate pipeline and let [`Experiment::report`](crate::experiment::Experiment::report)
//!   say, with its confidence, whether it is better; or run the candidate in shadow mode,
//!   where it only watches and says what it would have rejected or retried.
//! - **Retry costs** ([`CostBudget`](crate::retry::CostBudget)): charge each retry a cost
//!   (tokens, money) against a budget per tenant that refills over time; one tenant's
//!   retry storm spends only its own budget and ends with
//!   [`Error::CostBudgetExhausted`](crate::Error::CostBudgetExhausted).
//! - **Chaos** ([`chaos`](crate::chaos)): inject faults, wrong outcomes, latency and
//!   rejections at seeded rates, switchable at run time and from configuration, to check
//!   that the pipeline does what you think it does.
//!
//! ```
//! use resilient::chaos::Chaos;
//! use resilient::retry::CostBudget;
//! use resilient::{Error, Pipeline, Retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Every attempt fails (injected); each tenant may spend 3 retries, refilled at 1 per second.
//! let chaos = Chaos::builder().seed(1).fault_rate(1.0).build().unwrap();
//! let budget = CostBudget::builder(3, 1.0).per_key(10_000).build().unwrap();
//! let p = Pipeline::builder()
//!     .retry(Retry::immediate().attempts(10).cost_budget(budget))
//!     .build()
//!     .unwrap();
//! let op = chaos.inject(|| async { Ok::<u32, &str>(1) }, || "injected");
//! let err = p.call().key("tenant-a").execute(op).await.unwrap_err();
//! assert!(matches!(err, Error::CostBudgetExhausted { attempts: 4, .. }));
//! // another tenant's retries go on
//! chaos.set_enabled(false);
//! let op = chaos.inject(|| async { Ok::<u32, &str>(2) }, || "injected");
//! assert_eq!(p.call().key("tenant-b").execute(op).await, Ok(2));
//! # }
//! ```
