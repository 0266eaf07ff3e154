//! Deterministic state-machine tests on a manual clock, driving the breaker through the
//! guard seam (admit, then record an outcome and a duration).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::circuit::{
    CircuitBreakerBuilder, LocalStore, PhaseDeadline, StateStore, StateWord, TransitionReason,
    Window,
};
use resilient::{
    Acquire, CircuitBreaker, CircuitEvent, CircuitState, Context, Guard, ManualClock, Outcome,
    Permit, Pipeline, Rejection, SeededRandom, Timeout,
};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn build(b: CircuitBreakerBuilder) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = b.clock(Arc::new(clock.clone())).build().expect("valid");
    (breaker, clock)
}

type Log = Arc<Mutex<Vec<CircuitEvent>>>;

fn logged(b: CircuitBreakerBuilder) -> (CircuitBreaker, ManualClock, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let (breaker, clock) =
        build(b.observer(move |_: &str, e: &CircuitEvent| sink.lock().unwrap().push(e.clone())));
    (breaker, clock, log)
}

fn transitions(log: &Log) -> Vec<(CircuitState, CircuitState, TransitionReason)> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitEvent::StateTransition { from, to, reason } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect()
}

fn admit(b: &CircuitBreaker) -> Result<Permit<'_>, Rejection> {
    match b.acquire(&Context::new()) {
        Acquire::Ready(r) => r,
        Acquire::Wait(_) => panic!("a breaker never makes callers wait"),
    }
}

fn call(b: &CircuitBreaker, outcome: Outcome, took: Duration) {
    admit(b).expect("admitted").record(outcome, took);
}

fn ok(b: &CircuitBreaker) {
    call(b, Outcome::Success, MS);
}

fn fail(b: &CircuitBreaker) {
    call(b, Outcome::Failure, MS);
}

fn retry_after(b: &CircuitBreaker) -> Option<Duration> {
    match admit(b) {
        Err(Rejection::CircuitOpen { retry_after }) => retry_after,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn failure_rate_at_threshold_opens_count_window() {
    let (b, _clock, log) = logged(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::count(10))
            .minimum_calls(10),
    );
    for _ in 0..5 {
        ok(&b);
    }
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), CircuitState::Closed, "9 calls: below minimum");
    fail(&b); // 5 of 10 = 50%: threshold reached (>=)
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(
        transitions(&log),
        [(
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::FailureRate
        )]
    );
    let s = b.snapshot();
    assert_eq!((s.buffered_calls, s.failed_calls), (10, 5));
    assert_eq!(s.failure_rate, Some(0.5));
}

#[test]
fn below_threshold_stays_closed() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::count(10))
            .minimum_calls(10),
    );
    for i in 0..100 {
        if i % 10 < 4 {
            fail(&b);
        } else {
            ok(&b);
        }
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().failure_rate, Some(0.4));
}

#[test]
fn minimum_calls_gate_the_rate() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::count(100))
            .minimum_calls(5),
    );
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.state(), CircuitState::Closed, "100% but only 4 calls");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn a_success_that_reaches_minimum_calls_can_trip() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::count(10))
            .minimum_calls(4),
    );
    fail(&b);
    fail(&b);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed);
    ok(&b); // 2 of 4
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn count_window_forgets_old_calls() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.75)
            .window(Window::count(4))
            .minimum_calls(4),
    );
    fail(&b);
    fail(&b);
    for _ in 0..4 {
        ok(&b); // pushes both failures out
    }
    assert_eq!(b.snapshot().failed_calls, 0);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "2 of the last 4");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "3 of the last 4");
}

#[test]
fn time_window_judges_only_recent_buckets() {
    let (b, clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::time_buckets(10 * SEC, 10))
            .minimum_calls(4),
    );
    fail(&b);
    fail(&b);
    fail(&b);
    assert_eq!(b.snapshot().buffered_calls, 3);
    clock.advance(10 * SEC); // all three age out
    assert_eq!(b.snapshot().buffered_calls, 0);
    fail(&b);
    ok(&b);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed, "1 of 3, below minimum");
    clock.advance(4 * SEC);
    ok(&b);
    assert_eq!(b.state(), CircuitState::Closed, "1 of 4");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "2 of 5");
    clock.advance(5 * SEC);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "3 of 6 within the last 10 s");
}

#[test]
fn time_window_drops_a_whole_bucket_at_a_time() {
    let (b, clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .window(Window::time_buckets(10 * SEC, 5))
            .minimum_calls(1),
    );
    // 2 s buckets: calls at 0.5 s and 1.5 s share the first bucket.
    clock.advance(500 * MS);
    ok(&b);
    clock.advance(SEC);
    ok(&b);
    clock.advance(8 * SEC); // t = 9.5 s: still inside
    assert_eq!(b.snapshot().buffered_calls, 2);
    clock.advance(500 * MS); // t = 10 s: the [0, 2) bucket leaves as a whole
    assert_eq!(b.snapshot().buffered_calls, 0);
}

