//! Stopping and restarting the real `redis-server` under load: each failure mode decides
//! as configured within the timeout, and the limits hold again once Redis is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::RedisServer;
use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};

/// A fixed window so long (50 years) that no test crosses its boundary.
const LONG: Duration = Duration::from_secs(50 * 365 * 86_400);
const TIMEOUT: Duration = Duration::from_millis(200);
const PROBE: Duration = Duration::from_millis(100);
/// What a loaded 2-core machine may add to a decision's latency on top of the timeout.
const MARGIN: Duration = Duration::from_millis(800);

fn limiter(server: &RedisServer, mode: FailureMode) -> RedisLimiter {
    RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        .limit(Limit::fixed_window(10, LONG).unwrap())
        .timeout(TIMEOUT)
        .probe_interval(PROBE)
        .failure_mode(mode)
        .build()
        .unwrap()
}

/// Timed decisions of `cost` 1 on `key`: (allowed, denied, slowest).
async fn run(l: &RedisLimiter, key: &str, n: usize) -> (usize, usize, Duration) {
    let (mut yes, mut no, mut slowest) = (0, 0, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let d = l.check(&key, 1).await.unwrap();
        slowest = slowest.max(t.elapsed());
        if d.allowed {
            yes += 1;
        } else {
            no += 1;
        }
    }
    (yes, no, slowest)
}

/// Background load on other keys while the server goes away and comes back; returns the
/// slowest decision it saw.
fn load(l: &RedisLimiter, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Duration> {
    let l = l.clone();
    tokio::spawn(async move {
        let slowest = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (l, stop, slowest) = (l.clone(), stop.clone(), slowest.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let _ = l.check(&format!("load-{t}-{}", i % 50), 1).await.unwrap();
                    slowest.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    i += 1;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Duration::from_micros(slowest.load(Ordering::Relaxed))
    })
}

/// Stops the server mid-load, checks `during` against the decisions made while it is
/// down, restarts it and checks that the limits hold again.
async fn outage(mode: FailureMode, during: impl Fn(usize, usize, &RedisLimiter)) {
    let mut server = RedisServer::start();
    let l = limiter(&server, mode);
    // Up: Redis decides.
    let (yes, no, _) = run(&l, "before", 12).await;
    assert_eq!((yes, no), (10, 2));
    assert_eq!(l.stats().fallback, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let background = load(&l, stop.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.stop();

    // Down: the failure mode decides, never slower than the timeout.
    let (yes, no, slowest) = run(&l, "during", 20).await;
    assert!(slowest <= TIMEOUT + MARGIN, "a decision took {slowest:?}");
    assert!(l.is_degraded());
    assert!(
        l.stats().fallback > 0 && l.stats().errors > 0,
        "{:?}",
        l.stats()
    );
    during(yes, no, &l);

    // Back (empty: nothing was persisted): decisions return to Redis within a few
    // probe intervals, and its limits hold again.
    server.restart();
    let back = Instant::now();
    let redis_before = l.stats().redis;
    while l.stats().redis == redis_before {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "Redis never came back: {:?}",
            l.stats()
        );
        let _ = l.check(&"probe", 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!l.is_degraded());
    let errors = l.stats().errors;
    let (yes, no, _) = run(&l, "after", 12).await;
    assert_eq!((yes, no), (10, 2), "{:?}", l.stats());
    assert_eq!(l.stats().errors, errors);

    stop.store(true, Ordering::Relaxed);
    let slowest = background.await.unwrap();
    assert!(
        slowest <= TIMEOUT + MARGIN,
        "a decision under load took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_admits_everything_while_redis_is_down() {
    outage(FailureMode::Open, |yes, no, _| {
        assert_eq!((yes, no), (20, 0))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_rejects_everything_while_redis_is_down() {
    outage(FailureMode::Closed, |yes, no, l| {
        assert_eq!((yes, no), (0, 20));
        let _ = l;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_rejections_carry_the_probe_interval() {
    let mut server = RedisServer::start();
    let l = limiter(&server, FailureMode::Closed);
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    server.stop();
    let d = l.check(&"k", 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, PROBE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_insurance_admits_its_share_while_redis_is_down() {
    // Half of 10 per hour: 5 per hour in this process.
    outage(FailureMode::Local { share: 0.5 }, |yes, no, _| {
        assert_eq!((yes, no), (5, 15));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_built_while_redis_is_down_recovers_when_it_starts() {
    let port = common::free_port();
    let l = RedisLimiter::builder(Connection::open(&format!("redis://127.0.0.1:{port}/")).unwrap())
        .limit(Limit::fixed_window(3, LONG).unwrap())
        .timeout(TIMEOUT)
        .probe_interval(PROBE)
        .failure_mode(FailureMode::Local { share: 1.0 })
        .build()
        .unwrap();
    let t = Instant::now();
    assert!(l.check(&"k", 1).await.unwrap().allowed, "the local limiter");
    assert!(t.elapsed() <= TIMEOUT + MARGIN);
    assert_eq!(l.stats().fallback, 1);
    // A server appears on that port.
    let server = RedisServer::start_on(port);
    let start = Instant::now();
    while l.stats().redis == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", l.stats());
        let _ = l.check(&"probe", 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (yes, no, _) = run(&l, "fresh", 5).await;
    assert_eq!((yes, no), (3, 2));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_costs_callers_the_timeout_at_most() {
    // SIGSTOP: the socket stays open and nothing answers (a hung or overloaded Redis).
    let server = RedisServer::start();
    // A probe interval long enough that a loaded machine stays within it below.
    let l = RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        .limit(Limit::fixed_window(10, LONG).unwrap())
        .timeout(TIMEOUT)
        .probe_interval(Duration::from_secs(1))
        .failure_mode(FailureMode::Open)
        .build()
        .unwrap();
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    server.pause();
    let t = Instant::now();
    let mut handles = Vec::new();
    for i in 0..20 {
        let l = l.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let d = l.check(&format!("k{i}"), 1).await.unwrap();
            (d.allowed, t.elapsed())
        }));
    }
    for h in handles {
        let (allowed, took) = h.await.unwrap();
        assert!(allowed, "fail open");
        assert!(took <= TIMEOUT + MARGIN, "{took:?}");
    }
    assert!(t.elapsed() <= TIMEOUT + MARGIN);
    // During the probe interval nobody waits at all.
    let t = Instant::now();
    assert!(l.check(&"k", 1).await.unwrap().allowed);
    assert!(t.elapsed() < TIMEOUT, "{:?}", t.elapsed());
    server.resume();
    let start = Instant::now();
    let redis = l.stats().redis;
    while l.stats().redis == redis {
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", l.stats());
        let _ = l.check(&"probe", 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (yes, no, _) = run(&l, "after", 12).await;
    assert_eq!((yes, no), (10, 2));
}
