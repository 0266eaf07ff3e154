//! Failover as a tower layer, and its events on the observer seam: switches with their
//! reason and regions' health changes, under a scripted outage on a manual clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::failover::{Failover, FailoverEvent, Region};
use resilient::{CircuitBreaker, ManualClock};

type Log = Arc<Mutex<Vec<String>>>;

fn observer(log: &Log) -> impl Fn(&str, &FailoverEvent<'_>) + Send + Sync + 'static {
    let log = log.clone();
    move |name: &str, e: &FailoverEvent<'_>| {
        let line = match e {
            FailoverEvent::Switched { from, to, reason } => {
                format!("{name}: {from} -> {to} ({reason:?})")
            }
            FailoverEvent::HealthChanged { region, healthy } => {
                format!("{name}: {region} healthy={healthy}")
            }
            other => format!("{other:?}"),
        };
        log.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn events_report_failover_health_changes_and_failback() {
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let eu_up = Arc::new(AtomicBool::new(false));
    let f = Failover::builder()
        .name("users")
        .clock(Arc::new(clock.clone()))
        .region(
            Region::new("eu", "eu").breaker(
                CircuitBreaker::consecutive_failures(1)
                    .open_for(Duration::from_secs(10))
                    .clock(Arc::new(clock.clone())),
            ),
        )
        .region(Region::new("us", "us"))
        .failback_after(Duration::from_secs(30))
        .observer(observer(&log))
        .observer(|_: &str, _: &FailoverEvent<'_>| panic!("a broken observer is contained"))
        .build()
        .unwrap();
    let call = || {
        let eu_up = eu_up.clone();
        f.call(move |region: &&str| {
            let ok = *region != "eu" || eu_up.load(Ordering::SeqCst);
            let region = *region;
            async move { if ok { Ok(region) } else { Err("down") } }
        })
    };
    // eu fails: the call fails over to us; eu's breaker opens
    assert_eq!(call().await, Ok("us"));
    // next call samples eu's open breaker
    assert_eq!(call().await, Ok("us"));
    eu_up.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10)); // the break is over: eu looks healthy
    assert_eq!(call().await, Ok("us"));
    clock.advance(Duration::from_secs(30)); // healthy for the failback period
    assert_eq!(call().await, Ok("eu"));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "users: eu -> us (Failed)",
            "users: eu healthy=false",
            "users: eu healthy=true",
            "users: us -> eu (Failback)",
        ]
    );
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn as_a_tower_layer_requests_are_routed_to_the_region_that_answers() {
    use resilient::Error;
    use resilient::failover::{Routed, SwitchReason};
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let log: Log = Arc::default();
    let f = Failover::builder()
        .region(Region::new("eu", "eu"))
        .region(Region::new("us", "us"))
        .observer(observer(&log))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut svc = ServiceBuilder::new().layer(f.layer()).service(service_fn(
        move |r: Routed<&'static str, u32>| {
            s.lock().unwrap().push((r.region, r.request));
            async move {
                if r.region == "eu" {
                    Err("eu down")
                } else {
                    Ok(r.request * 2)
                }
            }
        },
    ));
    assert_eq!(svc.ready().await.unwrap().call(21).await, Ok(42));
    assert_eq!(*seen.lock().unwrap(), [("eu", 21), ("us", 21)]);
    assert_eq!(f.active(), "us");
    assert_eq!(*log.lock().unwrap(), ["failover: eu -> us (Failed)"]);

    // every region down: each failure, in order
    let mut down = ServiceBuilder::new().layer(f.layer()).service(service_fn(
        |r: Routed<&'static str, u32>| async move { Err::<u32, _>(r.region) },
    ));
    let r = down.ready().await.unwrap().call(1).await;
    let Err(Error::Fallback { failures }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(failures, [Error::Inner("us"), Error::Inner("eu")]);
    let _ = SwitchReason::Rejected;
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn as_a_tower_layer_a_stuck_region_is_hedged() {
    use resilient::failover::Routed;
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let log: Log = Arc::default();
    let f = Failover::builder()
        .region(Region::new("eu", "eu"))
        .region(Region::new("us", "us"))
        .hedge_after(Duration::from_millis(50))
        .observer(observer(&log))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(f.layer()).service(service_fn(
        |r: Routed<&'static str, u32>| async move {
            let ms = if r.region == "eu" { 10_000 } else { 20 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, ()>((r.region, r.request))
        },
    ));
    let start = tokio::time::Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(7).await, Ok(("us", 7)));
    assert_eq!(start.elapsed(), Duration::from_millis(70));
    assert_eq!(f.active(), "us");
    assert_eq!(
        *log.lock().unwrap(),
        [
            r#"HedgeStarted { region: "us" }"#,
            "failover: eu -> us (Hedged)"
        ]
    );
}
