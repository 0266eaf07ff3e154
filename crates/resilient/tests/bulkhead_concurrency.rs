//! The bulkhead under real threads: its free-slot counter and its waiters' semaphore never
//! let more than `max_concurrent` calls run, never strand a slot (a released slot reaches a
//! waiter or the counter), and give every slot back after cancellations and timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilient::{Acquire, Bulkhead, Context, Guard};

/// Takes a slot, waiting as configured; `None` when rejected.
async fn enter(b: &Bulkhead) -> Option<resilient::Permit<'_>> {
    match b.acquire(&Context::new()) {
        Acquire::Ready(r) => r.ok(),
        Acquire::Wait(w) => w.await.ok(),
    }
}

/// After the storm, every slot is free: `max` callers get one at once, the next is
/// rejected.
fn all_slots_free(b: &Bulkhead, max: usize) {
    assert_eq!(b.in_flight(), 0, "slots still taken");
    assert_eq!(b.queued(), 0, "waiters left behind");
    let ctx = Context::new();
    let permits: Vec<_> = (0..max)
        .map(|i| match b.acquire(&ctx) {
            Acquire::Ready(Ok(p)) => p,
            _ => panic!("slot {i} of {max} not free at once"),
        })
        .collect();
    assert!(b.acquire_now(&ctx).is_err());
    drop(permits);
    assert_eq!(b.in_flight(), 0);
}

/// Counts a call as running until dropped.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn enter(running: &'a AtomicUsize, peak: &AtomicUsize) -> Self {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Running(running)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Many threads take and give back slots, some waiting in the queue, some cancelled
/// while waiting (their task aborted): the peak never exceeds the cap, no
/// waiter hangs, and all slots come back.
#[test]
fn the_cap_holds_and_no_slot_is_lost_under_contention() {
    for (max, queue, seed) in [(1, 64, 1u64), (2, 8, 2), (4, 1000, 3), (8, 2, 4)] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let b = Bulkhead::builder(max).queue(queue).build().unwrap();
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let admitted = Arc::new(AtomicUsize::new(0));
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut tasks = Vec::new();
            for i in 0..2000u32 {
                let (b, running, peak, admitted) =
                    (b.clone(), running.clone(), peak.clone(), admitted.clone());
                let spins = rng.u32(0..50);
                tasks.push((
                    rng.u8(0..10) == 0,
                    tokio::spawn(async move {
                        let Some(permit) = enter(&b).await else {
                            return;
                        };
                        admitted.fetch_add(1, Ordering::SeqCst);
                        // declared after the permit, so dropped before it (also when the
                        // task is aborted mid-way)
                        let inside = Running::enter(&running, &peak);
                        for _ in 0..spins {
                            tokio::task::yield_now().await;
                        }
                        drop(inside);
                        if i % 3 == 0 {
                            permit.record(resilient::Outcome::Success, Duration::ZERO);
                        } else {
                            drop(permit);
                        }
                    }),
                ));
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            for (abort, task) in tasks {
                if abort {
                    task.abort();
                }
                let _ = task.await;
            }
            assert!(
                peak.load(Ordering::SeqCst) <= max,
                "peak {} above {max}",
                peak.load(Ordering::SeqCst)
            );
            assert!(admitted.load(Ordering::SeqCst) > 0);
            all_slots_free(&b, max);
        });
    }
}

/// A slot given back while a waiter is joining the queue reaches that waiter (the
/// releaser sees the waiter, or the waiter sees the slot): with no `max_wait`, a lost
/// slot would hang this test.
#[test]
fn a_release_racing_a_new_waiter_is_never_stranded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..2000 {
            let b = Bulkhead::builder(1).queue(1).build().unwrap();
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (b1, go1) = (b.clone(), barrier.clone());
            let releaser = tokio::spawn(async move {
                let permit = enter(&b1).await.expect("the only slot is free");
                held_tx.send(()).unwrap();
                go1.wait().await;
                drop(permit);
            });
            held_rx.await.unwrap();
            let (b2, go2) = (b.clone(), barrier.clone());
            let waiter = tokio::spawn(async move {
                go2.wait().await;
                enter(&b2).await.is_some()
            });
            releaser.await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("the waiter got the released slot")
                .unwrap();
            assert!(got);
            all_slots_free(&b, 1);
        }
    });
}
