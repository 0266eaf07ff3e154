//! The OpenTelemetry metrics backend (feature `opentelemetry`): every instrument of
//! [`metrics`](super::metrics), with its unit and description, created on a `Meter` you
//! provide (from your SDK's meter provider, with whichever exporter you use), fed by the
//! pipelines' events; gauges are observable instruments read at collection time.
//!
//! ```
//! use opentelemetry::metrics::MeterProvider as _;
//! use resilient::telemetry::otel::OtelMetrics;
//! use resilient::Pipeline;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // any meter provider; the no-op one of the API crate here
//! let meter = opentelemetry::global::meter_provider().meter("resilient");
//! let metrics = OtelMetrics::new(&meter);
//! let p = Pipeline::builder().name("users").observer(metrics).build().unwrap();
//! p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
//! # }
//! ```
//!
//! Attributes are the same labels as the Prometheus backend's (`pipeline`, `outcome`,
//! `strategy`, `state`, `scope`, and the pipeline's tags); histograms of seconds use
//! explicit buckets from 1 ms to about 65 s.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

use super::metrics as m;
use crate::engine::telemetry::{Event, EventKind, GaugeSource, Observer};

type Sources = Arc<Mutex<Vec<Weak<dyn GaugeSource>>>>;

/// Reads one gauge of a pipeline: calls `out(value, attributes)` per series.
type ReadGauge = fn(&dyn GaugeSource, &mut dyn FnMut(f64, Vec<KeyValue>));

/// The OpenTelemetry instruments of the pipelines it observes (see the [module](self)).
/// A cheap handle: clones share the instruments.
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// let meter = opentelemetry::global::meter_provider().meter("resilient");
/// let metrics = resilient::telemetry::otel::OtelMetrics::new(&meter);
/// # let _ = metrics;
/// ```
#[derive(Clone)]
pub struct OtelMetrics(Arc<Inner>);

struct Inner {
    calls: Counter<u64>,
    attempts: Counter<u64>,
    call_attempts: Histogram<u64>,
    call_duration: Histogram<f64>,
    attempt_duration: Histogram<f64>,
    retries: Counter<u64>,
    budget_exhausted: Counter<u64>,
    timeouts: Counter<u64>,
    admissions: Counter<u64>,
    rejections: Counter<u64>,
    wait_duration: Histogram<f64>,
    breaker_transitions: Counter<u64>,
    fallbacks: Counter<u64>,
    hedges: Counter<u64>,
    sources: Sources,
    _gauges: Vec<ObservableGauge<f64>>,
}

impl fmt::Debug for OtelMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtelMetrics")
    }
}

fn doc(name: &str) -> &'static m::Instrument {
    m::INSTRUMENTS
        .iter()
        .find(|i| i.name == name)
        .expect("a documented instrument")
}

