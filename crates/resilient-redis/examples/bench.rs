//! Decisions per second and latency at 50 concurrent callers, side by side with plain
//! `SET` on the same server, in the same run.
//!
//! ```sh
//! cargo run -p resilient-redis --release --example bench -- [redis://HOST:PORT/] [SECONDS]
//! ```
//!
//! Without a URL it starts its own `redis-server` on a free loopback port (no
//! persistence) and stops it at the end. Each phase runs 50 tasks on one multiplexed
//! connection for SECONDS (default 3) after a short warm-up: `SET` of 1,000 keys; a
//! minimal script by `EVALSHA` (`TIME`, `GET`, `SET`: the floor of any limiter that
//! decides in one scripted round trip); GCRA decisions on 1,000 keys (each admitted, so
//! each writes); the same with leases of 20 units for 1 s (`RedisLimiterBuilder::lease`);
//! a 2-limit quota (GCRA and a fixed window) on the same keys.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilient::ratelimit::Rate;
use resilient_redis::{Connection, FailureMode, Limit, RedisLimiter};

const CALLERS: usize = 50;
const KEYS: usize = 1_000;

struct Report {
    ops: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
    /// The server's CPU time (user + system) over the phase, per operation.
    server_cpu: Duration,
    /// This process's CPU time over the phase, per operation (Linux; zero elsewhere).
    client_cpu: Duration,
}

/// This process's CPU time so far, from `/proc/self/stat` (zero where there is none).
fn client_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which ends with ')'): utime and stime are the
    // 12th and 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

impl Report {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// The server's CPU time so far (`INFO cpu`: `used_cpu_user` + `used_cpu_sys`).
async fn server_cpu(conn: &Connection) -> Duration {
    let info: String = conn.query(redis::cmd("INFO").arg("cpu")).await.unwrap();
    let secs: f64 = info
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == "used_cpu_user" || k == "used_cpu_sys").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum();
    Duration::from_secs_f64(secs)
}

