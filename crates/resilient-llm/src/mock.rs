//! A local provider speaking the OpenAI-style chat-completions API on loopback
//! (feature `mock`), for tests and examples: start it on `127.0.0.1:0`, script its replies,
//! read back what it was asked.
//!
//! Replies are taken per request, in this order: a key marked with
//! [`MockServer::exhaust_key`] always gets 429 `insufficient_quota`; then the key's own
//! queue ([`MockServer::push_for_key`]); then the shared queue ([`MockServer::push`]); then
//! the default reply ([`MockServer::set_default`], a text answer `"ok"` unless set). A
//! text reply is a chat completion, or a server-sent-event stream when the request asked
//! for `"stream": true`.
//!
//! ```
//! use resilient_llm::mock::{MockServer, Reply};
//! use resilient_llm::{ChatRequest, Client, Provider};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let server = MockServer::start().await.unwrap();
//! server.push(Reply::status(503));
//! server.push(Reply::text("hello"));
//! let client = Client::builder()
//!     .provider(Provider::new("mock", server.url(), "k"))
//!     .retry(resilient::Retry::immediate().attempts(2))
//!     .build()
//!     .unwrap();
//! let answer = client.chat(&ChatRequest::new("m").user("hi")).await.unwrap();
//! assert_eq!(answer.content(), "hello");
//! assert_eq!(server.requests().len(), 2);
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the mock answers one request with. Built with [`Reply::text`],
/// [`Reply::status`], [`Reply::rate_limited`], [`Reply::insufficient_quota`] or
/// [`Reply::bad_request`], then adjusted (headers, delays, a stall).
///
/// ```
/// use resilient_llm::mock::Reply;
/// use std::time::Duration;
/// let slow = Reply::text("late").first_token_delay(Duration::from_millis(200));
/// let stalls = Reply::text("one two three").stall_after(1);
/// let throttled = Reply::rate_limited("20ms").header("x-ratelimit-limit-requests", "60");
/// # let _ = (slow, stalls, throttled);
/// ```
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    first_token_delay: Duration,
    chunk_gap: Duration,
    stall_after: Option<usize>,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Text(String),
    Error {
        kind: &'static str,
        code: &'static str,
        message: String,
    },
}

impl Reply {
    /// A successful answer with `content` (a completion, or streamed word by word).
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::text("{\"a\": 1}");
    /// ```
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::Text(content.into()),
            first_token_delay: Duration::ZERO,
            chunk_gap: Duration::ZERO,
            stall_after: None,
        }
    }

    fn error(status: u16, kind: &'static str, code: &'static str, message: &str) -> Self {
        Self {
            status,
            body: ReplyBody::Error {
                kind,
                code,
                message: message.to_owned(),
            },
            ..Self::text("")
        }
    }

    /// An error response with `status` (a 500, 502, 503, ..) and an OpenAI-style error body.
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::status(502);
    /// ```
    pub fn status(status: u16) -> Self {
        Self::error(
            status,
            "server_error",
            "server_error",
            "the mock failed on purpose",
        )
    }

    /// A 429 rate limit (`rate_limit_exceeded`) whose request limit resets in `reset`, a
    /// Go duration (`"20ms"`, `"1.5s"`, `"6m0s"`), sent as
    /// `x-ratelimit-remaining-requests: 0` and `x-ratelimit-reset-requests`.
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::rate_limited("20ms");
    /// ```
    pub fn rate_limited(reset: &str) -> Self {
        Self::error(
            429,
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests",
        )
        .header("x-ratelimit-remaining-requests", "0")
        .header("x-ratelimit-reset-requests", reset)
    }

    /// A 429 `insufficient_quota`: the key's quota is used up.
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::insufficient_quota();
    /// ```
    pub fn insufficient_quota() -> Self {
        Self::error(
            429,
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        )
    }

    /// A 400 `invalid_request_error` with `message`.
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::bad_request("messages must not be empty");
    /// ```
    pub fn bad_request(message: &str) -> Self {
        Self::error(400, "invalid_request_error", "invalid_request", message)
    }

    /// Adds a response header (`Retry-After`, `x-ratelimit-reset-tokens`, ..).
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::status(503).header("retry-after-ms", "10");
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before the first token of a stream (after the headers and the
    /// role chunk), or before answering a request that is not streamed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::mock::Reply::text("hi").first_token_delay(Duration::from_millis(50));
    /// ```
    pub fn first_token_delay(mut self, delay: Duration) -> Self {
        self.first_token_delay = delay;
        self
    }

    /// Waits this long between two chunks of a stream.
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = resilient_llm::mock::Reply::text("a b c").chunk_gap(Duration::from_millis(5));
    /// ```
    pub fn chunk_gap(mut self, gap: Duration) -> Self {
        self.chunk_gap = gap;
        self
    }

    /// Sends `n` content chunks of a stream and then nothing, keeping the connection open
    /// until the client leaves.
    ///
    /// ```
    /// let _ = resilient_llm::mock::Reply::text("a b c").stall_after(2);
    /// ```
    pub fn stall_after(mut self, n: usize) -> Self {
        self.stall_after = Some(n);
        self
    }
}

/// A request the mock received.
///
/// ```
/// # use resilient_llm::mock::MockServer;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let server = MockServer::start().await.unwrap();
/// for r in server.requests() {
///     println!("{} asked {} with {} messages", r.key, r.body["model"], r.body["messages"].as_array().map_or(0, Vec::len));
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Recorded {
    /// The API key (`Authorization: Bearer <key>`), empty if none.
    pub key: String,
    /// The JSON body (`null` if it was not JSON).
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Reply>,
    by_key: HashMap<String, VecDeque<Reply>>,
    exhausted: HashSet<String>,
    default: Option<Reply>,
    log: Vec<Recorded>,
}

