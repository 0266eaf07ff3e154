//! The list of repairs made by [`repair_with_report`](crate::repair_with_report).

use std::fmt;

/// One kind of defect the engine repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RepairKind {
    /// A markdown code fence (```` ```json ````) around the JSON was removed.
    CodeFence,
    /// Prose before or after the JSON was removed.
    SurroundingText,
    /// Single, curly or backtick quotes were replaced by double quotes.
    Quotes,
    /// An object key without quotes was quoted.
    UnquotedKey,
    /// A string value without quotes (or with only one of them) was quoted.
    UnquotedString,
    /// A missing comma between two values was inserted.
    MissingComma,
    /// A comma before a closing bracket, at the end of the input or after the root was removed.
    TrailingComma,
    /// A comma right after an opening bracket, or a doubled comma, was removed.
    RedundantComma,
    /// A missing colon between key and value was inserted (or `=` was turned into `:`).
    MissingColon,
    /// A missing object value was replaced by `null`.
    MissingValue,
    /// A `//`, `/* */` or `#` comment was removed.
    Comment,
    /// A Python or upper-case literal (`True`, `False`, `None`, `NULL`, ...) was normalised.
    PythonLiteral,
    /// `undefined`, `NaN` or `Infinity` was replaced by `null`.
    NonJsonLiteral,
    /// A missing closing bracket or brace was added.
    MissingClosingBracket,
    /// A closing bracket or brace without an opening one was removed.
    RedundantClosingBracket,
    /// A string cut off without its end quote was closed.
    MissingEndQuote,
    /// A raw control character inside a string was escaped.
    ControlCharacter,
    /// A double quote inside a string was escaped.
    UnescapedQuote,
    /// An invalid escape sequence (like `\a` or a lone surrogate) was fixed.
    InvalidEscape,
    /// Escaped JSON (`{\"a\": 1}`) was unescaped.
    StringifiedJson,
    /// Concatenated strings (`"a" + "b"`) were joined.
    Concatenation,
    /// An ellipsis (`...`) standing for omitted items was removed.
    Ellipsis,
    /// A JSONP wrapper or a function call like `NumberLong("2")` was replaced by its argument.
    FunctionCall,
    /// A number like `2.`, `.5`, `+1`, `1_000` or `2e` was completed.
    Number,
    /// A number with leading zeros (like `007`) was turned into a string.
    LeadingZeros,
    /// Several values (NDJSON, comma separated, or several code blocks) were wrapped in an array.
    MultipleValues,
    /// A regular expression literal was turned into a string.
    Regex,
    /// A parenthesised tuple like `(1, 2)` was turned into an array.
    Tuple,
    /// Non-standard whitespace (no-break space, byte order mark, ...) was replaced by a space.
    Whitespace,
    /// An object closed too early (`{"a": 1}, "b": 2}`) was reopened.
    ReopenedObject,
    /// A root value was dropped because the value right after it (no comma or line break
    /// between them) has the same structure, down to the keys of every object: the later
    /// one is taken as a corrected version (`{"a": 1}{"a": 2}` gives `{"a": 2}`). Values
    /// of any other shape are all kept, in an array ([`RepairKind::MultipleValues`]).
    ReplacedValue,
}

impl fmt::Display for RepairKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One repair: what was done, and the byte offset in the input where it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repair {
    /// What was repaired.
    pub kind: RepairKind,
    /// Byte offset in the input.
    pub position: usize,
}

/// The repairs made to one input, in input order.
///
/// ```
/// use resilient_json::{repair_with_report, RepairKind};
/// let (json, report) = repair_with_report("{a: 1,}").unwrap();
/// assert_eq!(json, r#"{"a": 1}"#);
/// assert!(report.contains(RepairKind::UnquotedKey));
/// assert!(report.contains(RepairKind::TrailingComma));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    repairs: Vec<Repair>,
}

impl Report {
    pub(crate) fn from_vec(mut repairs: Vec<Repair>) -> Self {
        repairs.sort_by_key(|r| r.position);
        Self { repairs }
    }

    /// All repairs, ordered by position.
    pub fn repairs(&self) -> &[Repair] {
        &self.repairs
    }

    /// `true` when the input was valid JSON and nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.repairs.is_empty()
    }

    /// `true` when at least one repair of this kind was made.
    pub fn contains(&self, kind: RepairKind) -> bool {
        self.repairs.iter().any(|r| r.kind == kind)
    }
}
