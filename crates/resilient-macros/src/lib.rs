//! Attribute macros for [resilient](https://docs.rs/resilient): `#[resilient::retry]`,
//! `#[resilient::timeout]`, `#[resilient::bulkhead]`, `#[resilient::circuit]`,
//! `#[resilient::rate_limit]`, `#[resilient::fallback]`, `#[resilient::hedge]` and
//! `#[resilient::health_aware]`.
//!
//! Use them through the `resilient` crate (its default `macros` feature re-exports them);
//! the generated code names `::resilient`, so this crate is not meant to be used alone.
//!
//! The attributes' shared rules follow (each attribute's page repeats them).
//!
#![forbid(unsafe_code)]
#![doc = include_str!("../doc/attributes.md")]
#![warn(missing_docs)]

use proc_macro::TokenStream;

// Adding a strategy (say `circuit`): a parser module in `strategy/` producing a `Stage`
// (its phase and builder call), its row in `strategy::KINDS`, an entry point below, and its
// name in the `pub use resilient_macros::{..}` of `resilient`.
mod args;
mod duration;
mod expand;
mod strategy;

/// Retries the function: the body runs again after a failed attempt, up to `attempts`
/// times in all, with backoff waits between attempts.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `attempts` | total attempts, first included (`>= 1`) | `3` |
/// | `backoff` | `exponential("100ms")`, `constant("1s")`, `linear("100ms", "50ms")` (initial, step), `immediate` | `exponential("100ms")` |
/// | `factor` | growth of an exponential backoff (`>= 1`) | `2.0` |
/// | `max_delay` | caps each wait | `"60s"` |
/// | `max_elapsed` | stops retrying when the time since the first attempt plus the next wait would exceed it | none |
/// | `jitter` | `none`, `full`, `equal`, `decorrelated`, `proportional(0.2)` | `none` |
/// | `retry_on_timeout` | whether an attempt that hit the operation timeout is retried (needs one); `false` for operations that are not idempotent | `true` |
/// | `retry_rejected` | whether an attempt a per-attempt guard rejected (an open `scope = attempt` breaker, a rate limiter) is retried, after the rejection's `retry_after` | `false` |
/// | `honor_retry_after` | `true`: an error implementing `resilient::RetryAfter` directs the next wait instead of the backoff (also spelled `honour_retry_after`) | `false` |
/// | `max_server_delay` | caps a wait the result or a rejection asks for; a longer one stops retrying | `"60s"` |
/// | `on_retry` | a function `fn(&resilient::RetryEvent<'_>)` (`on_retry = log_retry`) or a closure, called before each retry wait with the attempt, the delay and the reason (logging, metrics) | none |
/// | `classify` | a type implementing `resilient::Classify<T, E>` and `Default` (`classify = my::Transient`), a function `fn(&Result<T, E>) -> resilient::Outcome` (`classify = by_status`: a path whose last segment starts with a lowercase letter) or a closure that captures nothing (`classify = \|r\| ...`): it judges every result, for the retry and for a stacked breaker | every `Err` is a failure |
/// | `retry_if` | a function `fn(&Result<T, E>) -> bool` or a closure that captures nothing: whether an attempt is retried, whatever it counts as for a stacked breaker (`classify` still judges that) | failures are retried |
/// | `delay_from` | a function `fn(&Result<T, E>) -> Option<Duration>` or a closure that captures nothing: a server-directed wait read from any result, `Ok` included (a 429 or 503 response with `Retry-After`); `Some(d)` replaces the backoff, bounded by `max_server_delay` | none |
///
/// The retry runs inside the request timeout and outside the operation timeout of a
/// stacked `#[resilient::timeout]`, and after the per-call guards (a stacked
/// `#[resilient::bulkhead]`, a `scope = call` breaker or rate limiter). The error after
/// the last failed attempt is `Error::RetriesExhausted { attempts, last }`. A plan whose
/// least total wait already reaches a stacked request timeout is a compile error.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static CALLS: AtomicU32 = AtomicU32::new(0);
///
/// #[resilient::retry(attempts = 3, backoff = exponential("1ms"), jitter = full)]
/// async fn fetch_user(id: u64) -> Result<String, std::io::Error> {
///     if CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
///         return Err(std::io::Error::other("flaky"));
///     }
///     Ok(format!("user {id}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // The caller sees `Result<String, resilient::Error<std::io::Error>>`.
/// let user: Result<String, resilient::Error<std::io::Error>> = fetch_user(7).await;
/// assert_eq!(user.unwrap(), "user 7");
/// assert_eq!(CALLS.load(Ordering::SeqCst), 3);
/// # }
/// ```
///
/// Only some errors retried, and the server's `Retry-After` honoured:
///
/// ```
/// use std::time::Duration;
/// use resilient::{Classify, Outcome, RetryAfter};
///
/// #[derive(Debug, Clone)]
/// enum ApiError {
///     Throttled(Duration),
///     NotFound,
/// }
///
/// impl RetryAfter for ApiError {
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             ApiError::Throttled(d) => Some(*d),
///             ApiError::NotFound => None,
///         }
///     }
/// }
///
/// /// A 404 is an answer, not a failure: neither retried nor counted.
/// #[derive(Default)]
/// struct NotFoundIsAnAnswer;
///
/// impl<T> Classify<T, ApiError> for NotFoundIsAnAnswer {
///     fn classify(&self, r: &Result<T, ApiError>) -> Outcome {
///         match r {
///             Ok(_) => Outcome::Success,
///             Err(ApiError::NotFound) => Outcome::Ignored,
///             Err(_) => Outcome::Failure,
///         }
///     }
/// }
///
/// #[resilient::retry(attempts = 3, classify = NotFoundIsAnAnswer, honor_retry_after = true,
///                    max_server_delay = "5s")]
/// async fn get(id: u64) -> Result<String, ApiError> {
///     if id == 0 { Err(ApiError::NotFound) } else { Ok(format!("item {id}")) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert!(matches!(get(0).await, Err(resilient::Error::Inner(ApiError::NotFound))));
/// # }
/// ```
///
/// Plain (blocking) functions and `&self` methods work too:
///
/// ```
/// struct Parser;
///
/// impl Parser {
///     #[resilient::retry(attempts = 2, backoff = immediate)]
///     fn parse(&self, text: &str) -> Result<u32, std::num::ParseIntError> {
///         text.trim().parse()
///     }
/// }
///
/// assert_eq!(Parser.parse(" 42 ").unwrap(), 42);
/// assert!(matches!(
///     Parser.parse("x"),
///     Err(resilient::Error::RetriesExhausted { attempts: 2, .. })
/// ));
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn retry(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("retry", attr.into(), item.into()).into()
}

