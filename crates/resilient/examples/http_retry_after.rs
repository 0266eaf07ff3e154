//! Scenario: an HTTP API that sheds load answers `503 Service Unavailable` or
//! `429 Too Many Requests` with a `Retry-After` header. HTTP clients return those as
//! `Ok(response)`, so the retry must judge the response, not only errors, and wait as long
//! as the server asks instead of its own backoff. Written three ways: the `resilient::http`
//! preset (one line), the builder with closures, and the retry attribute with the same
//! functions; no classifier type is written by hand.
//!
//! A real hyper server and client talk over loopback. Run with
//! `cargo run --example http_retry_after --features http`; `cargo test --example
//! http_retry_after --features http` runs its tests on tokio's paused clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::RETRY_AFTER;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use resilient::ratelimit::headers::parse_retry_after;
use resilient::{ConfigError, Error, Outcome, Pipeline, Retry};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
type HttpResult = Result<Response<Incoming>, ClientError>;

/// What the server answers, in order: each entry a status and an optional `Retry-After`
/// (in seconds); after the script runs out, `200 OK`.
struct Script {
    steps: Vec<(StatusCode, Option<u64>)>,
    served: AtomicUsize,
}

/// Serves `script` on a loopback port until the runtime stops; returns the address.
async fn serve(script: Arc<Script>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let n = script.served.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after) = script
                    .steps
                    .get(n)
                    .copied()
                    .unwrap_or((StatusCode::OK, None));
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "answer {} ({status})",
                    n + 1
                ))));
                *response.status_mut() = status;
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, secs.to_string().parse().expect("a number"));
                }
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// A failure for breakers and metrics: a transport error, a 5xx or a 429. A 404 is an
/// answer, not a failure of the dependency.
fn judge(result: &HttpResult) -> Outcome {
    match result {
        Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
            Outcome::Failure
        }
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// Worth another attempt: a connection error, a 503 or a 429 (a 500 or 501 will not get
/// better by asking again).
fn retryable(result: &HttpResult) -> bool {
    match result {
        Ok(r) => matches!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ),
        Err(e) => e.is_connect(),
    }
}

/// The server's `Retry-After` (seconds or an HTTP date), from any response.
fn retry_after(result: &HttpResult) -> Option<Duration> {
    let value = result.as_ref().ok()?.headers().get(RETRY_AFTER)?;
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// The builder style.
fn pipeline()
-> Result<Pipeline<impl resilient::Classify<Response<Incoming>, ClientError>>, ConfigError> {
    Pipeline::builder()
        .name("http-get")
        .classify(judge)
        .retry(
            Retry::exponential(Duration::from_millis(200))
                .attempts(5)
                // a server asking for longer than this is not waited for
                .max_server_delay(Duration::from_secs(30)),
        )
        .retry_if(retryable)
        .delay_from(retry_after)
        .build()
}

async fn get_with_builder(
    client: &HttpClient,
    url: &hyper::Uri,
) -> Result<String, Error<ClientError>> {
    let pipeline = pipeline().expect("a valid configuration");
    let response = pipeline.execute(|| client.get(url.clone())).await?;
    Ok(body_text(response).await)
}

/// The preset: the standard client policy for a GET (retry connect errors, timeouts, 408,
/// 429, 502, 503 and 504; honour `Retry-After`; per-attempt and total timeouts; a budget).
async fn get_with_preset(
    client: &HttpClient,
    url: &hyper::Uri,
) -> Result<String, Error<ClientError>> {
    let pipeline = resilient::http::client(&hyper::Method::GET)
        .build()
        .expect("a valid configuration");
    let response = pipeline.execute(|| client.get(url.clone())).await?;
    Ok(body_text(response).await)
}

/// The attribute style: the same three functions.
#[resilient::retry(
    attempts = 5,
    backoff = exponential("200ms"),
    max_server_delay = "30s",
    classify = judge,
    retry_if = retryable,
    delay_from = retry_after
)]
async fn get_with_attribute(client: &HttpClient, url: &hyper::Uri) -> HttpResult {
    client.get(url.clone()).await
}