fn seconds_buckets() -> Vec<f64> {
    (0..17).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

fn attrs(
    pipeline: &str,
    tags: &[(String, String)],
    extra: &[(&'static str, &str)],
) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(1 + extra.len() + tags.len());
    a.push(KeyValue::new("pipeline", pipeline.to_string()));
    a.extend(extra.iter().map(|(k, v)| KeyValue::new(*k, v.to_string())));
    a.extend(
        tags.iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    a
}

impl OtelMetrics {
    /// Creates every documented instrument on `meter`.
    ///
    /// ```
    /// use opentelemetry::metrics::MeterProvider as _;
    /// let meter = opentelemetry::global::meter_provider().meter("resilient");
    /// let _metrics = resilient::telemetry::otel::OtelMetrics::new(&meter);
    /// ```
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str| {
            let d = doc(name);
            meter
                .u64_counter(name)
                .with_unit(d.unit)
                .with_description(d.help)
                .build()
        };
        let seconds = |name: &'static str| {
            let d = doc(name);
            meter
                .f64_histogram(name)
                .with_unit(d.unit)
                .with_description(d.help)
                .with_boundaries(seconds_buckets())
                .build()
        };
        let sources: Sources = Arc::default();
        let gauge = |name: &'static str, read: ReadGauge| {
            let d = doc(name);
            let sources = sources.clone();
            meter
                .f64_observable_gauge(name)
                .with_unit(d.unit)
                .with_description(d.help)
                .with_callback(move |obs| {
                    let live: Vec<_> = sources
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .filter_map(Weak::upgrade)
                        .collect();
                    for s in live {
                        read(&*s, &mut |v, a| obs.observe(v, &a));
                    }
                })
                .build()
        };
        let gauges = vec![
            gauge(m::BUDGET_LEVEL, |s, out| {
                if let Some(level) = s.gauges().retry_budget {
                    out(level as f64, attrs(s.pipeline(), s.tags(), &[]));
                }
            }),
            gauge(m::BREAKER_STATE, |s, out| {
                for (_, g) in s.gauges().strategies {
                    if let Some(state) = g.state {
                        for st in m::BREAKER_STATES {
                            let v = if st == state { 1.0 } else { 0.0 };
                            out(v, attrs(s.pipeline(), s.tags(), &[("state", st)]));
                        }
                    }
                }
            }),
            gauge(m::BREAKER_FAILURE_RATE, |s, out| {
                for (_, g) in s.gauges().strategies {
                    if g.state.is_some() {
                        out(
                            g.failure_rate.unwrap_or(0.0),
                            attrs(s.pipeline(), s.tags(), &[]),
                        );
                    }
                }
            }),
            gauge(m::BULKHEAD_IN_FLIGHT, |s, out| {
                for (_, g) in s.gauges().strategies {
                    if let Some(n) = g.in_flight {
                        out(n as f64, attrs(s.pipeline(), s.tags(), &[]));
                    }
                }
            }),
            gauge(m::BULKHEAD_QUEUED, |s, out| {
                for (_, g) in s.gauges().strategies {
                    if let Some(n) = g.queued {
                        out(n as f64, attrs(s.pipeline(), s.tags(), &[]));
                    }
                }
            }),
        ];
        let d = doc(m::CALL_ATTEMPTS);
        Self(Arc::new(Inner {
            calls: counter(m::CALLS),
            attempts: counter(m::ATTEMPTS),
            call_attempts: meter
                .u64_histogram(m::CALL_ATTEMPTS)
                .with_unit(d.unit)
                .with_description(d.help)
                .with_boundaries(vec![1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0])
                .build(),
            call_duration: seconds(m::CALL_DURATION),
            attempt_duration: seconds(m::ATTEMPT_DURATION),
            retries: counter(m::RETRIES),
            budget_exhausted: counter(m::BUDGET_EXHAUSTED),
            timeouts: counter(m::TIMEOUTS),
            admissions: counter(m::ADMISSIONS),
            rejections: counter(m::REJECTIONS),
            wait_duration: seconds(m::WAIT_DURATION),
            breaker_transitions: counter(m::BREAKER_TRANSITIONS),
            fallbacks: counter(m::FALLBACKS),
            hedges: counter(m::HEDGES),
            sources,
            _gauges: gauges,
        }))
    }
}

impl Observer for OtelMetrics {
    fn on_event(&self, e: &Event<'_>) {
        let i = &*self.0;
        let a = |extra: &[(&'static str, &str)]| attrs(e.pipeline, e.tags, extra);
        match &e.kind {
            EventKind::CallFinished {
                outcome,
                attempts,
                duration,
            } => {
                let o = a(&[("outcome", outcome.as_str())]);
                i.calls.add(1, &o);
                i.call_duration.record(duration.as_secs_f64(), &o);
                i.call_attempts.record(u64::from(*attempts), &a(&[]));
            }
            EventKind::AttemptFinished {
                outcome, duration, ..
            } => {
                let o = a(&[("outcome", outcome.as_str())]);
                i.attempts.add(1, &o);
                i.attempt_duration.record(duration.as_secs_f64(), &o);
            }
            EventKind::RetryScheduled { .. } => i.retries.add(1, &a(&[])),
            EventKind::BudgetExhausted { .. } => i.budget_exhausted.add(1, &a(&[])),
            EventKind::TimeoutFired { scope, .. } => {
                i.timeouts.add(1, &a(&[("scope", &scope.to_string())]))
            }
            EventKind::Admitted { strategy, waited } => {
                let s = a(&[("strategy", strategy)]);
                i.admissions.add(1, &s);
                if let Some(w) = waited {
                    i.wait_duration.record(w.as_secs_f64(), &s);
                }
            }
            EventKind::Rejected {
                strategy, waited, ..
            } => {
                let s = a(&[("strategy", strategy)]);
                i.rejections.add(1, &s);
                if let Some(w) = waited {
                    i.wait_duration.record(w.as_secs_f64(), &s);
                }
            }
            EventKind::BreakerTransition { to, .. } => {
                i.breaker_transitions.add(1, &a(&[("state", to)]))
            }
            EventKind::FallbackUsed { .. } => i.fallbacks.add(1, &a(&[])),
            EventKind::HedgeFired { .. } => i.hedges.add(1, &a(&[])),
            _ => {}
        }
    }

    fn attach(&self, source: Weak<dyn GaugeSource>) {
        let mut sources = self
            .0
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sources.retain(|s| s.strong_count() > 0);
        sources.push(source);
    }
}
