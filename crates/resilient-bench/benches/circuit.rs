//! Closed-state overhead per call of `resilient`'s circuit breaker, side by side with
//! failsafe, recloser and tower-resilience's breaker, in one run.
//!
//! Every breaker is configured to its closest equivalent (failure rate 50% over the last
//! 100 calls where the crate has it; failsafe's default consecutive-failures policy) and
//! every call succeeds, so the numbers are the pure cost of admitting and recording one
//! call. Async calls complete on the first poll (a no-op waker drives them) so that no
//! executor cost is added to the breaker's.
//!
//! Run: `cargo bench -p resilient-bench --bench circuit -- --warm-up-time 1 --measurement-time 3`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use resilient::circuit::Window;
use resilient::{CircuitBreaker, Error, Pipeline};
use tower::{Service, ServiceBuilder, service_fn};

/// Polls `f` to completion with a no-op waker (the futures here never wait).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn rate_breaker() -> CircuitBreaker {
    CircuitBreaker::failure_rate(0.5)
        .window(Window::count(100))
        .build()
        .unwrap()
}

fn sync_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("circuit_closed_sync");
    g.bench_function("baseline_no_breaker", |b| {
        b.iter(|| Ok::<u64, ()>(black_box(1)))
    });
    let ours = rate_breaker();
    g.bench_function("resilient_rate", |b| {
        b.iter(|| ours.call_blocking(|| Ok::<u64, ()>(black_box(1))))
    });
    let consecutive = CircuitBreaker::consecutive_failures(5).build().unwrap();
    g.bench_function("resilient_consecutive", |b| {
        b.iter(|| consecutive.call_blocking(|| Ok::<u64, ()>(black_box(1))))
    });
    let fs = failsafe::Config::new().build();
    g.bench_function("failsafe", |b| {
        b.iter(|| failsafe::CircuitBreaker::call(&fs, || Ok::<u64, ()>(black_box(1))))
    });
    let rc = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .build();
    g.bench_function("recloser", |b| {
        b.iter(|| rc.call(|| Ok::<u64, ()>(black_box(1))))
    });
    g.finish();
}

/// A blocking fn under `#[resilient::circuit]` (failure rate 50% over the last 100 calls),
/// against recloser's `call` with the same policy.
#[resilient::circuit(failure_rate = 0.5, window = 100)]
fn guarded(x: u64) -> Result<u64, ()> {
    Ok(black_box(x))
}

fn macro_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("circuit_macro_sync");
    assert_eq!(guarded(7), Ok(7));
    g.bench_function("resilient_macro", |b| b.iter(|| guarded(black_box(1))));
    let rc = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .build();
    g.bench_function("recloser", |b| {
        b.iter(|| rc.call(|| Ok::<u64, ()>(black_box(1))))
    });
    g.finish();
}

/// An open breaker's rejection: ours in a `Pipeline` (async and blocking) and standalone,
/// against failsafe's (opened the same way: one failure, then a break of an hour).
fn open_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("circuit_open");
    let ours = CircuitBreaker::consecutive_failures(1)
        .open_for(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let _ = ours.call_blocking(|| Err::<u64, ()>(()));
    assert!(!ours.is_ready());
    let pipeline = Pipeline::builder().circuit_breaker(&ours).build().unwrap();
    g.bench_function("resilient_pipeline", |b| {
        b.iter(|| {
            let r: Result<u64, Error<()>> = now(pipeline.execute(|| async { Ok(black_box(1)) }));
            r
        })
    });
    g.bench_function("resilient_pipeline_blocking", |b| {
        b.iter(|| {
            let r: Result<u64, Error<()>> = pipeline.execute_blocking(|| Ok(black_box(1)));
            r
        })
    });
    g.bench_function("resilient_standalone_blocking", |b| {
        b.iter(|| ours.call_blocking(|| Ok::<u64, ()>(black_box(1))))
    });
    let fs = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            1,
            failsafe::backoff::constant(std::time::Duration::from_secs(3600)),
        ))
        .build();
    let _ = failsafe::CircuitBreaker::call(&fs, || Err::<u64, ()>(()));
    assert!(!failsafe::CircuitBreaker::is_call_permitted(&fs));
    g.bench_function("failsafe", |b| {
        b.iter(|| {
            now(failsafe::futures::CircuitBreaker::call(
                &fs,
                std::future::ready(Ok::<u64, ()>(black_box(1))),
            ))
        })
    });
    g.bench_function("failsafe_blocking", |b| {
        b.iter(|| failsafe::CircuitBreaker::call(&fs, || Ok::<u64, ()>(black_box(1))))
    });
    g.finish();
}

