//! Whatever configuration the breaker's builder accepts must run: 1,000 seeded calls
//! (successes, failures, slow calls, panics, cancellations, ignored results) while a
//! manual clock jumps by anything from nothing to centuries, without a panic (other than
//! the operations' own) or a hang.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use resilient::circuit::{CircuitBreakerBuilder, Window};
use resilient::{
    Acquire, CircuitBreaker, CircuitEvent, Context, Guard, ManualClock, Outcome, SeededRandom,
};

const DURATIONS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_micros(1),
    Duration::from_millis(1),
    Duration::from_secs(1),
    Duration::from_secs(3600),
    Duration::from_secs(100 * 365 * 86_400),
    Duration::MAX,
];

const RATES: [f64; 10] = [
    0.0,
    1e-300,
    1e-9,
    0.0004,
    0.5,
    2.0 / 3.0,
    1.0,
    1.5,
    -0.1,
    f64::NAN,
];

const COUNTS: [u32; 8] = [0, 1, 2, 4, 10, 32_767, (1 << 20) - 1, u32::MAX];

fn duration() -> impl Strategy<Value = Duration> {
    prop::sample::select(&DURATIONS[..])
}

fn rate() -> impl Strategy<Value = f64> {
    prop::sample::select(&RATES[..])
}

fn count() -> impl Strategy<Value = u32> {
    prop::sample::select(&COUNTS[..])
}

/// One knob of the builder with an extreme or ordinary value.
#[derive(Debug, Clone)]
enum Knob {
    FailureRate(f64),
    SlowCalls(Duration, f64),
    Consecutive(u32),
    CountWindow(u32),
    TimeWindow(Duration, u32),
    MinimumCalls(u32),
    OpenFor(Duration),
    Backoff(f64, Duration),
    Jitter(f64),
    CustomBreak(Duration, bool),
    Probes(u32),
    Required(u32),
    MaxHalfOpenWait(Duration),
    CallTimeout(Duration),
    PanickingObserver,
}

fn knob() -> impl Strategy<Value = Knob> {
    prop_oneof![
        rate().prop_map(Knob::FailureRate),
        (duration(), rate()).prop_map(|(d, r)| Knob::SlowCalls(d, r)),
        count().prop_map(Knob::Consecutive),
        count().prop_map(Knob::CountWindow),
        (duration(), count()).prop_map(|(d, b)| Knob::TimeWindow(d, b)),
        count().prop_map(Knob::MinimumCalls),
        duration().prop_map(Knob::OpenFor),
        (
            prop::sample::select(&[0.5, 1.0, 2.0, 1e300, f64::INFINITY, f64::NAN][..]),
            duration()
        )
            .prop_map(|(m, d)| Knob::Backoff(m, d)),
        prop::sample::select(&[0.0, 0.5, 1.0, 1.5, -1.0, f64::NAN][..]).prop_map(Knob::Jitter),
        (duration(), any::<bool>()).prop_map(|(d, grow)| Knob::CustomBreak(d, grow)),
        count().prop_map(Knob::Probes),
        count().prop_map(Knob::Required),
        duration().prop_map(Knob::MaxHalfOpenWait),
        duration().prop_map(Knob::CallTimeout),
        Just(Knob::PanickingObserver),
    ]
}

