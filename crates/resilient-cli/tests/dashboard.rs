//! `resilient dashboard` in headless Chromium (Debian's `chromium`): the live page is
//! served, polls `/metrics`, and renders the workload's numbers; a screenshot is taken
//! and checked (a real PNG, not blank). Skipped with a note only where chromium is not
//! installed and `CI` is unset; under CI it must run (`.ci/run` installs chromium).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The dashboard process, killed when the test ends (pass or fail).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn headless(browser: &str, args: &[&str], url: &str) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            // the page polls once a second: let it poll a few times
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium")
}

#[test]
fn the_live_dashboard_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_resilient"))
        .args(["dashboard", "--duration", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start resilient dashboard");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();

    // the page, after a few polls: the status says it is live, with calls counted
    let dom = headless(browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let attr = |name: &str| -> u64 {
        let at = dom
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in the rendered page:\n{dom}"));
        dom[at + name.len() + 2..]
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(attr("data-polls") >= 2, "{dom}");
    assert!(attr("data-calls") > 0, "{dom}");
    assert!(
        dom.contains("class=\"series\""),
        "no chart line drawn:\n{dom}"
    );
    assert!(dom.contains("data-outcome=\"success\""), "{dom}");
    assert!(dom.contains("<td>checkout</td><td>breaker</td>"), "{dom}");

    // the screenshot: a real PNG of the page, not a blank one
    let shot: PathBuf =
        std::env::temp_dir().join(format!("resilient-dashboard-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,700",
        ],
        &url,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&shot).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    assert_eq!((info.width, info.height), (1000, 700));
    let pixels = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for p in pixels.chunks(px) {
        colours.insert(p.to_vec());
        if colours.len() > 16 {
            break;
        }
    }
    assert!(
        colours.len() > 16,
        "the screenshot is nearly blank ({} colours)",
        colours.len()
    );
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    println!(
        "dashboard screenshot: {} ({} bytes)",
        shot.display(),
        bytes.len()
    );
    drop(server);
}

/// The same page served by `resilient demo` while it runs: live numbers of the demo's
/// protected pipeline, and a screenshot that is not blank.
#[test]
fn the_demo_serves_its_live_dashboard_to_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let out_dir = std::env::temp_dir().join(format!("resilient-demo-dash-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_resilient"))
        .args(["demo", "--duration", "60", "--plain", "--out"])
        .arg(&out_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start resilient demo");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the demo prints its dashboard URL")
            .unwrap();
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // keep reading the demo's output so that it never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});

    let dom = headless(browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-polls=\""), "{dom}");
    assert!(
        dom.contains("protected-get"),
        "the demo's pipeline is shown:\n{dom}"
    );
    assert!(
        dom.contains("class=\"series\""),
        "no chart line drawn:\n{dom}"
    );

    let shot: PathBuf = std::env::temp_dir().join(format!(
        "resilient-demo-dashboard-{}.png",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        browser,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,700",
        ],
        &url,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&shot).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(px).take(700_000).collect();
    assert!(
        colours.len() > 16,
        "nearly blank ({} colours)",
        colours.len()
    );
    println!(
        "demo dashboard screenshot: {} ({} bytes)",
        shot.display(),
        bytes.len()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&out_dir);
}
