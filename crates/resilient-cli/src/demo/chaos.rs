//! The chaos script: what the upstream does when, laid out on a timeline scaled to the run's
//! duration and fixed by the seed (the order of the disturbances, their lengths and their
//! intensity; which request of a burst fails comes from the seed and the request's number).

use std::time::Duration;

use serde::Serialize;

/// One kind of upstream behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Every request answered fast.
    Calm,
    /// A share of requests answered `503 Service Unavailable`.
    Errors,
    /// A share of requests answered late (a latency spike).
    Slow,
    /// A share of requests answered `429 Too Many Requests` with `Retry-After`.
    Throttled,
    /// Every request answered `503`: the dependency is down.
    Outage,
    /// Back up after the outage.
    Recovery,
}

impl Kind {
    /// A short label for the terminal and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Calm => "calm",
            Kind::Errors => "503 burst",
            Kind::Slow => "latency spike",
            Kind::Throttled => "429 + Retry-After",
            Kind::Outage => "OUTAGE",
            Kind::Recovery => "recovery",
        }
    }

    /// One character per phase, for the timeline strip.
    pub fn glyph(self) -> char {
        match self {
            Kind::Calm | Kind::Recovery => '.',
            Kind::Errors => 'e',
            Kind::Slow => 's',
            Kind::Throttled => 't',
            Kind::Outage => 'X',
        }
    }
}

/// One phase of the script.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Phase {
    /// What the upstream does.
    pub kind: Kind,
    /// When it starts, from the start of the run.
    #[serde(rename = "start_s", serialize_with = "secs")]
    pub start: Duration,
    /// When it ends.
    #[serde(rename = "end_s", serialize_with = "secs")]
    pub end: Duration,
    /// The share of requests affected (1 for an outage, 0 when calm).
    pub share: f64,
}

