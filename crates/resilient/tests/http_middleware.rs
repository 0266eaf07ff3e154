//! The reqwest-middleware middleware against a real axum server on loopback: every
//! retryable class, Retry-After in both forms, unsafe methods, bodies that cannot be
//! replayed, a connection reset mid-request, and the before/after hooks' headers.
#![cfg(all(feature = "reqwest-middleware", not(loom)))]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use resilient::http::middleware::{ReqwestPolicy, RetryMiddleware, preset};
use resilient::http::{ErrorClass, NotReplayable, classify_error};
use resilient::{Pipeline, Retry, RetryEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A status to answer and headers to send with it.
type Step = (u16, Vec<(&'static str, String)>);

/// What the server answers, in order (then 200), and what it saw.
#[derive(Default)]
struct Script {
    steps: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<(String, ::http::HeaderMap)>>,
}

async fn handle(State(s): State<Arc<Script>>, req: Request) -> Response {
    s.seen
        .lock()
        .unwrap()
        .push((req.method().to_string(), req.headers().clone()));
    let (status, headers) = s.steps.lock().unwrap().pop_front().unwrap_or((200, vec![]));
    let mut b = Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(n, v);
    }
    b.body(Body::from("done")).unwrap()
}

async fn serve(steps: Vec<Step>) -> (SocketAddr, Arc<Script>) {
    let script = Arc::new(Script::default());
    *script.steps.lock().unwrap() = steps.into();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, script)
}

/// A pipeline of 3 immediate attempts recording each retry's delay.
fn recording() -> (Pipeline<ReqwestPolicy>, Arc<Mutex<Vec<Duration>>>) {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let log = delays.clone();
    let retry = Retry::immediate()
        .attempts(3)
        .max_server_delay(Duration::from_secs(30))
        .on_retry(move |e: &RetryEvent<'_>| log.lock().unwrap().push(e.delay));
    let pipeline = Pipeline::builder()
        .classify(ReqwestPolicy)
        .retry(retry)
        .build()
        .unwrap();
    (pipeline, delays)
}

fn client(mw: RetryMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new()).with(mw).build()
}

#[tokio::test(start_paused = true)]
async fn every_retryable_status_is_retried() {
    for status in [408, 429, 502, 503, 504] {
        let (addr, script) = serve(vec![(status, vec![])]).await;
        let (pipeline, delays) = recording();
        let r = client(RetryMiddleware::new(pipeline))
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{status}");
        assert_eq!(script.seen.lock().unwrap().len(), 2, "{status}");
        assert_eq!(delays.lock().unwrap().len(), 1, "{status}");
    }
    // a 500 and a 404 are answers: not retried
    for status in [500, 404] {
        let (addr, script) = serve(vec![(status, vec![])]).await;
        let (pipeline, _) = recording();
        let r = client(RetryMiddleware::new(pipeline))
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(script.seen.lock().unwrap().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn connect_errors_are_retried_then_reported() {
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (pipeline, delays) = recording();
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let mw = RetryMiddleware::new(pipeline).after_attempt(move |_, _| {
        t.fetch_add(1, Ordering::SeqCst);
    });
    let e = client(mw)
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, reqwest_middleware::Error::Reqwest(_)), "{e:?}");
    assert_eq!(classify_error(&e), ErrorClass::Connect);
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(delays.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_and_http_date() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    let (addr, script) = serve(vec![
        (503, vec![("retry-after", "7".into())]),
        (429, vec![("retry-after", date)]),
    ])
    .await;
    let (pipeline, delays) = recording();
    let start = tokio::time::Instant::now();
    let r = client(RetryMiddleware::new(pipeline))
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(script.seen.lock().unwrap().len(), 3);
    let delays = delays.lock().unwrap().clone();
    assert_eq!(delays[0], Duration::from_secs(7));
    // an HTTP-date has whole seconds: 4 to 5 s from now
    assert!(
        delays[1] > Duration::from_secs(3) && delays[1] <= Duration::from_secs(5),
        "{delays:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn unsafe_methods_need_a_key_or_an_opt_in() {
    // POST: not retried
    let (addr, script) = serve(vec![(503, vec![])]).await;
    let (pipeline, _) = recording();
    let r = client(RetryMiddleware::new(pipeline))
        .post(format!("http://{addr}/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(script.seen.lock().unwrap().len(), 1);

    // POST with an Idempotency-Key: retried
    let (addr, script) = serve(vec![(503, vec![])]).await;
    let (pipeline, _) = recording();
    let r = client(RetryMiddleware::new(pipeline))
        .post(format!("http://{addr}/"))
        .header("idempotency-key", "k-1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(script.seen.lock().unwrap().len(), 2);

    // POST with the opt-in: retried
    let (addr, script) = serve(vec![(502, vec![])]).await;
    let (pipeline, _) = recording();
    let r = client(RetryMiddleware::new(pipeline).retry_unsafe_methods(true))
        .post(format!("http://{addr}/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(script.seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn streaming_bodies_are_not_replayed() {
    let (addr, script) = serve(vec![(503, vec![])]).await;
    let (pipeline, _) = recording();
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a"), Ok("b")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let e = client(RetryMiddleware::new(pipeline))
        .put(format!("http://{addr}/"))
        .body(body)
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(e) = e else {
        panic!("not a middleware error: {e:?}")
    };
    let refused = e.downcast_ref::<NotReplayable>().expect("a NotReplayable");
    assert_eq!(refused.class, ErrorClass::Transient);
    assert_eq!(
        refused.status,
        Some(::http::StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(script.seen.lock().unwrap().len(), 1);

    // a streaming body that succeeds is no error
    let (addr, _) = serve(vec![]).await;
    let (pipeline, _) = recording();
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = client(RetryMiddleware::new(pipeline))
        .put(format!("http://{addr}/"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A server whose first connection is dropped after reading the request; later ones get
/// a 200.
async fn resetting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                if n > 0 {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
                // the first connection is dropped without an answer
            });
        }
    });
    (addr, conns)
}

#[tokio::test(start_paused = true)]
async fn connection_reset_mid_request() {
    let (addr, conns) = resetting_server().await;
    let (pipeline, _) = recording();
    let r = client(RetryMiddleware::new(pipeline))
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    // a POST is not sent again: the server may have acted on it
    let (addr, conns) = resetting_server().await;
    let (pipeline, _) = recording();
    let e = client(RetryMiddleware::new(pipeline))
        .post(format!("http://{addr}/"))
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_error(&e), ErrorClass::Connect, "{e:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn hooks_send_attempt_and_deadline_headers() {
    let (addr, script) = serve(vec![(503, vec![]), (503, vec![])]).await;
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let log = statuses.clone();
    let mw = RetryMiddleware::new(preset().build().unwrap())
        .attempt_header("x-attempt")
        .deadline_header("x-request-deadline-ms")
        .before_attempt(|req, a| {
            let v = resilient::http::middleware::grpc_timeout(a.remaining.unwrap());
            req.headers_mut().insert("grpc-timeout", v.parse().unwrap());
        })
        .after_attempt(move |r, a| {
            log.lock()
                .unwrap()
                .push((a.number, r.as_ref().unwrap().status().as_u16()))
        });
    let r = client(mw)
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = script.seen.lock().unwrap();
    let attempts: Vec<&str> = seen
        .iter()
        .map(|(_, h)| h["x-attempt"].to_str().unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for (_, h) in seen.iter() {
        let ms: u64 = h["x-request-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ms > 0 && ms <= 10_000, "{ms}");
        assert!(h["grpc-timeout"].to_str().unwrap().ends_with('m'));
    }
    assert_eq!(*statuses.lock().unwrap(), [(1, 503), (2, 503), (3, 200)]);
}

/// A resolver that fails its first `fail_first` lookups, then answers `addrs`.
#[derive(Clone)]
struct Flaky {
    fail_first: usize,
    lookups: Arc<AtomicUsize>,
    addrs: Vec<SocketAddr>,
}

impl Flaky {
    fn new(fail_first: usize, addrs: Vec<SocketAddr>) -> Self {
        Self {
            fail_first,
            lookups: Arc::default(),
            addrs,
        }
    }
}

impl reqwest::dns::Resolve for Flaky {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        let (fail, addrs) = (n < self.fail_first, self.addrs.clone());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if fail {
                return Err(Box::new(resilient::http::DnsFailure { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn resolving_client(resolver: impl reqwest::dns::Resolve + 'static) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn dns_failures_are_retried_by_the_middleware() {
    let (addr, _) = serve(vec![]).await;
    let flaky = Flaky::new(2, vec![addr]);
    let (pipeline, delays) = recording();
    let client = ClientBuilder::new(resolving_client(flaky.clone()))
        .with(RetryMiddleware::new(pipeline))
        .build();
    let r = client
        .get(format!("http://api.test:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(flaky.lookups.load(Ordering::SeqCst), 3);
    assert_eq!(delays.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn resolver_re_resolves_and_forgets_failures() {
    use resilient::http::dns::RetryingResolver;
    let (addr, _) = serve(vec![]).await;
    let url = format!("http://api.test:{}/", addr.port());

    // two failed lookups, then an answer: one request, re-resolved within the resolver
    let flaky = Flaky::new(2, vec![addr]);
    let resolver = RetryingResolver::new(flaky.clone())
        .attempts(3)
        .pause(Duration::from_millis(10));
    let r = resolving_client(resolver).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(flaky.lookups.load(Ordering::SeqCst), 3);

    // a failure is remembered for the negative TTL only
    let flaky = Flaky::new(1, vec![addr]);
    let resolver = RetryingResolver::new(flaky.clone())
        .attempts(1)
        .negative_ttl(Duration::from_secs(5));
    let client = resolving_client(resolver);
    let e = client.get(&url).send().await.unwrap_err();
    assert_eq!(classify_error(&e), ErrorClass::Dns, "{e:?}");
    let e = client.get(&url).send().await.unwrap_err();
    assert_eq!(classify_error(&e), ErrorClass::Dns);
    assert_eq!(flaky.lookups.load(Ordering::SeqCst), 1, "cached failure");
    tokio::time::advance(Duration::from_secs(6)).await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(flaky.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dead_address_falls_through_to_the_next() {
    let (addr, script) = serve(vec![]).await;
    // nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1 only)
    let dead = SocketAddr::from(([127, 0, 0, 2], addr.port()));
    let flaky = Flaky::new(0, vec![dead, addr]);
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let (pipeline, _) = recording();
    let client = ClientBuilder::new(resolving_client(flaky))
        .with(RetryMiddleware::new(pipeline).after_attempt(move |_, _| {
            t.fetch_add(1, Ordering::SeqCst);
        }))
        .build();
    let r = client
        .get(format!("http://api.test:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tries.load(Ordering::SeqCst), 1, "no retry needed");
    assert_eq!(script.seen.lock().unwrap().len(), 1);
}
