//! The breaker in pipelines, as a tower layer, standalone, and with health checks, on
//! tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use resilient::circuit::{HealthCheck, HealthState, TransitionReason, Window};
use resilient::{
    CircuitBreaker, CircuitEvent, CircuitState, Error, Outcome, Pipeline, Retry, Timeout,
};
#[cfg(feature = "tower")]
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn before_retry_one_logical_call_counts_once() {
    let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    let pipeline = Pipeline::builder()
        .circuit_breaker(&breaker)
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let r: Result<(), Error<&str>> = pipeline.execute(|| async { Err("down") }).await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(breaker.snapshot().consecutive_failures, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn after_retry_every_attempt_counts_and_rejection_surfaces() {
    let breaker = CircuitBreaker::consecutive_failures(3)
        .open_for(10 * SEC)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .circuit_breaker(&breaker)
        .build()
        .unwrap();
    let r: Result<(), Error<&str>> = pipeline.execute(|| async { Err("down") }).await;
    assert!(r.is_err());
    assert_eq!(breaker.state(), CircuitState::Open);
    let r: Result<(), Error<&str>> = pipeline.execute(|| async { Ok(()) }).await;
    match r {
        Err(Error::CircuitOpen {
            retry_after: Some(d),
        }) => assert!(
            d <= 10 * SEC && d > 10 * SEC - Duration::from_micros(1),
            "{d:?}"
        ),
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn pipeline_classification_decides_what_counts() {
    let breaker = CircuitBreaker::consecutive_failures(2).build().unwrap();
    let pipeline = Pipeline::builder()
        .circuit_breaker(&breaker)
        .classify(|r: &Result<(), u16>| match r {
            Ok(()) => Outcome::Success,
            Err(404) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = pipeline.execute(|| async { Err(404) }).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    let _ = pipeline.execute(|| async { Err(503) }).await;
    let _ = pipeline.execute(|| async { Err(503) }).await;
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn operation_timeouts_count_as_failures_per_attempt() {
    let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(1))
        .circuit_breaker(&breaker)
        .timeout(Timeout::operation(SEC))
        .build()
        .unwrap();
    let r: Result<(), Error<()>> = pipeline
        .execute(|| async {
            tokio::time::sleep(5 * SEC).await;
            Ok(())
        })
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn tower_layer_opens_and_fails_fast() {
    let breaker = CircuitBreaker::consecutive_failures(2).build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .service(service_fn(move |_: ()| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(std::io::Error::other("down")) }
        }));
    for _ in 0..2 {
        let r = svc.ready().await.unwrap().call(()).await;
        assert!(matches!(r, Err(Error::Inner(_))));
    }
    let r = svc.ready().await.unwrap().call(()).await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the open breaker shielded the service"
    );
}

#[tokio::test(start_paused = true)]
async fn standalone_call_measures_slow_calls_on_the_runtime_clock() {
    let breaker = CircuitBreaker::failure_rate(1.0)
        .slow_calls(SEC, 0.5)
        .window(Window::count(4))
        .minimum_calls(2)
        .build()
        .unwrap();
    let slow = || async {
        tokio::time::sleep(2 * SEC).await;
        Ok::<_, ()>(())
    };
    breaker.call(slow).await.unwrap();
    assert_eq!(breaker.snapshot().slow_calls, 1);
    breaker.call(slow).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn cancelled_standalone_probe_releases_its_permit() {
    let breaker = CircuitBreaker::consecutive_failures(1)
        .open_for(SEC)
        // longer than the probe hangs (the default, one break, is not)
        .max_half_open_wait(10 * SEC)
        .build()
        .unwrap();
    let _ = breaker.call(|| async { Err::<(), _>(()) }).await;
    tokio::time::sleep(SEC).await;
    let pending = breaker.call(std::future::pending::<Result<(), ()>>);
    let timed_out = tokio::time::timeout(SEC, pending).await;
    assert!(
        timed_out.is_err(),
        "the probe never finished and was dropped"
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// A probe whose health is switched by the test.
fn switch() -> (Arc<AtomicBool>, Arc<AtomicU32>) {
    (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)))
}

#[tokio::test(start_paused = true)]
async fn health_check_opens_early_and_probes_early_on_recovery() {
    let (up, probes) = switch();
    let (u, p) = (up.clone(), probes.clone());
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let breaker = CircuitBreaker::failure_rate(0.5)
        .open_for(Duration::from_secs(3600))
        .observer(move |_: &str, e: &CircuitEvent| sink.lock().unwrap().push(e.clone()))
        .health_check(
            HealthCheck::new(SEC, move || {
                p.fetch_add(1, Ordering::SeqCst);
                let healthy = u.load(Ordering::SeqCst);
                async move { healthy }
            })
            .unhealthy_after(2)
            .healthy_after(2),
        )
        .build()
        .unwrap();
    assert_eq!(breaker.health(), Some(HealthState::Healthy));
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(SEC + SEC / 2).await;
    assert_eq!(breaker.health(), Some(HealthState::Degraded));
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "hysteresis: one failure"
    );
    tokio::time::sleep(SEC).await;
    assert_eq!(breaker.health(), Some(HealthState::Unhealthy));
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "opened with no failed call"
    );
    assert!(!breaker.is_ready());
    let r = breaker.call(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(r, Err(Error::CircuitOpen { .. })));

    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(SEC).await;
    assert_eq!(breaker.health(), Some(HealthState::Degraded));
    tokio::time::sleep(SEC).await;
    assert_eq!(breaker.health(), Some(HealthState::Healthy));
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "still open until a call probes"
    );
    breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "early probe closed it"
    );
    assert!(breaker.is_ready());
    assert_eq!(probes.load(Ordering::SeqCst), 4);
    let reasons: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitEvent::StateTransition { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            TransitionReason::Unhealthy,
            TransitionReason::BreakElapsed,
            TransitionReason::ProbesSucceeded
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn health_probe_timeout_counts_as_unhealthy() {
    let breaker = CircuitBreaker::failure_rate(0.5)
        .health_check(
            HealthCheck::new(SEC, || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, ()>(())
            })
            .timeout(SEC / 10)
            .unhealthy_after(1),
        )
        .build()
        .unwrap();
    tokio::time::sleep(SEC + SEC / 5).await;
    assert_eq!(breaker.health(), Some(HealthState::Unhealthy));
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn health_task_stops_when_the_last_handle_drops() {
    let marker = Arc::new(());
    let held = marker.clone();
    let probes = Arc::new(AtomicU32::new(0));
    let count = probes.clone();
    let breaker = CircuitBreaker::failure_rate(0.5)
        .health_check(HealthCheck::new(SEC, move || {
            let _keep = &held;
            count.fetch_add(1, Ordering::SeqCst);
            async { true }
        }))
        .build()
        .unwrap();
    let clone = breaker.clone();
    tokio::time::sleep(3 * SEC + SEC / 2).await;
    assert_eq!(probes.load(Ordering::SeqCst), 3);
    drop(breaker);
    tokio::time::sleep(SEC).await;
    assert_eq!(probes.load(Ordering::SeqCst), 4, "a clone keeps it running");
    drop(clone);
    tokio::task::yield_now().await;
    tokio::time::sleep(5 * SEC).await;
    assert_eq!(
        probes.load(Ordering::SeqCst),
        4,
        "no probe after the last drop"
    );
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "the task and its probe are gone"
    );
}

#[test]
fn health_check_needs_a_runtime() {
    let err = CircuitBreaker::failure_rate(0.5)
        .health_check(HealthCheck::new(SEC, || async { true }))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.health_check");
}

#[tokio::test(start_paused = true)]
async fn health_check_config_is_validated() {
    let err = CircuitBreaker::failure_rate(0.5)
        .health_check(HealthCheck::new(Duration::ZERO, || async { true }))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.health_check.interval");
    let err = CircuitBreaker::failure_rate(0.5)
        .health_check(HealthCheck::new(SEC, || async { true }).healthy_after(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit.health_check.healthy_after");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_does_not_leak_the_probe_permit() {
    let breaker = CircuitBreaker::consecutive_failures(1)
        .open_for(SEC)
        .build()
        .unwrap();
    let _ = breaker.call(|| async { Err::<(), _>(()) }).await;
    tokio::time::sleep(SEC).await;
    let b = breaker.clone();
    let probe = tokio::spawn(async move {
        let panicking = |_: &Result<(), ()>| -> Outcome { panic!("classifier bug") };
        b.call_classified(panicking, || async { Ok(()) }).await
    });
    assert!(probe.await.unwrap_err().is_panic());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 0, "released on unwind");
    breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// A request timeout that fires while a per-call breaker's permit is held is recorded as a
/// failure of the call before the timeout is returned (an operation timeout inside the
/// breaker counts too: see `operation_timeouts_count_as_failures_per_attempt`).
#[tokio::test(start_paused = true)]
async fn request_timeout_counts_as_a_failure_of_the_call() {
    let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let pipeline = Pipeline::builder()
        .timeout(Timeout::request(SEC))
        .circuit_breaker(&breaker)
        .build()
        .unwrap();
    let r: Result<(), Error<()>> = pipeline
        .execute(|| async {
            tokio::time::sleep(5 * SEC).await;
            Ok(())
        })
        .await;
    assert!(r.unwrap_err().is_timeout());
    // a dependency that only hangs must still trip a per-call breaker
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.snapshot().consecutive_failures, 1);
}

fn reasons(events: &std::sync::Mutex<Vec<CircuitEvent>>) -> Vec<TransitionReason> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CircuitEvent::StateTransition { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// A breaker with a switchable health probe (checked every second, one result flips the
/// verdict) and an event log.
fn health_switched(
    builder: resilient::circuit::CircuitBreakerBuilder,
    hold: bool,
) -> (
    CircuitBreaker,
    Arc<AtomicBool>,
    Arc<std::sync::Mutex<Vec<CircuitEvent>>>,
) {
    let up = Arc::new(AtomicBool::new(true));
    let u = up.clone();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let breaker = builder
        .observer(move |_: &str, e: &CircuitEvent| sink.lock().unwrap().push(e.clone()))
        .health_check(
            HealthCheck::new(SEC, move || {
                let healthy = u.load(Ordering::SeqCst);
                async move { healthy }
            })
            .unhealthy_after(1)
            .healthy_after(1)
            .hold_open_while_unhealthy(hold),
        )
        .build()
        .unwrap();
    (breaker, up, events)
}

#[tokio::test(start_paused = true)]
async fn by_default_real_calls_probe_after_the_break_even_while_unhealthy() {
    let (breaker, up, events) =
        health_switched(CircuitBreaker::failure_rate(0.5).open_for(2 * SEC), false);
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(SEC + SEC / 2).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::sleep(2 * SEC).await;
    assert_eq!(breaker.health(), Some(HealthState::Unhealthy));
    breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "the real call is the ground truth"
    );
    assert_eq!(
        reasons(&events),
        [
            TransitionReason::Unhealthy,
            TransitionReason::BreakElapsed,
            TransitionReason::ProbesSucceeded
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn hold_open_while_unhealthy_keeps_the_break_until_the_verdict_recovers() {
    let (breaker, up, _events) =
        health_switched(CircuitBreaker::failure_rate(0.5).open_for(2 * SEC), true);
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(SEC + SEC / 2).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::sleep(10 * SEC).await;
    let r = breaker.call(|| async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(r, Err(Error::CircuitOpen { retry_after: None })),
        "held open past its break: {r:?}"
    );
    assert!(!breaker.is_ready());
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(SEC).await;
    assert_eq!(breaker.health(), Some(HealthState::Healthy));
    assert!(breaker.is_ready());
    breaker.call(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_moves_half_open_back_to_open() {
    let (breaker, up, events) = health_switched(
        CircuitBreaker::consecutive_failures(1).open_for(SEC / 4),
        false,
    );
    let _ = breaker.call(|| async { Err::<(), _>(()) }).await;
    tokio::time::sleep(SEC / 2).await;
    // a probe is in flight when the health check turns unhealthy
    let b = breaker.clone();
    let probe = tokio::spawn(async move {
        b.call(|| async {
            tokio::time::sleep(10 * SEC).await;
            Ok::<_, ()>(())
        })
        .await
    });
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(SEC).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        reasons(&events),
        [
            TransitionReason::ConsecutiveFailures,
            TransitionReason::BreakElapsed,
            TransitionReason::Unhealthy
        ]
    );
    probe.await.unwrap().unwrap();
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "the probe's late success is stale"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_health_probe_counts_as_unhealthy_and_checks_go_on() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let breaker = CircuitBreaker::failure_rate(0.5)
        .health_check(
            HealthCheck::new(SEC, move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    panic!("probe bug (building the future)");
                }
                async move {
                    if n == 1 {
                        panic!("probe bug (inside the future)");
                    }
                    true
                }
            })
            .unhealthy_after(2)
            .healthy_after(1)
            .open_when_unhealthy(false),
        )
        .build()
        .unwrap();
    tokio::time::sleep(2 * SEC + SEC / 2).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        breaker.health(),
        Some(HealthState::Unhealthy),
        "two failures"
    );
    tokio::time::sleep(SEC).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the task survived");
    assert_eq!(breaker.health(), Some(HealthState::Healthy));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_observer_does_not_stop_the_health_checks() {
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let breaker = CircuitBreaker::failure_rate(0.5)
        .observer(|_: &str, e: &CircuitEvent| {
            if matches!(e, CircuitEvent::HealthChanged { .. }) {
                panic!("observer bug")
            }
        })
        .health_check(
            HealthCheck::new(SEC, move || {
                let healthy = u.load(Ordering::SeqCst);
                async move { healthy }
            })
            .unhealthy_after(1)
            .healthy_after(1),
        )
        .build()
        .unwrap();
    tokio::time::sleep(SEC + SEC / 2).await;
    assert_eq!(breaker.health(), Some(HealthState::Unhealthy));
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "opened before the events"
    );
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(SEC).await;
    assert_eq!(
        breaker.health(),
        Some(HealthState::Healthy),
        "still checking"
    );
}

#[test]
fn the_verdict_is_withdrawn_when_the_health_task_dies_with_its_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let breaker = rt.block_on(async {
        let b = CircuitBreaker::failure_rate(0.5)
            .health_check(
                HealthCheck::new(SEC, || async { false })
                    .unhealthy_after(1)
                    .open_when_unhealthy(false),
            )
            .build()
            .unwrap();
        tokio::time::sleep(SEC + SEC / 2).await;
        b
    });
    assert_eq!(breaker.health(), Some(HealthState::Unhealthy));
    assert!(!breaker.is_ready());
    drop(rt);
    assert_eq!(breaker.health(), None, "no frozen verdict");
    assert!(breaker.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_slow_half_open_probe_reopens_the_breaker() {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let breaker = CircuitBreaker::consecutive_failures(1)
        .slow_calls(SEC, 0.5)
        .open_for(SEC)
        // longer than the slow probe takes (the default, one break, is not)
        .max_half_open_wait(10 * SEC)
        .observer(move |_: &str, e: &CircuitEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let _ = breaker.call(|| async { Err::<(), _>(()) }).await;
    tokio::time::sleep(SEC).await;
    let r = breaker
        .call(|| async {
            tokio::time::sleep(2 * SEC).await;
            Ok::<_, ()>(7)
        })
        .await;
    assert_eq!(r.unwrap(), 7, "the caller still gets its result");
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        events.lock().unwrap().iter().rev().find_map(|e| match e {
            CircuitEvent::StateTransition { from, to, reason } => Some((*from, *to, *reason)),
            _ => None,
        }),
        Some((
            CircuitState::HalfOpen,
            CircuitState::Open,
            TransitionReason::ProbeFailed
        ))
    );
    assert!(events.lock().unwrap().contains(&CircuitEvent::SlowCall {
        duration: 2 * SEC,
        failed: false
    }));
}
