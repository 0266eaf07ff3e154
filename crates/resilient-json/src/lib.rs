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
//! control characters and quotes inside strings, escaped (stringified) JSON, string
//! concatenation, ellipses (`[1, 2, ...]`), JSONP and MongoDB wrappers, numbers like `2.`, `.5`
//! or `007`, tuples `(1, 2)`, and several values (NDJSON) that are wrapped in an array.
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chars;
mod engine;
mod error;
mod report;
mod validate;

pub use error::{ParseError, RepairError, RepairErrorKind};
pub use report::{Repair, RepairKind, Report};

use serde::de::DeserializeOwned;

/// Repairs `input` into valid JSON. Valid JSON is returned unchanged.
///
/// ```
/// assert_eq!(resilient_json::repair("[1, 2, 3,").unwrap(), "[1, 2, 3]");
/// assert_eq!(resilient_json::repair(r#"{"a": 1}"#).unwrap(), r#"{"a": 1}"#);
/// assert!(resilient_json::repair("").is_err());
/// ```
pub fn repair(input: &str) -> Result<String, RepairError> {
    match validate::check(input.as_bytes()) {
        Ok(()) => Ok(input.to_owned()),
        Err(valid) => engine::repair(input, false, valid).map(|(s, _)| s),
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
    match validate::check(input.as_bytes()) {
        Ok(()) => Ok((input.to_owned(), Report::default())),
        Err(valid) => engine::repair(input, true, valid).map(|(s, r)| (s, Report::from_vec(r))),
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
            let fixed = engine::repair(input, false, 0)?.0;
            Ok(serde_json::from_str(&fixed)?)
        }
    }
}
