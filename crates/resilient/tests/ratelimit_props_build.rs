//! Whatever a rate-limit builder accepts must never panic or hang at call time. For every
//! builder (each algorithm in reject and wait modes, quotas, smooth limiters, keyed
//! limiters and their tower layer), configurations drawn from extreme values
//! (`Duration::ZERO`/`MAX`, `u64`/`u32` extremes, NaN and infinite factors) that `build()`
//! accepts run 1,000 seeded calls: admissions, failures, cancellations, runtime rate
//! changes, with time passing and the clock jumping (up to its end). Tokio's paused
//! clock; each case runs on its own thread under a real-time watchdog, so a hang fails.

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use resilient::ratelimit::{
    Algorithm, FixedWindow, Gcra, KeyedLimiter, Limiter, Mode, Rate, RateLimiter,
    SlidingWindowCounter, SlidingWindowLog, Smooth, TokenBucket,
};
use resilient::{Clock, Context, Guard, Pipeline, SharedClock};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

/// Tokio's paused time since the case began, plus jumps (saturating at the end of time).
#[derive(Debug, Clone)]
struct JumpClock {
    base: Instant,
    jumped: Arc<AtomicU64>,
}

impl JumpClock {
    fn jump(&self, by: u64) {
        let _ = self
            .jumped
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Duration {
        let real = Instant::now().saturating_duration_since(self.base);
        real.saturating_add(Duration::from_nanos(self.jumped.load(Ordering::Acquire)))
    }
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(3),
        Just(10),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        Just(1 << 20),
        Just(u64::MAX / 2),
        Just(u64::MAX),
        any::<u64>(),
        1u64..1_000,
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_millis(100)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(86_400)),
        Just(Duration::from_secs(100 * 365 * 86_400)),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (1u64..10_000).prop_map(Duration::from_millis),
    ]
}

fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        Just(f64::MIN_POSITIVE),
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(3.0),
        Just(1e300),
        any::<f64>(),
        0.0f64..10.0,
    ]
}

/// One limit, as its builder takes it.
#[derive(Debug, Clone)]
enum Spec {
    Gcra(u64, Duration, u64),
    Bucket(u64, u64, Duration),
    Fixed(u64, Duration),
    Counter(u64, Duration),
    Log(u64, Duration),
    Bursty(u64, Duration, Duration, u64),
    Warming(u64, Duration, Duration, f64, u64),
    Ramp(u64, Duration, Duration, f64, u64),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (count(), duration(), count()).prop_map(|(c, p, b)| Spec::Gcra(c, p, b)),
        (count(), count(), duration()).prop_map(|(cap, c, p)| Spec::Bucket(cap, c, p)),
        (count(), duration()).prop_map(|(l, w)| Spec::Fixed(l, w)),
        (count(), duration()).prop_map(|(l, w)| Spec::Counter(l, w)),
        (count(), duration()).prop_map(|(l, w)| Spec::Log(l, w)),
        (count(), duration(), duration(), count())
            .prop_map(|(c, p, b, d)| Spec::Bursty(c, p, b, d)),
        (count(), duration(), duration(), factor(), count())
            .prop_map(|(c, p, w, f, d)| Spec::Warming(c, p, w, f, d)),
        (count(), duration(), duration(), factor(), count())
            .prop_map(|(c, p, r, f, d)| Spec::Ramp(c, p, r, f, d)),
    ]
}

/// The limit `spec` describes, if its builder accepts it.
fn limit(spec: &Spec) -> Option<Arc<dyn Limiter>> {
    Some(match *spec {
        Spec::Gcra(c, p, b) => Arc::new(Gcra::limiter_with_burst(Rate::new(c, p), b).ok()?),
        Spec::Bucket(cap, c, p) => Arc::new(TokenBucket::limiter(cap, Rate::new(c, p)).ok()?),
        Spec::Fixed(l, w) => Arc::new(FixedWindow::limiter(l, w).ok()?),
        Spec::Counter(l, w) => Arc::new(SlidingWindowCounter::limiter(l, w).ok()?),
        Spec::Log(l, w) => Arc::new(SlidingWindowLog::new(l, w).ok()?),
        Spec::Bursty(c, p, b, d) => Arc::new(
            Smooth::bursty(Rate::new(c, p))
                .max_burst(b)
                .max_debt(d)
                .build()
                .ok()?,
        ),
        Spec::Warming(c, p, w, f, d) => Arc::new(
            Smooth::warming_up(Rate::new(c, p), w)
                .cold_factor(f)
                .max_debt(d)
                .build()
                .ok()?,
        ),
        Spec::Ramp(c, p, r, f, d) => Arc::new(
            Smooth::linear_ramp(Rate::new(c, p), r)
                .start_fraction(f)
                .max_debt(d)
                .build()
                .ok()?,
        ),
    })
}

