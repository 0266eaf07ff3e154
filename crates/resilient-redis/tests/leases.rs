//! Leases (`RedisLimiterBuilder::lease`) against a real `redis-server`: a hot key costs one
//! round trip per lease, admissions never exceed what Redis granted, a lease Redis cannot
//! grant falls back to the cost alone in the same round trip, and unspent units expire.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::RedisServer;
use resilient::ratelimit::Rate;
use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};

/// A fixed window so long that no test crosses its boundary: admissions are bounded by
/// the limit exactly.
const LONG: Duration = Duration::from_secs(50 * 365 * 86_400);

fn leasing(server: &RedisServer, limit: Limit, units: u64, ttl: Duration) -> RedisLimiter {
    leasing_batched(server, limit, units, ttl, 64)
}

fn leasing_batched(
    server: &RedisServer,
    limit: Limit,
    units: u64,
    ttl: Duration,
    max_batch: usize,
) -> RedisLimiter {
    RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .limit(limit)
        .lease(units, ttl)
        .max_batch(max_batch)
        .build()
        .unwrap()
}

/// The units Redis counted for `key` in its fixed window (the state is "index used"; the
/// limiter's default prefix is `rl:`).
fn used(server: &RedisServer, key: &str) -> u64 {
    let reply = common::command(
        server.port(),
        &format!("GET rl:{{{key}}}:0"),
        Duration::from_secs(5),
    )
    .expect("GET answered");
    if reply.starts_with("$-1") {
        return 0;
    }
    let state = reply.lines().nth(1).expect("a bulk string");
    state
        .split(' ')
        .nth(1)
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("a fixed window's state: {reply:?}"))
}

