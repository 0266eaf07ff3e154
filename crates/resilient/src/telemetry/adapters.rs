//! Observers for the strategies that run outside a pipeline's engine (hedges, fallbacks):
//! their own hooks, translated into the pipeline's [`Event`]s.

use std::sync::Arc;

use crate::engine::error::Error;
use crate::engine::telemetry::{Event, EventKind, SharedObserver};
use crate::fallback::FallbackEvent;
use crate::hedge::HedgeEvent;

/// A [`HedgeBuilder::on_event`](crate::hedge::HedgeBuilder::on_event) hook that reports
/// every started hedge to `observer` as [`EventKind::HedgeFired`] of pipeline `pipeline`.
///
/// ```
/// use resilient::hedge::Hedge;
/// use resilient::telemetry::{hedge_observer, Event, SharedObserver};
/// use std::sync::Arc;
/// use std::time::Duration;
/// let observer: SharedObserver = Arc::new(|e: &Event<'_>| eprintln!("{e:?}"));
/// let hedge = Hedge::delayed(Duration::from_millis(50))
///     .on_event(hedge_observer(observer, "search"))
///     .build()
///     .unwrap();
/// # let _ = hedge;
/// ```
pub fn hedge_observer(
    observer: SharedObserver,
    pipeline: impl Into<Arc<str>>,
) -> impl Fn(&HedgeEvent) + Send + Sync + 'static {
    let pipeline = pipeline.into();
    move |e: &HedgeEvent| {
        if let HedgeEvent::Started { attempt } = *e {
            crate::engine::telemetry::deliver(
                &*observer,
                &Event {
                    pipeline: &pipeline,
                    tags: &[],
                    kind: EventKind::HedgeFired { attempt },
                },
            );
        }
    }
}

/// A [`FallbackBuilder::on_fallback`](crate::fallback::FallbackBuilder::on_fallback) hook
/// that reports every alternative used to `observer` as [`EventKind::FallbackUsed`] of
/// pipeline `pipeline`.
///
/// ```
/// use resilient::fallback::Fallback;
/// use resilient::telemetry::{fallback_observer, Event, SharedObserver};
/// use std::sync::Arc;
/// let observer: SharedObserver = Arc::new(|e: &Event<'_>| eprintln!("{e:?}"));
/// let fallback = Fallback::<String, ()>::builder()
///     .or_value("cached".to_string())
///     .on_fallback(fallback_observer(observer, "prices"))
///     .build()
///     .unwrap();
/// # let _ = fallback;
/// ```
pub fn fallback_observer<E>(
    observer: SharedObserver,
    pipeline: impl Into<Arc<str>>,
) -> impl Fn(&FallbackEvent<'_, E>) + Send + Sync + 'static {
    let pipeline = pipeline.into();
    move |e: &FallbackEvent<'_, E>| {
        let _: &Error<E> = e.failure;
        crate::engine::telemetry::deliver(
            &*observer,
            &Event {
                pipeline: &pipeline,
                tags: &[],
                kind: EventKind::FallbackUsed {
                    fallback: e.name,
                    alternative: e.alternative,
                },
            },
        );
    }
}
