//! The client against the mock provider on loopback.
//!
//! Real sockets need real time (tokio's paused clock would jump over every wait while a
//! socket is pending), so every wait the server asks for is tens of milliseconds, and
//! each timing assertion has a wide margin. The limits guard, which needs no socket, is
//! tested on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::{Error, Pipeline, Retry};
use resilient_llm::mock::{MockServer, Reply};
use resilient_llm::{
    ApiErrorKind, ChatRequest, Client, ClientBuilder, Event, Limits, LlmError, Provider, Role,
};
use serde::Deserialize;
use tokio::time::Instant;

/// What the client reported, as plain data.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Retry {
        provider: String,
        attempt: u32,
        delay: Duration,
    },
    Rotate {
        from: String,
        to: String,
    },
    Reask(u32),
}

fn recorder() -> (
    Arc<Mutex<Vec<Seen>>>,
    impl Fn(&Event<'_>) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hook = move |e: &Event<'_>| {
        let item = match e {
            Event::Retry {
                provider,
                attempt,
                delay,
                ..
            } => Seen::Retry {
                provider: provider.to_string(),
                attempt: *attempt,
                delay: *delay,
            },
            Event::Rotate { from, to, .. } => Seen::Rotate {
                from: from.to_string(),
                to: to.to_string(),
            },
            Event::Reask { reask, .. } => Seen::Reask(*reask),
            _ => return,
        };
        log.lock().unwrap().push(item);
    };
    (seen, hook)
}

fn client(server: &MockServer) -> ClientBuilder {
    Client::builder()
        .provider(Provider::new("mock", server.url(), "key-1"))
        // a long backoff: a test that waits for it instead of the server's delay hangs
        .retry(Retry::constant(Duration::from_secs(30)).attempts(3))
}

fn ask() -> ChatRequest {
    ChatRequest::new("gpt-test").user("hello")
}

#[derive(Debug, Deserialize, PartialEq)]
struct Person {
    name: String,
    born: u32,
}

#[tokio::test]
async fn rotates_keys_when_a_quota_is_used_up_and_skips_the_key_afterwards() {
    let server = MockServer::start().await.unwrap();
    server.exhaust_key("key-1");
    server.push(Reply::text("from the second key"));
    let (seen, hook) = recorder();
    let client = Client::builder()
        .provider(Provider::new("first", server.url(), "key-1"))
        .provider(Provider::new("second", server.url(), "key-2"))
        .retry(Retry::constant(Duration::from_secs(30)).attempts(3))
        .on_event(hook)
        .build()
        .unwrap();

    let answer = client.chat(&ask()).await.unwrap();
    assert_eq!(answer.content(), "from the second key");
    assert_eq!(answer.provider, "second");
    // the used-up quota is not retried: one request per key
    assert_eq!(server.keys(), ["key-1", "key-2"]);
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Rotate {
            from: "first".into(),
            to: "second".into()
        }]
    );

    // the exhausted key is parked: the next call goes straight to the second key
    let answer = client.chat(&ask()).await.unwrap();
    assert_eq!(answer.provider, "second");
    assert_eq!(server.keys(), ["key-1", "key-2", "key-2"]);
}

#[tokio::test]
async fn every_provider_failing_reports_each_failure_in_order() {
    let server = MockServer::start().await.unwrap();
    server.exhaust_key("key-1");
    server.exhaust_key("key-2");
    let client = Client::builder()
        .provider(Provider::new("first", server.url(), "key-1"))
        .provider(Provider::new("second", server.url(), "key-2"))
        .build()
        .unwrap();
    let err = client.chat(&ask()).await.unwrap_err();
    let Error::Fallback { failures } = err else {
        panic!("expected every provider's failure, got {err:?}");
    };
    assert_eq!(failures.len(), 2);
    for failure in &failures {
        assert!(failure.inner().unwrap().is_quota_exhausted(), "{failure:?}");
    }
}

