//! The tower adapter's requests: they need not be `Clone`; a copy is made only before an
//! attempt that may be retried, the last possible attempt gets the original, and a request
//! the hook cannot copy is sent once. Each request's cost and key reach the pipeline's
//! rate limiters.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use resilient::{BoxError, BoxedError, Error, Pipeline, Retry};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Not `Clone`.
#[derive(Debug)]
struct Request {
    id: u32,
    copyable: bool,
}

fn request(id: u32) -> Request {
    Request { id, copyable: true }
}

/// A hook counting the copies it makes (of copyable requests).
fn counting(copies: &Arc<AtomicU32>) -> impl Fn(&Request) -> Option<Request> + Clone + use<> {
    let copies = copies.clone();
    move |r: &Request| {
        if !r.copyable {
            return None;
        }
        copies.fetch_add(1, Ordering::SeqCst);
        Some(Request {
            id: r.id,
            copyable: true,
        })
    }
}

/// A service failing its first `failures` calls, counting all of them.
fn flaky(
    failures: u32,
    calls: &Arc<AtomicU32>,
) -> impl Service<Request, Response = u32, Error = String, Future: Send> + Clone + Send + use<> {
    let calls = calls.clone();
    service_fn(move |r: Request| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= failures {
                Err(format!("call {n} failed"))
            } else {
                Ok(r.id)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn without_a_retry_requests_are_never_copied() {
    let pipeline = Pipeline::builder().build().unwrap();
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(pipeline.layer().clone_request(counting(&copies)))
        .service(flaky(1, &calls));
    let r = svc.ready().await.unwrap().call(request(1)).await;
    assert!(matches!(r, Err(Error::Inner(_))), "{r:?}");
    assert_eq!(
        svc.ready().await.unwrap().call(request(2)).await.unwrap(),
        2
    );
    assert_eq!(copies.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_copy_is_made_only_before_an_attempt_that_may_be_retried() {
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    // Fails twice, then succeeds on the last attempt, which is sent the original.
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(pipeline.layer().clone_request(counting(&copies)))
        .service(flaky(2, &calls));
    assert_eq!(
        svc.ready().await.unwrap().call(request(7)).await.unwrap(),
        7
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(copies.load(Ordering::SeqCst), 2);

    // Every attempt fails: still two copies for three attempts.
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(pipeline.layer().clone_request(counting(&copies)))
        .service(flaky(u32::MAX, &calls));
    let r = svc.ready().await.unwrap().call(request(7)).await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 3, .. })),
        "{r:?}"
    );
    assert_eq!(copies.load(Ordering::SeqCst), 2);

    // Succeeds at once: the one copy made before the first attempt (the service takes the
    // request, so the copy must exist before it runs).
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(pipeline.layer().clone_request(counting(&copies)))
        .service(flaky(0, &calls));
    assert_eq!(
        svc.ready().await.unwrap().call(request(7)).await.unwrap(),
        7
    );
    assert_eq!(copies.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_the_hook_cannot_copy_is_sent_once_and_its_error_returned() {
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(pipeline.layer().clone_request(counting(&copies)))
        .service(flaky(u32::MAX, &calls));
    let once = Request {
        id: 1,
        copyable: false,
    };
    let r = svc.ready().await.unwrap().call(once).await;
    // The first attempt's own error, not an exhausted retry.
    assert!(
        matches!(&r, Err(Error::Inner(e)) if e == "call 1 failed"),
        "{r:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(copies.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_boxed_layer_takes_the_hook_too() {
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let (copies, calls) = (Arc::default(), Arc::default());
    let mut svc = ServiceBuilder::new()
        .layer(
            pipeline
                .layer()
                .clone_request(counting(&copies))
                .boxed_errors(),
        )
        .service(flaky(u32::MAX, &calls));
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call(request(1))
        .await
        .unwrap_err();
    let verdict = err.downcast_ref::<Error<BoxedError>>().unwrap();
    assert!(matches!(
        verdict,
        Error::RetriesExhausted { attempts: 2, .. }
    ));
    assert_eq!(copies.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// `Clone` requests keep working with the default layer, which clones the same way: only
/// before an attempt that may be retried.
#[tokio::test(start_paused = true)]
async fn clone_requests_are_cloned_only_when_a_retry_may_follow() {
    static CLONES: AtomicU32 = AtomicU32::new(0);
    #[derive(Debug)]
    struct Counted(u32);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Counted(self.0)
        }
    }
    let echo = service_fn(|c: Counted| async move { Ok::<_, std::io::Error>(c.0) });
    let plain = Pipeline::builder().build().unwrap();
    let mut svc = ServiceBuilder::new().layer(plain.layer()).service(echo);
    assert_eq!(
        svc.ready().await.unwrap().call(Counted(1)).await.unwrap(),
        1
    );
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);

    let retrying = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(retrying.layer()).service(echo);
    assert_eq!(
        svc.ready().await.unwrap().call(Counted(2)).await.unwrap(),
        2
    );
    assert_eq!(CLONES.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn each_request_brings_its_cost_and_key_to_the_limiters() {
    use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
    use std::time::Duration;

    #[derive(Debug)]
    struct Job {
        user: &'static str,
        rows: u64,
    }
    let per_user = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .build::<u64>()
        .unwrap();
    // Retries are per attempt here, so the limiter sees each attempt's cost.
    let pipeline = Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .rate_limit(per_user)
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let mut svc = ServiceBuilder::new()
        .layer(
            pipeline
                .layer()
                .clone_request(|j: &Job| Some(Job { ..*j }))
                .key(|j: &Job| j.user)
                .cost(|j: &Job| j.rows),
        )
        .service(service_fn(move |j: Job| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if j.rows == 4 {
                    Err("fails")
                } else {
                    Ok(j.rows)
                }
            }
        }));
    let mut call = async |user, rows| svc.ready().await.unwrap().call(Job { user, rows }).await;
    assert_eq!(call("ada", 7).await.unwrap(), 7);
    let over = call("ada", 5).await.unwrap_err();
    assert_eq!(over.retry_after(), Some(Duration::from_millis(200)));
    assert_eq!(over.rate_limit_info().unwrap().remaining, 3);
    assert_eq!(call("bob", 10).await.unwrap(), 10);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // 800 ms later bob has 8 units back; a failing job of 4 rows takes 4 at each of its
    // two attempts, which leaves none
    tokio::time::advance(Duration::from_millis(800)).await;
    let r = call("bob", 4).await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 2, .. })),
        "{r:?}"
    );
    let r = call("bob", 1).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}