/// Bounds the function in time: `operation` bounds each attempt, `request` the whole call
/// (attempts, backoff waits and queueing included), `circuit` is the breakers' time scale.
///
/// | key | value |
/// | --- | --- |
/// | `operation` | per attempt, e.g. `"5s"` |
/// | `request` | whole call, e.g. `"30s"` |
/// | `circuit` | breaker time scale, e.g. `"300s"` |
///
/// At least one is required, and `operation <= request <= circuit` (checked at compile
/// time, as are a stacked retry plan against `request` and a stacked breaker's `open_for`
/// and time window against `circuit`). A timeout ends the call with `Error::Timeout { scope, elapsed }`; an attempt
/// that hits the operation timeout is retried like a failed one when `#[resilient::retry]`
/// is stacked. Plain (blocking) functions cannot be interrupted: see
/// `Pipeline::execute_blocking`.
///
/// ```
/// use std::time::Duration;
/// use resilient::{Error, TimeoutScope};
///
/// #[resilient::timeout(operation = "10ms", request = "1s")]
/// #[resilient::retry(attempts = 2, backoff = immediate)]
/// async fn slow() -> Result<(), std::convert::Infallible> {
///     tokio::time::sleep(Duration::from_secs(1)).await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Each of the two attempts times out after 10 ms.
/// assert!(matches!(
///     slow().await,
///     Err(Error::Timeout { scope: TimeoutScope::Operation, .. })
/// ));
/// # }
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn timeout(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("timeout", attr.into(), item.into()).into()
}

