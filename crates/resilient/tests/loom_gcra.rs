//! A loom model of the GCRA reserve/refund path: callers reserve future slots of a packed
//! limiter while others cancel theirs and give them back (`Limiter::undo`). Whatever the
//! interleaving, the reservations that are kept never start closer together than the rate
//! allows, and a refund only ever returns the slot it took.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p resilient --release --no-default-features --test loom_gcra`.
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use loom::sync::Mutex;
use loom::thread;
use resilient::ratelimit::{AtomicLimiter, Gcra, Limiter, Rate};

/// One unit per 100 ms.
const T: Duration = Duration::from_millis(100);
/// Every model runs at one instant: only the interleaving varies.
const NOW: Duration = Duration::from_secs(10);
const MAX_WAIT: Duration = Duration::from_secs(10);

fn limiter(burst: u64) -> Arc<AtomicLimiter<Gcra>> {
    Arc::new(Gcra::limiter_with_burst(Rate::new(1, T), burst).unwrap())
}

/// Reserves one unit; returns when it may start (relative to `NOW`) and its ticket.
fn reserve(l: &AtomicLimiter<Gcra>) -> (Duration, resilient::ratelimit::Ticket) {
    let (d, ticket) = l
        .reserve_with_ticket(NOW, 1, MAX_WAIT)
        .expect("GCRA reserves")
        .expect("a cost of 1 fits");
    assert!(d.allowed, "within the maximum wait: {d:?}");
    (d.retry_after, ticket)
}

/// The GCRA bound on kept reservations: with `burst` units, no `k + 1` starts may lie
/// within less than `(k + 1 - burst)` intervals of each other.
fn assert_spaced(starts: &mut [Duration], burst: u64) {
    starts.sort();
    for i in 0..starts.len() {
        for j in i + 1..starts.len() {
            let n = (j - i + 1) as u64;
            if n > burst {
                let need = T * (n - burst) as u32;
                assert!(
                    starts[j] - starts[i] >= need,
                    "{n} starts within {:?} (burst {burst}): {starts:?}",
                    starts[j] - starts[i]
                );
            }
        }
    }
}

/// One caller cancels its reservation while another reserves and keeps its own; then a
/// last caller reserves. The refund may race the other reservation either way.
#[test]
fn a_refund_never_frees_a_slot_a_later_reservation_holds() {
    loom::model(|| {
        let l = limiter(1);
        let kept = Arc::new(Mutex::new(Vec::new()));

        let canceller = {
            let l = l.clone();
            thread::spawn(move || {
                let (_, ticket) = reserve(&l);
                l.undo(NOW, 1, ticket);
            })
        };
        let keeper = {
            let (l, kept) = (l.clone(), kept.clone());
            thread::spawn(move || {
                let (start, _) = reserve(&l);
                kept.lock().unwrap().push(start);
            })
        };
        let (start, _) = reserve(&l);
        kept.lock().unwrap().push(start);
        canceller.join().unwrap();
        keeper.join().unwrap();

        let (last, _) = reserve(&l);
        let mut starts = kept.lock().unwrap().clone();
        starts.push(last);
        assert_spaced(&mut starts, 1);
        // Only the cancelled slot can be lost (when a later reservation depended on it):
        // four reservations were made, so the last starts at the fourth slot at the latest.
        assert!(
            last <= T * 3,
            "capacity lost beyond the cancelled slot: {last:?}"
        );
    });
}

/// Two callers cancel while one keeps, with a burst of 2: the kept reservations and a
/// final one still respect the burst and the rate.
#[test]
fn concurrent_refunds_with_a_burst_keep_the_bound() {
    loom::model(|| {
        let l = limiter(2);
        let kept = Arc::new(Mutex::new(Vec::new()));

        let cancellers: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                thread::spawn(move || {
                    let (_, ticket) = reserve(&l);
                    l.undo(NOW, 1, ticket);
                })
            })
            .collect();
        let (start, _) = reserve(&l);
        kept.lock().unwrap().push(start);
        for c in cancellers {
            c.join().unwrap();
        }

        let mut starts = kept.lock().unwrap().clone();
        for _ in 0..2 {
            starts.push(reserve(&l).0);
        }
        assert_spaced(&mut starts, 2);
        // Five reservations with a burst of 2: the last starts by the fourth interval.
        let last = *starts.iter().max().unwrap();
        assert!(
            last <= T * 3,
            "capacity lost beyond the cancelled slots: {starts:?}"
        );
    });
}
