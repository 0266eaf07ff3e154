//! The telemetry event model: every strategy's events reach the pipeline's observer, in
//! order, with the pipeline's name and tags (tokio paused time; no real sleeps).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::ratelimit::{Rate, RateLimiter};
use resilient::telemetry::{CallOutcome, Event, EventKind, Observer};
use resilient::{
    Bulkhead, CircuitBreaker, Error, Pipeline, Retry, RetryBudget, RetryReason, Timeout,
    TimeoutScope,
};

/// Records each event as a line: `name field=value ...`.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Log {
    fn on_event(&self, e: &Event<'_>) {
        let line = match &e.kind {
            EventKind::CallStarted { deadline } => format!("call_started {deadline:?}"),
            EventKind::CallFinished {
                outcome,
                attempts,
                duration,
            } => format!("call_finished {outcome} attempts={attempts} took={duration:?}"),
            EventKind::AttemptFinished {
                attempt,
                outcome,
                duration,
            } => format!("attempt {attempt} {outcome} took={duration:?}"),
            EventKind::RetryScheduled {
                attempt,
                delay,
                reason,
            } => format!("retry {attempt} {delay:?} {reason:?}"),
            EventKind::BudgetExhausted { attempt } => format!("budget_exhausted {attempt}"),
            EventKind::TimeoutFired { scope, elapsed } => format!("timeout {scope} {elapsed:?}"),
            EventKind::Admitted { strategy, waited } => format!("admitted {strategy} {waited:?}"),
            EventKind::Queued { strategy } => format!("queued {strategy}"),
            EventKind::Rejected {
                strategy, waited, ..
            } => format!("rejected {strategy} {waited:?}"),
            EventKind::BreakerTransition { breaker, from, to } => {
                format!("transition {breaker} {from}->{to}")
            }
            other => format!("{other:?}"),
        };
        assert_eq!(e.pipeline, "users");
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test(start_paused = true)]
async fn retries_report_attempts_delays_and_the_call() {
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .tag("team", "id")
        .timeout(Timeout::request(Duration::from_secs(10)))
        .retry(Retry::constant(Duration::from_millis(100)).attempts(3))
        .observer(log.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let r: Result<u32, Error<&str>> = p
        .execute(|| {
            n += 1;
            let k = n;
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if k < 3 { Err("flaky") } else { Ok(k) }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 3);
    assert_eq!(
        log.lines(),
        [
            "call_started Some(10s)",
            "attempt 1 failure took=10ms",
            "retry 1 100ms Error",
            "attempt 2 failure took=10ms",
            "retry 2 100ms Error",
            "attempt 3 success took=10ms",
            "call_finished success attempts=3 took=230ms",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_report_their_scope() {
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::immediate().attempts(2))
        .timeout(Timeout::operation(Duration::from_millis(300)))
        .observer(log.clone())
        .build()
        .unwrap();
    let r: Result<(), Error<()>> = p.execute(std::future::pending).await;
    assert!(matches!(
        r,
        Err(Error::Timeout {
            scope: TimeoutScope::Operation,
            ..
        })
    ));
    assert_eq!(
        log.lines(),
        [
            "call_started Some(1s)",
            "timeout operation 300ms",
            "attempt 1 timeout took=300ms",
            "retry 1 0ns Timeout",
            "timeout operation 300ms",
            "attempt 2 timeout took=300ms",
            "call_finished timeout attempts=2 took=600ms",
        ]
    );
    // the request timeout, reported once by the call
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .timeout(Timeout::request(Duration::from_millis(500)))
        .observer(log.clone())
        .build()
        .unwrap();
    let _: Result<(), Error<()>> = p.execute(std::future::pending).await;
    assert_eq!(
        log.lines(),
        [
            "call_started Some(500ms)",
            "timeout request 500ms",
            "call_finished timeout attempts=1 took=500ms",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn limiter_admissions_and_rejections() {
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .rate_limit(RateLimiter::gcra(Rate::per_second(1)))
        .observer(log.clone())
        .build()
        .unwrap();
    let ok = || async { Ok::<_, ()>(()) };
    p.execute(ok).await.unwrap();
    assert!(matches!(
        p.execute(ok).await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(
        log.lines(),
        [
            "call_started None",
            "admitted rate_limiter None",
            "attempt 1 success took=0ns",
            "call_finished success attempts=1 took=0ns",
            "call_started None",
            "rejected rate_limiter None",
            "call_finished rejected attempts=0 took=0ns",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn bulkhead_queueing_reports_the_wait() {
    let log = Log::default();
    let bulkhead = Bulkhead::builder(1).queue(1).build().unwrap();
    let p = Pipeline::builder()
        .name("users")
        .bulkhead(&bulkhead)
        .observer(log.clone())
        .build()
        .unwrap();
    let slow = {
        let p = p.clone();
        tokio::spawn(async move {
            p.execute(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, ()>(())
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    slow.await.unwrap().unwrap();
    let lines = log.lines();
    assert!(lines.contains(&"queued bulkhead".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"admitted bulkhead Some(200ms)".to_string()),
        "{lines:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_transitions_reach_the_pipeline_observer() {
    let log = Log::default();
    let breaker = CircuitBreaker::consecutive_failures(2)
        .name("db")
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .name("users")
        .circuit_breaker(&breaker)
        .observer(log.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        let _: Result<(), Error<()>> = p.execute(|| async { Err(()) }).await;
    }
    let lines = log.lines();
    assert!(
        lines.contains(&"transition db closed->open".to_string()),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "call_finished rejected attempts=0 took=0ns"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_is_reported() {
    let log = Log::default();
    let budget = RetryBudget::builder(0.0).min_per_sec(0).build().unwrap();
    let p = Pipeline::builder()
        .name("users")
        .retry(Retry::immediate().attempts(3).budget(budget))
        .observer(log.clone())
        .build()
        .unwrap();
    let _: Result<(), Error<()>> = p.execute(|| async { Err(()) }).await;
    assert_eq!(
        log.lines(),
        [
            "call_started None",
            "attempt 1 failure took=0ns",
            "budget_exhausted 1",
            "call_finished failure attempts=1 took=0ns",
        ]
    );
}

#[test]
fn blocking_calls_are_reported_too() {
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .retry(Retry::immediate().attempts(2))
        .observer(log.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let r = p.execute_blocking(|| {
        n += 1;
        if n == 1 { Err("no") } else { Ok(n) }
    });
    assert_eq!(r.unwrap(), 2);
    let lines = log.lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[2], "retry 1 0ns Error");
    assert!(lines[4].starts_with("call_finished success attempts=2"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_observer_does_not_break_calls() {
    let p = Pipeline::builder()
        .name("users")
        .observer(|_: &Event<'_>| panic!("observer bug"))
        .build()
        .unwrap();
    assert_eq!(p.execute(|| async { Ok::<_, ()>(5) }).await.unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn several_observers_each_see_every_event() {
    let (a, b) = (Log::default(), Log::default());
    let p = Pipeline::builder()
        .name("users")
        .observer(a.clone())
        .observer(b.clone())
        .build()
        .unwrap();
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert_eq!(a.lines().len(), 3);
    assert_eq!(a.lines(), b.lines());
    let _ = (CallOutcome::Success, RetryReason::Error);
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_hedge_is_reported() {
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .hedge(
            resilient::hedge::Hedge::delayed(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .idempotent(true)
        .observer(log.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let r: Result<u32, Error<()>> = p
        .execute(|| {
            n += 1;
            let k = n;
            async move {
                let wait = if k == 1 { 1000 } else { 10 };
                tokio::time::sleep(Duration::from_millis(wait)).await;
                Ok(k)
            }
        })
        .await;
    assert_eq!(r.unwrap(), 2);
    let lines = log.lines();
    assert!(
        lines.contains(&"HedgeFired { attempt: 1 }".to_string()),
        "{lines:?}"
    );
    assert!(lines.last().unwrap().starts_with("call_finished success"));
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_fallback_step_reports_each_alternative_after_the_call() {
    use resilient::fallback::Fallback;
    let log = Log::default();
    // the observer is added after the fallback step: order does not matter
    let p = Pipeline::builder()
        .name("users")
        .retry(Retry::immediate().attempts(2))
        .fallback(
            Fallback::builder()
                .name("prices")
                .or_else(|_: Error<&str>| async { Err(Error::Inner("replica down")) })
                .or_value(7u32)
                .build()
                .unwrap(),
        )
        .observer(log.clone())
        .build()
        .unwrap();
    let r = p.execute(|| async { Err::<u32, _>("down") }).await;
    assert_eq!(r.unwrap(), 7);
    let lines = log.lines();
    // the call gave up first (its own events), then the chain ran its two alternatives
    let finished = lines
        .iter()
        .position(|l| l.starts_with("call_finished failure attempts=2"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(
        lines[finished + 1..],
        [
            r#"FallbackUsed { fallback: "prices", alternative: 1 }"#.to_string(),
            r#"FallbackUsed { fallback: "prices", alternative: 2 }"#.to_string(),
        ],
        "{lines:?}"
    );

    // a success uses no alternative and reports none
    let before = log.lines().len();
    assert_eq!(p.execute(|| async { Ok::<u32, &str>(1) }).await.unwrap(), 1);
    assert!(
        log.lines()[before..]
            .iter()
            .all(|l| !l.starts_with("FallbackUsed")),
        "{:?}",
        log.lines()
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_call_fallback_is_reported_to_the_pipeline_observer() {
    use resilient::fallback::Fallback;
    let log = Log::default();
    let p = Pipeline::builder()
        .name("users")
        .observer(log.clone())
        .build()
        .unwrap();
    let fallback = Fallback::builder().or_value(0u8).build().unwrap();
    let r = p
        .execute_with_fallback(&fallback, || async { Err::<u8, ()>(()) })
        .await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(
        log.lines().last().unwrap(),
        r#"FallbackUsed { fallback: "fallback", alternative: 1 }"#
    );
}