/// Caps how many calls of the function run at once, across all callers (the bulkhead lives
/// in the function's pipeline, shared by every call). A call is admitted once, outside the
/// retry loop: its retries keep its slot.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `max_concurrent` | calls running at once (`>= 1`), required | |
/// | `queue` | callers that may wait for a slot (async functions) | `0` (reject at once) |
/// | `max_wait` | longest a queued caller waits (needs `queue >= 1`) | no limit |
/// | `adaptive` | `aimd(initial, min)`, `gradient2(initial, min)` or `vegas(initial, min)`: the limit starts at `initial` and moves between `min` and `max_concurrent` with the calls' latency and failures (`resilient::bulkhead::Aimd`, `Gradient2`, `Vegas`) | fixed at `max_concurrent` |
/// | `bulkhead` | a bulkhead in `resilient::registry()` (`bulkhead = "db"`, or a constant declared with `resilient::names!`) or a `static` of yours holding a `Bulkhead`, shared by every user; alone | built from the keys above |
///
/// A call that finds no slot and no queue room, or whose wait runs out, fails with
/// `Error::BulkheadFull`. Plain (blocking) functions never wait: they are rejected when
/// no slot is free, so `queue` and `max_wait` on them are compile errors. Among the
/// per-call guards the bulkhead comes last (innermost): a breaker or rate limiter that
/// rejects a call does so before it takes a slot.
///
/// ```
/// #[resilient::bulkhead(max_concurrent = 10, queue = 100, max_wait = "1s")]
/// async fn query(sql: &str) -> Result<usize, std::io::Error> {
///     Ok(sql.len())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(query("select 1").await.unwrap(), 8);
/// # }
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn bulkhead(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("bulkhead", attr.into(), item.into()).into()
}

/// Puts a circuit breaker in front of the function, shared by all its calls: after too many
/// failures it rejects calls at once with `Error::CircuitOpen { retry_after }` for a while,
/// then lets probe calls through to test recovery.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `failure_rate` | open when this fraction of the window failed, `(0, 1]` | one or both of the two |
/// | `consecutive_failures` | open after this many failures in a row | one or both of the two |
/// | `window` | a number of calls (`20`) or a time span (`"60s"`) | `100` calls |
/// | `minimum_calls` | calls needed before the rate is judged (at most a count window) | a count window's size (100 by default), 10 for a time window |
/// | `open_for` | how long it stays open before probing | `"30s"` |
/// | `max_open_for` | cap of the break, which doubles after each failed recovery | no growth |
/// | `break_jitter` | shortens each break by a random share up to this fraction, `[0, 1]` | `0` |
/// | `half_open_probes` | probe calls let through when half-open | `1` |
/// | `required_successes` | successful probes needed to close (at most `half_open_probes`) | all of them |
/// | `max_half_open_wait` | reopens if half-open has not concluded within this | no limit |
/// | `slow_call` / `slow_rate` | calls slower than `slow_call` count as slow; open when `slow_rate` of them are (adds to `failure_rate` / `consecutive_failures`) | off |
/// | `scope` | `call`: a logical call counts once, retries included; `attempt`: every attempt counts (`per` is the old name of this key) | `call` |
/// | `breaker` | a `static` of yours holding the breaker (`LazyLock<CircuitBreaker>`), for snapshots, manual control or sharing; or a name in `resilient::registry()` (`breaker = "payments"`, or a constant declared with `resilient::names!`), shared by every user of the name; only `scope` goes with it | built from the keys above |
///
/// A breaker built from the keys is named after the function (`module::path::name`).
/// Among the guards of its phase the breaker comes first: when it is open, a call is
/// rejected before it uses up a rate-limit unit or a bulkhead slot.
///
/// ```
/// #[resilient::circuit(failure_rate = 0.5, window = 20, open_for = "30s")]
/// async fn fetch(id: u64) -> Result<u64, std::io::Error> {
///     Ok(id)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(fetch(3).await.unwrap(), 3);
/// # }
/// ```
///
/// A breaker of yours, to look at or to force open:
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use resilient::{CircuitBreaker, CircuitState, Error};
///
/// static PAYMENTS: LazyLock<CircuitBreaker> = LazyLock::new(|| {
///     CircuitBreaker::consecutive_failures(5)
///         .open_for(Duration::from_secs(30))
///         .name("payments")
///         .build()
///         .expect("valid breaker")
/// });
///
/// #[resilient::circuit(breaker = PAYMENTS)]
/// async fn pay(cents: u64) -> Result<u64, std::io::Error> {
///     Ok(cents)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(pay(100).await.unwrap(), 100);
/// PAYMENTS.isolate();
/// assert_eq!(PAYMENTS.state(), CircuitState::Isolated);
/// assert!(matches!(pay(100).await, Err(Error::CircuitOpen { .. })));
/// # }
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn circuit(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("circuit", attr.into(), item.into()).into()
}

