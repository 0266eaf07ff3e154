//! Rate limiting, side by side with governor (GCRA on one `AtomicU64`, the speed
//! reference): single-thread check, two threads on one limiter, keyed with 1,000 keys.
//!
//! Run: `cargo bench -p resilient-bench --bench ratelimit -- --warm-up-time 1 --measurement-time 3`
//!
//! Rows per group:
//! - `governor`: governor's `check()` with its default clock (quanta, TSC);
//! - `resilient_fast_clock`: our fast path (`allow()`: admitted, or the time until it
//!   would be, which is what governor's `check()` returns) with our default clock,
//!   `FastClock` (quanta, TSC, read inline);
//! - `resilient_fast_clock_full_decision`: `check()`, which also computes limit,
//!   remaining and reset for headers;
//! - `governor_same_clock` / `resilient`: both on `std::time::Instant` (governor's
//!   `MonotonicClock`, our `SystemClock`).
//!
//! Quotas are large, so every check is an admission (a CAS), the costlier path.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use resilient::SystemClock;
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate, RateLimiter};

const PER_SECOND: u32 = 1_000_000_000;

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
}

/// Ours with the default clock (`FastClock`, TSC, read inline; `fast == true`) or
/// `SystemClock`.
fn ours(fast: bool) -> RateLimiter {
    let b = RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(u64::from(PER_SECOND))).unwrap());
    if fast {
        b
    } else {
        b.clock(Arc::new(SystemClock))
    }
    .build()
    .unwrap()
}

fn ours_keyed(fast: bool) -> KeyedLimiter<u64, Gcra> {
    let b = KeyedLimiter::builder(Gcra::new(Rate::per_second(u64::from(PER_SECOND))).unwrap());
    if fast {
        b
    } else {
        b.clock(Arc::new(SystemClock))
    }
    .build()
    .unwrap()
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_thread_check");
    let gov = Governor::direct(quota());
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check().is_ok())));
    let r = ours(true);
    g.bench_function("resilient_fast_clock", |b| {
        b.iter(|| black_box(r.allow().is_ok()))
    });
    g.bench_function("resilient_fast_clock_full_decision", |b| {
        b.iter(|| black_box(r.check().allowed))
    });
    let gov_std = Governor::direct_with_clock(quota(), MonotonicClock);
    g.bench_function("governor_same_clock", |b| {
        b.iter(|| black_box(gov_std.check().is_ok()))
    });
    let r = ours(false);
    g.bench_function("resilient", |b| b.iter(|| black_box(r.allow().is_ok())));
    g.finish();
}

/// Time for each of two threads to run `iters` checks on one shared limiter.
fn two(iters: u64, check: impl Fn() -> bool + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            barrier.wait();
            for _ in 0..iters {
                black_box(check());
            }
        });
        barrier.wait();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(check());
        }
        worker.join().unwrap();
        start.elapsed()
    })
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_one_limiter");
    let gov = Governor::direct(quota());
    g.bench_function("governor", |b| {
        b.iter_custom(|n| two(n, || gov.check().is_ok()))
    });
    let r = ours(true);
    g.bench_function("resilient_fast_clock", |b| {
        b.iter_custom(|n| two(n, || r.allow().is_ok()))
    });
    g.bench_function("resilient_fast_clock_full_decision", |b| {
        b.iter_custom(|n| two(n, || r.check().allowed))
    });
    let gov_std = Governor::direct_with_clock(quota(), MonotonicClock);
    g.bench_function("governor_same_clock", |b| {
        b.iter_custom(|n| two(n, || gov_std.check().is_ok()))
    });
    let r = ours(false);
    g.bench_function("resilient", |b| {
        b.iter_custom(|n| two(n, || r.allow().is_ok()))
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_1000_keys");
    let mut i = 0u64;
    let mut next = move || {
        i = if i == 999 { 0 } else { i + 1 };
        i
    };
    let gov = Governor::keyed(quota());
    g.bench_function("governor", |b| {
        b.iter(|| black_box(gov.check_key(&next()).is_ok()))
    });
    let k = ours_keyed(true);
    g.bench_function("resilient_fast_clock", |b| {
        b.iter(|| black_box(k.allow(&next(), 1).is_ok()))
    });
    g.bench_function("resilient_fast_clock_full_decision", |b| {
        b.iter(|| black_box(k.check_n(&next(), 1).map(|d| d.allowed)))
    });
    let gov_std: Governor<_, _, _, NoOpMiddleware<Instant>> =
        Governor::new(quota(), DashMapStateStore::<u64>::default(), MonotonicClock);
    g.bench_function("governor_same_clock", |b| {
        b.iter(|| black_box(gov_std.check_key(&next()).is_ok()))
    });
    let k = ours_keyed(false);
    g.bench_function("resilient", |b| {
        b.iter(|| black_box(k.allow(&next(), 1).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, single_thread, two_threads, keyed);
criterion_main!(benches);