/// The packed algorithm `spec` describes (keyed limiters take those), if accepted.
fn algorithm(spec: &Spec) -> Option<Box<dyn Algorithm>> {
    Some(match *spec {
        Spec::Gcra(c, p, b) => Box::new(Gcra::with_burst(Rate::new(c, p), b).ok()?),
        Spec::Bucket(cap, c, p) => Box::new(TokenBucket::new(cap, Rate::new(c, p)).ok()?),
        Spec::Fixed(l, w) => Box::new(FixedWindow::new(l, w).ok()?),
        Spec::Counter(l, w) => Box::new(SlidingWindowCounter::new(l, w).ok()?),
        _ => return None,
    })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Reject), duration().prop_map(Mode::Wait)]
}

/// One step of a run, drawn from a seed.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A call through the pipeline that succeeds or fails.
    Call(bool),
    /// A call through the pipeline dropped after this many milliseconds.
    Cancel(u64),
    /// The guard's admission, dropped at once (cancelled before it was polled).
    DropAcquire,
    /// A blocking call (never waits).
    Blocking,
    /// The synchronous decisions, at this cost.
    Check(u64),
    /// A runtime rate change (may be refused).
    SetRate(u64, u64, u64),
    /// Tokio's time passes (milliseconds).
    Sleep(u64),
    /// The limiter's clock jumps ahead (nanoseconds).
    Jump(u64),
}

fn steps(seed: u64) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let extreme = |rng: &mut fastrand::Rng| match rng.u8(0..6) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => rng.u64(..),
        _ => rng.u64(1..20),
    };
    (0..1_000)
        .map(|_| match rng.u8(0..16) {
            0..=3 => Step::Call(rng.bool()),
            4 | 5 => Step::Cancel(rng.u64(0..300)),
            6 => Step::DropAcquire,
            7 => Step::Blocking,
            8 | 9 => Step::Check(extreme(&mut rng)),
            10 => Step::SetRate(extreme(&mut rng), rng.u64(..), extreme(&mut rng)),
            11..=13 => Step::Sleep(rng.u64(0..500)),
            _ => Step::Jump(match rng.u8(0..4) {
                0 => rng.u64(0..1_000_000_000),
                1 => rng.u64(0..86_400_000_000_000),
                2 => u64::MAX / 2,
                _ => u64::MAX,
            }),
        })
        .collect()
}

/// Real seconds a case may take before it counts as hung.
const WATCHDOG_SECS: u64 = 60;

/// Runs `body` on a paused current-thread runtime on its own thread; fails if it panics
/// or does not end within `WATCHDOG_SECS` of real time.
fn watched(name: String, body: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            body();
            let _ = done.send(());
        })
        .unwrap();
    match wait.recv_timeout(Duration::from_secs(WATCHDOG_SECS)) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung"),
    }
}