fn apply(b: CircuitBreakerBuilder, k: &Knob) -> CircuitBreakerBuilder {
    match *k {
        Knob::FailureRate(r) => b.failure_rate(r),
        Knob::SlowCalls(d, r) => b.slow_calls(d, r),
        Knob::Consecutive(n) => b.consecutive_failures(n),
        Knob::CountWindow(n) => b.window(Window::count(n)),
        Knob::TimeWindow(d, n) => b.window(Window::time_buckets(d, n)),
        Knob::MinimumCalls(n) => b.minimum_calls(n),
        Knob::OpenFor(d) => b.open_for(d),
        Knob::Backoff(m, d) => b.break_backoff(m, d),
        Knob::Jitter(j) => b.break_jitter(j),
        Knob::CustomBreak(d, grow) => b.break_duration_with(move |n| {
            if grow {
                d.saturating_mul(n.saturating_add(1))
            } else {
                d
            }
        }),
        Knob::Probes(n) => b.half_open_probes(n),
        Knob::Required(n) => b.required_successes(n),
        Knob::MaxHalfOpenWait(d) => b.max_half_open_wait(d),
        Knob::CallTimeout(d) => b.call_timeout(d),
        Knob::PanickingObserver => b.observer(|_: &str, e: &CircuitEvent| {
            if matches!(
                e,
                CircuitEvent::Rejected { .. } | CircuitEvent::Failure { .. }
            ) {
                panic!("observer bug")
            }
        }),
    }
}

/// A jump of the clock: mostly small, sometimes enormous.
fn jump(x: u64) -> Duration {
    match x % 16 {
        0..=5 => Duration::ZERO,
        6..=9 => Duration::from_micros(x % 1_000),
        10..=12 => Duration::from_millis(x % 5_000),
        13 => Duration::from_secs(x % 100_000),
        14 => Duration::from_secs(x % (200 * 365 * 86_400)),
        _ => Duration::MAX, // the manual clock saturates
    }
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut TaskContext::from_waker(Waker::noop()))
}

fn run(b: &CircuitBreaker, clock: &ManualClock, seed: u64) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..1_000 {
        let r = next();
        clock.advance(jump(next()));
        match r % 9 {
            0 | 1 => {
                let _ = b.call_blocking(|| Ok::<_, ()>(()));
            }
            2 => {
                let _ = b.call_blocking(|| Err::<(), _>(()));
            }
            3 => {
                let slow = jump(next());
                let _ = b.call_blocking(|| {
                    clock.advance(slow);
                    Ok::<_, ()>(())
                });
            }
            4 => {
                let caught = catch_unwind(AssertUnwindSafe(|| {
                    b.call_blocking(|| -> Result<(), ()> { panic!("operation panicked") })
                }));
                assert!(caught.is_err() || matches!(caught, Ok(Err(_))));
            }
            5 => {
                // cancelled: polled once, then dropped (after time passed)
                let mut call = std::pin::pin!(b.call(std::future::pending::<Result<(), ()>>));
                let _ = poll_once(call.as_mut());
                clock.advance(jump(next()));
            }
            6 => {
                // through the guard seam: record, drop, or ignore
                if let Acquire::Ready(Ok(p)) = b.acquire(&Context::new()) {
                    match next() % 3 {
                        0 => p.record(Outcome::Ignored, jump(next())),
                        1 => p.record(Outcome::Failure, jump(next())),
                        _ => drop(p),
                    }
                }
            }
            7 => {
                let _ = b.snapshot();
                let _ = b.is_ready();
                let _ = b.state();
            }
            _ => match next() % 40 {
                0 => b.isolate(),
                1 => b.reset(),
                2 => b.metrics_only(),
                3 => b.disable(),
                _ => {}
            },
        }
    }
    b.reset();
    assert!(
        b.call_blocking(|| Ok::<_, ()>(1)).is_ok(),
        "usable after a reset"
    );
}

/// Keeps the expected panics (operations, observers) out of the test output.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if msg != "operation panicked" && msg != "observer bug" {
                default(info);
            }
        }));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn accepted_configurations_run_without_panicking(
        knobs in prop::collection::vec(knob(), 0..8),
        seed: u64,
        start in duration(),
    ) {
        quiet_expected_panics();
        let clock = ManualClock::new();
        clock.set(start.min(Duration::from_secs(500 * 365 * 86_400)));
        let mut builder = CircuitBreaker::builder()
            .clock(Arc::new(clock.clone()))
            .random(Arc::new(SeededRandom::new(seed)));
        for k in &knobs {
            builder = apply(builder, k);
        }
        let Ok(b) = builder.build() else {
            return Ok(()); // rejected at build: fine
        };
        run(&b, &clock, seed);
    }
}
