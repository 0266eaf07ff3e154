//! Fallback chains: order, the failure each alternative receives, the chain of causes when
//! all fail, which failures are handled, events, the outermost placement around a pipeline,
//! and nothing left behind when calls are dropped mid-way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::{Bulkhead, Error, Pipeline, Timeout, TimeoutScope};

#[derive(Debug, Clone, PartialEq)]
struct Down(&'static str);

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is down", self.0)
    }
}

impl std::error::Error for Down {}

#[tokio::test]
async fn alternatives_run_in_order_each_given_the_failure_before_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let fallback = Fallback::builder()
        .or_else(move |failure: Error<Down>| {
            s1.lock()
                .unwrap()
                .push(format!("secondary after {failure:?}"));
            async { Err(Error::CircuitOpen { retry_after: None }) }
        })
        .or_else(move |failure: Error<Down>| {
            s2.lock()
                .unwrap()
                .push(format!("tertiary after {failure:?}"));
            async { Err(Error::Inner(Down("tertiary"))) }
        })
        .build()
        .unwrap();
    let result: Result<u8, _> = fallback.call(|| async { Err(Down("primary")) }).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "secondary after Inner(Down(\"primary\"))",
            "tertiary after CircuitOpen { retry_after: None }",
        ]
    );
    let Err(Error::Fallback { failures }) = result else {
        panic!("{result:?}")
    };
    assert_eq!(failures.len(), 3);
    assert!(
        matches!(failures[0], Error::Rejected { .. }),
        "the primary's error was handed on"
    );
    assert!(matches!(failures[1], Error::CircuitOpen { .. }));
    assert_eq!(failures[2], Error::Inner(Down("tertiary")));
    // the caller's own error is the last one, also through the accessors
    let err = Error::Fallback { failures };
    assert_eq!(err.inner(), Some(&Down("tertiary")));
    assert_eq!(
        err.to_string(),
        "the call and its 2 fallback alternatives failed"
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(source, "tertiary is down");
    assert_eq!(err.into_inner(), Some(Down("tertiary")));
}

#[tokio::test]
async fn the_first_success_wins_and_later_alternatives_do_not_run() {
    let later = Arc::new(AtomicUsize::new(0));
    let l = later.clone();
    let fallback = Fallback::builder()
        .or_else(|_: Error<Down>| async { Ok(2) })
        .or_else(move |_: Error<Down>| {
            l.fetch_add(1, Ordering::SeqCst);
            async { Ok(3) }
        })
        .build()
        .unwrap();
    assert_eq!(fallback.call(|| async { Ok(1) }).await.unwrap(), 1);
    assert_eq!(fallback.call(|| async { Err(Down("p")) }).await.unwrap(), 2);
    assert_eq!(later.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unhandled_failures_and_cancellation_pass_through() {
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    let only_unavailable = Fallback::builder()
        .handle(|e: &Error<Down>| e.is_transient())
        .or_else(move |_| {
            u.fetch_add(1, Ordering::SeqCst);
            async { Ok(0) }
        })
        .build()
        .unwrap();
    // the caller's own error is not handled here
    let r = only_unavailable.call(|| async { Err(Down("p")) }).await;
    assert_eq!(r, Err(Error::Inner(Down("p"))));
    assert_eq!(used.load(Ordering::SeqCst), 0);
    // a rejection is
    let r = only_unavailable
        .run(async { Err(Error::BulkheadFull) })
        .await;
    assert_eq!(r, Ok(0));
    // an alternative's unhandled failure is returned as it is
    let strict = Fallback::builder()
        .handle(|e: &Error<Down>| e.is_transient())
        .or_else(|_| async { Err(Error::Inner(Down("secondary"))) })
        .or_value(9)
        .build()
        .unwrap();
    let r = strict.run(async { Err(Error::BulkheadFull) }).await;
    assert_eq!(r, Err(Error::Inner(Down("secondary"))));
    // by default, everything but the caller's cancellation
    let default = Fallback::<u8, Down>::builder().or_value(1).build().unwrap();
    assert_eq!(
        default.run(async { Err(Error::Cancelled) }).await,
        Err(Error::Cancelled)
    );
    assert_eq!(default.run(async { Err(Error::BulkheadFull) }).await, Ok(1));
}

#[tokio::test]
async fn each_use_of_an_alternative_is_reported() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let fallback = Fallback::builder()
        .name("prices")
        .on_fallback(move |ev| {
            e.lock()
                .unwrap()
                .push((ev.name, ev.alternative, ev.failure.to_string()))
        })
        .or_else(|_: Error<Down>| async { Err(Error::BulkheadFull) })
        .or_value(5)
        .build()
        .unwrap();
    assert_eq!(
        fallback.call(|| async { Err(Down("db")) }).await.unwrap(),
        5
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            ("prices", 1, "db is down".to_string()),
            ("prices", 2, "bulkhead full".to_string())
        ]
    );
}

