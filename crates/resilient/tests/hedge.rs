//! Hedging on tokio's paused clock: when hedges start, that the first success wins and the
//! losers are dropped in the same poll, the three modes, the budget, and nothing left behind
//! when hedged calls are dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::hedge::{Hedge, HedgeEvent};
use resilient::{Bulkhead, Error, RetryBudget};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Records when it is dropped (relative to `start`).
struct Dropped(Arc<Mutex<Vec<(u32, Duration)>>>, u32, Instant);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.lock().unwrap().push((self.1, self.2.elapsed()));
    }
}

#[tokio::test(start_paused = true)]
async fn hedges_start_after_each_delay_and_the_first_success_drops_the_rest() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let drops = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let hedge = Hedge::delayed(MS * 100).max_hedges(3).build().unwrap();
    let (s, d) = (starts.clone(), drops.clone());
    let r = hedge
        .call(|attempt| {
            s.lock().unwrap().push((attempt, start.elapsed()));
            let guard = Dropped(d.clone(), attempt, start);
            async move {
                let _guard = guard;
                // attempt 0 hangs, 1 takes 300 ms, 2 takes 50 ms
                let took = match attempt {
                    0 => Duration::from_secs(60),
                    1 => MS * 300,
                    _ => MS * 50,
                };
                sleep(took).await;
                Ok::<_, ()>(attempt)
            }
        })
        .await;
    // attempt 2 started at 200 ms and answered at 250 ms, before attempt 3 was due
    assert_eq!(r.unwrap(), 2);
    assert_eq!(start.elapsed(), MS * 250);
    assert_eq!(
        *starts.lock().unwrap(),
        [(0, Duration::ZERO), (1, MS * 100), (2, MS * 200)]
    );
    // every attempt was dropped by the time the call returned, the losers at 250 ms
    let mut drops = drops.lock().unwrap().clone();
    drops.sort();
    assert_eq!(drops, [(0, MS * 250), (1, MS * 250), (2, MS * 250)]);
}

