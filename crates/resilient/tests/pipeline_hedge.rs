//! The builder's `.hedge(..)` step: hedges are attempts. Each passes the per-attempt guards
//! and operation timeout on its own and draws from the retry budget; the first acceptable
//! result wins and the others are dropped in the same poll; only idempotent operations.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::hedge::{Hedge, HedgeEvent};
use resilient::{
    Bulkhead, CircuitBreaker, CircuitState, Error, ManualClock, Pipeline, Retry, RetryBudget,
    Timeout,
};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Sets its flag when dropped (a loser's future).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn delayed(ms: u64, hedges: u32) -> Hedge {
    Hedge::delayed(MS * ms as u32)
        .max_hedges(hedges)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_delayed_hedge_wins_and_the_loser_is_dropped_in_the_same_poll() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let hedge = Hedge::delayed(MS * 50)
        .on_event(move |e| log.lock().unwrap().push(*e))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .hedge(hedge)
        .idempotent(true)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU32::new(0));
    let (d, s) = (dropped.clone(), started.clone());
    let t0 = Instant::now();
    let r: Result<u32, Error<()>> = p
        .execute(move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let flag = DropFlag(d.clone());
            async move {
                let _flag = flag;
                sleep(if n == 0 { MS * 1000 } else { MS * 10 }).await;
                Ok(n)
            }
        })
        .await;
    assert_eq!(r, Ok(1));
    assert_eq!(
        t0.elapsed(),
        MS * 60,
        "hedge at 50 ms, answering 10 ms later"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the loser was dropped with the winner"
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            HedgeEvent::Started { attempt: 1 },
            HedgeEvent::Won { attempt: 1 }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_starts_no_hedge() {
    let started = Arc::new(AtomicU32::new(0));
    let p = Pipeline::builder()
        .hedge(delayed(50, 3))
        .idempotent(true)
        .build()
        .unwrap();
    for _ in 0..5 {
        let s = started.clone();
        let r: Result<(), Error<()>> = p
            .execute(move || {
                s.fetch_add(1, Ordering::SeqCst);
                async {
                    sleep(MS * 49).await;
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok());
    }
    assert_eq!(started.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn hedges_pass_the_per_attempt_bulkhead_and_leave_no_slot_behind() {
    let bulkhead = Bulkhead::builder(1).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(1))
        .bulkhead(&bulkhead)
        .hedge(delayed(50, 2))
        .idempotent(true)
        .build()
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    let t0 = Instant::now();
    let r: Result<u32, Error<()>> = p
        .execute(move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(MS * 100).await;
                Ok(n)
            }
        })
        .await;
    // both hedges found the one slot taken (the second started at once after the first
    // was rejected): only the original ran
    assert_eq!(r, Ok(0));
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(t0.elapsed(), MS * 100);
    assert_eq!(bulkhead.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn each_hedge_has_its_own_operation_timeout() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(1))
        .timeout(Timeout::operation(MS * 100))
        .hedge(delayed(80, 1))
        .idempotent(true)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let r: Result<u32, Error<()>> = p
        .execute({
            let mut n = 0;
            move || {
                n += 1;
                let me = n;
                async move {
                    sleep(if me == 1 { MS * 1000 } else { MS * 70 }).await;
                    Ok(me)
                }
            }
        })
        .await;
    // the original times out at 100 ms; the hedge (80 ms) answers at 150 ms, within its own
    assert_eq!(r, Ok(2));
    assert_eq!(t0.elapsed(), MS * 150);
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_from_the_retry_budget() {
    let clock = ManualClock::new();
    let budget = RetryBudget::builder(0.5)
        .min_per_sec(0)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(1).budget(budget))
        .hedge(
            Hedge::delayed(MS * 10)
                .on_event(move |e| log.lock().unwrap().push(*e))
                .build()
                .unwrap(),
        )
        .idempotent(true)
        .build()
        .unwrap();
    let slow = || async {
        sleep(MS * 20).await;
        Ok::<_, ()>(())
    };
    // each call deposits half a token: the first call's hedge is refused, the second's
    // may start
    for _ in 0..2 {
        p.execute(slow).await.unwrap();
    }
    assert_eq!(
        *events.lock().unwrap(),
        [
            HedgeEvent::Refused { attempt: 1 },
            HedgeEvent::Won { attempt: 0 },
            HedgeEvent::Started { attempt: 1 },
            HedgeEvent::Won { attempt: 0 },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_hedges_start_together_and_the_first_success_wins() {
    let p = Pipeline::builder()
        .hedge(Hedge::parallel().max_hedges(2).build().unwrap())
        .idempotent(true)
        .build()
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    let t0 = Instant::now();
    let r: Result<u32, Error<u32>> = p
        .execute(move || {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(0),
                    1 => {
                        sleep(MS * 30).await;
                        Ok(1)
                    }
                    _ => {
                        sleep(MS * 20).await;
                        Ok(2)
                    }
                }
            }
        })
        .await;
    assert_eq!(r, Ok(2));
    assert_eq!(started.load(Ordering::SeqCst), 3);
    assert_eq!(t0.elapsed(), MS * 20);
}

#[tokio::test(start_paused = true)]
async fn all_hedges_failing_hand_the_last_failure_to_the_retry_loop() {
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .hedge(Hedge::fallback().max_hedges(1).build().unwrap())
        .idempotent(true)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let out: Result<(), Error<u32>> = p
        .execute(move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move { Err(n) }
        })
        .await;
    // two attempts, each with one hedge after its failure
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(
        out,
        Err(Error::RetriesExhausted {
            attempts: 2,
            last: 3
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_loser_is_not_counted_by_a_per_attempt_breaker() {
    let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(1))
        .circuit_breaker(&breaker)
        .hedge(delayed(10, 1))
        .idempotent(true)
        .build()
        .unwrap();
    let mut n = 0;
    let r: Result<u32, Error<()>> = p
        .execute(|| {
            n += 1;
            let me = n;
            async move {
                if me == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(me)
            }
        })
        .await;
    assert_eq!(r, Ok(2));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn hedging_needs_idempotent_operations() {
    let err = Pipeline::builder()
        .hedge(delayed(10, 1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "hedge");
    let twice = Pipeline::builder()
        .idempotent(true)
        .hedge(delayed(10, 1))
        .hedge(delayed(10, 1))
        .build()
        .unwrap_err();
    assert_eq!(twice.field(), "hedge");
}

#[tokio::test(start_paused = true)]
async fn a_call_marked_not_idempotent_is_not_hedged() {
    let p = Pipeline::builder()
        .hedge(Hedge::parallel().max_hedges(3).build().unwrap())
        .idempotent(true)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let out: Result<(), Error<()>> = p
        .call()
        .idempotent(false)
        .execute(move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
    assert!(out.is_ok());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn the_pipeline_layer_hedges_with_copies_of_the_request() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let p = Pipeline::builder()
        .hedge(delayed(50, 1))
        .idempotent(true)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let mut svc = ServiceBuilder::new()
        .layer(p.layer())
        .service(service_fn(move |req: String| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                sleep(if n == 0 { MS * 500 } else { MS * 5 }).await;
                Ok::<_, ()>(format!("{req} by {n}"))
            }
        }));
    let t0 = Instant::now();
    let r = svc.ready().await.unwrap().call("get".to_string()).await;
    assert_eq!(r.unwrap(), "get by 1");
    assert_eq!(t0.elapsed(), MS * 55);
}
