//! Feature `prometheus`: scripted scenarios on paused time, then the text output is read
//! back and every documented instrument is found with the values the script implies.
#![cfg(feature = "prometheus")]

use std::sync::Arc;

use resilient::Pipeline;
use resilient::telemetry::SharedObserver;
use resilient::telemetry::metrics::{INSTRUMENTS, Kind};
use resilient::telemetry::prometheus::PrometheusMetrics;

#[path = "support/scenario.rs"]
mod scenario;

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

    let observer: SharedObserver = Arc::new(metrics.clone());
    let mut busy = None;
    let _pipelines = scenario::run(observer, || busy = Some(metrics.render())).await;
    let busy = busy.unwrap();
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
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        resp.body()
            .contains(r#"resilient_calls_total{pipeline="x",outcome="success"} 1"#)
    );
}

/// The exemplar on `series` (name and labels exactly as printed): its trace id and value.
fn exemplar(text: &str, series: &str) -> Option<(String, f64)> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"));
    let (_, ex) = rest.split_once(" # {trace_id=\"")?;
    let (id, value) = ex.split_once("\"} ")?;
    Some((id.to_string(), value.split(' ').next()?.parse().ok()?))
}

#[tokio::test(start_paused = true)]
async fn exemplars_carry_the_trace_id_of_the_call_observed_last() {
    use std::sync::Mutex;
    use std::time::Duration;
    // the "current trace" of this test: whatever the caller set before the call
    let current: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let source = current.clone();
    let metrics = PrometheusMetrics::with_exemplars(move || source.lock().unwrap().clone());
    let p = Pipeline::builder()
        .name("ex")
        .observer(metrics.clone())
        .build()
        .unwrap();

    // a call outside any trace leaves no exemplar
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    let text = metrics.render();
    assert_eq!(
        exemplar(
            &text,
            r#"resilient_calls_total{pipeline="ex",outcome="success"}"#
        ),
        None
    );

    // a traced call of 3 ms: its id on the counter, on the 4 ms bucket of both
    // histograms, with the observed value
    *current.lock().unwrap() = Some("0af7651916cd43dd8448eb211c80319c".into());
    p.execute(|| async {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, ()>(())
    })
    .await
    .unwrap();
    let text = metrics.render();
    let id = "0af7651916cd43dd8448eb211c80319c".to_string();
    assert_eq!(
        exemplar(
            &text,
            r#"resilient_calls_total{pipeline="ex",outcome="success"}"#
        ),
        Some((id.clone(), 1.0))
    );
    for h in ["call", "attempt"] {
        let (got, v) = exemplar(
            &text,
            &format!(
                r#"resilient_{h}_duration_seconds_bucket{{le="0.004",pipeline="ex",outcome="success"}}"#
            ),
        )
        .unwrap_or_else(|| panic!("no exemplar on the {h} histogram in\n{text}"));
        assert_eq!(got, id);
        assert!((v - 0.003).abs() < 1e-9, "{h}: {v}");
        // the bucket below holds the untraced call only, with no exemplar
        assert_eq!(
            exemplar(
                &text,
                &format!(
                    r#"resilient_{h}_duration_seconds_bucket{{le="0.001",pipeline="ex",outcome="success"}}"#
                ),
            ),
            None
        );
    }

    // a later traced call replaces the counter's exemplar
    *current.lock().unwrap() = Some("11111111111111111111111111111111".into());
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    let text = metrics.render();
    assert_eq!(
        exemplar(
            &text,
            r#"resilient_calls_total{pipeline="ex",outcome="success"}"#
        )
        .unwrap()
        .0,
        "11111111111111111111111111111111"
    );
}
