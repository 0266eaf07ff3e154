//! Runs `resilient demo` in its short mode (real HTTP on loopback, real time: about 9 s)
//! and checks its numbers, and its live view in a real terminal (tmux) where tmux exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The short mode: every phase of the script scales with the duration.
const DURATION: &str = "6";
/// A seed whose script puts the 429s and the 503 burst in the run's first half.
const SEED: &str = "2";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resilient-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path}"))
}

/// One run of the demo, its stdout, and the summary it wrote.
fn run_demo(dir: &Path) -> (String, Value) {
    run_demo_with(dir, &[])
}

fn run_demo_with(dir: &Path, extra: &[&str]) -> (String, Value) {
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_resilient"))
        .args(["demo", "--duration", DURATION, "--seed", SEED, "--out"])
        .arg(dir)
        .args(extra)
        .arg("--summary-json")
        .arg(&summary)
        .stdin(Stdio::null())
        .output()
        .expect("start resilient");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(&summary).expect("the summary JSON is written");
    (stdout, serde_json::from_str(&json).expect("valid JSON"))
}

#[test]
fn the_short_demo_shows_the_pipeline_doing_its_job() {
    let dir = scratch("demo");
    let (stdout, s) = run_demo(&dir);

    // not a terminal: progress lines and the summary, no redraw
    assert!(!stdout.contains("\x1b["), "no escape codes when piped");
    assert!(stdout.contains("SUMMARY"), "{stdout}");
    assert!(stdout.contains("dashboard: http://127.0.0.1:"), "{stdout}");

    // both groups ran at the same rate, and the pipeline did better
    let calls = |g: &str| f(&s, &format!("/clients/{g}/calls"));
    assert!(
        calls("unprotected") >= 100.0 && calls("protected") >= 100.0,
        "{s:#}"
    );
    let rate = |g: &str| f(&s, &format!("/clients/{g}/success_rate"));
    assert!(
        rate("protected") > rate("unprotected"),
        "protected {} vs unprotected {}",
        rate("protected"),
        rate("unprotected")
    );
    // where retries help most: the 503 burst and the 429s
    for phase in s["by_phase"].as_array().unwrap() {
        if matches!(phase["phase"].as_str(), Some("errors" | "throttled")) {
            assert!(
                f(phase, "/protected/success_rate") > f(phase, "/unprotected/success_rate"),
                "{phase:#}"
            );
        }
    }

    // the breaker opened during the outage and was closed after it, and at the end
    let (outage_start, outage_end) = (f(&s, "/outage/start_s"), f(&s, "/outage/end_s"));
    let transitions = s["breaker"]["transitions"].as_array().unwrap();
    let opened = transitions
        .iter()
        .find(|t| t["to"] == "Open" && (outage_start..=outage_end).contains(&f(t, "/at_s")))
        .unwrap_or_else(|| panic!("no opening in {outage_start}..{outage_end}: {transitions:?}"));
    assert!(
        transitions
            .iter()
            .any(|t| t["to"] == "Closed" && f(t, "/at_s") > f(opened, "/at_s")),
        "{transitions:?}"
    );
    assert_eq!(s["breaker"]["final_state"], "Closed");
    assert_eq!(s["breaker"]["opened_during_outage"], true);
    assert_eq!(s["breaker"]["closed_after_outage"], true);
    // while open, calls failed fast instead of reaching the upstream
    assert!(f(&s, "/clients/protected/outcomes/circuit_open") > 0.0);

    // the client-side limiter kept the upstream under its limit
    let limit = f(&s, "/settings/upstream_limit_per_s");
    let seen = f(&s, "/limits/upstream_max_per_s/protected");
    assert!(
        seen > 0.0 && seen <= limit,
        "{seen} requests in 1 s, limit {limit}"
    );

    // no protected call outlived its request timeout (plus scheduling slack)
    let timeout = f(&s, "/settings/request_timeout_ms");
    let slowest = f(&s, "/clients/protected/max_ms");
    assert!(
        slowest <= timeout + 250.0,
        "slowest {slowest} ms, timeout {timeout} ms"
    );
    // ...while the unprotected group waited out the latency spike
    assert!(f(&s, "/clients/unprotected/max_ms") > f(&s, "/clients/protected/p99_ms"));

    // the chart
    let chart = std::fs::canonicalize(dir.join("resilient-demo.svg")).expect("the chart exists");
    assert_eq!(s["chart"].as_str(), chart.to_str());
    let svg = std::fs::read_to_string(&chart).expect("the chart is written");
    assert!(
        svg.starts_with("<svg") && svg.len() > 1000,
        "{} bytes",
        svg.len()
    );
    assert!(stdout.contains(&format!("chart: {}", chart.display())));

    // the JSON scene: every prompt parsed, each answer repaired, the 429 retried
    assert_eq!(s["json_scene"]["prompts"], 4);
    assert_eq!(s["json_scene"]["parsed"], 4);
    assert_eq!(s["json_scene"]["repaired"], 4);
    assert_eq!(
        s["json_scene"]["results"][0]["statuses"],
        serde_json::json!([429, 200])
    );
    assert!(
        stdout.contains("parsed:     Forecast { city: \"Lisbon\""),
        "{stdout}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
}

/// tmux on a server of its own (`-L`), away from any the user runs.
fn tmux(args: &[&str]) -> std::process::Output {
    let socket = format!("resilient-demo-test-{}", std::process::id());
    Command::new("tmux")
        .args(["-L", &socket])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tmux")
}

/// The live view in a real terminal: the panels are drawn and redrawn in place, then the
/// summary follows. Skipped (with a note) where tmux is not installed; CI installs it.
#[test]
fn the_live_view_draws_its_panels_in_a_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux not found: live view not checked");
        return;
    }
    let dir = scratch("tmux");
    let session = format!("resilient-demo-{}", std::process::id());
    let done = dir.join("done");
    let script = format!(
        "{} demo --duration {DURATION} --seed {SEED} --out {}; touch {}; sleep 30",
        env!("CARGO_BIN_EXE_resilient"),
        dir.display(),
        done.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "45",
        &script,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };

    // mid-run: the panels
    std::thread::sleep(Duration::from_secs(3));
    let mid = capture();
    // the end: the summary
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = capture();
    let _ = tmux(&["kill-session", "-t", &session]);
    std::fs::remove_dir_all(&dir).unwrap();

    for heading in [
        "resilient demo",
        "CHAOS SCRIPT",
        "CLIENTS",
        "CIRCUIT BREAKER",
        "RATE LIMITER",
    ] {
        assert!(mid.contains(heading), "{heading} missing mid-run:\n{mid}");
    }
    assert!(
        mid.contains("unprotected") && mid.contains("protected"),
        "{mid}"
    );
    // redrawn in place: each heading once on the screen
    assert_eq!(mid.matches("CIRCUIT BREAKER").count(), 1, "{mid}");
    assert!(end.contains("4 of 4 prompts parsed"), "{end}");
}

