//! Success-path overhead of a bulkhead with free slots: `resilient`'s `Bulkhead` standalone,
//! in a `Pipeline` and as a tower layer, side by side with tower's `ConcurrencyLimit` (its
//! documented use: `ServiceBuilder::concurrency_limit`) and a bare tokio `Semaphore`.
//!
//! Every contender runs the same operation (an `async fn` that returns `Ok` at once) on one
//! current-thread tokio runtime; each sample runs its `iters` calls inside one `block_on`.
//!
//! Run: `cargo bench -p resilient-bench --bench bulkhead -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Bulkhead, Pipeline};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const SLOTS: usize = 10;

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
