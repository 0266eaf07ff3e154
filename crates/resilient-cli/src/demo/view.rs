//! The terminal view: panels redrawn in place on a terminal, or a progress line now and
//! then when the output is not one; and the final summary table.

use std::fmt::Write as _;
use std::time::Duration;

use resilient::CircuitState;

use super::chaos::Script;
use super::clients::Settings;
use super::stats::{CallKind, GroupStats, Transition, state_at};

/// Columns of the timeline strips.
const STRIP: usize = 60;

/// What a frame shows.
pub struct Frame<'a> {
    /// Time since the start.
    pub now: Duration,
    /// The script.
    pub script: &'a Script,
    /// The settings.
    pub settings: &'a Settings,
    /// Upstream address.
    pub url: &'a str,
    /// Both groups over the whole run so far (unprotected, protected).
    pub total: [GroupStats; 2],
    /// Both groups over the last two seconds.
    pub recent: [GroupStats; 2],
    /// Calls in flight per group.
    pub in_flight: [u64; 2],
    /// The breaker's transitions so far.
    pub transitions: Vec<Transition>,
    /// The breaker's state now.
    pub breaker: CircuitState,
    /// Retries left in the budget.
    pub budget_left: u64,
    /// Protected calls in the bulkhead now.
    pub bulkhead_in_flight: usize,
    /// The most requests the upstream saw from the protected group in one second.
    pub upstream_max_per_s: usize,
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn pct(s: &GroupStats) -> String {
    if s.calls == 0 {
        "-".into()
    } else {
        format!("{:.1}%", s.success_rate * 100.0)
    }
}

/// The chaos script as a strip of `STRIP` characters.
pub fn chaos_strip(script: &Script) -> String {
    (0..STRIP)
        .map(|i| script.phase_at(script.duration.mul_f64((i as f64 + 0.5) / STRIP as f64)))
        .map(|p| p.kind.glyph())
        .collect()
}

/// The breaker's state over the run so far: `_` closed, `#` open, `~` half-open.
pub fn breaker_strip(transitions: &[Transition], duration: Duration, now: Duration) -> String {
    (0..STRIP)
        .map(|i| {
            let t = duration.mul_f64((i as f64 + 0.5) / STRIP as f64);
            if t > now {
                ' '
            } else {
                match state_at(transitions, t) {
                    CircuitState::Closed => '_',
                    CircuitState::Open => '#',
                    CircuitState::HalfOpen => '~',
                    _ => '?',
                }
            }
        })
        .collect()
}

/// The widest line a frame draws (a line that wrapped would break the redraw in place).
pub const WIDTH: usize = 80;

/// `text` with every line cut to [`WIDTH`] characters.
pub fn fit(text: &str) -> String {
    text.lines()
        .map(|l| l.chars().take(WIDTH).collect::<String>() + "\n")
        .collect()
}

