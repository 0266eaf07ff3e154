//! Scenario: an axum API limits each client (by its `x-api-key` header) to 2 requests a
//! second and answers the rest with `429 Too Many Requests`, a `Retry-After` header and the
//! IETF `RateLimit` / `RateLimit-Policy` headers, all written from the limiter's error.
//! Written twice: as a tower layer in front of a route (the builder style) and as the
//! `#[resilient::rate_limit(key = ..)]` attribute on the function a handler calls.
//!
//! Run with `cargo run --example axum_rate_limit --features http-headers` (it serves on a
//! loopback port, makes a few requests with a hyper client and prints the answers);
//! `cargo test --example axum_rate_limit --features http-headers` runs its tests on
//! tokio's paused clock.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use resilient::Error;
use resilient::ratelimit::headers::write_rejection_headers;
use resilient::ratelimit::{Gcra, KeyedLimiter, Rate};
use tower::ServiceBuilder;

/// The client's key: its `x-api-key` header (requests without one share a key).
fn api_key(headers: &HeaderMap) -> String {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

/// Any resilience error as an HTTP answer: a rate-limit rejection is a 429 with the
/// headers the limiter's state gives; anything else a 503.
fn rejection(err: &Error<Infallible>) -> Response {
    let status = match err {
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = (status, err.to_string()).into_response();
    if let Some(Ok(headers)) = write_rejection_headers("per-key", err) {
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

async fn item(Path(id): Path<u64>) -> String {
    format!("item {id}")
}

/// The builder style: a keyed limiter as a tower layer; axum's `HandleErrorLayer` turns
/// its rejections into answers.
fn layered_routes() -> Router {
    let per_key = KeyedLimiter::builder(Gcra::new(Rate::per_second(2)).expect("a valid rate"))
        .max_keys(100_000)
        .build::<String>()
        .expect("a valid limiter")
        .layer(|req: &Request<axum::body::Body>| api_key(req.headers()));
    Router::new().route("/v1/items/{id}", get(item)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|err: Error<Infallible>| async move {
                rejection(&err)
            }))
            .layer(per_key),
    )
}

/// The attribute style: the handler asks the limited function for a turn.
#[resilient::rate_limit(rate = 2, per = "1s", key = key)]
async fn admit(key: &str) -> Result<(), Infallible> {
    Ok(())
}

async fn item_v2(headers: HeaderMap, Path(id): Path<u64>) -> Response {
    match admit(&api_key(&headers)).await {
        Ok(()) => format!("item {id}").into_response(),
        Err(err) => rejection(&err),
    }
}

fn app() -> Router {
    layered_routes().route("/v2/items/{id}", get(item_v2))
}

/// Serves the app on a loopback port.
async fn serve() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app()).await });
    Ok(addr)
}

/// A GET with an API key: the status and the rate-limit headers of the answer.
async fn get_as(addr: SocketAddr, path: &str, key: &str) -> (StatusCode, Vec<(String, String)>) {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::get(format!("http://{addr}{path}"))
        .header("x-api-key", key)
        .body(Empty::new())
        .expect("a valid request");
    let response = client.request(request).await.expect("the server answers");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("ratelimit")
                || name.starts_with("x-ratelimit")
                || name == "retry-after"
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    (response.status(), headers)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = serve().await?;
    for path in ["/v1/items/7", "/v2/items/7"] {
        for (n, key) in ["alice", "alice", "alice", "bob"].iter().enumerate() {
            let (status, headers) = get_as(addr, path, key).await;
            println!("{path} #{} as {key}: {status} {headers:?}", n + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Both styles: two requests a second per key, the third answered 429 with the
    /// headers; another key is not affected; after the wait the key is served again.
    #[tokio::test(start_paused = true)]
    async fn each_key_gets_its_own_limit_and_429_carries_the_headers() {
        let addr = serve().await.unwrap();
        for (path, carol) in [("/v1/items/1", "carol-v1"), ("/v2/items/1", "carol-v2")] {
            assert_eq!(get_as(addr, path, carol).await.0, StatusCode::OK, "{path}");
            assert_eq!(get_as(addr, path, carol).await.0, StatusCode::OK, "{path}");
            let (status, headers) = get_as(addr, path, carol).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert_eq!(
                header(&headers, "retry-after"),
                Some("1"),
                "{path}: {headers:?}"
            );
            assert_eq!(
                header(&headers, "ratelimit-policy"),
                Some(r#""per-key";q=2;w=1"#),
                "{path}: {headers:?}"
            );
            assert_eq!(
                header(&headers, "ratelimit"),
                Some(r#""per-key";r=0;t=1"#),
                "{path}: {headers:?}"
            );
            // another key has its own limit
            let dave = format!("dave{path}");
            assert_eq!(get_as(addr, path, &dave).await.0, StatusCode::OK);
            // half a second later carol has one request again
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(get_as(addr, path, carol).await.0, StatusCode::OK, "{path}");
            assert_eq!(
                get_as(addr, path, carol).await.0,
                StatusCode::TOO_MANY_REQUESTS,
                "{path}"
            );
        }
    }
}
