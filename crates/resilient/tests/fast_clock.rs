//! The default clock, [`FastClock`], against the semantics of the other clocks: monotonic on
//! every thread, one origin across clones and threads, and within its stated skew of
//! `std::time::Instant` ([`SystemClock`] reads it outside a paused runtime). Alone in its
//! binary: nothing here pauses tokio's time, so the clock reads the CPU's counter where it
//! is trusted (a paused runtime would switch it to tokio's time for the whole process).

use resilient::{Clock, FastClock, SystemClock, system_clock};
use std::time::{Duration, Instant};

/// The stated skew after `elapsed` since the clock was anchored.
fn allowed_skew(elapsed: Duration) -> Duration {
    let drift = elapsed.as_nanos() * u128::from(FastClock::MAX_DRIFT_PPM) / 1_000_000;
    FastClock::MAX_SKEW + Duration::from_nanos(u64::try_from(drift).unwrap())
}

#[test]
fn readings_never_decrease_on_any_thread() {
    let clock = FastClock::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let clock = clock.clone();
            s.spawn(move || {
                let mut last = clock.now();
                for _ in 0..200_000 {
                    let now = clock.now();
                    assert!(now >= last, "went back from {last:?} to {now:?}");
                    last = now;
                }
            });
        }
    });
}

#[test]
fn clones_and_threads_share_one_origin() {
    let clock = FastClock::new();
    let before = clock.now();
    let (fresh, copy) = std::thread::spawn({
        let clock = clock.clone();
        move || (FastClock::new().now(), clock.now())
    })
    .join()
    .unwrap();
    let shared = system_clock().now();
    let after = clock.now();
    // Readings taken in that order on one timeline; another origin would put them far apart.
    assert!(
        before <= fresh && fresh <= after,
        "{before:?} {fresh:?} {after:?}"
    );
    assert!(
        before <= copy && copy <= after,
        "{before:?} {copy:?} {after:?}"
    );
    assert!(
        before <= shared && shared <= after,
        "{before:?} {shared:?} {after:?}"
    );
}

#[test]
fn stays_within_the_stated_skew_of_std_instant() {
    let fast = FastClock::new();
    let start = Instant::now();
    let fast_start = fast.now();
    let mut worst = Duration::ZERO;
    // A few milliseconds of spinning, comparing at every step.
    while start.elapsed() < Duration::from_millis(5) {
        let lo = SystemClock.now();
        let reading = fast.now();
        let hi = SystemClock.now();
        // `reading` belongs between `lo` and `hi`, give or take the skew.
        let allowed = allowed_skew(hi);
        assert!(
            reading + allowed >= lo,
            "behind: {reading:?} < {lo:?} - {allowed:?}"
        );
        assert!(
            reading <= hi + allowed,
            "ahead: {reading:?} > {hi:?} + {allowed:?}"
        );
        worst = worst
            .max(lo.saturating_sub(reading))
            .max(reading.saturating_sub(hi));
    }
    // Elapsed times agree too: what the fast clock measured over the window is what std
    // measured, within the skew.
    let fast_elapsed = fast.now() - fast_start;
    let std_elapsed = start.elapsed();
    let allowed = allowed_skew(std_elapsed) * 2;
    assert!(
        fast_elapsed + allowed >= std_elapsed && fast_elapsed <= std_elapsed + allowed,
        "fast {fast_elapsed:?} against std {std_elapsed:?}"
    );
    println!(
        "counter: {}, worst skew over 5 ms: {worst:?}, elapsed fast {fast_elapsed:?} std {std_elapsed:?}",
        fast.uses_cpu_counter()
    );
}

#[test]
fn the_fast_clock_is_the_default_handle() {
    assert!(format!("{:?}", system_clock()).starts_with("FastClock"));
    // Where the platform has no trusted counter it is the system clock's time.
    let source = format!("{:?}", FastClock::new());
    assert!(
        source.contains("cpu counter") || source.contains("system clock"),
        "{source}"
    );
}