fn async_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("circuit_closed_async");
    let ours = rate_breaker();
    g.bench_function("resilient_rate", |b| {
        b.iter(|| now(ours.call(|| std::future::ready(Ok::<u64, ()>(black_box(1))))))
    });
    let pipeline = Pipeline::builder().circuit_breaker(&ours).build().unwrap();
    g.bench_function("resilient_pipeline", |b| {
        b.iter(|| {
            let r: Result<u64, Error<()>> = now(pipeline.execute(|| async { Ok(black_box(1)) }));
            r
        })
    });
    let fs = failsafe::Config::new().build();
    g.bench_function("failsafe", |b| {
        b.iter(|| {
            now(failsafe::futures::CircuitBreaker::call(
                &fs,
                std::future::ready(Ok::<u64, ()>(black_box(1))),
            ))
        })
    });
    let rc = recloser::AsyncRecloser::from(
        recloser::Recloser::custom()
            .error_rate(0.5)
            .closed_len(100)
            .build(),
    );
    g.bench_function("recloser", |b| {
        b.iter(|| now(rc.call(std::future::ready(Ok::<u64, ()>(black_box(1))))))
    });
    g.finish();
}

/// The same calls with the result consumed at once (`is_ok`), as callers usually do: this
/// separates the breaker's cost from the cost of moving each crate's error type around
/// (`resilient::Error<()>` is 32 bytes, recloser's and failsafe's are 1 to 8).
fn consumed_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("circuit_closed_consumed");
    let ours = rate_breaker();
    g.bench_function("resilient_rate_sync", |b| {
        b.iter(|| ours.call_blocking(|| Ok::<u64, ()>(black_box(1))).is_ok())
    });
    g.bench_function("resilient_rate_async", |b| {
        b.iter(|| {
            now(async {
                ours.call(|| std::future::ready(Ok::<u64, ()>(black_box(1))))
                    .await
                    .is_ok()
            })
        })
    });
    let rc = recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .build();
    g.bench_function("recloser_sync", |b| {
        b.iter(|| rc.call(|| Ok::<u64, ()>(black_box(1))).is_ok())
    });
    let arc = recloser::AsyncRecloser::from(
        recloser::Recloser::custom()
            .error_rate(0.5)
            .closed_len(100)
            .build(),
    );
    g.bench_function("recloser_async", |b| {
        b.iter(|| {
            now(async {
                arc.call(std::future::ready(Ok::<u64, ()>(black_box(1))))
                    .await
                    .is_ok()
            })
        })
    });
    g.finish();
}

fn tower_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("circuit_closed_tower");
    let inner = service_fn(|x: u64| async move { Ok::<u64, std::io::Error>(x) });

    let mut ours = ServiceBuilder::new()
        .layer(rate_breaker().layer())
        .service(inner);
    g.bench_function("resilient_layer", |b| {
        b.iter(|| {
            now(std::future::poll_fn(|cx| ours.poll_ready(cx))).unwrap();
            now(ours.call(black_box(1))).unwrap()
        })
    });

    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap();
    let mut theirs = ServiceBuilder::new().layer(layer).service(inner);
    g.bench_function("tower_resilience", |b| {
        b.iter(|| {
            now(std::future::poll_fn(|cx| theirs.poll_ready(cx))).unwrap();
            now(theirs.call(black_box(1))).unwrap()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    sync_calls,
    macro_calls,
    open_calls,
    async_calls,
    consumed_calls,
    tower_calls
);
criterion_main!(benches);
