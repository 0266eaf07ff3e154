//! Chaos injection: injected rates within binomial bounds, reproducibility, run-time
//! switching, and the injections' effect on a pipeline (paused time, no real sleeps).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::chaos::Chaos;
use resilient::{Error, Pipeline, Retry};

#[derive(Debug, Clone, PartialEq)]
enum E {
    Injected,
    Real,
}

/// `count` successes out of `n` draws at `p` are within `z` standard deviations.
fn within_binomial(count: u64, n: u64, p: f64, z: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= z * sd.max(0.5)
}

#[tokio::test(start_paused = true)]
async fn injected_rates_match_settings_within_binomial_bounds() {
    const N: u64 = 10_000;
    for seed in 0..10u64 {
        let chaos = Chaos::builder()
            .seed(seed)
            .fault_rate(0.1)
            .outcome_rate(0.05)
            .latency(0.2, Duration::from_millis(3))
            .build()
            .unwrap();
        let ran = Arc::new(AtomicU32::new(0));
        let r = ran.clone();
        let mut op = chaos.inject_outcome(
            move || {
                r.fetch_add(1, Ordering::Relaxed);
                async { Ok::<u32, E>(1) }
            },
            || E::Injected,
            || Ok(0),
        );
        let (mut faults, mut outcomes, mut ok) = (0u64, 0u64, 0u64);
        let start = tokio::time::Instant::now();
        for _ in 0..N {
            match op().await {
                Err(E::Injected) => faults += 1,
                Ok(0) => outcomes += 1,
                Ok(1) => ok += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let s = chaos.stats();
        assert_eq!(s.calls, N);
        assert_eq!((s.faults, s.outcomes), (faults, outcomes));
        assert_eq!(
            ran.load(Ordering::Relaxed) as u64,
            ok,
            "injected attempts never run op"
        );
        // faults at 0.1; outcomes at 0.05 of the attempts not faulted: 0.045 overall
        assert!(
            within_binomial(faults, N, 0.1, 4.5),
            "seed {seed}: {faults} faults"
        );
        assert!(
            within_binomial(outcomes, N, 0.9 * 0.05, 4.5),
            "seed {seed}: {outcomes} outcomes"
        );
        assert!(
            within_binomial(s.delays, N, 0.2, 4.5),
            "seed {seed}: {} delays",
            s.delays
        );
        // every injected delay waited exactly its length on the paused clock
        assert_eq!(start.elapsed(), Duration::from_millis(3) * s.delays as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn guard_rejection_rate_matches_within_binomial_bounds() {
    const N: u64 = 10_000;
    for seed in 0..5u64 {
        let chaos = Chaos::builder()
            .seed(seed)
            .reject_rate(0.3)
            .build()
            .unwrap();
        let p = Pipeline::builder().guard(chaos.clone()).build().unwrap();
        let mut rejected = 0u64;
        for _ in 0..N {
            match p.execute(|| async { Ok::<(), E>(()) }).await {
                Ok(()) => {}
                Err(Error::Rejected { guard: "chaos", .. }) => rejected += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(chaos.stats().rejections, rejected);
        assert!(
            within_binomial(rejected, N, 0.3, 4.5),
            "seed {seed}: {rejected}"
        );
    }
}

#[test]
fn a_seed_reproduces_the_same_decisions() {
    let make = |seed| {
        Chaos::builder()
            .seed(seed)
            .fault_rate(0.3)
            .outcome_rate(0.3)
            .latency(0.3, Duration::from_millis(1))
            .build()
            .unwrap()
    };
    let (a, b, c) = (make(9), make(9), make(10));
    let xs: Vec<_> = (0..200).map(|_| a.decide()).collect();
    let ys: Vec<_> = (0..200).map(|_| b.decide()).collect();
    let zs: Vec<_> = (0..200).map(|_| c.decide()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
}

#[test]
fn rates_are_validated_at_build_and_at_run_time() {
    for (rate, ok) in [
        (0.0, true),
        (1.0, true),
        (0.5, true),
        (-0.1, false),
        (1.01, false),
        (f64::NAN, false),
        (f64::INFINITY, false),
    ] {
        assert_eq!(Chaos::builder().fault_rate(rate).build().is_ok(), ok);
        let err = Chaos::builder().outcome_rate(rate).build().err();
        assert_eq!(err.is_none(), ok);
        if let Some(e) = err {
            assert_eq!(e.field(), "outcome_rate");
        }
        assert_eq!(
            Chaos::builder()
                .latency(rate, Duration::MAX)
                .build()
                .is_ok(),
            ok
        );
        assert_eq!(Chaos::builder().reject_rate(rate).build().is_ok(), ok);
    }
    let chaos = Chaos::builder().fault_rate(0.2).build().unwrap();
    assert_eq!(chaos.set_fault_rate(2.0).unwrap_err().field(), "fault_rate");
    assert_eq!(
        chaos.fault_rate(),
        0.2,
        "a refused change keeps the old rate"
    );
    assert!(chaos.set_latency(f64::NAN, Duration::ZERO).is_err());
    assert!(chaos.set_reject_rate(-1.0).is_err());
    assert!(chaos.set_outcome_rate(1.5).is_err());
}

#[tokio::test(start_paused = true)]
async fn switching_at_run_time_is_seen_by_every_clone() {
    let chaos = Chaos::builder().seed(1).fault_rate(1.0).build().unwrap();
    let handle = chaos.clone();
    let mut op = chaos.inject(|| async { Ok::<u8, E>(5) }, || E::Injected);
    assert_eq!(op().await, Err(E::Injected));
    handle.set_enabled(false);
    for _ in 0..100 {
        assert_eq!(op().await, Ok(5));
    }
    assert_eq!(chaos.stats().calls, 1, "nothing is drawn while disabled");
    handle.set_enabled(true);
    handle.set_fault_rate(0.0).unwrap();
    assert_eq!(op().await, Ok(5));
    assert_eq!(chaos.stats().faults, 1);
}

#[tokio::test(start_paused = true)]
async fn injected_faults_go_through_retry_and_classification() {
    let chaos = Chaos::builder().seed(4).fault_rate(1.0).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::constant(Duration::from_millis(10)).attempts(3))
        .build()
        .unwrap();
    let op = chaos.inject(|| async { Ok::<u8, E>(1) }, || E::Injected);
    match p.execute(op).await {
        Err(Error::RetriesExhausted { attempts: 3, last }) => assert_eq!(last, E::Injected),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(chaos.stats().faults, 3, "one draw per attempt");

    // a real error passes through untouched when nothing is injected
    chaos.set_fault_rate(0.0).unwrap();
    let op = chaos.inject(|| async { Err::<u8, E>(E::Real) }, || E::Injected);
    let err = Pipeline::builder()
        .build()
        .unwrap()
        .execute(op)
        .await
        .unwrap_err();
    assert_eq!(err.inner(), Some(&E::Real));
}

#[tokio::test(start_paused = true)]
async fn injected_latency_trips_the_attempt_timeout() {
    let chaos = Chaos::builder()
        .latency(1.0, Duration::from_secs(5))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .timeout(resilient::Timeout::operation(Duration::from_secs(1)))
        .build()
        .unwrap();
    let op = chaos.inject(|| async { Ok::<u8, E>(1) }, || E::Injected);
    let start = tokio::time::Instant::now();
    let err = p.execute(op).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    // the guard's latency is waited before admission, on the same clock
    let chaos = Chaos::builder()
        .latency(1.0, Duration::from_millis(250))
        .build()
        .unwrap();
    let p = Pipeline::builder().guard(chaos).build().unwrap();
    let start = tokio::time::Instant::now();
    p.execute(|| async { Ok::<(), E>(()) }).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_delayed_attempt_leaves_nothing_behind() {
    let chaos = Chaos::builder()
        .latency(1.0, Duration::from_secs(60))
        .build()
        .unwrap();
    let bulkhead = resilient::Bulkhead::builder(1).build().unwrap();
    let p = Pipeline::builder()
        .guard(bulkhead.clone()) // the slot is taken first, then the chaos waits
        .guard(chaos.clone())
        .build()
        .unwrap();
    let fut = p.execute(|| async { Ok::<(), E>(()) });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), fut)
            .await
            .is_err()
    );
    chaos.set_enabled(false);
    p.execute(|| async { Ok::<(), E>(()) }).await.unwrap();
}