#[tokio::test]
async fn honours_x_ratelimit_reset_instead_of_the_backoff() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::rate_limited("20ms"));
    server.push(Reply::text("after the reset"));
    let (seen, hook) = recorder();
    let client = client(&server).on_event(hook).build().unwrap();

    let start = Instant::now();
    let answer = client.chat(&ask()).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(answer.content(), "after the reset");
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Retry {
            provider: "mock".into(),
            attempt: 1,
            delay: Duration::from_millis(20)
        }]
    );
    // waited the server's 20 ms, not the 30 s backoff
    assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn honours_retry_after_ms_and_x_ratelimit_reset_tokens_on_5xx_and_429() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::status(503).header("retry-after-ms", "15"));
    server.push(
        Reply::status(429)
            .header("x-ratelimit-remaining-requests", "5")
            .header("x-ratelimit-reset-requests", "6m0s")
            .header("x-ratelimit-remaining-tokens", "0")
            .header("x-ratelimit-reset-tokens", "25ms"),
    );
    server.push(Reply::text("third time"));
    let (seen, hook) = recorder();
    let client = client(&server).on_event(hook).build().unwrap();
    let answer = client.chat(&ask()).await.unwrap();
    assert_eq!(answer.content(), "third time");
    let delays: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            Seen::Retry { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    // the request limit of the second reply is not the exhausted one: its 6 minutes
    // do not count, the tokens' 25 ms do
    assert_eq!(
        delays,
        [Duration::from_millis(15), Duration::from_millis(25)]
    );
}

#[tokio::test]
async fn a_wait_beyond_max_server_delay_moves_to_the_next_provider() {
    let server = MockServer::start().await.unwrap();
    server.push_for_key("key-1", Reply::rate_limited("6m0s"));
    server.push_for_key("key-2", Reply::text("backup"));
    let client = Client::builder()
        .provider(Provider::new("first", server.url(), "key-1"))
        .provider(Provider::new("second", server.url(), "key-2"))
        .retry(Retry::constant(Duration::from_secs(30)).max_server_delay(Duration::from_secs(10)))
        .build()
        .unwrap();
    let start = Instant::now();
    let answer = client.chat(&ask()).await.unwrap();
    assert_eq!(answer.provider, "second");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(server.keys(), ["key-1", "key-2"]);
}

#[tokio::test]
async fn retries_transient_errors_only() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::status(500));
    server.push(Reply::status(502).header("retry-after-ms", "1"));
    server.push(Reply::text("fine"));
    let client = client(&server)
        .retry(Retry::immediate().attempts(3))
        .build()
        .unwrap();
    assert_eq!(client.chat(&ask()).await.unwrap().content(), "fine");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn never_retries_400_401_or_403() {
    for (reply, kind) in [
        (Reply::bad_request("bad model"), ApiErrorKind::BadRequest),
        (Reply::status(401), ApiErrorKind::Unauthorized),
        (Reply::status(403), ApiErrorKind::Unauthorized),
    ] {
        let server = MockServer::start().await.unwrap();
        server.set_default(reply);
        let client = client(&server)
            .retry(Retry::immediate().attempts(3))
            .build()
            .unwrap();
        let err = client.chat(&ask()).await.unwrap_err();
        let Error::Inner(LlmError::Api(api)) = &err else {
            panic!("expected the API error once, got {err:?}");
        };
        assert_eq!(api.kind, kind);
        assert_eq!(server.requests().len(), 1, "{kind:?} was retried");
    }
}

#[tokio::test]
async fn a_bad_request_is_not_handed_to_the_next_provider() {
    let server = MockServer::start().await.unwrap();
    server.set_default(Reply::bad_request("messages must not be empty"));
    let client = Client::builder()
        .provider(Provider::new("first", server.url(), "key-1"))
        .provider(Provider::new("second", server.url(), "key-2"))
        .build()
        .unwrap();
    let err = client.chat(&ask()).await.unwrap_err();
    assert_eq!(
        err.inner().and_then(LlmError::api).map(|a| a.status),
        Some(400)
    );
    assert_eq!(server.keys(), ["key-1"]);
}

