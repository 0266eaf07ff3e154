//! A loom model of GCRA's reserve / cancel path: concurrent waiters reserve slots on one
//! lock-free limiter while others cancel theirs (the ticket's undo), at a fixed time.
//!
//! A cancelled reservation may only be given back if no later reservation depends on it;
//! otherwise a newcomer is handed the slot of a waiter still queued. What must hold under
//! every interleaving: no two live reservations share a slot, and the reservations due
//! within any window `w` from now never exceed `burst + w / interval` (the limiter's
//! promise, `burst + rate·w`, at a fixed time).
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p resilient --release --no-default-features --test loom_gcra`.
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use loom::thread;
use resilient::ManualClock;
use resilient::ratelimit::{AtomicLimiter, Gcra, Limiter, Rate, RateLimiter};

/// The fixed time of the model: a realistic clock reading, far from the origin.
const NOW: Duration = Duration::from_secs(86_400);
/// One unit per 100 ms.
const INTERVAL: Duration = Duration::from_millis(100);
/// Long enough for every reservation of the model to fit.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// A live reservation: when it is due (its wait from `NOW`) and the end of its slot (the
/// limiter's queue end it left, as its `reset` from `NOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    due: Duration,
    end: Duration,
}

fn limiter(burst: u64) -> Arc<AtomicLimiter<Gcra>> {
    Arc::new(Gcra::limiter_with_burst(Rate::new(1, INTERVAL), burst).unwrap())
}

/// Reserves one unit; if `cancel`, gives it back through its ticket (the waiter's future
/// dropped) and returns `None`.
fn reserve(l: &AtomicLimiter<Gcra>, cancel: bool) -> Option<Slot> {
    let (d, ticket) = l.reserve_with_ticket(NOW, 1, MAX_WAIT).unwrap().unwrap();
    assert!(
        d.allowed,
        "every reservation of the model fits in MAX_WAIT: {d:?}"
    );
    if cancel {
        l.undo(NOW, 1, ticket);
        return None;
    }
    Some(Slot {
        due: d.retry_after,
        end: d.reset,
    })
}

/// The invariant over the reservations still live (and a final one taken after all of
/// them): distinct slots, and at most `burst + w / interval` due within any `w`.
#[track_caller]
fn check(burst: u64, live: &[Slot]) {
    let mut ends: Vec<_> = live.iter().map(|s| s.end).collect();
    ends.sort();
    for pair in ends.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "two live reservations share a slot: {live:?}"
        );
    }
    for s in live {
        let w = s.due;
        let due = live.iter().filter(|o| o.due <= w).count() as u64;
        let bound = burst + (w.as_nanos() / INTERVAL.as_nanos()) as u64;
        assert!(
            due <= bound,
            "{due} reservations due within {w:?}, at most {bound} allowed: {live:?}"
        );
        // A slot ends a whole burst after it is due (sooner for the burst itself).
        assert!(
            s.end <= s.due + INTERVAL * burst as u32,
            "slot after its due time: {s:?}"
        );
    }
}

/// Runs `threads` (each a list of reservations, `true` = cancelled) against one limiter,
/// then reserves once more and checks the invariant over everything still live.
fn model(burst: u64, threads: &'static [&'static [bool]]) {
    loom::model(move || {
        let l = limiter(burst);
        let handles: Vec<_> = threads
            .iter()
            .map(|plan| {
                let l = l.clone();
                thread::spawn(move || {
                    plan.iter()
                        .filter_map(|&cancel| reserve(&l, cancel))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut live: Vec<Slot> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        live.extend(reserve(&l, false));
        check(burst, &live);
    });
}

/// One waiter reserves, cancels and reserves again while another queues two: a cancelled
/// slot is given back only while nothing was queued after it.
#[test]
fn cancel_between_reservations_never_hands_out_a_queued_slot() {
    model(1, &[&[false, true, false], &[false, false]]);
}

/// A burst of 2: two waiters each cancel one of two reservations (first or last).
#[test]
fn concurrent_cancellations_keep_slots_distinct_with_a_burst() {
    model(2, &[&[true, false], &[false, true]]);
}

/// Three threads: two cancel what they reserved, one queues behind them.
#[test]
fn three_threads_reserve_and_cancel() {
    model(1, &[&[false, true], &[true], &[false]]);
}

/// How a request is decided in [`rate_change_racing`].
#[derive(Clone, Copy)]
enum Take {
    /// `AtomicLimiter::reserve`.
    Reserve,
    /// `Limiter::try_acquire`.
    TryAcquire,
    /// `RateLimiter::check` on a limiter of this one GCRA limit (its own decision path,
    /// which builds the decision after the compare-and-swap).
    Check,
}

/// A rate change racing a reservation, an admission on the `try_acquire` path or a
/// `RateLimiter::check`: the decision is made on one whole configuration (old or new, never
/// a torn mix), and the unit it took is carried over to the new rate exactly once (not
/// scaled twice, not left counted at the old rate), so the next request finds the same
/// state whichever came first.
fn rate_change_racing(how: Take) {
    loom::model(move || {
        let l = limiter(1);
        let clock = ManualClock::new();
        clock.set(NOW);
        let checked = RateLimiter::builder()
            .limit(l.clone())
            .clock(Arc::new(clock))
            .build()
            .unwrap();
        let changer = {
            let l = l.clone();
            thread::spawn(move || l.set_rate(NOW, Rate::new(1, INTERVAL / 2), 2).unwrap())
        };
        let take = |l: &AtomicLimiter<Gcra>| match how {
            Take::Reserve => l.reserve(NOW, 1, MAX_WAIT).unwrap().unwrap(),
            Take::TryAcquire => l.try_acquire(NOW, 1).unwrap(),
            Take::Check => checked.check(),
        };
        let d = take(&l);
        assert!(d.allowed && d.retry_after.is_zero(), "{d:?}");
        let seen = (d.limit, d.reset);
        assert!(
            seen == (1, INTERVAL) || seen == (2, INTERVAL / 2),
            "a decision on a torn configuration: {d:?}"
        );
        changer.join().unwrap();
        // One unit of 50 ms in use out of 2: the next is admitted at once and ends 100 ms
        // on (a unit left counted at the old rate would make it wait 50 ms).
        let d = take(&l);
        assert_eq!((d.limit, d.retry_after), (2, Duration::ZERO), "{d:?}");
        // Within a nanosecond: the carry may change a state by one.
        let end = d.reset.as_nanos().abs_diff(INTERVAL.as_nanos());
        assert!(end <= 1, "{d:?}");
    });
}

#[test]
fn rate_change_racing_a_reservation_carries_it_over_once() {
    rate_change_racing(Take::Reserve);
}

#[test]
fn rate_change_racing_an_admission_carries_it_over_once() {
    rate_change_racing(Take::TryAcquire);
}

#[test]
fn rate_change_racing_a_full_check_carries_it_over_once() {
    rate_change_racing(Take::Check);
}

/// A kept reservation's start bound, checked from the decisions' own waits: the kept
/// reservations (and one made afterwards) never start closer together than the rate
/// allows, and only the cancelled slots can be lost.
mod starts {
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
}
