//! Runs `N` calls of one engine workload, for instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/engine_costs CASE N`, once with
//! `N = 0` and once with a large `N`; the difference over `N` is the per-call cost.
//!
//! Cases: retry, retry_macro, retry_once, backon, breaker, breaker_open, failsafe_open,
//! circuit_macro, breaker_blocking, recloser, fallback, hedge, stack5.

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use resilient::circuit::Window;
use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::ratelimit::{Rate, RateLimiter};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, Timeout};
use resilient_bench::{Fail, op, runtime};

#[resilient::retry(attempts = 3, backoff = exponential("1ms"))]
async fn op_macro(x: u64) -> Result<u64, Fail> {
    Ok(black_box(x))
}

#[resilient::circuit(failure_rate = 0.5, window = 100)]
fn guarded(x: u64) -> Result<u64, ()> {
    Ok(black_box(x))
}

fn base() -> resilient::PipelineBuilder {
    Pipeline::builder().retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
}

fn rate_breaker() -> CircuitBreaker {
    CircuitBreaker::failure_rate(0.5)
        .window(Window::count(100))
        .build()
        .unwrap()
}

fn run_async<F: Future>(n: u64, mut f: impl FnMut(u64) -> F) {
    let rt = runtime();
    rt.block_on(async {
        for i in 0..n {
            black_box(f(black_box(i)).await);
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("retry");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match case {
        "retry" => {
            let p = base().build().unwrap();
            run_async(n, |i| p.execute(move || op(i)));
        }
        "retry_macro" => run_async(n, op_macro),
        "retry_once" => {
            let p = Pipeline::builder()
                .retry(Retry::immediate().attempts(3))
                .build()
                .unwrap();
            run_async(n, |i| {
                let mut first = true;
                p.execute(move || {
                    let fail = std::mem::take(&mut first);
                    async move { if fail { Err(Fail) } else { Ok(black_box(i)) } }
                })
            });
        }
        "backon" => {
            let policy = ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(1))
                .with_max_times(2);
            run_async(n, |i| (move || op(i)).retry(&policy));
        }
        "breaker" => {
            let b = rate_breaker();
            let p = Pipeline::builder().circuit_breaker(&b).build().unwrap();
            run_async(n, |i| {
                p.execute(move || async move { Ok::<u64, ()>(black_box(i)) })
            });
        }
        "breaker_open" => {
            let b = CircuitBreaker::consecutive_failures(1)
                .open_for(Duration::from_secs(3600))
                .build()
                .unwrap();
            let _ = b.call_blocking(|| Err::<u64, ()>(()));
            let p = Pipeline::builder().circuit_breaker(&b).build().unwrap();
            run_async(n, |i| {
                p.execute(move || async move { Ok::<u64, ()>(black_box(i)) })
            });
        }
        "breaker_open_blocking" => {
            let b = CircuitBreaker::consecutive_failures(1)
                .open_for(Duration::from_secs(3600))
                .build()
                .unwrap();
            let _ = b.call_blocking(|| Err::<u64, ()>(()));
            let p = Pipeline::builder().circuit_breaker(&b).build().unwrap();
            for i in 0..n {
                let r: Result<u64, Error<()>> = p.execute_blocking(|| Ok(black_box(i)));
                black_box(r).ok();
            }
        }
        "failsafe_open" => {
            let fs = failsafe::Config::new()
                .failure_policy(failsafe::failure_policy::consecutive_failures(
                    1,
                    failsafe::backoff::constant(Duration::from_secs(3600)),
                ))
                .build();
            let _ = failsafe::CircuitBreaker::call(&fs, || Err::<u64, ()>(()));
            run_async(n, |i| {
                failsafe::futures::CircuitBreaker::call(
                    &fs,
                    std::future::ready(Ok::<u64, ()>(black_box(i))),
                )
            });
        }
        "circuit_macro" => {
            for i in 0..n {
                black_box(guarded(black_box(i))).ok();
            }
        }
        "breaker_blocking" => {
            let b = rate_breaker();
            let p = Pipeline::builder().circuit_breaker(&b).build().unwrap();
            for i in 0..n {
                let r: Result<u64, Error<()>> = p.execute_blocking(|| Ok(black_box(i)));
                black_box(r).ok();
            }
        }
        "recloser" => {
            let rc = recloser::Recloser::custom()
                .error_rate(0.5)
                .closed_len(100)
                .build();
            for i in 0..n {
                black_box(rc.call(|| Ok::<u64, ()>(black_box(i)))).ok();
            }
        }
        "recloser_async" => {
            let rc = recloser::AsyncRecloser::from(
                recloser::Recloser::custom()
                    .error_rate(0.5)
                    .closed_len(100)
                    .build(),
            );
            run_async(n, |i| {
                rc.call(std::future::ready(Ok::<u64, ()>(black_box(i))))
            });
        }
        "fallback" => {
            let p = base()
                .fallback(
                    Fallback::<u64, Fail>::builder()
                        .or_value(0)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            run_async(n, |i| p.execute(move || op(i)));
        }
        "hedge" => {
            let p = base()
                .hedge(Hedge::delayed(Duration::from_millis(50)).build().unwrap())
                .idempotent(true)
                .build()
                .unwrap();
            run_async(n, |i| p.execute(move || op(i)));
        }
        "stack5" => {
            let p = Pipeline::builder()
                .rate_limit(RateLimiter::gcra(Rate::per_second(1_000_000_000)))
                .timeout(Timeout::request(Duration::from_secs(30)))
                .retry(Retry::exponential(Duration::from_millis(1)).attempts(3))
                .circuit_breaker(CircuitBreaker::consecutive_failures(5))
                .bulkhead(Bulkhead::builder(10))
                .build()
                .unwrap();
            run_async(n, |i| p.execute(move || op(i)));
        }
        other => panic!("unknown case {other}"),
    }
}
