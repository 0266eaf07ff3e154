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
//!
//! **Exemplars.** Built with [`PrometheusMetrics::with_exemplars`], the call and attempt
//! duration histograms and the calls counter carry an OpenMetrics exemplar
//! (`# {trace_id="…"} value`) with the trace id of the call that was observed last in each
//! series. The trace id comes from a function you give, read when the call or attempt ends,
//! on the caller's task: [`otel_trace_id`] (feature `opentelemetry`) reads the current
//! OpenTelemetry context; with `tracing-opentelemetry`, read the current `tracing` span's
//! context instead (the example on [`with_exemplars`](PrometheusMetrics::with_exemplars)).
//! The output is the OpenMetrics text format (it ends with `# EOF`), and
//! [`MetricsService`] says so in its `Content-Type`, as Prometheus needs to read exemplars.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
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
/// An exemplar's labels: `trace_id`.
type TraceLabels = Vec<(&'static str, String)>;
type TracedCounters = Family<Labels, CounterWithExemplar<TraceLabels>>;
type TracedHistograms = Family<
    Labels,
    HistogramWithExemplars<TraceLabels>,
    fn() -> HistogramWithExemplars<TraceLabels>,
>;

/// Where exemplars' trace ids come from (see [`PrometheusMetrics::with_exemplars`]).
type TraceIdFn = Box<dyn Fn() -> Option<String> + Send + Sync>;

fn seconds() -> Histogram {
    // 1 ms to about 65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn traced_seconds() -> HistogramWithExemplars<TraceLabels> {
    HistogramWithExemplars::new(exponential_buckets(0.001, 2.0, 17))
}

fn counts() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0])
}

struct Instruments {
    calls: TracedCounters,
    attempts: Counters,
    call_attempts: Histograms,
    call_duration: TracedHistograms,
    attempt_duration: TracedHistograms,
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
    trace_id: Option<TraceIdFn>,
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
        Self::build(None)
    }

    /// A registry like [`new`](Self::new)'s whose call and attempt duration histograms and
    /// calls counter carry exemplars: `trace_id` is what `trace_id` returns when the call
    /// (or attempt) ends, read on the caller's task; `None` leaves the series' last
    /// exemplar as it was.
    ///
    /// With OpenTelemetry's current context (feature `opentelemetry`):
    /// `PrometheusMetrics::with_exemplars(otel_trace_id)`. With `tracing-opentelemetry`,
    /// the trace id is in the current span's context:
    ///
    /// ```ignore
    /// use opentelemetry::trace::TraceContextExt;
    /// use tracing_opentelemetry::OpenTelemetrySpanExt;
    /// let metrics = PrometheusMetrics::with_exemplars(|| {
    ///     let cx = tracing::Span::current().context();
    ///     let span = cx.span();
    ///     let sc = span.span_context();
    ///     sc.is_valid().then(|| sc.trace_id().to_string())
    /// });
    /// ```
    ///
    /// Any other source works the same way:
    ///
    /// ```
    /// use resilient::telemetry::prometheus::PrometheusMetrics;
    /// use resilient::Pipeline;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let metrics = PrometheusMetrics::with_exemplars(|| Some("4bf92f3577b34da6a3ce929d0e0e4736".into()));
    /// let p = Pipeline::builder().name("users").observer(metrics.clone()).build().unwrap();
    /// p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    /// assert!(metrics.render().contains(r#"# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 1.0"#));
    /// # }
    /// ```
    pub fn with_exemplars(trace_id: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        Self::build(Some(Box::new(trace_id)))
    }

    fn build(trace_id: Option<TraceIdFn>) -> Self {
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
            calls: reg!(m::CALLS, TracedCounters::default()),
            attempts: reg!(m::ATTEMPTS, Counters::default()),
            call_attempts: reg!(m::CALL_ATTEMPTS, Histograms::new_with_constructor(counts)),
            call_duration: reg!(
                m::CALL_DURATION,
                TracedHistograms::new_with_constructor(traced_seconds)
            ),
            attempt_duration: reg!(
                m::ATTEMPT_DURATION,
                TracedHistograms::new_with_constructor(traced_seconds)
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
            trace_id,
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

    /// A tower service answering every request with [`render`](Self::render)'s text in the
    /// OpenMetrics format (`application/openmetrics-text; version=1.0.0`, which Prometheus
    /// reads exemplars from): mount it at `/metrics`.
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

/// The current trace id of OpenTelemetry's current context (`opentelemetry::Context::current()`),
/// as lowercase hex, or `None` outside a valid span: a trace-id source for
/// [`PrometheusMetrics::with_exemplars`].
///
/// ```
/// use resilient::telemetry::prometheus::{otel_trace_id, PrometheusMetrics};
/// assert_eq!(otel_trace_id(), None); // no span is current here
/// let metrics = PrometheusMetrics::with_exemplars(otel_trace_id);
/// # let _ = metrics;
/// ```
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub fn otel_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

impl PrometheusMetrics {
    fn exemplar(&self) -> Option<TraceLabels> {
        let id = (self.0.trace_id.as_ref()?)()?;
        Some(vec![("trace_id", id)])
    }
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
                let ex = self.exemplar();
                i.calls.get_or_create(&o).inc_by(1, ex.clone(), None);
                i.call_duration
                    .get_or_create(&o)
                    .observe(secs(*duration), ex, None);
                i.call_attempts
                    .get_or_create(&l(&[]))
                    .observe(f64::from(*attempts));
            }
            EventKind::AttemptFinished {
                outcome, duration, ..
            } => {
                let o = l(&[("outcome", outcome.as_str())]);
                i.attempts.get_or_create(&o).inc();
                i.attempt_duration.get_or_create(&o).observe(
                    secs(*duration),
                    self.exemplar(),
                    None,
                );
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

/// The `Content-Type` of [`MetricsService`]'s answers: the OpenMetrics text format that
/// `prometheus-client` writes (`# EOF` at the end, exemplars after `#`).
///
/// ```
/// assert!(resilient::telemetry::prometheus::CONTENT_TYPE.starts_with("application/openmetrics-text"));
/// ```
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers every request with the metrics in the OpenMetrics text format (see
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
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        ready(Ok(resp))
    }
}
