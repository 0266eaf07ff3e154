//! Classification by type: I/O kinds, status codes, gRPC codes and pushback, and real
//! reqwest/hyper errors from loopback (a closed port, a server that drops the socket, a
//! resolver that fails).
#![cfg(all(feature = "http", not(loom)))]

use std::io::{Error as IoError, ErrorKind};
use std::time::Duration;

use ::http::{Response, StatusCode};
use resilient::http::{
    ClassifyError, DnsFailure, ErrorClass, GrpcCode, GrpcPolicy, NotReplayable, classify_error,
    grpc_status_class,
};
use resilient::{Classify, Outcome};

#[test]
fn io_errors_by_kind() {
    let class = |k: ErrorKind| IoError::from(k).error_class().unwrap();
    for k in [
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionAborted,
        ErrorKind::BrokenPipe,
        ErrorKind::UnexpectedEof,
    ] {
        assert_eq!(class(k), ErrorClass::Connect, "{k:?}");
    }
    assert_eq!(class(ErrorKind::TimedOut), ErrorClass::Timeout);
    assert_eq!(class(ErrorKind::Interrupted), ErrorClass::Transient);
    assert_eq!(class(ErrorKind::PermissionDenied), ErrorClass::Permanent);
    // the message is never read: a "timeout" message on another kind is not a timeout
    let lying = IoError::new(ErrorKind::InvalidInput, "connection timeout");
    assert_eq!(lying.error_class(), Some(ErrorClass::Permanent));
    // a resolver failure wrapped in an I/O error is DNS
    let dns = IoError::other(DnsFailure {
        host: "x.test".into(),
    });
    assert_eq!(classify_error(&dns), ErrorClass::Dns);
}

#[test]
fn status_codes() {
    let class = |s: u16| StatusCode::from_u16(s).unwrap().error_class();
    assert_eq!(class(408), Some(ErrorClass::Timeout));
    assert_eq!(class(429), Some(ErrorClass::Throttled));
    for s in [502, 503, 504] {
        assert_eq!(class(s), Some(ErrorClass::Transient));
    }
    assert_eq!(class(500), Some(ErrorClass::Permanent));
    assert_eq!(class(200), None);
    assert_eq!(class(404), None);
}

#[test]
fn grpc_codes() {
    assert_eq!(GrpcCode::OK.error_class(), None);
    assert_eq!(
        GrpcCode::UNAVAILABLE.error_class(),
        Some(ErrorClass::Transient)
    );
    assert_eq!(
        GrpcCode::DEADLINE_EXCEEDED.error_class(),
        Some(ErrorClass::Timeout)
    );
    assert_eq!(
        GrpcCode::RESOURCE_EXHAUSTED.error_class(),
        Some(ErrorClass::Throttled)
    );
    for code in [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 99, -1] {
        assert_eq!(
            grpc_status_class(code),
            Some(ErrorClass::Permanent),
            "{code}"
        );
    }
}

fn grpc_response(headers: &[(&str, &str)]) -> Result<Response<()>, IoError> {
    let mut b = Response::builder();
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    Ok(b.body(()).unwrap())
}

#[test]
fn grpc_policy_reads_status_and_pushback() {
    let p = GrpcPolicy;
    let ok = grpc_response(&[("grpc-status", "0")]);
    assert_eq!(p.classify(&ok), Outcome::Success);
    let unavailable = grpc_response(&[("grpc-status", "14")]);
    assert_eq!(p.classify(&unavailable), Outcome::Failure);
    assert!(p.should_retry(&unavailable, Outcome::Failure));
    assert_eq!(p.retry_after(1, &unavailable), None);
    let invalid = grpc_response(&[("grpc-status", "3")]);
    assert!(!p.should_retry(&invalid, Outcome::Failure));
    let pushed = grpc_response(&[("grpc-status", "8"), ("grpc-retry-pushback-ms", "1500")]);
    assert!(p.should_retry(&pushed, Outcome::Failure));
    assert_eq!(p.retry_after(1, &pushed), Some(Duration::from_millis(1500)));
    // a negative or unreadable pushback means "do not retry"
    for bad in ["-1", "soon"] {
        let r = grpc_response(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", bad)]);
        assert!(!p.should_retry(&r, Outcome::Failure), "{bad}");
    }
    let err: Result<Response<()>, IoError> = Err(ErrorKind::ConnectionRefused.into());
    assert!(p.should_retry(&err, Outcome::Failure));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn grpc_preset_retries_unavailable_then_succeeds() {
    let pipeline = resilient::http::grpc().build().unwrap();
    let mut calls = 0;
    let r = pipeline
        .execute(|| {
            calls += 1;
            let code = if calls < 3 { "14" } else { "0" };
            async move { grpc_response(&[("grpc-status", code), ("grpc-retry-pushback-ms", "10")]) }
        })
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "0");
    assert_eq!(calls, 3);
}

#[test]
fn not_replayable_keeps_its_class_and_source() {
    let e = NotReplayable::new(
        ErrorClass::Connect,
        None,
        Some(Box::new(IoError::from(ErrorKind::ConnectionReset))),
    );
    assert_eq!(classify_error(&e), ErrorClass::Connect);
    let source = std::error::Error::source(&e).unwrap();
    assert!(source.is::<IoError>());
}

#[cfg(feature = "reqwest")]
mod reqwest_errors {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A port nothing listens on: bind, read the port, close.
    async fn closed_port() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn refused_connection_is_connect() {
        let addr = closed_port().await;
        let e = reqwest::get(format!("http://{addr}/")).await.unwrap_err();
        assert_eq!(e.error_class(), Some(ErrorClass::Connect));
        assert_eq!(classify_error(&e), ErrorClass::Connect);
    }

    #[tokio::test]
    async fn socket_dropped_mid_request_is_connect() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await; // read the request, then drop the socket
        });
        let e = reqwest::get(format!("http://{addr}/")).await.unwrap_err();
        assert_eq!(classify_error(&e), ErrorClass::Connect, "{e:?}");
    }

    struct Failing;
    impl reqwest::dns::Resolve for Failing {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let host = name.as_str().to_owned();
            Box::pin(async move { Err(Box::new(DnsFailure { host }) as _) })
        }
    }

    #[tokio::test]
    async fn resolver_failure_is_dns() {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Failing))
            .build()
            .unwrap();
        let e = client.get("http://api.test/").send().await.unwrap_err();
        assert_eq!(classify_error(&e), ErrorClass::Dns, "{e:?}");
    }

    #[tokio::test]
    async fn client_timeout_is_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await; // never answers
            drop(s);
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let e = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.error_class(), Some(ErrorClass::Timeout));
    }
}
