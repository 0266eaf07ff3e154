use resilient::Clock;
use resilient::ratelimit::*;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn time(name: &str, n: u64, mut f: impl FnMut(u64)) {
    for i in 0..n / 10 {
        f(i)
    }
    let s = Instant::now();
    for i in 0..n {
        f(i)
    }
    println!("{name}: {:.2} ns", s.elapsed().as_nanos() as f64 / n as f64);
}

fn main() {
    let n = 20_000_000;
    let fc: Arc<dyn Clock> = Arc::new(FastClock::new());
    time("fastclock dyn now", n, |_| {
        black_box(fc.now());
    });
    let q = quanta::Clock::new();
    time("quanta raw+delta", n, |_| {
        black_box(q.delta_as_nanos(0, q.raw()));
    });
    let a = Gcra::limiter(Rate::per_second(1_000_000_000)).unwrap();
    time("atomic check_at", n, |i| {
        black_box(a.check_at(i * 10, 1));
    });
    time("atomic try_acquire", n, |i| {
        black_box(
            a.try_acquire(Duration::from_nanos(i * 10), 1)
                .unwrap()
                .allowed,
        );
    });
    let r = RateLimiter::builder()
        .limit(Gcra::limiter(Rate::per_second(1_000_000_000)).unwrap())
        .clock(fc.clone())
        .build()
        .unwrap();
    time("ratelimiter check", n, |_| {
        black_box(r.check().allowed);
    });
    let g = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    time("governor check", n, |_| {
        black_box(g.check().is_ok());
    });
    time("check_at + quanta direct", n, |_| {
        black_box(a.check_at(q.delta_as_nanos(0, q.raw()), 1).allowed);
    });
    let fake = governor::clock::FakeRelativeClock::default();
    let gf = governor::RateLimiter::direct_with_clock(
        governor::Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()),
        fake.clone(),
    );
    time("governor fake clock", n, |_| {
        fake.advance(Duration::from_nanos(10));
        black_box(gf.check().is_ok());
    });
    let cnt = std::sync::atomic::AtomicU64::new(0);
    time("bare cas", n, |i| {
        let v = cnt.load(std::sync::atomic::Ordering::Relaxed);
        black_box(
            cnt.compare_exchange_weak(
                v,
                v + i,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok(),
        );
    });
    let rs = std::collections::hash_map::RandomState::new();
    use std::hash::BuildHasher;
    time("siphash u64", n, |i| {
        black_box(rs.hash_one(i % 1000));
    });
    let lock = std::sync::RwLock::new(5u64);
    time("rwlock read", n, |_| {
        black_box(*lock.read().unwrap());
    });
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(1_000_000_000)).unwrap())
        .clock(fc.clone())
        .build::<u64>()
        .unwrap();
    time("keyed check_at", n, |i| {
        black_box(k.check_at(&(i % 1000), i * 10, 1).allowed);
    });
    time("keyed check", n, |i| {
        black_box(k.check(&(i % 1000), 1).unwrap().allowed);
    });
    let gk = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    time("governor keyed", n, |i| {
        black_box(gk.check_key(&(i % 1000)).is_ok());
    });
    time("ratelimiter allow", n, |_| {
        black_box(r.allow().is_ok());
    });
    time("keyed allow", n, |i| {
        black_box(k.allow(&(i % 1000), 1).is_ok());
    });
    time("std instant", n, |_| {
        black_box(Instant::now());
    });
}