/// Runs `op(task, i)` from 50 tasks for `span`; returns throughput and latency quantiles.
async fn phase<F, Fut>(conn: &Connection, span: Duration, op: F) -> Report
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    // Warm-up: connections, script cache.
    for i in 0..100 {
        op(0, i).await;
    }
    let cpu = server_cpu(conn).await;
    let own = client_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CALLERS {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(64 * 1024);
            let mut i = 0;
            while start.elapsed() < span {
                let s = Instant::now();
                op(t, i).await;
                lat.push(s.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let own = client_cpu().saturating_sub(own);
    let cpu = server_cpu(conn).await.saturating_sub(cpu);
    all.sort_unstable();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Report {
        ops: all.len(),
        secs,
        p50: q(0.50),
        p99: q(0.99),
        server_cpu: cpu / u32::try_from(all.len()).unwrap_or(u32::MAX).max(1),
        client_cpu: own / u32::try_from(all.len()).unwrap_or(u32::MAX).max(1),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn print(name: &str, r: &Report, base: Option<&Report>) {
    let vs = base.map_or(String::new(), |b| {
        format!(
            "  ({:.2}x SET throughput, p50 {:.2}x SET)",
            r.rate() / b.rate(),
            r.p50.as_secs_f64() / b.p50.as_secs_f64()
        )
    });
    println!(
        "{name:<22} {:>9.0} ops/s  p50 {:>7.1} µs  p99 {:>7.1} µs  CPU/op: server {:>4.1} µs, client {:>4.1} µs{vs}",
        r.rate(),
        r.p50.as_secs_f64() * 1e6,
        r.p99.as_secs_f64() * 1e6,
        r.server_cpu.as_secs_f64() * 1e6,
        r.client_cpu.as_secs_f64() * 1e6,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next();
    let secs: u64 = args.next().map_or(Ok(3), |s| s.parse())?;
    let span = Duration::from_secs(secs);
    let (_server, url) = match url {
        Some(u) => (None, u),
        None => {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()?;
            let server = Server(child);
            let url = format!("redis://127.0.0.1:{port}/");
            let probe = Connection::open(&url)?;
            let t = Instant::now();
            while probe.query::<String>(&redis::cmd("PING")).await.is_err() {
                if t.elapsed() > Duration::from_secs(10) {
                    return Err("redis-server did not start".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (Some(server), url)
        }
    };
    let conn = Connection::open(&url)?;
    println!("{CALLERS} concurrent callers, {KEYS} keys, {secs} s per phase, {url}");

    let c = conn.clone();
    let set = phase(&conn, span, move |t, i| {
        let c = c.clone();
        async move {
            let key = format!("bench:set:{}", (t * 7919 + i) % KEYS);
            let _: () = c.query(redis::cmd("SET").arg(key).arg("1")).await.unwrap();
        }
    })
    .await;
    print("SET", &set, None);

    // The floor of any one-round-trip script limiter: a script that reads the server's
    // clock, reads a key and writes it back.
    let floor: Arc<str> = conn
        .query::<String>(redis::cmd("SCRIPT").arg("LOAD").arg(
            "local t = redis.call('TIME') redis.call('GET', KEYS[1]) \
             redis.call('SET', KEYS[1], t[2], 'PX', 1000) return 1",
        ))
        .await?
        .into();
    let c = conn.clone();
    let script = phase(&conn, span, move |t, i| {
        let (c, sha) = (c.clone(), floor.clone());
        async move {
            let key = format!("bench:floor:{}", (t * 7919 + i) % KEYS);
            let cmd = redis::cmd("EVALSHA").arg(&*sha).arg(1).arg(key).clone();
            let _: i64 = c.query(&cmd).await.unwrap();
        }
    })
    .await;
    print("EVALSHA TIME+GET+SET", &script, Some(&set));

    let gcra = RedisLimiter::builder(conn.clone())
        .limit(Limit::gcra(Rate::per_second(1_000_000))?)
        .failure_mode(FailureMode::Closed)
        .timeout(Duration::from_secs(5))
        .build()?;
    let l = gcra.clone();
    let one = phase(&conn, span, move |t, i| {
        let l = l.clone();
        async move {
            let d = l.check(&((t * 7919 + i) % KEYS), 1).await.unwrap();
            assert!(d.allowed);
        }
    })
    .await;
    print("GCRA decision", &one, Some(&set));
    let s = gcra.stats();
    println!(
        "{:<22} {:.1} decisions per EVALSHA",
        "",
        s.redis as f64 / s.batches.max(1) as f64
    );

    // The same decisions with leases: each round trip takes 20 units of a key, spent
    // here for up to 1 s (a key is asked about ~35 times a second in this phase).
    let leased = RedisLimiter::builder(conn.clone())
        .limit(Limit::gcra(Rate::per_second(1_000_000))?)
        .prefix("rl2:")
        .lease(20, Duration::from_secs(1))
        .failure_mode(FailureMode::Closed)
        .timeout(Duration::from_secs(5))
        .build()?;
    let l = leased.clone();
    let lease = phase(&conn, span, move |t, i| {
        let l = l.clone();
        async move {
            let d = l.check(&((t * 7919 + i) % KEYS), 1).await.unwrap();
            assert!(d.allowed);
        }
    })
    .await;
    print("GCRA, leases of 20", &lease, Some(&set));
    let s = leased.stats();
    println!(
        "{:<22} {:.0}% of decisions from a lease, {:.1} per EVALSHA otherwise",
        "",
        100.0 * s.leased as f64 / (s.leased + s.redis).max(1) as f64,
        s.redis as f64 / s.batches.max(1) as f64
    );

    let quota = RedisLimiter::builder(conn.clone())
        .limit(Limit::gcra(Rate::per_second(1_000_000))?)
        .limit(Limit::fixed_window(
            1_000_000_000,
            Duration::from_secs(3600),
        )?)
        .prefix("rq:")
        .failure_mode(FailureMode::Closed)
        .timeout(Duration::from_secs(5))
        .build()?;
    let l = quota.clone();
    let two = phase(&conn, span, move |t, i| {
        let l = l.clone();
        async move {
            let v = l.check_quota(&((t * 7919 + i) % KEYS), 1).await.unwrap();
            assert!(v.allowed);
        }
    })
    .await;
    print("GCRA + window quota", &two, Some(&set));
    let s = quota.stats();
    println!(
        "{:<22} {:.1} decisions per EVALSHA",
        "",
        s.redis as f64 / s.batches.max(1) as f64
    );
    let s = gcra.stats();
    assert_eq!(
        (s.errors, s.fallback),
        (0, 0),
        "every decision came from Redis"
    );
    Ok(())
}
