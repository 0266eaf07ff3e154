//! Hot reload: a valid change applied under load with no call dropped and state kept;
//! invalid changes rejected with precise messages while the old configuration serves; file
//! watching through notify.
#![cfg(feature = "reload")]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use resilient::CircuitState;
use resilient::registry::reload::{LiveConfig, ReloadEvent};

const BASE: &str = r#"
[breakers.db]
consecutive_failures = 3
open_for = "60s"

[limiters.api]
rate = 10
per = "1s"
burst = 10

[bulkheads.pool]
max_concurrent = 50

[pipelines.orders]
bulkhead = "pool"
retry = { attempts = 2, backoff = "constant", base = "100ms" }

[pipelines.payments]
circuit_breaker = "db"

[pipelines.search]
rate_limit = "api"
"#;

/// BASE with more attempts for `orders`, a faster `api` limiter and a bigger pool.
const NEXT: &str = r#"
[breakers.db]
consecutive_failures = 3
open_for = "60s"

[limiters.api]
rate = 20
per = "1s"
burst = 10

[bulkheads.pool]
max_concurrent = 80

[pipelines.orders]
bulkhead = "pool"
retry = { attempts = 5, backoff = "constant", base = "100ms" }

[pipelines.payments]
circuit_breaker = "db"

[pipelines.search]
rate_limit = "api"

[pipelines.reports]
retry = { attempts = 2, backoff = "immediate" }
"#;

#[tokio::test(start_paused = true)]
async fn a_valid_change_under_load_drops_no_call_and_keeps_state() {
    let live = LiveConfig::from_toml(BASE, "app.toml").unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    live.on_reload(move |e| {
        ev.lock().unwrap().push(match e {
            ReloadEvent::Applied(r) => format!("applied {:?}", r.pipelines),
            ReloadEvent::Rejected(e) => format!("rejected {e}"),
            _ => "other".into(),
        })
    });

    // open the shared breaker, spend the limiter
    let payments = live.pipeline("payments").unwrap();
    for _ in 0..3 {
        let _ = payments.execute(|| async { Err::<(), _>("down") }).await;
    }
    let db = live.registry().breaker("db").unwrap();
    assert_eq!(db.state(), CircuitState::Open);

    // load: 40 callers in a loop, each call taking 10 ms
    let orders = live.pipeline("orders").unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let orders = orders.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                orders
                    .execute(|| async {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok::<_, ()>(())
                    })
                    .await
                    .expect("no call fails or is dropped across a reload");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // a failing call in flight on the old settings (2 attempts, 100 ms apart)
    let attempts = Arc::new(AtomicU32::new(0));
    let a = attempts.clone();
    let in_flight = tokio::spawn(orders.execute(move || {
        a.fetch_add(1, Ordering::Relaxed);
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<(), _>("flaky")
        }
    }));
    tokio::time::sleep(Duration::from_millis(105)).await; // mid-load
    let before = done.load(Ordering::Relaxed);
    assert!(before > 0 && before < 2_000);
    // spend the limiter just before the reload
    let api = live.registry().limiter("api").unwrap();
    while api.check().allowed {}
    let report = live.reload_toml(NEXT, "app.toml").unwrap();
    let api2 = live.registry().limiter("api").unwrap();
    assert!(
        !api2.check().allowed,
        "the units in use stay in use after a rate change"
    );
    tokio::time::sleep(Duration::from_millis(51)).await;
    assert!(
        api2.check().allowed,
        "and come back at the new rate (20/s: one per 50 ms)"
    );
    assert!(!api2.check().allowed);
    assert_eq!(report.kept, ["breakers.db"]);
    assert_eq!(report.adjusted, ["limiters.api"]);
    assert_eq!(report.replaced, ["bulkheads.pool"]);
    assert_eq!(report.added, ["pipelines.reports"]);
    assert!(report.removed.is_empty());

    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 2_000, "every call finished");
    assert!(in_flight.await.unwrap().is_err());
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "the call in flight kept its settings"
    );

    // new calls see the new settings
    let n = AtomicU32::new(0);
    let _ = orders
        .execute(|| {
            n.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("flaky") }
        })
        .await;
    assert_eq!(n.load(Ordering::Relaxed), 5);

    // the breaker is the same one, still open; the limiter kept its units in use
    let db2 = live.registry().breaker("db").unwrap();
    assert_eq!(db2.state(), CircuitState::Open);
    let r = payments.execute(|| async { Ok::<_, ()>(()) }).await;
    assert!(
        matches!(r, Err(resilient::Error::CircuitOpen { .. })),
        "{r:?}"
    );

    assert_eq!(live.stats().applied, 1);
    assert_eq!(events.lock().unwrap().len(), 1);
    assert!(live.pipeline("reports").is_ok());
}

