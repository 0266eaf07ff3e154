//! The Prometheus backend (feature `prometheus`): every instrument of
//! [`metrics`](super::metrics) in a `prometheus-client` registry, fed by the pipelines'
//! events, and a tower [`MetricsService`] that answers with the text format.
//!
//! ```
//! use resilient::telemetry::prometheus::PrometheusMetrics;
//! use resilient::Pipeline;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let metrics = PrometheusMetrics::new();
//! let p = Pipeline::builder().name("users").observer(metrics.clone()).build().unwrap();
//! p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
//! let text = metrics.render();
//! assert!(text.contains(r#"resilient_calls_total{pipeline="users",outcome="success"} 1"#));
//! # }
//! ```
//!
//! Serve it with any tower-compatible server; with axum:
//! `Router::new().route_service("/metrics", metrics.service())`.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::metrics as m;
use crate::engine::telemetry::{Event, EventKind, GaugeSource, Observer};

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

fn seconds() -> Histogram {
    // 1 ms to about 65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn counts() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0])
}

struct Instruments {
    calls: Counters,
    attempts: Counters,
    call_attempts: Histograms,
    call_duration: Histograms,
    attempt_duration: Histograms,
    retries: Counters,
    budget_exhausted: Counters,
    budget_level: Gauges,
    timeouts: Counters,
    admissions: Counters,
    rejections: Counters,
    wait_duration: Histograms,
    breaker_state: Gauges,
    breaker_failure_rate: Gauges,
    breaker_transitions: Counters,
    bulkhead_in_flight: Gauges,
    bulkhead_queued: Gauges,
    fallbacks: Counters,
    hedges: Counters,
}

struct Inner {
    registry: Registry,
    i: Instruments,
    sources: Mutex<Vec<Weak<dyn GaugeSource>>>,
}

/// The Prometheus metrics of the pipelines it observes: attach it with
/// [`PipelineBuilder::observer`](crate::PipelineBuilder::observer), read it with
/// [`render`](Self::render) or serve it with [`service`](Self::service). A cheap handle:
/// clones share the registry.
///
/// ```
/// use resilient::telemetry::prometheus::PrometheusMetrics;
/// let metrics = PrometheusMetrics::new();
/// assert!(metrics.render().ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct PrometheusMetrics(Arc<Inner>);

impl fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrometheusMetrics")
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusMetrics {
    /// A registry holding every documented instrument.
    ///
    /// ```
    /// let text = resilient::telemetry::prometheus::PrometheusMetrics::new().render();
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let help = |name: &str| {
            m::INSTRUMENTS
                .iter()
                .find(|i| i.name == name)
                .map_or("", |i| i.help)
        };
        macro_rules! reg {
            ($name:expr, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, help($name), metric.clone());
                metric
            }};
        }
        let i = Instruments {
            calls: reg!(m::CALLS, Counters::default()),
            attempts: reg!(m::ATTEMPTS, Counters::default()),
            call_attempts: reg!(m::CALL_ATTEMPTS, Histograms::new_with_constructor(counts)),
            call_duration: reg!(m::CALL_DURATION, Histograms::new_with_constructor(seconds)),
            attempt_duration: reg!(
                m::ATTEMPT_DURATION,
                Histograms::new_with_constructor(seconds)
            ),
            retries: reg!(m::RETRIES, Counters::default()),
            budget_exhausted: reg!(m::BUDGET_EXHAUSTED, Counters::default()),
            budget_level: reg!(m::BUDGET_LEVEL, Gauges::default()),
            timeouts: reg!(m::TIMEOUTS, Counters::default()),
            admissions: reg!(m::ADMISSIONS, Counters::default()),
            rejections: reg!(m::REJECTIONS, Counters::default()),
            wait_duration: reg!(m::WAIT_DURATION, Histograms::new_with_constructor(seconds)),
            breaker_state: reg!(m::BREAKER_STATE, Gauges::default()),
            breaker_failure_rate: reg!(m::BREAKER_FAILURE_RATE, Gauges::default()),
            breaker_transitions: reg!(m::BREAKER_TRANSITIONS, Counters::default()),
            bulkhead_in_flight: reg!(m::BULKHEAD_IN_FLIGHT, Gauges::default()),
            bulkhead_queued: reg!(m::BULKHEAD_QUEUED, Gauges::default()),
            fallbacks: reg!(m::FALLBACKS, Counters::default()),
            hedges: reg!(m::HEDGES, Counters::default()),
        };
        Self(Arc::new(Inner {
            registry,
            i,
            sources: Mutex::new(Vec::new()),
        }))
    }

    /// Reads the gauges of every live pipeline (breaker state and failure rate, bulkhead
    /// occupancy, retry budget) and encodes everything in Prometheus' text format.
    ///
    /// ```
    /// use resilient::telemetry::prometheus::PrometheusMetrics;
    /// use resilient::{CircuitBreaker, Pipeline};
    /// let metrics = PrometheusMetrics::new();
    /// let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    /// let _p = Pipeline::builder().name("db").circuit_breaker(&breaker).observer(metrics.clone()).build().unwrap();
    /// let text = metrics.render();
    /// assert!(text.contains(r#"resilient_breaker_state{pipeline="db",state="closed"} 1.0"#));
    /// ```
    pub fn render(&self) -> String {
        self.refresh_gauges();
        let mut out = String::new();
        encode(&mut out, &self.0.registry).expect("writing to a String cannot fail");
        out
    }

    /// A tower service answering every request with [`render`](Self::render)'s text
    /// (`text/plain; version=0.0.4`): mount it at `/metrics`.
    ///
    /// ```
    /// use resilient::telemetry::prometheus::PrometheusMetrics;
    /// let metrics = PrometheusMetrics::new();
    /// // e.g. axum: Router::new().route_service("/metrics", metrics.service())
    /// let service = metrics.service();
    /// # let _ = service;
    /// ```
    pub fn service(&self) -> MetricsService {
        MetricsService(self.clone())
    }

    fn refresh_gauges(&self) {
        let i = &self.0.i;
        let mut sources = self
            .0
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sources.retain(|s| s.strong_count() > 0);
        for source in sources.iter().filter_map(Weak::upgrade) {
            let gauges = source.gauges();
            let base = labels(source.pipeline(), source.tags(), &[]);
            if let Some(level) = gauges.retry_budget {
                i.budget_level.get_or_create(&base).set(level as f64);
            }
            for (_, g) in &gauges.strategies {
                if let Some(state) = g.state {
                    for s in m::BREAKER_STATES {
                        let l = labels(source.pipeline(), source.tags(), &[("state", s)]);
                        i.breaker_state
                            .get_or_create(&l)
                            .set(if s == state { 1.0 } else { 0.0 });
                    }
                    i.breaker_failure_rate
                        .get_or_create(&base)
                        .set(g.failure_rate.unwrap_or(0.0));
                }
                if let Some(n) = g.in_flight {
                    i.bulkhead_in_flight.get_or_create(&base).set(n as f64);
                }
                if let Some(n) = g.queued {
                    i.bulkhead_queued.get_or_create(&base).set(n as f64);
                }
            }
        }
    }
}

