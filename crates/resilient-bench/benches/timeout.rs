//! Success-path overhead of an operation timeout around a future that is ready at once:
//! `resilient`'s `Timeout::operation` in a `Pipeline`, as its own tower layer
//! (`Timeout::layer`) and as a pipeline's layer, against tower's
//! `Timeout` (its documented use: `ServiceBuilder::timeout`) and a bare
//! `tokio::time::timeout`.
//!
//! Every contender runs the same operation on one current-thread tokio runtime; each sample
//! runs its `iters` calls inside one `block_on`.
//!
//! Run: `cargo bench -p resilient-bench --bench timeout -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Pipeline, Timeout};
use resilient_bench::{calls, op, runtime};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const LIMIT: Duration = Duration::from_secs(5);

fn timeout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("operation_timeout");

    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });
    g.bench_function("tokio_timeout", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| tokio::time::timeout(LIMIT, op(i))))
    });

    let pipeline = Pipeline::builder()
        .timeout(Timeout::operation(LIMIT))
        .build()
        .unwrap();
    assert_eq!(rt.block_on(pipeline.execute(|| op(7))).unwrap(), 7);
    g.bench_function("resilient_pipeline", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| pipeline.execute(|| op(i))))
    });

    let mut layered = ServiceBuilder::new()
        .layer(Timeout::operation(LIMIT).layer())
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

    let mut tower_timeout = ServiceBuilder::new().timeout(LIMIT).service(service_fn(op));
    assert_eq!(rt.block_on(tower_timeout.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("tower_timeout", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                tower_timeout.ready().await.unwrap().call(i).await
            })
        })
    });
    g.finish();
}

criterion_group!(benches, timeout);
criterion_main!(benches);
