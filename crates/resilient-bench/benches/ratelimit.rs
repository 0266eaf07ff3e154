//! Rate limiting, side by side with governor (GCRA on one `AtomicU64`, the speed
//! reference): single-thread check, two threads on one limiter, keyed with 1,000 keys.
//!
//! Run: `cargo bench -p resilient-bench --bench ratelimit -- --warm-up-time 1 --measurement-time 3`
//!
//! Each side uses its default real clock (governor: quanta's TSC clock; resilient:
//! `SystemClock`, i.e. `std::time::Instant`), plus a `same clock` pair where governor also
//! reads `std::time::Instant` (its `MonotonicClock`), so the algorithms compare on equal
//! time sources. Quotas are large, so every check is an admission (a CAS), the costlier
//! path.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::MonotonicClock;
use governor::{Quota, RateLimiter as Governor};
use resilient::ratelimit::{FastClock, Gcra, KeyedLimiter, Rate, RateLimiter};

const PER_SECOND: u32 = 1_000_000_000;

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
}

fn ours() -> RateLimiter {
    RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(u64::from(PER_SECOND))).unwrap())
        .build()
        .unwrap()
}

/// Ours with the TSC clock (the same kind of clock as governor's default).
fn ours_tsc() -> RateLimiter {
    RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(u64::from(PER_SECOND))).unwrap())
        .clock(Arc::new(FastClock::new()))
        .build()
        .unwrap()
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_thread_check");
    let gov = Governor::direct(quota());
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check().is_ok())));
    let r = ours_tsc();
    g.bench_function("resilient_fast_clock", |b| {
        b.iter(|| black_box(r.check().allowed))
    });
    let r = ours();
    g.bench_function("resilient", |b| b.iter(|| black_box(r.check().allowed)));
    let gov_std = Governor::direct_with_clock(quota(), MonotonicClock);
    g.bench_function("governor_same_clock", |b| {
        b.iter(|| black_box(gov_std.check().is_ok()))
    });
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
    let gov = Arc::new(Governor::direct(quota()));
    g.bench_function("governor", |b| {
        b.iter_custom(|n| two(n, || gov.check().is_ok()))
    });
    let r = ours();
    g.bench_function("resilient", |b| {
        b.iter_custom(|n| two(n, || r.check().allowed))
    });
    let gov_std = Governor::direct_with_clock(quota(), MonotonicClock);
    g.bench_function("governor_same_clock", |b| {
        b.iter_custom(|n| two(n, || gov_std.check().is_ok()))
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_1000_keys");
    let gov = Governor::keyed(quota());
    let mut i = 0u64;
    g.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(gov.check_key(&i).is_ok())
        })
    });
    let kf = KeyedLimiter::builder(Gcra::new(Rate::per_second(u64::from(PER_SECOND))).unwrap())
        .clock(Arc::new(FastClock::new()))
        .build::<u64>()
        .unwrap();
    g.bench_function("resilient_fast_clock", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(kf.check(&i, 1).map(|d| d.allowed))
        })
    });
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(u64::from(PER_SECOND))).unwrap())
        .build::<u64>()
        .unwrap();
    g.bench_function("resilient", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(k.check(&i, 1).map(|d| d.allowed))
        })
    });
    let gov_std: Governor<_, _, _, governor::middleware::NoOpMiddleware<Instant>> = Governor::new(
        quota(),
        governor::state::keyed::DashMapStateStore::<u64>::default(),
        MonotonicClock,
    );
    g.bench_function("governor_same_clock", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            black_box(gov_std.check_key(&i).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, single_thread, two_threads, keyed);
criterion_main!(benches);
