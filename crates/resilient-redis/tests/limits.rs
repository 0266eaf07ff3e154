//! The distributed limiter against a real `redis-server` started by the test: the same
//! decisions as the local limiters, concurrency bounds for every algorithm (tasks and
//! separate processes), quotas, weights, the deny cache, the guard and the tower layer.
//!
//! Redis `TIME` is real time, so these tests run on real time with short windows; the
//! bounds hold on a loaded machine (they only grow with the measured span).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::RedisServer;
use resilient::ratelimit::{
    FixedWindow, Gcra, Limiter, Rate, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
};
use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};

fn limiter(server: &RedisServer, limits: &[Limit]) -> RedisLimiter {
    let mut b = RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        // Generous: a loaded 2-core machine must not turn into fallback decisions.
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed);
    for l in limits {
        b = b.limit(*l);
    }
    b.build().unwrap()
}

/// `n` tasks hammer `key` with cost 1 for `span`; returns (admitted, elapsed).
async fn hammer(l: &RedisLimiter, key: &str, tasks: usize, span: Duration) -> (u64, Duration) {
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let l = l.clone();
        let key = key.to_string();
        let admitted = admitted.clone();
        handles.push(tokio::spawn(async move {
            while start.elapsed() < span {
                if l.check(&key, 1).await.unwrap().allowed {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (admitted.load(Ordering::Relaxed), start.elapsed())
}

/// A fixed window so long (50 years, from the script's 2023 epoch) that no test crosses
/// its boundary.
const LONG: Duration = Duration::from_secs(50 * 365 * 86_400);

fn periods(elapsed: Duration, period: Duration) -> u64 {
    (elapsed.as_nanos() / period.as_nanos()) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_tasks_never_exceed_burst_plus_rate() {
    let server = RedisServer::start();
    // 20 per 200 ms (one unit every 10 ms), burst 20.
    let l = limiter(
        &server,
        &[Limit::gcra(Rate::new(20, Duration::from_millis(200))).unwrap()],
    );
    let (admitted, elapsed) = hammer(&l, "gcra", 16, Duration::from_millis(300)).await;
    let bound = 20 + periods(elapsed, Duration::from_millis(10)) + 1;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "the burst at least: {admitted}");
    let s = l.stats();
    assert_eq!((s.errors, s.fallback), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_tasks_never_exceed_capacity_plus_refills() {
    let server = RedisServer::start();
    // 20 tokens, 10 more every 100 ms.
    let l = limiter(
        &server,
        &[Limit::token_bucket(20, Rate::new(10, Duration::from_millis(100))).unwrap()],
    );
    let (admitted, elapsed) = hammer(&l, "tb", 16, Duration::from_millis(300)).await;
    let bound = 20 + 10 * periods(elapsed, Duration::from_millis(100));
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "the capacity at least: {admitted}");
    assert_eq!(l.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_tasks_never_exceed_limit_per_window() {
    let server = RedisServer::start();
    let w = Duration::from_millis(200);
    let l = limiter(&server, &[Limit::fixed_window(20, w).unwrap()]);
    let (admitted, elapsed) = hammer(&l, "fw", 16, Duration::from_millis(300)).await;
    // The span touches at most floor(span / w) + 2 aligned windows.
    let bound = 20 * (periods(elapsed, w) + 2);
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "one window at least: {admitted}");
    assert_eq!(l.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_log_tasks_never_exceed_limit_per_sliding_window() {
    let server = RedisServer::start();
    let w = Duration::from_millis(200);
    let l = limiter(&server, &[Limit::sliding_window_log(20, w).unwrap()]);
    let (admitted, elapsed) = hammer(&l, "log", 16, Duration::from_millis(300)).await;
    // Exact: every window of length w holds at most 20, and ceil(span / w) of them
    // cover the span.
    let bound = 20 * (periods(elapsed, w) + 1);
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "one window at least: {admitted}");
    assert_eq!(l.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_counter_tasks_never_exceed_limit_per_aligned_window() {
    let server = RedisServer::start();
    let w = Duration::from_millis(200);
    let l = limiter(&server, &[Limit::sliding_window_counter(20, w).unwrap()]);
    let (admitted, elapsed) = hammer(&l, "swc", 16, Duration::from_millis(300)).await;
    // The current count never passes the limit, so each aligned window holds at most 20.
    let bound = 20 * (periods(elapsed, w) + 2);
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= 20, "one window at least: {admitted}");
    assert_eq!(l.stats().errors, 0);
}

/// Runs `ops` on a local limiter and on Redis (fresh key each) and compares decisions:
/// allowed, limit and remaining must agree; reset and retry_after within `tol`.
/// `aligned`: the limit's windows are aligned to the server's clock (a fixed window), so
/// they end earlier than the local ones (which start at 0): times are only bounded above.
async fn same_as_local(
    remote: &RedisLimiter,
    local: &dyn Limiter,
    key: &str,
    costs: &[u64],
    aligned: bool,
) {
    let t0 = Duration::from_secs(86_400);
    let tol = Duration::from_secs(2);
    for (i, &c) in costs.iter().enumerate() {
        let r = remote.check(&key, c).await.unwrap();
        let l = local.try_acquire(t0, c).unwrap();
        assert_eq!(
            (r.allowed, r.limit, r.remaining),
            (l.allowed, l.limit, l.remaining),
            "call {i} (cost {c}): redis {r:?}, local {l:?}"
        );
        let close = |a: Duration, b: Duration| a.abs_diff(b) <= tol;
        if aligned {
            assert!(
                r.retry_after <= l.retry_after + tol,
                "call {i}: {r:?} vs {l:?}"
            );
            assert!(r.reset <= l.reset + tol, "call {i}: {r:?} vs {l:?}");
        } else {
            assert!(
                close(r.retry_after, l.retry_after),
                "call {i}: {r:?} vs {l:?}"
            );
            assert!(close(r.reset, l.reset), "call {i}: {r:?} vs {l:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_match_the_local_limiters() {
    let server = RedisServer::start();
    let costs = [3, 4, 3, 1, 1, 2];
    // Long periods so that the time between calls does not matter.
    let gcra = limiter(&server, &[Limit::gcra(Rate::per_minute(10)).unwrap()]);
    same_as_local(
        &gcra,
        &Gcra::limiter(Rate::per_minute(10)).unwrap(),
        "g",
        &costs,
        false,
    )
    .await;

    let tb = limiter(
        &server,
        &[Limit::token_bucket(10, Rate::per_minute(5)).unwrap()],
    );
    same_as_local(
        &tb,
        &TokenBucket::limiter(10, Rate::per_minute(5)).unwrap(),
        "t",
        &costs,
        false,
    )
    .await;

    let hour = Duration::from_secs(3600);
    let fw = limiter(&server, &[Limit::fixed_window(10, hour).unwrap()]);
    let r = fw.check(&"probe", 0).await.unwrap();
    if r.reset > Duration::from_secs(5) || r.reset.is_zero() {
        same_as_local(
            &fw,
            &FixedWindow::limiter(10, hour).unwrap(),
            "f",
            &costs,
            true,
        )
        .await;
    }

    let log = limiter(&server, &[Limit::sliding_window_log(10, hour).unwrap()]);
    same_as_local(
        &log,
        &SlidingWindowLog::new(10, hour).unwrap(),
        "l",
        &costs,
        false,
    )
    .await;

    let swc = limiter(&server, &[Limit::sliding_window_counter(10, hour).unwrap()]);
    let r = swc.check(&"probe", 0).await.unwrap();
    assert!(r.allowed && r.remaining == 10);
    // The counter weighs the previous window by the server's offset into the current
    // one: a fresh key behaves as locally.
    let local = SlidingWindowCounter::limiter(10, hour).unwrap();
    for (i, &c) in costs.iter().enumerate() {
        let r = swc.check(&"s", c).await.unwrap();
        let l = local.try_acquire(Duration::from_secs(7200), c).unwrap();
        assert_eq!(
            (r.allowed, r.limit, r.remaining),
            (l.allowed, l.limit, l.remaining),
            "{i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_admits_only_if_all_limits_admit_and_weights_count() {
    let server = RedisServer::start();
    let l = limiter(
        &server,
        &[
            Limit::gcra(Rate::per_minute(10)).unwrap(),
            Limit::fixed_window(6, LONG).unwrap(),
        ],
    );
    let v = l.check_quota(&"k", 4).await.unwrap();
    assert!(v.allowed);
    assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (6, 2));
    // The window refuses 3 more: nothing is taken from the GCRA limit either.
    let v = l.check_quota(&"k", 3).await.unwrap();
    assert!(!v.allowed);
    assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
    let v = l.check_quota(&"k", 0).await.unwrap();
    assert_eq!((v.decisions[0].remaining, v.decisions[1].remaining), (6, 2));
    assert!(l.check(&"k", 2).await.unwrap().allowed);
    // A cost above a capacity never goes to Redis.
    let e = l.check(&"k", 7).await.unwrap_err();
    assert_eq!((e.cost, e.max), (7, 6));
    assert_eq!(l.allow(&"k", 7).await, Err(Duration::MAX));
    // Different keys are independent; odd keys are fine.
    for key in ["", "}", "{x}", "a}b", "\0"] {
        assert!(l.check(&key, 6).await.unwrap().allowed, "{key:?}");
    }
    assert!(!l.check(&"", 1).await.unwrap().allowed);
    assert!(
        l.check(&"\0\0", 1).await.unwrap().allowed,
        "escaping is one-to-one"
    );
    assert_eq!(l.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keys_expire_and_denials_write_nothing() {
    let server = RedisServer::start();
    let l = limiter(
        &server,
        &[Limit::gcra(Rate::new(2, Duration::from_millis(100))).unwrap()],
    );
    let conn = Connection::open(&server.url()).unwrap();
    let ttl = |conn: Connection| async move {
        let ms: i64 = conn
            .query(redis::cmd("PTTL").arg("rl:{idle}:0"))
            .await
            .unwrap();
        ms
    };
    assert_eq!(
        ttl(conn.clone()).await,
        -2,
        "no key before the first admission"
    );
    assert!(l.check(&"idle", 0).await.unwrap().allowed);
    assert_eq!(ttl(conn.clone()).await, -2, "a zero cost writes nothing");
    assert!(l.check(&"idle", 2).await.unwrap().allowed);
    let t = ttl(conn.clone()).await;
    assert!((1..=501).contains(&t), "expires once full again: {t} ms");
    let before: String = conn
        .query(redis::cmd("GET").arg("rl:{idle}:0"))
        .await
        .unwrap();
    assert!(!l.check(&"idle", 1).await.unwrap().allowed);
    let after: String = conn
        .query(redis::cmd("GET").arg("rl:{idle}:0"))
        .await
        .unwrap();
    assert_eq!(before, after, "a denial leaves the state as it was");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ttl(conn.clone()).await, -2, "expired");
    assert!(l.check(&"idle", 2).await.unwrap().allowed, "a fresh key");
}

/// `tasks` tasks each ask `per_task` times (cost 1) for one of `keys` keys, all at once.
async fn burst(l: &RedisLimiter, tasks: usize, per_task: usize, keys: usize) -> Vec<(usize, u64)> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let l = l.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..per_task {
                    let k = (t + i) % keys;
                    let d = l.check(&format!("b{k}"), 1).await.unwrap();
                    if d.allowed {
                        got.push((k, d.remaining));
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_decisions_are_the_sequential_decisions() {
    let server = RedisServer::start();
    for max_batch in [64, 1] {
        let l = RedisLimiter::builder(Connection::open(&server.url()).unwrap())
            .limit(Limit::fixed_window(100, LONG).unwrap())
            .prefix(format!("batch{max_batch}:"))
            .max_batch(max_batch)
            .timeout(Duration::from_secs(3))
            .failure_mode(FailureMode::Closed)
            .build()
            .unwrap();
        // 50 tasks, 3 keys, 400 asks: each key admits exactly its 100, and as one after
        // another: the admitted decisions' `remaining` are 99, 98, ..., 0, each once.
        let admitted = burst(&l, 50, 8, 3).await;
        for k in 0..3 {
            let mut rem: Vec<u64> = admitted
                .iter()
                .filter(|(key, _)| *key == k)
                .map(|(_, r)| *r)
                .collect();
            rem.sort_unstable();
            assert_eq!(rem, (0..100).collect::<Vec<_>>(), "key b{k}");
        }
        let s = l.stats();
        assert_eq!((s.redis, s.errors, s.fallback), (400, 0, 0), "{s:?}");
        if max_batch == 1 {
            assert_eq!(s.batches, 400, "one round trip per decision: {s:?}");
        } else {
            assert!(s.batches < 400, "50 concurrent callers batch up: {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_while_batched_are_counted_once_or_not_at_all() {
    let server = RedisServer::start();
    let l = limiter(&server, &[Limit::fixed_window(1_000_000, LONG).unwrap()]);
    // Many callers at once, half of them cancelled right away: some before their batch
    // was sent (never counted), some after (counted: the decision stands).
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.check(&"drop", 1).await.unwrap().allowed })
        })
        .collect();
    let mut finished = 0;
    for (i, h) in handles.into_iter().enumerate() {
        if i % 2 == 0 {
            h.abort();
            let _ = h.await;
        } else {
            assert!(h.await.unwrap());
            finished += 1;
        }
    }
    // Let any batch still in flight land, then read the count Redis holds.
    let start = Instant::now();
    let mut last = l.stats().redis;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = l.stats().redis;
        if now == last || start.elapsed() > Duration::from_secs(5) {
            break;
        }
        last = now;
    }
    let sent = l.stats().redis;
    assert!((finished..=200).contains(&sent), "{sent}");
    let d = l.check(&"drop", 0).await.unwrap();
    assert_eq!(
        d.remaining,
        1_000_000 - sent,
        "Redis counted exactly the decisions that were sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deny_cache_answers_without_a_round_trip() {
    let server = RedisServer::start();
    let l = RedisLimiter::builder(Connection::open(&server.url()).unwrap())
        .limit(Limit::fixed_window(2, LONG).unwrap())
        .failure_mode(FailureMode::Closed)
        .timeout(Duration::from_secs(3))
        .deny_cache(10)
        .build()
        .unwrap();
    assert!(l.check(&"hot", 2).await.unwrap().allowed);
    let first = l.check(&"hot", 2).await.unwrap();
    assert!(!first.allowed);
    assert_eq!(l.stats().redis, 2);
    let cached = l.check(&"hot", 2).await.unwrap();
    assert!(!cached.allowed && cached.retry_after <= first.retry_after);
    assert_eq!(
        (cached.limit, cached.remaining),
        (first.limit, first.remaining)
    );
    assert_eq!((l.stats().redis, l.stats().cached), (2, 1));
    // A smaller cost may fit sooner: it goes to Redis.
    let _ = l.check(&"hot", 1).await.unwrap();
    assert_eq!(l.stats().redis, 3);
    // Other keys are not affected, and a full cache makes room.
    for i in 0..20 {
        assert!(l.check(&format!("k{i}"), 1).await.unwrap().allowed);
        assert!(!l.check(&format!("k{i}"), 2).await.unwrap().allowed);
    }
    assert_eq!(l.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_limits_pipeline_calls_per_key_with_headers_info() {
    use resilient::{Error, Pipeline};
    let server = RedisServer::start();
    let l = limiter(&server, &[Limit::gcra(Rate::per_minute(2)).unwrap()]);
    let p = |tenant: &str| {
        Pipeline::builder()
            .tag("tenant", tenant)
            .guard(l.guard(|ctx| ctx.tag("tenant").unwrap_or("-").to_string()))
            .build()
            .unwrap()
    };
    let (acme, other) = (p("acme"), p("other"));
    for _ in 0..2 {
        let r: Result<(), Error<()>> = acme.execute(|| async { Ok(()) }).await;
        assert!(r.is_ok());
    }
    let err = acme
        .execute(|| async { Ok::<(), ()>(()) })
        .await
        .unwrap_err();
    let info = *err.rate_limit_info().expect("info for headers");
    assert_eq!((info.limit, info.remaining, info.quota), (2, 0, 2));
    assert_eq!(info.window, Duration::from_secs(60));
    let retry = err.retry_after().unwrap();
    assert!(
        retry > Duration::from_secs(29) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
    let r: Result<(), Error<()>> = other.execute(|| async { Ok(()) }).await;
    assert!(r.is_ok(), "another key");
    // Blocking calls cannot await a round trip.
    let blocking: Result<(), Error<()>> = other.execute_blocking(|| Ok(()));
    assert!(matches!(blocking, Err(Error::Rejected { .. })));
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_limits_requests_per_key() {
    use resilient::Error;
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let server = RedisServer::start();
    let l = limiter(&server, &[Limit::gcra(Rate::per_minute(3)).unwrap()]);
    struct Req {
        user: u32,
        cost: u64,
    }
    let mut svc = ServiceBuilder::new()
        .layer(l.layer(|r: &Req| r.user).cost(|r: &Req| r.cost))
        .service(service_fn(|r: Req| async move {
            Ok::<_, std::io::Error>(r.user)
        }));
    let call = |user, cost| Req { user, cost };
    assert_eq!(
        svc.ready().await.unwrap().call(call(1, 2)).await.unwrap(),
        1
    );
    let e = svc
        .ready()
        .await
        .unwrap()
        .call(call(1, 2))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        Error::RateLimited {
            retry_after: Some(_),
            info: Some(_)
        }
    ));
    assert_eq!(
        svc.ready().await.unwrap().call(call(1, 1)).await.unwrap(),
        1
    );
    assert_eq!(
        svc.ready().await.unwrap().call(call(2, 3)).await.unwrap(),
        2
    );
    let e = svc
        .ready()
        .await
        .unwrap()
        .call(call(2, 4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "never fits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_mode_waits_for_capacity_up_to_its_maximum() {
    use resilient::ratelimit::Mode;
    use resilient::{Error, Pipeline};
    let server = RedisServer::start();
    let build = |mode: Mode| {
        RedisLimiter::builder(Connection::open(&server.url()).unwrap())
            // One unit every 100 ms, burst 2.
            .limit(Limit::gcra(Rate::new(2, Duration::from_millis(200))).unwrap())
            .timeout(Duration::from_secs(3))
            .failure_mode(FailureMode::Closed)
            .mode(mode)
            .build()
            .unwrap()
    };
    let patient = build(Mode::Wait(Duration::from_secs(2)));
    let p = Pipeline::builder()
        .guard(patient.guard(|_ctx| "w"))
        .build()
        .unwrap();
    let start = Instant::now();
    for _ in 0..4 {
        let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
        assert!(r.is_ok());
    }
    // Two at once, then one every 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );

    // A wait that cannot end within the maximum is a rejection at once.
    let hasty = build(Mode::Wait(Duration::from_millis(10)));
    let p = Pipeline::builder()
        .guard(hasty.guard(|_ctx| "h"))
        .build()
        .unwrap();
    for _ in 0..2 {
        let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
        assert!(r.is_ok());
    }
    let start = Instant::now();
    let r: Result<(), Error<()>> = p.execute(|| async { Ok(()) }).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })));
    assert!(
        start.elapsed() < Duration::from_millis(90),
        "did not wait: {:?}",
        start.elapsed()
    );
}

// ---- two processes on one key ----------------------------------------------------------

const CHILD_URL: &str = "RESILIENT_REDIS_TEST_CHILD_URL";
const CHILD_ALG: &str = "RESILIENT_REDIS_TEST_CHILD_ALG";

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The limit the process tests hammer for each algorithm, and the most it may admit
/// over a span (the same bounds as the task tests above).
fn case(alg: &str) -> (Limit, fn(Duration) -> u64) {
    let w = Duration::from_millis(200);
    match alg {
        "gcra" => (Limit::gcra(Rate::new(20, w)).unwrap(), |s| {
            20 + periods(s, Duration::from_millis(10)) + 1
        }),
        "token_bucket" => (
            Limit::token_bucket(20, Rate::new(10, Duration::from_millis(100))).unwrap(),
            |s| 20 + 10 * periods(s, Duration::from_millis(100)),
        ),
        "fixed_window" => (Limit::fixed_window(20, w).unwrap(), |s| {
            20 * (periods(s, Duration::from_millis(200)) + 2)
        }),
        "sliding_log" => (Limit::sliding_window_log(20, w).unwrap(), |s| {
            20 * (periods(s, Duration::from_millis(200)) + 1)
        }),
        "sliding_counter" => (Limit::sliding_window_counter(20, w).unwrap(), |s| {
            20 * (periods(s, Duration::from_millis(200)) + 2)
        }),
        other => panic!("no case {other}"),
    }
}

/// Not a test on its own: the body of each child process of the `*_two_processes` tests
/// (does nothing unless the parent set the environment variables).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_hammer() {
    let (Ok(url), Ok(alg)) = (std::env::var(CHILD_URL), std::env::var(CHILD_ALG)) else {
        return;
    };
    let l = RedisLimiter::builder(Connection::open(&url).unwrap())
        .limit(case(&alg).0)
        .timeout(Duration::from_secs(3))
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    // Connect (and load the script) before the measured span.
    l.check(&"warm-up", 0).await.unwrap();
    let start = unix_micros();
    let (admitted, _) = hammer(&l, "shared", 8, Duration::from_millis(300)).await;
    let end = unix_micros();
    assert_eq!(l.stats().errors, 0);
    println!("CHILD admitted={admitted} start={start} end={end}");
}

/// Two processes (this test binary, run again as `child_process_hammer`) hammer one
/// key of `alg`; their admissions together stay within the bound over the span from the
/// first one's start to the last one's end.
async fn two_processes(alg: &str) {
    let server = RedisServer::start();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_hammer",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_URL, server.url())
                .env(CHILD_ALG, alg)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut total, mut first, mut last) = (0u64, u128::MAX, 0u128);
    for c in children {
        let out = c.wait_with_output().await.unwrap();
        assert!(out.status.success(), "{alg}: a child failed");
        let text = String::from_utf8_lossy(&out.stdout);
        // The harness may print the test's name on the same line first.
        let line = text
            .split("CHILD ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .expect("the child reports");
        let field = |name: &str| -> u128 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap()
                .parse()
                .unwrap()
        };
        total += field("admitted=") as u64;
        first = first.min(field("start="));
        last = last.max(field("end="));
    }
    let span = Duration::from_micros((last - first) as u64);
    let bound = case(alg).1(span);
    assert!(
        total <= bound,
        "{alg}: {total} admitted by two processes in {span:?}, bound {bound}"
    );
    assert!(total >= 20, "{alg}: {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_two_processes_never_exceed_burst_plus_rate() {
    two_processes("gcra").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_two_processes_never_exceed_capacity_plus_refills() {
    two_processes("token_bucket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_two_processes_never_exceed_limit_per_window() {
    two_processes("fixed_window").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_log_two_processes_never_exceed_limit_per_sliding_window() {
    two_processes("sliding_log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_counter_two_processes_never_exceed_limit_per_aligned_window() {
    two_processes("sliding_counter").await;
}