/// Rate-limits the function: one limiter, shared by every call (it lives in the function's
/// pipeline). Over the limit, a call fails at once with
/// `Error::RateLimited { retry_after, .. }`, or, with `max_wait`, waits for capacity up to that
/// long first.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `rate` | units admitted per `per` (`>= 1`), required | |
/// | `per` | the period of `rate`, e.g. `"1s"`, `"1m"` | `"1s"` |
/// | `algorithm` | `gcra`, `token_bucket`, `fixed_window`, `sliding_log`, `sliding_window` | `gcra` |
/// | `burst` | total capacity (`gcra`: burst; `token_bucket`: bucket size, refilled by `rate` every `per`) | `rate` |
/// | `cost` | units each call (or attempt) takes, at most the capacity (`burst`, or `rate` for the window algorithms) | `1` |
/// | `max_wait` | wait mode: wait up to this long for capacity (async functions only), then reject | reject at once |
/// | `scope` | `attempt`: every attempt of a stacked `#[resilient::retry]` is limited; `call`: a logical call is limited once, its retries included | `attempt` |
/// | `key` | limit each key on its own (per user, tenant, API key, IP): an argument's name (`key = user`) or an expression over the arguments (`key = req.tenant`), of any `Hash` type | one limit for all calls |
/// | `max_keys` | with `key`: the most keys held at once (idle keys are dropped first, then those with the least in use) | `1_000_000` |
/// | `limiter` | a limiter in `resilient::registry()` (`limiter = "api"`, or a constant declared with `resilient::names!`) or a `static` of yours holding a `RateLimiter`, shared by every user; only `scope` goes with it | built from the keys above |
///
/// The algorithms are those of `resilient::ratelimit`: `gcra` (continuous token bucket),
/// `token_bucket` (refills `rate` units at every `per` boundary), `fixed_window`,
/// `sliding_log` (exact) and `sliding_window` (the weighted counter approximation); the
/// window algorithms admit `rate` units per window of length `per`. With the default
/// `scope = attempt`, a limiter under `#[resilient::retry]` counts every attempt, so
/// retries use up the rate too, and an attempt the limiter rejects ends the call with
/// `Error::RateLimited`; with `scope = call` the call takes one unit before its first
/// attempt, however many attempts it makes. (The default differs from a breaker's on
/// purpose: a limiter protects the callee from every request sent, retries included.)
/// In wait mode, a waiting call whose future is dropped gives its reservation back; plain
/// (blocking) functions never wait: they are rejected with `Error::RateLimited` when they
/// would have to, so `max_wait` on them is a compile error. Among the guards of its phase
/// the limiter comes after a breaker and before the bulkhead.
///
/// With `key`, the function has one keyed limiter (a `resilient::ratelimit::KeyedLimiter`,
/// in its pipeline), and every key gets the limit on its own: each call is limited under
/// the value of `key`, taken from the call's arguments before the first attempt and
/// hashed (`resilient::Call::key`): it may be any `Hash` value, borrowed (nothing is
/// cloned or stored but its 64-bit hash, computed with a seed drawn once per process).
/// Values that hash alike are one key: `&str` and `String` of the same text, `&T` and
/// `T`. Two different keys share a limit only if their hashes collide (for a million keys,
/// about one chance in 37 million that any two do). `cost` is charged to the key
/// (`resilient::Call::cost`). `sliding_log` cannot be keyed. Rejections carry the key's
/// limit state (`Error::rate_limit_info`) like the unkeyed limiter's.
///
/// ```
/// use resilient::Error;
///
/// #[resilient::rate_limit(rate = 2, per = "1s")]
/// async fn search(q: &str) -> Result<usize, std::io::Error> {
///     Ok(q.len())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(search("a").await.unwrap(), 1);
/// assert_eq!(search("bb").await.unwrap(), 2);
/// // The third call within the second is over the limit.
/// let third = search("ccc").await.unwrap_err();
/// assert!(matches!(third, Error::RateLimited { retry_after: Some(_), .. }));
/// # }
/// ```
///
/// Wait mode, a larger burst, and a limit per logical call:
///
/// ```
/// #[resilient::rate_limit(algorithm = gcra, rate = 100, per = "1s", burst = 20,
///                         max_wait = "500ms", scope = call)]
/// #[resilient::retry(attempts = 3, backoff = immediate)]
/// async fn send(n: u32) -> Result<u32, std::io::Error> {
///     Ok(n)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(send(5).await.unwrap(), 5);
/// # }
/// ```
///
/// A limit per user:
///
/// ```
/// use resilient::Error;
///
/// #[resilient::rate_limit(rate = 1, per = "1m", key = user)]
/// async fn export(user: &str, format: &str) -> Result<String, std::io::Error> {
///     Ok(format!("{user}.{format}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(export("ada", "csv").await.unwrap(), "ada.csv");
/// // ada's next export is a minute away; bob has his own limit
/// let again = export("ada", "json").await.unwrap_err();
/// assert!(matches!(again, Error::RateLimited { retry_after: Some(_), .. }));
/// assert_eq!(again.rate_limit_info().unwrap().remaining, 0);
/// assert_eq!(export("bob", "csv").await.unwrap(), "bob.csv");
/// # }
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn rate_limit(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("rate_limit", attr.into(), item.into()).into()
}

