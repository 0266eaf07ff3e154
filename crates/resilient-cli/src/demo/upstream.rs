//! The upstream: a hyper server on loopback that follows the chaos script on `/api`, and a
//! mock language model that answers broken JSON (and sometimes 429) on `/model`. It
//! records when each `/api` request arrived and from which client group.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::chaos::{Answer, Script};
use super::stats::Group;

/// The header naming the client group of a request.
pub const CLIENT_HEADER: &str = "x-demo-client";

/// What the mock model answers, in order: a status, `Retry-After` seconds, and a body. Past
/// the end it starts over.
pub const MODEL_SCRIPT: &[(u16, u64, &str)] = &[
    (429, 1, "slow down"),
    (
        200,
        0,
        "Here is the forecast you asked for:\n```json\n{\"city\": \"Lisbon\", \"temperature_c\": 21.5, \"conditions\": [\"sunny\", \"windy\"]}\n```",
    ),
    (
        200,
        0,
        "{'city': 'Oslo', 'temperature_c': -3, 'conditions': ['snow', 'dark',], 'alert': 'ice'}",
    ),
    (503, 0, "model overloaded"),
    (
        200,
        0,
        "{\"city\": \"Nairobi\", \"temperature_c\": 24, \"conditions\": [\"cloudy\", \"warm",
    ),
    (
        200,
        0,
        "Sure! {city: 'Lima', temperature_c: 18, conditions: ['fog'], alert: None} Anything else?",
    ),
];

/// The running upstream's shared state.
pub struct Upstream {
    script: Script,
    start: Instant,
    requests: AtomicU64,
    model_requests: AtomicU64,
    arrivals: Mutex<Vec<(Group, Duration)>>,
}

impl Upstream {
    /// The upstream for `script`, its clock starting at `start`.
    pub fn new(script: Script, start: Instant) -> Arc<Upstream> {
        Arc::new(Upstream {
            script,
            start,
            requests: AtomicU64::new(0),
            model_requests: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
        })
    }

    /// When each `/api` request arrived, by group.
    pub fn arrivals(&self, group: Group) -> Vec<Duration> {
        let all = self.arrivals.lock().expect("not poisoned");
        all.iter()
            .filter(|(g, _)| *g == group)
            .map(|(_, t)| *t)
            .collect()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let now = self.start.elapsed();
        if req.uri().path() == "/model" {
            let n = self.model_requests.fetch_add(1, Ordering::Relaxed) as usize;
            let (status, retry_after, body) = MODEL_SCRIPT[n % MODEL_SCRIPT.len()];
            tokio::time::sleep(Duration::from_millis(20)).await;
            return reply(status, (retry_after > 0).then_some(retry_after), body);
        }
        let group = match req.headers().get(CLIENT_HEADER).map(HeaderValue::as_bytes) {
            Some(b"protected") => Group::Protected,
            _ => Group::Unprotected,
        };
        self.arrivals
            .lock()
            .expect("not poisoned")
            .push((group, now));
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        match self.script.answer(now, n) {
            Answer::Ok(after) => {
                tokio::time::sleep(after).await;
                reply(200, None, "ok")
            }
            Answer::Unavailable => reply(503, None, "unavailable"),
            Answer::TooManyRequests(secs) => reply(429, Some(secs), "too many requests"),
        }
    }
}

fn reply(status: u16, retry_after: Option<u64>, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Binds a loopback port and serves `upstream` on it until the runtime stops.
pub async fn serve(upstream: Arc<Upstream>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let upstream = upstream.clone();
            let service = hyper::service::service_fn(move |req| {
                let upstream = upstream.clone();
                async move { Ok::<_, Infallible>(upstream.handle(req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// The most requests seen in any window of `window` (the arrival times sorted).
pub fn max_in_window(mut times: Vec<Duration>, window: Duration) -> usize {
    times.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_in_window_counts_the_densest_window() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        let w = Duration::from_secs(1);
        assert_eq!(max_in_window(ms(&[]), w), 0);
        assert_eq!(max_in_window(ms(&[5]), w), 1);
        assert_eq!(max_in_window(ms(&[0, 999, 1000, 1500, 1999]), w), 3);
        assert_eq!(max_in_window(ms(&[3000, 0, 2000, 1000]), w), 1);
    }
}
