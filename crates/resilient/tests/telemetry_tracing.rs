//! Feature `tracing`: a span per call and per attempt with the pipeline's name, tags,
//! deadline and attempt, and an event per telemetry event inside them, as a `tracing`
//! subscriber (here a capturing layer) sees them.
#![cfg(feature = "tracing")]

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::telemetry::tracing::Tracing;
use resilient::{Error, Pipeline, Retry, Timeout};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

/// Captures `span <name><fields>` when a span opens and `event <fields> in <span>` for
/// events, naming the innermost span they happened in.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        self.0
            .lock()
            .unwrap()
            .push(format!("span {}{}", attrs.metadata().name(), f.0));
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let within = ctx
            .event_span(event)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push(format!("event{} in {within}", f.0));
    }
}

#[test]
fn calls_and_attempts_are_spans_with_events_inside() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let p = Pipeline::builder()
                .name("users")
                .tag("region", "eu")
                .timeout(Timeout::request(Duration::from_secs(2)))
                .retry(Retry::constant(Duration::from_millis(100)).attempts(2))
                .observer(Tracing)
                .build()
                .unwrap();
            let mut first = true;
            let r: Result<u32, Error<&str>> = p
                .execute(|| {
                    let fail = std::mem::take(&mut first);
                    async move {
                        tracing::info!(inside = "operation");
                        if fail { Err("flaky") } else { Ok(7) }
                    }
                })
                .await;
            assert_eq!(r.unwrap(), 7);
        })
    });
    let lines = capture.0.lock().unwrap().clone();
    let expected = [
        "span resilient.call pipeline=\"users\" tags=\"region=eu\" deadline_ms=2000.0",
        "event event=\"call_started\" pipeline=\"users\" deadline_ms=2000.0 in resilient.call",
        "span resilient.attempt pipeline=\"users\" tags=\"region=eu\" attempt=1 deadline_ms=2000.0",
        "event inside=\"operation\" in resilient.attempt",
        "event event=\"attempt_finished\" pipeline=\"users\" attempt=1 outcome=\"failure\" duration_ms=0.0 in resilient.call",
        "event event=\"retry_scheduled\" pipeline=\"users\" attempt=1 delay_ms=100.0 reason=Error in resilient.call",
    ];
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(lines.get(i).map(String::as_str), Some(*e), "{lines:#?}");
    }
    assert!(
        lines.contains(&"span resilient.attempt pipeline=\"users\" tags=\"region=eu\" attempt=2 deadline_ms=1900.0".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.last().unwrap().starts_with(
            "event event=\"call_finished\" pipeline=\"users\" outcome=\"success\" attempts=2"
        ),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn without_the_tracing_observer_no_span_is_opened() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let p = Pipeline::builder().name("quiet").build().unwrap();
    p.execute(|| async { Ok::<_, ()>(()) }).await.unwrap();
    assert!(capture.0.lock().unwrap().is_empty());
}
