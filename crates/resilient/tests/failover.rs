//! Multi-region failover and health gates: failover order, failover on an open breaker,
//! failback only after the hysteresis under a flapping outage, every failure kept when all
//! regions are down; a health gate's rejection and recovery, a panicking probe, and the
//! probe task stopping with the gate. Paused tokio time or a manual clock throughout.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::failover::{Failover, HealthGate, Region, SwitchReason};
use resilient::fallback::Fallback;
use resilient::{CircuitBreaker, Clock, Error, ManualClock, Pipeline, SharedClock};

type Switches = Arc<Mutex<Vec<(String, String, SwitchReason)>>>;

fn recorder() -> (
    Switches,
    impl Fn(&str, &str, SwitchReason) + Send + Sync + 'static,
) {
    let log: Switches = Arc::default();
    let l = log.clone();
    (log, move |from: &str, to: &str, why: SwitchReason| {
        l.lock().unwrap().push((from.into(), to.into(), why))
    })
}

fn sw(from: &str, to: &str, why: SwitchReason) -> (String, String, SwitchReason) {
    (from.into(), to.into(), why)
}

/// A call that fails in the regions named in `down` and records every region it reaches.
async fn call(
    f: &Failover<&'static str>,
    down: &[&'static str],
    seen: &Mutex<Vec<&'static str>>,
) -> Result<&'static str, Error<String>> {
    f.call(|name: &&'static str| {
        let name = *name;
        seen.lock().unwrap().push(name);
        let fails = down.contains(&name);
        async move {
            if fails {
                Err(format!("{name} is down"))
            } else {
                Ok(name)
            }
        }
    })
    .await
}

#[tokio::test]
async fn calls_fail_over_in_priority_order_and_stay_on_the_region_that_answered() {
    let (log, observer) = recorder();
    let f = Failover::builder()
        .region(Region::new("a", "a"))
        .region(Region::new("b", "b"))
        .region(Region::new("c", "c"))
        .on_switch(observer)
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "a");
    assert_eq!(call(&f, &["a", "b"], &seen).await.unwrap(), "c");
    assert_eq!(*seen.lock().unwrap(), ["a", "a", "b", "c"]);
    assert_eq!(f.active(), "c");
    assert_eq!(*log.lock().unwrap(), [sw("a", "c", SwitchReason::Failed)]);
    // the next call goes straight to the active region
    seen.lock().unwrap().clear();
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "c");
    assert_eq!(*seen.lock().unwrap(), ["c"]);
}

#[tokio::test]
async fn an_open_breaker_fails_calls_over_without_running_them_there() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let (log, observer) = recorder();
    let f = Failover::builder()
        .region(
            Region::new("primary", "primary").breaker(
                CircuitBreaker::consecutive_failures(1)
                    .open_for(Duration::from_secs(30))
                    .clock(shared.clone()),
            ),
        )
        .region(Region::new("secondary", "secondary"))
        .failback_after(Duration::from_secs(60))
        .clock(shared)
        .on_switch(observer)
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    // the primary fails once: its breaker opens, the call is answered by the secondary
    assert_eq!(call(&f, &["primary"], &seen).await.unwrap(), "secondary");
    assert!(!f.breaker("primary").unwrap().is_ready());
    // while the breaker is open the primary is not tried, even though it works again
    for _ in 0..29 {
        clock.advance(Duration::from_secs(1));
        assert_eq!(call(&f, &[], &seen).await.unwrap(), "secondary");
    }
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|n| **n == "primary")
            .count(),
        1
    );
    // once its break is over it must still look healthy for the failback period
    clock.advance(Duration::from_secs(1)); // 30 s: ready again
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "secondary");
    clock.advance(Duration::from_secs(59));
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "secondary");
    clock.advance(Duration::from_secs(1)); // healthy for 60 s
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "primary");
    assert_eq!(
        *log.lock().unwrap(),
        [
            sw("primary", "secondary", SwitchReason::Failed),
            sw("secondary", "primary", SwitchReason::Failback),
        ]
    );
    // an isolated breaker rejects: that switch is reported as a rejection
    f.breaker("primary").unwrap().isolate();
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "secondary");
    assert_eq!(
        log.lock().unwrap().last().unwrap(),
        &sw("primary", "secondary", SwitchReason::Rejected)
    );
}

/// Whether the primary is up at `t` seconds: down at 10 s, flapping until 45 s, then up.
fn primary_up(t: u64) -> bool {
    !matches!(t, 10..20 | 25..30 | 40..45)
}

