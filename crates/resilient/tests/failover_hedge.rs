//! Hedged failover (`FailoverBuilder::hedge_after`): the next region starts when the
//! latest attempt has not answered within the delay, or at once when one fails; the first
//! acceptable answer wins and the other attempts are dropped in the same poll; failures
//! come back in the order the attempts ended; a dropped call gives back every permit.
//! Paused tokio time throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::failover::{
    Failover, FailoverBuilder, FailoverEvent, HealthGate, Region, SwitchReason,
};
use resilient::{CircuitBreaker, CircuitState, Error, Outcome};
use tokio::time::Instant;

const HEDGE: Duration = Duration::from_millis(50);

/// What a region does when called: answer `answer` after `ms` milliseconds.
#[derive(Clone, Copy)]
struct Plan {
    ms: u64,
    answer: Result<&'static str, u16>,
}

const fn ok(ms: u64, v: &'static str) -> Plan {
    Plan { ms, answer: Ok(v) }
}

const fn err(ms: u64, code: u16) -> Plan {
    Plan {
        ms,
        answer: Err(code),
    }
}

/// What the regions saw: when each was started (ms after `t0`) and which were dropped
/// before they answered.
struct Seen {
    t0: Instant,
    started: Mutex<Vec<(&'static str, u64)>>,
    dropped: Mutex<Vec<&'static str>>,
}

impl Seen {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            started: Mutex::default(),
            dropped: Mutex::default(),
        }
    }

    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn started(&self) -> Vec<(&'static str, u64)> {
        self.started.lock().unwrap().clone()
    }

    fn dropped(&self) -> Vec<&'static str> {
        self.dropped.lock().unwrap().clone()
    }
}

/// Records its region as dropped unless the attempt answered.
struct DropFlag<'a> {
    region: &'static str,
    seen: &'a Seen,
    answered: bool,
}

impl Drop for DropFlag<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.seen.dropped.lock().unwrap().push(self.region);
        }
    }
}

type Events = Arc<Mutex<Vec<String>>>;
type Switches = Arc<Mutex<Vec<(String, String, SwitchReason)>>>;

/// Regions named as given (the value is the name), hedged after `HEDGE`, with their
/// switches and events recorded.
fn builder(names: &[&'static str]) -> (FailoverBuilder<&'static str>, Switches, Events) {
    let switches: Switches = Arc::default();
    let events: Events = Arc::default();
    let (s, e) = (switches.clone(), events.clone());
    let mut b = Failover::builder()
        .hedge_after(HEDGE)
        .on_switch(move |from: &str, to: &str, why: SwitchReason| {
            s.lock().unwrap().push((from.into(), to.into(), why))
        })
        .observer(move |_: &str, ev: &FailoverEvent<'_>| {
            if !matches!(ev, FailoverEvent::HealthChanged { .. }) {
                e.lock().unwrap().push(format!("{ev:?}"))
            }
        });
    for &name in names {
        b = b.region(Region::new(name, name));
    }
    (b, switches, events)
}

/// A 404 is an answer, any other error a regional failure.
fn not_found(r: &Result<&'static str, u16>) -> Outcome {
    match r {
        Err(404) => Outcome::Ignored,
        Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    }
}

/// One call, each region following its plan (a region without one never answers).
async fn call(
    f: &Failover<&'static str>,
    plans: &[(&'static str, Plan)],
    seen: &Seen,
) -> Result<&'static str, Error<u16>> {
    f.call_classified(not_found, |name: &&'static str| {
        let region = *name;
        seen.started.lock().unwrap().push((region, seen.ms()));
        let plan = plans.iter().find(|(n, _)| *n == region).map(|(_, p)| *p);
        async move {
            let mut flag = DropFlag {
                region,
                seen,
                answered: false,
            };
            let Some(plan) = plan else {
                return std::future::pending().await;
            };
            tokio::time::sleep(Duration::from_millis(plan.ms)).await;
            flag.answered = true;
            plan.answer
        }
    })
    .await
}

fn sw(from: &str, to: &str, why: SwitchReason) -> (String, String, SwitchReason) {
    (from.into(), to.into(), why)
}

