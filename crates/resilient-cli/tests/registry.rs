//! `resilient check CONFIG` and `resilient patterns`.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resilient"))
        .args(args)
        .output()
        .expect("start resilient")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn config_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("resilient-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_prints_the_stages_of_a_valid_file() {
    let path = config_file(
        "good",
        r#"
[breakers.payments]
consecutive_failures = 5

[limiters.api]
rate = 10

[pipelines.payments]
timeout = { operation = "2s" }
retry = { attempts = 3 }
circuit_breaker = "payments"
rate_limit = "api"

[pipelines.fetch]
pattern = "network"
"#,
    );
    let out = run(&["check", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}: ok\n", path.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "pipeline payments\n  1. Operation(2s)\n  2. circuit_breaker(per call)\n  \
             3. Retry\n  4. rate_limiter(per attempt)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("pipeline fetch\n  1. Request(30s)\n  2. Retry\n  3. Operation(10s)\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("breaker payments\nlimiter api\n"),
        "{stdout}"
    );
}

#[test]
fn check_names_the_line_and_field_of_an_error() {
    let path = config_file(
        "bad",
        "[pipelines.payments]\nretry = { attempts = 3 }\ncircuit_breaker = \"paymnets\"\n",
    );
    let out = run(&["check", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!(
            "resilient check: {}:3: pipelines.payments.circuit_breaker: no circuit_breaker named `paymnets`; none is defined\n",
            path.display()
        )
    );
}

#[test]
fn check_without_a_file_is_a_usage_error() {
    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["check", "/no/such/file.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("resilient check: /no/such/file.toml: "));
}

#[test]
fn patterns_lists_name_crate_parameters_and_description() {
    let out = run(&["patterns"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for name in ["http", "network", "parsing"] {
        assert!(
            stdout.contains(&format!("{name} (crate resilient)\n")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("    attempts = 3 "), "{stdout}");
    assert!(stdout.contains("transient network errors"), "{stdout}");
}