#[tokio::test(start_paused = true)]
async fn a_flapping_outage_does_not_make_traffic_flap() {
    let start = tokio::time::Instant::now();
    let up = Arc::new(AtomicBool::new(true));
    let probe_up = up.clone();
    let gate = HealthGate::builder(Duration::from_secs(1), move || {
        let up = probe_up.load(Ordering::SeqCst);
        async move { up }
    })
    .unhealthy_after(1)
    .healthy_after(1)
    .build()
    .unwrap();
    let (log, observer) = recorder();
    let f = Failover::builder()
        .region(Region::new("primary", "primary").health(gate))
        .region(Region::new("secondary", "secondary"))
        .failback_after(Duration::from_secs(30))
        .on_switch(observer)
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    let mut served = Vec::new();
    let mut failback_at = None;
    for t in 0..120u64 {
        // probes run at whole seconds, the outage script moves a quarter second later and
        // calls come at the half second
        tokio::time::sleep_until(start + Duration::from_millis(t * 1000 + 250)).await;
        up.store(primary_up(t), Ordering::SeqCst);
        tokio::time::sleep_until(start + Duration::from_millis(t * 1000 + 500)).await;
        let down: &[&str] = if primary_up(t) { &[] } else { &["primary"] };
        let who = call(&f, down, &seen).await.unwrap();
        if who == "primary" && served.last() == Some(&"secondary") {
            failback_at.get_or_insert(t);
        }
        served.push(who);
    }
    // one switch away and one back: none while the outage flapped
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!((&*log[0].0, &*log[0].1), ("primary", "secondary"));
    assert_eq!(log[1], sw("secondary", "primary", SwitchReason::Failback));
    assert!(served[..10].iter().all(|s| *s == "primary"));
    assert!(
        served[10..75].iter().all(|s| *s == "secondary"),
        "{served:?}"
    );
    // back 30 s after the primary was last seen healthy without a break (the
    // probe at 46 s, the call at 46.5 s)
    assert_eq!(failback_at, Some(76));
    assert!(served[76..].iter().all(|s| *s == "primary"));
}

#[tokio::test]
async fn every_region_down_keeps_each_failure_in_order() {
    let isolated = CircuitBreaker::builder().build().unwrap();
    isolated.isolate();
    let f = Failover::builder()
        .region(Region::new("a", "a").shared_breaker(isolated))
        .region(Region::new("b", "b"))
        .region(Region::new("c", "c"))
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    let err = call(&f, &["b", "c"], &seen).await.unwrap_err();
    let Error::Fallback { failures } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        failures,
        [
            Error::CircuitOpen { retry_after: None },
            Error::Inner("b is down".to_string()),
            Error::Inner("c is down".to_string()),
        ]
    );
    assert_eq!(*seen.lock().unwrap(), ["b", "c"], "a's breaker rejected");
    assert_eq!(f.active(), "a", "nobody answered: no switch");

    // one region per call: its failure comes back alone
    let one = Failover::builder()
        .region(Region::new("b", "b"))
        .region(Region::new("c", "c"))
        .max_regions_per_call(1)
        .build()
        .unwrap();
    let err = call(&one, &["b"], &seen).await.unwrap_err();
    assert_eq!(err, Error::Inner("b is down".to_string()));
}

#[tokio::test]
async fn the_injected_clock_is_the_one_read() {
    // a system-clock failover would fail back at once with a zero period; a manual clock
    // that does not move keeps a non-zero period from ever elapsing
    let clock = ManualClock::new();
    let f = Failover::builder()
        .region(Region::new("a", "a"))
        .region(Region::new("b", "b"))
        .failback_after(Duration::from_nanos(1))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    call(&f, &["a"], &seen).await.unwrap();
    for _ in 0..3 {
        assert_eq!(call(&f, &[], &seen).await.unwrap(), "b");
    }
    clock.advance(Duration::from_nanos(1));
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "a");
    assert_eq!(clock.now(), Duration::from_nanos(1));
}

/// A gate on a scripted probe: `up` decides each probe's answer; `probes` counts them.
fn scripted_gate(
    interval: Duration,
    up: &Arc<AtomicBool>,
    probes: &Arc<AtomicUsize>,
) -> resilient::failover::HealthGateBuilder {
    let (up, probes) = (up.clone(), probes.clone());
    HealthGate::builder(interval, move || {
        probes.fetch_add(1, Ordering::SeqCst);
        let healthy = up.load(Ordering::SeqCst);
        async move { healthy }
    })
}

