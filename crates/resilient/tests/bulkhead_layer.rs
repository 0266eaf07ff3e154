//! The bulkhead's own tower layer (`Bulkhead::layer`): its slots are the bulkhead's, held by
//! the response future and given back when it completes, is dropped or panics; a full
//! bulkhead rejects or queues as configured; an adaptive one learns from the responses.
//! And the slot counter's fast path under real threads, fixed and adaptive.
#![cfg(feature = "tower")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use resilient::bulkhead::Aimd;
use resilient::{Bulkhead, Error};
use tokio::sync::oneshot;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A service whose responses wait for a signal (`Ok`) or fail at once (`Err` request).
fn gated() -> impl Service<
    Result<oneshot::Receiver<u32>, u32>,
    Response = u32,
    Error = u32,
    Future = impl Future<Output = Result<u32, u32>> + Send,
> + Clone
+ Send {
    service_fn(|req: Result<oneshot::Receiver<u32>, u32>| async move {
        match req {
            Ok(rx) => Ok(rx.await.unwrap_or(0)),
            Err(e) => Err(e),
        }
    })
}

/// After everything settled: no slot taken, nobody queued, and every slot of the current
/// limit free at once.
async fn all_free(b: &Bulkhead) {
    assert_eq!((b.in_flight(), b.queued()), (0, 0));
    let n = b.limit();
    let mut svc = ServiceBuilder::new().layer(b.layer()).service(gated());
    let mut senders = Vec::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let (tx, rx) = oneshot::channel();
        senders.push(tx);
        held.push(svc.ready().await.unwrap().call(Ok(rx)));
    }
    assert_eq!(b.in_flight(), n);
    drop(held);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_response_future_holds_the_slot_until_ready_or_dropped() {
    let b = Bulkhead::builder(2).build().unwrap();
    let mut svc = ServiceBuilder::new().layer(b.layer()).service(gated());
    let (tx1, rx1) = oneshot::channel();
    let (_tx2, rx2) = oneshot::channel();
    let first = svc.ready().await.unwrap().call(Ok(rx1));
    let second = svc.ready().await.unwrap().call(Ok(rx2));
    // the slot is taken at `call`, before the future is polled
    assert_eq!(b.in_flight(), 2);
    let third = svc.ready().await.unwrap().call(Err(3)).await;
    assert!(matches!(third, Err(Error::BulkheadFull)), "{third:?}");
    // completed: given back
    tx1.send(1).unwrap();
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(b.in_flight(), 1);
    // dropped unpolled: given back
    drop(second);
    assert_eq!(b.in_flight(), 0);
    // the service's own errors come back as `Inner`
    let r = svc.ready().await.unwrap().call(Err(9)).await;
    assert!(matches!(r, Err(Error::Inner(9))), "{r:?}");
    all_free(&b).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_service_gives_its_slot_back() {
    let b = Bulkhead::builder(1).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(b.layer())
        .service(service_fn(|x: u32| async move {
            if x == 0 {
                panic!("boom");
            }
            Ok::<_, std::io::Error>(x)
        }));
    let task = tokio::spawn(svc.clone().oneshot(0));
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(b.in_flight(), 0);
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn queued_calls_run_once_a_slot_comes_back_or_give_up_after_max_wait() {
    let b = Bulkhead::builder(1)
        .queue(2)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut svc = ServiceBuilder::new()
        .layer(b.layer())
        .service(service_fn(move |x: u32| {
            // the service is called only once its call holds a slot
            seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(x) }
        }));
    let first = svc.ready().await.unwrap().call(1);
    let second = svc.ready().await.unwrap().call(2);
    let third = svc.ready().await.unwrap().call(3);
    assert_eq!((b.in_flight(), b.queued()), (1, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // the queue is full
    let fourth = svc.ready().await.unwrap().call(4).await;
    assert!(matches!(fourth, Err(Error::BulkheadFull)), "{fourth:?}");
    // each response hands its slot on
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(third.await.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!((b.in_flight(), b.queued()), (0, 0));

    // a waiter gives up after `max_wait` while a slow call holds the slot
    let mut gate = ServiceBuilder::new().layer(b.layer()).service(gated());
    let (tx, rx) = oneshot::channel();
    let slow = gate.ready().await.unwrap().call(Ok(rx));
    let start = tokio::time::Instant::now();
    let r = svc.ready().await.unwrap().call(5).await;
    assert!(matches!(r, Err(Error::BulkheadFull)), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!((b.in_flight(), b.queued()), (1, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    tx.send(7).unwrap();
    assert_eq!(slow.await.unwrap(), 7);
    all_free(&b).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue_and_strands_no_slot() {
    let b = Bulkhead::builder(1).queue(4).build().unwrap();
    let mut svc = ServiceBuilder::new().layer(b.layer()).service(gated());
    let (tx, rx) = oneshot::channel();
    let first = svc.ready().await.unwrap().call(Ok(rx));
    // one waiter dropped before its first poll, one after
    let unpolled = svc.ready().await.unwrap().call(Err(1));
    let mut polled = Box::pin(svc.ready().await.unwrap().call(Err(2)));
    assert!(futures_poll(&mut polled).is_pending());
    assert_eq!(b.queued(), 2);
    drop(unpolled);
    assert_eq!(b.queued(), 1);
    tx.send(5).unwrap();
    assert_eq!(first.await.unwrap(), 5);
    // the slot was handed to the polled waiter: dropping it now leaves it for the next
    drop(polled);
    assert_eq!(b.queued(), 0);
    all_free(&b).await;
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_layer_learns_from_responses() {
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = changes.clone();
    let b = Bulkhead::builder(8)
        .adaptive(Aimd::new(4, 1, 8).backoff(0.5))
        .on_limit_change(move |old, new| log.lock().unwrap().push((old, new)))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(b.layer()).service(gated());
    // a failed response halves the limit
    let r = svc.ready().await.unwrap().call(Err(1)).await;
    assert!(matches!(r, Err(Error::Inner(1))));
    assert_eq!(b.limit(), 2);
    // a dropped response is no sample
    let (_tx, rx) = oneshot::channel();
    drop(svc.ready().await.unwrap().call(Ok(rx)));
    assert_eq!(b.limit(), 2);
    // a success with the limit in use (at least half of it) grows it
    let (tx, rx) = oneshot::channel();
    let held = svc.ready().await.unwrap().call(Ok(rx));
    tx.send(0).unwrap();
    held.await.unwrap();
    assert_eq!(b.limit(), 3);
    let (tx1, rx1) = oneshot::channel();
    let (tx2, rx2) = oneshot::channel();
    let one = svc.ready().await.unwrap().call(Ok(rx1));
    let two = svc.ready().await.unwrap().call(Ok(rx2));
    tx1.send(1).unwrap();
    one.await.unwrap(); // 2 in flight of 3: grows
    assert_eq!(b.limit(), 4);
    tx2.send(2).unwrap();
    two.await.unwrap(); // 1 in flight of 4: idle, unchanged
    assert_eq!(b.limit(), 4);
    assert_eq!(*changes.lock().unwrap(), [(4, 2), (2, 3), (3, 4)]);
    all_free(&b).await;
}

/// Many tasks on four threads call through the layer, some queued, some aborted mid-call
/// or mid-wait: never more than the cap in the service at once, every call admitted or
/// rejected (none hangs), and every slot back at the end.
#[test]
fn the_layer_holds_the_cap_and_loses_no_slot_under_contention() {
    for (max, queue, adaptive, seed) in [
        (1, 64, false, 11u64),
        (4, 1000, false, 12),
        (3, 8, true, 13),
        (8, 0, true, 14),
    ] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut builder = Bulkhead::builder(max).queue(queue);
            if adaptive {
                builder = builder.adaptive(Aimd::new(max, 1, max));
            }
            let b = builder.build().unwrap();
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let admitted = Arc::new(AtomicUsize::new(0));
            let (r, p, a) = (running.clone(), peak.clone(), admitted.clone());
            let svc = ServiceBuilder::new().layer(b.layer()).service(service_fn(
                move |(spins, fail): (u32, bool)| {
                    let (r, p, a) = (r.clone(), p.clone(), a.clone());
                    async move {
                        a.fetch_add(1, Ordering::SeqCst);
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(now, Ordering::SeqCst);
                        let _leave = Leave(r);
                        for _ in 0..spins {
                            tokio::task::yield_now().await;
                        }
                        if fail { Err(()) } else { Ok(()) }
                    }
                },
            ));
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut tasks = Vec::new();
            for i in 0..2000u32 {
                let req = (rng.u32(0..50), rng.u8(0..5) == 0);
                tasks.push((rng.u8(0..10) == 0, tokio::spawn(svc.clone().oneshot(req))));
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
            let peak = peak.load(Ordering::SeqCst);
            assert!(peak <= max, "peak {peak} above {max}");
            assert!(admitted.load(Ordering::SeqCst) > 0);
            assert_eq!(running.load(Ordering::SeqCst), 0);
            all_free(&b).await;
        });
    }
}

/// An adaptive bulkhead's limit moves while many threads take and give back slots (AIMD:
/// every fifth call fails): the cap is never exceeded, and afterwards exactly the current
/// limit's slots are free: none leaked to a lowered limit, none created by a raised one.
#[test]
fn a_moving_limit_keeps_its_slots_exact_under_contention() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Bulkhead::builder(16)
            .queue(64)
            .adaptive(Aimd::new(8, 1, 16).backoff(0.5))
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..4000u32 {
            let (b, running, peak) = (b.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                b.call(|| async {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _leave = Leave(running.clone());
                    tokio::task::yield_now().await;
                    if i % 5 == 0 { Err(()) } else { Ok(()) }
                })
                .await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 16, "peak {peak} above the cap");
        all_free(&b).await;
        // and one more past the limit is rejected
        let n = b.limit();
        let mut svc = ServiceBuilder::new().layer(b.layer()).service(gated());
        let mut held = Vec::new();
        for _ in 0..n {
            let (tx, rx) = oneshot::channel();
            held.push((tx, svc.ready().await.unwrap().call(Ok(rx))));
        }
        // the queue takes the next ones: none runs
        let extra = svc.ready().await.unwrap().call(Err(0));
        assert_eq!((b.in_flight(), b.queued()), (n, 1));
        drop(extra);
        drop(held);
        assert_eq!((b.in_flight(), b.queued()), (0, 0));
    });
}

struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Polls a future once with a no-op waker.
fn futures_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = std::task::Waker::noop();
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[tokio::test]
async fn the_layer_times_calls_on_the_bulkheads_injected_clock() {
    let clock = Arc::new(resilient::ManualClock::new());
    let b = Bulkhead::builder(8)
        .adaptive(Aimd::new(4, 1, 8).timeout(Duration::from_millis(100)))
        .clock(clock.clone())
        .build()
        .unwrap();
    // the call "takes" 200 ms on the bulkhead's clock: past AIMD's timeout, a drop
    let slow = {
        let clock = clock.clone();
        service_fn(move |()| {
            clock.advance(Duration::from_millis(200));
            async { Ok::<_, ()>(()) }
        })
    };
    let mut svc = ServiceBuilder::new().layer(b.layer()).service(slow);
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(b.limit(), 3, "4 × 0.9 after a call slower than the timeout");
    // a call that takes no time on that clock is no drop
    let mut fast = ServiceBuilder::new()
        .layer(b.layer())
        .service(service_fn(|()| async { Ok::<_, ()>(()) }));
    fast.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(b.limit(), 3);
    all_free(&b).await;
}
