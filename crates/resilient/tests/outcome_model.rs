//! "Does this count as a failure?" (breakers, metrics) and "should this be retried?" are
//! separate questions: the classifier answers the first, `retry_if` the second, and
//! `delay_from` reads a server-directed delay from any result, `Ok` included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::{CircuitBreaker, Error, Outcome, Pipeline, Retry};
use tokio::time::Instant;

/// An HTTP-like status as the operation's result: `Ok` below 400, `Err` from 400.
type Status = Result<u16, u16>;

fn by_status(r: &Status) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        // a 5xx (and a 429) is the dependency's failure; other 4xx are the caller's
        Err(code) if *code >= 500 || *code == 429 => Outcome::Failure,
        Err(_) => Outcome::Ignored,
    }
}

/// Runs `status` through a pipeline with 3 attempts and a per-attempt breaker that opens
/// after 3 consecutive failures; returns (attempts made, error, breaker still closed).
async fn run(status: u16, retry_if: bool) -> (u32, Error<u16>, bool) {
    let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    let builder = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .circuit_breaker(&breaker)
        .classify(by_status);
    let calls = Arc::new(AtomicU32::new(0));
    let op = {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err::<u16, u16>(status) }
        }
    };
    let err = if retry_if {
        // retry what is worth repeating: 5xx, 429 and 409 (a conflict), not 501
        let p = builder
            .retry_if(|r: &Status| matches!(r, Err(409 | 429 | 500 | 502 | 503 | 504)))
            .build()
            .unwrap();
        p.execute(op).await.unwrap_err()
    } else {
        builder.build().unwrap().execute(op).await.unwrap_err()
    };
    (calls.load(Ordering::Relaxed), err, breaker.is_ready())
}

#[tokio::test(start_paused = true)]
async fn a_404_and_a_400_are_neither_retried_nor_counted() {
    for status in [404, 400] {
        for retry_if in [false, true] {
            let (calls, err, closed) = run(status, retry_if).await;
            assert_eq!(calls, 1, "{status}");
            assert!(matches!(err, Error::Inner(s) if s == status), "{err:?}");
            assert!(closed, "{status} must not count against the dependency");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried_and_counted() {
    for retry_if in [false, true] {
        let (calls, err, closed) = run(503, retry_if).await;
        assert_eq!(calls, 3);
        assert!(
            matches!(
                err,
                Error::RetriesExhausted {
                    attempts: 3,
                    last: 503
                }
            ),
            "{err:?}"
        );
        assert!(!closed, "three 503s open the breaker");
    }
}

/// A failure the predicate does not retry (501: retrying cannot help) still counts.
#[tokio::test(start_paused = true)]
async fn a_failure_that_is_not_retried_still_counts() {
    let (calls, err, _) = run(501, true).await;
    assert_eq!(calls, 1);
    assert!(matches!(err, Error::Inner(501)), "{err:?}");
    // three such calls open the breaker
    let breaker = CircuitBreaker::consecutive_failures(3).build().unwrap();
    let p = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .circuit_breaker(&breaker)
        .classify(by_status)
        .retry_if(|r: &Status| matches!(r, Err(503)))
        .build()
        .unwrap();
    for _ in 0..3 {
        let _ = p.execute(|| async { Err::<u16, u16>(501) }).await;
    }
    assert!(!breaker.is_ready());
}

/// A 409 is retried without counting against the dependency, also for a breaker that
/// counts logical calls (per call, before `.retry`).
#[tokio::test(start_paused = true)]
async fn a_conflict_is_retried_without_counting() {
    let (calls, err, closed) = run(409, true).await;
    assert_eq!(calls, 3);
    assert!(
        matches!(
            err,
            Error::RetriesExhausted {
                attempts: 3,
                last: 409
            }
        ),
        "{err:?}"
    );
    assert!(closed);

    let per_call = CircuitBreaker::consecutive_failures(1).build().unwrap();
    let p = Pipeline::builder()
        .circuit_breaker(&per_call)
        .retry(Retry::immediate().attempts(2))
        .classify(by_status)
        .retry_if(|r: &Status| matches!(r, Err(409)))
        .build()
        .unwrap();
    let _ = p.execute(|| async { Err::<u16, u16>(409) }).await;
    assert!(
        per_call.is_ready(),
        "a call that ended on a 409 is no failure"
    );
}

/// An HTTP 429 returned as a response (`Ok`) carries `Retry-After`: the retry waits what
/// the server asked instead of its backoff; a request beyond `max_server_delay` stops
/// retrying (the caller gets the 429 at once).
#[tokio::test(start_paused = true)]
async fn a_throttled_response_directs_the_retry_delay() {
    #[derive(Debug)]
    struct Response {
        status: u16,
        retry_after: Option<Duration>,
    }
    type R = Result<Response, std::io::Error>;
    for (asked, cap, waited, status) in [
        (
            Duration::from_secs(3),
            Duration::from_secs(60),
            Duration::from_secs(3),
            200,
        ),
        (
            Duration::from_secs(90),
            Duration::from_secs(5),
            Duration::ZERO,
            429,
        ),
    ] {
        let p = Pipeline::builder()
            .retry(
                Retry::constant(Duration::from_millis(10))
                    .attempts(2)
                    .max_server_delay(cap),
            )
            .classify(|r: &R| match r {
                Ok(resp) if resp.status == 429 || resp.status >= 500 => Outcome::Failure,
                Ok(_) => Outcome::Success,
                Err(_) => Outcome::Failure,
            })
            .delay_from(|r: &R| r.as_ref().ok()?.retry_after)
            .build()
            .unwrap();
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r = p
            .execute(|| {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    Ok(Response {
                        status: if n == 0 { 429 } else { 200 },
                        retry_after: (n == 0).then_some(asked),
                    })
                }
            })
            .await;
        assert_eq!(r.unwrap().status, status);
        assert_eq!(start.elapsed(), waited);
    }
}

/// A result without a delay falls back to the backoff.
#[tokio::test(start_paused = true)]
async fn without_a_server_delay_the_backoff_applies() {
    let p = Pipeline::builder()
        .retry(Retry::constant(Duration::from_millis(250)).attempts(2))
        .delay_from(|_: &Result<(), ()>| None)
        .build()
        .unwrap();
    let start = Instant::now();
    let _ = p.execute(|| async { Err::<(), ()>(()) }).await;
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

/// `classify(..)` after `retry_if`/`delay_from` would drop them: a build error.
#[test]
fn classify_after_retry_if_is_rejected() {
    let e = Pipeline::builder()
        .retry_if(|_: &Result<(), ()>| true)
        .classify(resilient::AllErrors)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "on_retry");
}
