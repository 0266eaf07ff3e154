//! `resilient demo`: a flaky HTTP upstream on loopback with scripted chaos, two client
//! groups calling it at the same rate (one bare, one through a standard pipeline), a live
//! terminal view, a summary table (and JSON), a chart, and a JSON-repair scene.
//!
//! Everything runs in this process on embedded state. The protected pipeline reports to a
//! Prometheus registry served, with the live web dashboard, on a loopback port printed at
//! the start (see `crate::dashboard`). What later work adds (`--redis` for shared limiter
//! and breaker state) is announced as not available yet: see [`Extras`].

mod chaos;
mod chart;
mod clients;
mod json_scene;
mod stats;
mod upstream;
mod view;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use chaos::{Phase, Script};
use clients::{Settings, drive, protection};
use stats::{CallKind, Group, GroupStats, Recorder, open_periods};

/// `println!` that ignores a closed stdout (`resilient demo | head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! put {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `resilient demo --help`.
pub const USAGE: &str = "\
Usage: resilient demo [OPTIONS]

Starts a flaky HTTP upstream on loopback (scripted 503 bursts, a latency spike, 429s with
Retry-After, a full outage and its recovery) and two client groups calling it at the same
rate: one with no protection, one through a pipeline (request and attempt timeouts, retry
with jitter and a retry budget honouring Retry-After, a circuit breaker, a bulkhead, a
client-side rate limit). Shows both live (in the terminal, and on a web dashboard with
/metrics at the printed loopback URL), then a summary, a chart (SVG) and a short
JSON-repair scene with a mock model.

Options:
  --duration SECS       Length of the run, 5 to 600 (default 30); the script scales
  --seed N              Seed of the chaos script (default 42)
  --out DIR             Where to write the chart (default ./target/demo when ./target
                        exists, else a folder in the system's temp dir)
  --summary-json PATH   Also write the summary's numbers as JSON to PATH
  --plain               No live redraw: progress lines, even on a terminal
  --redis URL           Two protected client instances sharing the breaker's open
                        decision and one rate limit through Redis at URL
  -h, --help            Print this help
";

/// The demo's options.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    seed: u64,
    out: Option<PathBuf>,
    summary_json: Option<PathBuf>,
    plain: bool,
    extras: Extras,
}

/// What later work plugs in. Each is announced as not available yet, and the run goes on
/// with embedded state.
#[derive(Debug, Clone, Default)]
struct Extras {
    /// `--redis URL`: distributed limiter and breaker, two client instances.
    redis: Option<String>,
}

impl Extras {
    /// The lines saying what is not there yet.
    fn notices(&self) -> Vec<String> {
        // everything the demo announces is available now (`--redis` included)
        let _ = &self.redis;
        Vec::new()
    }
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        duration: Duration::from_secs(30),
        seed: 42,
        out: None,
        summary_json: None,
        plain: false,
        extras: Extras::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--duration" => {
                let v = value("--duration")?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--duration: not a number of seconds: {v}"))?;
                if !(5.0..=600.0).contains(&secs) {
                    return Err(format!("--duration must be 5 to 600 seconds, not {v}"));
                }
                o.duration = Duration::from_secs_f64(secs);
            }
            "--seed" => {
                let v = value("--seed")?;
                o.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: not a number: {v}"))?;
            }
            "--out" => o.out = Some(value("--out")?.into()),
            "--summary-json" => o.summary_json = Some(value("--summary-json")?.into()),
            "--redis" => o.extras.redis = Some(value("--redis")?),
            "--plain" => o.plain = true,
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    Ok(Some(o))
}

/// Runs `resilient demo ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            put!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("resilient demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("resilient demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(options));
    // connections the upstream still holds are not waited for
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resilient demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The breaker's part of the summary.
#[derive(Debug, Serialize)]
struct BreakerSummary {
    /// Every transition: seconds from the start, from, to.
    transitions: Vec<TransitionOut>,
    /// The open periods, seconds from the start.
    open_periods_s: Vec<[f64; 2]>,
    /// It opened between the outage's start and end.
    opened_during_outage: bool,
    /// It was closed again after that, and at the end.
    closed_after_outage: bool,
    /// Its state at the end.
    final_state: String,
}

