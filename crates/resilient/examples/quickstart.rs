//! Drives a flaky simulated service through a pipeline and prints what happened.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::circuit::Window;
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = Arc::new(FlakyService {
        rng: SeededRandom::new(2024),
        calls: AtomicU32::new(0),
    });
    let retries = Arc::new(AtomicU32::new(0));
    let counter = retries.clone();

    // Counts every attempt (it sits after `.retry`): opens when half of the last 20 failed.
    let breaker = CircuitBreaker::failure_rate(0.5)
        .window(Window::count(20))
        .minimum_calls(10)
        .open_for(Duration::from_millis(30))
        .build()?;

    let pipeline = Pipeline::builder()
        .name("get_user")
        .timeout(Timeout::request(Duration::from_millis(400)))
        .guard(Bulkhead::new(8).queue(16).build()?)
        .retry(
            Retry::exponential(Duration::from_millis(10))
                .attempts(4)
                .jitter(Jitter::Equal)
                .rng(Arc::new(SeededRandom::new(7)))
                .budget(RetryBudget::builder(0.5).build()?),
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
                    "    attempt {} failed ({why}); retrying in {:?}",
                    ev.attempt, ev.delay
                );
            },
        )
        .build()?;

    println!("pipeline stages: {:?}\n", pipeline.stages());
    let (mut ok, mut failed) = (0, 0);
    for id in 1..=12 {
        // callers arrive every 10 ms
        tokio::time::sleep(Duration::from_millis(10)).await;
        println!("call {id}:");
        let svc = service.clone();
        let result: Result<String, Error<ServiceError>> = pipeline
            .execute(|| {
                let svc = svc.clone();
                async move { svc.get_user(id).await }
            })
            .await;
        match result {
            Ok(user) => {
                ok += 1;
                println!("  -> ok: {user}");
            }
            Err(e) => {
                failed += 1;
                println!("  -> error: {}", report(&e));
            }
        }
    }
    println!(
        "\n{ok} succeeded, {failed} failed, {} service calls, {} retries",
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