#[test]
fn a_window_full_of_successes_still_counts_what_changes_it() {
    // A healthy breaker's quick successes change nothing (and are not written); slow calls,
    // failures and their ageing out still are, exactly as over any other window.
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.5)
            .slow_calls(SEC, 0.9)
            .window(Window::count(4))
            .minimum_calls(4),
    );
    for _ in 0..10 {
        ok(&b);
    }
    let counts = |b: &CircuitBreaker| {
        let s = b.snapshot();
        (s.buffered_calls, s.failed_calls, s.slow_calls)
    };
    assert_eq!(counts(&b), (4, 0, 0));
    call(&b, Outcome::Success, SEC);
    assert_eq!(counts(&b), (4, 0, 1));
    for _ in 0..3 {
        ok(&b);
        assert_eq!(counts(&b), (4, 0, 1), "ages out after 4 calls, not fewer");
    }
    ok(&b);
    assert_eq!(counts(&b), (4, 0, 0));
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "1 failure of 4");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "2 failures of 4");
}

#[test]
fn a_healthy_breaker_still_tells_its_listeners_of_every_success() {
    let (b, _clock, log) = logged(CircuitBreaker::failure_rate(0.5).window(Window::count(2)));
    for _ in 0..5 {
        ok(&b);
    }
    let successes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, CircuitEvent::Success { .. }))
        .count();
    assert_eq!(successes, 5);
}

#[test]
fn slow_calls_trip_at_the_slow_rate() {
    let (b, _clock, log) = logged(
        CircuitBreaker::failure_rate(1.0)
            .slow_calls(SEC, 0.5)
            .window(Window::count(10))
            .minimum_calls(4),
    );
    call(&b, Outcome::Success, SEC); // exactly the slow duration counts as slow
    call(&b, Outcome::Success, 999 * MS);
    call(&b, Outcome::Success, 10 * MS);
    assert_eq!(b.snapshot().slow_calls, 1);
    call(&b, Outcome::Success, 5 * SEC);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(transitions(&log)[0].2, TransitionReason::SlowCallRate);
    let events = log.lock().unwrap();
    assert!(events.contains(&CircuitEvent::SlowCall {
        duration: SEC,
        failed: false
    }));
    assert!(events.contains(&CircuitEvent::Success { duration: SEC }));
}

#[test]
fn consecutive_failures_mode() {
    let (b, _clock, log) = logged(CircuitBreaker::consecutive_failures(5));
    for _ in 0..4 {
        fail(&b);
    }
    ok(&b); // resets the run
    for _ in 0..4 {
        fail(&b);
    }
    call(&b, Outcome::Ignored, MS); // neither counts nor resets
    assert_eq!(b.snapshot().consecutive_failures, 4);
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(
        transitions(&log)[0].2,
        TransitionReason::ConsecutiveFailures
    );
    assert_eq!(b.snapshot().buffered_calls, 0, "no window in this mode");
}

#[test]
fn ignored_outcomes_are_not_counted() {
    let (b, _clock, log) = logged(CircuitBreaker::failure_rate(0.5).minimum_calls(2));
    for _ in 0..20 {
        call(&b, Outcome::Ignored, MS);
    }
    assert_eq!(b.snapshot().buffered_calls, 0);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        log.lock().unwrap()[0],
        CircuitEvent::Ignored { duration: MS }
    );
}

#[test]
fn open_rejects_with_retry_after_and_counts_rejections() {
    let (b, clock, log) = logged(CircuitBreaker::consecutive_failures(1).open_for(10 * SEC));
    fail(&b);
    clock.advance(3 * SEC);
    assert_eq!(retry_after(&b), Some(7 * SEC));
    assert_eq!(b.snapshot().rejected_calls, 1);
    assert_eq!(b.snapshot().retry_after, Some(7 * SEC));
    assert!(log.lock().unwrap().contains(&CircuitEvent::Rejected {
        state: CircuitState::Open,
        retry_after: Some(7 * SEC)
    }));
    clock.advance(7 * SEC - MS);
    assert_eq!(retry_after(&b), Some(MS));
}

#[test]
fn half_open_admits_exactly_n_probes_and_closes_after_successes() {
    let (b, clock, log) = logged(
        CircuitBreaker::failure_rate(0.5)
            .minimum_calls(2)
            .open_for(SEC)
            .half_open_probes(2),
    );
    fail(&b);
    fail(&b);
    clock.advance(SEC);
    let p1 = admit(&b).expect("first probe");
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let p2 = admit(&b).expect("second probe");
    assert_eq!(
        retry_after(&b),
        Some(SEC),
        "no third probe (until the default wait, one break, ends)"
    );
    assert_eq!(b.snapshot().probes_in_flight, 2);
    p1.record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    p2.record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
    let s = b.snapshot();
    assert_eq!(
        (s.buffered_calls, s.failed_recoveries),
        (0, 0),
        "fresh window"
    );
    assert_eq!(
        transitions(&log),
        [
            (
                CircuitState::Closed,
                CircuitState::Open,
                TransitionReason::FailureRate
            ),
            (
                CircuitState::Open,
                CircuitState::HalfOpen,
                TransitionReason::BreakElapsed
            ),
            (
                CircuitState::HalfOpen,
                CircuitState::Closed,
                TransitionReason::ProbesSucceeded
            ),
        ]
    );
}

