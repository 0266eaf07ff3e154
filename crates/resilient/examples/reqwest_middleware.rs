//! Scenario: a reqwest client behind a flaky API. The API sheds load with `503` and
//! `Retry-After: 1` twice before it answers; the `resilient` middleware retries the GET,
//! waits as asked, and tells the server which attempt this is and how long the client will
//! still wait (`x-attempt`, `x-request-deadline-ms`). A POST without an `Idempotency-Key`
//! is not retried.
//!
//! Run with `cargo run --example reqwest_middleware --features reqwest-middleware`;
//! `cargo test --example reqwest_middleware --features reqwest-middleware` runs its test on
//! tokio's paused clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::response::Response;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use resilient::http::middleware::RetryMiddleware;

/// Answers 503 to the first two requests, then 200, echoing the attempt header.
async fn flaky(State(count): State<Arc<AtomicUsize>>, req: Request) -> Response {
    let n = count.fetch_add(1, Ordering::SeqCst);
    let attempt = req
        .headers()
        .get("x-attempt")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let builder = Response::builder();
    let builder = if n < 2 {
        builder.status(503).header("retry-after", "1")
    } else {
        builder.status(200)
    };
    builder
        .body(format!("attempt {attempt}").into())
        .expect("valid response")
}

async fn serve() -> std::io::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .fallback(flaky)
        .with_state(count.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, count))
}

/// The client: one line of middleware, with the per-attempt headers.
fn client() -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(
            RetryMiddleware::standard()
                .attempt_header("x-attempt")
                .deadline_header("x-request-deadline-ms"),
        )
        .build()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, _) = serve().await?;
    let body = client()
        .get(format!("http://{addr}/"))
        .send()
        .await?
        .text()
        .await?;
    println!("GET: {body}");
    let post = client().post(format!("http://{addr}/")).send().await?;
    println!("POST without an idempotency key: {}", post.status());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn get_is_retried_as_the_server_asks_post_is_not() {
        let (addr, count) = serve().await.unwrap();
        let start = tokio::time::Instant::now();
        let r = client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "attempt 3");
        assert!(start.elapsed() >= Duration::from_secs(2));

        count.store(0, Ordering::SeqCst);
        let r = client()
            .post(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