#[tokio::test(start_paused = true)]
async fn five_invalid_changes_are_rejected_precisely_and_the_old_config_serves() {
    let live = LiveConfig::from_toml(BASE, "app.toml").unwrap();
    let rejected = Arc::new(AtomicU32::new(0));
    let r = rejected.clone();
    live.on_reload(move |e| {
        if let ReloadEvent::Rejected(_) = e {
            r.fetch_add(1, Ordering::Relaxed);
        }
    });
    let orders = live.pipeline("orders").unwrap();
    let stages = orders.current().stages().to_vec();

    let cases: [(&str, Option<usize>, &str, &str); 5] = [
        // TOML syntax
        ("[pipelines.orders\nretry = {}\n", Some(1), "", "expected"),
        // an unknown field
        (
            "[pipelines.orders]\nretry = { atempts = 4 }\n",
            Some(2),
            "pipelines.orders.retry.atempts",
            "unknown field",
        ),
        // a value that breaks a rule
        (
            "[pipelines.orders]\nretry = { attempts = 0 }\n",
            Some(2),
            "pipelines.orders.retry.attempts",
            "",
        ),
        // a reference to nothing
        (
            "[pipelines.orders]\n\ncircuit_breaker = \"nope\"\n",
            Some(3),
            "pipelines.orders.circuit_breaker",
            "nope",
        ),
        // a wrong type
        (
            "[limiters.api]\nrate = \"ten\"\n",
            Some(2),
            "limiters.api.rate",
            "",
        ),
    ];
    for (i, (src, line, field, says)) in cases.into_iter().enumerate() {
        let err = live.reload_toml(src, "app.toml").unwrap_err();
        assert_eq!(err.file(), "app.toml", "case {i}");
        assert_eq!(err.line(), line, "case {i}: {err}");
        if !field.is_empty() {
            assert_eq!(err.field(), field, "case {i}: {err}");
        }
        assert!(err.to_string().contains(says), "case {i}: {err}");
        // the old configuration keeps serving
        assert_eq!(orders.current().stages(), &stages[..], "case {i}");
        assert_eq!(orders.execute(|| async { Ok::<_, ()>(7) }).await, Ok(7));
        assert_eq!(live.pipeline_names(), ["orders", "payments", "search"]);
    }
    assert_eq!(live.stats().rejected, 5);
    assert_eq!(live.stats().applied, 0);
    assert_eq!(rejected.load(Ordering::Relaxed), 5);
}

#[tokio::test(start_paused = true)]
async fn a_removed_pipeline_keeps_serving_its_handles_but_is_gone_by_name() {
    let live = LiveConfig::from_toml(BASE, "app.toml").unwrap();
    let search = live.pipeline("search").unwrap();
    let without: String = BASE.replace("[pipelines.search]\nrate_limit = \"api\"\n", "");
    let report = live.reload_toml(&without, "app.toml").unwrap();
    assert_eq!(report.removed, ["pipelines.search"]);
    assert_eq!(search.execute(|| async { Ok::<_, ()>(1) }).await, Ok(1));
    let err = live.pipeline("search").unwrap_err().to_string();
    assert!(err.contains("known: orders, payments"), "{err}");
}

#[test]
fn the_file_is_watched_and_reloaded_when_it_changes() {
    let dir = std::env::temp_dir().join(format!("resilient-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.toml");
    std::fs::write(&path, BASE).unwrap();
    let live = LiveConfig::from_toml_file(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    live.on_reload(move |e| {
        let _ = tx.lock().unwrap().send(match e {
            ReloadEvent::Applied(r) => Ok((*r).clone()),
            ReloadEvent::Rejected(e) => Err(e.to_string()),
            _ => Err("unknown event".into()),
        });
    });
    let watcher = live.watch(&path).unwrap();
    assert_eq!(watcher.path(), path);

    std::fs::write(&path, NEXT).unwrap();
    // waits for the event (not a sleep): a reload arrives once notify reports the write
    // and the file has been quiet for the debounce
    let report = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a reload after the write")
        .expect("applied");
    assert_eq!(
        report.added,
        ["pipelines.reports"],
        "one reload of the whole file"
    );
    assert!(live.pipeline("reports").is_ok());

    std::fs::write(&path, "[pipelines.orders]\nretry = { attempts = 0 }\n").unwrap();
    let err = loop {
        match rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a rejection")
        {
            Err(e) => break e,
            Ok(_) => continue, // a second event of the first write
        }
    };
    assert!(
        err.contains("app.toml:2: pipelines.orders.retry.attempts"),
        "{err}"
    );
    assert!(
        live.pipeline("reports").is_ok(),
        "the old configuration serves"
    );
    drop(watcher);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn chaos_is_configured_switched_at_run_time_and_re_rated_on_reload() {
    let src = r#"
[chaos.flaky]
reject_rate = 1.0
seed = 3

[pipelines.p]
chaos = "flaky"
"#;
    let live = LiveConfig::from_toml(src, "chaos.toml").unwrap();
    let p = live.pipeline("p").unwrap();
    let r = p.execute(|| async { Ok::<_, ()>(1) }).await;
    assert!(
        matches!(r, Err(resilient::Error::Rejected { guard: "chaos", .. })),
        "{r:?}"
    );
    // switched off at run time through the registry
    let chaos = live.registry().chaos("flaky").unwrap();
    chaos.set_enabled(false);
    assert_eq!(p.execute(|| async { Ok::<_, ()>(1) }).await, Ok(1));
    chaos.set_enabled(true);

    // a reload re-rates the same injector in place
    let report = live
        .reload_toml(
            &src.replace("reject_rate = 1.0", "reject_rate = 0.0"),
            "chaos.toml",
        )
        .unwrap();
    assert_eq!(report.adjusted, ["chaos.flaky"]);
    assert_eq!(chaos.reject_rate(), 0.0);
    assert_eq!(p.execute(|| async { Ok::<_, ()>(2) }).await, Ok(2));

    // an invalid rate names its field and line
    let err = live
        .reload_toml(
            &src.replace("reject_rate = 1.0", "reject_rate = 1.5"),
            "chaos.toml",
        )
        .unwrap_err();
    assert_eq!(
        (err.line(), err.field()),
        (Some(3), "chaos.flaky.reject_rate"),
        "{err}"
    );
    // and an unknown injector lists the known ones
    let err = live
        .reload_toml(
            &src.replace("chaos = \"flaky\"", "chaos = \"flakey\""),
            "chaos.toml",
        )
        .unwrap_err();
    assert!(err.to_string().contains("known: flaky"), "{err}");
}