/// The panels of one frame.
pub fn panels(f: &Frame<'_>) -> String {
    let d = f.script.duration;
    let done = (f.now.as_secs_f64() / d.as_secs_f64()).clamp(0.0, 1.0);
    let filled = (done * 30.0).round() as usize;
    let mut out = String::new();
    let phase = f.script.phase_at(f.now);
    let _ = writeln!(
        out,
        "resilient demo  seed {}  [{}{}] {:5.1} s / {:.0} s",
        f.script.seed,
        "#".repeat(filled),
        "-".repeat(30 - filled),
        f.now.as_secs_f64().min(d.as_secs_f64()),
        d.as_secs_f64()
    );
    let _ = writeln!(out, "upstream {}  now: {}", f.url, phase.kind.label());
    out.push('\n');
    let _ = writeln!(
        out,
        "CHAOS SCRIPT   . calm  e 503s  s latency  t 429+Retry-After  X outage"
    );
    let cursor = ((done * STRIP as f64) as usize).min(STRIP - 1);
    let _ = writeln!(out, "  {}", chaos_strip(f.script));
    let _ = writeln!(out, "  {}^", " ".repeat(cursor));
    out.push('\n');
    let _ = writeln!(
        out,
        "CLIENTS        success  last 2s      p50      p99  req/call  calls  in flight"
    );
    for (i, name) in ["unprotected", "protected"].iter().enumerate() {
        let t = &f.total[i];
        let _ = writeln!(
            out,
            "  {:<11} {:>8} {:>8} {:>8} {:>8} {:>9.2} {:>6} {:>10}",
            name,
            pct(t),
            pct(&f.recent[i]),
            ms(t.p50_ms),
            ms(t.p99_ms),
            t.attempts_per_call,
            t.calls,
            f.in_flight[i]
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "CIRCUIT BREAKER  {:<9} {:>3} transitions  (_ closed  # open  ~ half-open)",
        format!("{:?}", f.breaker),
        f.transitions.len()
    );
    let _ = writeln!(out, "  {}", breaker_strip(&f.transitions, d, f.now));
    out.push('\n');
    let p = &f.total[1];
    let _ = writeln!(out, "RATE LIMITER & BULKHEAD  (protected client)",);
    let _ = writeln!(
        out,
        "  limiter {}/s, burst {}: {} rejected; upstream max {} req/s (its limit {})",
        f.settings.limiter_rate_per_s,
        f.settings.limiter_burst,
        p.count(CallKind::RateLimited),
        f.upstream_max_per_s,
        f.settings.upstream_limit_per_s
    );
    let _ = writeln!(
        out,
        "  bulkhead {}/{} in flight, {} rejected; retry budget {} left; fast fails {}",
        f.bulkhead_in_flight,
        f.settings.bulkhead_max_concurrent,
        p.count(CallKind::BulkheadFull),
        f.budget_left,
        p.count(CallKind::CircuitOpen)
    );
    out
}

/// One progress line (output that is not a terminal).
pub fn progress_line(f: &Frame<'_>) -> String {
    format!(
        "[{:5.1} s] {:<17} unprotected {:>6} p99 {:>8} | protected {:>6} p99 {:>8} attempts {:.2} | breaker {:?} | limiter rejected {}",
        f.now.as_secs_f64(),
        f.script.phase_at(f.now).kind.label(),
        pct(&f.recent[0]),
        ms(f.recent[0].p99_ms),
        pct(&f.recent[1]),
        ms(f.recent[1].p99_ms),
        f.recent[1].attempts_per_call,
        f.breaker,
        f.total[1].count(CallKind::RateLimited),
    )
}

/// Formats one cell of the summary.
type Cell = fn(&GroupStats) -> String;

/// The final table comparing the groups.
pub fn summary_table(total: &[GroupStats; 2]) -> String {
    let mut out = String::from("SUMMARY                      unprotected    protected\n");
    let rows: [(&str, Cell); 6] = [
        ("calls", |s| s.calls.to_string()),
        ("success rate", pct),
        ("p50 latency", |s| ms(s.p50_ms)),
        ("p99 latency", |s| ms(s.p99_ms)),
        ("slowest call", |s| ms(s.max_ms)),
        ("requests per call", |s| {
            format!("{:.2}", s.attempts_per_call)
        }),
    ];
    for (name, cell) in rows {
        let _ = writeln!(
            out,
            "  {:<24} {:>13} {:>12}",
            name,
            cell(&total[0]),
            cell(&total[1])
        );
    }
    let kinds = [
        (CallKind::ServerError, "failed: 5xx answer"),
        (CallKind::Throttled, "failed: 429 answer"),
        (CallKind::Transport, "failed: no answer"),
        (CallKind::Timeout, "failed: timeout"),
        (CallKind::CircuitOpen, "fast fail: breaker open"),
        (CallKind::RateLimited, "rejected: rate limit"),
        (CallKind::BulkheadFull, "rejected: bulkhead full"),
    ];
    for (kind, name) in kinds {
        let _ = writeln!(
            out,
            "  {:<24} {:>13} {:>12}",
            name,
            total[0].count(kind),
            total[1].count(kind)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::stats::{CallRecord, Group};

    #[test]
    fn a_frame_has_every_panel_and_fits_80_columns() {
        let d = Duration::from_secs(30);
        let script = Script::new(3, d);
        let settings = Settings::for_duration(d);
        let calls: Vec<CallRecord> = (0..500)
            .map(|i| CallRecord {
                group: if i % 2 == 0 {
                    Group::Unprotected
                } else {
                    Group::Protected
                },
                start: Duration::from_millis(i * 20),
                latency: Duration::from_millis(2 + i * 7),
                kind: if i % 7 == 0 {
                    CallKind::ServerError
                } else {
                    CallKind::Ok
                },
                attempts: 1 + (i % 3) as u32,
            })
            .collect();
        let total = [
            GroupStats::of(Group::Unprotected, &calls),
            GroupStats::of(Group::Protected, &calls),
        ];
        let transitions = [Transition {
            at: Duration::from_secs(18),
            from: CircuitState::Closed,
            to: CircuitState::Open,
        }];
        let frame = Frame {
            now: Duration::from_secs(20),
            script: &script,
            settings: &settings,
            url: "http://127.0.0.1:65535/api",
            total: total.clone(),
            recent: total,
            in_flight: [12345, 0],
            transitions: transitions.to_vec(),
            breaker: CircuitState::HalfOpen,
            budget_left: 123,
            bulkhead_in_flight: 32,
            upstream_max_per_s: 60,
        };
        let text = panels(&frame);
        for heading in ["CHAOS SCRIPT", "CLIENTS", "CIRCUIT BREAKER", "RATE LIMITER"] {
            assert!(text.contains(heading), "{heading}:\n{text}");
        }
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
        }
        // the breaker strip: closed until 18 s, open after, blank in the future
        let strip = breaker_strip(&transitions, d, frame.now);
        assert_eq!(strip.chars().count(), STRIP);
        assert!(strip.starts_with("____") && strip.contains("_#") && strip.ends_with("  "));
        assert!(progress_line(&frame).contains("OUTAGE") || progress_line(&frame).contains('['));
        assert_eq!(fit(&"x".repeat(100)), "x".repeat(WIDTH) + "\n");
    }
}
