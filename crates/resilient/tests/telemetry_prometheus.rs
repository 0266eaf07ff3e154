//! Feature `prometheus`: scripted scenarios on paused time, then the text output is read
//! back and every documented instrument is found with the values the script implies.
#![cfg(feature = "prometheus")]

use std::sync::Arc;
use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::hedge::Hedge;
use resilient::ratelimit::{Rate, RateLimiter};
use resilient::telemetry::metrics::{INSTRUMENTS, Kind};
use resilient::telemetry::prometheus::PrometheusMetrics;
use resilient::telemetry::{SharedObserver, fallback_observer, hedge_observer};
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, RetryBudget, Timeout};

/// The value of the series `series` (name and labels exactly as printed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_documented_instrument_has_the_scripted_values() {
    let metrics = PrometheusMetrics::new();

    // "api": retries with an operation timeout
    let api = Pipeline::builder()
        .name("api")
        .retry(Retry::constant(Duration::from_millis(100)).attempts(3))
        .timeout(Timeout::operation(Duration::from_secs(1)))
        .observer(metrics.clone())
        .build()
        .unwrap();
    let mut n = 0;
    let r: Result<u32, Error<&str>> = api
        .execute(|| {
            n += 1;
            let k = n;
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if k < 3 { Err("flaky") } else { Ok(k) }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 3);
    // one attempt that hangs past the operation timeout, then a success
    let mut hang = true;
    let r: Result<(), Error<()>> = api
        .execute(|| {
            let h = std::mem::take(&mut hang);
            async move {
                if h {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .await;
    assert!(r.is_ok());

    // "db": a breaker that opens after two failures, then rejects
    let breaker = CircuitBreaker::consecutive_failures(2)
        .name("db")
        .build()
        .unwrap();
    let db = Pipeline::builder()
        .name("db")
        .circuit_breaker(&breaker)
        .observer(metrics.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        let _: Result<(), Error<()>> = db.execute(|| async { Err(()) }).await;
    }

    // "edge": a limiter (1 admitted, 1 rejected) and a bulkhead with a queue
    let bulkhead = Bulkhead::builder(1).queue(1).build().unwrap();
    let edge = Pipeline::builder()
        .name("edge")
        .tag("region", "eu")
        .rate_limit(RateLimiter::gcra(Rate::per_minute(2)))
        .bulkhead(&bulkhead)
        .observer(metrics.clone())
        .build()
        .unwrap();
    let slow = |edge: Pipeline| async move {
        edge.execute(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, ()>(())
        })
        .await
    };
    let first = tokio::spawn(slow(edge.clone()));
    let second = tokio::spawn(slow(edge.clone()));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let busy = metrics.render();
    assert_eq!(
        value(
            &busy,
            r#"resilient_bulkhead_in_flight{pipeline="edge",region="eu"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &busy,
            r#"resilient_bulkhead_queued{pipeline="edge",region="eu"}"#
        ),
        1.0
    );
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let limited: Result<(), Error<()>> = edge.execute(|| async { Ok(()) }).await;
    assert!(matches!(limited, Err(Error::RateLimited { .. })));

    // "stingy": a budget that refuses every retry
    let stingy = Pipeline::builder()
        .name("stingy")
        .retry(
            Retry::immediate()
                .attempts(3)
                .budget(RetryBudget::builder(0.0).min_per_sec(0).build().unwrap()),
        )
        .observer(metrics.clone())
        .build()
        .unwrap();
    let _: Result<(), Error<()>> = stingy.execute(|| async { Err(()) }).await;

    // a fallback and a hedge reporting as "api"
    let shared: SharedObserver = Arc::new(metrics.clone());
    let fallback = Fallback::<u32, ()>::builder()
        .or_value(0)
        .on_fallback(fallback_observer(shared.clone(), "api"))
        .build()
        .unwrap();
    assert_eq!(fallback.call(|| async { Err(()) }).await.unwrap(), 0);
    let hedge = Hedge::parallel()
        .max_hedges(1)
        .on_event(hedge_observer(shared, "api"))
        .build()
        .unwrap();
    let _: Result<u32, Error<()>> = hedge.call(|a| async move { Ok(a) }).await;

    let text = metrics.render();
    let checks: &[(&str, f64)] = &[
        (
            r#"resilient_calls_total{pipeline="api",outcome="success"}"#,
            2.0,
        ),
        (
            r#"resilient_calls_total{pipeline="db",outcome="failure"}"#,
            2.0,
        ),
        (
            r#"resilient_calls_total{pipeline="db",outcome="rejected"}"#,
            1.0,
        ),
        (
            r#"resilient_calls_total{pipeline="edge",outcome="rejected",region="eu"}"#,
            1.0,
        ),
        (
            r#"resilient_attempts_total{pipeline="api",outcome="failure"}"#,
            2.0,
        ),
        (
            r#"resilient_attempts_total{pipeline="api",outcome="timeout"}"#,
            1.0,
        ),
        (
            r#"resilient_attempts_total{pipeline="api",outcome="success"}"#,
            2.0,
        ),
        (r#"resilient_call_attempts_sum{pipeline="api"}"#, 5.0),
        (r#"resilient_call_attempts_count{pipeline="api"}"#, 2.0),
        (
            r#"resilient_call_attempts_bucket{le="2.0",pipeline="api"}"#,
            1.0,
        ),
        // 3 x 50 ms + 2 x 100 ms, then 1 s + 100 ms
        (
            r#"resilient_call_duration_seconds_sum{pipeline="api",outcome="success"}"#,
            1.45,
        ),
        (
            r#"resilient_call_duration_seconds_count{pipeline="api",outcome="success"}"#,
            2.0,
        ),
        (
            r#"resilient_attempt_duration_seconds_sum{pipeline="api",outcome="timeout"}"#,
            1.0,
        ),
        (
            r#"resilient_attempt_duration_seconds_count{pipeline="api",outcome="failure"}"#,
            2.0,
        ),
        (r#"resilient_retries_total{pipeline="api"}"#, 3.0),
        (
            r#"resilient_retry_budget_exhausted_total{pipeline="stingy"}"#,
            1.0,
        ),
        (r#"resilient_retry_budget_level{pipeline="stingy"}"#, 0.0),
        (
            r#"resilient_timeouts_total{pipeline="api",scope="operation"}"#,
            1.0,
        ),
        (
            r#"resilient_admissions_total{pipeline="db",strategy="circuit_breaker"}"#,
            2.0,
        ),
        (
            r#"resilient_rejections_total{pipeline="db",strategy="circuit_breaker"}"#,
            1.0,
        ),
        (
            r#"resilient_admissions_total{pipeline="edge",strategy="rate_limiter",region="eu"}"#,
            2.0,
        ),
        (
            r#"resilient_rejections_total{pipeline="edge",strategy="rate_limiter",region="eu"}"#,
            1.0,
        ),
        (
            r#"resilient_admissions_total{pipeline="edge",strategy="bulkhead",region="eu"}"#,
            2.0,
        ),
        (
            r#"resilient_wait_duration_seconds_sum{pipeline="edge",strategy="bulkhead",region="eu"}"#,
            0.4,
        ),
        (
            r#"resilient_wait_duration_seconds_count{pipeline="edge",strategy="bulkhead",region="eu"}"#,
            1.0,
        ),
        (
            r#"resilient_breaker_state{pipeline="db",state="open"}"#,
            1.0,
        ),
        (
            r#"resilient_breaker_state{pipeline="db",state="closed"}"#,
            0.0,
        ),
        (r#"resilient_breaker_failure_rate{pipeline="db"}"#, 0.0),
        (
            r#"resilient_breaker_transitions_total{pipeline="db",state="open"}"#,
            1.0,
        ),
        (
            r#"resilient_bulkhead_in_flight{pipeline="edge",region="eu"}"#,
            0.0,
        ),
        (
            r#"resilient_bulkhead_queued{pipeline="edge",region="eu"}"#,
            0.0,
        ),
        (r#"resilient_fallbacks_total{pipeline="api"}"#, 1.0),
        (r#"resilient_hedges_total{pipeline="api"}"#, 1.0),
    ];
    for (series, expected) in checks {
        let got = value(&text, series);
        assert!(
            (got - expected).abs() < 1e-9,
            "{series}: {got} != {expected}"
        );
    }
    // every documented instrument is declared and has at least one series checked above
    for i in INSTRUMENTS {
        let kind = match i.kind {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Gauge => "gauge",
        };
        assert!(
            text.contains(&format!("# TYPE {} {kind}", i.name)),
            "{} is not declared",
            i.name
        );
        assert!(
            checks.iter().any(
                |(s, _)| s.starts_with(&format!("{}{{", i.prometheus_name()))
                    || s.starts_with(&format!("{}_", i.name))
            ),
            "{} is not checked",
            i.name
        );
    }
}

#[tokio::test]
async fn the_metrics_service_answers_with_the_text_format() {
    use tower::ServiceExt;
    let metrics = PrometheusMetrics::new();
    let p = Pipeline::builder()
        .name("x")
        .observer(metrics.clone())
        .build()
        .unwrap();
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    let resp = metrics
        .service()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        resp.body()
            .contains(r#"resilient_calls_total{pipeline="x",outcome="success"} 1"#)
    );
}
