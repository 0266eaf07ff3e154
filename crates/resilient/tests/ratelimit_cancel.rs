//! Cancelled waiters must not make a limiter admit more than its rate: a reservation given
//! back while waiters queued behind it keep their slots would hand those slots out twice.
//! The property, for GCRA (burst `B`, one unit per `T`): the operations that start in any
//! window of length `w` number at most `B + w / T`, whatever the interleaving of arrivals,
//! cancellations and time. Tokio's paused clock; the limiters read it through a clock whose
//! origin is the test's start, so every time is a whole number of milliseconds.

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate, RateLimiter};
use resilient::{Clock, Pipeline, SharedClock};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// Tokio's (paused) time since the test began.
#[derive(Debug, Clone, Copy)]
struct TestClock(Instant);

impl Clock for TestClock {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.0)
    }
}

/// Start times (since the test began) of the operations that ran.
type Starts = Arc<Mutex<Vec<Duration>>>;

/// Panics unless at most `burst + w / interval` starts fall in every window of length `w`.
fn assert_bound(starts: &[Duration], burst: u64, interval: Duration) {
    let mut s = starts.to_vec();
    s.sort();
    for i in 0..s.len() {
        for j in i..s.len() {
            let n = (j - i + 1) as u64;
            let w = s[j] - s[i];
            // n <= burst + w / interval, in integers.
            let ok = n <= burst || interval * (n - burst) as u32 <= w;
            assert!(
                ok,
                "{n} starts in {w:?} (from {:?} to {:?}) exceed burst {burst} + {w:?}/{interval:?}; \
                 all starts: {s:?}",
                s[i], s[j]
            );
        }
    }
}

/// Callers through a wait-mode GCRA guard in a pipeline.
struct GuardCallers {
    pipeline: Pipeline,
    clock: TestClock,
    starts: Starts,
}

impl GuardCallers {
    fn new(rate: Rate, burst: u64, clock: TestClock) -> Self {
        let limiter = RateLimiter::builder()
            .limit(Gcra::limiter_with_burst(rate, burst).unwrap())
            .max_wait(Duration::from_secs(3_600))
            .clock(Arc::new(clock) as SharedClock)
            .build()
            .unwrap();
        Self {
            pipeline: Pipeline::builder().rate_limit(limiter).build().unwrap(),
            clock,
            starts: Starts::default(),
        }
    }

    fn arrive(&self) -> JoinHandle<()> {
        let (p, starts, clock) = (self.pipeline.clone(), self.starts.clone(), self.clock);
        tokio::spawn(async move {
            let r: Result<(), resilient::Error<()>> = p
                .execute(|| {
                    starts.lock().unwrap().push(clock.now());
                    async { Ok(()) }
                })
                .await;
            r.unwrap();
        })
    }
}

/// Callers through a wait-mode keyed tower layer, all on one key.
struct LayerCallers<S> {
    svc: S,
    starts: Starts,
}

fn layer_callers(
    rate: Rate,
    burst: u64,
    clock: TestClock,
) -> LayerCallers<
    impl Service<u32, Response = (), Error = resilient::Error<Infallible>, Future: Send>
    + Clone
    + Send
    + 'static,
> {
    let starts = Starts::default();
    let layer = KeyedLimiter::builder(Gcra::with_burst(rate, burst).unwrap())
        .max_wait(Duration::from_secs(3_600))
        .clock(Arc::new(clock) as SharedClock)
        .build::<u32>()
        .unwrap()
        .layer(|_: &u32| 7u32);
    let s = starts.clone();
    let svc = tower::Layer::layer(
        &layer,
        service_fn(move |_: u32| {
            s.lock().unwrap().push(clock.now());
            async { Ok::<_, Infallible>(()) }
        }),
    );
    LayerCallers { svc, starts }
}

impl<S> LayerCallers<S>
where
    S: Service<u32, Response = (), Error = resilient::Error<Infallible>, Future: Send>
        + Clone
        + Send
        + 'static,
{
    fn arrive(&self) -> JoinHandle<()> {
        let mut svc = self.svc.clone();
        tokio::spawn(async move {
            svc.ready().await.unwrap().call(0).await.unwrap();
        })
    }
}

