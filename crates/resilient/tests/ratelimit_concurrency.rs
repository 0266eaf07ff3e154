//! Many threads hammer one limiter while a manual clock advances: no algorithm ever admits
//! more than `capacity + rate × elapsed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use resilient::ratelimit::{
    FixedWindow, Gcra, KeyedLimiter, Limiter, Rate, RateLimiter, SlidingWindowCounter,
    SlidingWindowLog, Smooth, TokenBucket,
};
use resilient::{Clock, ManualClock};

const THREADS: usize = 3;
const TICKS: u64 = 10_000; // 50 µs each: 500 ms of manual time

/// Where the hammer's clock starts: a day past its origin, like a production clock.
const START: Duration = Duration::from_secs(86_400);

/// Runs the hammer and returns (admitted, elapsed).
fn hammer(check: Arc<dyn Fn(Duration) -> bool + Send + Sync>) -> (u64, Duration) {
    let clock = ManualClock::new();
    clock.set(START);
    hammer_on(&clock, check)
}

/// Runs the hammer on `clock` (from its current reading) and returns (admitted, elapsed).
fn hammer_on(
    clock: &ManualClock,
    check: Arc<dyn Fn(Duration) -> bool + Send + Sync>,
) -> (u64, Duration) {
    let start = clock.now();
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (clock, stop, admitted, check) =
                (clock.clone(), stop.clone(), admitted.clone(), check.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if check(clock.now()) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for _ in 0..TICKS {
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        clock.advance(Duration::from_micros(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    (admitted.load(Ordering::Relaxed), clock.now() - start)
}

/// capacity + rate × elapsed, with the rate in units per second.
fn bound(capacity: u64, per_second: u64, elapsed: Duration) -> u64 {
    capacity + (per_second as f64 * elapsed.as_secs_f64()).floor() as u64
}

fn run(name: &str, limiter: impl Limiter, capacity: u64, per_second: u64, slack: u64) {
    let l = Arc::new(limiter);
    let (admitted, elapsed) = hammer(Arc::new(move |now| l.try_acquire(now, 1).unwrap().allowed));
    let max = bound(capacity, per_second, elapsed) + slack;
    assert!(admitted <= max, "{name}: admitted {admitted} > {max}");
    assert!(admitted >= capacity, "{name}: admitted only {admitted}");
}

#[test]
fn gcra_never_over_admits() {
    run(
        "gcra",
        Gcra::limiter_with_burst(Rate::per_second(100), 10).unwrap(),
        10,
        100,
        0,
    );
}

/// A `RateLimiter` of one GCRA limit decides on its own fast paths (`check` builds the
/// decision after its compare-and-swap, `allow` computes none): neither over-admits.
#[test]
fn a_single_gcra_limiters_fast_paths_never_over_admit() {
    for full in [true, false] {
        let clock = ManualClock::new();
        clock.set(START);
        let l = RateLimiter::gcra_with_burst(Rate::per_second(100), 10)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let (admitted, elapsed) = hammer_on(
            &clock,
            Arc::new(move |_| {
                if full {
                    let d = l.check();
                    // A decision that admits reports no wait, and one that refuses a wait.
                    assert_eq!(d.allowed, d.retry_after.is_zero(), "{d:?}");
                    d.allowed
                } else {
                    l.allow().is_ok()
                }
            }),
        );
        let max = bound(10, 100, elapsed);
        assert!(
            admitted <= max,
            "check: {full}: admitted {admitted} > {max}"
        );
        assert!(admitted >= 10, "check: {full}: admitted only {admitted}");
    }
}

#[test]
fn token_bucket_never_over_admits() {
    run(
        "token bucket",
        TokenBucket::limiter(10, Rate::new(10, Duration::from_millis(100))).unwrap(),
        10,
        100,
        0,
    );
}

#[test]
fn fixed_window_never_over_admits() {
    run(
        "fixed window",
        FixedWindow::limiter(10, Duration::from_millis(100)).unwrap(),
        10,
        100,
        0,
    );
}

#[test]
fn sliding_window_counter_never_over_admits() {
    run(
        "sliding counter",
        SlidingWindowCounter::limiter(10, Duration::from_millis(100)).unwrap(),
        10,
        100,
        0,
    );
}

#[test]
fn sliding_window_log_never_over_admits() {
    run(
        "sliding log",
        SlidingWindowLog::new(10, Duration::from_millis(100)).unwrap(),
        10,
        100,
        0,
    );
}

#[test]
fn smooth_never_over_admits_beyond_its_debt() {
    // Stored permits up to 100 ms (10), plus at most one permit of debt.
    run(
        "smooth",
        Smooth::bursty(Rate::per_second(100))
            .max_burst(Duration::from_millis(100))
            .build()
            .unwrap(),
        10,
        100,
        1,
    );
}

#[test]
fn keyed_limiter_never_over_admits_on_one_key() {
    let keyed = Arc::new(
        KeyedLimiter::builder(Gcra::with_burst(Rate::per_second(100), 10).unwrap())
            .build::<u32>()
            .unwrap(),
    );
    let (admitted, elapsed) = hammer(Arc::new(move |now| {
        keyed
            .check_at(&7, resilient::ratelimit::nanos(now), 1)
            .allowed
    }));
    assert!(admitted <= bound(10, 100, elapsed), "{admitted}");
    assert!(admitted >= 10);
}

/// A quota of three limits hammered from many threads: the window limits refuse most
/// requests, so the units taken from the others are given back all the time. The first
/// limit, an exact log whose window outlasts the run, must end holding exactly the units
/// admitted (every refund happened, none twice), and no limit is exceeded.
#[test]
fn a_quota_with_refunds_never_over_admits_and_loses_no_unit() {
    let clock = ManualClock::new();
    clock.set(START);
    let log = Arc::new(SlidingWindowLog::new(1_000_000, Duration::from_secs(10)).unwrap());
    let windowed = Arc::new(FixedWindow::limiter(5, Duration::from_millis(100)).unwrap());
    let gcra = Arc::new(Gcra::limiter_with_burst(Rate::per_second(80), 3).unwrap());
    let quota = RateLimiter::builder()
        .limit(log.clone())
        .limit(windowed.clone())
        .limit(gcra.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let l = quota.clone();
    let (admitted, elapsed) = hammer_on(&clock, Arc::new(move |_| l.allow().is_ok()));
    let windows = elapsed.as_millis() as u64 / 100 + 1;
    assert!(
        admitted <= 5 * windows,
        "window limit: {admitted} > {}",
        5 * windows
    );
    assert!(admitted <= bound(3, 80, elapsed), "gcra: {admitted}");
    assert!(admitted >= 5, "admitted only {admitted}");
    let held = 1_000_000 - log.peek(clock.now(), 0).remaining;
    assert_eq!(held, admitted, "the log holds exactly the admitted units");
    // The same with the full decision path (check), which reports every limit.
    let l = quota.clone();
    let before = held;
    let (admitted, _) = hammer_on(&clock, Arc::new(move |_| l.check().allowed));
    let held = 1_000_000 - log.peek(clock.now(), 0).remaining;
    assert_eq!(held - before, admitted);
}