/// `--redis URL`: two client instances share the breaker's open decision and one rate limit
/// through a real `redis-server` this test starts (skipped, with a note, where there is
/// none outside CI; CI installs it).
#[test]
fn with_redis_two_instances_share_the_breaker_and_the_limit() {
    let have = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install redis-server"
        );
        eprintln!("redis-server not found: --redis not checked");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir = scratch("redis");
    let url = format!("redis://127.0.0.1:{port}/");
    let (stdout, s) = run_demo_with(&dir, &["--plain", "--redis", &url]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(stdout.contains("shared state"), "{stdout}");
    assert_eq!(
        s.pointer("/shared/instances").and_then(Value::as_u64),
        Some(2)
    );
    let syncs = s
        .pointer("/shared/syncs")
        .and_then(Value::as_array)
        .unwrap();
    assert!(syncs.iter().all(|n| n.as_u64().unwrap() > 10), "{syncs:?}");
    assert_eq!(
        s.pointer("/shared/opened").and_then(Value::as_bool),
        Some(true),
        "the shared circuit opened during the outage"
    );
    // the two instances together kept the upstream under its limit
    let max = f(&s, "/limits/upstream_max_per_s/protected");
    let limit = f(&s, "/settings/upstream_limit_per_s");
    assert!(max <= limit, "{max} > {limit}");
    assert!(f(&s, "/clients/protected/success_rate") > f(&s, "/clients/unprotected/success_rate"));
}
