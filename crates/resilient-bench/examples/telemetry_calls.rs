//! `N` success-path calls of the telemetry bench's pipelines (no observer), for counting
//! instructions under valgrind (crates/resilient-bench/RESULTS.md, "Telemetry"): the
//! difference between two `N` cancels the set-up, leaving the cost per call, free of the
//! load of a shared machine.
//!
//! Run: `valgrind --tool=cachegrind --cache-sim=no target/release/examples/telemetry_calls
//! PIPELINE N` (build it with and without `--features telemetry`).

use std::time::Duration;

use resilient::{Bulkhead, CircuitBreaker, Pipeline, Retry, Timeout};
use resilient_bench::{op, runtime};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("retry_timeouts", String::as_str);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let p = match which {
        "retry_timeouts" => Pipeline::builder()
            .timeout(Timeout::request(Duration::from_secs(30)))
            .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
            .timeout(Timeout::operation(Duration::from_secs(5)))
            .build()
            .unwrap(),
        _ => Pipeline::builder()
            .circuit_breaker(CircuitBreaker::consecutive_failures(5))
            .bulkhead(Bulkhead::builder(10))
            .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
            .build()
            .unwrap(),
    };
    let rt = runtime();
    let sum = rt.block_on(async {
        let mut sum = 0;
        for i in 0..n {
            sum += p.execute(|| op(i)).await.unwrap();
        }
        sum
    });
    assert_eq!(sum, n * (n.saturating_sub(1)) / 2);
}
