//! The `tracing` backend (feature `tracing`): a span per call (`resilient.call`) and per
//! attempt (`resilient.attempt`) carrying the pipeline's name, tags, deadline and attempt
//! number, and a `tracing` event for every telemetry [`Event`], inside those spans. Spans
//! are ordinary `tracing` spans, so `tracing-opentelemetry` turns them into OpenTelemetry
//! spans (with trace ids for exemplars) like any other.
//!
//! Attach [`Tracing`] as a pipeline's observer; pipelines without it open no span.
//!
//! ```
//! use resilient::telemetry::tracing::Tracing;
//! use resilient::Pipeline;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let p = Pipeline::builder().name("users").tag("region", "eu").observer(Tracing).build().unwrap();
//! // with a subscriber installed, this call shows as a `resilient.call` span with one
//! // `resilient.attempt` span inside it
//! p.execute(|| async { Ok::<_, ()>(1) }).await.unwrap();
//! # }
//! ```
//!
//! Fields: spans carry `pipeline`, `tags` (`k=v` pairs joined by `,`), `deadline_ms` (time
//! left, when bounded) and, on attempts, `attempt`. Events carry `event` (the
//! [`EventKind::name`]), `pipeline` and the event's own fields (`attempt`, `outcome`,
//! `duration_ms`, `delay_ms`, `reason`, `scope`, `strategy`, `from`, `to`, ...).
//! Rejections, timeouts, breaker transitions and exhausted budgets are `WARN`; the rest
//! `DEBUG`.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use tracing::instrument::Instrumented;
use tracing::{Instrument, Level, Span};

use crate::engine::context::Context;
use crate::engine::telemetry::{Event, EventKind, Observer, Sink};

/// The observer that turns a pipeline's telemetry into `tracing` spans and events.
///
/// ```
/// use resilient::telemetry::{tracing::Tracing, Observer};
/// assert!(Tracing.spans());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracing;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Observer for Tracing {
    fn on_event(&self, e: &Event<'_>) {
        let event = e.kind.name();
        let pipeline = e.pipeline;
        match &e.kind {
            EventKind::CallStarted { deadline } => {
                tracing::debug!(event, pipeline, deadline_ms = deadline.map(millis))
            }
            EventKind::CallFinished {
                outcome,
                attempts,
                duration,
            } => tracing::debug!(
                event,
                pipeline,
                outcome = outcome.as_str(),
                attempts,
                duration_ms = millis(*duration)
            ),
            EventKind::AttemptFinished {
                attempt,
                outcome,
                duration,
            } => tracing::debug!(
                event,
                pipeline,
                attempt,
                outcome = outcome.as_str(),
                duration_ms = millis(*duration)
            ),
            EventKind::RetryScheduled {
                attempt,
                delay,
                reason,
            } => tracing::debug!(
                event,
                pipeline,
                attempt,
                delay_ms = millis(*delay),
                reason = ?reason
            ),
            EventKind::BudgetExhausted { attempt } => tracing::warn!(event, pipeline, attempt),
            EventKind::TimeoutFired { scope, elapsed } => tracing::warn!(
                event,
                pipeline,
                scope = %scope,
                elapsed_ms = millis(*elapsed)
            ),
            EventKind::Admitted { strategy, waited } => {
                tracing::debug!(event, pipeline, strategy, waited_ms = waited.map(millis))
            }
            EventKind::Queued { strategy } => tracing::debug!(event, pipeline, strategy),
            EventKind::Rejected {
                strategy,
                rejection,
                waited,
            } => tracing::warn!(
                event,
                pipeline,
                strategy,
                rejection = ?rejection,
                waited_ms = waited.map(millis)
            ),
            EventKind::BreakerTransition { breaker, from, to } => {
                tracing::warn!(event, pipeline, breaker, from, to)
            }
            EventKind::FallbackUsed {
                fallback,
                alternative,
            } => tracing::debug!(event, pipeline, fallback, alternative),
            EventKind::HedgeFired { attempt } => tracing::debug!(event, pipeline, attempt),
        }
    }

    fn spans(&self) -> bool {
        true
    }
}

fn tags(tags: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        let _ = write!(s, "{}{k}={v}", if i == 0 { "" } else { "," });
    }
    s
}

/// The `resilient.call` span of a call (disabled if the sink asks for no spans).
pub(crate) fn call_span(sink: &Sink, deadline: Option<Duration>) -> Span {
    if !sink.spans {
        return Span::none();
    }
    tracing::span!(
        Level::INFO,
        "resilient.call",
        pipeline = &*sink.name,
        tags = tags(&sink.tags),
        deadline_ms = deadline.map(millis),
    )
}

/// The `resilient.attempt` span of the attempt `ctx` describes, if its call is observed by
/// a sink that asks for spans.
#[inline]
fn attempt_span(ctx: &Context) -> Option<Span> {
    let probe = ctx.probe.as_ref()?;
    if !probe.sink.spans {
        return None;
    }
    let left = ctx
        .deadline
        .map(|d| millis(d.saturating_duration_since(tokio::time::Instant::now())));
    Some(tracing::span!(
        Level::INFO,
        "resilient.attempt",
        pipeline = &*probe.sink.name,
        tags = tags(&probe.sink.tags),
        attempt = ctx.attempt,
        deadline_ms = left,
    ))
}

/// `op` with each attempt's future inside its `resilient.attempt` span (a disabled span
/// when the sink asks for none), for the observed path of the engine.
pub(crate) fn traced<F, Fut>(mut op: F) -> impl FnMut(&Context) -> Instrumented<Fut>
where
    F: FnMut(&Context) -> Fut,
    Fut: Future,
{
    move |ctx: &Context| op(ctx).instrument(attempt_span(ctx).unwrap_or_else(Span::none))
}