/// Around a pipeline the fallback is the outermost phase: it answers after the request
/// timeout has fired, and its own alternative is not bound by that timeout.
#[tokio::test(start_paused = true)]
async fn around_a_pipeline_the_fallback_runs_after_the_request_timeout() {
    let pipeline = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_millis(100)))
        .build()
        .unwrap();
    let fallback = Fallback::builder()
        .or_else(|failure: Error<Down>| async move {
            assert!(matches!(
                failure,
                Error::Timeout {
                    scope: TimeoutScope::Request,
                    ..
                }
            ));
            // slower than the request timeout, and still answered
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok("from the cache")
        })
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let r = pipeline
        .execute_with_fallback(&fallback, || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok("live")
        })
        .await;
    assert_eq!(r.unwrap(), "from the cache");
    assert_eq!(start.elapsed(), Duration::from_millis(600));
}

/// 1,000 calls dropped while their primary or their alternative holds a bulkhead slot:
/// every slot comes back and no task is left.
#[tokio::test(start_paused = true)]
async fn dropped_fallback_calls_leave_nothing_behind() {
    let primary_slots = Bulkhead::builder(2000).build().unwrap();
    let secondary_slots = Bulkhead::builder(2000).build().unwrap();
    let primary = Pipeline::builder()
        .bulkhead(&primary_slots)
        .build()
        .unwrap();
    let secondary = Pipeline::builder()
        .bulkhead(&secondary_slots)
        .build()
        .unwrap();
    let fallback = {
        let secondary = secondary.clone();
        Fallback::builder()
            .or_else(move |_: Error<Down>| {
                let secondary = secondary.clone();
                async move {
                    secondary
                        .execute(|| async {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            Ok::<_, Down>(2)
                        })
                        .await
                }
            })
            .build()
            .unwrap()
    };
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let (primary, fallback) = (primary.clone(), fallback.clone());
            tokio::spawn(async move {
                primary
                    .execute_with_fallback(&fallback, || async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if i % 2 == 0 {
                            Err(Down("primary"))
                        } else {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            Ok(1)
                        }
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // half are in their primary, half in their alternative
    assert_eq!(primary_slots.in_flight(), 500);
    assert_eq!(secondary_slots.in_flight(), 500);
    for c in &calls {
        c.abort();
    }
    for c in calls {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    assert_eq!(primary_slots.in_flight(), 0);
    assert_eq!(secondary_slots.in_flight(), 0);
}

/// As a tower layer, outermost around a pipeline's layer: a request that runs out of its
/// request timeout is answered by the chain.
#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn as_a_tower_layer_it_answers_the_pipeline_layers_failures() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    let pipeline = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_millis(100)))
        .build()
        .unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let u = used.clone();
    let fallback = Fallback::builder()
        .on_fallback(move |_| {
            u.fetch_add(1, Ordering::SeqCst);
        })
        .or_value(0u64)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(fallback.layer())
        .layer(pipeline.layer())
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Down>(ms)
        }));
    assert_eq!(svc.ready().await.unwrap().call(10).await.unwrap(), 10);
    assert_eq!(svc.ready().await.unwrap().call(500).await.unwrap(), 0);
    assert_eq!(used.load(Ordering::SeqCst), 1);
}

/// The layer's own future: a success and an unhandled failure pass through without the
/// chain; a handled failure runs the alternatives in order (with the failure each gets); a
/// response dropped while an alternative runs drops that alternative.
#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn as_a_tower_layer_only_handled_failures_reach_the_chain() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let tried = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (t, d) = (tried.clone(), dropped.clone());
    let fallback = Fallback::builder()
        .handle(|e: &Error<Down>| !matches!(e, Error::Inner(Down("fatal"))))
        .or_else(move |failure: Error<Down>| {
            t.fetch_add(1, Ordering::SeqCst);
            let flag = Flag(d.clone());
            async move {
                let _flag = flag;
                match failure {
                    Error::Inner(Down("slow")) => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(1)
                    }
                    _ => Err(Error::Inner(Down("secondary"))),
                }
            }
        })
        .or_value(2u32)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(fallback.layer())
        .service(service_fn(|name: &'static str| async move {
            match name {
                "ok" => Ok(0u32),
                other => Err(Error::Inner(Down(other))),
            }
        }));
    assert_eq!(svc.ready().await.unwrap().call("ok").await.unwrap(), 0);
    let r = svc.ready().await.unwrap().call("fatal").await;
    assert_eq!(r.unwrap_err(), Error::Inner(Down("fatal")));
    assert_eq!(tried.load(Ordering::SeqCst), 0, "no alternative tried yet");
    // the first alternative fails, the value answers
    assert_eq!(svc.ready().await.unwrap().call("primary").await.unwrap(), 2);
    assert_eq!(tried.load(Ordering::SeqCst), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // dropped while the first alternative sleeps: it is dropped too
    let fut = svc.ready().await.unwrap().call("slow");
    let r = tokio::time::timeout(Duration::from_secs(1), fut).await;
    assert!(r.is_err());
    assert_eq!(tried.load(Ordering::SeqCst), 2);
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}
