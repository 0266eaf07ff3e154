//! Per-attempt headers on the tower path: a hyper client behind a pipeline layer sends the
//! attempt number and the remaining deadline; a real axum server on loopback reads them.
#![cfg(all(feature = "http", feature = "tower", not(loom)))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::Response;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use resilient::http::HttpPolicy;
use resilient::http::attempts::{AttemptHeadersLayer, CountAttemptsLayer, replay_request};
use resilient::{Pipeline, Retry, Timeout};
use tower::{Service, ServiceBuilder, ServiceExt};

#[derive(Default)]
struct Seen(Mutex<Vec<::http::HeaderMap>>);

async fn handle(State(seen): State<Arc<Seen>>, req: Request) -> Response {
    let mut seen = seen.0.lock().unwrap();
    seen.push(req.headers().clone());
    let status = if seen.len() < 3 { 503 } else { 200 };
    Response::builder()
        .status(status)
        .body(axum::body::Body::from("x"))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn attempt_and_deadline_headers_reach_the_server() {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let pipeline = Pipeline::builder()
        .classify(HttpPolicy::for_method(&::http::Method::GET))
        .timeout(Timeout::request(Duration::from_secs(5)))
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new()
        .layer(CountAttemptsLayer)
        .layer(
            pipeline
                .layer()
                .clone_request(replay_request::<Full<Bytes>>),
        )
        .layer(
            AttemptHeadersLayer::new()
                .attempt("x-attempt")
                .deadline_ms("x-request-deadline-ms"),
        )
        .service(client);
    let req = ::http::Request::builder()
        .uri(format!("http://{addr}/"))
        .body(Full::new(Bytes::from_static(b"hi")))
        .unwrap();
    let response = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(response.status(), 200);

    let seen = seen.0.lock().unwrap();
    let attempts: Vec<&str> = seen
        .iter()
        .map(|h| h["x-attempt"].to_str().unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for h in seen.iter() {
        let ms: u64 = h["x-request-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ms > 0 && ms <= 5_000, "{ms}");
    }
}
