//! The sliding window counter's error against an exact sliding log, on synthetic traces.
//!
//! Two measurements per trace:
//! - *shadow*: the counter decides; for each request we also ask what an exact sliding
//!   window over the *same admitted history* would have said, and count disagreements
//!   (wrongly allowed / wrongly denied);
//! - *throughput*: an exact [`SlidingWindowLog`] runs independently on the same arrivals
//!   and we compare how many requests each admitted.
//!
//! The numbers are printed (run with `--nocapture`) and documented in the `ratelimit`
//! module docs.

use std::collections::VecDeque;
use std::time::Duration;

use resilient::ratelimit::{Algorithm, Limiter, SlidingWindowCounter, SlidingWindowLog};

/// xorshift64*: a tiny deterministic generator for the traces.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential inter-arrival time at `rate` per second, in ns.
    fn gap(&mut self, rate: f64) -> u64 {
        (-(1.0 - self.next_f64()).ln() / rate * 1e9) as u64
    }
}

#[derive(Debug)]
struct Report {
    requests: u64,
    wrongly_allowed: u64,
    wrongly_denied: u64,
    worst_window: u64,
    counter_admitted: u64,
    exact_admitted: u64,
}

impl Report {
    fn pct(&self, n: u64) -> f64 {
        100.0 * n as f64 / self.requests as f64
    }
}

/// `load(now, window)` gives the arrival rate as a multiple of `limit / window`.
fn measure(limit: u64, window: Duration, seconds: u64, load: impl Fn(u64, u64) -> f64) -> Report {
    let w = window.as_nanos() as u64;
    let counter = SlidingWindowCounter::new(limit, window).unwrap();
    let exact_limiter = SlidingWindowLog::new(limit, window).unwrap();
    let mut state = 0;
    let mut admitted: VecDeque<u64> = VecDeque::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = limit as f64 / window.as_secs_f64();
    let mut now = 0u64;
    let end = seconds * 1_000_000_000;
    let mut r = Report {
        requests: 0,
        wrongly_allowed: 0,
        wrongly_denied: 0,
        worst_window: 0,
        counter_admitted: 0,
        exact_admitted: 0,
    };
    while now < end {
        now += rng.gap(base * load(now, w)).max(1);
        r.requests += 1;
        while admitted.front().is_some_and(|&t| t + w <= now) {
            admitted.pop_front();
        }
        let exact = (admitted.len() as u64) < limit;
        let (next, d) = counter.step(state, now, 1);
        state = next;
        match (d.allowed, exact) {
            (true, false) => r.wrongly_allowed += 1,
            (false, true) => r.wrongly_denied += 1,
            _ => {}
        }
        if d.allowed {
            r.counter_admitted += 1;
            admitted.push_back(now);
            r.worst_window = r.worst_window.max(admitted.len() as u64);
        }
        if exact_limiter
            .try_acquire(Duration::from_nanos(now), 1)
            .unwrap()
            .allowed
        {
            r.exact_admitted += 1;
        }
    }
    r
}

fn print(name: &str, limit: u64, r: &Report) {
    println!(
        "{name}: {} requests; wrongly allowed {:.3}%, wrongly denied {:.3}%; \
         worst exact window {} (limit {limit}); admitted counter/exact = {}/{} = {:.3}",
        r.requests,
        r.pct(r.wrongly_allowed),
        r.pct(r.wrongly_denied),
        r.worst_window,
        r.counter_admitted,
        r.exact_admitted,
        r.counter_admitted as f64 / r.exact_admitted as f64,
    );
}

#[test]
fn sliding_counter_error_under_steady_load() {
    // Poisson arrivals at 0.5x and 0.9x the limit's rate: mostly under the limit, with the
    // natural bursts of a Poisson process.
    let (limit, window) = (100, Duration::from_secs(60));
    for (load, max_wrong, max_over) in [(0.5, 0.5, 10), (0.9, 8.0, 25)] {
        let r = measure(limit, window, 400_000, |_, _| load);
        print(&format!("steady {load}x"), limit, &r);
        assert!(r.requests > 300_000);
        assert!(
            r.pct(r.wrongly_allowed + r.wrongly_denied) < max_wrong,
            "{r:?}"
        );
        assert!(r.worst_window <= limit + max_over, "{r:?}");
        let ratio = r.counter_admitted as f64 / r.exact_admitted as f64;
        assert!((0.98..1.02).contains(&ratio), "{r:?}");
    }
}

#[test]
fn sliding_counter_error_under_alternating_overload() {
    // Load alternates every 2 windows between 0.5x and 3x: the counter's uniformity
    // assumption is at its worst right after a burst.
    let (limit, window) = (100, Duration::from_secs(60));
    let r = measure(limit, window, 200_000, |now, w| {
        if (now / (2 * w)) % 2 == 0 { 0.5 } else { 3.0 }
    });
    print("alternating 0.5x/3x", limit, &r);
    assert!(r.pct(r.wrongly_allowed) < 5.0, "{r:?}");
    assert!(r.worst_window <= limit + limit / 2, "{r:?}");
    // Errors are mostly conservative: the counter admits less than the exact log.
    assert!(r.counter_admitted <= r.exact_admitted, "{r:?}");
}
