//! # resilient-json
//!
//! Turns the almost-JSON that language models, log files and cut-off network responses
//! produce into valid JSON, in linear time, and never panics.
//!
//! ```
//! let fixed = resilient_json::repair("```json\n{name: 'Ada', tags: ['x', 'y',], active: True\n```").unwrap();
//! assert_eq!(fixed.trim(), r#"{"name": "Ada", "tags": ["x", "y"], "active": true}"#);
//! ```
//!
//! Valid JSON is returned unchanged (after a strict validation pass), so calling
//! [`repair`] on every input costs one extra scan when nothing is wrong. [`parse`] goes one step
//! further: it deserializes with `serde_json` and repairs only when that fails.
//!
//! ## What is repaired
//! See [`RepairKind`] for the full list: markdown code fences and prose around the JSON,
//! single / curly / backtick quotes, unquoted keys and strings, missing, trailing and leading
//! commas, missing colons, comments (`//`, `/* */`, `#`), Python literals (`True`, `None`),
//! `undefined` / `NaN` / `Infinity`, missing closing brackets and truncated strings, unescaped
//! control characters and quotes inside strings, escaped (stringified) JSON (also without
//! outer quotes, and escaped several times), string concatenation, ellipses (`[1, 2, ...]`),
//! JSONP and MongoDB wrappers (comments around the argument included), numbers like `2.`,
//! `.5` or `007`, tuples `(1, 2)`, and several values (NDJSON) that are wrapped in an array.
//!
//! Many inputs are ambiguous (is this quote the end of the string or part of the text?). The
//! rules follow the JavaScript `jsonrepair` library where it has one, and the Python
//! `json_repair` library's heuristics for text written by language models; `CORPUS.md` in
//! the crate lists the measured agreement with both and every known difference.
//!
//! ## Guarantees
//! - Time and memory are linear in the input size, whatever the input: nesting is tracked on
//!   a packed heap stack (two bits per open bracket, a byte or two more for an object or a
//!   tuple, so a million nested brackets are fine) and each byte is read a bounded number of
//!   times. Peak heap stays within three times the input, or within about one and a half
//!   times the output when the output is itself larger (`[{{{` becomes `[{},{},{}]`).
//! - The result of [`repair`] is strict JSON. The engine is written to emit only strict JSON;
//!   property tests and a fuzz target check this with a strict validator, which also runs on
//!   every output in debug builds.
//! - Inputs that cannot be repaired give a [`RepairError`] with a byte position.
//!
//! ## Streams
//! [`Repairer`] repairs JSON as it arrives, chunk by chunk (a model's streamed answer), in
//! linear total time: after any chunk, [`Repairer::snapshot`] gives the value so far as valid
//! JSON, with open strings, arrays and objects closed and incomplete members, numbers and
//! literals left out, so that every snapshot is a prefix view of the final value.
//! [`parse_partial`] deserializes such a value into a type with optional fields. The stream
//! mode repairs what can be repaired without looking ahead; its [`Repairer`] documentation
//! lists what only the batch mode handles.
//!
//! ```
//! let mut r = resilient_json::Repairer::new();
//! r.push("```json\n{\"steps\": [\"parse\", \"rep");
//! assert_eq!(r.snapshot().unwrap(), "\n{\"steps\": [\"parse\", \"rep\"]}");
//! r.push("air\"]}\n```");
//! assert_eq!(r.finish().unwrap(), "\n{\"steps\": [\"parse\", \"repair\"]}\n");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chars;
mod engine;
mod error;
mod report;
mod stream;
mod validate;

pub use error::{ParseError, RepairError, RepairErrorKind};
pub use report::{Repair, RepairKind, Report};
pub use stream::{Repairer, parse_partial};

use serde::de::DeserializeOwned;
use validate::Validity;

/// Repairs `input` into valid JSON. Valid JSON is returned unchanged.
///
/// ```
/// assert_eq!(resilient_json::repair("[1, 2, 3,").unwrap(), "[1, 2, 3]");
/// assert_eq!(resilient_json::repair(r#"{"a": 1}"#).unwrap(), r#"{"a": 1}"#);
/// assert!(resilient_json::repair("").is_err());
/// ```
pub fn repair(input: &str) -> Result<String, RepairError> {
    match validate::classify_prefix(input.as_bytes()) {
        (Validity::Valid, _) => Ok(input.to_owned()),
        (v, valid) => engine_repair(input, false, v, valid).map(|(s, _)| s),
    }
}

/// Repairs `input` and reports what was repaired (an empty report for valid JSON).
///
/// ```
/// use resilient_json::RepairKind;
/// let (json, report) = resilient_json::repair_with_report("{'a': None}").unwrap();
/// assert_eq!(json, r#"{"a": null}"#);
/// assert!(report.contains(RepairKind::Quotes));
/// assert!(report.contains(RepairKind::PythonLiteral));
/// ```
pub fn repair_with_report(input: &str) -> Result<(String, Report), RepairError> {
    match validate::classify_prefix(input.as_bytes()) {
        (Validity::Valid, _) => Ok((input.to_owned(), Report::default())),
        (v, valid) => engine_repair(input, true, v, valid).map(|(s, r)| (s, Report::from_vec(r))),
    }
}

/// Runs the engine on an input that is not valid JSON. JSON that is only wrong for its raw
/// control characters is read trusting its quotes, so no character of its strings is lost.
/// `input[..valid]` is a prefix of strict JSON (`validate::classify_prefix`).
fn engine_repair(
    input: &str,
    report: bool,
    v: Validity,
    valid: usize,
) -> Result<(String, Vec<Repair>), RepairError> {
    if v == Validity::RawControls {
        engine::repair_trusting_quotes(input, report)
    } else {
        engine::repair(input, report, valid)
    }
}

/// Deserializes `input` with `serde_json`, repairing it first only if strict parsing fails.
///
/// Input that is valid JSON but does not fit `T` is not repaired: the `serde_json` error
/// (a [`Category::Data`](serde_json::error::Category::Data) error, with its position in
/// `input`) is returned at once. A type error met before a syntax error (NDJSON for a
/// `Vec<T>`) still leads to a repair.
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct User { name: String, age: u32 }
///
/// let user: User = resilient_json::parse("{name: 'Ada', age: 36,}").unwrap();
/// assert_eq!(user, User { name: "Ada".into(), age: 36 });
/// ```
pub fn parse<T: DeserializeOwned>(input: &str) -> Result<T, ParseError> {
    match serde_json::from_str(input) {
        Ok(v) => Ok(v),
        // serde reports a type error as soon as it meets it, possibly before a syntax error
        // further on: only valid JSON proves that repairing cannot help
        Err(e)
            if e.classify() == serde_json::error::Category::Data
                && validate::is_valid(input.as_bytes()) =>
        {
            Err(ParseError::Json(e))
        }
        Err(_) => {
            let (v, valid) = validate::classify_prefix(input.as_bytes());
            let fixed = engine_repair(input, false, v, valid)?.0;
            Ok(serde_json::from_str(&fixed)?)
        }
    }
}
