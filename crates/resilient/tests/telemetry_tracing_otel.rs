//! Features `tracing`, `prometheus` and `opentelemetry`: the tracing backend's spans, seen
//! through `tracing-opentelemetry` by an OpenTelemetry SDK with an in-memory exporter, form
//! one trace under the caller's span; the Prometheus exemplars carry that trace's id.
#![cfg(all(feature = "tracing", feature = "prometheus", feature = "opentelemetry"))]

use std::sync::atomic::{AtomicU32, Ordering};

use opentelemetry::Value;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use resilient::telemetry::prometheus::PrometheusMetrics;
use resilient::telemetry::tracing::Tracing;
use resilient::{Pipeline, Retry};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(start_paused = true)]
async fn call_and_attempt_spans_form_one_trace_under_the_callers_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    // exemplars read the trace id from the current tracing span's OpenTelemetry context
    let metrics = PrometheusMetrics::with_exemplars(|| {
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id().to_string())
    });
    let p = Pipeline::builder()
        .name("orders")
        .tag("region", "eu")
        .retry(Retry::immediate().attempts(3))
        .observer(Tracing)
        .observer(metrics.clone())
        .build()
        .unwrap();

    let calls = AtomicU32::new(0);
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err("busy") } else { Ok(n) } }
        })
        .instrument(tracing::info_span!("handle_request"))
        .await;
    assert_eq!(r.unwrap(), 2);

    let spans = exporter.get_finished_spans().unwrap();
    let by_name =
        |name: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == name).collect() };
    let request = by_name("handle_request");
    let call = by_name("resilient.call");
    let mut attempts = by_name("resilient.attempt");
    assert_eq!(
        (request.len(), call.len(), attempts.len()),
        (1, 1, 3),
        "{spans:#?}"
    );
    let (request, call) = (request[0], call[0]);

    // one trace: request > call > attempts
    let trace = request.span_context.trace_id();
    assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
    assert_eq!(call.parent_span_id, request.span_context.span_id());
    assert!(
        attempts
            .iter()
            .all(|a| a.parent_span_id == call.span_context.span_id())
    );

    // the spans' fields became attributes
    assert_eq!(attr(call, "pipeline"), Some(&Value::from("orders")));
    assert_eq!(attr(call, "tags"), Some(&Value::from("region=eu")));
    attempts.sort_by_key(|a| a.start_time);
    let numbers: Vec<_> = attempts
        .iter()
        .map(|a| attr(a, "attempt").map(Value::to_string))
        .collect();
    // (tracing-opentelemetry writes unsigned fields as strings or integers by version)
    assert_eq!(
        numbers,
        vec![Some("1".into()), Some("2".into()), Some("3".into())]
    );

    // the telemetry events became span events, in the call's span or its attempts'
    let events: Vec<String> = spans
        .iter()
        .flat_map(|s| s.events.iter())
        .filter_map(|e| {
            e.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "event")
                .map(|kv| kv.value.to_string())
        })
        .collect();
    for name in ["call_started", "retry_scheduled", "call_finished"] {
        assert!(events.iter().any(|e| e == name), "no {name} in {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| *e == "attempt_finished").count(),
        3,
        "{events:?}"
    );

    // and the exemplar on the calls counter names the same trace
    let text = metrics.render();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                r#"resilient_calls_total{pipeline="orders",outcome="success",region="eu"}"#,
            )
        })
        .unwrap_or_else(|| panic!("no calls series in\n{text}"));
    assert!(
        line.contains(&format!(r#"# {{trace_id="{trace}"}}"#)),
        "{line} (trace {trace})"
    );
}