#[test]
fn failed_probe_reopens_and_break_backs_off_until_capped_then_resets() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .break_backoff(2.0, 5 * SEC),
    );
    fail(&b);
    let mut breaks = Vec::new();
    for _ in 0..5 {
        let d = retry_after(&b).unwrap();
        breaks.push(d);
        clock.advance(d);
        let probe = admit(&b).expect("probe after the break");
        probe.record(Outcome::Failure, MS);
        assert_eq!(b.state(), CircuitState::Open);
    }
    assert_eq!(breaks, [SEC, 2 * SEC, 4 * SEC, 5 * SEC, 5 * SEC]);
    assert_eq!(b.snapshot().failed_recoveries, 5);
    clock.advance(5 * SEC);
    admit(&b).unwrap().record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(retry_after(&b), Some(SEC), "backoff resets after a close");
}

#[test]
fn jittered_breaks_stay_within_bounds_and_are_reproducible() {
    let run = |seed: u64| {
        let (b, clock) = build(
            CircuitBreaker::consecutive_failures(1)
                .open_for(SEC)
                .break_backoff(2.0, 8 * SEC)
                .break_jitter(0.5)
                .random(Arc::new(SeededRandom::new(seed))),
        );
        fail(&b);
        let mut breaks = Vec::new();
        for _ in 0..8 {
            let d = retry_after(&b).unwrap();
            breaks.push(d);
            clock.advance(d);
            admit(&b).unwrap().record(Outcome::Failure, MS);
        }
        breaks
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same breaks");
    assert_ne!(a, run(8), "another seed, other breaks");
    for (k, d) in a.iter().enumerate() {
        let full = (SEC * 2u32.pow(k as u32)).min(8 * SEC);
        // jitter only shortens; +1 ms for the millisecond resolution of deadlines
        assert!(
            *d <= full && *d + MS >= full / 2,
            "break {k}: {d:?} vs {full:?}"
        );
    }
    assert!(
        a.iter()
            .enumerate()
            .any(|(k, d)| *d < (SEC * 2u32.pow(k as u32)).min(8 * SEC) - MS),
        "jitter applied: {a:?}"
    );
}

#[test]
fn custom_break_generator() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .break_duration_with(|failed| 3 * SEC * (failed + 1)),
    );
    fail(&b);
    for expected in [3, 6, 9] {
        let d = retry_after(&b).unwrap();
        assert_eq!(d, expected * SEC);
        clock.advance(d);
        admit(&b).unwrap().record(Outcome::Failure, MS);
    }
}

#[test]
fn circuit_timeout_caps_the_break() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .break_backoff(10.0, Duration::from_secs(3600)),
    );
    let _pipeline = Pipeline::builder()
        .timeout(Timeout::circuit(3 * SEC))
        .circuit_breaker(&b)
        .build()
        .unwrap();
    fail(&b);
    assert_eq!(retry_after(&b), Some(SEC));
    clock.advance(SEC);
    admit(&b).unwrap().record(Outcome::Failure, MS);
    assert_eq!(
        retry_after(&b),
        Some(3 * SEC),
        "10 s capped at timeout.circuit"
    );
}

#[test]
fn a_break_under_way_is_cut_to_a_circuit_timeout_attached_later() {
    // The breaker opens for 10 s before any pipeline caps its breaks; a pipeline with a
    // 3 s circuit timeout then takes it: its rejections see the capped break, not the
    // stored 10 s.
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .break_backoff(10.0, Duration::from_secs(3600)),
    );
    fail(&b);
    clock.advance(SEC);
    admit(&b).unwrap().record(Outcome::Failure, MS);
    assert_eq!(retry_after(&b), Some(10 * SEC));
    let _pipeline = Pipeline::builder()
        .timeout(Timeout::circuit(3 * SEC))
        .circuit_breaker(&b)
        .build()
        .unwrap();
    let left = retry_after(&b).expect("still open");
    assert!(left <= 3 * SEC, "{left:?}");
    clock.advance(3 * SEC);
    assert!(admit(&b).is_ok(), "the capped break has ended");
}

#[test]
fn circuit_timeout_bounds_time_window_and_base_break() {
    let err = Pipeline::builder()
        .timeout(Timeout::circuit(30 * SEC))
        .circuit_breaker(CircuitBreaker::failure_rate(0.5).window(Window::time(60 * SEC)))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.window");
    assert!(err.rule().contains("timeout.circuit"), "{err}");
    let err = Pipeline::builder()
        .timeout(Timeout::circuit(30 * SEC))
        .circuit_breaker(CircuitBreaker::failure_rate(0.5).open_for(60 * SEC))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.open_for");
    // fits: accepted
    assert!(
        Pipeline::builder()
            .timeout(Timeout::circuit(60 * SEC))
            .circuit_breaker(CircuitBreaker::failure_rate(0.5).window(Window::time(60 * SEC)))
            .build()
            .is_ok()
    );
}

