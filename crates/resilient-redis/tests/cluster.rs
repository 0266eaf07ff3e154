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
