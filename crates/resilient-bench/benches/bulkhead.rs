//! Success-path overhead of a bulkhead with free slots: `resilient`'s `Bulkhead` standalone,
//! in a `Pipeline`, as its own tower layer (`Bulkhead::layer`) and as a pipeline's layer,
//! side by side with tower's `ConcurrencyLimit` (its
//! documented use: `ServiceBuilder::concurrency_limit`) and a bare tokio `Semaphore`.
//!
//! Every contender runs the same operation (an `async fn` that returns `Ok` at once) on one
//! current-thread tokio runtime; each sample runs its `iters` calls inside one `block_on`.
//!
//! Run: `cargo bench -p resilient-bench --bench bulkhead -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Bulkhead, Pipeline};
use resilient_bench::{calls, op, runtime};
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const SLOTS: usize = 10;

fn bulkhead(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("bulkhead");

    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });

    let semaphore = Semaphore::new(SLOTS);
    g.bench_function("tokio_semaphore", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                let _permit = semaphore.try_acquire().expect("free");
                op(i).await
            })
        })
    });

    let standalone = Bulkhead::builder(SLOTS).build().unwrap();
    assert_eq!(rt.block_on(standalone.call(|| op(7))).unwrap(), 7);
    g.bench_function("resilient_standalone", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| standalone.call(|| op(i))))
    });

    let pipeline = Pipeline::builder()
        .bulkhead(Bulkhead::builder(SLOTS))
        .build()
        .unwrap();
    assert_eq!(rt.block_on(pipeline.execute(|| op(7))).unwrap(), 7);
    g.bench_function("resilient_pipeline", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| pipeline.execute(|| op(i))))
    });

    let mut layered = ServiceBuilder::new()
        .layer(Bulkhead::builder(SLOTS).build().unwrap().layer())
        .service(service_fn(op));
    assert_eq!(rt.block_on(layered.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("resilient_layer", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                layered.ready().await.unwrap().call(i).await
            })
        })
    });

    let mut pipeline_layered = ServiceBuilder::new()
        .layer(pipeline.layer())
        .service(service_fn(op));
    assert_eq!(rt.block_on(pipeline_layered.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("resilient_pipeline_layer", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                pipeline_layered.ready().await.unwrap().call(i).await
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

criterion_group!(benches, bulkhead);
criterion_main!(benches);
