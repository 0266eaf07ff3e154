//! Health-aware calls on tokio's paused clock: a background check rejects calls fast while
//! the dependency is unhealthy (with hysteresis both ways), a pipeline's fallback answers
//! them instead, events report every change, and a check whose task ends withdraws its
//! verdict and says so.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::circuit::HealthState;
use resilient::fallback::Fallback;
use resilient::health::{HealthAware, HealthEvent};
use resilient::{Error, Pipeline};
use tokio::time::{Instant, sleep_until};

const S: Duration = Duration::from_secs(1);

/// A check every 10 s whose probe answers `up`; events are logged.
fn check(up: &Arc<AtomicBool>, log: &Arc<Mutex<Vec<HealthEvent>>>) -> HealthAware {
    let (up, log) = (up.clone(), log.clone());
    HealthAware::builder(S * 10, move || {
        let up = up.load(Ordering::SeqCst);
        async move { up }
    })
    .unhealthy_after(2)
    .healthy_after(2)
    .on_event(move |name, e| {
        assert_eq!(name, "payments");
        log.lock().unwrap().push(*e);
    })
    .name("payments")
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn calls_are_rejected_fast_while_unhealthy_and_attempted_again_after_recovery() {
    let start = Instant::now();
    let at = |secs: u64| sleep_until(start + S * secs as u32);
    let up = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let health = check(&up, &log);
    let ran = Arc::new(AtomicU32::new(0));
    let call = || {
        let ran = ran.clone();
        health.call(move || async move {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
    };

    assert!(call().await.is_ok());
    at(15).await; // one failed probe: degraded, still attempted
    assert_eq!(health.state(), Some(HealthState::Degraded));
    assert!(call().await.is_ok());
    at(25).await; // two: unhealthy, rejected fast until the next probe
    assert_eq!(health.state(), Some(HealthState::Unhealthy));
    assert_eq!(
        call().await,
        Err(Error::Unhealthy {
            retry_after: Some(S * 5)
        })
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    up.store(true, Ordering::SeqCst);
    at(35).await; // one good probe is not enough (hysteresis)
    assert_eq!(health.state(), Some(HealthState::Degraded));
    assert!(matches!(call().await, Err(Error::Unhealthy { .. })));
    at(45).await; // two: healthy, attempted again
    assert_eq!(health.state(), Some(HealthState::Healthy));
    assert!(call().await.is_ok());
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    use HealthState::*;
    assert_eq!(
        *log.lock().unwrap(),
        [
            HealthEvent::Changed {
                from: Healthy,
                to: Degraded
            },
            HealthEvent::Changed {
                from: Degraded,
                to: Unhealthy
            },
            HealthEvent::Changed {
                from: Unhealthy,
                to: Degraded
            },
            HealthEvent::Changed {
                from: Degraded,
                to: Healthy
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn in_a_pipeline_the_fallback_answers_and_the_operation_never_runs() {
    let up = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let health = check(&up, &log);
    let p = Pipeline::builder()
        .health_aware(&health)
        .fallback(Fallback::builder().or_value("cached").build().unwrap())
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let call = || {
        let ran = ran.clone();
        p.execute(move || {
            ran.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ()>("live") }
        })
    };
    assert_eq!(call().await, Ok("live"));
    sleep_until(Instant::now() + S * 21).await;
    assert_eq!(call().await, Ok("cached"));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // without a fallback: the typed rejection
    let bare = Pipeline::builder().health_aware(&health).build().unwrap();
    let r: Result<(), Error<()>> = bare.execute(|| async { Ok(()) }).await;
    assert!(matches!(
        r,
        Err(Error::Unhealthy {
            retry_after: Some(_)
        })
    ));
    assert!(r.unwrap_err().is_transient());
}

#[tokio::test(start_paused = true)]
async fn reject_when_degraded_rejects_on_the_first_failed_probe() {
    let health = HealthAware::builder(S * 10, || async { false })
        .reject_when_degraded(true)
        .build()
        .unwrap();
    sleep_until(Instant::now() + S * 11).await;
    assert_eq!(health.state(), Some(HealthState::Degraded));
    assert!(!health.admits());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_counts_as_failed_and_the_checks_go_on() {
    let n = Arc::new(AtomicU32::new(0));
    let probes = n.clone();
    let health = HealthAware::builder(S, move || {
        let k = probes.fetch_add(1, Ordering::SeqCst);
        async move {
            if k < 2 {
                panic!("probe bug");
            }
            true
        }
    })
    .unhealthy_after(2)
    .healthy_after(1)
    .build()
    .unwrap();
    sleep_until(Instant::now() + S * 2 + S / 2).await;
    assert_eq!(health.state(), Some(HealthState::Unhealthy));
    sleep_until(Instant::now() + S).await;
    assert_eq!(health.state(), Some(HealthState::Healthy));
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[test]
fn a_check_whose_runtime_shut_down_withdraws_its_verdict_and_says_so() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let health = rt.block_on(async {
        let h = HealthAware::builder(S, || async { false })
            .unhealthy_after(1)
            .on_event(move |_, e| l.lock().unwrap().push(*e))
            .build()
            .unwrap();
        tokio::time::sleep(S + S / 2).await;
        h
    });
    assert!(!health.admits());
    drop(rt);
    assert_eq!(health.state(), None, "no frozen verdict");
    assert!(health.admits(), "real calls judge again");
    assert_eq!(
        log.lock().unwrap().last(),
        Some(&HealthEvent::Stopped),
        "the end of the task is reported"
    );
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn as_a_tower_layer_an_unhealthy_dependency_is_not_called() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let health = HealthAware::builder(S, || async { false })
        .unhealthy_after(1)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let mut svc = ServiceBuilder::new()
        .layer(Fallback::builder().or_value(0u32).build().unwrap().layer())
        .layer(health.layer())
        .service(service_fn(move |x: u32| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, ()>(x) }
        }));
    assert_eq!(svc.ready().await.unwrap().call(7).await, Ok(7));
    sleep_until(Instant::now() + S * 2).await;
    assert_eq!(svc.ready().await.unwrap().call(7).await, Ok(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