/// Answers a failed call from alternatives, tried in order: the outermost phase, around the
/// whole pipeline of the function's other attributes (request timeout, retries and guards
/// included). Runs the same `resilient::fallback::Fallback` the builder does.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `with` | an async function `async fn(resilient::Error<E>) -> Result<T, resilient::Error<E>>` given the failure (another service, a cache), or a list of them tried in order (`with = [secondary, cache]`) | |
/// | `value` | a constant answer (cloned for each use; `T: Clone`), tried after every `with` | |
/// | `handle` | a function or closure `Fn(&resilient::Error<E>) -> bool`: which failures are answered | every failure but the caller's cancellation |
///
/// At least one of `with` and `value` is needed; `async` functions only. When every
/// alternative fails too, the caller gets `Error::Fallback { failures }`, each failure in
/// order.
///
/// ```
/// use resilient::Error;
///
/// async fn from_cache(_failure: Error<String>) -> Result<u32, Error<String>> {
///     Err(Error::Inner("cache miss".to_string()))
/// }
///
/// #[resilient::circuit(consecutive_failures = 1, open_for = "1m")]
/// #[resilient::fallback(with = from_cache, value = 0)]
/// async fn price(item: u32) -> Result<u32, String> {
///     Err(format!("pricing service down for {item}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(price(7).await.unwrap(), 0); // failed, cache missed, the constant answers
/// assert_eq!(price(7).await.unwrap(), 0); // the breaker is open now: same answer
/// # }
/// ```
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn fallback(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("fallback", attr.into(), item.into()).into()
}

/// Hedges the function's attempts: while an attempt runs, more attempts of the same call
/// start (after `delay`, all at once, or after a failure), up to `max_hedges`; the first
/// success wins and the others are dropped at once. Hedges are attempts of the function's
/// one pipeline: each passes the per-attempt guards (a `scope = attempt` breaker, a rate
/// limiter) and the operation timeout of a stacked `#[resilient::timeout]` on its own, and
/// the retry loop of a stacked `#[resilient::retry]` retries an attempt whose hedges all
/// failed. Runs the builder's `PipelineBuilder::hedge` step.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `idempotent` | must be `true`: the function runs more than once at the same time | required |
/// | `delay` | time before each hedge (`mode = delayed`); with `percentile`, until enough latencies are known | required in delayed mode |
/// | `percentile` | hedge after this quantile of recent latencies instead (`0.95`), learned from the calls | none |
/// | `mode` | `delayed`, `parallel` (every attempt at once) or `fallback` (the next once the previous failed) | `delayed` |
/// | `max_hedges` | hedges beside the original attempt (`<= 64`) | `1` |
///
/// `async` functions only.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static STARTED: AtomicU32 = AtomicU32::new(0);
///
/// #[resilient::retry(attempts = 2, backoff = immediate)]
/// #[resilient::hedge(mode = parallel, max_hedges = 1, idempotent = true)]
/// async fn lookup(key: u32) -> Result<u32, std::io::Error> {
///     if STARTED.fetch_add(1, Ordering::SeqCst) == 0 {
///         std::future::pending::<()>().await; // the first attempt is stuck
///     }
///     Ok(key * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(lookup(21).await.unwrap(), 42); // the hedge answered
/// assert_eq!(STARTED.load(Ordering::SeqCst), 2);
/// # }
/// ```
///
/// A delayed hedge: `#[resilient::hedge(delay = "50ms", max_hedges = 2, idempotent = true)]`;
/// one whose delay follows the 95th percentile of recent latencies (50 ms until it knows):
/// `#[resilient::hedge(percentile = 0.95, delay = "50ms", idempotent = true)]`.
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn hedge(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("hedge", attr.into(), item.into()).into()
}

