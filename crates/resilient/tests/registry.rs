//! The registry: one instance per name, shared; lookup errors; patterns with parameters;
//! the built-in `network` pattern's classification.

use std::io::{Error as IoError, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use resilient::registry::{Params, PatternRegistration, Registry, RegistryError, Value};
use resilient::{Bulkhead, CircuitBreaker, CircuitState, Error};

#[tokio::test(start_paused = true)]
async fn a_name_is_built_once_and_shared() {
    let builds = Arc::new(AtomicU32::new(0));
    let r = Registry::new();
    let counted = builds.clone();
    r.define_breaker("payments", move || {
        counted.fetch_add(1, Ordering::SeqCst);
        CircuitBreaker::consecutive_failures(1).build()
    })
    .unwrap();
    r.define_pipeline("a", |r| {
        Ok(resilient::registry::builder()
            .circuit_breaker(&r.breaker("payments")?)
            .build()?)
    })
    .unwrap();
    r.define_pipeline("b", |r| {
        Ok(resilient::registry::builder()
            .circuit_breaker(&r.breaker("payments")?)
            .build()?)
    })
    .unwrap();
    let a = r.pipeline("a").unwrap();
    let b = r.pipeline("b").unwrap();
    let failed: Result<(), Error<&str>> = a.execute(|| async { Err("down") }).await;
    assert!(matches!(failed, Err(Error::Inner("down"))));
    // opened through `a`, open for `b` and for the name
    let rejected: Result<(), Error<&str>> = b.execute(|| async { Ok(()) }).await;
    assert!(matches!(rejected, Err(Error::CircuitOpen { .. })));
    assert_eq!(r.breaker("payments").unwrap().state(), CircuitState::Open);
    assert_eq!(builds.load(Ordering::SeqCst), 1);
}

#[test]
fn unknown_names_list_the_known_ones() {
    let r = Registry::new();
    r.insert_bulkhead("db", Bulkhead::builder(1).build().unwrap())
        .unwrap();
    r.define_bulkhead("cache", || Bulkhead::builder(2).build())
        .unwrap();
    let err = r.bulkhead("dbb").unwrap_err();
    assert_eq!(
        err,
        RegistryError::Unknown {
            kind: "bulkhead",
            name: "dbb".into(),
            known: vec!["cache".into(), "db".into()],
        }
    );
    assert_eq!(err.to_string(), "no bulkhead named `dbb`; known: cache, db");
    let err = r.pipeline("paymnets").unwrap_err().to_string();
    assert!(err.contains("network"), "patterns are listed: {err}");
    let err = r.limiter("x").unwrap_err().to_string();
    assert_eq!(err, "no limiter named `x`; no limiter is defined");
}

#[test]
fn a_definition_that_fails_names_the_name_and_the_field() {
    let r = Registry::new();
    r.define_breaker("bad", || CircuitBreaker::failure_rate(2.0).build())
        .unwrap();
    match r.breaker("bad").unwrap_err() {
        RegistryError::Invalid { name, error } => {
            assert_eq!(name, "bad");
            assert_eq!(error.field(), "circuit.failure_rate");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn pattern_spellings_share_one_pipeline_per_canonical_spelling() {
    let r = Registry::new();
    r.add_pattern(PatternRegistration {
        name: "fragile",
        crate_name: "tests",
        params: &[resilient::registry::Param {
            name: "failures",
            default: "1",
            description: "failures that open the breaker",
        }],
        description: "a breaker of its own per spelling",
        factory: |p| {
            let n = p.u32("failures", 1)?;
            Ok(resilient::registry::builder()
                .circuit_breaker(CircuitBreaker::consecutive_failures(n))
                .build()?
                .into())
        },
    })
    .unwrap();
    let a = r.pipeline("fragile(failures = 1)").unwrap();
    let _: Result<(), Error<&str>> = a.execute(|| async { Err("down") }).await;
    // the same canonical spelling: the same pipeline, its breaker open
    let b = r.pipeline("fragile( failures=1 )").unwrap();
    let r1: Result<(), Error<&str>> = b.execute(|| async { Ok(()) }).await;
    assert!(matches!(r1, Err(Error::CircuitOpen { .. })));
    // another spelling: another pipeline
    let c = r.pipeline("fragile(failures = 2)").unwrap();
    let r2: Result<(), Error<&str>> = c.execute(|| async { Ok(()) }).await;
    assert!(r2.is_ok());
    // spellings are not names
    assert!(r.pipeline_names().is_empty());
}

#[test]
fn unknown_and_mistyped_parameters_are_errors() {
    let r = Registry::new();
    let err = r.pipeline("network(atempts = 5)").unwrap_err().to_string();
    assert!(err.contains("no parameter `atempts`"), "{err}");
    assert!(err.contains("attempts, base"), "{err}");
    let err = r.pipeline("network(attempts = \"x\")").unwrap_err();
    match err {
        RegistryError::Invalid { error, .. } => assert_eq!(error.field(), "attempts"),
        other => panic!("{other:?}"),
    }
    let err = r.pipeline("network(base = \"5 parsecs\")").unwrap_err();
    assert!(err.to_string().contains("unknown unit"), "{err}");
}

#[test]
fn params_parse_values_by_kind() {
    let (name, p) = Params::parse(r#"x(a = 1, b = 0.5, c = true, d = "5s", e = word)"#).unwrap();
    assert_eq!(name, "x");
    assert_eq!(p.get("a"), Some(&Value::Int(1)));
    assert_eq!(p.get("b"), Some(&Value::Float(0.5)));
    assert_eq!(p.get("c"), Some(&Value::Bool(true)));
    assert_eq!(p.get("d"), Some(&Value::Str("5s".into())));
    assert_eq!(p.get("e"), Some(&Value::Str("word".into())));
    assert!(Params::parse("x(a = 1").is_err());
    assert!(Params::parse("(a = 1)").is_err());
}

async fn network_calls(kind: ErrorKind) -> u32 {
    let calls = AtomicU32::new(0);
    let p = Registry::new()
        .pipeline("network(attempts = 4, budget = 0)")
        .unwrap();
    let r: Result<(), Error<IoError>> = p
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(IoError::from(kind)) }
        })
        .await;
    assert!(r.is_err());
    calls.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn network_retries_transient_io_errors_only() {
    assert_eq!(network_calls(ErrorKind::ConnectionReset).await, 4);
    assert_eq!(network_calls(ErrorKind::TimedOut).await, 4);
    assert_eq!(network_calls(ErrorKind::PermissionDenied).await, 1);
    assert_eq!(network_calls(ErrorKind::InvalidData).await, 1);
}

#[derive(Debug)]
struct Wrapper(IoError);
impl std::fmt::Display for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client error")
    }
}
impl std::error::Error for Wrapper {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn network_finds_the_io_error_in_a_boxed_chain() {
    let p = Registry::new()
        .pipeline("network(attempts = 3, budget = 0, retry_unknown = false)")
        .unwrap();
    let calls = AtomicU32::new(0);
    let _: Result<(), Error<resilient::BoxError>> = p
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Box::new(Wrapper(IoError::from(ErrorKind::ConnectionRefused))).into()) }
        })
        .await;
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);
    // another error type: `retry_unknown = false` does not retry it
    let _: Result<(), Error<&str>> = p
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err("other") }
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pattern_added_twice_is_a_collision_naming_both_crates() {
    let r = Registry::new();
    let mine = PatternRegistration {
        name: "mine",
        crate_name: "crate-a",
        params: &[],
        description: "a",
        factory: |_| Ok(resilient::registry::builder().build()?.into()),
    };
    r.add_pattern(mine).unwrap();
    assert!(r.pipeline("mine").is_ok());
    let clash = PatternRegistration {
        crate_name: "crate-b",
        ..mine
    };
    let err = r.add_pattern(clash).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pattern `mine` is registered by two crates, `crate-a` and `crate-b`"
    );
    // other registries do not see it
    assert!(Registry::new().pipeline("mine").is_err());
}

#[test]
fn typed_lookup_names_the_actual_classifier() {
    let r = Registry::new();
    r.insert_pipeline("plain", resilient::Pipeline::builder().build().unwrap())
        .unwrap();
    let err = r.pipeline("plain").unwrap_err().to_string();
    assert!(err.contains("AllErrors"), "{err}");
    assert!(r.pipeline_as::<resilient::AllErrors>("plain").is_ok());
}

#[test]
fn a_name_is_defined_once() {
    let r = Registry::new();
    r.define_breaker("shared", || CircuitBreaker::consecutive_failures(1).build())
        .unwrap();
    assert!(matches!(
        r.define_breaker("shared", || CircuitBreaker::consecutive_failures(2).build()),
        Err(RegistryError::Duplicate {
            kind: "breaker",
            ..
        })
    ));
    r.breaker("shared").unwrap().isolate();
    assert_eq!(r.breaker("shared").unwrap().state(), CircuitState::Isolated);
    // pipelines too, whether defined or inserted
    r.insert_pipeline("p", resilient::registry::builder().build().unwrap())
        .unwrap();
    assert!(
        r.define_pipeline("p", |_| Ok(resilient::registry::builder().build()?))
            .is_err()
    );
}
