//! Keyed limiters: separate state per key, idle expiry, hard cap and eviction policy.

use std::sync::Arc;
use std::time::Duration;

use resilient::ManualClock;

const DAY: Duration = Duration::from_secs(86_400);
use resilient::ratelimit::{FixedWindow, Gcra, KeyedLimiter, Rate, SlidingWindowCounter};

#[test]
fn keys_have_separate_state() {
    let clock = ManualClock::new();
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(2)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<String>()
        .unwrap();
    assert!(k.check_n(&"a".into(), 2).unwrap().allowed);
    let d = k.check_n(&"a".into(), 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_millis(500));
    assert!(k.check_n(&"b".into(), 2).unwrap().allowed);
    assert_eq!(k.len(), 2);
    assert!(k.check_n(&"a".into(), 3).is_err());
}

/// `allow` refuses a cost above the capacity for ever (`Duration::MAX`) and takes nothing,
/// for a stored key as for a new one, with a fixed window as with GCRA.
#[test]
fn allow_refuses_a_cost_above_the_capacity_for_a_stored_key_too() {
    let clock = ManualClock::new();
    let gcra = KeyedLimiter::builder(Gcra::new(Rate::per_second(3)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<u32>()
        .unwrap();
    let window = KeyedLimiter::builder(FixedWindow::new(3, Duration::from_secs(1)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<u32>()
        .unwrap();
    for (name, allow) in [
        (
            "gcra",
            &(|c| gcra.allow(&1, c)) as &dyn Fn(u64) -> Result<(), Duration>,
        ),
        ("window", &|c| window.allow(&1, c)),
    ] {
        // A new key: refused, nothing stored.
        assert_eq!(allow(4), Err(Duration::MAX), "{name}");
        // A stored key (one unit taken): refused, and nothing more is taken.
        assert_eq!(allow(1), Ok(()), "{name}");
        assert_eq!(allow(4), Err(Duration::MAX), "{name}");
        assert_eq!(allow(2), Ok(()), "{name}: two units were left");
        let wait = allow(1).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{name}: {wait:?}"
        );
    }
}

#[test]
fn idle_keys_expire_without_changing_decisions() {
    let clock = ManualClock::new();
    let k = KeyedLimiter::builder(FixedWindow::new(5, Duration::from_secs(10)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<u32>()
        .unwrap();
    for key in 0..100 {
        k.check_n(&key, 1).unwrap();
    }
    k.check_n(&7, 4).unwrap();
    assert_eq!(k.len(), 100);
    clock.advance(Duration::from_secs(5));
    assert_eq!(k.retain_recent(), 100); // same window: nothing forgotten
    assert!(!k.check_n(&7, 1).unwrap().allowed);
    clock.advance(Duration::from_secs(5));
    assert_eq!(k.retain_recent(), 0); // next window: every key is fresh again
    assert!(k.is_empty());
    assert_eq!(k.check_n(&7, 5).unwrap().remaining, 0);
}

#[test]
fn a_request_that_leaves_a_fresh_state_stores_nothing() {
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(2)).unwrap())
        .build::<u8>()
        .unwrap();
    let d = k.check_n(&1, 0).unwrap();
    assert!(d.allowed && d.remaining == 2);
    assert!(k.is_empty());
}

#[test]
fn hard_cap_evicts_the_key_closest_to_recovery() {
    let clock = ManualClock::new();
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .max_keys(4)
        .shards(1)
        .clock(Arc::new(clock.clone()))
        .build::<u32>()
        .unwrap();
    // Keys 0..4 use 10, 8, 6, 4 units: key 3 recovers soonest.
    for (key, cost) in [(0, 10), (1, 8), (2, 6), (3, 4)] {
        k.check_n(&key, cost).unwrap();
    }
    assert_eq!(k.len(), 4);
    k.check_n(&99, 1).unwrap();
    assert_eq!(k.len(), 4, "the cap holds");
    // Key 3 was evicted: it comes back with a full limiter.
    assert_eq!(k.check_n(&3, 0).unwrap().remaining, 10);
    // The heaviest key kept its state.
    assert!(!k.check_n(&0, 1).unwrap().allowed);
}

#[test]
fn full_shard_drops_idle_keys_first() {
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::builder(SlidingWindowCounter::new(10, Duration::from_secs(1)).unwrap())
        .max_keys(8)
        .shards(1)
        .clock(Arc::new(clock.clone()))
        .build::<u64>()
        .unwrap();
    // Key 0 is limited; the others come and go in the same window (all tied on time to
    // idle): one key is evicted per new key, never the limited one, never more.
    assert!(k.check_n(&0, 10).unwrap().allowed);
    for key in 1..1_000 {
        k.check_n(&key, 1).unwrap();
        assert_eq!(k.len(), (key as usize + 1).min(8), "after key {key}");
    }
    assert!(
        !k.check_n(&0, 1).unwrap().allowed,
        "the limited key stays limited"
    );
    clock.advance(Duration::from_secs(2));
    k.check_n(&5_000, 10).unwrap();
    assert_eq!(k.len(), 1, "all recovered keys were dropped to make room");
}

/// Every key of a fixed window ties on time to idle (the window's end): a full shard
/// evicts a sixteenth of its keys, the least used, not all of them.
#[test]
fn a_full_shard_of_tied_keys_evicts_a_sixteenth_least_used_first() {
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::builder(FixedWindow::new(5, Duration::from_secs(10)).unwrap())
        .max_keys(64)
        .shards(1)
        .clock(Arc::new(clock.clone()))
        .build::<u64>()
        .unwrap();
    // Keys 0..8 are limited, 8..16 used 3 units, the rest 1.
    for key in 0..64 {
        let cost = match key {
            0..8 => 5,
            8..16 => 3,
            _ => 1,
        };
        assert!(k.check_n(&key, cost).unwrap().allowed);
    }
    k.check_n(&1_000, 1).unwrap();
    assert_eq!(
        k.len(),
        64 - 4 + 1,
        "64 / 16 = 4 keys evicted, then the new one"
    );
    for key in 0..8 {
        assert!(
            !k.check_n(&key, 1).unwrap().allowed,
            "key {key} stays limited"
        );
    }
    for key in 8..16 {
        assert_eq!(
            k.check_n(&key, 0).unwrap().remaining,
            2,
            "key {key} kept its state"
        );
    }
    // Under sustained pressure the limited keys still stay limited.
    for key in 2_000..2_500 {
        k.check_n(&key, 1).unwrap();
        assert!(k.len() <= 64 && k.len() >= 60);
    }
    for key in 0..8 {
        assert!(
            !k.check_n(&key, 1).unwrap().allowed,
            "key {key} stays limited"
        );
    }
}

#[test]
fn invalid_keyed_config_is_rejected() {
    let e = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
        .shards(3)
        .build::<u8>()
        .unwrap_err();
    assert_eq!(e.field(), "keyed_limiter.shards");
    let e = KeyedLimiter::builder(Gcra::new(Rate::per_second(1)).unwrap())
        .max_keys(2)
        .build::<u8>()
        .unwrap_err();
    assert_eq!(e.field(), "keyed_limiter.max_keys");
}

#[test]
fn eviction_is_batched_and_keeps_the_heaviest_keys() {
    let clock = ManualClock::new();
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(100)).unwrap())
        .max_keys(64)
        .shards(1)
        .clock(Arc::new(clock.clone()))
        .build::<u64>()
        .unwrap();
    // Key i used i + 1 units: key 0 is the closest to recovery.
    for key in 0..64 {
        k.check_n(&key, key + 1).unwrap();
    }
    k.check_n(&1_000, 1).unwrap();
    // 64 / 16 = 4 keys evicted in one pass (0..4), then the new one inserted.
    assert_eq!(k.len(), 61);
    for key in 0..4 {
        assert_eq!(
            k.check_n(&key, 0).unwrap().remaining,
            100,
            "key {key} was evicted"
        );
    }
    assert_eq!(
        k.check_n(&63, 0).unwrap().remaining,
        36,
        "the heaviest key kept its state"
    );
    for key in 2_000..3_000 {
        k.check_n(&key, 1).unwrap();
        assert!(k.len() <= 64);
    }
}

#[test]
fn a_quota_per_key_admits_only_if_every_limit_admits() {
    let clock = ManualClock::new();
    // Per key: 2 per second and 5 per minute.
    let k = KeyedLimiter::quota([
        Gcra::new(Rate::per_second(2)).unwrap(),
        Gcra::new(Rate::per_minute(5)).unwrap(),
    ])
    .clock(Arc::new(clock.clone()))
    .build::<&str>()
    .unwrap();
    assert_eq!(k.max_cost(), 2);

    let v = k.check_quota(&"a", 2).unwrap();
    assert!(v.allowed);
    assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (0, 3));
    // The per-second limit refuses: the per-minute one keeps its 3 units.
    let v = k.check_quota(&"a", 1).unwrap();
    assert!(!v.allowed);
    assert!(!v.decisions[0].allowed && v.decisions[1].allowed);
    assert_eq!(
        v.decisions[1].remaining, 2,
        "reported as if taken, but given back"
    );
    assert_eq!(v.binding().retry_after, Duration::from_millis(500));

    clock.advance(Duration::from_secs(1));
    assert!(k.check_n(&"a", 2).unwrap().allowed); // 1 left per minute
    clock.advance(Duration::from_secs(1));
    // Now the per-minute limit binds (12 s per unit, 4 of 5 units in use for 46 s more):
    // 2 units fit once 10 s have passed.
    let d = k.check_n(&"a", 2).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_secs(10));
    assert_eq!(d.limit, 5);
    // ... and it did not take from the per-second limit: 1 unit fits both.
    let v = k.check_quota(&"a", 1).unwrap();
    assert!(v.allowed);
    assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (1, 0));
    // Another key has its own quota.
    assert!(k.check_quota(&"b", 2).unwrap().allowed);
    // A cost above the smallest capacity is an error.
    assert_eq!(
        k.check_n(&"a", 3).unwrap_err(),
        resilient::ratelimit::CostError { cost: 3, max: 2 }
    );
    assert_eq!(k.allow(&"a", 3), Err(Duration::MAX));
}

