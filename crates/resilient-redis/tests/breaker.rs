//! The shared breaker against a real `redis-server`: failures seen by two instances (and by
//! two processes) open it for both; one instance's isolated failures do not; the open state
//! ends on Redis' clock; with Redis down each instance keeps its local breaker.

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use resilient::{CircuitBreaker, CircuitState, Error, Pipeline};
use resilient_redis::{Connection, SharedBreaker};

fn shared(server: &RedisServer, name: &str, instance: &str, open_for: Duration) -> SharedBreaker {
    SharedBreaker::builder(Connection::open(&server.url()).unwrap(), name)
        // a local breaker that never opens on its own here: only the shared view rejects
        .local(CircuitBreaker::consecutive_failures(1_000).build().unwrap())
        .window(Duration::from_secs(10), Duration::from_secs(1))
        .min_calls(10)
        .failure_rate(0.5)
        .min_instances(2)
        .open_for(open_for)
        .sync_interval(Duration::from_millis(50))
        .timeout(Duration::from_secs(2))
        .instance(instance)
        .build()
        .unwrap()
}

async fn fail(p: &Pipeline, n: usize) {
    for _ in 0..n {
        let _ = p.execute(|| async { Err::<(), _>("down") }).await;
    }
}

async fn admitted(p: &Pipeline) -> bool {
    !matches!(
        p.execute(|| async { Ok::<(), &str>(()) }).await,
        Err(Error::CircuitOpen { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instances_failures_do_not_open_it_but_two_instances_do() {
    let server = RedisServer::start();
    let a = shared(&server, "orders", "a", Duration::from_secs(60));
    let b = shared(&server, "orders", "b", Duration::from_secs(60));
    let pa = Pipeline::builder().guard(a.clone()).build().unwrap();
    let pb = Pipeline::builder().guard(b.clone()).build().unwrap();

    // instance a alone fails 30 times: a local network fault must not open it for all
    fail(&pa, 30).await;
    let view = a.sync().await.unwrap();
    assert_eq!(
        (view.calls, view.failures, view.failing_instances),
        (30, 30, 1)
    );
    assert!(!view.open);
    b.sync().await.unwrap();
    assert!(admitted(&pb).await && admitted(&pa).await);
    assert_eq!(b.state(), CircuitState::Closed);

    // b sees failures too: the second instance's report opens it
    fail(&pb, 5).await;
    let view = b.sync().await.unwrap();
    assert!(view.open, "{view:?}");
    assert_eq!(view.failing_instances, 2);
    assert!(!admitted(&pb).await);
    // a learns it at its next report
    a.sync().await.unwrap();
    assert!(!admitted(&pa).await);
    assert_eq!(a.state(), CircuitState::Open);
    assert!(a.shared_open_for().unwrap() > Duration::from_secs(50));
    // the local breakers never tripped on their own counts: they follow the shared phase
    assert_eq!(a.local().state(), CircuitState::Open);
    assert_eq!(a.local().snapshot().consecutive_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_report_spreads_an_open_circuit_within_the_staleness_bound() {
    let server = RedisServer::start();
    let a = shared(&server, "search", "a", Duration::from_secs(60));
    let b = shared(&server, "search", "b", Duration::from_secs(60));
    let (_ta, _tb) = (a.spawn_sync(), b.spawn_sync());
    let pa = Pipeline::builder().guard(a.clone()).build().unwrap();
    let pb = Pipeline::builder().guard(b.clone()).build().unwrap();
    fail(&pa, 10).await;
    fail(&pb, 10).await;
    let start = Instant::now();
    // polls the guard (no fixed sleep); the bound is two report intervals and a round trip
    while admitted(&pa).await || admitted(&pb).await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not seen: {:?}",
            a.stats()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(a.stats().syncs > 0 && b.stats().syncs > 0);
    assert_eq!(a.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_break_ends_on_redis_time_and_counting_starts_afresh() {
    let server = RedisServer::start();
    let a = shared(&server, "pay", "a", Duration::from_millis(300));
    let b = shared(&server, "pay", "b", Duration::from_millis(300));
    let pa = Pipeline::builder().guard(a.clone()).build().unwrap();
    let pb = Pipeline::builder().guard(b.clone()).build().unwrap();
    fail(&pa, 10).await;
    a.sync().await.unwrap();
    fail(&pb, 10).await;
    assert!(b.sync().await.unwrap().open);
    let start = Instant::now();
    loop {
        let v = b.sync().await.unwrap();
        if !v.open {
            assert_eq!(v.calls, 0, "the counts that opened it are spent");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
    // The local breaker follows the shared phase with its deadline converted from Redis
    // time at its last sync, so it may trail Redis' verdict by a sync interval (50 ms)
    // and a round trip: polled within a bound generous for a loaded machine.
    let closed = Instant::now();
    while !admitted(&pb).await {
        assert!(
            closed.elapsed() < Duration::from_secs(2),
            "still rejected {:?} after the shared circuit closed",
            closed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_instance_keeps_its_local_breaker() {
    let mut server = RedisServer::start();
    let a = SharedBreaker::builder(Connection::open(&server.url()).unwrap(), "db")
        .local(CircuitBreaker::consecutive_failures(3).build().unwrap())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let pa = Pipeline::builder().guard(a.clone()).build().unwrap();
    server.stop();
    fail(&pa, 3).await;
    assert!(a.sync().await.is_err());
    let s = a.stats();
    assert_eq!(s.errors, 1);
    assert!(s.last_error.is_some());
    // the local breaker opened on its own
    assert_eq!(a.state(), CircuitState::Open);
    assert!(!admitted(&pa).await);
}

fn follower(server: &RedisServer, name: &str, instance: &str) -> SharedBreaker {
    SharedBreaker::builder(Connection::open(&server.url()).unwrap(), name)
        .local(
            CircuitBreaker::consecutive_failures(1_000)
                .open_for(Duration::from_millis(300))
                .break_backoff(2.0, Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .min_calls(10)
        .min_instances(2)
        .open_for(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .instance(instance)
        .build()
        .unwrap()
}

async fn until_ready(b: &CircuitBreaker) {
    let start = Instant::now();
    while !b.is_ready() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            b.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_breaker_api_follows_the_shared_phases() {
    let server = RedisServer::start();
    let a = follower(&server, "ledger", "a");
    let b = follower(&server, "ledger", "b");
    let (la, lb) = (a.local().clone(), b.local().clone());
    // Plain `CircuitBreaker` calls, no guard: their outcomes are reported all the same.
    for l in [&la, &lb] {
        for _ in 0..10 {
            let _ = l.call(|| async { Err::<(), _>("down") }).await;
        }
    }
    a.sync().await.unwrap();
    assert!(b.sync().await.unwrap().open, "two instances failed");
    a.sync().await.unwrap();
    for l in [&la, &lb] {
        assert_eq!(l.state(), CircuitState::Open);
        let left = l.snapshot().retry_after.unwrap();
        assert!(left <= Duration::from_millis(300), "{left:?}");
        assert!(matches!(
            l.call(|| async { Ok::<(), &str>(()) }).await,
            Err(Error::CircuitOpen { .. })
        ));
    }

    // The break ends; a's probe fails: the longer break and the failed-recovery count
    // reach b through Redis.
    until_ready(&la).await;
    let _ = la.call(|| async { Err::<(), _>("still down") }).await;
    assert_eq!(la.state(), CircuitState::Open);
    assert_eq!(la.snapshot().failed_recoveries, 1);
    a.sync().await.unwrap();
    let view = b.sync().await.unwrap();
    assert!(
        view.open && view.remaining > Duration::from_millis(300),
        "{view:?}"
    );
    assert_eq!(lb.snapshot().failed_recoveries, 1, "shared");
    assert!(lb.snapshot().retry_after.unwrap() > Duration::from_millis(300));

    // b's probe succeeds: the shared circuit closes, and a follows.
    until_ready(&lb).await;
    assert!(lb.call(|| async { Ok::<(), &str>(()) }).await.is_ok());
    assert_eq!(lb.state(), CircuitState::Closed);
    assert!(!b.sync().await.unwrap().open);
    assert!(!a.sync().await.unwrap().open);
    assert_eq!(la.state(), CircuitState::Closed);
    assert_eq!(la.snapshot().failed_recoveries, 0);
    assert_eq!(a.stats().errors + b.stats().errors, 0);
}

/// The other process of `two_processes_share_one_breaker`: fails calls through the shared
/// breaker named in the environment and reports them. Does nothing when run on its own.
#[tokio::test]
#[ignore = "run by two_processes_share_one_breaker in a child process"]
async fn child_process_reports_failures() {
    let (Ok(url), Ok(name)) = (
        std::env::var("SHARED_BREAKER_URL"),
        std::env::var("SHARED_BREAKER_NAME"),
    ) else {
        return;
    };
    let b = SharedBreaker::builder(Connection::open(&url).unwrap(), &name)
        .local(CircuitBreaker::consecutive_failures(1_000).build().unwrap())
        .min_calls(10)
        .min_instances(2)
        .instance("child")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let p = Pipeline::builder().guard(b.clone()).build().unwrap();
    fail(&p, 10).await;
    b.sync().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_breaker() {
    let server = RedisServer::start();
    let parent = SharedBreaker::builder(Connection::open(&server.url()).unwrap(), "inventory")
        .local(CircuitBreaker::consecutive_failures(1_000).build().unwrap())
        .min_calls(10)
        .min_instances(2)
        .instance("parent")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let p = Pipeline::builder().guard(parent.clone()).build().unwrap();
    fail(&p, 10).await;
    assert!(
        !parent.sync().await.unwrap().open,
        "one process is not enough"
    );

    let status = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_reports_failures",
            "--ignored",
            "--quiet",
        ])
        .env("SHARED_BREAKER_URL", server.url())
        .env("SHARED_BREAKER_NAME", "inventory")
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let view = parent.sync().await.unwrap();
    // the child's report opened it (with two failing instances); the parent hears it
    assert!(view.open, "{view:?}");
    assert!(view.remaining > Duration::from_secs(20));
    assert!(!admitted(&p).await);
}
