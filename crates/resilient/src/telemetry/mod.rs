//! Telemetry: one event model for every strategy, delivered to the observer of a
//! pipeline, and the backends built on it.
//!
//! - [`Observer`] receives each [`Event`] of the pipelines it is attached to with
//!   [`PipelineBuilder::observer`](crate::PipelineBuilder::observer): call and attempt
//!   outcomes, scheduled retries, an exhausted retry budget, timeouts, guard admissions,
//!   waits and rejections (rate limiters, bulkheads, breakers), breaker transitions, the
//!   pipeline's own hedges and fallback alternatives (its `.hedge(..)` and `.fallback(..)`
//!   steps, and [`execute_with_fallback`](crate::Pipeline::execute_with_fallback)).
//!   Standalone hedges and fallback chains report through [`hedge_observer`] and
//!   [`fallback_observer`].
//! - A pipeline without an observer pays nothing: no allocation, no clock read, one
//!   branch per phase (see `crates/resilient-bench/RESULTS.md`, "Telemetry").
//! - Backends (cargo features): `tracing` (a span per call and per attempt, an event per
//!   [`Event`]), `prometheus` (`prometheus-client` registry and a `/metrics` tower
//!   service) and `opentelemetry` (OpenTelemetry metrics). Both metric backends export
//!   the one set of instruments listed in [`metrics`].
//!
//! ```
//! use resilient::telemetry::{CallOutcome, Event, EventKind};
//! use resilient::{Pipeline, Retry};
//! use std::sync::{Arc, Mutex};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let outcomes = Arc::new(Mutex::new(Vec::new()));
//! let log = outcomes.clone();
//! let p = Pipeline::builder()
//!     .name("users")
//!     .tag("team", "identity")
//!     .retry(Retry::immediate().attempts(3))
//!     .observer(move |e: &Event<'_>| {
//!         if let EventKind::AttemptFinished { attempt, outcome, .. } = e.kind {
//!             log.lock().unwrap().push((e.pipeline.to_string(), attempt, outcome));
//!         }
//!     })
//!     .build()
//!     .unwrap();
//! let r = p.execute(|| async { Err::<(), _>("down") }).await;
//! assert!(r.is_err());
//! assert_eq!(outcomes.lock().unwrap().len(), 3);
//! assert_eq!(outcomes.lock().unwrap()[2], ("users".to_string(), 3, CallOutcome::Failure));
//! # }
//! ```

pub use crate::engine::telemetry::{
    CallOutcome, Event, EventKind, GaugeSource, Gauges, GuardGauges, Observer, SharedObserver,
    TransitionSink,
};

pub mod metrics;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;

mod adapters;
pub use adapters::{fallback_observer, hedge_observer};
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