fn labels(pipeline: &str, tags: &[(String, String)], extra: &[(&str, &str)]) -> Labels {
    let mut l = Vec::with_capacity(1 + extra.len() + tags.len());
    l.push(("pipeline".to_string(), pipeline.to_string()));
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l.extend(tags.iter().cloned());
    l
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Observer for PrometheusMetrics {
    fn on_event(&self, e: &Event<'_>) {
        let i = &self.0.i;
        let l = |extra: &[(&str, &str)]| labels(e.pipeline, e.tags, extra);
        match &e.kind {
            EventKind::CallFinished {
                outcome,
                attempts,
                duration,
            } => {
                let o = l(&[("outcome", outcome.as_str())]);
                i.calls.get_or_create(&o).inc();
                i.call_duration.get_or_create(&o).observe(secs(*duration));
                i.call_attempts
                    .get_or_create(&l(&[]))
                    .observe(f64::from(*attempts));
            }
            EventKind::AttemptFinished {
                outcome, duration, ..
            } => {
                let o = l(&[("outcome", outcome.as_str())]);
                i.attempts.get_or_create(&o).inc();
                i.attempt_duration
                    .get_or_create(&o)
                    .observe(secs(*duration));
            }
            EventKind::RetryScheduled { .. } => {
                i.retries.get_or_create(&l(&[])).inc();
            }
            EventKind::BudgetExhausted { .. } => {
                i.budget_exhausted.get_or_create(&l(&[])).inc();
            }
            EventKind::TimeoutFired { scope, .. } => {
                let scope = scope.to_string();
                i.timeouts.get_or_create(&l(&[("scope", &scope)])).inc();
            }
            EventKind::Admitted { strategy, waited } => {
                let s = l(&[("strategy", strategy)]);
                i.admissions.get_or_create(&s).inc();
                if let Some(w) = waited {
                    i.wait_duration.get_or_create(&s).observe(secs(*w));
                }
            }
            EventKind::Rejected {
                strategy, waited, ..
            } => {
                let s = l(&[("strategy", strategy)]);
                i.rejections.get_or_create(&s).inc();
                if let Some(w) = waited {
                    i.wait_duration.get_or_create(&s).observe(secs(*w));
                }
            }
            EventKind::BreakerTransition { to, .. } => {
                i.breaker_transitions
                    .get_or_create(&l(&[("state", to)]))
                    .inc();
            }
            EventKind::FallbackUsed { .. } => {
                i.fallbacks.get_or_create(&l(&[])).inc();
            }
            EventKind::HedgeFired { .. } => {
                i.hedges.get_or_create(&l(&[])).inc();
            }
            _ => {}
        }
    }

    fn attach(&self, source: Weak<dyn GaugeSource>) {
        self.0
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(source);
    }
}

/// Answers every request with the metrics in Prometheus' text format (see
/// [`PrometheusMetrics::service`]).
///
/// ```
/// use resilient::telemetry::prometheus::PrometheusMetrics;
/// let svc = PrometheusMetrics::new().service();
/// # let _ = svc;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsService(PrometheusMetrics);

impl<B> tower_service::Service<http::Request<B>> for MetricsService {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        let mut resp = http::Response::new(self.0.render());
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        ready(Ok(resp))
    }
}