#[test]
fn a_keyed_quota_is_forgotten_only_when_every_limit_has_recovered() {
    let clock = ManualClock::new();
    let k = KeyedLimiter::quota([
        Gcra::new(Rate::per_second(10)).unwrap(),
        Gcra::new(Rate::per_minute(60)).unwrap(),
    ])
    .clock(Arc::new(clock.clone()))
    .build::<u8>()
    .unwrap();
    assert!(k.allow(&1, 1).is_ok());
    clock.advance(Duration::from_millis(500));
    // recovered per second, not per minute (1 s interval)
    assert_eq!(k.retain_recent(), 1);
    clock.advance(Duration::from_millis(500));
    assert_eq!(k.retain_recent(), 0);
    // a zero-cost request on a new key stores nothing
    assert!(k.check_quota(&2, 0).unwrap().allowed);
    assert!(k.is_empty());
}

#[test]
fn a_keyed_quota_mixes_boxed_algorithms() {
    use resilient::ratelimit::Algorithm;
    let clock = ManualClock::new();
    let k = KeyedLimiter::quota([
        Box::new(Gcra::new(Rate::per_second(10)).unwrap()) as Box<dyn Algorithm>,
        Box::new(FixedWindow::new(3, Duration::from_secs(60)).unwrap()),
    ])
    .clock(Arc::new(clock.clone()))
    .build::<u8>()
    .unwrap();
    for _ in 0..3 {
        assert!(k.allow(&1, 1).is_ok());
    }
    let v = k.check_quota(&1, 1).unwrap();
    assert!(!v.allowed);
    assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
    // The GCRA limit got its unit back: refused again, it reports the same 6 left.
    assert_eq!(v.decisions[0].remaining, 6);
    let again = k.check_quota(&1, 1).unwrap();
    assert!(!again.allowed);
    assert_eq!(again.decisions[0].remaining, 6);
    clock.advance(Duration::from_secs(60));
    let v = k.check_quota(&1, 1).unwrap();
    assert!(v.allowed);
    assert_eq!(v.decisions[0].remaining, 9);
    assert_eq!(v.decisions[1].remaining, 2);
}