#[tokio::test(start_paused = true)]
async fn a_health_gate_rejects_while_unhealthy_and_recovers_after_healthy_after_probes() {
    let start = tokio::time::Instant::now();
    let at = |secs: u64| tokio::time::sleep_until(start + Duration::from_secs(secs));
    let (up, probes) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let gate = scripted_gate(Duration::from_secs(10), &up, &probes)
        .unhealthy_after(2)
        .healthy_after(2)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder().guard(gate.clone()).build().unwrap();
    let fallback = Fallback::builder().or_value("fallback").build().unwrap();
    let run = || async {
        pipeline
            .execute_with_fallback(&fallback, || async { Ok::<_, String>("primary") })
            .await
            .unwrap()
    };
    let direct = || pipeline.execute(|| async { Ok::<_, String>(()) });

    at(15).await; // one failed probe: still healthy
    assert_eq!(probes.load(Ordering::SeqCst), 1);
    assert_eq!(run().await, "primary");
    at(25).await; // two: rejected fast, until the next probe
    assert!(!gate.is_healthy());
    assert_eq!(
        direct().await,
        Err(Error::Unhealthy {
            retry_after: Some(Duration::from_secs(5)),
        })
    );
    assert_eq!(run().await, "fallback");
    up.store(true, Ordering::SeqCst);
    at(35).await; // one good probe is not enough
    assert_eq!(run().await, "fallback");
    at(45).await;
    assert!(gate.is_healthy());
    assert_eq!(run().await, "primary");
    assert_eq!(probes.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_counts_as_unhealthy_and_does_not_kill_the_task() {
    let start = tokio::time::Instant::now();
    let probes = Arc::new(AtomicUsize::new(0));
    let p = probes.clone();
    let gate = HealthGate::builder(Duration::from_secs(1), move || {
        let n = p.fetch_add(1, Ordering::SeqCst);
        // the first probe panics while building its future, the next two while running
        assert!(n != 0, "probe {n} panics");
        async move {
            assert!(n >= 3, "probe {n} panics");
            true
        }
    })
    .unhealthy_after(3)
    .healthy_after(1)
    .build()
    .unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(3500)).await;
    assert!(!gate.is_healthy(), "three panics are three failed probes");
    tokio::time::sleep_until(start + Duration::from_millis(4500)).await;
    assert!(gate.is_healthy(), "the task survived and probed again");
    assert_eq!(probes.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_gate_stops_its_task() {
    let (up, probes) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let gate = scripted_gate(Duration::from_secs(1), &up, &probes)
        .build()
        .unwrap();
    let clone = gate.clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 2);
    drop(gate);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 3, "a clone keeps it running");
    drop(clone);
    tokio::task::yield_now().await;
    // the task ended and dropped its probe (and with it the probe's handles)
    assert_eq!(Arc::strong_count(&probes), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(probes.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn latency_aware_choice_follows_the_moving_average_within_a_tier() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let (log, observer) = recorder();
    let f = Failover::builder()
        .region(Region::new("a", "a").priority(0))
        .region(Region::new("b", "b").priority(0))
        .region(Region::new("backup", "backup").priority(1))
        .latency_aware(0.5)
        .clock(shared)
        .on_switch(observer)
        .build()
        .unwrap();
    let latency = Mutex::new([("a", 50u64), ("b", 10), ("backup", 1)]);
    let mut served = Vec::new();
    for round in 0..6 {
        if round == 3 {
            latency.lock().unwrap()[1].1 = 100; // b slows down
        }
        let who = f
            .call(|name: &&'static str| {
                let name = *name;
                let ms = latency
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l.0 == name)
                    .unwrap()
                    .1;
                clock.advance(Duration::from_millis(ms));
                async move { Ok::<_, ()>(name) }
            })
            .await
            .unwrap();
        served.push(who);
    }
    // a and b are each measured once, then b (10 ms) wins until one 100 ms call lifts its
    // average to 55 ms, past a's 50 ms; the lower tier is never used
    assert_eq!(served, ["a", "b", "b", "b", "a", "a"]);
    assert_eq!(f.active(), "a");
    assert!(log.lock().unwrap().is_empty(), "no failover to report");
}

#[tokio::test]
async fn a_dropped_call_gives_back_the_probe_permit_of_the_region_it_was_in() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let f = Failover::builder()
        .region(
            Region::new("primary", "primary").breaker(
                CircuitBreaker::consecutive_failures(1)
                    .open_for(Duration::from_secs(10))
                    .half_open_probes(1)
                    .clock(shared.clone()),
            ),
        )
        .region(Region::new("secondary", "secondary"))
        .failback_after(Duration::ZERO)
        .clock(shared)
        .build()
        .unwrap();
    let seen = Mutex::new(Vec::new());
    call(&f, &["primary"], &seen).await.unwrap();
    clock.advance(Duration::from_secs(10));
    // a thousand calls fail back to the primary, take its one probe permit and hang there
    let hung_in = AtomicUsize::new(0);
    for _ in 0..1000 {
        let hung = f.call(|name: &&str| {
            assert_eq!(*name, "primary");
            hung_in.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), String>>()
        });
        let mut hung = Box::pin(hung);
        assert!(futures_poll_once(hung.as_mut()).await.is_none());
        drop(hung);
    }
    assert_eq!(hung_in.load(Ordering::SeqCst), 1000);
    // the permit came back each time: the next call probes the primary and closes it
    assert_eq!(call(&f, &[], &seen).await.unwrap(), "primary");
    assert_eq!(
        f.breaker("primary").unwrap().state(),
        resilient::CircuitState::Closed
    );
}

/// Polls `fut` once: its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
