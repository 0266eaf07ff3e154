//! Zero cost of telemetry when nobody listens: the pipeline success path (retry and
//! timeouts, a breaker, a bulkhead) without an observer, built once without the telemetry
//! features and once with them (`--features telemetry`: `resilient/tracing` and
//! `resilient/prometheus`). The group is named after the build so both land side by side
//! in `target/criterion/telemetry_{off,on}/`.
//!
//! Run (crates/resilient-bench/RESULTS.md, "Telemetry"):
//! `cargo bench -p resilient-bench --bench telemetry -- --warm-up-time 1 --measurement-time 3`
//! and the same with `--features telemetry`, in both profiles (`--profile bench-lto`).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Bulkhead, CircuitBreaker, Pipeline, Retry, Timeout};
use resilient_bench::{calls, op, runtime};

fn telemetry(c: &mut Criterion) {
    let rt = runtime();
    let group = if cfg!(feature = "telemetry") {
        "telemetry_on"
    } else {
        "telemetry_off"
    };
    let mut g = c.benchmark_group(group);
    let retry = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(30)))
        .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(5)))
        .build()
        .unwrap();
    let guarded = Pipeline::builder()
        .circuit_breaker(CircuitBreaker::consecutive_failures(5))
        .bulkhead(Bulkhead::builder(10))
        .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
        .build()
        .unwrap();
    g.bench_function("retry_timeouts", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| retry.execute(|| op(i))))
    });
    g.bench_function("breaker_bulkhead_retry", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| guarded.execute(|| op(i))))
    });
    g.finish();
}

criterion_group!(benches, telemetry);
criterion_main!(benches);
