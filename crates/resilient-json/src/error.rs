//! Errors returned by [`repair`](crate::repair) and [`parse`](crate::parse).

use std::fmt;

/// Why an input could not be repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepairErrorKind {
    /// The input holds no value at all (it is empty, or only whitespace and comments).
    Empty,
    /// A character that cannot start or continue any value at this place.
    UnexpectedCharacter(char),
    /// An object member without a key, like `{:2}`.
    ObjectKeyExpected,
    /// A `\u` escape that is neither four hex digits nor cut off by the end of the input.
    InvalidUnicodeEscape,
    /// The engine produced text that is not valid JSON. This is a bug, only detected in debug
    /// builds and under fuzzing: please report the input.
    Internal,
}

/// An input the engine cannot turn into valid JSON, with the byte offset where it gave up.
///
/// ```
/// let err = resilient_json::repair("{:2}").unwrap_err();
/// assert_eq!(err.position(), 1);
/// assert_eq!(err.to_string(), "object key expected at position 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairError {
    kind: RepairErrorKind,
    position: usize,
}

impl RepairError {
    pub(crate) fn new(kind: RepairErrorKind, position: usize) -> Self {
        Self { kind, position }
    }

    /// What went wrong.
    pub fn kind(&self) -> RepairErrorKind {
        self.kind
    }

    /// Byte offset in the input where the problem was found.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for RepairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RepairErrorKind::Empty => write!(f, "no JSON value found")?,
            RepairErrorKind::UnexpectedCharacter(c) => write!(f, "unexpected character {c:?}")?,
            RepairErrorKind::ObjectKeyExpected => write!(f, "object key expected")?,
            RepairErrorKind::InvalidUnicodeEscape => write!(f, "invalid unicode escape")?,
            RepairErrorKind::Internal => write!(f, "internal error: repaired text is not JSON")?,
        }
        write!(f, " at position {}", self.position)
    }
}

impl std::error::Error for RepairError {}

/// Error of [`parse`](crate::parse): the input could not be repaired, or the repaired JSON does
/// not fit the requested type.
///
/// ```
/// let err = resilient_json::parse::<u32>("[1, 2").unwrap_err();
/// assert!(matches!(err, resilient_json::ParseError::Json(_)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is not JSON and could not be repaired.
    Repair(RepairError),
    /// The JSON (valid as given, or repaired) does not deserialize into the requested type.
    Json(serde_json::Error),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Repair(e) => write!(f, "cannot repair JSON: {e}"),
            ParseError::Json(e) => write!(f, "JSON does not fit the requested type: {e}"),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParseError::Repair(e) => Some(e),
            ParseError::Json(e) => Some(e),
        }
    }
}

impl From<RepairError> for ParseError {
    fn from(e: RepairError) -> Self {
        ParseError::Repair(e)
    }
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        ParseError::Json(e)
    }
}
