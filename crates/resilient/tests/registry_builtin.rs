//! The built-in `http` and `parsing` patterns.

#![cfg(all(feature = "http", feature = "json", feature = "macros"))]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ::http::{Response, StatusCode};
use resilient::Error;
use resilient::http::HttpPolicy;
use resilient::registry;
use resilient::registry::Registry;
use resilient::registry::builtin::{ParsingError, parse_json};

fn response(status: StatusCode, retry_after: Option<&str>) -> Response<String> {
    let mut b = Response::builder().status(status);
    if let Some(s) = retry_after {
        b = b.header("retry-after", s);
    }
    b.body(String::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn http_retries_503_after_the_retry_after_the_server_asks_for() {
    let p = Registry::new().pipeline_as::<HttpPolicy>("http").unwrap();
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let r = p
        .execute(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, io::Error>(if n == 0 {
                    response(StatusCode::SERVICE_UNAVAILABLE, Some("7"))
                } else {
                    response(StatusCode::OK, None)
                })
            }
        })
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn http_does_not_retry_a_post_or_a_404() {
    let r = Registry::new();
    let calls = AtomicU32::new(0);
    let run = |p: resilient::Pipeline<HttpPolicy>, status| {
        let calls = &calls;
        async move {
            calls.store(0, Ordering::SeqCst);
            let _ = p
                .execute(|| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, io::Error>(response(status, None)) }
                })
                .await;
            calls.load(Ordering::SeqCst)
        }
    };
    let post = r.pipeline_as::<HttpPolicy>("http(method = POST)").unwrap();
    assert_eq!(run(post, StatusCode::SERVICE_UNAVAILABLE).await, 1);
    let post = r
        .pipeline_as::<HttpPolicy>("http(method = POST, always_retry = true, attempts = 4)")
        .unwrap();
    assert_eq!(run(post, StatusCode::TOO_MANY_REQUESTS).await, 4);
    let get = r.pipeline_as::<HttpPolicy>("http").unwrap();
    assert_eq!(run(get, StatusCode::NOT_FOUND).await, 1);
    assert!(
        r.pipeline_as::<HttpPolicy>("http(method = \"NOT A METHOD\")")
            .is_err()
    );
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Answer {
    city: String,
}

#[tokio::test]
async fn parsing_repairs_output_and_retries_what_repair_cannot_fix() {
    let p = registry().pipeline("parsing").unwrap();
    let answers = ["", r#"{"town": "Paris"}"#, "{city: 'Paris',"];
    let calls = AtomicU32::new(0);
    let answer: Answer = parse_json(&p, || {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        async move { Ok::<_, io::Error>(answers[n].to_owned()) }
    })
    .await
    .unwrap();
    assert_eq!(answer.city, "Paris");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn parsing_gives_up_after_its_attempts_and_does_not_retry_call_errors() {
    let p = registry().pipeline("parsing(attempts = 2)").unwrap();
    let calls = AtomicU32::new(0);
    let r: Result<Answer, _> = parse_json(&p, || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, io::Error>(String::new()) }
    })
    .await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted {
            attempts: 2,
            last: ParsingError::Unparseable { .. }
        })
    ));
    calls.store(0, Ordering::SeqCst);
    let r: Result<Answer, _> = parse_json(&p, || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<String, _>(io::Error::other("quota")) }
    })
    .await;
    assert!(matches!(r, Err(Error::Inner(ParsingError::Call(_)))));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

static ASKED: AtomicU32 = AtomicU32::new(0);

/// Text through the `parsing` pattern: text repair cannot make JSON of is asked again.
#[resilient::pattern("parsing")]
async fn ask() -> Result<String, io::Error> {
    let n = ASKED.fetch_add(1, Ordering::SeqCst);
    Ok(if n == 0 {
        String::new()
    } else {
        "[1, 2,".to_owned()
    })
}

#[tokio::test]
async fn a_function_through_the_parsing_pattern_is_asked_again_for_unrepairable_text() {
    let text = ask().await.unwrap();
    assert_eq!(ASKED.load(Ordering::SeqCst), 2);
    assert_eq!(resilient::json::repair(&text).unwrap(), "[1, 2]");
}
