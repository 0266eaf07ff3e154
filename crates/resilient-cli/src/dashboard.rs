//! `resilient dashboard`: the live web page (one self-contained HTML file, no CDN) and the
//! Prometheus `/metrics` it polls, served on loopback. [`serve`] is also what the demo
//! uses to show its pipelines live.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use resilient::ratelimit::{Rate, RateLimiter};
use resilient::telemetry::prometheus::PrometheusMetrics;
use resilient::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, Timeout};

/// The page: plots `/metrics` live.
pub const PAGE: &str = include_str!("dashboard.html");

fn respond(
    metrics: &PrometheusMetrics,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (status, kind, body) = match req.uri().path() {
        "/" | "/index.html" => (StatusCode::OK, "text/html; charset=utf-8", PAGE.to_string()),
        "/metrics" => (
            StatusCode::OK,
            resilient::telemetry::prometheus::CONTENT_TYPE,
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    resp
}

/// Serves the dashboard page at `/` and `metrics` at `/metrics` on `addr` (port 0: any
/// free port) until the runtime stops; returns the address it listens on.
pub async fn serve(metrics: PrometheusMetrics, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let metrics = metrics.clone();
            let service = hyper::service::service_fn(move |req| {
                let resp = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

const USAGE: &str = "\
Usage: resilient dashboard [--port N] [--duration SECS]

Serves the live dashboard (and /metrics) on 127.0.0.1, with a built-in synthetic workload
(a flaky operation through a pipeline with retry, breaker, limiter and bulkhead) feeding it.
Prints the URL. Runs until interrupted, or for --duration seconds.
";

/// `resilient dashboard`.
pub fn main(args: &[String]) -> ExitCode {
    let mut port = 0u16;
    let mut duration = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("resilient dashboard: {name} needs a number"))
        };
        let parsed = match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--port" => value("--port").and_then(|v| {
                u16::try_from(v)
                    .map(|p| port = p)
                    .map_err(|_| "resilient dashboard: --port is too large".to_string())
            }),
            "--duration" => value("--duration").map(|v| duration = Some(Duration::from_secs(v))),
            other => Err(format!(
                "resilient dashboard: unexpected argument '{other}'"
            )),
        };
        if let Err(e) = parsed {
            eprintln!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let metrics = PrometheusMetrics::new();
        let addr = match serve(metrics.clone(), SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("resilient dashboard: cannot listen: {e}");
                return ExitCode::from(1);
            }
        };
        println!("dashboard: http://{addr}/  (metrics: http://{addr}/metrics)");
        tokio::spawn(workload(metrics));
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        ExitCode::SUCCESS
    })
}

/// A synthetic workload for the dashboard: a dependency that fails 30% of the time and
/// has a two-second outage every ten seconds, called through a protected pipeline.
async fn workload(metrics: PrometheusMetrics) {
    let pipeline = Pipeline::builder()
        .name("checkout")
        .timeout(Timeout::request(Duration::from_secs(2)))
        .rate_limit(RateLimiter::gcra(Rate::per_second(40)))
        .bulkhead(Bulkhead::builder(8))
        .retry(Retry::exponential(Duration::from_millis(20)).attempts(3))
        .circuit_breaker(
            CircuitBreaker::failure_rate(0.5)
                .minimum_calls(10)
                .open_for(Duration::from_secs(2)),
        )
        .timeout(Timeout::operation(Duration::from_millis(300)))
        .observer(metrics)
        .build()
        .expect("a valid pipeline");
    let start = tokio::time::Instant::now();
    let mut n = 0u64;
    loop {
        n += 1;
        let outage = start.elapsed().as_secs() % 10 >= 8;
        let p = pipeline.clone();
        tokio::spawn(async move {
            let _: Result<(), Error<&str>> = p
                .execute(|| {
                    let flaky = fastrand::u32(0..10) < 3;
                    async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if outage || flaky {
                            Err("unavailable")
                        } else {
                            Ok(())
                        }
                    }
                })
                .await;
        });
        let _ = n;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}
