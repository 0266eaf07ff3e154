//! The server-side rate-limit layer in a real axum server on loopback, called with
//! reqwest: 429 with `Retry-After`, and the `RateLimit` / `RateLimit-Policy` fields on
//! admitted and refused responses, parsed with an RFC 8941 structured-field parser (`sfv`).
#![cfg(all(feature = "tower", feature = "reqwest", feature = "axum", not(loom)))]

use std::net::SocketAddr;
use std::sync::Arc;

use resilient::http::server::{RateLimitLayer, key};
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
use sfv::{BareItem, ListEntry, Parser};

/// The single member of a `RateLimit` or `RateLimit-Policy` field: its name and integer
/// parameters.
fn member(value: &str) -> (String, Vec<(String, i64)>) {
    let list = Parser::new(value)
        .parse::<sfv::List>()
        .expect("valid sf-list");
    assert_eq!(list.len(), 1, "{value}");
    let ListEntry::Item(item) = &list[0] else {
        panic!("an inner list: {value}")
    };
    let BareItem::String(name) = &item.bare_item else {
        panic!("name is not an sf-string: {value}")
    };
    let params = item
        .params
        .iter()
        .map(|(k, v)| {
            let n = v.as_integer().expect("integer parameter");
            (k.as_str().to_owned(), i64::from(n))
        })
        .collect();
    (name.as_str().to_owned(), params)
}

fn param(params: &[(String, i64)], k: &str) -> Option<i64> {
    params.iter().find(|(n, _)| n == k).map(|(_, v)| *v)
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

fn limiter() -> Arc<KeyedLimiter<String, Gcra>> {
    Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(2)).unwrap())
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn per_api_key_with_ietf_fields() {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter(), key::api_key).name("per-key"));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let get = |k: &'static str| {
        client
            .get(format!("http://{addr}/"))
            .header("x-api-key", k)
            .send()
    };

    for remaining in [1, 0] {
        let r = get("alice").await.unwrap();
        assert_eq!(r.status(), 200);
        let (name, policy) = member(r.headers()["ratelimit-policy"].to_str().unwrap());
        assert_eq!(name, "per-key");
        assert_eq!(param(&policy, "q"), Some(2));
        assert_eq!(param(&policy, "w"), Some(60));
        let (name, state) = member(r.headers()["ratelimit"].to_str().unwrap());
        assert_eq!(name, "per-key");
        assert_eq!(param(&state, "r"), Some(remaining));
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(r.text().await.unwrap(), "hello");
    }

    let r = get("alice").await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let (_, state) = member(r.headers()["ratelimit"].to_str().unwrap());
    assert_eq!(param(&state, "r"), Some(0));
    let t = param(&state, "t").expect("t on an exhausted limit");
    assert!(t >= 1, "{t}");
    member(r.headers()["ratelimit-policy"].to_str().unwrap());
    // the client policy reads the same wait back
    let wait = resilient::http::server_delay(r.headers(), std::time::SystemTime::now());
    assert_eq!(wait, Some(std::time::Duration::from_secs(retry_after)));

    // another key has its own limit; no key, no limit and no fields
    assert_eq!(get("bob").await.unwrap().status(), 200);
    for _ in 0..3 {
        let r = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit").is_none());
    }
    // a bearer token is an API key too
    let r = client
        .get(format!("http://{addr}/"))
        .bearer_auth("carol")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("ratelimit"));
}

#[tokio::test(start_paused = true)]
async fn per_client_ip_and_header() {
    let by_ip = Arc::new(
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(1)).unwrap())
            .build()
            .unwrap(),
    );
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(RateLimitLayer::new(by_ip, key::client_ip));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );

    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .layer(RateLimitLayer::new(limiter(), key::header("x-tenant")));
    let addr = serve(app).await;
    for (tenant, status) in [("a", 200), ("a", 200), ("a", 429), ("b", 200)] {
        let r = client
            .get(format!("http://{addr}/"))
            .header("x-tenant", tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{tenant}");
    }
}
