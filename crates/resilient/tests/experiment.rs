//! A/B tests of strategies: a better B is found with its confidence, equal variants are not
//! told apart (beyond the test's false-positive rate), keyed routing is stable, and shadow
//! mode changes no outcome. Paused time and seeded randomness throughout.

use std::sync::Arc;
use std::time::Duration;

use resilient::circuit::CircuitBreaker;
use resilient::experiment::{Experiment, Metric, Variant, Verdict};
use resilient::{Pipeline, RandomSource, Retry, SeededRandom, Timeout};

/// A dependency whose attempts fail with probability `fail`, each taking `fast`, or `slow`
/// with probability `slow_rate`.
#[derive(Clone)]
struct Dependency {
    rng: Arc<SeededRandom>,
    fail: f64,
    slow_rate: f64,
    fast: Duration,
    slow: Duration,
}

impl Dependency {
    fn new(seed: u64, fail: f64) -> Self {
        Self {
            rng: Arc::new(SeededRandom::new(seed)),
            fail,
            slow_rate: 0.0,
            fast: Duration::from_millis(10),
            slow: Duration::from_millis(10),
        }
    }

    fn call(&self) -> impl std::future::Future<Output = Result<u32, &'static str>> + use<> {
        let fail = self.rng.next_f64() < self.fail;
        let slow = self.rng.next_f64() < self.slow_rate;
        let wait = if slow { self.slow } else { self.fast };
        async move {
            tokio::time::sleep(wait).await;
            if fail { Err("unavailable") } else { Ok(1) }
        }
    }
}

