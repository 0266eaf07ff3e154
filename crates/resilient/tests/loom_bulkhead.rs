//! A loom model of the bulkhead's slot hand-over: free slots live in an atomic counter,
//! and a slot given back while callers wait goes to them through the semaphore. What must
//! hold under every interleaving of a release, a newcomer joining the queue and a waiter
//! leaving it:
//! - never more slots taken than exist;
//! - no lost slot: when everything has settled, a caller still waiting has a slot handed
//!   to it, and with nobody waiting every slot not held is free to the next callers (in
//!   the counter, or handed to a waiter that left, where the next caller looks too).
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p resilient --release --no-default-features --test loom_bulkhead`.
#![cfg(loom)]

use loom::thread;
use resilient::Bulkhead;
use resilient::bulkhead::loom_model::{self, Got};

fn bulkhead(slots: usize, queue: usize) -> Bulkhead {
    Bulkhead::builder(slots).queue(queue).build().unwrap()
}

/// One slot, held; its holder gives it back while a newcomer arrives. The newcomer either
/// got the slot or waits with the slot handed to it.
#[test]
fn a_release_racing_an_arrival_reaches_the_newcomer() {
    loom::model(|| {
        let b = bulkhead(1, 1);
        assert!(matches!(loom_model::admit(&b), Got::Slot));
        let releaser = {
            let b = b.clone();
            thread::spawn(move || loom_model::release(&b))
        };
        let got = loom_model::admit(&b);
        releaser.join().unwrap();
        let (free, handed, queued) = loom_model::state(&b);
        match got {
            Got::Slot => assert_eq!((free, handed, queued), (0, 0, 0)),
            Got::Waiting(place) => {
                assert_eq!(
                    (free, handed, queued),
                    (0, 1, 1),
                    "the waiter's slot is stranded"
                );
                assert!(loom_model::take_handed(&b));
                drop(place);
            }
            Got::Full => panic!("the queue had room"),
        }
    });
}

/// Two slots, both held, one waiter queued. Both holders give back while the waiter
/// leaves (cancelled): afterwards both slots go to the next two callers at once.
#[test]
fn slots_handed_to_a_waiter_that_left_come_back() {
    loom::model(|| {
        let b = bulkhead(2, 1);
        assert!(matches!(loom_model::admit(&b), Got::Slot));
        assert!(matches!(loom_model::admit(&b), Got::Slot));
        let Got::Waiting(place) = loom_model::admit(&b) else {
            panic!("the queue had room")
        };
        let releasers: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || loom_model::release(&b))
            })
            .collect();
        drop(place);
        for r in releasers {
            r.join().unwrap();
        }
        let (free, handed, queued) = loom_model::state(&b);
        assert_eq!((free + handed, queued), (2, 0), "a slot is lost");
        assert!(matches!(loom_model::admit(&b), Got::Slot));
        assert!(matches!(loom_model::admit(&b), Got::Slot));
    });
}

/// One slot held, one waiter; the holder gives back, the waiter takes what it is handed
/// and gives it back, while a newcomer arrives: nobody ever holds more than the one slot,
/// and at the end the next caller gets it at once.
#[test]
fn the_cap_holds_through_hand_overs() {
    loom::model(|| {
        let b = bulkhead(1, 2);
        assert!(matches!(loom_model::admit(&b), Got::Slot));
        let Got::Waiting(place) = loom_model::admit(&b) else {
            panic!("the queue had room")
        };
        let holder = {
            let b = b.clone();
            thread::spawn(move || loom_model::release(&b))
        };
        let newcomer = {
            let b = b.clone();
            thread::spawn(move || match loom_model::admit(&b) {
                Got::Slot => {
                    loom_model::release(&b);
                    true
                }
                Got::Waiting(place) => {
                    drop(place);
                    false
                }
                Got::Full => false,
            })
        };
        holder.join().unwrap();
        // the first waiter is woken if it was handed the slot, else the slot is free
        // or the newcomer has it
        let woke = loom_model::take_handed(&b);
        drop(place);
        if woke {
            loom_model::release(&b);
        }
        newcomer.join().unwrap();
        let (free, handed, queued) = loom_model::state(&b);
        assert_eq!(queued, 0);
        assert_eq!(
            free + handed,
            1,
            "one slot in all: {free} free, {handed} handed"
        );
        assert!(
            matches!(loom_model::admit(&b), Got::Slot),
            "the free slot is found"
        );
    });
}