/// Runs the function through the registry's pipeline of that name: a pipeline defined in
/// `resilient::registry()` (in code or a configuration file) or a pattern's spelling
/// (`"network(attempts = 5)"`). Every function (and tower service) using the name shares
/// that pipeline: its breaker, limiter and bulkhead.
///
/// | key | value | default |
/// | --- | --- | --- |
/// | (first, no key) or `name` | the name: a string (`"payments"`) or a path to a name declared with `resilient::names!` (a misspelt path is a compile error) | required |
/// | `classify` | the classifier type of a pipeline not built with `resilient::registry::builder()` (`resilient::http::HttpPolicy` for the `http` pattern): a typed lookup | `resilient::registry::Classifier` |
/// | `registry` | a `static` holding a `resilient::registry::Registry` to look the name up in | `resilient::registry()` |
///
/// The lookup happens on the first call; an unknown name (or one whose definition does
/// not build) panics on every call with the registry's error, which lists the known
/// names. Only `#[resilient::fallback]` goes with it (the pipeline brings everything
/// else). The function's `T` and `E` must be `'static` (the registry's classifier judges
/// them at run time).
///
/// Elsewhere, `#[resilient::circuit(breaker = "payments")]`,
/// `#[resilient::rate_limit(limiter = "api")]` and `#[resilient::bulkhead(bulkhead =
/// "db")]` take one strategy from the registry into a pipeline the attributes build.
///
/// ```
/// use resilient::registry;
/// use resilient::{CircuitBreaker, Retry};
///
/// resilient::names! {
///     /// The payment provider.
///     pub PAYMENTS = "payments";
/// }
///
/// #[resilient::pattern(PAYMENTS)]
/// async fn charge(cents: u64) -> Result<u64, std::io::Error> {
///     Ok(cents)
/// }
///
/// #[resilient::circuit(breaker = PAYMENTS)]
/// async fn refund(cents: u64) -> Result<u64, std::io::Error> {
///     Ok(cents)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// registry().define_breaker(PAYMENTS, || CircuitBreaker::consecutive_failures(5).build()).unwrap();
/// registry().define_pipeline(PAYMENTS, |r| {
///     Ok(registry::builder()
///         .circuit_breaker(&r.breaker(PAYMENTS)?)
///         .retry(Retry::immediate().attempts(2))
///         .build()?)
/// }).unwrap();
/// assert_eq!(charge(250).await.unwrap(), 250);
/// assert_eq!(refund(100).await.unwrap(), 100);
/// # }
/// ```
///
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn pattern(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("pattern", attr.into(), item.into()).into()
}

/// Gates the function on a background health check: while it says the dependency is
/// unhealthy, calls are rejected fast with `resilient::Error::Unhealthy` without running
/// the body, and a stacked `#[resilient::fallback]` answers them instead. The check is
/// admitted first, once per call, before a breaker, rate limiter or bulkhead. Runs the
/// builder's `PipelineBuilder::health_aware` step (`resilient::health::HealthAware`).
///
/// | key | value | default |
/// | --- | --- | --- |
/// | `check_interval` | time between probes | required |
/// | `probe` | an async function (or a closure returning a future) whose output is `bool` (`true` = healthy) or a `Result` (`Ok` = healthy) | required |
/// | `timeout` | the longest one probe may take (an overrun counts as failed) | `check_interval` |
/// | `unhealthy_after` | failed probes in a row that make the check reject calls | `3` |
/// | `healthy_after` | successful probes in a row that make it admit calls again | `2` |
/// | `reject_when_degraded` | whether a degraded verdict (probes disagree) rejects too | `false` |
///
/// `async` functions only: the check runs on the tokio runtime of the first call.
///
/// ```
/// async fn ping() -> bool {
///     true // e.g. GET /health
/// }
///
/// #[resilient::health_aware(check_interval = "30s", probe = ping, unhealthy_after = 2)]
/// #[resilient::fallback(value = 0)]
/// async fn quote(item: u32) -> Result<u32, String> {
///     Ok(item * 100)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(quote(3).await.unwrap(), 300);
/// # }
/// ```
#[doc = include_str!("../doc/attributes.md")]
#[proc_macro_attribute]
pub fn health_aware(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand("health_aware", attr.into(), item.into()).into()
}
