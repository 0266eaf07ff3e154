//! Drives a flaky simulated service through a pipeline and prints what happened.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::circuit::{CircuitEvent, Window};
use resilient::{
    Bulkhead, CircuitBreaker, Error, FailedAttempt, Jitter, Pipeline, RandomSource, Retry,
    RetryBudget, RetryEvent, SeededRandom, Timeout,
};

/// A pretend remote service: fails often, sometimes hangs.
struct FlakyService {
    rng: SeededRandom,
    calls: AtomicU32,
}

#[derive(Debug)]
enum ServiceError {
    Unavailable,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("503 service unavailable")
    }
}

impl std::error::Error for ServiceError {}

/// An error and its sources, each message once ("gave up after 4 attempts: 503 ...").
fn report(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out = format!("{out}: {cause}");
        next = cause.source();
    }
    out
}

impl FlakyService {
    async fn get_user(&self, id: u64) -> Result<String, ServiceError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let roll = self.rng.next_f64();
        if roll < 0.35 {
            Err(ServiceError::Unavailable)
        } else if roll < 0.45 {
            // hangs far longer than the operation timeout
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(format!("user-{id} (late)"))
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(format!("user-{id}"))
        }
    }
}

/// What became of each call, by kind.
#[derive(Default, Debug)]
struct Tally {
    ok: u32,
    service_error: u32,
    timeout: u32,
    circuit_open: u32,
    bulkhead_full: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = Arc::new(FlakyService {
        rng: SeededRandom::new(2024),
        calls: AtomicU32::new(0),
    });
    let retries = Arc::new(AtomicU32::new(0));
    let counter = retries.clone();

    // Counts every attempt (it sits after `.retry`): opens when half of the last 20 failed,
    // and prints each change of state as it happens.
    let breaker = CircuitBreaker::failure_rate(0.5)
        .name("user-service")
        .window(Window::count(20))
        .minimum_calls(10)
        .open_for(Duration::from_millis(30))
        .observer(|name: &str, event: &CircuitEvent| {
            if let CircuitEvent::StateTransition { from, to, reason } = event {
                println!("    [breaker {name}] {from:?} -> {to:?} ({reason:?})");
            }
        })
        .build()?;
    // Retries may add at most 50% to the calls made (plus a floor of 2 a second): when the
    // service is down, retries stop before they double its load.
    let budget = RetryBudget::builder(0.5).min_per_sec(2).build()?;

    let pipeline = Pipeline::builder()
        .name("get_user")
        .timeout(Timeout::request(Duration::from_millis(400)))
        // At most 4 calls in flight and 2 waiting; the rest are turned away at once.
        .bulkhead(Bulkhead::builder(4).queue(2))
        .retry(
            Retry::exponential(Duration::from_millis(10))
                .attempts(4)
                .jitter(Jitter::Equal)
                .rng(Arc::new(SeededRandom::new(7)))
                .budget(budget.clone()),
        )
        .circuit_breaker(&breaker)
        .timeout(Timeout::operation(Duration::from_millis(50)))
        // Sees why each retried attempt failed: the service's own error, the timeout, or a
        // guard's rejection.
        .on_retry(
            move |ev: &RetryEvent<'_>, failed: FailedAttempt<'_, String, ServiceError>| {
                counter.fetch_add(1, Ordering::Relaxed);
                let why = match failed {
                    FailedAttempt::Error(e) => e.to_string(),
                    FailedAttempt::Timeout(after) => format!("timed out after {after:?}"),
                    other => format!("{other:?}"),
                };
                println!(
                    "    call attempt {} failed ({why}); retrying in {:?}",
                    ev.attempt, ev.delay
                );
            },
        )
        .build()?;

    println!("pipeline stages: {:?}\n", pipeline.stages());
    let mut tally = Tally::default();
    // Four waves of 8 callers arriving together, 60 ms apart.
    for wave in 1..=4u64 {
        println!("wave {wave}: 8 callers at once");
        let calls: Vec<_> = (1..=8u64)
            .map(|i| {
                let svc = service.clone();
                let pipeline = pipeline.clone();
                let id = wave * 100 + i;
                tokio::spawn(async move {
                    let result: Result<String, Error<ServiceError>> = pipeline
                        .execute(|| {
                            let svc = svc.clone();
                            async move { svc.get_user(id).await }
                        })
                        .await;
                    (id, result)
                })
            })
            .collect();
        for call in calls {
            let (id, result) = call.await?;
            match &result {
                Ok(_) => tally.ok += 1,
                Err(Error::Timeout { .. }) => tally.timeout += 1,
                Err(Error::CircuitOpen { .. }) => tally.circuit_open += 1,
                Err(Error::BulkheadFull) => tally.bulkhead_full += 1,
                Err(_) => tally.service_error += 1,
            }
            match result {
                Ok(user) => println!("  {id} -> ok: {user}"),
                Err(e) => println!("  {id} -> error: {}", report(&e)),
            }
        }
        println!("  retry budget left: {} retries\n", budget.available());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    println!(
        "{tally:?}\n{} service calls, {} retries",
        service.calls.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
    let snapshot = breaker.snapshot();
    println!(
        "breaker: {:?}, failure rate {} over {} calls, {} rejected",
        snapshot.state,
        snapshot
            .failure_rate
            .map_or("not judged yet".to_owned(), |r| format!(
                "{:.0}%",
                r * 100.0
            )),
        snapshot.buffered_calls,
        snapshot.rejected_calls
    );
    Ok(())
}
