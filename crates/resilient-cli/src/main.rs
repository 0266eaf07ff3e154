//! `resilient`: command-line tools of the resilient project.
//!
//! ```text
//! resilient demo [OPTIONS]      a live showcase against a flaky loopback upstream
//! resilient dashboard [OPTIONS] the live metrics page and /metrics on loopback
//! resilient json-repair [FILE]   repair JSON from FILE (or stdin) and print it
//! resilient check CONFIG        validate a configuration file and print its pipelines
//! resilient patterns            list the registered patterns
//! resilient --help
//! ```

#![forbid(unsafe_code)]

mod dashboard;
mod demo;
mod registry_cmd;

use std::io::{Read, Write};
use std::process::ExitCode;

pub(crate) const USAGE: &str = "\
Usage: resilient <COMMAND> [ARGS]

Commands:
  demo [OPTIONS]      A live showcase: a flaky HTTP upstream on loopback (scripted
                      errors, latency, 429s, an outage) called with and without a
                      resilience pipeline; a summary, a chart and a JSON-repair scene.
                      See 'resilient demo --help'.
  dashboard [OPTIONS] Serve the live metrics dashboard (and /metrics) on loopback,
                      fed by a synthetic workload; prints the URL. See
                      'resilient dashboard --help'.
  json-repair [FILE]  Repair malformed JSON read from FILE (stdin when absent or '-')
                      and write valid JSON to stdout. Exits with 1 and a message on
                      stderr when the input cannot be repaired. A character cut off
                      at the end of the input is dropped; other invalid UTF-8 bytes
                      become U+FFFD.
  check CONFIG        Validate a configuration file (TOML: named pipelines, breakers,
                      limiters, bulkheads) and print each pipeline's stages. Exits
                      with 1 and 'FILE:LINE: FIELD: message' on stderr when invalid.
  patterns            List the registered patterns (built in, and those of linked
                      extension crates): name, crate, parameters, description.

Options:
  -h, --help          Print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        "json-repair" => json_repair(&args[1..]),
        "demo" => demo::main(&args[1..]),
        "dashboard" => dashboard::main(&args[1..]),
        "check" => registry_cmd::check(&args[1..]),
        "patterns" => registry_cmd::patterns(&args[1..]),
        other => {
            eprintln!("resilient: unknown command '{other}'\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn json_repair(args: &[String]) -> ExitCode {
    let mut file = None;
    for a in args {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if file.is_some() => {
                eprintln!("resilient json-repair: unexpected argument '{a}'");
                return ExitCode::from(2);
            }
            _ => file = Some(a.clone()),
        }
    }
    let input = match read_input(file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "resilient json-repair: cannot read {}: {e}",
                file.as_deref().unwrap_or("stdin")
            );
            return ExitCode::from(2);
        }
    };
    match resilient_json::repair(&input) {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(json.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("resilient json-repair: cannot write output: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("resilient json-repair: {e}");
            ExitCode::from(1)
        }
    }
}

fn read_input(file: Option<&str>) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    match file {
        None | Some("-") => {
            std::io::stdin().read_to_end(&mut bytes)?;
        }
        Some(path) => bytes = std::fs::read(path)?,
    }
    Ok(decode(bytes))
}

/// Decodes the input as UTF-8. Truncated responses are the main use: a multi-byte character
/// cut off at the very end is dropped, and any other invalid byte becomes U+FFFD (lossy
/// decoding) rather than failing the whole repair.
fn decode(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let mut bytes = e.into_bytes();
            // a character has at most 4 bytes: a cut-off one starts in the last 3
            let cut = (bytes.len().saturating_sub(3)..bytes.len()).find(|&k| {
                std::str::from_utf8(&bytes[k..])
                    .is_err_and(|e| e.valid_up_to() == 0 && e.error_len().is_none())
            });
            if let Some(k) = cut {
                bytes.truncate(k);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}