#[test]
fn an_empty_quota_is_a_config_error() {
    let none: [Gcra; 0] = [];
    let e = KeyedLimiter::quota(none).build::<u8>().unwrap_err();
    assert_eq!(e.field(), "keyed_limiter.limits");
}

/// After a spike of keys, `retain_recent` gives the tables' memory back.
#[test]
fn retain_recent_shrinks_the_tables_after_a_spike() {
    let clock = ManualClock::new();
    clock.set(DAY);
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .clock(Arc::new(clock.clone()))
        .build::<u32>()
        .unwrap();
    for key in 0..20_000 {
        k.check_n(&key, 1).unwrap();
    }
    assert!(k.capacity() >= 20_000);
    clock.advance(Duration::from_millis(100));
    assert!(k.check_n(&7, 5).unwrap().allowed);
    assert_eq!(k.retain_recent(), 1);
    assert!(k.capacity() < 1_000, "capacity {}", k.capacity());
    // Still correct afterwards.
    assert!(!k.check_n(&7, 6).unwrap().allowed);
    for key in 0..1_000 {
        k.check_n(&key, 1).unwrap();
    }
    assert_eq!(k.len(), 1_000);
}

/// A sweeper task forgets idle keys periodically and stops once the limiter is dropped.
#[tokio::test(start_paused = true)]
async fn a_sweeper_forgets_idle_keys_and_stops_with_the_limiter() {
    let k = Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
            .build::<u32>()
            .unwrap(),
    );
    let sweeper = k.spawn_sweeper(Duration::from_secs(5));
    for key in 0..100 {
        k.check_n(&key, 10).unwrap();
    }
    assert_eq!(k.len(), 100);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(k.len(), 100, "not swept yet");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(k.len(), 0, "swept at 5 s");
    drop(k);
    tokio::time::timeout(Duration::from_secs(10), sweeper)
        .await
        .expect("the sweeper stops once the limiter is dropped")
        .unwrap();
}