/// The groups' figures over the calls started in one phase.
#[derive(Debug, Serialize)]
struct PhaseOut {
    phase: chaos::Kind,
    start_s: f64,
    end_s: f64,
    unprotected: GroupStats,
    protected: GroupStats,
}

#[derive(Debug, Serialize)]
struct TransitionOut {
    at_s: f64,
    from: String,
    to: String,
}

#[derive(Debug, Serialize)]
struct LimitSummary {
    /// Protected calls the client-side limiter rejected.
    limiter_rejections: usize,
    /// Protected calls the bulkhead rejected.
    bulkhead_rejections: usize,
    /// The most `/api` requests the upstream received in any one second, by group.
    upstream_max_per_s: Clients<usize>,
    /// Requests the upstream received, by group.
    upstream_requests: Clients<usize>,
}

#[derive(Debug, Serialize)]
struct Clients<T> {
    unprotected: T,
    protected: T,
}

/// The numbers of a run, written by `--summary-json`.
#[derive(Debug, Serialize)]
struct Summary {
    seed: u64,
    #[serde(serialize_with = "chaos::secs")]
    duration_s: Duration,
    settings: Settings,
    phases: Vec<Phase>,
    outage: Phase,
    clients: Clients<GroupStats>,
    by_phase: Vec<PhaseOut>,
    breaker: BreakerSummary,
    limits: LimitSummary,
    chart: Option<PathBuf>,
    json_scene: json_scene::SceneSummary,
    not_available: Vec<String>,
    /// With `--redis`: the shared state's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<SharedSummary>,
}

/// `--redis`: two client instances sharing the breaker's decision and one limit.
#[derive(Debug, Serialize)]
struct SharedSummary {
    /// Client instances.
    instances: usize,
    /// Reports each instance's shared breaker made, and those that failed.
    syncs: Vec<u64>,
    sync_errors: Vec<u64>,
    /// Whether the shared circuit was seen open by each instance at some report.
    opened: bool,
}

fn default_out() -> PathBuf {
    if std::path::Path::new("target").is_dir() {
        PathBuf::from("target").join("demo")
    } else {
        std::env::temp_dir().join("resilient-demo")
    }
}