#[tokio::test]
async fn token_weighted_limits_send_heavy_calls_elsewhere() {
    let server = MockServer::start().await.unwrap();
    let (seen, hook) = recorder();
    let client = Client::builder()
        .provider(
            Provider::new("small", server.url(), "key-1").limits(
                Limits::new()
                    .tokens_per_minute(1_000)
                    .requests_per_minute(100),
            ),
        )
        .provider(Provider::new("big", server.url(), "key-2"))
        .on_event(hook)
        .build()
        .unwrap();
    // 600 answer tokens + a few for the prompt: the first fits 1,000 tokens, a second not
    let heavy = ask().max_tokens(600);
    let light = ask().max_tokens(100);
    assert_eq!(client.chat(&heavy).await.unwrap().provider, "small");
    assert_eq!(client.chat(&heavy).await.unwrap().provider, "big");
    // what is left still takes a light call
    assert_eq!(client.chat(&light).await.unwrap().provider, "small");
    // the refused call never reached the first key
    assert_eq!(server.keys(), ["key-1", "key-2", "key-1"]);
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Rotate {
            from: "small".into(),
            to: "big".into()
        }]
    );
    // a request above the whole budget can never pass the small provider
    let huge = ask().max_tokens(5_000);
    assert_eq!(client.chat(&huge).await.unwrap().provider, "big");
}

#[tokio::test(start_paused = true)]
async fn limits_charge_tokens_per_call_and_one_request_per_call_on_paused_time() {
    let wait = Duration::from_secs(120);
    let tokens = Limits::new()
        .tokens_per_minute(600)
        .max_wait(wait)
        .guard()
        .unwrap();
    let p = Pipeline::builder().guard_arc(tokens).build().unwrap();
    let start = Instant::now();
    let call = |tokens| p.call().cost(tokens).execute(|| async { Ok::<_, ()>(()) });
    call(600).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // 300 tokens come back in 30 s (600 a minute)
    call(300).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));

    // a request limit charges one unit whatever the tokens
    let requests = Limits::new()
        .requests_per_minute(2)
        .max_wait(wait)
        .guard()
        .unwrap();
    let p = Pipeline::builder().guard_arc(requests).build().unwrap();
    let start = Instant::now();
    let call = |tokens| p.call().cost(tokens).execute(|| async { Ok::<_, ()>(()) });
    call(10_000).await.unwrap();
    call(10_000).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    call(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));

    // without a wait, a call over the limit is rejected at once
    let strict = Limits::new().tokens_per_minute(100).guard().unwrap();
    let p = Pipeline::builder().guard_arc(strict).build().unwrap();
    p.call()
        .cost(100)
        .execute(|| async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    let r = p.call().cost(1).execute(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
}

#[tokio::test]
async fn repairs_structured_output() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text(
        "Here it is:\n```json\n{name: 'Ada Lovelace', born: 1815,}\n```",
    ));
    let client = client(&server).build().unwrap();
    let person: Person = client.parse(&ask().json_mode()).await.unwrap();
    assert_eq!(
        person,
        Person {
            name: "Ada Lovelace".into(),
            born: 1815
        }
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(
        server.requests()[0].body["response_format"]["type"],
        "json_object"
    );
}