/// Units in use that never come back; once `shift` is armed, every cost-0 step after the
/// first `after` reports 50 more units in use than the state holds (as a configuration
/// changing in the middle of an eviction pass could).
#[derive(Debug)]
struct ShiftingRanks {
    armed: std::sync::atomic::AtomicBool,
    steps: std::sync::atomic::AtomicUsize,
    after: usize,
}

impl resilient::ratelimit::Algorithm for ShiftingRanks {
    fn step(&self, state: u64, _now: u64, cost: u64) -> (u64, resilient::ratelimit::Decision) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut in_use = state;
        if cost == 0 && self.armed.load(SeqCst) && self.steps.fetch_add(1, SeqCst) >= self.after {
            in_use += 50;
        }
        let allowed = in_use + cost <= 100;
        let d = resilient::ratelimit::Decision {
            allowed,
            limit: 100,
            remaining: 100u64.saturating_sub(in_use + if allowed { cost } else { 0 }),
            reset: Duration::MAX,
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::MAX
            },
        };
        (if allowed { state + cost } else { state }, d)
    }
    fn refund(&self, state: u64, _now: u64, cost: u64) -> u64 {
        state.saturating_sub(cost)
    }
    fn time_to_idle(&self, state: u64, _now: u64) -> u64 {
        if state == 0 { 0 } else { u64::MAX / 2 }
    }
    fn max_cost(&self) -> u64 {
        100
    }
    fn policy(&self) -> resilient::ratelimit::Policy {
        resilient::ratelimit::Policy {
            quota: 100,
            window: Duration::MAX,
        }
    }
}

/// A full shard evicts exactly its batch, chosen by one ranking of its keys: ranks that
/// shift while it evicts (here all of them, upwards) used to leave the keys unevicted
/// when they were ranked a second time to find the chosen ones.
#[test]
fn a_full_shard_evicts_its_batch_even_if_ranks_shift() {
    use std::sync::atomic::Ordering::SeqCst;
    let k = KeyedLimiter::builder(ShiftingRanks {
        armed: false.into(),
        steps: 0.into(),
        after: 16,
    })
    .max_keys(16)
    .shards(1)
    .build::<u64>()
    .unwrap();
    for key in 1..=16 {
        assert!(k.check_n(&key, key).unwrap().allowed);
    }
    k.algorithm().armed.store(true, SeqCst);
    assert!(k.check_n(&1_000, 1).unwrap().allowed);
    k.algorithm().armed.store(false, SeqCst);
    // 16 / 16 = 1 key evicted (key 1, the least used), then the new one inserted.
    assert_eq!(k.len(), 16);
    assert_eq!(
        k.check_n(&1, 0).unwrap().remaining,
        100,
        "key 1 was evicted"
    );
    assert_eq!(k.check_n(&2, 0).unwrap().remaining, 98);
}

/// `spawn_sweeper(Duration::MAX)` used to panic inside the task (`now + every`), so
/// nothing was ever swept and nothing said so. The period is clamped to a year: the task
/// lives, and sweeps.
#[tokio::test(start_paused = true)]
async fn a_sweeper_with_an_endless_period_lives_and_sweeps_yearly() {
    let k = Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
            .build::<u32>()
            .unwrap(),
    );
    let sweeper = k.spawn_sweeper(Duration::MAX);
    for key in 0..10 {
        k.check_n(&key, 10).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    assert!(!sweeper.is_finished(), "the sweeper task must not die");
    assert_eq!(k.len(), 10, "not swept yet");
    tokio::time::sleep(resilient::ratelimit::MAX_SWEEP_PERIOD).await;
    assert!(!sweeper.is_finished());
    assert_eq!(k.len(), 0, "swept after a year");
    sweeper.abort();
}
