//! Feature `opentelemetry`: the scripted scenario (as for Prometheus), then the SDK's
//! in-memory exporter is read back and every documented instrument is found, with its
//! unit and the values the script implies.
#![cfg(feature = "opentelemetry")]

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use resilient::telemetry::SharedObserver;
use resilient::telemetry::metrics::{INSTRUMENTS, Kind};
use resilient::telemetry::otel::OtelMetrics;

#[path = "support/scenario.rs"]
mod scenario;

/// One data point: its attributes (sorted `k=v`) and value; histograms give `sum` and
/// `count` as two points (`..#sum`, `..#count`).
fn points(m: &Metric) -> Vec<(String, f64)> {
    fn key<'a>(a: impl Iterator<Item = &'a KeyValue>) -> String {
        let mut kv: Vec<String> = a.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
        kv.sort();
        kv.join(",")
    }
    let mut out = Vec::new();
    match m.data() {
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            for p in s.data_points() {
                out.push((key(p.attributes()), p.value() as f64));
            }
        }
        AggregatedMetrics::F64(MetricData::Gauge(g)) => {
            for p in g.data_points() {
                out.push((key(p.attributes()), p.value()));
            }
        }
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            for p in h.data_points() {
                out.push((format!("{}#sum", key(p.attributes())), p.sum()));
                out.push((format!("{}#count", key(p.attributes())), p.count() as f64));
            }
        }
        AggregatedMetrics::U64(MetricData::Histogram(h)) => {
            for p in h.data_points() {
                out.push((format!("{}#sum", key(p.attributes())), p.sum() as f64));
                out.push((format!("{}#count", key(p.attributes())), p.count() as f64));
            }
        }
        other => panic!("unexpected data for {}: {other:?}", m.name()),
    }
    out
}

#[tokio::test(start_paused = true)]
async fn every_documented_instrument_is_exported_with_the_scripted_values() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let metrics = OtelMetrics::new(&provider.meter("resilient"));
    let observer: SharedObserver = Arc::new(metrics);
    let _pipelines = scenario::run(observer, || {}).await;
    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let last = exported.last().expect("one export");
    let all: Vec<&Metric> = last.scope_metrics().flat_map(|s| s.metrics()).collect();
    let get = |name: &str, attrs: &str| -> f64 {
        let m = all
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no instrument {name}"));
        points(m)
            .into_iter()
            .find(|(k, _)| k == attrs)
            .unwrap_or_else(|| panic!("no point {attrs} of {name}: {:?}", points(m)))
            .1
    };
    let checks: &[(&str, &str, f64)] = &[
        ("resilient_calls", "outcome=success,pipeline=api", 2.0),
        ("resilient_calls", "outcome=failure,pipeline=db", 2.0),
        ("resilient_calls", "outcome=rejected,pipeline=db", 1.0),
        (
            "resilient_calls",
            "outcome=rejected,pipeline=edge,region=eu",
            1.0,
        ),
        ("resilient_attempts", "outcome=failure,pipeline=api", 2.0),
        ("resilient_attempts", "outcome=timeout,pipeline=api", 1.0),
        ("resilient_call_attempts", "pipeline=api#sum", 5.0),
        ("resilient_call_attempts", "pipeline=api#count", 2.0),
        (
            "resilient_call_duration_seconds",
            "outcome=success,pipeline=api#sum",
            1.45,
        ),
        (
            "resilient_attempt_duration_seconds",
            "outcome=timeout,pipeline=api#sum",
            1.0,
        ),
        ("resilient_retries", "pipeline=api", 3.0),
        ("resilient_retry_budget_exhausted", "pipeline=stingy", 1.0),
        ("resilient_retry_budget_level", "pipeline=stingy", 0.0),
        ("resilient_timeouts", "pipeline=api,scope=operation", 1.0),
        (
            "resilient_admissions",
            "pipeline=db,strategy=circuit_breaker",
            2.0,
        ),
        (
            "resilient_rejections",
            "pipeline=db,strategy=circuit_breaker",
            1.0,
        ),
        (
            "resilient_admissions",
            "pipeline=edge,region=eu,strategy=rate_limiter",
            2.0,
        ),
        (
            "resilient_rejections",
            "pipeline=edge,region=eu,strategy=rate_limiter",
            1.0,
        ),
        (
            "resilient_wait_duration_seconds",
            "pipeline=edge,region=eu,strategy=bulkhead#sum",
            0.4,
        ),
        ("resilient_breaker_state", "pipeline=db,state=open", 1.0),
        ("resilient_breaker_state", "pipeline=db,state=closed", 0.0),
        ("resilient_breaker_failure_rate", "pipeline=db", 0.0),
        (
            "resilient_breaker_transitions",
            "pipeline=db,state=open",
            1.0,
        ),
        (
            "resilient_bulkhead_in_flight",
            "pipeline=edge,region=eu",
            0.0,
        ),
        ("resilient_bulkhead_queued", "pipeline=edge,region=eu", 0.0),
        ("resilient_fallbacks", "pipeline=api", 1.0),
        ("resilient_hedges", "pipeline=api", 1.0),
    ];
    for (name, attrs, expected) in checks {
        let got = get(name, attrs);
        assert!(
            (got - expected).abs() < 1e-9,
            "{name}{{{attrs}}}: {got} != {expected}"
        );
    }
    for i in INSTRUMENTS {
        let m = all
            .iter()
            .find(|m| m.name() == i.name)
            .unwrap_or_else(|| panic!("{} is not exported", i.name));
        assert_eq!(m.unit(), i.unit, "{}", i.name);
        assert_eq!(m.description(), i.help, "{}", i.name);
        let kind_ok = match (i.kind, m.data()) {
            (Kind::Counter, AggregatedMetrics::U64(MetricData::Sum(s))) => s.is_monotonic(),
            (Kind::Histogram, AggregatedMetrics::F64(MetricData::Histogram(_)))
            | (Kind::Histogram, AggregatedMetrics::U64(MetricData::Histogram(_)))
            | (Kind::Gauge, AggregatedMetrics::F64(MetricData::Gauge(_))) => true,
            _ => false,
        };
        assert!(kind_ok, "{} has the wrong kind", i.name);
        assert!(
            checks.iter().any(|(n, _, _)| *n == i.name),
            "{} is not checked",
            i.name
        );
    }
}
