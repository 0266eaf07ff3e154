//! Configuration files: a TOML file with three named pipelines loads, validates and runs;
//! malformed files give errors naming the file, the line and the field.

#![cfg(feature = "config")]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use resilient::registry::Registry;
use resilient::registry::config::ConfigFile;
use resilient::{CircuitState, Error};

const GOOD: &str = include_str!("config/three_pipelines.toml");

#[tokio::test(start_paused = true)]
async fn three_named_pipelines_load_validate_and_run() {
    let r = Registry::new();
    r.load_toml(GOOD, "three_pipelines.toml").unwrap();
    assert_eq!(r.pipeline_names(), ["fetch", "payments", "search"]);

    // payments: retry, and the named breaker
    let payments = r.pipeline("payments").unwrap();
    let calls = AtomicU32::new(0);
    let out: Result<(), Error<&str>> = payments
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err("down") }
        })
        .await;
    assert!(matches!(
        out,
        Err(Error::RetriesExhausted { attempts: 3, .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // the call failed once as far as the per-call breaker is concerned; once more opens it
    let _: Result<(), Error<&str>> = payments.execute(|| async { Err("down") }).await;
    assert_eq!(r.breaker("payments").unwrap().state(), CircuitState::Open);

    // search: a fixed window of 2 per 10s, shared through the name
    let search = r.pipeline("search").unwrap();
    for _ in 0..2 {
        let ok: Result<u8, Error<()>> = search.execute(|| async { Ok(1) }).await;
        assert_eq!(ok.unwrap(), 1);
    }
    let third: Result<u8, Error<()>> = search.execute(|| async { Ok(1) }).await;
    assert!(matches!(third, Err(Error::RateLimited { .. })));
    assert!(r.limiter("search").unwrap().allow().is_err());

    // fetch: the `network` pattern with the file's parameters
    let fetch = r.pipeline("fetch").unwrap();
    let calls = AtomicU32::new(0);
    let _: Result<(), Error<io::Error>> = fetch
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn the_same_file_through_json_loads_the_same_registry() {
    let config = ConfigFile::from_toml(GOOD, "three_pipelines.toml").unwrap();
    let json = serde_json::to_string(&config).unwrap();
    let again: ConfigFile = serde_json::from_str(&json).unwrap();
    assert_eq!(again, config);
    let from_json = Registry::new();
    from_json.load(&again, "three_pipelines.json").unwrap();
    let from_toml = Registry::new();
    from_toml.load_toml(GOOD, "three_pipelines.toml").unwrap();
    for name in ["payments", "search", "fetch"] {
        assert_eq!(
            from_json.pipeline(name).unwrap().stages(),
            from_toml.pipeline(name).unwrap().stages()
        );
    }
}

/// (file, line, field, a part of the message)
const BAD: &[(&str, &str, usize, &str, &str)] = &[
    (
        "bad_duration.toml",
        include_str!("config/bad_duration.toml"),
        2,
        "pipelines.payments.timeout.operation",
        "unknown unit `parsecs`",
    ),
    (
        "bad_unknown_key.toml",
        include_str!("config/bad_unknown_key.toml"),
        6,
        "pipelines.payments.retry.atempts",
        "unknown field `atempts`",
    ),
    (
        "bad_value.toml",
        include_str!("config/bad_value.toml"),
        3,
        "breakers.payments.failure_rate",
        "circuit.failure_rate",
    ),
    (
        "bad_reference.toml",
        include_str!("config/bad_reference.toml"),
        5,
        "pipelines.search.rate_limit",
        "no rate_limit named `serach`; known: search",
    ),
    (
        "bad_timeouts.toml",
        include_str!("config/bad_timeouts.toml"),
        4,
        "pipelines.payments.timeout.operation",
        "timeout.operation",
    ),
    (
        "bad_type.toml",
        include_str!("config/bad_type.toml"),
        2,
        "bulkheads.db.max_concurrent",
        "invalid type",
    ),
];

#[test]
fn malformed_files_name_the_file_line_and_field() {
    for (file, src, line, field, part) in BAD {
        let r = Registry::new();
        let err = r.load_toml(src, file).unwrap_err();
        assert_eq!(err.file(), *file);
        assert_eq!(err.line(), Some(*line), "{err}");
        assert_eq!(err.field(), *field, "{err}");
        assert!(err.message().contains(part), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{file}:{line}: {field}: ")),
            "{err}"
        );
        // nothing was added
        assert!(r.pipeline_names().is_empty(), "{file}");
        assert!(r.breaker_names().is_empty(), "{file}");
    }
}

#[test]
fn a_name_already_in_the_registry_may_be_referred_to_but_not_redefined() {
    let r = Registry::new();
    r.load_toml("[limiters.api]\nrate = 5\n", "a.toml").unwrap();
    r.load_toml("[pipelines.api]\nrate_limit = \"api\"\n", "b.toml")
        .unwrap();
    let err = r
        .load_toml("[limiters.api]\nrate = 6\n", "c.toml")
        .unwrap_err();
    assert_eq!(err.field(), "limiters.api");
    assert!(err.message().contains("already defined"), "{err}");
}

#[test]
fn a_pattern_pipeline_takes_nothing_else() {
    let err = Registry::new()
        .load_toml(
            "[pipelines.x]\npattern = \"network\"\nretry = { attempts = 2 }\n",
            "p.toml",
        )
        .unwrap_err();
    assert_eq!((err.line(), err.field()), (Some(2), "pipelines.x.pattern"));
    let err = Registry::new()
        .load_toml("[pipelines.x]\npattern = \"netwerk\"\n", "p.toml")
        .unwrap_err();
    assert!(err.message().contains("known:"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_hedged_pipeline_loads_when_marked_idempotent() {
    let src = "[pipelines.quotes]\nhedge = { delay = \"50ms\" }\n";
    let err = Registry::new().load_toml(src, "h.toml").unwrap_err();
    assert_eq!(
        (err.line(), err.field()),
        (Some(2), "pipelines.quotes.hedge")
    );
    assert!(err.message().contains("idempotent"), "{err}");

    let r = Registry::new();
    r.load_toml(
        "[pipelines.quotes]\nidempotent = true\nhedge = { delay = \"50ms\" }\n",
        "h.toml",
    )
    .unwrap();
    let p = r.pipeline("quotes").unwrap();
    let started = AtomicU32::new(0);
    let out: Result<u32, Error<()>> = p
        .execute(|| {
            let n = started.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                }
                Ok(n)
            }
        })
        .await;
    assert_eq!(out.unwrap(), 1); // the hedge answered
}
