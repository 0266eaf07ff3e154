//! Runs the built `resilient` binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    run_bytes(args, stdin.as_bytes())
}

fn run_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resilient"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start resilient");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn repairs_stdin() {
    let out = run(&["json-repair"], "{name: 'Ada', tags: [1, 2,]");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), r#"{"name": "Ada", "tags": [1, 2]}"#);
    assert!(out.stderr.is_empty());
}

#[test]
fn repairs_a_file() {
    let path = std::env::temp_dir().join(format!("resilient-cli-test-{}.json", std::process::id()));
    std::fs::write(&path, "```json\n[True, None]\n```").unwrap();
    let out = run(&["json-repair", path.to_str().unwrap()], "");
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[true, null]");
}

#[test]
fn dash_means_stdin() {
    let out = run(&["json-repair", "-"], "[1 2]");
    assert_eq!(text(&out.stdout), "[1, 2]");
}

#[test]
fn unrepairable_input_fails_with_position() {
    let out = run(&["json-repair"], "{:2}");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "resilient json-repair: object key expected at position 1\n"
    );
}

#[test]
fn missing_file_is_reported() {
    let out = run(&["json-repair", "/nonexistent/input.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/input.json"));
}

#[test]
fn help_and_unknown_commands() {
    let out = run(&["--help"], "");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("json-repair [FILE]"));

    let out = run(&["json-repair", "--help"], "");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Usage"));

    let out = run(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown command 'frobnicate'"));

    let out = run(&[], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn input_cut_off_inside_a_character() {
    // a truncated response can end in the middle of a multi-byte character: it is dropped
    for (input, expected) in [
        (&b"{\"name\": \"caf\xC3"[..], r#"{"name": "caf"}"#),
        (b"[\"ab\xE2\x82", r#"["ab"]"#),
        (b"[\"ok\", \"\xF0\x9F\x98", r#"["ok"]"#),
    ] {
        let out = run_bytes(&["json-repair"], input);
        assert!(out.status.success(), "{input:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), expected);
    }
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let out = run_bytes(&["json-repair"], b"{\"a\": \"x\xFFy\", \"b\": \"\x80\"}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"a\": \"x\u{fffd}y\", \"b\": \"\u{fffd}\"}"
    );
    // a stray continuation byte at the end is not a cut-off character
    let out = run_bytes(&["json-repair"], b"[1, \"a\x80");
    assert_eq!(text(&out.stdout), "[1, \"a\u{fffd}\"]");
}
