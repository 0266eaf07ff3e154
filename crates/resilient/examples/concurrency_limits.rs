//! Scenario: a dependency that serves at most 10 requests at a time. Callers share a
//! bulkhead of 10 with a queue of 100, each attempt has 250 ms, each call 1 s in all
//! (queueing included), and a slow attempt is retried. Written twice, once with the builder
//! and once with attributes; both run the same engine and end the same way.
//!
//! Run with `cargo run --example concurrency_limits`; `cargo test --example
//! concurrency_limits` runs its tests on tokio's paused clock.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use resilient::{Bulkhead, ConfigError, Error, Pipeline, Retry, Timeout, TimeoutScope};
use tokio::time::Instant;

/// How many requests the backend serves at once, and how many callers may wait.
const MAX_CONCURRENT: usize = 10;
const QUEUE: usize = 100;
/// The budget of one attempt and of a whole call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A backend that answers in 100 ms, except that the first request for every tenth id
/// hangs. It records how many requests it served at once.
#[derive(Default)]
struct Backend {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    requests: AtomicU32,
    seen: Mutex<HashSet<u64>>,
}

#[derive(Debug, Clone, PartialEq)]
struct BackendError;

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend error")
    }
}

impl std::error::Error for BackendError {}

/// Counts a request in flight until dropped (a timed-out attempt is dropped mid-way).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    async fn get(&self, id: u64) -> Result<String, BackendError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.in_flight);
        self.peak.fetch_max(now, Ordering::SeqCst);
        let first = self.seen.lock().unwrap().insert(id);
        if first && id.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(format!("item {id}"))
    }
}

/// The builder style.
fn pipeline() -> Result<Pipeline, ConfigError> {
    Pipeline::builder()
        .name("inventory")
        // the whole call, waiting in the bulkhead's queue included
        .timeout(Timeout::request(CALL_TIMEOUT))
        // per call: 10 at a time, 100 waiting, the rest turned away at once
        .bulkhead(Bulkhead::builder(MAX_CONCURRENT).queue(QUEUE))
        // exponential from 100 ms with full jitter, 3 attempts
        .retry(Retry::default())
        // each attempt
        .timeout(Timeout::operation(ATTEMPT_TIMEOUT))
        .build()
}

/// The attribute style: the same strategies, one pipeline.
#[resilient::timeout(request = "1s", operation = "250ms")]
#[resilient::bulkhead(max_concurrent = 10, queue = 100)]
#[resilient::retry(attempts = 3, backoff = exponential("100ms"), jitter = full)]
async fn fetch_item(backend: &'static Backend, id: u64) -> Result<String, BackendError> {
    backend.get(id).await
}

/// What became of the calls.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    ok: usize,
    /// turned away by the full bulkhead
    rejected: usize,
    /// out of time before an answer
    timed_out: usize,
    /// of which out of the call's whole budget (most of them still queued)
    out_of_budget: usize,
    /// the longest call
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, result: &Result<String, Error<BackendError>>, took: Duration) {
        match result {
            Ok(_) => self.ok += 1,
            Err(Error::BulkheadFull) => self.rejected += 1,
            // out of time while queued or running (`TimeoutScope::Request`), or an attempt
            // cut at 250 ms with too little of the call's second left to try again
            // (`TimeoutScope::Operation`)
            Err(Error::Timeout { scope, .. }) => {
                self.timed_out += 1;
                if *scope == TimeoutScope::Request {
                    self.out_of_budget += 1;
                }
            }
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
        self.slowest = self.slowest.max(took);
    }
}

/// `callers` calls at once through `call`, and what became of them.
async fn burst<F, Fut>(callers: u64, call: F) -> Tally
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<String, Error<BackendError>>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|id| {
            let call = call(id);
            tokio::spawn(async move {
                let result = call.await;
                (result, start.elapsed())
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        let (result, took) = task.await.expect("no task panics");
        tally.add(&result, took);
    }
    tally
}

async fn builder_style(backend: &'static Backend, callers: u64) -> Result<Tally, ConfigError> {
    let pipeline = pipeline()?;
    Ok(burst(callers, |id| {
        let pipeline = pipeline.clone();
        async move { pipeline.execute(|| backend.get(id)).await }
    })
    .await)
}

async fn attribute_style(backend: &'static Backend, callers: u64) -> Tally {
    burst(callers, |id| fetch_item(backend, id)).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for style in ["builder", "attributes"] {
        let backend: &'static Backend = Box::leak(Box::default());
        let tally = match style {
            "builder" => builder_style(backend, 150).await?,
            _ => attribute_style(backend, 150).await,
        };
        println!(
            "{style}: 150 callers at once -> {} answered, {} turned away by the bulkhead, \
             {} out of time; {} backend requests, at most {} at once; slowest call {:?}",
            tally.ok,
            tally.rejected,
            tally.timed_out,
            backend.requests.load(Ordering::SeqCst),
            backend.peak.load(Ordering::SeqCst),
            tally.slowest,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute's bulkhead is one per function, shared by every test in this binary:
    /// the tests that call `fetch_item` take turns.
    static FETCH_ITEM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// What both styles must show: at most 10 requests at the backend at once, exactly 40
    /// callers turned away at once, hung attempts cut at 250 ms and retried, and no call
    /// longer than its 1 s budget (the queue is too long to drain in a second, so some
    /// callers run out of time while waiting).
    fn check(tally: &Tally, backend: &Backend) {
        assert_eq!(tally.ok + tally.rejected + tally.timed_out, 150);
        assert_eq!(tally.rejected, 150 - MAX_CONCURRENT - QUEUE);
        assert!(backend.peak.load(Ordering::SeqCst) <= MAX_CONCURRENT);
        assert_eq!(backend.peak.load(Ordering::SeqCst), MAX_CONCURRENT);
        assert!(tally.out_of_budget > 0, "{tally:?}");
        assert!(tally.ok >= 50, "{tally:?}");
        assert!(tally.slowest <= CALL_TIMEOUT, "{tally:?}");
        // every tenth id hung once and was retried
        let requests = backend.requests.load(Ordering::SeqCst) as usize;
        assert!(requests > tally.ok, "{requests} requests for {tally:?}");
        assert_eq!(backend.in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn builder_style_holds_the_limits() {
        let backend: &'static Backend = Box::leak(Box::default());
        let tally = builder_style(backend, 150).await.unwrap();
        check(&tally, backend);
    }

    #[tokio::test(start_paused = true)]
    async fn attribute_style_holds_the_limits() {
        let _turn = FETCH_ITEM.lock().await;
        let backend: &'static Backend = Box::leak(Box::default());
        let tally = attribute_style(backend, 150).await;
        check(&tally, backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_first_attempt_is_retried_within_the_call_budget() {
        let _turn = FETCH_ITEM.lock().await;
        let backend: &'static Backend = Box::leak(Box::default());
        let start = Instant::now();
        assert_eq!(fetch_item(backend, 20).await.unwrap(), "item 20");
        let took = start.elapsed();
        // 250 ms cut, a backoff of at most 100 ms, then 100 ms
        assert!(took >= Duration::from_millis(350) && took <= Duration::from_millis(450));
        assert_eq!(backend.requests.load(Ordering::SeqCst), 2);
    }
}
