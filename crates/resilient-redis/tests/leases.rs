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
    RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .limit(limit)
        .lease(units, ttl)
        .build()
        .unwrap()
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
    assert!(admitted <= 100, "{admitted} admitted of 100");
    // units leased but never spent are the only loss: at most 9 per instance
    assert!(admitted >= 100 - 3 * 9, "{admitted}");
    let stats: Vec<_> = instances.iter().map(RedisLimiter::stats).collect();
    // most admissions came from leases, without a round trip (each lease of 10 is one
    // round trip and up to 9 local admissions)
    let leased: u64 = stats.iter().map(|s| s.leased).sum();
    assert!(leased >= admitted / 2, "{leased} of {admitted}: {stats:?}");
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
