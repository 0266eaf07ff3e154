//! Success-path overhead of retry and of retry + timeouts, against a bare call, with
//! `resilient`, `backon` and tower's `retry` side by side on the same operation.
//!
//! Every contender runs the same operation (an `async fn` that returns `Ok` at once) on the
//! same current-thread tokio runtime, and every sample runs its `iters` calls inside one
//! `block_on`, so the numbers are the per-call cost of the wrapper, not of `block_on`.
//!
//! Groups:
//! - `retry`: 3 attempts, exponential backoff (never used: the first attempt succeeds).
//! - `retry_timeout`: the same retry with a per-attempt timeout (tower: `Retry<Timeout<S>>`,
//!   backon: the retried closure wraps the call in `tokio::time::timeout`).
//! - `retry_timeouts`: a whole-call timeout around a retry with a per-attempt timeout
//!   (tower: `Timeout<Retry<Timeout<S>>>`, backon: `tokio::time::timeout` around the retry).
//!
//! Run: `cargo bench -p resilient-bench --bench retry -- --warm-up-time 1 --measurement-time 3`

use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use criterion::{Criterion, criterion_group, criterion_main};
use resilient::{Pipeline, Retry, Timeout};
use resilient_bench::{Fail, calls, op, runtime};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(1);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The error of a timed attempt (for backon, which has no timeout of its own).
#[derive(Debug)]
enum TimedFail {
    #[allow(dead_code)]
    Op(Fail),
    Timeout,
}

/// The operation under a per-attempt timeout, flattened into one error type (backon).
async fn op_timed(x: u64) -> Result<u64, TimedFail> {
    match tokio::time::timeout(OPERATION_TIMEOUT, op(x)).await {
        Ok(r) => r.map_err(TimedFail::Op),
        Err(_) => Err(TimedFail::Timeout),
    }
}

/// A tower retry policy equivalent to the others: 3 attempts, exponential backoff.
#[derive(Clone)]
struct Attempts {
    left: u32,
    delay: Duration,
}

impl Attempts {
    fn new() -> Self {
        Self {
            left: ATTEMPTS - 1,
            delay: FIRST_DELAY,
        }
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.left > 0 => {
                self.left -= 1;
                let d = self.delay;
                self.delay = d.saturating_mul(2);
                Some(tokio::time::sleep(d))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn backon_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_max_times(ATTEMPTS as usize - 1)
}

fn resilient_retry() -> Retry {
    Retry::exponential(FIRST_DELAY).attempts(ATTEMPTS)
}

/// Asserts that a contender returns the operation's value before it is timed.
fn check<F: Future<Output = Result<u64, E>>, E: fmt::Debug>(rt: &Runtime, f: F) {
    assert_eq!(rt.block_on(f).unwrap(), 7);
}

fn retry(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry");

    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });

    let pipeline = Pipeline::builder()
        .retry(resilient_retry())
        .build()
        .unwrap();
    check(&rt, pipeline.execute(|| op(7)));
    g.bench_function("resilient", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| pipeline.execute(|| op(i))))
    });

    check(&rt, op_macro(7));
    g.bench_function("resilient_macro", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op_macro(i)))
    });

    let policy = backon_policy();
    check(&rt, (|| op(7)).retry(policy));
    g.bench_function("backon", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| (|| op(i)).retry(policy)))
    });
    // backon's documented form, `.retry(&builder)` on a builder built once
    check(&rt, (|| op(7)).retry(&policy));
    g.bench_function("backon_ref", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| (|| op(i)).retry(&policy)))
    });

    let mut svc = ServiceBuilder::new()
        .retry(Attempts::new())
        .service(service_fn(op));
    check(&rt, svc.clone().oneshot(7));
    g.bench_function("tower", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                svc.ready().await.unwrap().call(i).await
            })
        })
    });
    g.finish();
}

