//! The two client groups: the same HTTP GET, once bare and once through the standard
//! pipeline (request timeout, bulkhead, retry with jitter and a budget honouring
//! `Retry-After`, circuit breaker, client-side rate limit, attempt timeout).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::RETRY_AFTER;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use resilient::circuit::Window;
use resilient::ratelimit::headers::parse_retry_after;
use resilient::ratelimit::{Rate, RateLimiter};
use resilient::{
    Bulkhead, CircuitBreaker, CircuitEvent, Classify, ConfigError, Error, Jitter, Outcome,
    Pipeline, Retry, RetryBudget, SeededRandom, Timeout,
};
use serde::Serialize;
use tokio::task::JoinSet;

use super::stats::{CallKind, CallRecord, Group, Recorder};
use super::upstream::CLIENT_HEADER;

/// An HTTP client (a connection pool).
pub type Http = Client<HttpConnector, Empty<Bytes>>;

/// A new client.
pub fn http_client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer, its body read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Bytes,
}

/// No answer: the connection or the body failed.
#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// One GET of `uri` on behalf of `group`, body included.
pub async fn get(client: &Http, uri: &Uri, group: Group) -> Result<Reply, HttpError> {
    let request = Request::get(uri.clone())
        .header(CLIENT_HEADER, group.name())
        .body(Empty::new())
        .map_err(|e| HttpError(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| HttpError(e.to_string()))?
        .to_bytes();
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// The protected pipeline's settings (printed in the summary).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Calls each group starts per second.
    pub calls_per_s: u32,
    /// The whole call's budget, retries and waits included, ms.
    pub request_timeout_ms: u64,
    /// Each attempt's budget, ms.
    pub operation_timeout_ms: u64,
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// The first backoff (exponential, full jitter), ms.
    pub backoff_ms: u64,
    /// The longest `Retry-After` honoured, ms.
    pub max_server_delay_ms: u64,
    /// Retries allowed as a share of the calls of the last 2 s.
    pub retry_budget_ratio: f64,
    /// Retries always allowed per second.
    pub retry_budget_min_per_s: u32,
    /// The breaker opens at this failure rate...
    pub breaker_failure_rate: f64,
    /// ...over the last this many attempts...
    pub breaker_window: u32,
    /// ...once at least this many were seen.
    pub breaker_minimum_calls: u32,
    /// Opens after this many failed attempts in a row, whatever the rate.
    pub breaker_consecutive_failures: u32,
    /// Its first break, ms (1.5 times as long after a failed probe).
    pub breaker_open_ms: u64,
    /// Calls in flight at once.
    pub bulkhead_max_concurrent: usize,
    /// Calls waiting for a slot.
    pub bulkhead_queue: usize,
    /// Requests per second the client limiter lets through (GCRA)...
    pub limiter_rate_per_s: u64,
    /// ...with this burst.
    pub limiter_burst: u64,
    /// How long a request may wait for the limiter, ms.
    pub limiter_max_wait_ms: u64,
    /// What the upstream allows one client: requests in any second.
    pub upstream_limit_per_s: u64,
}

impl Settings {
    /// The settings for a run of `duration` (only the breaker's break scales with it).
    pub fn for_duration(duration: Duration) -> Settings {
        let open = (duration / 60).clamp(Duration::from_millis(150), Duration::from_millis(500));
        Settings {
            calls_per_s: 30,
            request_timeout_ms: 2000,
            operation_timeout_ms: 300,
            attempts: 3,
            backoff_ms: 50,
            max_server_delay_ms: 1500,
            retry_budget_ratio: 0.5,
            retry_budget_min_per_s: 10,
            breaker_failure_rate: 0.7,
            breaker_window: 50,
            breaker_minimum_calls: 20,
            breaker_consecutive_failures: 10,
            breaker_open_ms: open.as_millis() as u64,
            bulkhead_max_concurrent: 32,
            bulkhead_queue: 16,
            limiter_rate_per_s: 50,
            limiter_burst: 10,
            limiter_max_wait_ms: 200,
            upstream_limit_per_s: 75,
        }
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Where the protected group keeps shared state with `--redis`: the connection, and this
/// client instance's id.
#[derive(Clone)]
pub struct Shared {
    /// The Redis connection.
    pub conn: resilient_redis::Connection,
    /// This instance's id in the shared breaker.
    pub instance: String,
}

/// The protected group's strategies, kept to read their state while the run goes on.
pub struct Protection<C> {
    /// The pipeline every protected call goes through.
    pub pipeline: Pipeline<C>,
    /// Its breaker.
    pub breaker: CircuitBreaker,
    /// Its bulkhead.
    pub bulkhead: Bulkhead,
    /// Its retry budget.
    pub budget: Arc<RetryBudget>,
    /// With `--redis`: the shared breaker around `breaker`, and its report task.
    pub shared: Option<(resilient_redis::SharedBreaker, resilient_redis::SyncTask)>,
}

/// A 5xx or no answer counts against the upstream; a 429 is the upstream asking to slow
/// down, not failing: it is retried (after its `Retry-After`) but the breaker ignores it.
fn judge(result: &Result<Reply, HttpError>) -> Outcome {
    match result {
        Ok(r) if r.status.is_server_error() => Outcome::Failure,
        Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// Worth another attempt: 503, 429, or no answer.
fn retryable(result: &Result<Reply, HttpError>) -> bool {
    match result {
        Ok(r) => matches!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ),
        Err(_) => true,
    }
}

/// Builds the protected pipeline; the breaker reports its transitions to `recorder`.
pub fn protection(
    settings: &Settings,
    seed: u64,
    recorder: Arc<Recorder>,
    metrics: resilient::telemetry::prometheus::PrometheusMetrics,
    shared: Option<Shared>,
) -> Result<Protection<impl Classify<Reply, HttpError> + use<>>, ConfigError> {
    let ms = Duration::from_millis;
    let open_for = ms(settings.breaker_open_ms);
    let breaker = CircuitBreaker::failure_rate(settings.breaker_failure_rate)
        .name("upstream")
        .window(Window::count(settings.breaker_window))
        .minimum_calls(settings.breaker_minimum_calls)
        .consecutive_failures(settings.breaker_consecutive_failures)
        .open_for(open_for)
        .break_backoff(1.5, open_for * 3 / 2)
        .break_jitter(0.2)
        .observer(move |_: &str, event: &CircuitEvent| {
            if let CircuitEvent::StateTransition { from, to, .. } = event {
                recorder.transition(*from, *to);
            }
        })
        .build()?;
    let budget = RetryBudget::builder(settings.retry_budget_ratio)
        .min_per_sec(settings.retry_budget_min_per_s)
        .ttl(Duration::from_secs(2))
        .build()?;
    let bulkhead = Bulkhead::builder(settings.bulkhead_max_concurrent)
        .queue(settings.bulkhead_queue)
        .max_wait(ms(100))
        .build()?;
    let limiter = RateLimiter::gcra_with_burst(
        Rate::per_second(settings.limiter_rate_per_s),
        settings.limiter_burst,
    )
    .max_wait(ms(settings.limiter_max_wait_ms))
    .build()?;
    // With `--redis`: the breaker's open decision shared by the instances, and one GCRA
    // limit for all of them on the server (falling back to half of it locally if Redis
    // fails).
    let shared = match shared {
        Some(sh) => {
            let sb = resilient_redis::SharedBreaker::builder(sh.conn.clone(), "demo-upstream")
                .local(breaker.clone())
                // a short window: the local breakers stop most calls soon after an
                // outage starts, so the fleet's evidence is the first second's
                .window(Duration::from_secs(1), ms(100))
                .min_calls(u64::from(settings.breaker_minimum_calls / 2).max(4))
                .failure_rate(settings.breaker_failure_rate)
                .min_instances(2)
                .open_for(open_for)
                .sync_interval(ms(50))
                .instance(sh.instance.clone())
                .build()?;
            let limiter = resilient_redis::RedisLimiter::builder(sh.conn)
                .limit(resilient_redis::Limit::gcra_with_burst(
                    Rate::per_second(settings.limiter_rate_per_s),
                    settings.limiter_burst,
                )?)
                .prefix("resilient-demo:")
                .failure_mode(resilient_redis::FailureMode::Local { share: 0.5 })
                .max_wait(ms(settings.limiter_max_wait_ms))
                .build()?;
            let task = sb.spawn_sync();
            Some((sb, limiter, task))
        }
        None => None,
    };
    let builder = Pipeline::builder()
        .name("protected-get")
        // the whole call: queueing, attempts and waits
        .timeout(Timeout::request(settings.request_timeout()))
        // per call: at most 32 in flight, 16 waiting up to 100 ms
        .bulkhead(&bulkhead)
        .retry(
            Retry::exponential(ms(settings.backoff_ms))
                .attempts(settings.attempts)
                .jitter(Jitter::Full)
                .rng(Arc::new(SeededRandom::new(seed)))
                .max_server_delay(ms(settings.max_server_delay_ms))
                .budget(budget.clone()),
        );
    // per attempt: the breaker counts every request, the limiter paces every request
    let builder = match &shared {
        Some((sb, redis, _)) => builder.guard(sb.clone()).guard(redis.guard(|_| "upstream")),
        None => builder.circuit_breaker(&breaker).rate_limit(limiter),
    };
    let pipeline = builder
        .timeout(Timeout::operation(ms(settings.operation_timeout_ms)))
        .observer(metrics)
        .classify(judge)
        .retry_if(retryable)
        .delay_from(|r: &Result<Reply, HttpError>| r.as_ref().ok()?.retry_after)
        .build()?;
    Ok(Protection {
        pipeline,
        breaker,
        bulkhead,
        budget,
        shared: shared.map(|(sb, _, task)| (sb, task)),
    })
}

fn kind_of_status(status: StatusCode) -> CallKind {
    if status == StatusCode::OK {
        CallKind::Ok
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        CallKind::Throttled
    } else if status.is_server_error() {
        CallKind::ServerError
    } else {
        CallKind::Other
    }
}

/// How a protected call ended.
pub fn kind_of<E>(result: &Result<Reply, Error<E>>) -> CallKind {
    match result {
        Ok(reply) => kind_of_status(reply.status),
        Err(Error::Inner(_) | Error::RetriesExhausted { .. }) => CallKind::Transport,
        Err(Error::Timeout { .. }) => CallKind::Timeout,
        Err(Error::CircuitOpen { .. }) => CallKind::CircuitOpen,
        Err(Error::RateLimited { .. }) => CallKind::RateLimited,
        Err(Error::BulkheadFull) => CallKind::BulkheadFull,
        Err(_) => CallKind::Other,
    }
}

/// Starts `calls_per_s` calls a second of `group` until `until` (from the recorder's start),
/// then waits for them all to end.
pub async fn drive<C>(
    group: Group,
    settings: &Settings,
    until: Duration,
    uri: Uri,
    pipeline: Option<Pipeline<C>>,
    recorder: Arc<Recorder>,
) where
    C: Classify<Reply, HttpError> + Send + Sync + 'static,
{
    let client = http_client();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / settings.calls_per_s);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calls = JoinSet::new();
    loop {
        ticks.tick().await;
        let start = recorder.now();
        if start >= until {
            break;
        }
        recorder.started(group);
        let (client, uri, pipeline, recorder) = (
            client.clone(),
            uri.clone(),
            pipeline.clone(),
            recorder.clone(),
        );
        calls.spawn(async move {
            let began = tokio::time::Instant::now();
            let (kind, attempts) = match pipeline {
                None => {
                    let kind = match get(&client, &uri, group).await {
                        Ok(reply) => kind_of_status(reply.status),
                        Err(_) => CallKind::Transport,
                    };
                    (kind, 1)
                }
                Some(pipeline) => {
                    let attempts = AtomicU32::new(0);
                    let result = pipeline
                        .execute(|| {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            get(&client, &uri, group)
                        })
                        .await;
                    (kind_of(&result), attempts.load(Ordering::Relaxed))
                }
            };
            recorder.call(CallRecord {
                group,
                start,
                latency: began.elapsed(),
                kind,
                attempts,
            });
        });
        // reap finished calls as we go
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}
