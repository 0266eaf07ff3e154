//! 1,000 in-flight hedged and fallback calls dropped at once, through a pipeline and
//! through its tower layer: every bulkhead slot (per call, per attempt, and the one the
//! fallback alternative holds) comes back, and every operation's future is dropped (the
//! `Arc` each one holds is released): nothing is left behind.

use std::sync::Arc;
use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::{Bulkhead, Error, Pipeline, Retry};
use tokio::time::sleep;

const MS: Duration = Duration::from_millis(1);

struct Slots {
    per_call: Bulkhead,
    per_attempt: Bulkhead,
    alternative: Bulkhead,
}

fn slots() -> Slots {
    Slots {
        per_call: Bulkhead::builder(10_000).build().unwrap(),
        per_attempt: Bulkhead::builder(10_000).build().unwrap(),
        alternative: Bulkhead::builder(10_000).build().unwrap(),
    }
}

/// Per-call and per-attempt bulkheads, two attempts of up to three hedges each, and a
/// fallback whose alternative holds a slot of its own and hangs.
fn pipeline(s: &Slots, held: Arc<()>) -> Pipeline<impl resilient::Classify<u32, u32>> {
    let alternative = s.alternative.clone();
    Pipeline::builder()
        .bulkhead(&s.per_call)
        .retry(Retry::immediate().attempts(2))
        .bulkhead(&s.per_attempt)
        .hedge(Hedge::delayed(MS * 10).max_hedges(2).build().unwrap())
        .idempotent(true)
        .fallback(
            Fallback::builder()
                .or_else(move |_failure: Error<u32>| {
                    let (alternative, held) = (alternative.clone(), held.clone());
                    async move {
                        alternative
                            .call(|| async move {
                                let _held = held;
                                sleep(Duration::from_secs(3600)).await;
                                Ok::<u32, u32>(0)
                            })
                            .await
                            .map_err(|e| e.map_inner(|_| 0))
                    }
                })
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Even calls hang (hedged: three attempts in flight each), odd ones fail at once (the
/// pipeline gives up, and the fallback alternative hangs).
async fn operation(n: u32, held: Arc<()>) -> Result<u32, u32> {
    let _held = held;
    if n.is_multiple_of(2) {
        sleep(Duration::from_secs(3600)).await;
        Ok(n)
    } else {
        Err(n)
    }
}

fn assert_in_flight(s: &Slots, per_call: usize, per_attempt: usize, alternative: usize) {
    assert_eq!(s.per_call.in_flight(), per_call, "per-call slots");
    assert_eq!(s.per_attempt.in_flight(), per_attempt, "per-attempt slots");
    assert_eq!(
        s.alternative.in_flight(),
        alternative,
        "the alternative's slots"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_hedged_and_fallback_pipeline_calls_leave_nothing_behind() {
    let s = slots();
    let held = Arc::new(());
    let p = pipeline(&s, held.clone());
    let calls: Vec<_> = (0..1000u32)
        .map(|n| {
            let (p, held) = (p.clone(), held.clone());
            tokio::spawn(async move { p.execute(move || operation(n, held.clone())).await })
        })
        .collect();
    sleep(MS * 25).await;
    // 500 hanging calls: one per-call slot and three attempts each; 500 in the fallback
    assert_in_flight(&s, 500, 1500, 500);
    for c in &calls {
        c.abort();
    }
    for c in calls {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    assert_in_flight(&s, 0, 0, 0);
    drop(p);
    assert_eq!(
        Arc::strong_count(&held),
        1,
        "an operation's future was left behind"
    );
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn dropped_hedged_and_fallback_layer_calls_leave_nothing_behind() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let s = slots();
    let held = Arc::new(());
    let p = pipeline(&s, held.clone());
    let h = held.clone();
    let svc = ServiceBuilder::new()
        .layer(p.layer())
        .service(service_fn(move |n: u32| operation(n, h.clone())));
    let calls: Vec<_> = (0..1000u32)
        .map(|n| {
            let mut svc = svc.clone();
            tokio::spawn(async move { svc.ready().await?.call(n).await })
        })
        .collect();
    sleep(MS * 25).await;
    assert_in_flight(&s, 500, 1500, 500);
    for c in &calls {
        c.abort();
    }
    for c in calls {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    assert_in_flight(&s, 0, 0, 0);
    drop((svc, p));
    assert_eq!(
        Arc::strong_count(&held),
        1,
        "an operation's future was left behind"
    );
}