/// The mock provider: an HTTP/1 server on `127.0.0.1` answering
/// `POST /v1/chat/completions`. Stops when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let server = resilient_llm::mock::MockServer::start().await.unwrap();
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # }
/// ```
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    /// Starts a server on `127.0.0.1` with a port the system picks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// assert_ne!(server.addr().port(), 0);
    /// # }
    /// ```
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The address it listens on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// assert!(server.addr().ip().is_loopback());
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a [`Provider`](crate::Provider): `http://127.0.0.1:PORT/v1`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// assert!(server.url().ends_with("/v1"));
    /// # }
    /// ```
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a reply for the next request of any key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// server.push(resilient_llm::mock::Reply::status(500));
    /// # }
    /// ```
    pub fn push(&self, reply: Reply) {
        self.state().queue.push_back(reply);
    }

    /// Queues a reply for the next request made with API key `key` (before the shared
    /// queue).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// server.push_for_key("key-1", resilient_llm::mock::Reply::rate_limited("1s"));
    /// # }
    /// ```
    pub fn push_for_key(&self, key: &str, reply: Reply) {
        self.state()
            .by_key
            .entry(key.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Answers every request made with `key` with 429 `insufficient_quota`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// server.exhaust_key("key-1");
    /// # }
    /// ```
    pub fn exhaust_key(&self, key: &str) {
        self.state().exhausted.insert(key.to_owned());
    }

    /// The reply when no queue has one (by default `Reply::text("ok")`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// server.set_default(resilient_llm::mock::Reply::status(503));
    /// # }
    /// ```
    pub fn set_default(&self, reply: Reply) {
        self.state().default = Some(reply);
    }

    /// Every request received so far, in order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// assert!(server.requests().is_empty());
    /// # }
    /// ```
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().log.clone()
    }

    /// The API key of every request received so far, in order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = resilient_llm::mock::MockServer::start().await.unwrap();
    /// assert!(server.keys().is_empty());
    /// # }
    /// ```
    pub fn keys(&self) -> Vec<String> {
        self.state().log.iter().map(|r| r.key.clone()).collect()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A response body fed by a channel: the handler's task writes chunks when it wants to.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    let key = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let path_ok = req.uri().path().ends_with("/chat/completions");
    let bytes = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let stream = body.get("stream").and_then(|v| v.as_bool()) == Some(true);
    let model = body
        .get("model")
        .and_then(|v| v.as_str())
        .unwrap_or("mock")
        .to_owned();
    let reply = {
        let mut s = lock(&state);
        s.log.push(Recorded {
            key: key.clone(),
            body,
            at: std::time::Instant::now(),
        });
        if !path_ok {
            Reply::error(404, "invalid_request_error", "unknown_url", "unknown path")
        } else if s.exhausted.contains(&key) {
            Reply::insufficient_quota()
        } else if let Some(r) = s.by_key.get_mut(&key).and_then(VecDeque::pop_front) {
            r
        } else if let Some(r) = s.queue.pop_front() {
            r
        } else {
            s.default.clone().unwrap_or_else(|| Reply::text("ok"))
        }
    };
    Ok(respond(reply, stream, model).await)
}

fn chunk_event(model: &str, delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let event = serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    Bytes::from(format!("data: {event}\n\n"))
}

async fn respond(reply: Reply, stream: bool, model: String) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel(16);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    let content = match reply.body {
        ReplyBody::Error {
            kind,
            code,
            message,
        } => {
            let body = serde_json::json!({
                "error": { "message": message, "type": kind, "code": code, "param": null }
            });
            let _ = tx.try_send(Bytes::from(body.to_string()));
            return response
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(ChannelBody(rx))
                .unwrap_or_else(|_| Response::new(ChannelBody(mpsc::channel(1).1)));
        }
        ReplyBody::Text(content) => content,
    };
    if !stream {
        tokio::time::sleep(reply.first_token_delay).await;
        let body = serde_json::json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": content.len().div_ceil(4),
                "total_tokens": 10 + content.len().div_ceil(4),
            },
        });
        let _ = tx.try_send(Bytes::from(body.to_string()));
        return response
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(ChannelBody(rx))
            .unwrap_or_else(|_| Response::new(ChannelBody(mpsc::channel(1).1)));
    }
    tokio::spawn(async move {
        let role = serde_json::json!({ "role": "assistant", "content": "" });
        if tx.send(chunk_event(&model, role, None)).await.is_err() {
            return;
        }
        tokio::time::sleep(reply.first_token_delay).await;
        // word by word, each piece keeping the whitespace before it
        let mut pieces = Vec::new();
        let mut start = 0;
        for (i, c) in content.char_indices() {
            if c.is_whitespace() && i > start {
                pieces.push(&content[start..i]);
                start = i;
            }
        }
        if start < content.len() {
            pieces.push(&content[start..]);
        }
        for (i, piece) in pieces.iter().enumerate() {
            if reply.stall_after == Some(i) {
                tx.closed().await;
                return;
            }
            if i > 0 {
                tokio::time::sleep(reply.chunk_gap).await;
            }
            let delta = serde_json::json!({ "content": piece });
            if tx.send(chunk_event(&model, delta, None)).await.is_err() {
                return;
            }
        }
        if reply.stall_after.is_some_and(|n| n >= pieces.len()) {
            tx.closed().await;
            return;
        }
        let _ = tx
            .send(chunk_event(&model, serde_json::json!({}), Some("stop")))
            .await;
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    response
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(ChannelBody(rx))
        .unwrap_or_else(|_| Response::new(ChannelBody(mpsc::channel(1).1)))
}
