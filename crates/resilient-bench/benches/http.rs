//! Success-path overhead of `resilient::http::middleware::RetryMiddleware` on a real HTTP
//! request: a GET to an axum server on loopback, with plain `reqwest`, with a
//! `reqwest_middleware` client without middleware, and with the retry middleware (the
//! standard preset: retry, budget, per-attempt and total timeouts).
//!
//! Server and client share one current-thread tokio runtime; every sample runs its `iters`
//! requests back to back inside one `block_on` (keep-alive connection, body read).
//!
//! Run: `cargo bench -p resilient-bench --bench http -- --warm-up-time 1 --measurement-time 5`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::http::middleware::RetryMiddleware;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let url = rt.block_on(async {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/")
    });
    let plain = reqwest::Client::new();
    let bare = reqwest_middleware::ClientBuilder::new(plain.clone()).build();
    let retrying = reqwest_middleware::ClientBuilder::new(plain.clone())
        .with(RetryMiddleware::standard())
        .build();
    // each contender answers before timing
    rt.block_on(async {
        for body in [
            plain.get(&url).send().await.unwrap().text().await.unwrap(),
            bare.get(&url).send().await.unwrap().text().await.unwrap(),
            retrying
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        ] {
            assert_eq!(body, "ok");
        }
    });

    let mut g = c.benchmark_group("http_get");
    g.bench_function("reqwest", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = plain.get(&url).send().await.unwrap();
                    std::hint::black_box(r.bytes().await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("reqwest_middleware_empty", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = bare.get(&url).send().await.unwrap();
                    std::hint::black_box(r.bytes().await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("resilient_middleware", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = retrying.get(&url).send().await.unwrap();
                    std::hint::black_box(r.bytes().await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