async fn run<CA, CB>(exp: &Experiment<CA, CB>, dep: &Dependency, calls: usize)
where
    CA: resilient::Classify<u32, &'static str>,
    CB: resilient::Classify<u32, &'static str>,
{
    for _ in 0..calls {
        let _ = exp.execute(|| dep.call()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_better_b_is_reported_with_its_confidence() {
    let a = Pipeline::builder().build().unwrap();
    let b = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let exp = Experiment::builder(a, b).seed(11).build().unwrap();
    let dep = Dependency::new(5, 0.3);

    run(&exp, &dep, 50).await;
    assert!(
        matches!(exp.report().verdict, Verdict::NotEnoughData { .. }),
        "no verdict before the minimum number of calls"
    );

    run(&exp, &dep, 3_950).await;
    let r = exp.report();
    assert_eq!(r.a.calls + r.b.calls, 4_000);
    assert!((1_800..2_200).contains(&r.b.calls), "{}", r.b.calls);
    assert!(
        (r.a.success_rate - 0.7).abs() < 0.04,
        "{}",
        r.a.success_rate
    );
    assert!(
        (r.b.success_rate - 0.973).abs() < 0.02,
        "{}",
        r.b.success_rate
    );
    assert!(r.b.attempts_per_call > 1.3 && r.a.attempts_per_call == 1.0);
    assert_eq!(r.b.cost, r.b.attempts, "one unit per attempt by default");
    match r.verdict {
        Verdict::Better {
            variant: Variant::B,
            confidence,
            by: Metric::SuccessRate,
        } => assert!(confidence > 0.999, "{confidence}"),
        v => panic!("B should win on success rate: {v:?}"),
    }
    assert!(r.success_rate.significant && r.success_rate.p_value < 1e-6);
    assert!(r.success_rate.calls_needed.unwrap() < 100);
}

#[tokio::test(start_paused = true)]
async fn equal_variants_are_not_told_apart_beyond_the_false_positive_rate() {
    let mut told_apart = 0;
    const RUNS: u64 = 40;
    for seed in 0..RUNS {
        let p = || {
            Pipeline::builder()
                .retry(Retry::immediate().attempts(2))
                .build()
                .unwrap()
        };
        let exp = Experiment::builder(p(), p()).seed(seed).build().unwrap();
        let mut dep = Dependency::new(1_000 + seed, 0.2);
        dep.slow_rate = 0.1;
        dep.slow = Duration::from_millis(200);
        run(&exp, &dep, 1_000).await;
        match exp.report().verdict {
            Verdict::NoDifference => {}
            Verdict::Better { .. } => told_apart += 1,
            v => panic!("seed {seed}: {v:?}"),
        }
    }
    // the verdict's level is 5%: about 2 of 40 runs by chance; 6 or more would happen
    // with probability below 2% if the test kept its level
    assert!(
        told_apart <= 5,
        "{told_apart} of {RUNS} equal runs told apart"
    );
}

#[tokio::test(start_paused = true)]
async fn lower_latency_wins_when_success_rates_are_equal() {
    // A waits out slow attempts; B cuts them at 50 ms and tries again
    let a = Pipeline::builder().build().unwrap();
    let b = Pipeline::builder()
        .retry(Retry::immediate().attempts(4))
        .timeout(Timeout::operation(Duration::from_millis(50)))
        .build()
        .unwrap();
    let exp = Experiment::builder(a, b).seed(3).build().unwrap();
    let mut dep = Dependency::new(9, 0.0);
    dep.slow_rate = 0.2;
    dep.slow = Duration::from_secs(1);
    run(&exp, &dep, 1_000).await;
    let r = exp.report();
    assert_eq!(r.a.success_rate, 1.0);
    assert!(r.b.success_rate > 0.99);
    assert!(r.b.mean_latency < r.a.mean_latency / 3, "{r:?}");
    assert!(r.a.p99 >= Duration::from_millis(900), "{:?}", r.a.p99);
    assert!(r.b.p50 <= Duration::from_millis(12), "{:?}", r.b.p50);
    match r.verdict {
        Verdict::Better {
            variant: Variant::B,
            by,
            confidence,
        } => {
            assert!(confidence > 0.99);
            // B's rare failures (four slow attempts in a row) do not make it worse
            assert!(matches!(by, Metric::Latency | Metric::SuccessRate));
        }
        v => panic!("{v:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn keyed_routing_is_stable_and_follows_the_share() {
    let p = || Pipeline::builder().build().unwrap();
    let exp = Experiment::builder(p(), p())
        .b_share(0.25)
        .salt(7)
        .build()
        .unwrap();
    let same = Experiment::builder(p(), p())
        .b_share(0.25)
        .salt(7)
        .build()
        .unwrap();
    let other_salt = Experiment::builder(p(), p())
        .b_share(0.25)
        .salt(8)
        .build()
        .unwrap();
    let mut to_b = 0;
    let mut moved = 0;
    for user in 0..20_000u32 {
        let v = exp.variant_for(&user);
        assert_eq!(v, same.variant_for(&user), "same salt, same variant");
        if v == Variant::B {
            to_b += 1;
        }
        if v != other_salt.variant_for(&user) {
            moved += 1;
        }
    }
    assert!((4_700..5_300).contains(&to_b), "{to_b}");
    assert!(moved > 4_000, "a new salt reshuffles: {moved}");

    for _ in 0..10 {
        exp.execute_keyed("tenant-a", || async { Ok::<_, ()>(()) })
            .await
            .unwrap();
    }
    let v = exp.variant_for("tenant-a");
    assert_eq!(exp.variant_report(v).calls, 10);

    let all_a = Experiment::builder(p(), p()).b_share(0.0).build().unwrap();
    let all_b = Experiment::builder(p(), p()).b_share(1.0).build().unwrap();
    for k in 0..1_000 {
        assert_eq!(all_a.variant_for(&k), Variant::A);
        assert_eq!(all_b.variant_for(&k), Variant::B);
    }
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_changes_no_outcome_and_says_what_b_would_have_done() {
    let script = |seed| Dependency::new(seed, 0.4);
    // the same calls without a shadow
    let plain = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let dep = script(21);
    let mut expected = Vec::new();
    for _ in 0..500 {
        expected.push(plain.execute(|| dep.call()).await.is_ok());
    }

    let live = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let breaker = CircuitBreaker::consecutive_failures(3)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    let candidate = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    let exp = Experiment::shadow(live, candidate).build().unwrap();
    let dep = script(21);
    let mut got = Vec::new();
    for _ in 0..500 {
        got.push(exp.execute(|| dep.call()).await.is_ok());
    }
    assert_eq!(got, expected, "the shadow changes no outcome");

    let r = exp.report();
    assert_eq!(r.a.calls, 500);
    assert_eq!(r.b.calls, 0, "nothing is routed to the shadow");
    let s = exp.shadow_report();
    assert_eq!(s.calls, 500);
    assert_eq!(s.attempts, r.a.attempts);
    // 40% failing attempts: runs of three failures happen, so the shadow breaker opens
    assert!(s.would_reject_circuit_open > 0, "{s:?}");
    // B allows a third attempt where A stops after two
    assert!(s.would_retry > 0 && s.would_not_retry == 0, "{s:?}");
}

#[test]
fn settings_are_validated() {
    let p = || Pipeline::builder().build().unwrap();
    for (b, field) in [
        (Experiment::builder(p(), p()).b_share(-0.1), "b_share"),
        (Experiment::builder(p(), p()).b_share(f64::NAN), "b_share"),
        (Experiment::builder(p(), p()).alpha(0.0), "alpha"),
        (Experiment::builder(p(), p()).alpha(0.6), "alpha"),
        (Experiment::builder(p(), p()).min_calls(1), "min_calls"),
    ] {
        assert_eq!(b.build().unwrap_err().field(), field);
    }
}
