//! A 3-node Redis Cluster started by the test (`--cluster-enabled yes`, then
//! `redis-cli --cluster create`): every limit of a key shares its hash tag, so quotas
//! run in one script on the node owning the key, whichever node that is.
#![cfg(feature = "cluster")]

mod common;

use std::time::Duration;

use common::RedisCluster;
use resilient::ratelimit::Rate;
use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_work_on_every_node_of_a_cluster() {
    let cluster = RedisCluster::start();
    let conn = Connection::cluster(cluster.urls()).await.unwrap();
    let l = RedisLimiter::builder(conn.clone())
        .limit(Limit::gcra(Rate::per_minute(5)).unwrap())
        .limit(Limit::fixed_window(4, Duration::from_secs(50 * 365 * 86_400)).unwrap())
        .limit(Limit::sliding_window_log(4, Duration::from_secs(3600)).unwrap())
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    // Enough keys to land on all three nodes.
    let mut slots = std::collections::HashSet::new();
    for i in 0..30 {
        let key = format!("user-{i}");
        let v = l.check_quota(&key, 3).await.unwrap();
        assert!(v.allowed, "{key}: {v:?}");
        assert_eq!(v.decisions.len(), 3);
        let v = l.check_quota(&key, 2).await.unwrap();
        assert!(!v.allowed, "the window's 4 are used up");
        assert!(v.decisions[0].allowed, "GCRA alone would admit");
        assert!(l.check(&key, 1).await.unwrap().allowed);
        assert!(!l.check(&key, 1).await.unwrap().allowed);
        let slot: i64 = conn
            .query(
                redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(format!("rl:{{{key}}}:0")),
            )
            .await
            .unwrap();
        slots.insert(slot * 3 / 16384);
    }
    assert_eq!(slots.len(), 3, "keys on every node's slot range");
    let s = l.stats();
    assert_eq!((s.errors, s.fallback), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_a_cluster_never_exceed_burst_plus_rate() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    let cluster = RedisCluster::start();
    let conn = Connection::cluster(cluster.urls()).await.unwrap();
    // 20 per 200 ms (one unit every 10 ms), burst 20.
    let l = RedisLimiter::builder(conn)
        .limit(Limit::gcra(Rate::new(20, Duration::from_millis(200))).unwrap())
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    l.check(&"warm-up", 0).await.unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let span = Duration::from_millis(300);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (l, admitted) = (l.clone(), admitted.clone());
            tokio::spawn(async move {
                while start.elapsed() < span {
                    if l.check(&"hot", 1).await.unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let admitted = admitted.load(Ordering::Relaxed);
    let bound = 20 + (elapsed.as_millis() / 10) as u64 + 1;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "{admitted}");
    let s = l.stats();
    assert_eq!((s.errors, s.fallback), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_batches_decisions_per_key() {
    use std::time::Duration;

    let cluster = RedisCluster::start();
    let conn = Connection::cluster(cluster.urls()).await.unwrap();
    let l = RedisLimiter::builder(conn)
        .limit(Limit::fixed_window(50, Duration::from_secs(50 * 365 * 86_400)).unwrap())
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    // 30 tasks ask 10 times each, over 3 keys (on different slots): a script's keys must
    // share a slot, so decisions batch per key, and each key admits exactly its 50.
    let tasks: Vec<_> = (0..30)
        .map(|t| {
            let l = l.clone();
            tokio::spawn(async move {
                let mut admitted = [0u64; 3];
                for i in 0..10 {
                    let k = (t + i) % 3;
                    if l.check(&format!("key-{k}"), 1).await.unwrap().allowed {
                        admitted[k] += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = [0u64; 3];
    for t in tasks {
        for (a, n) in admitted.iter_mut().zip(t.await.unwrap()) {
            *a += n;
        }
    }
    assert_eq!(admitted, [50, 50, 50]);
    let s = l.stats();
    assert_eq!((s.redis, s.errors, s.fallback), (300, 0, 0), "{s:?}");
    assert!(s.batches < s.redis, "decisions for one key batch up: {s:?}");
}