/// The scenario: 1 per 100 ms, burst 1; ten callers queue at t = 0, the first five
/// are dropped at 50 ms, five new callers arrive. Before the fix, the refunds moved the
/// queue's end back by 500 ms while the five survivors kept their slots: ten operations
/// started within 500 ms.
#[tokio::test(start_paused = true)]
async fn cancelled_guard_waiters_do_not_hand_their_slots_out_twice() {
    let clock = TestClock(Instant::now());
    let c = GuardCallers::new(Rate::new(1, MS * 100), 1, clock);
    let first: Vec<_> = (0..10).map(|_| c.arrive()).collect();
    tokio::time::sleep(MS * 50).await;
    for h in &first[..5] {
        h.abort();
    }
    tokio::task::yield_now().await;
    let second: Vec<_> = (0..5).map(|_| c.arrive()).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(second.iter().all(|h| h.is_finished()));
    let starts = c.starts.lock().unwrap().clone();
    // The first caller started at once; four queued ones were dropped before their slot;
    // five survivors and five newcomers.
    assert_eq!(starts.len(), 11, "{starts:?}");
    assert_bound(&starts, 1, MS * 100);
}

/// The same through the keyed tower layer.
#[tokio::test(start_paused = true)]
async fn cancelled_layer_waiters_do_not_hand_their_slots_out_twice() {
    let clock = TestClock(Instant::now());
    let c = layer_callers(Rate::new(1, MS * 100), 1, clock);
    let first: Vec<_> = (0..10).map(|_| c.arrive()).collect();
    tokio::time::sleep(MS * 50).await;
    for h in &first[..5] {
        h.abort();
    }
    tokio::task::yield_now().await;
    let second: Vec<_> = (0..5).map(|_| c.arrive()).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(second.iter().all(|h| h.is_finished()));
    let starts = c.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 11, "{starts:?}");
    assert_bound(&starts, 1, MS * 100);
}

/// The last waiter in the queue, cancelled, still gives its slot back (nobody depends on
/// it), so a newcomer takes that slot rather than the one after.
#[tokio::test(start_paused = true)]
async fn the_last_waiter_cancelled_gives_its_slot_back() {
    let clock = TestClock(Instant::now());
    let c = GuardCallers::new(Rate::new(1, MS * 100), 1, clock);
    let a = c.arrive(); // starts at 0
    let b = c.arrive(); // slot at 100 ms
    let last = c.arrive(); // slot at 200 ms
    tokio::time::sleep(MS * 50).await;
    last.abort();
    tokio::task::yield_now().await;
    let d = c.arrive(); // takes the slot at 200 ms again
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.is_finished() && b.is_finished() && d.is_finished());
    let mut starts = c.starts.lock().unwrap().clone();
    starts.sort();
    assert_eq!(starts, [Duration::ZERO, MS * 100, MS * 200]);
}

#[derive(Debug, Clone)]
enum Op {
    /// Time passes (milliseconds).
    Wait(u64),
    /// A caller arrives.
    Arrive,
    /// The caller with this index (modulo the callers so far) is dropped.
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..250).prop_map(Op::Wait),
        Just(Op::Arrive),
        Just(Op::Arrive),
        any::<usize>().prop_map(Op::Cancel),
    ]
}

fn run(ops: &[Op], interval_ms: u64, burst: u64, keyed: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = TestClock(Instant::now());
        let rate = Rate::new(1, MS * interval_ms as u32);
        let guard = GuardCallers::new(rate, burst, clock);
        let layer = layer_callers(rate, burst, clock);
        let mut handles: Vec<JoinHandle<()>> = Vec::new();
        for op in ops {
            match *op {
                Op::Wait(ms) => tokio::time::sleep(MS * ms as u32).await,
                Op::Arrive => handles.push(if keyed {
                    layer.arrive()
                } else {
                    guard.arrive()
                }),
                Op::Cancel(i) if !handles.is_empty() => {
                    let n = handles.len();
                    handles[i % n].abort();
                }
                Op::Cancel(_) => {}
            }
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(7_200)).await;
        let starts = if keyed {
            layer.starts.lock().unwrap().clone()
        } else {
            guard.starts.lock().unwrap().clone()
        };
        assert_bound(&starts, burst, MS * interval_ms as u32);
    });
}

proptest! {
    // Seeded: the same interleavings on every run.
    #![proptest_config(ProptestConfig {
        cases: 128,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xca_11ed),
        ..ProptestConfig::default()
    })]

    /// Seeded random arrivals, cancellations and time: the guard never over-admits.
    #[test]
    fn guard_starts_respect_the_rate_under_cancellation(
        ops in proptest::collection::vec(op(), 1..80),
        interval_ms in 1u64..200,
        burst in 1u64..4,
    ) {
        run(&ops, interval_ms, burst, false);
    }

    /// The same through the keyed tower layer.
    #[test]
    fn layer_starts_respect_the_rate_under_cancellation(
        ops in proptest::collection::vec(op(), 1..80),
        interval_ms in 1u64..200,
        burst in 1u64..4,
    ) {
        run(&ops, interval_ms, burst, true);
    }
}