async fn body_text(response: Response<Incoming>) -> String {
    match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(e) => format!("<body lost: {e}>"),
    }
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = vec![
        (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        (StatusCode::TOO_MANY_REQUESTS, Some(1)),
    ];
    for style in ["preset", "builder", "attribute"] {
        let script = Arc::new(Script {
            steps: steps.clone(),
            served: AtomicUsize::new(0),
        });
        let addr = serve(script.clone()).await?;
        let url: hyper::Uri = format!("http://{addr}/item").parse()?;
        let client = client();
        let start = tokio::time::Instant::now();
        let text = match style {
            "preset" => get_with_preset(&client, &url).await?,
            "builder" => get_with_builder(&client, &url).await?,
            _ => body_text(get_with_attribute(&client, &url).await?).await,
        };
        println!(
            "{style}: {text:?} after {} requests in {:.1?} (the server asked for 1 s twice)",
            script.served.load(Ordering::SeqCst),
            start.elapsed()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    async fn setup(steps: Vec<(StatusCode, Option<u64>)>) -> (Arc<Script>, HttpClient, hyper::Uri) {
        let script = Arc::new(Script {
            steps,
            served: AtomicUsize::new(0),
        });
        let addr = serve(script.clone()).await.unwrap();
        let url = format!("http://{addr}/").parse().unwrap();
        (script, client(), url)
    }

    /// 503 asking 7 s, 429 asking 3 s, then 200: the caller gets the 200 after exactly the
    /// 10 s the server asked for (the backoff is not used), in all three styles.
    #[tokio::test(start_paused = true)]
    async fn every_style_waits_as_the_server_asks() {
        let steps = vec![
            (StatusCode::SERVICE_UNAVAILABLE, Some(7)),
            (StatusCode::TOO_MANY_REQUESTS, Some(3)),
        ];
        let (script, client, url) = setup(steps.clone()).await;
        let start = Instant::now();
        assert_eq!(
            get_with_preset(&client, &url).await.unwrap(),
            "answer 3 (200 OK)"
        );
        assert_eq!(start.elapsed().as_secs(), 10);
        assert_eq!(script.served.load(Ordering::SeqCst), 3);

        let (script, client, url) = setup(steps.clone()).await;
        let start = Instant::now();
        assert_eq!(
            get_with_builder(&client, &url).await.unwrap(),
            "answer 3 (200 OK)"
        );
        assert_eq!(start.elapsed().as_secs(), 10);
        assert_eq!(script.served.load(Ordering::SeqCst), 3);

        let (script, client, url) = setup(steps).await;
        let start = Instant::now();
        let response = get_with_attribute(&client, &url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(start.elapsed().as_secs(), 10);
        assert_eq!(script.served.load(Ordering::SeqCst), 3);
    }

    /// A 503 without `Retry-After` falls back to the backoff; a 500 is not retried and
    /// comes back as the response; a 404 is an answer.
    #[tokio::test(start_paused = true)]
    async fn only_retryable_answers_are_retried() {
        let (script, client, url) = setup(vec![(StatusCode::SERVICE_UNAVAILABLE, None)]).await;
        let start = Instant::now();
        let response = get_with_attribute(&client, &url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(script.served.load(Ordering::SeqCst), 2);

        for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::NOT_FOUND] {
            let (script, client, url) = setup(vec![(status, None)]).await;
            let response = get_with_attribute(&client, &url).await.unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(script.served.load(Ordering::SeqCst), 1);
        }
    }

    /// A server asking for longer than `max_server_delay` is not waited for: the caller
    /// gets its 503 at once.
    #[tokio::test(start_paused = true)]
    async fn a_too_long_retry_after_is_not_waited_for() {
        let (script, client, url) =
            setup(vec![(StatusCode::SERVICE_UNAVAILABLE, Some(3600))]).await;
        let start = Instant::now();
        let response = get_with_attribute(&client, &url).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(script.served.load(Ordering::SeqCst), 1);
    }

    /// The preset retries a 502 and a 504 but not a 500, and never retries a POST.
    #[tokio::test(start_paused = true)]
    async fn the_preset_retries_only_retryable_statuses_of_idempotent_methods() {
        let (script, client, url) = setup(vec![
            (StatusCode::BAD_GATEWAY, None),
            (StatusCode::GATEWAY_TIMEOUT, None),
        ])
        .await;
        assert_eq!(
            get_with_preset(&client, &url).await.unwrap(),
            "answer 3 (200 OK)"
        );
        assert_eq!(script.served.load(Ordering::SeqCst), 3);

        let (script, client, url) = setup(vec![(StatusCode::INTERNAL_SERVER_ERROR, None)]).await;
        assert!(
            get_with_preset(&client, &url)
                .await
                .unwrap()
                .contains("500")
        );
        assert_eq!(script.served.load(Ordering::SeqCst), 1);

        let (script, client, url) = setup(vec![(StatusCode::SERVICE_UNAVAILABLE, None)]).await;
        let post = resilient::http::client(&hyper::Method::POST)
            .build()
            .unwrap();
        let response = post
            .execute(|| {
                let request = hyper::Request::post(url.clone())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                client.request(request)
            })
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(script.served.load(Ordering::SeqCst), 1);
    }

    /// Nothing listening: connection errors are retried (classified by the I/O error in
    /// the client's error, not by its message), then the caller gets `RetriesExhausted`
    /// with the client's error.
    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried_then_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/").parse().unwrap();
        let result = get_with_attribute(&client(), &url).await;
        match result {
            Err(Error::RetriesExhausted { attempts: 5, last }) => {
                assert!(last.is_connect());
                assert_eq!(
                    resilient::http::classify_error(&last),
                    resilient::http::ErrorClass::Connect
                );
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        match get_with_preset(&client(), &url).await {
            Err(Error::RetriesExhausted { attempts: 3, .. }) => {}
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
    }
}