#[test]
fn invalid_configuration_names_the_field() {
    let cases: Vec<(CircuitBreakerBuilder, &str)> = vec![
        (CircuitBreaker::failure_rate(0.0), "circuit.failure_rate"),
        (
            CircuitBreaker::failure_rate(f64::NAN),
            "circuit.failure_rate",
        ),
        (
            CircuitBreaker::builder().slow_calls(SEC, 2.0),
            "circuit.slow_call_rate",
        ),
        (
            CircuitBreaker::builder().slow_calls(Duration::ZERO, 0.5),
            "circuit.slow_call_duration",
        ),
        (
            CircuitBreaker::consecutive_failures(0),
            "circuit.consecutive_failures",
        ),
        (
            CircuitBreaker::builder().window(Window::count(0)),
            "circuit.window",
        ),
        (
            CircuitBreaker::builder().window(Window::count(Window::MAX_COUNT + 1)),
            "circuit.window",
        ),
        (
            CircuitBreaker::builder().window(Window::time_buckets(SEC, 0)),
            "circuit.window",
        ),
        (
            CircuitBreaker::builder().window(Window::time(Duration::ZERO)),
            "circuit.window",
        ),
        (
            CircuitBreaker::builder()
                .window(Window::count(5))
                .minimum_calls(6),
            "circuit.minimum_calls",
        ),
        (
            CircuitBreaker::builder().minimum_calls(0),
            "circuit.minimum_calls",
        ),
        (
            CircuitBreaker::builder().open_for(Duration::ZERO),
            "circuit.open_for",
        ),
        (
            CircuitBreaker::builder().break_backoff(0.5, 60 * SEC),
            "circuit.break_backoff.multiplier",
        ),
        (
            CircuitBreaker::builder()
                .open_for(10 * SEC)
                .break_backoff(2.0, SEC),
            "circuit.break_backoff.max",
        ),
        (
            CircuitBreaker::builder().break_jitter(1.5),
            "circuit.break_jitter",
        ),
        (
            CircuitBreaker::builder().half_open_probes(0),
            "circuit.half_open_probes",
        ),
        (
            CircuitBreaker::builder()
                .half_open_probes(2)
                .required_successes(3),
            "circuit.required_successes",
        ),
        (
            CircuitBreaker::builder().max_half_open_wait(Duration::ZERO),
            "circuit.max_half_open_wait",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(!err.rule().is_empty());
    }
    // An invalid builder handed to a pipeline fails the pipeline's build.
    let err = Pipeline::builder()
        .circuit_breaker(CircuitBreaker::failure_rate(2.0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.failure_rate");
}

#[test]
fn dropped_probe_gives_its_permit_back_and_counts_as_nothing() {
    let (b, clock, log) = logged(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    fail(&b);
    clock.advance(SEC);
    let probe = admit(&b).unwrap();
    assert!(admit(&b).is_err(), "one probe at a time");
    drop(probe);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(b.snapshot().probes_in_flight, 0);
    assert!(
        log.lock()
            .unwrap()
            .contains(&CircuitEvent::Cancelled { probe: true })
    );
    let probe = admit(&b).expect("the permit came back");
    call_ignored_then_check(&b, probe);
}

fn call_ignored_then_check(b: &CircuitBreaker, probe: Permit<'_>) {
    probe.record(Outcome::Ignored, MS);
    assert_eq!(b.state(), CircuitState::HalfOpen, "ignored: neither");
    admit(b)
        .expect("ignored probe gave its permit back")
        .record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn required_successes_below_probes_closes_early_and_ignores_late_probes() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .half_open_probes(3)
            .required_successes(2),
    );
    fail(&b);
    clock.advance(SEC);
    let probes: Vec<_> = (0..3).map(|_| admit(&b).unwrap()).collect();
    let mut probes = probes.into_iter();
    probes.next().unwrap().record(Outcome::Success, MS);
    probes.next().unwrap().record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
    probes.next().unwrap().record(Outcome::Failure, MS);
    assert_eq!(b.state(), CircuitState::Closed, "a late probe is stale");
}

#[test]
fn results_from_a_previous_phase_are_discarded() {
    let (b, clock) = build(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    let old = admit(&b).unwrap();
    fail(&b);
    clock.advance(SEC);
    ok(&b); // probe closes it
    assert_eq!(b.state(), CircuitState::Closed);
    old.record(Outcome::Failure, MS);
    assert_eq!(b.state(), CircuitState::Closed, "stale failure ignored");
}

#[test]
fn half_open_max_wait_reopens_when_probes_hang() {
    let (b, clock, log) = logged(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .max_half_open_wait(5 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    let hung = admit(&b).unwrap();
    clock.advance(4 * SEC);
    assert_eq!(
        retry_after(&b),
        Some(SEC),
        "still half-open, probe busy: the rest of the wait"
    );
    assert_eq!(b.state(), CircuitState::HalfOpen);
    clock.advance(SEC);
    assert_eq!(
        retry_after(&b),
        Some(SEC),
        "gave up on the probe and reopened"
    );
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.snapshot().failed_recoveries, 1);
    assert_eq!(
        transitions(&log).last().unwrap().2,
        TransitionReason::HalfOpenTimeout
    );
    hung.record(Outcome::Success, MS);
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "the hung probe's late success is stale"
    );
}

#[test]
fn forced_states() {
    let (b, _clock, log) = logged(CircuitBreaker::consecutive_failures(1));
    b.isolate();
    assert_eq!(retry_after(&b), None);
    assert!(!b.is_ready());
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);

    b.disable();
    for _ in 0..10 {
        fail(&b);
    }
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_eq!(
        b.snapshot().consecutive_failures,
        0,
        "disabled records nothing"
    );

    b.metrics_only();
    for _ in 0..10 {
        fail(&b);
    }
    assert_eq!(b.state(), CircuitState::MetricsOnly, "never trips");
    assert_eq!(b.snapshot().consecutive_failures, 10, "but records");
    b.reset();
    assert_eq!(b.snapshot().consecutive_failures, 0);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    let reasons: Vec<_> = transitions(&log).iter().map(|t| (t.1, t.2)).collect();
    assert_eq!(
        reasons,
        [
            (CircuitState::Isolated, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
            (CircuitState::Disabled, TransitionReason::Manual),
            (CircuitState::MetricsOnly, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
            (CircuitState::Open, TransitionReason::ConsecutiveFailures),
        ]
    );
}

#[test]
fn metrics_only_reports_rates() {
    let (b, _clock) = build(
        CircuitBreaker::failure_rate(0.1)
            .slow_calls(SEC, 0.1)
            .window(Window::count(10))
            .minimum_calls(1),
    );
    b.metrics_only();
    fail(&b);
    call(&b, Outcome::Success, 2 * SEC);
    ok(&b);
    ok(&b);
    let s = b.snapshot();
    assert_eq!(s.state, CircuitState::MetricsOnly);
    assert_eq!(s.buffered_calls, 4);
    assert_eq!(s.failure_rate, Some(0.25));
    assert_eq!(s.slow_call_rate, Some(0.25));
}

#[test]
fn a_shared_state_store_shares_the_state_machine() {
    #[derive(Debug, Default)]
    struct Shared(Arc<LocalStore>);
    impl StateStore for Shared {
        fn load(&self) -> StateWord {
            self.0.load()
        }
        fn compare_exchange(&self, current: StateWord, new: StateWord) -> Result<(), StateWord> {
            self.0.compare_exchange(current, new)
        }
        fn load_deadline(&self) -> PhaseDeadline {
            self.0.load_deadline()
        }
        fn compare_exchange_deadline(
            &self,
            current: PhaseDeadline,
            new: PhaseDeadline,
        ) -> Result<(), PhaseDeadline> {
            self.0.compare_exchange_deadline(current, new)
        }
    }
    let backing = Arc::new(LocalStore::default());
    let clock = ManualClock::new();
    let make = || {
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .clock(Arc::new(clock.clone()))
            .store(Arc::new(Shared(backing.clone())))
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    fail(&a);
    assert_eq!(b.state(), CircuitState::Open, "b sees a's trip");
    assert_eq!(retry_after(&b), Some(SEC));
    clock.advance(SEC);
    let probe = admit(&a).unwrap();
    assert!(admit(&b).is_err(), "the single probe is shared too");
    probe.record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_panicking_break_generator_does_not_leave_the_breaker_open_without_deadline() {
    let (b, _clock) = build(
        CircuitBreaker::consecutive_failures(1).break_duration_with(|_| panic!("generator bug")),
    );
    let tripped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fail(&b)));
    assert!(tripped.is_err(), "the generator's panic propagates");
    assert_eq!(b.state(), CircuitState::Closed, "no half-made transition");
    assert!(admit(&b).is_ok());
}

/// A store that runs a hook right after a chosen transition was published and before the
/// publishing thread writes the phase deadline: as if that thread were paused there.
#[derive(Default)]
struct Paused {
    local: LocalStore,
    hook: Mutex<Option<Hook>>,
    /// Deadline writes to drop (a store that loses an update).
    lose_deadlines: std::sync::atomic::AtomicU32,
}

type Hook = (CircuitState, CircuitState, Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Paused")
    }
}

impl Paused {
    fn on(&self, from: CircuitState, to: CircuitState, f: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some((from, to, Box::new(f)));
    }
}

impl StateStore for Paused {
    fn load(&self) -> StateWord {
        self.local.load()
    }
    fn compare_exchange(&self, current: StateWord, new: StateWord) -> Result<(), StateWord> {
        self.local.compare_exchange(current, new)?;
        let due = {
            let mut hook = self.hook.lock().unwrap();
            match &*hook {
                Some((from, to, _)) if *from == current.state() && *to == new.state() => {
                    hook.take()
                }
                _ => None,
            }
        };
        if let Some((_, _, f)) = due {
            f();
        }
        Ok(())
    }
    fn load_deadline(&self) -> PhaseDeadline {
        self.local.load_deadline()
    }
    fn compare_exchange_deadline(
        &self,
        current: PhaseDeadline,
        new: PhaseDeadline,
    ) -> Result<(), PhaseDeadline> {
        let lose = &self.lose_deadlines;
        if lose.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            lose.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            return Ok(());
        }
        self.local.compare_exchange_deadline(current, new)
    }
}

fn paused(b: CircuitBreakerBuilder) -> (CircuitBreaker, ManualClock, Arc<Paused>) {
    let store = Arc::new(Paused::default());
    let (breaker, clock) = build(b.store(store.clone()));
    clock.set(Duration::from_secs(200_000)); // production clocks read far from zero
    (breaker, clock, store)
}

#[test]
fn a_stale_half_open_deadline_cannot_overwrite_a_newer_open_phase() {
    let (b, clock, store) = paused(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .half_open_probes(2)
            .required_successes(1)
            .max_half_open_wait(10 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    // Thread A ends the break; before it writes the half-open deadline, another probe
    // fails and reopens the breaker (a new epoch with its own deadline).
    let other = b.clone();
    store.on(CircuitState::Open, CircuitState::HalfOpen, move || {
        admit(&other)
            .expect("second probe")
            .record(Outcome::Failure, MS);
        assert_eq!(other.state(), CircuitState::Open);
    });
    let a = admit(&b).expect("A is the first probe");
    assert_eq!(b.state(), CircuitState::Open, "reopened under A");
    assert_eq!(
        retry_after(&b),
        Some(SEC),
        "the new open phase keeps its deadline"
    );
    clock.advance(SEC);
    admit(&b)
        .expect("the break ends: probing again")
        .record(Outcome::Success, MS);
    drop(a); // A's stale probe counts for nothing
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_stale_deadline_cannot_overwrite_one_after_a_reset_and_new_trip() {
    let (b, clock, store) = paused(
        CircuitBreaker::consecutive_failures(1)
            .open_for(SEC)
            .max_half_open_wait(10 * SEC),
    );
    fail(&b);
    clock.advance(SEC);
    let other = b.clone();
    store.on(CircuitState::Open, CircuitState::HalfOpen, move || {
        other.reset();
        fail(&other);
    });
    let _a = admit(&b).expect("A probes");
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(retry_after(&b), Some(SEC));
    clock.advance(SEC);
    assert!(admit(&b).is_ok(), "not stuck open");
}

#[test]
fn a_lost_deadline_is_recomputed_instead_of_leaving_the_breaker_open() {
    let (b, clock, store) = paused(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    store
        .lose_deadlines
        .store(1, std::sync::atomic::Ordering::SeqCst);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(
        retry_after(&b),
        Some(SEC),
        "a fresh break for the missing deadline"
    );
    clock.advance(SEC);
    admit(&b).expect("probe").record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
}

fn panicky_observer(
    b: CircuitBreakerBuilder,
    when: fn(&CircuitEvent) -> bool,
) -> CircuitBreakerBuilder {
    b.observer(move |_: &str, e: &CircuitEvent| {
        if when(e) {
            panic!("observer bug on {e:?}")
        }
    })
}

fn catch<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

#[test]
fn a_panicking_observer_cannot_leak_a_probe_permit() {
    // panics on the probe's own outcome event
    let (b, clock) = build(panicky_observer(
        CircuitBreaker::consecutive_failures(1).open_for(SEC),
        |e| matches!(e, CircuitEvent::Success { .. }),
    ));
    fail(&b);
    clock.advance(SEC);
    let probe = admit(&b).unwrap();
    assert!(
        catch(|| probe.record(Outcome::Success, MS)).is_ok(),
        "observer panics are contained"
    );
    assert_eq!(b.state(), CircuitState::Closed, "counted before the events");

    // panics on the transition that makes the caller the first probe
    let (b, clock) = build(panicky_observer(
        CircuitBreaker::consecutive_failures(1).open_for(SEC),
        |e| {
            matches!(
                e,
                CircuitEvent::StateTransition {
                    to: CircuitState::HalfOpen,
                    ..
                }
            )
        },
    ));
    fail(&b);
    clock.advance(SEC);
    assert!(
        catch(|| admit(&b).map(drop)).is_ok(),
        "observer panics are contained"
    );
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(b.snapshot().probes_in_flight, 0, "the permit came back");
    admit(&b).expect("probe").record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);

    // panics on a failed probe's failure event
    let (b, clock) = build(panicky_observer(
        CircuitBreaker::consecutive_failures(1).open_for(SEC),
        |e| matches!(e, CircuitEvent::Failure { .. }),
    ));
    assert!(catch(|| fail(&b)).is_ok(), "observer panics are contained");
    assert_eq!(b.state(), CircuitState::Open, "tripped before the events");
    clock.advance(SEC);
    let probe = admit(&b).unwrap();
    assert!(
        catch(|| probe.record(Outcome::Failure, MS)).is_ok(),
        "observer panics are contained"
    );
    assert_eq!(b.state(), CircuitState::Open, "reopened");
    assert_eq!(retry_after(&b), Some(SEC));
}

#[test]
fn a_panicking_break_generator_cannot_leak_a_probe_permit() {
    let (b, clock) = build(
        CircuitBreaker::consecutive_failures(1)
            .break_duration_with(|failed| if failed == 0 { SEC } else { panic!("bug") }),
    );
    fail(&b);
    clock.advance(SEC);
    let probe = admit(&b).unwrap();
    assert!(catch(|| probe.record(Outcome::Failure, MS)).is_err());
    assert_eq!(b.state(), CircuitState::HalfOpen, "no half-made transition");
    assert_eq!(b.snapshot().probes_in_flight, 0, "the permit came back");
    admit(&b).expect("probe").record(Outcome::Success, MS);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn ready_once_the_break_elapsed_even_before_a_call_probes() {
    let (b, clock) = build(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    clock.set(Duration::from_secs(100_000));
    fail(&b);
    assert!(!b.is_ready());
    clock.advance(SEC - MS);
    assert!(!b.is_ready());
    clock.advance(MS);
    assert_eq!(b.state(), CircuitState::Open, "no call has probed yet");
    assert!(b.is_ready(), "a call would be admitted as a probe");
    b.isolate();
    assert!(!b.is_ready());
}

fn exceeded(log: &Log) -> Vec<TransitionReason> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitEvent::ThresholdExceeded { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn metrics_only_signals_when_it_would_have_opened() {
    let (b, _clock, log) = logged(CircuitBreaker::consecutive_failures(2));
    b.metrics_only();
    fail(&b);
    assert!(exceeded(&log).is_empty());
    fail(&b);
    assert_eq!(exceeded(&log), [TransitionReason::ConsecutiveFailures]);
    fail(&b);
    assert_eq!(exceeded(&log).len(), 1, "once per crossing");
    ok(&b);
    fail(&b);
    fail(&b);
    assert_eq!(exceeded(&log).len(), 2, "crossed again");
    assert_eq!(b.state(), CircuitState::MetricsOnly, "never opens");

    let (b, _clock, log) = logged(
        CircuitBreaker::failure_rate(0.5)
            .slow_calls(SEC, 0.5)
            .window(Window::count(4))
            .minimum_calls(4),
    );
    b.metrics_only();
    for _ in 0..3 {
        ok(&b);
    }
    call(&b, Outcome::Success, 2 * SEC);
    assert!(exceeded(&log).is_empty(), "1 of 4 slow");
    call(&b, Outcome::Failure, 2 * SEC);
    assert_eq!(exceeded(&log), [TransitionReason::SlowCallRate]);
    fail(&b);
    assert_eq!(exceeded(&log).len(), 1);
    // the events come after the call's own events
    let events = log.lock().unwrap().clone();
    let at = events
        .iter()
        .position(|e| matches!(e, CircuitEvent::ThresholdExceeded { .. }))
        .unwrap();
    assert!(matches!(events[at - 1], CircuitEvent::Failure { .. }));
    b.reset();
    b.metrics_only();
    for _ in 0..2 {
        fail(&b);
    }
    for _ in 0..2 {
        ok(&b);
    }
    assert_eq!(
        exceeded(&log)[1..],
        [TransitionReason::FailureRate],
        "a new metrics-only phase starts unarmed"
    );
}

#[test]
fn manual_control_while_probes_are_in_flight() {
    for force in [
        CircuitBreaker::isolate as fn(&CircuitBreaker),
        CircuitBreaker::disable,
        CircuitBreaker::reset,
        CircuitBreaker::metrics_only,
    ] {
        let (b, clock) = build(
            CircuitBreaker::consecutive_failures(1)
                .open_for(SEC)
                .half_open_probes(2),
        );
        fail(&b);
        clock.advance(SEC);
        let p1 = admit(&b).unwrap();
        let p2 = admit(&b).unwrap();
        force(&b);
        let state = b.state();
        assert_ne!(state, CircuitState::HalfOpen);
        assert_eq!(b.snapshot().probes_in_flight, 0);
        // the probes' results belong to the past phase
        p1.record(Outcome::Failure, MS);
        drop(p2);
        assert_eq!(b.state(), state, "{state}: stale probes change nothing");
        b.reset();
        ok(&b);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}

#[test]
fn manual_control_while_open() {
    let (b, clock, log) = logged(CircuitBreaker::consecutive_failures(1).open_for(10 * SEC));
    clock.set(Duration::from_secs(100_000));
    fail(&b);
    b.isolate();
    clock.advance(20 * SEC);
    assert_eq!(
        retry_after(&b),
        None,
        "isolated: the elapsed break does not matter"
    );
    assert!(!b.is_ready());
    b.reset();
    ok(&b);
    fail(&b);
    assert_eq!(
        retry_after(&b),
        Some(10 * SEC),
        "a fresh break after the reset"
    );
    b.disable();
    fail(&b);
    assert_eq!(b.state(), CircuitState::Disabled);
    b.reset();
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    b.metrics_only();
    fail(&b);
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    let to: Vec<_> = transitions(&log).iter().map(|t| (t.1, t.2)).collect();
    assert_eq!(
        to,
        [
            (CircuitState::Open, TransitionReason::ConsecutiveFailures),
            (CircuitState::Isolated, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
            (CircuitState::Open, TransitionReason::ConsecutiveFailures),
            (CircuitState::Disabled, TransitionReason::Manual),
            (CircuitState::Closed, TransitionReason::Manual),
            (CircuitState::Open, TransitionReason::ConsecutiveFailures),
            (CircuitState::MetricsOnly, TransitionReason::Manual),
        ]
    );
}

#[test]
fn slow_call_rate_on_a_time_window() {
    let (b, clock, log) = logged(
        CircuitBreaker::failure_rate(1.0)
            .slow_calls(SEC, 0.5)
            .window(Window::time_buckets(10 * SEC, 10))
            .minimum_calls(4),
    );
    clock.set(Duration::from_secs(100_000) + SEC / 2);
    call(&b, Outcome::Success, 2 * SEC);
    call(&b, Outcome::Failure, 2 * SEC); // failures alone do not trip this breaker
    clock.advance(5 * SEC);
    ok(&b);
    clock.advance(5 * SEC); // the two slow calls' bucket ages out
    ok(&b);
    call(&b, Outcome::Success, 2 * SEC);
    assert_eq!(b.state(), CircuitState::Closed, "1 slow of 3");
    call(&b, Outcome::Success, SEC); // at the slow-call duration: slow
    assert_eq!(b.state(), CircuitState::Open, "2 slow of 4");
    assert_eq!(transitions(&log)[0].2, TransitionReason::SlowCallRate);
}

#[test]
fn failed_probe_reports_probe_failed() {
    let (b, clock, log) = logged(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    fail(&b);
    clock.advance(SEC);
    admit(&b).unwrap().record(Outcome::Failure, MS);
    assert_eq!(
        transitions(&log),
        [
            (
                CircuitState::Closed,
                CircuitState::Open,
                TransitionReason::ConsecutiveFailures
            ),
            (
                CircuitState::Open,
                CircuitState::HalfOpen,
                TransitionReason::BreakElapsed
            ),
            (
                CircuitState::HalfOpen,
                CircuitState::Open,
                TransitionReason::ProbeFailed
            ),
        ]
    );
}

#[test]
fn call_blocking_with_classifies() {
    let (b, _clock) = build(CircuitBreaker::consecutive_failures(1));
    let only_5xx = |r: &Result<u16, ()>| match r {
        Ok(s) if *s >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(()) => Outcome::Ignored,
    };
    assert_eq!(
        b.call_blocking_classified(only_5xx, || Ok(404)).unwrap(),
        404
    );
    assert!(b.call_blocking_classified(only_5xx, || Err(())).is_err());
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        b.call_blocking_classified(only_5xx, || Ok(503)).unwrap(),
        503
    );
    assert_eq!(b.state(), CircuitState::Open, "a 503 counts as a failure");
    let panicking = |_: &Result<(), ()>| -> Outcome { panic!("classifier bug") };
    b.reset();
    assert!(catch(|| b.call_blocking_classified(panicking, || Ok(()))).is_err());
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_deadline_from_4096_transitions_ago_does_not_pass_for_the_current_one() {
    let (b, clock, store) = paused(CircuitBreaker::consecutive_failures(1).open_for(SEC));
    fail(&b); // open at epoch 1: its deadline is tagged 1
    b.reset(); // epoch 2
    for _ in 0..2047 {
        b.isolate();
        b.reset();
    }
    clock.advance(10 * SEC); // epoch 1's deadline is long past
    // The next trip opens epoch 4097, whose 12-bit tag is 1 again. Before the opener
    // writes its deadline, another caller looks.
    let other = b.clone();
    let seen = Arc::new(Mutex::new(None));
    let sink = seen.clone();
    store.on(CircuitState::Closed, CircuitState::Open, move || {
        *sink.lock().unwrap() = Some(admit(&other).map(drop));
    });
    fail(&b);
    assert_eq!(
        seen.lock().unwrap().take().unwrap().unwrap_err(),
        Rejection::CircuitOpen {
            retry_after: Some(SEC)
        },
        "a full break, not one that ended 4096 transitions ago"
    );
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(retry_after(&b), Some(SEC));
}