#[tokio::test(start_paused = true)]
async fn a_stuck_region_is_hedged_and_dropped_when_the_next_answers() {
    let (b, switches, events) = builder(&["a", "b"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("a", ok(10_000, "a")), ("b", ok(20, "b"))], &seen).await;
    // checked before anything else runs: a was dropped in the poll that returned b's answer
    assert_eq!(seen.dropped(), ["a"]);
    assert_eq!(seen.ms(), 70);
    assert_eq!(r, Ok("b"));
    assert_eq!(seen.started(), [("a", 0), ("b", 50)]);
    assert_eq!(f.active(), "b");
    assert_eq!(
        *switches.lock().unwrap(),
        [sw("a", "b", SwitchReason::Hedged)]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            r#"HedgeStarted { region: "b" }"#,
            r#"Switched { from: "a", to: "b", reason: Hedged }"#,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_starts_no_other_region() {
    let (b, switches, events) = builder(&["a", "b"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("a", ok(30, "a")), ("b", ok(1, "b"))], &seen).await;
    assert_eq!(r, Ok("a"));
    assert_eq!(seen.ms(), 30);
    assert_eq!(seen.started(), [("a", 0)]);
    // and nothing starts later either
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.started(), [("a", 0)]);
    assert_eq!(f.active(), "a");
    assert!(switches.lock().unwrap().is_empty());
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failure_starts_the_next_region_at_once() {
    let (b, switches, events) = builder(&["a", "b"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("a", err(0, 503)), ("b", ok(20, "b"))], &seen).await;
    assert_eq!(r, Ok("b"));
    assert_eq!(seen.started(), [("a", 0), ("b", 0)]);
    assert_eq!(seen.ms(), 20);
    assert_eq!(f.active(), "b");
    assert_eq!(
        *switches.lock().unwrap(),
        [sw("a", "b", SwitchReason::Failed)]
    );
    assert!(
        !events.lock().unwrap()[0].contains("HedgeStarted"),
        "not a hedge"
    );
}

#[tokio::test(start_paused = true)]
async fn every_delay_starts_one_more_region_within_the_per_call_bound() {
    let (b, switches, events) = builder(&["a", "b", "c"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("c", ok(10, "c"))], &seen).await;
    assert_eq!(r, Ok("c"));
    assert_eq!(seen.started(), [("a", 0), ("b", 50), ("c", 100)]);
    assert_eq!(seen.ms(), 110);
    assert_eq!(seen.dropped(), ["a", "b"]);
    assert_eq!(
        *switches.lock().unwrap(),
        [sw("a", "c", SwitchReason::Hedged)]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            r#"HedgeStarted { region: "b" }"#,
            r#"HedgeStarted { region: "c" }"#,
            r#"Switched { from: "a", to: "c", reason: Hedged }"#,
        ]
    );

    // at most two regions a call: c is never started, the call ends with a's and b's errors
    let (b, _, _) = builder(&["a", "b", "c"]);
    let f = b.max_regions_per_call(2).build().unwrap();
    let seen = Seen::new();
    let r = call(
        &f,
        &[
            ("a", err(1_000, 500)),
            ("b", err(1_000, 501)),
            ("c", ok(1, "c")),
        ],
        &seen,
    )
    .await;
    assert_eq!(
        r,
        Err(Error::Fallback {
            failures: vec![Error::Inner(500), Error::Inner(501)]
        })
    );
    assert_eq!(seen.started(), [("a", 0), ("b", 50)]);
    assert_eq!(seen.ms(), 1_050);
    assert_eq!(f.active(), "a");
}