async fn run(o: Options) -> Result<(), String> {
    let script = Script::new(o.seed, o.duration);
    let settings = Settings::for_duration(o.duration);
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start));
    let upstream = upstream::Upstream::new(script.clone(), start);
    let addr = upstream::serve(upstream.clone())
        .await
        .map_err(|e| format!("cannot start the upstream: {e}"))?;
    let url = format!("http://{addr}/api");
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    // the live web dashboard and /metrics of the protected pipeline, while the demo runs
    let metrics = resilient::telemetry::prometheus::PrometheusMetrics::new();
    let dash = crate::dashboard::serve(metrics.clone(), ([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| format!("cannot start the dashboard: {e}"))?;
    let dashboard = format!("dashboard: http://{dash}/  (metrics: http://{dash}/metrics)");
    // With `--redis`: two client instances, each half the protected calls, sharing the
    // breaker's open decision and one rate limit through Redis.
    let shared = |instance: &str| -> Result<Option<clients::Shared>, String> {
        o.extras
            .redis
            .as_deref()
            .map(|url| {
                let conn = resilient_redis::Connection::open(url)
                    .map_err(|e| format!("--redis {url}: {e}"))?;
                Ok(clients::Shared {
                    conn,
                    instance: instance.to_owned(),
                })
            })
            .transpose()
    };
    let second = match shared("demo-2")? {
        Some(sh) => Some(
            protection(
                &settings,
                o.seed ^ 2,
                recorder.clone(),
                resilient::telemetry::prometheus::PrometheusMetrics::new(),
                Some(sh),
            )
            .map_err(|e| format!("invalid pipeline: {e}"))?,
        ),
        None => None,
    };
    let protect = protection(
        &settings,
        o.seed,
        recorder.clone(),
        metrics,
        shared("demo-1")?,
    )
    .map_err(|e| format!("invalid pipeline: {e}"))?;
    let run = Run {
        script: script.clone(),
        settings: settings.clone(),
        url: url.clone(),
        recorder: recorder.clone(),
        upstream: upstream.clone(),
        protect,
    };
    let protect = &run.protect;

    let live = !o.plain && std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout();
    let notices = o.extras.notices();
    if !live {
        say!(
            "resilient demo: seed {}, {:.0} s, upstream {url}",
            o.seed,
            o.duration.as_secs_f64()
        );
        say!("{dashboard}");
        for n in &notices {
            say!("{n}");
        }
        say!(
            "protected pipeline: {}",
            protect.pipeline.stages().join(" -> ")
        );
    }

    let unprotected = {
        let (settings, uri, recorder) = (settings.clone(), uri.clone(), recorder.clone());
        let d = o.duration;
        tokio::spawn(async move {
            drive::<resilient::AllErrors>(Group::Unprotected, &settings, d, uri, None, recorder)
                .await
        })
    };
    // with two instances, each starts half the calls
    let mut per_instance = settings.clone();
    if second.is_some() {
        per_instance.calls_per_s = (settings.calls_per_s / 2).max(1);
    }
    let spawn_protected = |pipeline| {
        let (settings, uri, recorder) = (per_instance.clone(), uri.clone(), recorder.clone());
        let d = o.duration;
        tokio::spawn(async move {
            drive(
                Group::Protected,
                &settings,
                d,
                uri,
                Some(pipeline),
                recorder,
            )
            .await
        })
    };
    let protected = spawn_protected(protect.pipeline.clone());
    let protected_2 = second
        .as_ref()
        .map(|p2| spawn_protected(p2.pipeline.clone()));

    // with `--redis`: whether the shared circuit opened (checked every 25 ms)
    let shared_opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_shared = protect.shared.as_ref().map(|(a, _)| {
        let a = a.clone();
        let flag = shared_opened.clone();
        tokio::spawn(async move {
            loop {
                if a.shared_open_for().is_some() {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    });

    // the view, until both groups are done
    let frame_every = if live {
        Duration::from_millis(250)
    } else {
        (o.duration / 6).clamp(Duration::from_secs(1), Duration::from_secs(10))
    };
    let mut drawn_lines = 0usize;
    let mut ticks = tokio::time::interval(frame_every);
    ticks.tick().await;
    loop {
        let finished = unprotected.is_finished()
            && protected.is_finished()
            && protected_2.as_ref().is_none_or(|t| t.is_finished());
        let frame_text = {
            let frame = run.frame();
            let now = frame.now;
            if live {
                let mut text = view::panels(&frame);
                text.push('\n');
                text += &dashboard;
                text.push('\n');
                for n in &notices {
                    text += n;
                    text.push('\n');
                }
                view::fit(&text)
            } else if now >= Duration::from_millis(500) && now <= o.duration + frame_every / 2 {
                view::progress_line(&frame) + "\n"
            } else {
                String::new()
            }
        };
        if live {
            // back to the top of the previous frame, clear below, draw
            if drawn_lines > 0 {
                let _ = write!(stdout, "\x1b[{drawn_lines}F\x1b[J");
            }
            drawn_lines = frame_text.lines().count();
        }
        let _ = write!(stdout, "{frame_text}");
        let _ = stdout.flush();
        if finished {
            break;
        }
        ticks.tick().await;
    }
    let _ = unprotected.await;
    let _ = protected.await;
    if let Some(t) = protected_2 {
        let _ = t.await;
    }
    if let Some(w) = watch_shared {
        w.abort();
    }

    // the figures
    let calls = recorder.calls();
    let transitions = recorder.transitions();
    let end = recorder.now();
    let total = [
        GroupStats::of(Group::Unprotected, &calls),
        GroupStats::of(Group::Protected, &calls),
    ];
    let outage = *script.outage();
    let opened_in_outage = transitions.iter().find(|t| {
        t.to == resilient::CircuitState::Open && t.at >= outage.start && t.at <= outage.end
    });
    let final_state = protect.breaker.state();
    let closed_after = opened_in_outage.is_some_and(|o| {
        transitions
            .iter()
            .any(|t| t.at > o.at && t.to == resilient::CircuitState::Closed)
    }) && final_state == resilient::CircuitState::Closed;
    let open = open_periods(&transitions, end);
    let arrivals = Group::ALL.map(|g| upstream.arrivals(g));
    let max_per_s = arrivals
        .clone()
        .map(|a| upstream::max_in_window(a, Duration::from_secs(1)));

    say!();
    put!("{}", view::summary_table(&total));
    let by_phase: Vec<PhaseOut> = script
        .phases
        .iter()
        .filter(|p| p.end > p.start && p.kind != chaos::Kind::Calm)
        .map(|p| {
            let inside: Vec<_> = calls
                .iter()
                .filter(|c| c.start >= p.start && c.start < p.end)
                .copied()
                .collect();
            PhaseOut {
                phase: p.kind,
                start_s: p.start.as_secs_f64(),
                end_s: p.end.as_secs_f64(),
                unprotected: GroupStats::of(Group::Unprotected, &inside),
                protected: GroupStats::of(Group::Protected, &inside),
            }
        })
        .collect();
    for p in &by_phase {
        say!(
            "  {:<24} {:>13} {:>12}",
            format!("success in {}", p.phase.label()),
            format!("{:.1}%", p.unprotected.success_rate * 100.0),
            format!("{:.1}%", p.protected.success_rate * 100.0)
        );
    }
    say!(
        "  breaker: opened {} time(s), {} during the outage ({:.1}-{:.1} s), {} after it, {:?} at the end",
        transitions
            .iter()
            .filter(|t| t.to == resilient::CircuitState::Open)
            .count(),
        if opened_in_outage.is_some() {
            "first"
        } else {
            "NOT"
        },
        outage.start.as_secs_f64(),
        outage.end.as_secs_f64(),
        if closed_after {
            "closed again"
        } else {
            "NOT closed"
        },
        final_state
    );
    say!(
        "  the upstream saw at most {} protected requests in one second (its limit {}, client limiter {}/s + burst {})",
        max_per_s[1],
        settings.upstream_limit_per_s,
        settings.limiter_rate_per_s,
        settings.limiter_burst
    );

    // the chart
    let out_dir = o.out.clone().unwrap_or_else(default_out);
    let chart_path = out_dir.join("resilient-demo.svg");
    let chart = match std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))
        .and_then(|()| {
            let buckets = 30;
            let unprotected = stats::series(&calls, Group::Unprotected, o.duration, buckets);
            let protected = stats::series(&calls, Group::Protected, o.duration, buckets);
            chart::write_svg(
                &chart_path,
                &chart::ChartData {
                    duration: o.duration,
                    unprotected: &unprotected,
                    protected: &protected,
                    outage: (outage.start, outage.end),
                    open: &open,
                    phases: script
                        .phases
                        .iter()
                        .filter(|p| !matches!(p.kind, chaos::Kind::Calm | chaos::Kind::Recovery))
                        .map(|p| (p.start, p.end, p.kind.label()))
                        .collect(),
                    caption: format!(
                        "resilient demo: protected vs unprotected (seed {}, {:.0} s)",
                        o.seed,
                        o.duration.as_secs_f64()
                    ),
                },
            )
        }) {
        Ok(()) => {
            let chart_path = std::fs::canonicalize(&chart_path).unwrap_or(chart_path);
            say!("\nchart: {}", chart_path.display());
            Some(chart_path)
        }
        Err(e) => {
            eprintln!("resilient demo: {e}");
            None
        }
    };

    // the JSON-repair scene
    say!();
    let model: hyper::Uri = format!("http://{addr}/model")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let scene = json_scene::run(model, 4).await;
    put!("{}", json_scene::render(&scene));
    for n in &notices {
        say!("{n}");
    }

    let summary = Summary {
        seed: o.seed,
        duration_s: o.duration,
        settings,
        phases: script.phases.clone(),
        outage,
        clients: Clients {
            unprotected: total[0].clone(),
            protected: total[1].clone(),
        },
        by_phase,
        breaker: BreakerSummary {
            transitions: transitions
                .iter()
                .map(|t| TransitionOut {
                    at_s: t.at.as_secs_f64(),
                    from: format!("{:?}", t.from),
                    to: format!("{:?}", t.to),
                })
                .collect(),
            open_periods_s: open
                .iter()
                .map(|(a, b)| [a.as_secs_f64(), b.as_secs_f64()])
                .collect(),
            opened_during_outage: opened_in_outage.is_some(),
            closed_after_outage: closed_after,
            final_state: format!("{final_state:?}"),
        },
        limits: LimitSummary {
            limiter_rejections: total[1].count(CallKind::RateLimited),
            bulkhead_rejections: total[1].count(CallKind::BulkheadFull),
            upstream_max_per_s: Clients {
                unprotected: max_per_s[0],
                protected: max_per_s[1],
            },
            upstream_requests: Clients {
                unprotected: arrivals[0].len(),
                protected: arrivals[1].len(),
            },
        },
        chart,
        json_scene: scene,
        not_available: notices,
        shared: protect.shared.as_ref().map(|(a, _)| {
            let b = second
                .as_ref()
                .and_then(|p| p.shared.as_ref())
                .map(|(b, _)| b);
            let all: Vec<_> = std::iter::once(a).chain(b).collect();
            SharedSummary {
                instances: all.len(),
                syncs: all.iter().map(|x| x.stats().syncs).collect(),
                sync_errors: all.iter().map(|x| x.stats().errors).collect(),
                opened: shared_opened.load(std::sync::atomic::Ordering::Relaxed),
            }
        }),
    };
    if let (Some(sh), Some(url)) = (&summary.shared, &o.extras.redis) {
        say!(
            "shared state ({url}): {} instances, reports {:?} ({:?} failed), shared circuit opened: {}",
            sh.instances,
            sh.syncs,
            sh.sync_errors,
            if sh.opened { "yes" } else { "no" }
        );
    }
    if let Some(path) = &o.summary_json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        say!("summary (JSON): {}", path.display());
    }
    Ok(())
}

/// A running demo: what the views (the terminal today; a web dashboard with `/metrics`
/// later) read, through [`Run::frame`].
struct Run<C> {
    script: Script,
    settings: Settings,
    url: String,
    recorder: Arc<Recorder>,
    upstream: Arc<upstream::Upstream>,
    protect: clients::Protection<C>,
}

impl<C> Run<C> {
    /// Everything a view shows, now.
    fn frame(&self) -> view::Frame<'_> {
        let now = self.recorder.now();
        let calls = self.recorder.calls();
        let recent_from = now.saturating_sub(Duration::from_secs(2));
        let recent: Vec<_> = calls.iter().filter(|c| c.start >= recent_from).collect();
        let total = Group::ALL.map(|g| GroupStats::of(g, &calls));
        let recent = Group::ALL.map(|g| GroupStats::of(g, recent.iter().copied()));
        let in_flight = [0, 1].map(|i| {
            self.recorder
                .started_calls(Group::ALL[i])
                .saturating_sub(total[i].calls as u64)
        });
        view::Frame {
            now,
            script: &self.script,
            settings: &self.settings,
            url: &self.url,
            total,
            recent,
            in_flight,
            transitions: self.recorder.transitions(),
            breaker: self.protect.breaker.state(),
            budget_left: self.protect.budget.available(),
            bulkhead_in_flight: self.protect.bulkhead.in_flight(),
            upstream_max_per_s: upstream::max_in_window(
                self.upstream.arrivals(Group::Protected),
                Duration::from_secs(1),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_with_defaults_and_reject_nonsense() {
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!(
            (o.duration, o.seed, o.plain),
            (Duration::from_secs(30), 42, false)
        );
        let o = parse(&args(&[
            "--duration",
            "6",
            "--seed=9",
            "--plain",
            "--redis",
            "redis://x",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.duration, o.seed, o.plain),
            (Duration::from_secs(6), 9, true)
        );
        assert_eq!(o.extras.redis.as_deref(), Some("redis://x"));
        assert!(o.extras.notices().is_empty());
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        for bad in [
            &["--duration", "1"][..],
            &["--seed", "x"],
            &["--what"],
            &["--out"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