/// `op` under `#[resilient::retry]` with the same plan (3 attempts, exponential from 1 ms).
#[resilient::retry(attempts = 3, backoff = exponential("1ms"))]
async fn op_macro(x: u64) -> Result<u64, Fail> {
    Ok(black_box(x))
}

/// One failed attempt, then success, with no wait between them: the cost of one retry.
/// backon sleeps through a no-op sleeper (its waits are zero anyway).
fn retry_once(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry_one_failure");
    /// Fails on the first call of each logical call, succeeds on the second.
    async fn flaky(x: u64, attempt: u32) -> Result<u64, Fail> {
        if attempt == 1 {
            Err(Fail)
        } else {
            Ok(black_box(x))
        }
    }

    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(ATTEMPTS))
        .build()
        .unwrap();
    let ours = |i: u64| {
        let mut n = 0;
        pipeline.execute(move || {
            n += 1;
            flaky(i, n)
        })
    };
    check(&rt, ours(7));
    g.bench_function("resilient", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| ours(i)))
    });

    let policy = backon::ConstantBuilder::default()
        .with_delay(Duration::ZERO)
        .with_max_times(ATTEMPTS as usize - 1);
    let theirs = |i: u64| {
        let mut n = 0;
        (move || {
            n += 1;
            flaky(i, n)
        })
        .retry(policy)
        .sleep(|_| std::future::ready(()))
    };
    check(&rt, theirs(7));
    g.bench_function("backon", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| theirs(i)))
    });
    g.finish();
}

fn retry_timeout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry_timeout");

    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });
    g.bench_function("bare_timeout", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op_timed(i)))
    });

    let pipeline = Pipeline::builder()
        .retry(resilient_retry())
        .timeout(Timeout::operation(OPERATION_TIMEOUT))
        .build()
        .unwrap();
    check(&rt, pipeline.execute(|| op(7)));
    g.bench_function("resilient", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| pipeline.execute(|| op(i))))
    });

    let policy = backon_policy();
    check(&rt, (|| op_timed(7)).retry(policy));
    g.bench_function("backon", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| (|| op_timed(i)).retry(policy)))
    });

    let mut svc = ServiceBuilder::new()
        .retry(Attempts::new())
        .timeout(OPERATION_TIMEOUT)
        .service(service_fn(op));
    check(&rt, svc.clone().oneshot(7));
    g.bench_function("tower", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                svc.ready().await.unwrap().call(i).await
            })
        })
    });
    g.finish();
}

fn retry_timeouts(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("retry_timeouts");

    g.bench_function("bare", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| op(i)))
    });

    let pipeline = Pipeline::builder()
        .timeout(Timeout::request(REQUEST_TIMEOUT))
        .retry(resilient_retry())
        .timeout(Timeout::operation(OPERATION_TIMEOUT))
        .build()
        .unwrap();
    check(&rt, pipeline.execute(|| op(7)));
    g.bench_function("resilient", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| pipeline.execute(|| op(i))))
    });

    let policy = backon_policy();
    let backon_call = |i: u64| async move {
        match tokio::time::timeout(REQUEST_TIMEOUT, (|| op_timed(i)).retry(policy)).await {
            Ok(r) => r,
            Err(_) => Err(TimedFail::Timeout),
        }
    };
    check(&rt, backon_call(7));
    g.bench_function("backon", |b| {
        b.iter_custom(|iters| calls!(rt, iters, |i| backon_call(i)))
    });

    let mut svc = ServiceBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .retry(Attempts::new())
        .timeout(OPERATION_TIMEOUT)
        .service(service_fn(op));
    check(&rt, svc.clone().oneshot(7));
    g.bench_function("tower", |b| {
        b.iter_custom(|iters| {
            calls!(rt, iters, |i| async {
                svc.ready().await.unwrap().call(i).await
            })
        })
    });
    g.finish();
}

criterion_group!(benches, retry, retry_once, retry_timeout, retry_timeouts);
criterion_main!(benches);
