//! Success-path overhead of graceful degradation (issue 11): a pipeline with a fallback
//! step (no fallback used) and with hedging (no hedge fired) against the same pipeline
//! without them, and an adaptive bulkhead (AIMD) against tower's `ConcurrencyLimit`.
//!
//! Every contender runs the same operation (an `async fn` that returns `Ok` at once) on one
//! current-thread tokio runtime; each sample runs its `iters` calls inside one `block_on`.
//!
//! Run: `cargo bench -p resilient-bench --bench degrade -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::bulkhead::Aimd;
use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::{Bulkhead, Pipeline, Retry};
use resilient_bench::{Fail, calls, op, runtime};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const SLOTS: usize = 10;

/// The pipeline every variant extends: a retry policy (never used), the engine's direct
/// path, so that what the steps add is not lost in a timer's cost.
fn base() -> resilient::PipelineBuilder {
    Pipeline::builder().retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
}

fn degrade(c: &mut Criterion) {
    let rt = runtime();

    // Fallback and hedge on the success path: the same pipeline with and without them.
    let mut g = c.benchmark_group("degrade");
    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });
    let plain = base().build().unwrap();
    assert_eq!(rt.block_on(plain.execute(|| op(7))).unwrap(), 7);
    g.bench_function("pipeline", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| plain.execute(|| op(i))))
    });
    let with_fallback = base()
        .fallback(
            Fallback::<u64, Fail>::builder()
                .or_value(0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(rt.block_on(with_fallback.execute(|| op(7))).unwrap(), 7);
    g.bench_function("pipeline_fallback", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| with_fallback.execute(|| op(i))))
    });
    let hedged = base()
        .hedge(Hedge::delayed(Duration::from_millis(50)).build().unwrap())
        .idempotent(true)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(hedged.execute(|| op(7))).unwrap(), 7);
    g.bench_function("pipeline_hedge", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| hedged.execute(|| op(i))))
    });
    let both = base()
        .hedge(Hedge::delayed(Duration::from_millis(50)).build().unwrap())
        .idempotent(true)
        .fallback(
            Fallback::<u64, Fail>::builder()
                .or_value(0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(rt.block_on(both.execute(|| op(7))).unwrap(), 7);
    g.bench_function("pipeline_hedge_fallback", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| both.execute(|| op(i))))
    });
    g.finish();

    // The adaptive bulkhead's success path against tower's concurrency limit.
    let mut g = c.benchmark_group("adaptive_bulkhead");
    let adaptive = Bulkhead::builder(SLOTS)
        .adaptive(Aimd::new(SLOTS, 1, SLOTS))
        .build()
        .unwrap();
    assert_eq!(rt.block_on(adaptive.call(|| op(7))).unwrap(), 7);
    g.bench_function("resilient_standalone", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| adaptive.call(|| op(i))))
    });
    let mut layered = ServiceBuilder::new()
        .layer(
            Bulkhead::builder(SLOTS)
                .adaptive(Aimd::new(SLOTS, 1, SLOTS))
                .build()
                .unwrap()
                .layer(),
        )
        .service(service_fn(op));
    assert_eq!(rt.block_on(layered.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("resilient_layer", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                layered.ready().await.unwrap().call(i).await
            })
        })
    });
    let mut tower_limit = ServiceBuilder::new()
        .concurrency_limit(SLOTS)
        .service(service_fn(op));
    assert_eq!(rt.block_on(tower_limit.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("tower_concurrency_limit", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                tower_limit.ready().await.unwrap().call(i).await
            })
        })
    });
    g.finish();
}

criterion_group!(benches, degrade);
criterion_main!(benches);