/// Serializes a duration as seconds (a float).
pub fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What the upstream answers to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200 OK` after this long.
    Ok(Duration),
    /// `503`.
    Unavailable,
    /// `429` with `Retry-After` in whole seconds.
    TooManyRequests(u64),
}

/// The whole script.
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The run's duration.
    #[serde(rename = "duration_s", serialize_with = "secs")]
    pub duration: Duration,
    /// The phases, in order, covering the whole run.
    pub phases: Vec<Phase>,
}

/// SplitMix64: a small, good mixing function (the same family as the library's
/// `SeededRandom`), used here statelessly on (seed, index).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from (seed, index).
pub fn unit(seed: u64, index: u64) -> f64 {
    (mix(seed ^ mix(index)) >> 11) as f64 / (1u64 << 53) as f64
}

/// How long a late answer takes (the protected client's operation timeout is shorter).
pub const SLOW_MIN: Duration = Duration::from_millis(1500);
/// The longest late answer.
pub const SLOW_MAX: Duration = Duration::from_millis(2500);
/// What a throttled answer asks the client to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

impl Script {
    /// The script for `seed` over `duration`: calm, then the three disturbances (503s,
    /// a latency spike, 429s) in an order and with lengths and shares drawn from the seed
    /// (the 429s never last), separated by calm stretches, then the outage and the
    /// recovery (always the last 42% of the run, so the breaker has time to open and to
    /// close again).
    pub fn new(seed: u64, duration: Duration) -> Script {
        let r = |i: u64| unit(seed, 1_000_000 + i);
        let mut order = [Kind::Errors, Kind::Slow, Kind::Throttled];
        // a seeded shuffle (Fisher-Yates)
        for i in (1..order.len()).rev() {
            let j = (r(i as u64) * (i + 1) as f64) as usize;
            order.swap(i, j.min(i));
        }
        // the 429s ask for a 1 s wait: not right before the outage, where the retries
        // they delay would land
        if order[2] == Kind::Throttled {
            order.swap(2, usize::from(r(3) < 0.5));
        }
        let d = duration.as_secs_f64();
        let at = |f: f64| Duration::from_secs_f64(d * f);
        let mut phases = Vec::new();
        let mut push = |kind, from: f64, to: f64, share| {
            phases.push(Phase {
                kind,
                start: at(from),
                end: at(to),
                share,
            })
        };
        // calm 10%, then three slots of 16% in 0.10..0.58 (each a disturbance of 11-14%
        // followed by calm), the outage 0.58..0.76, the recovery to the end
        push(Kind::Calm, 0.0, 0.10, 0.0);
        for (slot, kind) in order.into_iter().enumerate() {
            let from = 0.10 + 0.16 * slot as f64;
            let len = 0.11 + 0.03 * r(10 + slot as u64);
            let share = match kind {
                Kind::Errors => 0.35 + 0.15 * r(20 + slot as u64),
                Kind::Slow => 0.25 + 0.15 * r(20 + slot as u64),
                _ => 0.45 + 0.2 * r(20 + slot as u64),
            };
            push(kind, from, from + len, share);
            push(Kind::Calm, from + len, from + 0.16, 0.0);
        }
        push(Kind::Outage, 0.58, 0.76, 1.0);
        push(Kind::Recovery, 0.76, 1.0, 0.0);
        Script {
            seed,
            duration,
            phases,
        }
    }

    /// The phase at `t` (the last one past the end).
    pub fn phase_at(&self, t: Duration) -> &Phase {
        self.phases
            .iter()
            .find(|p| t < p.end)
            .unwrap_or_else(|| self.phases.last().expect("a script has phases"))
    }

    /// The outage phase.
    pub fn outage(&self) -> &Phase {
        self.phases
            .iter()
            .find(|p| p.kind == Kind::Outage)
            .expect("every script has an outage")
    }

    /// What the upstream answers to its `n`-th request, arriving at `t`.
    pub fn answer(&self, t: Duration, n: u64) -> Answer {
        let phase = self.phase_at(t);
        let roll = unit(self.seed, n);
        // a calm answer takes 2-6 ms
        let fast = Duration::from_micros(2_000 + (unit(self.seed ^ 0xFA57, n) * 4_000.0) as u64);
        match phase.kind {
            Kind::Outage => Answer::Unavailable,
            Kind::Errors if roll < phase.share => Answer::Unavailable,
            Kind::Throttled if roll < phase.share => Answer::TooManyRequests(RETRY_AFTER_SECS),
            Kind::Slow if roll < phase.share => {
                let span = (SLOW_MAX - SLOW_MIN).as_secs_f64();
                Answer::Ok(SLOW_MIN + Duration::from_secs_f64(span * unit(self.seed ^ 0x51, n)))
            }
            _ => Answer::Ok(fast),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_covers_the_run_in_order_and_depends_only_on_the_seed() {
        let d = Duration::from_secs(30);
        let a = Script::new(7, d);
        assert_eq!(a.phases.first().unwrap().start, Duration::ZERO);
        assert_eq!(a.phases.last().unwrap().end, d);
        for w in a.phases.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert!(w[0].start <= w[0].end);
        }
        for kind in [Kind::Errors, Kind::Slow, Kind::Throttled, Kind::Outage] {
            assert_eq!(a.phases.iter().filter(|p| p.kind == kind).count(), 1);
        }
        // the 429s never come right before the outage
        for seed in 0..50 {
            let s = Script::new(seed, d);
            let last = s
                .phases
                .iter()
                .rev()
                .find(|p| !matches!(p.kind, Kind::Calm | Kind::Outage | Kind::Recovery))
                .unwrap();
            assert_ne!(last.kind, Kind::Throttled, "seed {seed}");
        }
        let b = Script::new(7, d);
        assert_eq!(format!("{:?}", a.phases), format!("{:?}", b.phases));
        // some seed orders the disturbances differently
        let order = |s: &Script| -> Vec<Kind> {
            s.phases
                .iter()
                .map(|p| p.kind)
                .filter(|k| !matches!(k, Kind::Calm))
                .collect()
        };
        assert!((0..20).any(|seed| order(&Script::new(seed, d)) != order(&a)));
    }

    #[test]
    fn answers_follow_the_phase() {
        let s = Script::new(1, Duration::from_secs(10));
        let outage = *s.outage();
        for n in 0..100 {
            assert_eq!(s.answer(outage.start, n), Answer::Unavailable);
            assert!(
                matches!(s.answer(Duration::ZERO, n), Answer::Ok(d) if d < Duration::from_millis(10))
            );
        }
        let errors = *s.phases.iter().find(|p| p.kind == Kind::Errors).unwrap();
        let failed = (0..1000)
            .filter(|&n| s.answer(errors.start, n) == Answer::Unavailable)
            .count();
        let expected = errors.share * 1000.0;
        assert!(
            (failed as f64 - expected).abs() < 60.0,
            "{failed} vs {expected}"
        );
    }
}
