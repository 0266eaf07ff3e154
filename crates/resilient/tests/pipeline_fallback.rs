//! The builder's `.fallback(..)` step: the chain is the pipeline's outermost phase (outside
//! the request timeout, the per-call guards and the retries), shown first in `stages()`,
//! not run on success, and kept whole when every alternative fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::{
    CircuitBreaker, Error, Outcome, Pipeline, Retry, RetryEvent, Timeout, TimeoutScope,
};

fn counted(value: &'static str) -> (Fallback<&'static str, &'static str>, Arc<AtomicUsize>) {
    let used = Arc::new(AtomicUsize::new(0));
    let seen = used.clone();
    let fallback = Fallback::builder()
        .on_fallback(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .or_value(value)
        .build()
        .unwrap();
    (fallback, used)
}

#[test]
fn stages_show_the_fallback_as_the_outermost_phase_wherever_it_is_written() {
    let (fallback, _) = counted("x");
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_secs(1)))
        .retry(Retry::immediate().attempts(2))
        .bulkhead(resilient::Bulkhead::builder(4))
        .fallback(fallback)
        .build()
        .unwrap();
    assert_eq!(p.stages()[0], "fallback(outermost)");
    assert_eq!(p.stages().len(), 4);
    assert!(p.stages()[1].starts_with("Request"), "{:?}", p.stages());
}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_after_the_request_timeout_fired() {
    let (fallback, used) = counted("cached");
    let p = Pipeline::builder()
        .timeout(Timeout::request(Duration::from_millis(100)))
        .fallback(fallback)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let r = p.execute(std::future::pending::<Result<&str, &str>>).await;
    assert_eq!(r, Ok("cached"));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(used.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn success_never_runs_the_fallback() {
    let (fallback, used) = counted("cached");
    let p = Pipeline::builder().fallback(fallback).build().unwrap();
    for _ in 0..10 {
        assert_eq!(
            p.execute(|| async { Ok::<_, &str>("live") }).await,
            Ok("live")
        );
    }
    assert_eq!(used.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn retries_run_first_then_the_chain_with_every_cause_when_all_fail() {
    let calls = Arc::new(AtomicUsize::new(0));
    let fallback = Fallback::builder()
        .or_else(|failure: Error<&str>| async move {
            assert!(matches!(
                failure,
                Error::RetriesExhausted { attempts: 3, .. }
            ));
            Err(Error::Inner("secondary down"))
        })
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .fallback(fallback)
        .build()
        .unwrap();
    let c = calls.clone();
    let r: Result<u8, _> = p
        .execute(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err("primary down") }
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let Err(Error::Fallback { failures }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[1], Error::Inner("secondary down"));
}

#[tokio::test]
async fn a_breaker_rejection_is_answered_and_unhandled_failures_pass_through() {
    let breaker = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let p = Pipeline::builder()
        .circuit_breaker(&breaker)
        .fallback(
            Fallback::builder()
                .handle(|e: &Error<&str>| e.is_transient())
                .or_value(0u32)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // the caller's own error is not handled: returned as it is, and it opens the breaker
    let first = p.execute(|| async { Err::<u32, _>("bad request") }).await;
    assert_eq!(first, Err(Error::Inner("bad request")));
    // the open breaker's rejection is transient: answered
    let second = p.execute(|| async { Ok::<u32, &str>(7) }).await;
    assert_eq!(second, Ok(0));
}

#[tokio::test]
async fn hooks_after_the_fallback_keep_it_and_classify_after_it_is_refused() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let h = hooked.clone();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .fallback(Fallback::builder().or_value(1u8).build().unwrap())
        .on_retry(move |_: &RetryEvent<'_>, _| {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(p.execute(|| async { Err::<u8, ()>(()) }).await, Ok(1));
    assert_eq!(hooked.load(Ordering::SeqCst), 1);

    let err = Pipeline::builder()
        .fallback(Fallback::<u8, ()>::builder().or_value(1u8).build().unwrap())
        .classify(|_: &Result<u8, ()>| Outcome::Success)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "on_retry");
}

#[tokio::test(start_paused = true)]
async fn cancellation_is_not_answered_by_default() {
    let p = Pipeline::builder()
        .fallback(Fallback::builder().or_value(1u8).build().unwrap())
        .build()
        .unwrap();
    let token = resilient::CancellationToken::new();
    token.cancel();
    let r = p
        .execute_cancellable(&token, std::future::pending::<Result<u8, ()>>)
        .await;
    assert_eq!(r, Err(Error::Cancelled));
    let _ = TimeoutScope::Request;
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn the_pipeline_layer_runs_the_fallback_too() {
    use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    let p = Pipeline::builder()
        .fallback(Fallback::builder().or_value("cached").build().unwrap())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(p.layer())
        .service(service_fn(|_: u8| async { Err::<&str, &str>("down") }));
    assert_eq!(svc.ready().await.unwrap().call(1).await, Ok("cached"));
}