fn paused(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

/// The longest a single call may take in (virtual) time before the run gives up on it:
/// waits beyond it are legitimate (a configured wait of years), not hangs.
const PATIENCE: Duration = Duration::from_secs(400 * 365 * 86_400);

async fn run_guard(limits: Vec<Arc<dyn Limiter>>, mode: Mode, cost: u64, seed: u64) {
    let clock = JumpClock {
        base: Instant::now(),
        jumped: Arc::default(),
    };
    let mut b = RateLimiter::builder()
        .mode(mode)
        .cost(cost)
        .clock(Arc::new(clock.clone()) as SharedClock);
    for l in &limits {
        b = b.limit(l.clone());
    }
    let Ok(limiter) = b.build() else { return };
    let p = Pipeline::builder()
        .rate_limit(limiter.clone())
        .build()
        .unwrap();
    for step in steps(seed) {
        match step {
            Step::Call(ok) => {
                let call = p.execute(|| async move { if ok { Ok(()) } else { Err(()) } });
                let _ = tokio::time::timeout(PATIENCE, call).await;
            }
            Step::Cancel(ms) => {
                let call = p.execute(|| async { Ok::<(), ()>(()) });
                let _ = tokio::time::timeout(Duration::from_millis(ms), call).await;
            }
            Step::DropAcquire => drop(limiter.acquire(&Context::new())),
            Step::Blocking => {
                let _ = p.execute_blocking(|| Ok::<(), ()>(()));
            }
            Step::Check(c) => {
                let _ = limiter.check();
                let _ = limiter.allow();
                let _ = limiter.check_n(c);
                if let Ok(v) = limiter.check_quota(c) {
                    let _ = v.binding();
                }
                #[cfg(feature = "http-headers")]
                {
                    let d = limiter.check();
                    let _ = resilient::ratelimit::headers::write_headers(&[
                        resilient::ratelimit::headers::HeaderLimit {
                            name: "p",
                            policy: limits[0].policy(),
                            decision: d,
                        },
                    ]);
                }
            }
            Step::SetRate(c, per, burst) => {
                let i = (c % limits.len() as u64) as usize;
                let _ = limiter.set_rate(i, Rate::new(c, Duration::from_nanos(per)), burst);
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Step::Jump(by) => clock.jump(by),
        }
    }
}

async fn run_keyed(algs: [Box<dyn Algorithm>; 2], quota: bool, mode: Mode, seed: u64) {
    let clock = JumpClock {
        base: Instant::now(),
        jumped: Arc::default(),
    };
    let shared = Arc::new(clock.clone()) as SharedClock;
    let [a, b] = algs;
    if quota {
        let Ok(k) = KeyedLimiter::quota([a, b])
            .mode(mode)
            .max_keys(4)
            .shards(2)
            .clock(shared)
            .build::<u64>()
        else {
            return;
        };
        drive_keyed(Arc::new(k), &clock, seed).await
    } else {
        let Ok(k) = KeyedLimiter::quota([a])
            .mode(mode)
            .max_keys(4)
            .shards(2)
            .clock(shared)
            .build::<u64>()
        else {
            return;
        };
        drive_keyed(Arc::new(k), &clock, seed).await
    }
}

async fn drive_keyed<const N: usize>(
    k: Arc<KeyedLimiter<u64, Box<dyn Algorithm>, std::collections::hash_map::RandomState, N>>,
    clock: &JumpClock,
    seed: u64,
) {
    let layer = resilient::ratelimit::KeyedLayer::new(k.clone(), |r: &(u64, u64)| r.0)
        .cost(|r: &(u64, u64)| r.1);
    let svc = tower::Layer::layer(
        &layer,
        service_fn(|r: (u64, u64)| async move { Ok::<_, Infallible>(r.0) }),
    );
    // Daily or yearly (`Duration::MAX` is clamped to a year): calls may legitimately wait
    // centuries of virtual time, and a sweep every millisecond would take that long.
    let every = if seed.is_multiple_of(2) {
        Duration::MAX
    } else {
        Duration::from_secs(86_400)
    };
    let sweeper = k.spawn_sweeper(every);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    for step in steps(seed) {
        let key = rng.u64(0..8);
        match step {
            Step::Call(_) | Step::Blocking => {
                let cost = if rng.u8(0..8) == 0 { rng.u64(..) } else { 1 };
                let mut s = svc.clone();
                let call = async move { s.ready().await?.call((key, cost)).await };
                let _ = tokio::time::timeout(PATIENCE, call).await;
            }
            Step::Cancel(ms) => {
                let mut s = svc.clone();
                let call = async move { s.ready().await?.call((key, 1)).await };
                let _ = tokio::time::timeout(Duration::from_millis(ms), call).await;
            }
            Step::DropAcquire => {
                let mut s = svc.clone();
                drop(s.call((key, 1)));
            }
            Step::Check(c) => {
                let _ = k.check_n(&key, c);
                let _ = k.allow(&key, c);
                let _ = k.check_quota(&key, c);
                let _ = k.retain_recent();
            }
            Step::SetRate(c, per, burst) => {
                let i = (c % N as u64) as usize;
                let _ = k.set_rate(i, Rate::new(c, Duration::from_nanos(per)), burst);
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Step::Jump(by) => clock.jump(by),
        }
    }
    assert!(!sweeper.is_finished(), "the sweeper task died");
    sweeper.abort();
}

proptest! {
    // Seeded: the same configurations and calls on every run.
    #![proptest_config(ProptestConfig {
        cases: 96,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x007a_7e11),
        ..ProptestConfig::default()
    })]

    /// A guard over one limit of any algorithm, in reject or wait mode.
    #[test]
    fn any_single_limit_guard_never_panics_or_hangs(
        s in spec(), mode in mode(), cost in count(), seed in any::<u64>()
    ) {
        if let Some(l) = limit(&s) {
            watched(format!("{s:?} {mode:?} cost {cost} seed {seed}"), move || paused(run_guard(vec![l], mode, cost, seed)));
        }
    }

    /// A guard over a quota of two limits of any algorithms.
    #[test]
    fn any_quota_guard_never_panics_or_hangs(
        a in spec(), b in spec(), mode in mode(), cost in count(), seed in any::<u64>()
    ) {
        let name = format!("{a:?} {b:?} {mode:?} cost {cost} seed {seed}");
        if let (Some(a), Some(b)) = (limit(&a), limit(&b)) {
            watched(name, move || paused(run_guard(vec![a, b], mode, cost, seed)));
        }
    }

    /// A keyed limiter (one limit or a quota of two) and its tower layer.
    #[test]
    fn any_keyed_limiter_never_panics_or_hangs(
        a in spec(), b in spec(), quota in any::<bool>(), mode in mode(), seed in any::<u64>()
    ) {
        let name = format!("{a:?} {b:?} quota {quota} {mode:?} seed {seed}");
        if let (Some(a), Some(b)) = (algorithm(&a), algorithm(&b)) {
            watched(name, move || paused(run_keyed([a, b], quota, mode, seed)));
        }
    }
}
