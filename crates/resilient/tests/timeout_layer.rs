//! The timeout's own tower layer (`Timeout::layer`): it fires at the limit counted from the
//! response future's first poll, drops the inner future when it does, reports its scope
//! and the time spent, and leaves fast and failed responses as they are.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilient::{Error, Timeout, TimeoutScope};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A service that sleeps `ms` then answers it (or fails with it when odd and short).
fn sleeper(
    dropped: Arc<AtomicBool>,
) -> impl Service<u64, Response = u64, Error = u64, Future = impl Future<Output = Result<u64, u64>>>
+ Clone {
    service_fn(move |ms: u64| {
        let flag = DropFlag(dropped.clone());
        async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ms % 2 == 1 { Err(ms) } else { Ok(ms) }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn fires_at_the_limit_and_drops_the_inner_future() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServiceBuilder::new()
        .layer(Timeout::operation(Duration::from_millis(100)).layer())
        .service(sleeper(dropped.clone()));
    let start = Instant::now();
    let r = svc.ready().await.unwrap().call(1_000).await;
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    match r {
        Err(Error::Timeout { scope, elapsed }) => {
            assert_eq!(scope, TimeoutScope::Operation);
            assert_eq!(elapsed, Duration::from_millis(100));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn responses_within_the_limit_pass_through() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServiceBuilder::new()
        .layer(Timeout::request(Duration::from_millis(100)).layer())
        .service(sleeper(dropped));
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 0);
    assert_eq!(svc.ready().await.unwrap().call(98).await.unwrap(), 98);
    let r = svc.ready().await.unwrap().call(99).await;
    assert!(matches!(r, Err(Error::Inner(99))), "{r:?}");
    // a request timeout says so
    let r = svc.ready().await.unwrap().call(200).await;
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                scope: TimeoutScope::Request,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_limit_counts_from_the_first_poll() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServiceBuilder::new()
        .layer(Timeout::operation(Duration::from_millis(100)).layer())
        .service(sleeper(dropped));
    let fut = svc.ready().await.unwrap().call(80);
    // time passes between `call` and the first poll: not counted
    tokio::time::advance(Duration::from_millis(60)).await;
    let start = Instant::now();
    assert_eq!(fut.await.unwrap(), 80);
    assert_eq!(start.elapsed(), Duration::from_millis(80));
}

#[tokio::test(start_paused = true)]
async fn a_limit_beyond_the_horizon_never_fires() {
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = ServiceBuilder::new()
        .layer(Timeout::operation(Duration::MAX).layer())
        .service(sleeper(dropped));
    let long = 1000 * 3600 * 24 * 365 * 200; // two centuries, in milliseconds
    assert_eq!(svc.ready().await.unwrap().call(long).await.unwrap(), long);
}