/// `tasks` tasks on each limiter, each checking `key` `checks` times; the admissions.
async fn hammer(limiters: &[RedisLimiter], key: &'static str, tasks: usize, checks: usize) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for l in limiters {
        for _ in 0..tasks {
            let (l, admitted) = (l.clone(), admitted.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..checks {
                    if l.check(&key, 1).await.unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_instance_share_one_fetch() {
    // 64 callers miss the lease of one key at once: one fetch goes to Redis, the others
    // wait for it and spend the lease it brings; the next fetch starts once it is spent.
    // Nothing is lost to a lease replaced while it had units left.
    for max_batch in [64, 1] {
        let server = RedisServer::start();
        let limit = Limit::fixed_window(100, LONG).unwrap();
        let l = leasing_batched(&server, limit, 10, Duration::from_secs(60), max_batch);
        let admitted = hammer(std::slice::from_ref(&l), "hot", 64, 2).await;
        let s = l.stats();
        assert_eq!(admitted, 100, "max_batch {max_batch}: {s:?}");
        assert_eq!(used(&server, "hot"), 100, "max_batch {max_batch}");
        // limit / units fetches, each one Redis decision and 9 admissions from its lease
        assert_eq!(
            (s.leases, s.leased),
            (10, 90),
            "max_batch {max_batch}: {s:?}"
        );
        // the other decisions: the denied fetches (one at a time) and their waiters
        assert_eq!(s.redis + s.leased + s.cached, 128, "{s:?}");
        assert_eq!((s.fallback, s.errors), (0, 0), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_key_admit_the_limit() {
    let server = RedisServer::start();
    let limit = Limit::fixed_window(100, LONG).unwrap();
    let (units, instances) = (10, 2);
    // two limiters, two connections
    let ls: Vec<_> = (0..instances)
        .map(|_| leasing(&server, limit, units, Duration::from_secs(60)))
        .collect();
    let admitted = hammer(&ls, "shared", 32, 8).await;
    let stats: Vec<_> = ls.iter().map(RedisLimiter::stats).collect();
    // the documented bounds: no more than the limit (plus the slack of `units` per
    // instance, which a window that never rolls leaves no room for), and no fewer than
    // the limit less what the instances may hold unspent
    assert!(admitted <= 100, "{admitted}: {stats:?}");
    assert!(admitted >= 100 - instances * units, "{admitted}: {stats:?}");
    // and here exactly the limit: each instance checks more often than the limit, so
    // each spends its last lease before it is denied
    assert_eq!(admitted, 100, "{stats:?}");
    assert_eq!(used(&server, "shared"), 100);
    assert_eq!(stats.iter().map(|s| s.leases).sum::<u64>(), 10, "{stats:?}");
    assert_eq!(
        stats.iter().map(|s| s.fallback).sum::<u64>(),
        0,
        "{stats:?}"
    );
}

/// Lets every other task of a current-thread runtime run until it waits.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_fetch_whose_caller_is_dropped_does_not_hang_its_waiters() {
    for max_batch in [64, 1] {
        let server = RedisServer::start();
        let l = leasing_batched(
            &server,
            Limit::fixed_window(100, LONG).unwrap(),
            10,
            Duration::from_secs(60),
            max_batch,
        );
        // connect (the connection is lazy), then freeze the server: fetches hang
        assert!(l.check(&"warm", 1).await.unwrap().allowed);
        server.pause();
        let check = |l: &RedisLimiter| {
            let l = l.clone();
            tokio::spawn(async move { l.check(&"k", 1).await.unwrap() })
        };
        let driver = check(&l);
        settle().await; // it claims the key's fetch and sends it
        let waiters: Vec<_> = (0..3).map(|_| check(&l)).collect();
        settle().await; // they wait for that fetch
        driver.abort();
        assert!(driver.await.unwrap_err().is_cancelled());
        server.resume();
        // a hang guard only: the waiters are answered as soon as Redis answers
        for w in waiters {
            let d = tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("a waiter of an abandoned fetch hangs")
                .unwrap();
            assert!(d.allowed, "max_batch {max_batch}");
        }
        let s = l.stats();
        assert_eq!((s.fallback, s.errors), (0, 0), "{s:?}");
        if max_batch > 1 {
            // the batch driver received the reply and held the whole lease (its caller
            // was gone): the waiters spent it, and 7 more checks spend the rest
            assert_eq!((s.leases, s.redis, s.leased), (2, 2, 3), "{s:?}");
            for _ in 0..7 {
                assert!(l.check(&"k", 1).await.unwrap().allowed);
            }
            assert_eq!(l.stats().leased, 10, "{:?}", l.stats());
            assert_eq!(used(&server, "k"), 10, "nothing lost");
        } else {
            // the dropped caller's round trip went with it: a waiter fetched in its
            // place (one fetch), and the others spent that lease
            assert_eq!((s.leases, s.redis, s.leased), (2, 2, 2), "{s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_failed_fetch_go_to_the_failure_mode() {
    let probe = Duration::from_secs(5);
    for mode in [
        FailureMode::Closed,
        FailureMode::Open,
        FailureMode::Local { share: 0.5 },
    ] {
        let server = RedisServer::start();
        let l = RedisLimiter::builder(Connection::open(&server.url()).unwrap())
            .timeout(Duration::from_millis(200))
            .probe_interval(probe)
            .failure_mode(mode)
            .limit(Limit::fixed_window(10, LONG).unwrap())
            .lease(5, Duration::from_secs(60))
            .build()
            .unwrap();
        assert!(l.check(&"warm", 1).await.unwrap().allowed);
        server.pause();
        // 20 callers miss at once; the one fetch times out; every caller is answered by
        // the failure mode (a hang guard only on top)
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.check(&"k", 1).await.unwrap() })
            })
            .collect();
        let mut admitted = 0;
        for h in handles {
            let d = tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("a waiter of a failed fetch hangs")
                .unwrap();
            if d.allowed {
                admitted += 1;
            } else if mode == FailureMode::Closed {
                assert_eq!(d.retry_after, probe);
            }
        }
        let s = l.stats();
        let expected = match mode {
            FailureMode::Closed => 0,
            FailureMode::Open => 20,
            // the insurance limiter: half of the limit of 10, in this process
            FailureMode::Local { .. } => 5,
        };
        assert_eq!(admitted, expected, "{mode:?}: {s:?}");
        assert_eq!((s.fallback, s.leased), (20, 0), "{mode:?}: {s:?}");
        assert!(l.is_degraded());
        server.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_leasing_one_key_never_exceed_the_limit() {
    let server = RedisServer::start();
    let limit = Limit::fixed_window(100, LONG).unwrap();
    // three instances (each with its own leases), four tasks each, 60 checks per task
    let instances: Vec<_> = (0..3)
        .map(|_| leasing(&server, limit, 10, Duration::from_secs(60)))
        .collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for l in &instances {
        for _ in 0..4 {
            let (l, admitted) = (l.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..60 {
                    if l.check(&"hot", 1).await.unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let stats: Vec<_> = instances.iter().map(RedisLimiter::stats).collect();
    // Exactly the limit: never more than Redis granted, and no units lost. One fetch in
    // flight per key per instance, started only once the instance's lease is spent, so
    // no lease replaces one with units left; and an instance is denied only after its
    // last lease is spent (every instance checks more often than the limit).
    assert_eq!(admitted, 100, "{stats:?}");
    // every lease of 10 is one round trip and 9 local admissions
    assert_eq!(stats.iter().map(|s| s.leases).sum::<u64>(), 10, "{stats:?}");
    let leased: u64 = stats.iter().map(|s| s.leased).sum();
    assert_eq!(leased, 90, "{stats:?}");
    assert_eq!(used(&server, "hot"), 100);
    assert_eq!(
        stats.iter().map(|s| s.fallback).sum::<u64>(),
        0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_lease_is_spent_locally_then_the_last_units_one_by_one() {
    let server = RedisServer::start();
    let l = leasing(
        &server,
        Limit::fixed_window(5, LONG).unwrap(),
        4,
        Duration::from_secs(60),
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        let d = l.check(&"k", 1).await.unwrap();
        seen.push((d.allowed, d.remaining));
    }
    // 4 granted at once (1 spent, 3 held), spent locally; then Redis cannot grant 4 of
    // the 1 left and the same script grants 1; then nothing is left
    assert_eq!(
        seen,
        [
            (true, 4),
            (true, 3),
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0)
        ]
    );
    let s = l.stats();
    assert_eq!((s.redis, s.leased), (3, 3), "{s:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn unspent_units_expire_after_the_ttl() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(200);
    let l = leasing(
        &server,
        Limit::gcra(Rate::per_second(1_000)).unwrap(),
        10,
        ttl,
    );
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    assert_eq!(l.stats().leased, 1);
    // the lease's clock is tokio's: move it past the ttl without sleeping, then let the
    // next round trip run on real time again
    tokio::time::pause();
    tokio::time::advance(ttl + Duration::from_millis(1)).await;
    tokio::time::resume();
    let before = l.stats();
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    let after = l.stats();
    assert_eq!(after.leased, before.leased, "{after:?}");
    assert_eq!(after.redis, before.redis + 1, "{after:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn lease_settings_are_validated_at_build() {
    let conn = || Connection::open("redis://127.0.0.1:1/").unwrap();
    let build = |units, ttl| {
        RedisLimiter::builder(conn())
            .limit(Limit::fixed_window(100, Duration::from_secs(60)).unwrap())
            .lease(units, ttl)
            .failure_mode(FailureMode::Open)
            .build()
    };
    let second = Duration::from_secs(1);
    for (units, ttl) in [
        (1, second),
        (0, second),
        (101, second),
        (10, Duration::ZERO),
        (10, Duration::from_secs(61)),
    ] {
        let e = build(units, ttl).unwrap_err();
        assert_eq!(e.field(), "redis_limiter.lease", "{units} {ttl:?}");
    }
    assert!(build(100, Duration::from_secs(60)).is_ok());
}
