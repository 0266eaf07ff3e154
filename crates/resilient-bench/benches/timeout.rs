//! Success-path overhead of an operation timeout around a future that is ready at once:
//! `resilient`'s `Timeout::operation` in a `Pipeline` and as a tower layer, against tower's
//! `Timeout` (its documented use: `ServiceBuilder::timeout`) and a bare
//! `tokio::time::timeout`.
//!
//! Every contender runs the same operation on one current-thread tokio runtime; each sample
//! runs its `iters` calls inside one `block_on`.
//!
//! Run: `cargo bench -p resilient-bench --bench timeout -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Pipeline, Timeout};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Fail;

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail")
    }
}

impl std::error::Error for Fail {}

async fn op(x: u64) -> Result<u64, Fail> {
    Ok(black_box(x))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Times `iters` sequential calls of `$call` (an async expression using `$i`) inside one
/// `block_on`.
macro_rules! calls {
    ($rt:expr, $iters:expr, |$i:ident| $call:expr) => {
        $rt.block_on(async {
            let start = Instant::now();
            for n in 0..$iters {
                let $i = black_box(n);
                let _ = black_box($call.await);
            }
            start.elapsed()
        })
    };
}

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
        .layer(pipeline.layer())
        .service(service_fn(op));
    assert_eq!(rt.block_on(layered.clone().oneshot(7)).unwrap(), 7);
    g.bench_function("resilient_layer", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                layered.ready().await.unwrap().call(i).await
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