#[tokio::test(start_paused = true)]
async fn when_all_fail_the_failures_come_in_the_order_the_attempts_ended() {
    let (b, switches, _) = builder(&["a", "b", "c"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    // a fails at 100 ms; b (started at 50) fails at 70 and starts c at once, which fails at 80
    let r = call(
        &f,
        &[
            ("a", err(100, 500)),
            ("b", err(20, 501)),
            ("c", err(10, 502)),
        ],
        &seen,
    )
    .await;
    assert_eq!(
        r,
        Err(Error::Fallback {
            failures: vec![Error::Inner(501), Error::Inner(502), Error::Inner(500)]
        })
    );
    assert_eq!(seen.started(), [("a", 0), ("b", 50), ("c", 70)]);
    assert_eq!(seen.ms(), 100);
    assert_eq!(f.active(), "a");
    assert!(switches.lock().unwrap().is_empty());

    // a single region tried: its failure alone
    let (b, _, _) = builder(&["a", "b"]);
    let f = b.max_regions_per_call(1).build().unwrap();
    let r = call(&f, &[("a", err(100, 500))], &Seen::new()).await;
    assert_eq!(r, Err(Error::Inner(500)));
}

#[tokio::test(start_paused = true)]
async fn an_ignored_error_that_ends_first_is_the_answer() {
    let (b, switches, _) = builder(&["a", "b"]);
    let f = b.build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("a", err(80, 404)), ("b", ok(100, "b"))], &seen).await;
    assert_eq!(seen.dropped(), ["b"]);
    assert_eq!(r, Err(Error::Inner(404)));
    assert_eq!(seen.ms(), 80);
    assert_eq!(seen.started(), [("a", 0), ("b", 50)]);
    assert_eq!(f.active(), "a");
    assert!(switches.lock().unwrap().is_empty());

    // the hedged region's ignored error wins the same way
    let seen = Seen::new();
    let r = call(&f, &[("a", ok(1_000, "a")), ("b", err(10, 404))], &seen).await;
    assert_eq!(r, Err(Error::Inner(404)));
    assert_eq!(seen.ms(), 60);
    assert_eq!(seen.dropped(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn build_rejects_a_zero_delay_and_never_hedges_after_an_endless_one() {
    let (b, _, _) = builder(&["a", "b"]);
    let e = b.hedge_after(Duration::ZERO).build().unwrap_err();
    assert_eq!(e.field(), "failover.hedge_after");
    assert!(e.to_string().contains("above zero"), "{e}");

    let (b, _, events) = builder(&["a", "b"]);
    let f = b.hedge_after(Duration::MAX).build().unwrap();
    let seen = Seen::new();
    let r = call(&f, &[("a", ok(3_600_000, "a")), ("b", ok(1, "b"))], &seen).await;
    assert_eq!(r, Ok("a"));
    assert_eq!(seen.started(), [("a", 0)]);
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_hedge_gives_back_every_permit() {
    let probe = CircuitBreaker::consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    let f = Failover::builder()
        .region(Region::new("a", "a").shared_breaker(probe.clone()))
        .region(Region::new("b", "b"))
        .hedge_after(HEDGE)
        .build()
        .unwrap();
    assert_eq!(f.active(), "a");
    // open a's breaker, wait out its break: one probe permit is left
    let _ = probe.call(|| async { Err::<(), _>(()) }).await;
    assert_eq!(probe.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let seen = Seen::new();
    // a takes the probe permit and hangs, b is hedged at 50 ms and hangs; the call is
    // dropped at 80 ms
    let r = tokio::time::timeout(Duration::from_millis(80), call(&f, &[], &seen)).await;
    assert!(r.is_err());
    assert_eq!(seen.started(), [("a", 0), ("b", 50)]);
    assert_eq!(seen.dropped(), ["a", "b"]);
    // the probe permit came back uncounted: the next call probes a and closes it
    assert!(probe.call(|| async { Ok::<_, ()>(()) }).await.is_ok());
    assert_eq!(probe.state(), CircuitState::Closed);
    assert_eq!(f.breaker("b").unwrap().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_region_its_health_gate_rejects_is_skipped_as_in_a_sequential_call() {
    let gate = HealthGate::builder(Duration::from_secs(1), || async { false })
        .unhealthy_after(1)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!gate.is_healthy());
    let (b, switches, events) = builder(&["a"]);
    let f = b
        .region(Region::new("b", "b").health(gate))
        .region(Region::new("c", "c"))
        .build()
        .unwrap();
    let seen = Seen::new();
    // the delay passes at 50 ms: b is gated out, c starts in its place
    let r = call(&f, &[("c", ok(10, "c"))], &seen).await;
    assert_eq!(r, Ok("c"));
    assert_eq!(seen.started(), [("a", 0), ("c", 50)]);
    assert_eq!(seen.ms(), 60);
    assert_eq!(
        *switches.lock().unwrap(),
        [sw("a", "c", SwitchReason::Hedged)]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            r#"HedgeStarted { region: "c" }"#,
            r#"Switched { from: "a", to: "c", reason: Hedged }"#,
        ]
    );

    // when every region fails, b's rejection is among the failures where it happened: c
    // (now active) fails at 10 ms and starts a at once, the delay reaches b at 60 ms, a
    // fails at 110 ms
    let seen = Seen::new();
    let r = call(&f, &[("a", err(100, 500)), ("c", err(10, 502))], &seen).await;
    assert_eq!(seen.started(), [("c", 0), ("a", 10)]);
    assert_eq!(seen.ms(), 110);
    let Err(Error::Fallback { failures }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[0], Error::Inner(502));
    assert!(
        matches!(failures[1], Error::Unhealthy { .. }),
        "{failures:?}"
    );
    assert_eq!(failures[2], Error::Inner(500));
}

#[tokio::test(start_paused = true)]
async fn latency_is_sampled_for_the_attempts_that_end_not_for_the_dropped_ones() {
    let f = Failover::builder()
        .region(Region::new("a", "a"))
        .region(Region::new("b", "b").priority(0))
        .latency_aware(1.0)
        .hedge_after(HEDGE)
        .build()
        .unwrap();
    let plans = [("a", ok(10, "a"))];
    // a is measured first (10 ms); then b, not measured yet, goes first, hangs and a
    // answers the hedge; b was dropped, not measured: it still goes first
    for expected in [
        [("a", 0)].as_slice(),
        &[("b", 0), ("a", 50)],
        &[("b", 0), ("a", 50)],
    ] {
        let seen = Seen::new();
        assert_eq!(call(&f, &plans, &seen).await, Ok("a"));
        assert_eq!(seen.started(), expected);
    }
    // once b answers (5 ms, hedging nothing), it is the faster one and goes first alone
    let seen = Seen::new();
    assert_eq!(
        call(&f, &[("a", ok(10, "a")), ("b", ok(5, "b"))], &seen).await,
        Ok("b")
    );
    let seen = Seen::new();
    assert_eq!(
        call(&f, &[("a", ok(10, "a")), ("b", ok(5, "b"))], &seen).await,
        Ok("b")
    );
    assert_eq!(seen.started(), [("b", 0)]);
}
