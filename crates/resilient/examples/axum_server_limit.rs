//! Scenario: a public axum API limits each client, by its IP address, to 3 requests a
//! minute, and its partner endpoints, by API key, to 5 a minute. The limit is one layer
//! (`resilient::http::server::RateLimitLayer`) that speaks HTTP itself: refused requests
//! get `429 Too Many Requests` with `Retry-After` and the IETF `RateLimit` /
//! `RateLimit-Policy` fields, and admitted responses carry the same fields so clients can
//! pace themselves before they are refused. No error mapping is written by hand.
//!
//! Run with `cargo run --example axum_server_limit --features axum,reqwest` (it serves on
//! a loopback port and calls itself with reqwest); `cargo test --example
//! axum_server_limit --features axum,reqwest` runs its tests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use resilient::http::server::{RateLimitLayer, key};
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};

/// The API: `/public` limited per client IP, `/partner` per API key (`Authorization:
/// Bearer KEY` or `x-api-key`; requests without a key are not limited by that layer).
fn app() -> Router {
    let per_ip = Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(3)).expect("a valid rate"))
            .build()
            .expect("a valid limiter"),
    );
    let per_key = Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5)).expect("a valid rate"))
            .build()
            .expect("a valid limiter"),
    );
    Router::new()
        .route(
            "/public",
            get(|| async { "public data\n" })
                .layer(RateLimitLayer::new(per_ip, key::client_ip).name("per-ip")),
        )
        .route(
            "/partner",
            get(|| async { "partner data\n" })
                .layer(RateLimitLayer::new(per_key, key::api_key).name("per-key")),
        )
}

/// Serves `app()` on a loopback port, with the peer address each request came from (what
/// `key::client_ip` reads).
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the server runs");
    });
    addr
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    for i in 1..=4 {
        let r = client
            .get(format!("http://{addr}/public"))
            .send()
            .await
            .expect("the server answers");
        println!(
            "public #{i}: {} ratelimit={:?} retry-after={:?}",
            r.status(),
            r.headers().get("ratelimit"),
            r.headers().get("retry-after"),
        );
    }
    let r = client
        .get(format!("http://{addr}/partner"))
        .bearer_auth("acme")
        .send()
        .await
        .expect("the server answers");
    println!(
        "partner: {} ratelimit-policy={:?}",
        r.status(),
        r.headers().get("ratelimit-policy")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(client: &reqwest::Client, url: String, key: Option<&str>) -> reqwest::Response {
        let req = client.get(url);
        let req = match key {
            Some(k) => req.header("x-api-key", k),
            None => req,
        };
        req.send().await.expect("the server answers")
    }

    fn header(r: &reqwest::Response, name: &str) -> String {
        r.headers()[name].to_str().expect("ASCII").to_owned()
    }

    #[tokio::test]
    async fn each_ip_gets_three_requests_a_minute_then_429_with_retry_after() {
        let addr = serve().await;
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/public");
        for left in [2, 1, 0] {
            let r = get(&client, url.clone(), None).await;
            assert_eq!(r.status(), 200);
            let rl = header(&r, "ratelimit");
            assert!(rl.starts_with(&format!("\"per-ip\";r={left};")), "{rl}");
            assert_eq!(header(&r, "ratelimit-policy"), "\"per-ip\";q=3;w=60");
        }
        let r = get(&client, url, None).await;
        assert_eq!(r.status(), 429);
        let wait: u64 = header(&r, "retry-after").parse().expect("delay-seconds");
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(header(&r, "ratelimit").starts_with("\"per-ip\";r=0;"));
    }

    #[tokio::test]
    async fn partner_keys_are_limited_apart_and_keyless_requests_not_at_all() {
        let addr = serve().await;
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/partner");
        for _ in 0..5 {
            assert_eq!(get(&client, url.clone(), Some("acme")).await.status(), 200);
        }
        assert_eq!(get(&client, url.clone(), Some("acme")).await.status(), 429);
        // another key has its own budget
        let other = get(&client, url.clone(), Some("globex")).await;
        assert_eq!(other.status(), 200);
        assert!(header(&other, "ratelimit").starts_with("\"per-key\";r=4;"));
        // no key: not limited by this layer, and no fields
        for _ in 0..10 {
            let r = get(&client, url.clone(), None).await;
            assert_eq!(r.status(), 200);
            assert!(r.headers().get("ratelimit").is_none());
        }
    }
}
