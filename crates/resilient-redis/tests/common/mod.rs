//! A real `redis-server` for the tests, started and stopped by the test itself.
//!
//! `RedisServer::start()` picks a free loopback port and runs `redis-server` on it with
//! no persistence (`--save '' --appendonly no`), waits until it answers `PING`, and kills
//! it when dropped. `RESILIENT_REDIS_SERVER` names another binary (default
//! `redis-server` on the `PATH`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on a loopback port.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

fn binary() -> String {
    std::env::var("RESILIENT_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Sends one inline command and returns the first line of the reply, if the server
/// answers within `timeout`.
pub fn command(port: u16, cmd: &str, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    // Read until the reply looks complete (a line, or a bulk string).
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(rest) = text.strip_prefix('$') {
            let len: usize = rest.split("\r\n").next()?.parse().ok()?;
            if got.len() >= rest.find("\r\n")? + 3 + len + 2 {
                return Some(text.to_string());
            }
        } else if text.ends_with("\r\n") {
            return Some(text.to_string());
        }
    }
    None
}

impl RedisServer {
    /// A fresh server on a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A fresh server on `port`.
    pub fn start_on(port: u16) -> Self {
        Self::start_at(port, &[])
    }

    /// A fresh server on a free port with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_at(free_port(), extra)
    }

    fn start_at(port: u16, extra: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("resilient-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut s = Self {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", self.dir.to_str().expect("utf-8 temp dir")])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `{}` ({e}): install it (`apt-get install -y redis-server`) or \
                 set RESILIENT_REDIS_SERVER to its path",
                binary()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if command(self.port, "PING", Duration::from_millis(200))
                .is_some_and(|r| r.contains("PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (its data is lost: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes a paused server (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        // The shell's builtin `kill`: no procps or util-linux needed.
        let ok = Command::new("sh")
            .args(["-c", &format!("kill {sig} {pid}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Resume a paused server first, so that it exits at once.
            let pid = self.child.as_ref().map_or(0, Child::id);
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -CONT {pid}")])
                .status();
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 3-node Redis Cluster (no replicas), created with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes and joins them; waits until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // The bus port defaults to port + 10000, past 65535 for a high free port.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let cli = std::env::var("RESILIENT_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{cli}` ({e})"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        'wait: while Instant::now() < deadline {
            for n in &nodes {
                let ok = command(n.port(), "CLUSTER INFO", Duration::from_millis(500))
                    .is_some_and(|r| r.contains("cluster_state:ok"));
                if !ok {
                    std::thread::sleep(Duration::from_millis(50));
                    continue 'wait;
                }
            }
            return Self { nodes };
        }
        panic!("the cluster did not reach cluster_state:ok within 20 s");
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
