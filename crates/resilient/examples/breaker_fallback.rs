//! Scenario: a product page shows a price from a pricing service behind a circuit breaker;
//! when the service fails or the breaker is open, the page shows the last known price
//! instead, and counts how often it had to. Written twice, with the builder and with
//! attributes, the same strategies in both.
//!
//! Run with `cargo run --example breaker_fallback`; `cargo test --example breaker_fallback`
//! runs its tests on tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use resilient::fallback::Fallback;
use resilient::{CircuitBreaker, Error, Pipeline};

/// The pricing service: up or down, and how often it was called.
static SERVICE_UP: AtomicBool = AtomicBool::new(true);
static SERVICE_CALLS: AtomicU32 = AtomicU32::new(0);
/// Answers that came from the fallback.
static DEGRADED: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, PartialEq)]
struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pricing service unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// The last known price (a real service would keep a cache).
const LAST_KNOWN: u32 = 1999;

async fn fetch_price(item: u32) -> Result<u32, Unavailable> {
    SERVICE_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    if SERVICE_UP.load(Ordering::SeqCst) {
        Ok(1000 + item)
    } else {
        Err(Unavailable)
    }
}

/// The builder style: a breaker that opens after 3 failures in a row for 30 s, and a
/// fallback to the last known price around the pipeline.
fn builder_style()
-> Result<(Pipeline, Fallback<u32, Unavailable>, CircuitBreaker), resilient::ConfigError> {
    let breaker = CircuitBreaker::consecutive_failures(3)
        .open_for(Duration::from_secs(30))
        .build()?;
    let pipeline = Pipeline::builder().circuit_breaker(&breaker).build()?;
    let fallback = Fallback::builder()
        .name("price")
        .on_fallback(|_| {
            DEGRADED.fetch_add(1, Ordering::SeqCst);
        })
        .or_value(LAST_KNOWN)
        .build()?;
    Ok((pipeline, fallback, breaker))
}

/// The attribute style.
#[resilient::circuit(consecutive_failures = 3, open_for = "30s")]
#[resilient::fallback(with = last_known_price)]
async fn price(item: u32) -> Result<u32, Unavailable> {
    fetch_price(item).await
}

async fn last_known_price(_failure: Error<Unavailable>) -> Result<u32, Error<Unavailable>> {
    DEGRADED.fetch_add(1, Ordering::SeqCst);
    Ok(LAST_KNOWN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (pipeline, fallback, breaker) = builder_style()?;
    for (round, up) in [
        (1, true),
        (2, false),
        (3, false),
        (4, false),
        (5, false),
        (6, true),
    ] {
        SERVICE_UP.store(up, Ordering::SeqCst);
        let by_builder = pipeline
            .execute_with_fallback(&fallback, || fetch_price(7))
            .await?;
        let by_attribute = price(7).await?;
        println!(
            "round {round}: service {}: price {by_builder} (builder), {by_attribute} \
             (attribute); breaker {:?}",
            if up { "up" } else { "down" },
            breaker.state()
        );
    }
    println!(
        "{} calls reached the service, {} answers were degraded",
        SERVICE_CALLS.load(Ordering::SeqCst),
        DEGRADED.load(Ordering::SeqCst)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilient::circuit::CircuitState;

    /// Both styles: live prices while the service is up; the last known price while it is
    /// down, first after the failure and then from the open breaker without calling the
    /// service; live prices again once the breaker lets a probe through.
    #[tokio::test(start_paused = true)]
    async fn the_page_always_gets_a_price_and_the_breaker_spares_the_service() {
        let (pipeline, fallback, breaker) = builder_style().unwrap();
        let builder = |item| pipeline.execute_with_fallback(&fallback, move || fetch_price(item));

        SERVICE_UP.store(true, Ordering::SeqCst);
        assert_eq!(builder(7).await.unwrap(), 1007);
        assert_eq!(price(7).await.unwrap(), 1007);

        SERVICE_UP.store(false, Ordering::SeqCst);
        let before = SERVICE_CALLS.load(Ordering::SeqCst);
        for _ in 0..10 {
            assert_eq!(builder(7).await.unwrap(), LAST_KNOWN);
            assert_eq!(price(7).await.unwrap(), LAST_KNOWN);
        }
        // three failures each opened the breakers; the other calls never reached the service
        assert_eq!(SERVICE_CALLS.load(Ordering::SeqCst) - before, 6);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(DEGRADED.load(Ordering::SeqCst), 20);

        // the service recovers; after the break the probe succeeds and prices are live
        SERVICE_UP.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(builder(7).await.unwrap(), 1007);
        assert_eq!(price(7).await.unwrap(), 1007);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
