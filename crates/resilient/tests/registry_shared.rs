//! Two functions and a tower service using the same name share one breaker and one limiter
//! (the program's registry).

#![cfg(all(feature = "macros", feature = "tower"))]

use std::io;
use std::time::Duration;

use resilient::ratelimit::RateLimiter;
use resilient::registry;
use resilient::{CircuitBreaker, CircuitState, Error};
use tower::{ServiceBuilder, ServiceExt, service_fn};

resilient::names! {
    PAYMENTS = "payments";
}

fn define() {
    let r = registry();
    r.define_breaker(PAYMENTS, || {
        CircuitBreaker::consecutive_failures(2)
            .open_for(Duration::from_secs(60))
            .build()
    })
    .unwrap();
    r.define_limiter(PAYMENTS, || {
        RateLimiter::fixed_window(3, Duration::from_secs(10)).build()
    })
    .unwrap();
    r.define_pipeline(PAYMENTS, |r| {
        Ok(registry::builder()
            .circuit_breaker(&r.breaker(PAYMENTS)?)
            .rate_limit(&r.limiter(PAYMENTS)?)
            .build()?)
    })
    .unwrap();
}

fn answer(fail: bool) -> Result<u32, io::Error> {
    if fail {
        Err(io::Error::from(io::ErrorKind::ConnectionReset))
    } else {
        Ok(7)
    }
}

/// Builds its own pipeline from the registry's breaker and limiter.
#[resilient::circuit(breaker = PAYMENTS)]
#[resilient::rate_limit(limiter = "payments", scope = call)]
async fn charge(fail: bool) -> Result<u32, io::Error> {
    answer(fail)
}

/// Runs through the registry's pipeline of the name.
#[resilient::pattern("payments")]
async fn refund(fail: bool) -> Result<u32, io::Error> {
    answer(fail)
}

async fn service(fail: bool) -> Result<u32, Error<io::Error>> {
    let pipeline = registry().pipeline(PAYMENTS).unwrap();
    let svc = ServiceBuilder::new()
        .layer(pipeline.layer())
        .service(service_fn(|fail: bool| async move { answer(fail) }));
    svc.oneshot(fail).await
}

fn limited<T: std::fmt::Debug>(r: Result<T, Error<io::Error>>) -> bool {
    matches!(r, Err(Error::RateLimited { .. }))
}

fn open<T: std::fmt::Debug>(r: Result<T, Error<io::Error>>) -> bool {
    matches!(r, Err(Error::CircuitOpen { .. }))
}

#[tokio::test(start_paused = true)]
async fn two_functions_and_a_service_share_one_breaker_and_one_limiter() {
    define();

    // One limiter: 3 calls per window between the three users.
    assert_eq!(charge(false).await.unwrap(), 7);
    assert_eq!(refund(false).await.unwrap(), 7);
    assert_eq!(service(false).await.unwrap(), 7);
    assert!(limited(charge(false).await));
    assert!(limited(refund(false).await));
    assert!(limited(service(false).await));

    // One breaker: two failures through `charge` open it for all three.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(charge(true).await, Err(Error::Inner(_))));
    assert_eq!(
        registry().breaker(PAYMENTS).unwrap().state(),
        CircuitState::Closed
    );
    assert!(matches!(refund(true).await, Err(Error::Inner(_))));
    assert_eq!(
        registry().breaker(PAYMENTS).unwrap().state(),
        CircuitState::Open
    );
    assert!(open(charge(false).await));
    assert!(open(refund(false).await));
    assert!(open(service(false).await));
    // the breaker rejected those before the limiter: its window still has a unit
    assert_eq!(registry().limiter(PAYMENTS).unwrap().allow(), Ok(()));
}

static OWN: std::sync::LazyLock<registry::Registry> = std::sync::LazyLock::new(|| {
    let r = registry::Registry::new();
    r.define_pipeline("local", |_| {
        Ok(registry::builder()
            .retry(resilient::Retry::immediate().attempts(3))
            .build()?)
    })
    .unwrap();
    r
});

static LOCAL_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A blocking function through a pipeline of an owned registry.
#[resilient::pattern("local", registry = OWN)]
fn parse_local(text: &str) -> Result<u32, std::num::ParseIntError> {
    LOCAL_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    text.parse()
}

#[test]
fn a_blocking_function_uses_a_pipeline_of_an_owned_registry() {
    assert_eq!(parse_local("42").unwrap(), 42);
    assert!(matches!(
        parse_local("x"),
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(LOCAL_CALLS.load(std::sync::atomic::Ordering::SeqCst), 1 + 3);
    // the program's registry has no such name
    assert!(registry().pipeline("local").is_err());
}

#[resilient::pattern("no-such-pipeline")]
async fn unknown() -> Result<(), io::Error> {
    Ok(())
}

#[tokio::test]
async fn an_unknown_name_panics_with_the_known_names() {
    let panic = tokio::spawn(unknown()).await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("no pipeline named `no-such-pipeline`"),
        "{message}"
    );
    assert!(message.contains("network"), "{message}");
}