#[tokio::test(start_paused = true)]
async fn a_fast_original_starts_no_hedge() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let hedge = Hedge::delayed(MS * 100).max_hedges(2).build().unwrap();
    let r = hedge
        .call(|a| {
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(MS * 99).await;
                Ok::<_, ()>(a)
            }
        })
        .await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn parallel_and_fallback_modes() {
    // parallel: all three at once; the fastest wins at 10 ms
    let start = Instant::now();
    let r = Hedge::parallel()
        .max_hedges(2)
        .build()
        .unwrap()
        .call(|a| async move {
            sleep(MS * (30 - 10 * a)).await;
            Ok::<_, ()>(a)
        })
        .await;
    assert_eq!((r.unwrap(), start.elapsed()), (2, MS * 10));

    // fallback: the next only after a failure, with no timer
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let start = Instant::now();
    let r = Hedge::fallback()
        .max_hedges(2)
        .build()
        .unwrap()
        .call(|a| {
            s.lock().unwrap().push((a, start.elapsed()));
            async move {
                sleep(MS * 40).await;
                if a < 2 { Err(a) } else { Ok(a) }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(
        *starts.lock().unwrap(),
        [(0, Duration::ZERO), (1, MS * 40), (2, MS * 80)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_brings_the_next_hedge_forward_and_all_failing_returns_the_last() {
    let start = Instant::now();
    let r: Result<u32, _> = Hedge::delayed(MS * 100)
        .max_hedges(1)
        .build()
        .unwrap()
        .call(|a| async move {
            sleep(MS * 10).await;
            Err(format!("attempt {a}"))
        })
        .await;
    assert_eq!(r, Err(Error::Inner("attempt 1".to_string())));
    // the hedge started when the original failed (10 ms), not at 100 ms
    assert_eq!(start.elapsed(), MS * 20);
}

#[tokio::test(start_paused = true)]
async fn the_budget_refuses_hedges_and_events_report_them() {
    let budget = RetryBudget::builder(0.0).min_per_sec(1).build().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let hedge = Hedge::delayed(MS * 10)
        .max_hedges(2)
        .budget(budget)
        .on_event(move |ev| e.lock().unwrap().push(*ev))
        .build()
        .unwrap();
    let r = hedge
        .call(|a| async move {
            sleep(if a == 0 { MS * 100 } else { MS * 50 }).await;
            Ok::<_, ()>(a)
        })
        .await;
    // one hedge allowed by the floor of 1 a second, the second refused; the hedge wins
    assert_eq!(r.unwrap(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        [
            HedgeEvent::Started { attempt: 1 },
            HedgeEvent::Refused { attempt: 2 },
            HedgeEvent::Won { attempt: 1 },
        ]
    );
}

/// 1,000 hedged calls dropped while their attempts hold bulkhead slots: every slot comes
/// back.
#[tokio::test(start_paused = true)]
async fn dropped_hedged_calls_leave_nothing_behind() {
    let slots = Bulkhead::builder(10_000).build().unwrap();
    let hedge = Hedge::delayed(MS * 10).max_hedges(2).build().unwrap();
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let (slots, hedge) = (slots.clone(), hedge.clone());
            tokio::spawn(async move {
                hedge
                    .call(|_| {
                        let slots = slots.clone();
                        async move {
                            slots
                                .call(|| async {
                                    sleep(Duration::from_secs(60)).await;
                                    Ok::<_, ()>(())
                                })
                                .await
                        }
                    })
                    .await
            })
        })
        .collect();
    sleep(MS * 25).await;
    assert_eq!(slots.in_flight(), 3000, "the original and two hedges each");
    for c in &calls {
        c.abort();
    }
    for c in calls {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    assert_eq!(slots.in_flight(), 0);
}

/// As a tower layer: a slow first call is hedged with a clone of the request to a clone of
/// the service; the hedge's answer wins and the slow call is dropped.
#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn as_a_tower_layer_a_slow_call_is_hedged() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut svc = ServiceBuilder::new()
        .layer(Hedge::delayed(MS * 100).build().unwrap().layer())
        .service(service_fn(move |req: &'static str| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(if n == 0 {
                    Duration::from_secs(60)
                } else {
                    MS * 20
                })
                .await;
                Ok::<_, std::io::Error>(format!("{req} from call {n}"))
            }
        }));
    let start = Instant::now();
    let answer = svc.ready().await.unwrap().call("get").await.unwrap();
    assert_eq!(answer, "get from call 1");
    assert_eq!(start.elapsed(), MS * 120);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A percentile delay learns from the winning attempts' latencies: the initial delay until
/// 20 are known, then their quantile, within the bounds; the hedge then starts at it.
#[tokio::test(start_paused = true)]
async fn a_percentile_delay_follows_the_observed_latencies() {
    let hedge = Hedge::percentile(0.9, MS * 500)
        .delay_bounds(MS * 2, Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(hedge.current_delay(), Some(MS * 500));
    // 20 calls: 18 answer in 10 ms, two in 40 ms; the 90th percentile (rank 18) is 10 ms
    for i in 0..20u64 {
        let took = if i < 2 { MS * 40 } else { MS * 10 };
        let r = hedge
            .call(|_| async move {
                sleep(took).await;
                Ok::<_, ()>(())
            })
            .await;
        assert!(r.is_ok());
        if i < 19 {
            assert_eq!(
                hedge.current_delay(),
                Some(MS * 500),
                "after {} calls",
                i + 1
            );
        }
    }
    assert_eq!(hedge.current_delay(), Some(MS * 10));
    // a stuck original is now hedged after 10 ms, not 500
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let r = hedge
        .call(|attempt| {
            s.lock().unwrap().push((attempt, start.elapsed()));
            async move {
                if attempt == 0 {
                    sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, ()>(attempt)
            }
        })
        .await;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(*starts.lock().unwrap(), [(0, Duration::ZERO), (1, MS * 10)]);
    // answers at once count as 0: the delay falls to its lower bound
    for _ in 0..24 {
        assert!(hedge.call(|_| async { Ok::<_, ()>(()) }).await.is_ok());
    }
    for _ in 0..256 {
        assert!(hedge.call(|_| async { Ok::<_, ()>(()) }).await.is_ok());
    }
    assert_eq!(hedge.current_delay(), Some(MS * 2));
}

/// In a pipeline, the hedge step learns from the pipeline's attempts too: slow calls teach
/// it their latency, and a stuck attempt is then hedged at that delay.
#[tokio::test(start_paused = true)]
async fn a_pipeline_hedge_learns_its_percentile_delay() {
    let hedge = Hedge::percentile(0.5, Duration::from_secs(1))
        .build()
        .unwrap();
    let p = resilient::Pipeline::builder()
        .hedge(hedge.clone())
        .idempotent(true)
        .build()
        .unwrap();
    for _ in 0..20 {
        let r: Result<(), Error<()>> = p
            .execute(|| async {
                sleep(MS * 30).await;
                Ok(())
            })
            .await;
        assert!(r.is_ok());
    }
    assert_eq!(hedge.current_delay(), Some(MS * 30));
    let start = Instant::now();
    let mut n = 0;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let r: Result<u32, Error<()>> = p
        .execute(|| {
            n += 1;
            let attempt = n;
            s.lock().unwrap().push(start.elapsed());
            async move {
                if attempt == 1 {
                    sleep(Duration::from_secs(60)).await;
                }
                Ok(attempt)
            }
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(*starts.lock().unwrap(), [Duration::ZERO, MS * 30]);
}

#[test]
fn percentile_settings_are_validated() {
    for q in [0.0, -0.5, 1.5, f64::NAN] {
        let e = Hedge::percentile(q, MS * 50).build().unwrap_err();
        assert_eq!(e.field(), "hedge.percentile", "{q}");
    }
    assert!(Hedge::percentile(1.0, MS * 50).build().is_ok());
    let e = Hedge::percentile(0.9, Duration::ZERO).build().unwrap_err();
    assert_eq!(e.field(), "hedge.delay");
    let e = Hedge::percentile(0.9, MS)
        .delay_bounds(Duration::ZERO, MS)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "hedge.delay_bounds");
    // extreme values build and stay usable
    let h = Hedge::percentile(0.99, Duration::MAX)
        .delay_bounds(Duration::from_nanos(1), Duration::MAX)
        .build()
        .unwrap();
    assert!(h.current_delay().unwrap() > Duration::from_secs(86_400 * 365));
}
