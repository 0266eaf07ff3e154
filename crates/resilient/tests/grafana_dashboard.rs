//! The Grafana dashboard in the repository (`dashboards/resilient.json`) only queries
//! series we export, and plots every documented instrument.

use std::collections::BTreeSet;

use resilient::telemetry::metrics::{INSTRUMENTS, Kind};
use serde_json::Value;

/// Every series name the Prometheus backend can print.
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for i in INSTRUMENTS {
        match i.kind {
            Kind::Counter => {
                names.insert(format!("{}_total", i.name));
            }
            Kind::Gauge => {
                names.insert(i.name.to_string());
            }
            Kind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{}{suffix}", i.name));
                }
            }
        }
    }
    names
}

/// The `resilient_*` metric names a PromQL expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("resilient_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        // a datasource variable's `query` is a plugin type, not PromQL
        Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("datasource") => {}
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_query_names_an_exported_instrument_and_every_instrument_is_plotted() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/resilient.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboards/resilient.json");
    let dashboard: Value = serde_json::from_str(&text).expect("valid JSON");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 16, "{queries:?}");
    let exported = exported();
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "a query that names no instrument: {q}");
        for n in names {
            assert!(exported.contains(&n), "{n} (in {q}) is not exported");
            used.insert(n);
        }
    }
    for i in INSTRUMENTS {
        assert!(
            used.iter().any(|u| u == i.name
                || u.strip_prefix(i.name)
                    .is_some_and(|s| ["_total", "_bucket", "_sum", "_count"].contains(&s))),
            "{} is not plotted",
            i.name
        );
    }
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(
        panels
            .iter()
            .all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty()))
    );
}
