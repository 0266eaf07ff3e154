//! The extension crate's pattern is found by name, with no registration call.

use resilient::Error;
use std::sync::atomic::{AtomicU32, Ordering};

#[tokio::test(start_paused = true)]
async fn the_extension_pattern_is_found_by_name_and_runs() {
    let pipeline = resilient_ext_app::pipeline().unwrap();
    let calls = AtomicU32::new(0);
    let r: Result<(), Error<&str>> = pipeline
        .execute(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err("flaky") }
        })
        .await;
    assert!(matches!(
        r,
        Err(Error::RetriesExhausted { attempts: 4, .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn the_extension_pattern_is_listed_with_its_crate_and_parameters() {
    let all = resilient::registry::patterns().unwrap();
    let ext = all
        .iter()
        .find(|p| p.name == "example-retry")
        .expect("registered at link time");
    assert_eq!(ext.crate_name, "resilient-ext-example");
    let params: Vec<&str> = ext.params.iter().map(|p| p.name).collect();
    assert_eq!(params, ["attempts", "delay"]);
    // the built-in ones are there too
    assert!(all.iter().any(|p| p.name == "network"));
}
