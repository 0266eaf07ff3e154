//! `N` success-path calls of one contender of the bulkhead, adaptive-bulkhead and timeout
//! benches, for counting instructions under valgrind: the difference between two `N`
//! cancels the set-up, leaving the cost per call, free of the load of a shared machine.
//!
//! Run: `valgrind --tool=cachegrind --cache-sim=no target/release/examples/layer_calls CASE N`
//! with CASE one of `bare`, `bare_service`, `bulkhead_layer`, `adaptive_layer`, `bulkhead_pipeline`,
//! `bulkhead_pipeline_layer`, `tower_concurrency_limit`, `timeout_layer`,
//! `timeout_pipeline`, `tower_timeout`.

use std::time::Duration;

use resilient::bulkhead::Aimd;
use resilient::{Bulkhead, Pipeline, Timeout};
use resilient_bench::{calls, op, runtime};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const SLOTS: usize = 10;
const LIMIT: Duration = Duration::from_secs(5);

/// Runs `n` calls through a tower service.
macro_rules! through {
    ($rt:expr, $n:expr, $svc:expr) => {{
        let mut svc = $svc;
        calls!($rt, $n, |i| async {
            svc.ready().await.unwrap().call(i).await
        })
    }};
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("bulkhead_layer", String::as_str);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = runtime();
    let fixed = || Bulkhead::builder(SLOTS).build().unwrap();
    let took = match which {
        "bare" => calls!(rt, n, |i| op(i)),
        "bare_service" => through!(rt, n, service_fn(op)),
        "bulkhead_layer" => through!(
            rt,
            n,
            ServiceBuilder::new()
                .layer(fixed().layer())
                .service(service_fn(op))
        ),
        "adaptive_layer" => through!(
            rt,
            n,
            ServiceBuilder::new()
                .layer(
                    Bulkhead::builder(SLOTS)
                        .adaptive(Aimd::new(SLOTS, 1, SLOTS))
                        .build()
                        .unwrap()
                        .layer()
                )
                .service(service_fn(op))
        ),
        "bulkhead_pipeline" => {
            let p = Pipeline::builder().bulkhead(fixed()).build().unwrap();
            calls!(rt, n, |i| p.execute(|| op(i)))
        }
        "bulkhead_pipeline_layer" => {
            let p = Pipeline::builder().bulkhead(fixed()).build().unwrap();
            through!(
                rt,
                n,
                ServiceBuilder::new()
                    .layer(p.layer())
                    .service(service_fn(op))
            )
        }
        "tower_concurrency_limit" => through!(
            rt,
            n,
            ServiceBuilder::new()
                .concurrency_limit(SLOTS)
                .service(service_fn(op))
        ),
        "timeout_layer" => through!(
            rt,
            n,
            ServiceBuilder::new()
                .layer(Timeout::operation(LIMIT).layer())
                .service(service_fn(op))
        ),
        "timeout_pipeline" => {
            let p = Pipeline::builder()
                .timeout(Timeout::operation(LIMIT))
                .build()
                .unwrap();
            calls!(rt, n, |i| p.execute(|| op(i)))
        }
        "tower_timeout" => through!(
            rt,
            n,
            ServiceBuilder::new().timeout(LIMIT).service(service_fn(op))
        ),
        other => panic!("unknown case {other}"),
    };
    println!("{which}: {n} calls in {took:?}");
}