#[tokio::test]
async fn reasks_when_repair_cannot_help() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text("I'm not sure who you mean."));
    server.push(Reply::text(r#"{"name": "Ada Lovelace", "born": 1815}"#));
    let (seen, hook) = recorder();
    let client = client(&server).on_event(hook).build().unwrap();
    let person: Person = client.parse(&ask()).await.unwrap();
    assert_eq!(person.born, 1815);
    assert_eq!(*seen.lock().unwrap(), [Seen::Reask(1)]);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], "I'm not sure who you mean.");
    assert_eq!(messages[2]["role"], "user");
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("could not be parsed"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn reasks_are_bounded() {
    let server = MockServer::start().await.unwrap();
    server.set_default(Reply::text("still prose"));
    let client = client(&server).max_reasks(2).build().unwrap();
    let err = client.parse::<Person>(&ask()).await.unwrap_err();
    match err {
        Error::Inner(LlmError::InvalidOutput {
            reasks, content, ..
        }) => {
            assert_eq!(reasks, 2);
            assert_eq!(content, "still prose");
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn streams_an_answer_chunk_by_chunk() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text("one two three").chunk_gap(Duration::from_millis(2)));
    let client = client(&server).build().unwrap();
    let mut stream = client.chat_stream(&ask()).await.unwrap();
    assert_eq!(stream.provider(), "mock");
    let mut pieces = Vec::new();
    while let Some(chunk) = stream.next().await {
        pieces.push(chunk.unwrap().content);
    }
    assert_eq!(pieces.concat(), "one two three");
    assert_eq!(
        pieces.len(),
        4,
        "three words and the finish chunk: {pieces:?}"
    );
    assert_eq!(server.requests()[0].body["stream"], true);
    assert_eq!(server.requests()[0].body["messages"][0]["role"], "user");
    let _ = Role::User;
}

#[tokio::test]
async fn time_to_first_token_timeout_is_typed_and_retried() {
    let server = MockServer::start().await.unwrap();
    server.set_default(Reply::text("too late").first_token_delay(Duration::from_secs(2)));
    let client = client(&server)
        .retry(Retry::immediate().attempts(2))
        .first_token_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = client.chat_stream(&ask()).await.unwrap_err();
    let elapsed = start.elapsed();
    match err {
        Error::RetriesExhausted {
            attempts: 2,
            last: LlmError::FirstTokenTimeout { after },
        } => assert_eq!(after, Duration::from_millis(50)),
        other => panic!("expected a time-to-first-token timeout, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 2);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn a_slow_first_token_is_fine_within_the_limit() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text("made it").first_token_delay(Duration::from_millis(20)));
    let client = client(&server)
        .first_token_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let stream = client.chat_stream(&ask()).await.unwrap();
    assert_eq!(stream.text().await.unwrap(), "made it");
}

#[tokio::test]
async fn idle_gap_timeout_ends_a_stalled_stream() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text("one two three").stall_after(1));
    let client = client(&server)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut stream = client.chat_stream(&ask()).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().content, "one");
    let start = Instant::now();
    match stream.next().await {
        Some(Err(LlmError::IdleTimeout { after, chunks })) => {
            assert_eq!(after, Duration::from_millis(50));
            assert_eq!(chunks, 2, "the role chunk and one word");
        }
        other => panic!("expected an idle timeout, got {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // the stream is over
    assert!(stream.next().await.is_none());
    // and it was not retried
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_rotates_on_quota_before_it_starts() {
    let server = MockServer::start().await.unwrap();
    server.exhaust_key("key-1");
    server.push(Reply::text("streamed by the second key"));
    let client = Client::builder()
        .provider(Provider::new("first", server.url(), "key-1"))
        .provider(Provider::new("second", server.url(), "key-2").model("other-model"))
        .build()
        .unwrap();
    let stream = client.chat_stream(&ask()).await.unwrap();
    assert_eq!(stream.provider(), "second");
    assert_eq!(stream.text().await.unwrap(), "streamed by the second key");
    let requests = server.requests();
    assert_eq!(requests[0].body["model"], "gpt-test");
    assert_eq!(requests[1].body["model"], "other-model");
}

#[tokio::test]
async fn a_streamed_json_answer_is_readable_as_it_grows() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Partial {
        name: Option<String>,
        born: Option<u32>,
    }
    let server = MockServer::start().await.unwrap();
    server.push(Reply::text(r#"{"name": "Ada Lovelace", "born": 1815}"#));
    let client = client(&server).build().unwrap();
    let mut stream = client.chat_stream(&ask().json_mode()).await.unwrap();
    let mut seen = Vec::new();
    while let Some(partial) = stream.next_partial::<Partial>().await {
        seen.push(partial.unwrap());
    }
    // each view is a prefix of the final value: fields appear, once, in order
    assert_eq!(
        seen.first(),
        Some(&Partial {
            name: None,
            born: None
        })
    );
    assert!(seen.contains(&Partial {
        name: Some("Ada".into()),
        born: None
    }));
    assert_eq!(
        seen.last(),
        Some(&Partial {
            name: Some("Ada Lovelace".into()),
            born: Some(1815)
        })
    );
}

#[tokio::test]
async fn connection_failures_are_retried_then_the_next_provider_answers() {
    // a port with nothing listening
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let server = MockServer::start().await.unwrap();
    let (seen, hook) = recorder();
    let client = Client::builder()
        .provider(Provider::new("dead", dead, "key-1"))
        .provider(Provider::new("alive", server.url(), "key-2"))
        .retry(Retry::immediate().attempts(2))
        .on_event(hook)
        .build()
        .unwrap();
    let answer = client.chat(&ask()).await.unwrap();
    assert_eq!(answer.provider, "alive");
    let seen = seen.lock().unwrap();
    assert!(
        matches!(&seen[..], [Seen::Retry { provider, attempt: 1, .. }, Seen::Rotate { .. }] if provider == "dead"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn honours_a_standard_retry_after_on_429() {
    let server = MockServer::start().await.unwrap();
    server.push(Reply::status(429).header("retry-after", "0"));
    server.push(Reply::text("now"));
    let (seen, hook) = recorder();
    let client = client(&server).on_event(hook).build().unwrap();
    let start = Instant::now();
    assert_eq!(client.chat(&ask()).await.unwrap().content(), "now");
    // "0 seconds", not the 30 s backoff
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Retry {
            provider: "mock".into(),
            attempt: 1,
            delay: Duration::ZERO
        }]
    );
}

#[test]
fn the_llm_pattern_is_registered_at_link_time() {
    let all = resilient::registry::patterns().unwrap();
    let llm = all
        .iter()
        .find(|p| p.name == resilient_llm::PATTERN)
        .expect("registered by linking the crate");
    assert_eq!(llm.crate_name, "resilient-llm");
    let params: Vec<&str> = llm.params.iter().map(|p| p.name).collect();
    assert!(params.contains(&"tokens_per_minute"), "{params:?}");
    let p = resilient::registry()
        .pipeline_as::<resilient_llm::LlmPolicy>("llm(requests_per_minute = 60)")
        .unwrap();
    assert_eq!(p.stages().len(), 3, "{:?}", p.stages());
    // an unknown parameter is an error naming the known ones
    let err = resilient::registry()
        .pipeline_as::<resilient_llm::LlmPolicy>("llm(atempts = 2)")
        .unwrap_err()
        .to_string();
    assert!(err.contains("attempts"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_llm_pattern_retries_after_the_providers_delay() {
    let p = resilient::registry()
        .pipeline_as::<resilient_llm::LlmPolicy>("llm(attempts = 2, base = \"30s\")")
        .unwrap();
    let start = Instant::now();
    let mut calls = 0;
    let r: Result<&str, Error<LlmError>> = p
        .execute(|| {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    Err(LlmError::Api(resilient_llm::ApiError::from_response(
                        429,
                        b"",
                        Some(Duration::from_millis(20)),
                    )))
                } else {
                    Ok("done")
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), "done");
    assert_eq!(start.elapsed(), Duration::from_millis(20));
}
