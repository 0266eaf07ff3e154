//! Adaptive bulkheads on tokio's paused clock: the limit follows the algorithm's rule on
//! scripted latencies and failures, a lowered limit retires slots as they come back, and
//! admissions never exceed the limit in force.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::bulkhead::{Aimd, Gradient2, Vegas};
use resilient::{Acquire, Bulkhead, Context, Error, Guard, Outcome, Pipeline};

const MS: Duration = Duration::from_millis(1);

fn take(b: &Bulkhead) -> Option<resilient::Permit<'_>> {
    match b.acquire(&Context::new()) {
        Acquire::Ready(Ok(p)) => Some(p),
        _ => None,
    }
}

/// A lowered limit does not take slots back from running calls: they are retired as they
/// are given back, and only then is a new caller admitted.
#[test]
fn a_lowered_limit_retires_slots_as_they_come_back() {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let b = Bulkhead::builder(10)
        .adaptive(Aimd::new(10, 1, 10).backoff(0.5))
        .on_limit_change(move |old, new| seen.lock().unwrap().push((old, new)))
        .build()
        .unwrap();
    let mut held: Vec<_> = (0..10).map(|_| take(&b).expect("a free slot")).collect();
    assert!(take(&b).is_none());
    // one call fails: 10 × 0.5 = 5
    held.pop().unwrap().record(Outcome::Failure, MS);
    assert_eq!(b.limit(), 5);
    assert_eq!(*changes.lock().unwrap(), [(10, 5)]);
    assert_eq!(b.in_flight(), 9);
    assert!(take(&b).is_none(), "9 running against a limit of 5");
    // four more finish (cancelled: no samples): their slots are retired
    for _ in 0..4 {
        drop(held.pop());
        assert!(take(&b).is_none());
    }
    assert_eq!(b.in_flight(), 5);
    // the fifth frees a slot
    drop(held.pop());
    assert_eq!(b.in_flight(), 4);
    let p = take(&b).expect("4 running against a limit of 5");
    assert!(take(&b).is_none());
    drop(p);
    drop(held);
    assert_eq!(b.in_flight(), 0);
    // all five slots are free, and no more
    let all: Vec<_> = (0..5).map(|_| take(&b).expect("free")).collect();
    assert!(take(&b).is_none());
    drop(all);
}

/// A raised limit adds slots at once, and hands them to waiting callers first.
#[tokio::test(start_paused = true)]
async fn a_raised_limit_wakes_waiters() {
    let b = Bulkhead::builder(4)
        .queue(4)
        .adaptive(Aimd::new(1, 1, 4))
        .build()
        .unwrap();
    let first = take(&b).expect("one slot");
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            match b.acquire(&Context::new()) {
                Acquire::Wait(w) => w.await.map(|p| p.record(Outcome::Success, MS)).is_ok(),
                Acquire::Ready(r) => r.is_ok(),
            }
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(b.queued(), 1);
    // a success with the limit in use: 1 + 1 = 2, and the new slot goes to the waiter
    first.record(Outcome::Success, MS);
    assert!(waiter.await.unwrap());
    assert!(b.limit() >= 2);
}

/// Callers through a pipeline: the limit grows while calls succeed under load, falls when
/// they fail, and the number running never exceeds the highest limit in force.
#[tokio::test(start_paused = true)]
async fn aimd_in_a_pipeline_grows_under_load_and_backs_off_on_failures() {
    let b = Bulkhead::builder(32)
        .queue(1000)
        .adaptive(Aimd::new(4, 2, 32))
        .build()
        .unwrap();
    let pipeline = Pipeline::builder().bulkhead(&b).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak_over_limit = Arc::new(AtomicUsize::new(0));
    let wave = |fail: bool| {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (pipeline, b, running, over) = (
                    pipeline.clone(),
                    b.clone(),
                    running.clone(),
                    peak_over_limit.clone(),
                );
                tokio::spawn(async move {
                    let r: Result<(), Error<()>> = pipeline
                        .execute(|| async {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            if now > b.limit() {
                                over.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::time::sleep(MS * 10).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            if fail { Err(()) } else { Ok(()) }
                        })
                        .await;
                    r
                })
            })
            .collect();
        async move {
            for t in tasks {
                let _ = t.await.unwrap();
            }
        }
    };
    wave(false).await;
    // while calls succeed the limit only rises, so no admission is ever above it
    assert_eq!(peak_over_limit.load(Ordering::SeqCst), 0);
    let grown = b.limit();
    assert!(
        grown > 4,
        "64 successful calls under load grow the limit: {grown}"
    );
    wave(true).await;
    let shrunk = b.limit();
    assert!(shrunk < grown, "failures shrink it: {grown} -> {shrunk}");
    assert_eq!(shrunk, 2, "64 failures take it to its floor");
    assert_eq!(b.in_flight(), 0);
}

/// Gradient2 and Vegas on scripted latency: flat latency raises the limit, latency four
/// times higher lowers it.
#[tokio::test(start_paused = true)]
async fn latency_based_limits_follow_scripted_latency() {
    for b in [
        Bulkhead::builder(200)
            .queue(10_000)
            .adaptive(Gradient2::new(10, 2, 200))
            .build()
            .unwrap(),
        Bulkhead::builder(200)
            .queue(10_000)
            .adaptive(Vegas::new(10, 2, 200))
            .build()
            .unwrap(),
    ] {
        let pipeline = Pipeline::builder().bulkhead(&b).build().unwrap();
        let latency = Arc::new(AtomicUsize::new(10));
        let run = |n: usize| {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (pipeline, latency) = (pipeline.clone(), latency.clone());
                    tokio::spawn(async move {
                        let r: Result<(), Error<()>> = pipeline
                            .execute(|| async {
                                let ms = latency.load(Ordering::SeqCst) as u32;
                                tokio::time::sleep(MS * ms).await;
                                Ok(())
                            })
                            .await;
                        r.unwrap();
                    })
                })
                .collect();
            async move {
                for t in tasks {
                    t.await.unwrap();
                }
            }
        };
        run(400).await;
        let flat = b.limit();
        assert!(flat > 10, "flat latency raises the limit: {flat}");
        latency.store(40, Ordering::SeqCst);
        run(400).await;
        let slow = b.limit();
        assert!(slow < flat, "rising latency lowers it: {flat} -> {slow}");
        assert_eq!(b.in_flight(), 0);
    }
}
