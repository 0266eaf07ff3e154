//! Incremental repair of JSON that arrives in chunks ([`Repairer`], [`parse_partial`]).
//!
//! The batch engine reads the whole input and looks ahead to settle ambiguous cases; a stream
//! cannot look ahead, so this module has its own small state machine that reads every byte
//! once, in order, and never goes back over input it has read. Its state is:
//!
//! - the output written so far (the repaired value up to the last complete token);
//! - one byte per open container (the nesting stack);
//! - the token being read when a chunk ends: a bare word or number (held back until a
//!   delimiter shows that it is complete), an escape sequence, a partial UTF-8 character,
//!   and whitespace not yet written.
//!
//! A snapshot copies the output, drops what is not yet certain (an object member whose key
//! or value is incomplete, a trailing comma) and closes what is open: its cost depends on the
//! output and the nesting depth, never on the input read so far.

use serde::de::DeserializeOwned;

use crate::error::{ParseError, RepairError, RepairErrorKind};

/// Kind of an open container.
const ARRAY: u8 = b']';
const OBJECT: u8 = b'}';

/// Where the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the root value: whitespace, an opening code fence or prose.
    Prelude,
    /// `n` backticks read before the root value.
    FenceTicks(u8),
    /// The language tag after an opening code fence.
    FenceTag,
    /// Prose before the root value; `ticks` counts the backticks just read.
    Prose { ticks: u8 },
    /// A value is expected: the root value after a code fence, an array item or an object
    /// member value.
    Value,
    /// A complete value was read inside an open container.
    After,
    /// An object key is expected.
    Key,
    /// An object key was read: a colon is expected.
    Colon,
    /// Inside a string opened with `quote`; `key` when it is an object key.
    Str { key: bool, quote: u8 },
    /// A bare word or number; `key` when it is an object key.
    Word { key: bool },
    /// An unquoted string of several words (a bare word in a container, followed by a space,
    /// an apostrophe or, in an object, a colon): it ends at a bracket, a comma, a quote or a
    /// line break.
    Unquoted,
    /// A comment; `resume` is the state it interrupted.
    Comment { kind: Comment, resume: Resume },
    /// The root value is complete: whitespace and code fences may follow.
    Trailing,
    /// Text after the root value: ignored.
    Ignore,
}

/// The structural states a comment can interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Prelude,
    Value,
    After,
    Key,
    Colon,
}

impl Resume {
    fn state(self) -> State {
        match self {
            Resume::Prelude => State::Prelude,
            Resume::Value => State::Value,
            Resume::After => State::After,
            Resume::Key => State::Key,
            Resume::Colon => State::Colon,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comment {
    /// A `/` that may start a comment.
    Slash,
    /// `//` or `#`, up to the end of the line.
    Line { hash: bool },
    /// `/* */`; `star` when the last byte was `*`.
    Block { star: bool },
}

/// Inside a string: the escape sequence being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After `\`.
    Backslash,
    /// After `\u` and `n` hex digits.
    Unicode {
        n: u8,
        hex: [u8; 4],
    },
}

/// Repairs JSON that arrives in chunks, and gives the best-effort value after any chunk.
///
/// Each byte is read once: the total work is linear in the stream length, a
/// [`snapshot`](Repairer::snapshot) costs time proportional to its output, and memory is the
/// output so far plus one byte per open container (and the bare word or number being read,
/// which is held back until it is complete).
///
/// Every snapshot is a *prefix view* of the final value: an object shows a subset of the final
/// keys (members appear once their key and the start of their value are read), an array a
/// prefix of the final items, a string a prefix of the final string (escape sequences and
/// characters split across chunks appear once complete), and numbers and literals appear only
/// once complete, so that `-`, `1.` or `tr` are never shown.
///
/// ```
/// use resilient_json::Repairer;
///
/// let mut r = Repairer::new();
/// r.push(r#"{"name": "Ad"#);
/// assert_eq!(r.snapshot().as_deref(), Some(r#"{"name": "Ad"}"#));
/// r.push(r#"a", "age": 3"#); // the number may go on: it is not shown yet
/// assert_eq!(r.snapshot().as_deref(), Some(r#"{"name": "Ada"}"#));
/// r.push("6}");
/// assert_eq!(r.finish().unwrap(), r#"{"name": "Ada", "age": 36}"#);
/// ```
///
/// ## Stream mode and batch mode
/// For a stream that is valid JSON, [`finish`](Repairer::finish) gives exactly what
/// [`repair`](crate::repair) gives for the whole input, and so it does for valid JSON cut off
/// anywhere, except inside a string whose text so far ends with a bracket, a comma, `+` or `;`:
/// the batch mode then guesses that the end quote is missing before that character, the stream
/// mode keeps the string whole (so that it stays a prefix of the final string).
///
/// The stream mode also repairs what it can without looking ahead: markdown code fences and
/// prose before the JSON (and anything after it), trailing, redundant and missing commas,
/// missing colons and values, comments, single-quoted strings, unquoted keys, bare words
/// (`True`, `None`, `NaN`), unquoted strings (`[hello world]`), numbers like `2.`, `.5`, `+1` or
/// `007`, raw control characters, invalid escapes and lone surrogates, non-standard whitespace,
/// and mismatched closing brackets.
///
/// What needs look-ahead or rewriting earlier output is left to the batch mode: several root
/// values (only the first is kept), a quote inside a string that is not the end of it, curly
/// quotes, unquoted keys with spaces, string concatenation, escaped (stringified) JSON,
/// ellipses, tuples, and JSONP and function-call wrappers. A `\u` escape followed by a
/// character that is not a hex digit is dropped (the batch mode returns an error).
#[derive(Debug, Clone)]
pub struct Repairer {
    /// The repaired output so far.
    out: Vec<u8>,
    /// Whitespace read but not yet written.
    ws: Vec<u8>,
    /// The open containers, innermost last: [`ARRAY`] or [`OBJECT`].
    stack: Vec<u8>,
    /// Open arrays and objects in `stack`.
    arrays: usize,
    objects: usize,
    state: State,
    esc: Esc,
    /// Hex digits of a `\u` high surrogate waiting for its low surrogate.
    high: Option<[u8; 4]>,
    /// The bare word or number being read.
    word: Vec<u8>,
    /// Offset in `out` before the object member being read (before its whitespace).
    member_mark: usize,
    /// Offset in `out` of the opening quote of the string being read.
    str_start: usize,
    /// The key of the member being read was not quoted.
    key_unquoted: bool,
    /// Bytes of a UTF-8 character split across [`push_bytes`](Repairer::push_bytes) calls.
    utf8: Vec<u8>,
    /// Input bytes read so far.
    pos: usize,
    /// Continuation bytes of a character read as a whole by the last step, to skip.
    skip: usize,
}

impl Default for Repairer {
    fn default() -> Self {
        Self::new()
    }
}

impl Repairer {
    /// An empty repairer.
    ///
    /// ```
    /// let r = resilient_json::Repairer::new();
    /// assert_eq!(r.snapshot(), None);
    /// ```
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            ws: Vec::new(),
            stack: Vec::new(),
            arrays: 0,
            objects: 0,
            state: State::Prelude,
            esc: Esc::None,
            high: None,
            word: Vec::new(),
            member_mark: 0,
            str_start: 0,
            key_unquoted: false,
            utf8: Vec::new(),
            pos: 0,
            skip: 0,
        }
    }

    /// Reads the next chunk of the stream.
    ///
    /// ```
    /// let mut r = resilient_json::Repairer::new();
    /// for chunk in ["[1, 2", ", 3", "]"] {
    ///     r.push(chunk);
    /// }
    /// assert_eq!(r.finish().unwrap(), "[1, 2, 3]");
    /// ```
    pub fn push(&mut self, chunk: &str) {
        self.pos += chunk.len();
        if !self.utf8.is_empty() {
            // a character split by `push_bytes` was never completed
            self.utf8.clear();
            self.feed("\u{fffd}");
        }
        self.feed(chunk);
    }

    /// Reads the next chunk of the stream as bytes, which may end or start inside a UTF-8
    /// character. Bytes that are not UTF-8 are read as U+FFFD.
    ///
    /// ```
    /// let mut r = resilient_json::Repairer::new();
    /// let bytes = "{\"k\": \"é\"}".as_bytes();
    /// r.push_bytes(&bytes[..8]); // up to the half of `é`
    /// assert_eq!(r.snapshot().as_deref(), Some("{\"k\": \"\"}"));
    /// r.push_bytes(&bytes[8..]);
    /// assert_eq!(r.finish().unwrap(), "{\"k\": \"é\"}");
    /// ```
    pub fn push_bytes(&mut self, chunk: &[u8]) {
        self.pos += chunk.len();
        self.read_bytes(chunk);
    }

    fn read_bytes(&mut self, mut chunk: &[u8]) {
        // complete a character split by the previous chunk
        while !self.utf8.is_empty() && !chunk.is_empty() {
            let need = utf8_width(self.utf8[0]);
            let take = (need - self.utf8.len()).min(chunk.len());
            self.utf8.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            match std::str::from_utf8(&self.utf8) {
                Ok(c) => {
                    let c = c.to_owned();
                    self.utf8.clear();
                    self.feed(&c);
                }
                Err(e) if e.error_len().is_some() => {
                    // not a character: read what is valid of it again, byte by byte
                    let bad = std::mem::take(&mut self.utf8);
                    self.feed("\u{fffd}");
                    self.read_bytes(&bad[1..]);
                }
                Err(_) => {}
            }
        }
        while !chunk.is_empty() {
            match std::str::from_utf8(chunk) {
                Ok(s) => {
                    self.feed(s);
                    return;
                }
                Err(e) => {
                    let (good, rest) = chunk.split_at(e.valid_up_to());
                    if let Ok(s) = std::str::from_utf8(good) {
                        self.feed(s);
                    }
                    match e.error_len() {
                        Some(n) => {
                            self.feed("\u{fffd}");
                            chunk = &rest[n..];
                        }
                        None => {
                            // the chunk ends inside a character
                            self.utf8.extend_from_slice(rest);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The best-effort value so far as JSON text, or `None` before any value has started (or
    /// while the root value is a number or literal that may still go on).
    ///
    /// The text is valid JSON and a prefix view of the final value (see [`Repairer`]). It is
    /// built from the output so far, in time proportional to its length.
    ///
    /// ```
    /// let mut r = resilient_json::Repairer::new();
    /// r.push("Here you go:\n```json\n{\"items\": [{\"id\": 1}, {\"id\": 2, \"tag\": \"ne");
    /// assert_eq!(
    ///     r.snapshot().as_deref(),
    ///     Some("\n{\"items\": [{\"id\": 1}, {\"id\": 2, \"tag\": \"ne\"}]}")
    /// );
    /// ```
    pub fn snapshot(&self) -> Option<String> {
        let (cut, close_string) = match self.state {
            State::Prelude
            | State::FenceTicks(_)
            | State::FenceTag
            | State::Prose { .. }
            | State::Comment {
                resume: Resume::Prelude,
                ..
            } => return None,
            State::Str { key: false, .. } => {
                // spaces at the end of a string cut off are left out, and so is an array item
                // cut off before its first character (as `finish` does)
                let end = self.trim_string_end();
                if end == self.str_start + 1 && self.stack.last() == Some(&ARRAY) {
                    (self.str_start, false)
                } else {
                    (end, true)
                }
            }
            State::Str { key: true, .. } | State::Word { key: true } | State::Colon => {
                (self.member_mark, false)
            }
            State::Comment {
                resume: Resume::Colon,
                ..
            } => (self.member_mark, false),
            State::Value
            | State::Word { key: false }
            | State::Unquoted
            | State::Comment {
                resume: Resume::Value,
                ..
            } => match self.stack.last() {
                None => return None,
                Some(&OBJECT) => (self.member_mark, false),
                Some(_) => (self.out.len(), false),
            },
            State::After | State::Key | State::Comment { .. } | State::Trailing | State::Ignore => {
                (self.out.len(), false)
            }
        };
        let mut s = Vec::with_capacity(cut + self.stack.len() + 1);
        s.extend_from_slice(&self.out[..cut]);
        if close_string {
            s.push(b'"');
        } else {
            // a comma before what was left out
            let end = s.iter().rposition(|&b| !is_ws(b)).map_or(0, |p| p + 1);
            if s.get(end.wrapping_sub(1)) == Some(&b',') {
                s.truncate(end - 1);
            }
        }
        s.extend(self.stack.iter().rev());
        Some(into_string(s))
    }

    /// `true` once the root value is complete: what follows it is ignored (whitespace is
    /// kept), so a caller may stop reading.
    ///
    /// ```
    /// let mut r = resilient_json::Repairer::new();
    /// r.push("```json\n{\"done\": tru");
    /// assert!(!r.is_complete());
    /// r.push("e}\n```\nAnything else?");
    /// assert!(r.is_complete());
    /// assert_eq!(r.finish().unwrap(), "\n{\"done\": true}\n\n");
    /// ```
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Trailing | State::Ignore)
    }

    /// Deserializes the best-effort value so far (see [`snapshot`](Repairer::snapshot)) into
    /// `T`. Fields that have not arrived yet are missing, so `T` should have optional fields.
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Answer { title: Option<String>, score: Option<u32> }
    ///
    /// let mut r = resilient_json::Repairer::new();
    /// r.push(r#"{"title": "Linear ti"#);
    /// let a: Answer = r.parse_partial().unwrap();
    /// assert_eq!(a, Answer { title: Some("Linear ti".into()), score: None });
    /// ```
    pub fn parse_partial<T: DeserializeOwned>(&self) -> Result<T, ParseError> {
        match self.snapshot() {
            Some(s) => Ok(serde_json::from_str(&s)?),
            None => Err(ParseError::Repair(RepairError::new(
                RepairErrorKind::Empty,
                self.pos,
            ))),
        }
    }

    /// Ends the stream and returns the repaired JSON: what is still open is completed and
    /// closed. For valid JSON, complete or cut off (see [`Repairer`] for the one exception),
    /// this is what [`repair`](crate::repair) gives for the whole input.
    ///
    /// ```
    /// let mut r = resilient_json::Repairer::new();
    /// r.push("{\"a\": [1, 2, tr");
    /// r.push("ue, -");
    /// assert_eq!(r.finish().unwrap(), "{\"a\": [1, 2, true, -0]}");
    ///
    /// let mut r = resilient_json::Repairer::new();
    /// r.push("  ");
    /// assert!(r.finish().is_err());
    /// ```
    pub fn finish(mut self) -> Result<String, RepairError> {
        if !self.utf8.is_empty() {
            self.utf8.clear();
            self.feed("\u{fffd}");
        }
        if let State::Comment { resume, .. } = self.state {
            self.state = resume.state();
        }
        match self.state {
            State::Prelude | State::FenceTicks(_) | State::FenceTag | State::Prose { .. } => {
                return Err(RepairError::new(RepairErrorKind::Empty, self.pos));
            }
            State::Value if self.stack.is_empty() => {
                return Err(RepairError::new(RepairErrorKind::Empty, self.pos));
            }
            State::Word { key: true } => {
                // an unquoted key cut off: the member is dropped
                self.out.truncate(self.member_mark);
                self.ws.clear();
                self.state = State::Key;
            }
            State::Word { key: false } => self.write_word_value(),
            State::Unquoted => self.end_unquoted(),
            State::Str { key, .. } => {
                if self.high.take().is_some() {
                    self.out.extend_from_slice(b"\\ufffd");
                }
                self.esc = Esc::None;
                let empty = self.out.len() == self.str_start + 1;
                // spaces at the end of a string cut off are taken as whitespace after it
                let end = self.trim_string_end();
                self.ws.resize(self.out.len() - end, b' ');
                self.out.truncate(end);
                if key && empty {
                    // `{"`: a key cut off before it started
                    self.out.truncate(self.member_mark);
                    self.state = State::Key;
                } else if empty && self.stack.last() == Some(&ARRAY) {
                    // `["`: an item cut off before it started
                    self.out.truncate(self.str_start);
                    while self.out.last().is_some_and(|&b| is_ws(b)) {
                        self.out.pop();
                    }
                    self.state = State::After;
                } else {
                    self.out.push(b'"');
                    self.state = if key { State::Colon } else { self.value_done() };
                }
            }
            _ => {}
        }
        match self.state {
            State::Colon if self.key_unquoted => {
                self.out.truncate(self.member_mark);
                self.ws.clear();
            }
            State::Colon => {
                self.out.extend_from_slice(b":");
                self.flush_ws();
                self.out.extend_from_slice(b"null");
            }
            State::Value if self.stack.last() == Some(&OBJECT) => {
                self.flush_ws();
                self.out.extend_from_slice(b"null");
            }
            _ => {}
        }
        while let Some(&close) = self.stack.last() {
            self.strip_comma();
            self.out.push(close);
            self.pop();
        }
        self.flush_ws();
        Ok(into_string(std::mem::take(&mut self.out)))
    }

    /// Reads `s`, a chunk that starts and ends on character boundaries.
    fn feed(&mut self, s: &str) {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // runs of plain string text, word characters and whitespace are taken at once
            match self.state {
                State::Str { quote, .. } if self.esc == Esc::None && self.high.is_none() => {
                    let run = b[i..]
                        .iter()
                        .position(|&c| c == quote || c == b'\\' || c < 0x20 || c == b'"')
                        .unwrap_or(b.len() - i);
                    self.out.extend_from_slice(&b[i..i + run]);
                    i += run;
                }
                State::Word { .. } => {
                    let run = b[i..]
                        .iter()
                        .position(|&c| c >= 0x80 || !is_word_byte(c))
                        .unwrap_or(b.len() - i);
                    self.word.extend_from_slice(&b[i..i + run]);
                    i += run;
                }
                State::Unquoted => {
                    let run = b[i..]
                        .iter()
                        .position(|&c| ends_unquoted(c))
                        .unwrap_or(b.len() - i);
                    self.word.extend_from_slice(&b[i..i + run]);
                    i += run;
                }
                State::Value | State::After | State::Key | State::Colon | State::Trailing => {
                    let run = b[i..]
                        .iter()
                        .position(|&c| !is_ws(c))
                        .unwrap_or(b.len() - i);
                    self.ws.extend_from_slice(&b[i..i + run]);
                    i += run;
                }
                _ => {}
            }
            if i == b.len() {
                break;
            }
            if self.step(s, i) {
                i += 1 + std::mem::take(&mut self.skip);
            }
        }
    }

    /// Reads the byte at `i` of `s` (a whole character when it starts one outside a string).
    /// Returns `false` when the state changed and the byte must be read again.
    fn step(&mut self, s: &str, i: usize) -> bool {
        let c = s.as_bytes()[i];
        match self.state {
            State::Prelude => match c {
                _ if is_ws(c) => self.ws.push(c),
                b'`' => self.state = State::FenceTicks(1),
                b'{' | b'[' | b'"' | b'\'' => {
                    self.state = State::Value;
                    return false;
                }
                b'/' | b'#' => self.start_comment(c, Resume::Prelude),
                _ if is_word_byte(c) => {
                    if let Some(n) = special_ws(s, i) {
                        return self.special_ws(n);
                    }
                    self.state = State::Word { key: false };
                    return false;
                }
                _ => {
                    self.ws.clear();
                    self.state = State::Prose { ticks: 0 };
                }
            },
            State::FenceTicks(n) => {
                if c == b'`' {
                    self.state = State::FenceTicks(n.saturating_add(1));
                } else if n >= 3 {
                    self.state = State::FenceTag;
                    return false;
                } else {
                    self.ws.clear();
                    self.state = State::Prose { ticks: 0 };
                    return false;
                }
            }
            State::FenceTag => {
                if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
                    return true;
                }
                self.state = State::Prelude;
                return false;
            }
            State::Prose { ticks } => match c {
                b'`' if ticks >= 2 => self.state = State::FenceTicks(3),
                b'`' => self.state = State::Prose { ticks: ticks + 1 },
                b'{' | b'[' => {
                    self.ws.clear();
                    self.state = State::Value;
                    return false;
                }
                _ => self.state = State::Prose { ticks: 0 },
            },
            State::Value => return self.step_value(s, i),
            State::After => return self.step_after(s, i),
            State::Key => return self.step_key(s, i),
            State::Colon => return self.step_colon(s, i),
            State::Str { key, quote } => self.step_string(c, key, quote),
            State::Word { key } => {
                if is_word_byte(c) && special_ws(s, i).is_none() {
                    self.word.push(c);
                } else if !key
                    && !self.stack.is_empty()
                    && (matches!(c, b' ' | b'\t' | b'\'')
                        || (c == b':' && self.stack.last() == Some(&OBJECT)))
                {
                    // a number or literal ends here; other words may go on with this byte
                    if self.write_scalar() {
                        self.state = State::After;
                        return false;
                    }
                    self.word.push(c);
                    self.state = State::Unquoted;
                } else {
                    self.end_word(key);
                    return false;
                }
            }
            State::Unquoted => {
                if ends_unquoted(c) {
                    self.end_unquoted();
                    return false;
                }
                self.word.push(c);
            }
            State::Comment { kind, resume } => return self.step_comment(c, kind, resume),
            State::Trailing => match c {
                _ if is_ws(c) => self.ws.push(c),
                b'`' => {}
                _ => self.state = State::Ignore,
            },
            State::Ignore => {}
        }
        true
    }

    fn step_value(&mut self, s: &str, i: usize) -> bool {
        let c = s.as_bytes()[i];
        match c {
            _ if is_ws(c) => self.ws.push(c),
            b'{' | b'[' => {
                self.flush_ws();
                self.out.push(c);
                if c == b'{' {
                    self.stack.push(OBJECT);
                    self.objects += 1;
                    self.state = State::Key;
                } else {
                    self.stack.push(ARRAY);
                    self.arrays += 1;
                }
            }
            b'"' | b'\'' => {
                self.flush_ws();
                self.str_start = self.out.len();
                self.out.push(b'"');
                self.state = State::Str {
                    key: false,
                    quote: c,
                };
            }
            b'/' | b'#' => self.start_comment(c, Resume::Value),
            b',' | b'}' | b']' if self.stack.last() == Some(&OBJECT) => {
                // a member without value
                self.flush_ws();
                self.out.extend_from_slice(b"null");
                self.state = State::After;
                return false;
            }
            b',' => {}
            b']' | b'}' => return self.close(c),
            _ if is_word_byte(c) => {
                if let Some(n) = special_ws(s, i) {
                    return self.special_ws(n);
                }
                self.state = State::Word { key: false };
                return false;
            }
            _ => {}
        }
        true
    }

    fn step_after(&mut self, s: &str, i: usize) -> bool {
        let c = s.as_bytes()[i];
        match c {
            _ if is_ws(c) => self.ws.push(c),
            b',' => {
                self.flush_ws();
                self.out.push(b',');
                self.state = self.expect_item();
            }
            b']' | b'}' => return self.close(c),
            b'/' | b'#' => self.start_comment(c, Resume::After),
            b'"' | b'\'' => {
                // a missing comma
                self.out.push(b',');
                self.state = self.expect_item();
                return false;
            }
            b'{' | b'[' if self.stack.last() == Some(&ARRAY) => {
                self.out.push(b',');
                self.state = State::Value;
                return false;
            }
            _ if is_word_byte(c) => {
                if let Some(n) = special_ws(s, i) {
                    return self.special_ws(n);
                }
                self.out.push(b',');
                self.state = self.expect_item();
                return false;
            }
            _ => {}
        }
        true
    }

    fn step_key(&mut self, s: &str, i: usize) -> bool {
        let c = s.as_bytes()[i];
        match c {
            _ if is_ws(c) => self.ws.push(c),
            b'"' | b'\'' => {
                self.member_mark = self.out.len();
                self.key_unquoted = false;
                self.flush_ws();
                self.str_start = self.out.len();
                self.out.push(b'"');
                self.state = State::Str {
                    key: true,
                    quote: c,
                };
            }
            b'}' | b']' => return self.close(c),
            b'/' | b'#' => self.start_comment(c, Resume::Key),
            _ if is_word_byte(c) => {
                if let Some(n) = special_ws(s, i) {
                    return self.special_ws(n);
                }
                self.member_mark = self.out.len();
                self.key_unquoted = true;
                self.state = State::Word { key: true };
                return false;
            }
            _ => {}
        }
        true
    }

    fn step_colon(&mut self, s: &str, i: usize) -> bool {
        let c = s.as_bytes()[i];
        match c {
            _ if is_ws(c) => self.ws.push(c),
            b':' | b'=' => {
                self.flush_ws();
                self.out.push(b':');
                self.state = State::Value;
            }
            b'/' | b'#' => self.start_comment(c, Resume::Colon),
            b'}' => {
                // a key without value at the end of the object: dropped
                self.out.truncate(self.member_mark);
                self.ws.clear();
                return self.close(c);
            }
            _ if let Some(n) = special_ws(s, i) => return self.special_ws(n),
            _ => {
                // a missing colon
                self.out.push(b':');
                self.state = State::Value;
                return false;
            }
        }
        true
    }

    fn step_string(&mut self, c: u8, key: bool, quote: u8) {
        match self.esc {
            Esc::None => {
                if self.high.is_some() && c != b'\\' {
                    self.high = None;
                    self.out.extend_from_slice(b"\\ufffd");
                }
                match c {
                    b'\\' => self.esc = Esc::Backslash,
                    _ if c == quote => {
                        self.out.push(b'"');
                        self.state = if key { State::Colon } else { self.value_done() };
                    }
                    b'"' => self.out.extend_from_slice(b"\\\""),
                    0..=0x1F => push_control(&mut self.out, c),
                    _ => self.out.push(c),
                }
            }
            Esc::Backslash => {
                if c == b'u' {
                    self.esc = Esc::Unicode { n: 0, hex: [0; 4] };
                    return;
                }
                self.esc = Esc::None;
                if self.high.take().is_some() {
                    self.out.extend_from_slice(b"\\ufffd");
                }
                match c {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        self.out.push(b'\\');
                        self.out.push(c);
                    }
                    0..=0x1F => push_control(&mut self.out, c),
                    // an invalid escape: the character stands for itself
                    _ => self.out.push(c),
                }
            }
            Esc::Unicode { n, mut hex } => {
                if !c.is_ascii_hexdigit() {
                    // not an escape: dropped, the character is read as text
                    self.esc = Esc::None;
                    if self.high.take().is_some() {
                        self.out.extend_from_slice(b"\\ufffd");
                    }
                    self.step_string(c, key, quote);
                    return;
                }
                hex[usize::from(n)] = c;
                if n < 3 {
                    self.esc = Esc::Unicode { n: n + 1, hex };
                    return;
                }
                self.esc = Esc::None;
                let code = hex_value(hex);
                let is_high = (0xD800..0xDC00).contains(&code);
                let is_low = (0xDC00..0xE000).contains(&code);
                match self.high.take() {
                    Some(h) if is_low => {
                        self.out.extend_from_slice(b"\\u");
                        self.out.extend_from_slice(&h);
                        self.out.extend_from_slice(b"\\u");
                        self.out.extend_from_slice(&hex);
                        return;
                    }
                    Some(_) => self.out.extend_from_slice(b"\\ufffd"),
                    None => {}
                }
                if is_high {
                    self.high = Some(hex);
                } else if is_low {
                    self.out.extend_from_slice(b"\\ufffd");
                } else {
                    self.out.extend_from_slice(b"\\u");
                    self.out.extend_from_slice(&hex);
                }
            }
        }
    }

    fn start_comment(&mut self, c: u8, resume: Resume) {
        let kind = if c == b'#' {
            Comment::Line { hash: true }
        } else {
            Comment::Slash
        };
        self.state = State::Comment { kind, resume };
    }

    /// Reads a byte of a comment; `false` when the comment ended before it (it is then read
    /// again by the resumed state).
    fn step_comment(&mut self, c: u8, kind: Comment, resume: Resume) -> bool {
        let next = match kind {
            Comment::Slash => match c {
                b'/' => Comment::Line { hash: false },
                b'*' => Comment::Block { star: false },
                _ => {
                    // a lone `/`: skipped
                    self.state = resume.state();
                    return false;
                }
            },
            Comment::Line { hash } => {
                if c == b'\n' || (hash && matches!(c, b'}' | b']')) {
                    self.state = resume.state();
                    return false;
                }
                kind
            }
            Comment::Block { star } => {
                if star && c == b'/' {
                    self.state = resume.state();
                    return true;
                }
                Comment::Block { star: c == b'*' }
            }
        };
        self.state = State::Comment { kind: next, resume };
        true
    }

    /// Non-standard whitespace of `n` bytes: read as one space.
    fn special_ws(&mut self, n: usize) -> bool {
        self.ws.push(b' ');
        // the remaining bytes of the character are skipped as continuation bytes
        self.skip = n - 1;
        true
    }

    /// A bare word ended: writes it as a key, a value or the root value.
    fn end_word(&mut self, key: bool) {
        if key {
            self.flush_ws();
            push_string(&mut self.out, &self.word);
            self.word.clear();
            self.state = State::Colon;
        } else if !self.stack.is_empty() {
            self.write_word_value();
        } else if self.word != b"-" && self.write_scalar() {
            // a root number or literal (a lone `-` followed by more text is a list bullet)
            self.state = State::Trailing;
        } else {
            // prose before the JSON
            self.word.clear();
            self.ws.clear();
            self.state = State::Prose { ticks: 0 };
        }
    }

    /// Writes the bare word read as a value: a number, a literal or else a string.
    fn write_word_value(&mut self) {
        if !self.write_scalar() {
            self.flush_ws();
            push_string(&mut self.out, &self.word);
            self.word.clear();
        }
        self.state = self.value_done();
    }

    /// Writes the unquoted string read; the spaces at its end are whitespace after it.
    fn end_unquoted(&mut self) {
        self.flush_ws();
        let end = self
            .word
            .iter()
            .rposition(|&b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let (text, spaces) = self.word.split_at(end);
        self.out.push(b'"');
        for &b in text {
            match b {
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                0..=0x1F => push_control(&mut self.out, b),
                _ => self.out.push(b),
            }
        }
        self.out.push(b'"');
        self.ws.extend_from_slice(spaces);
        self.word.clear();
        self.state = State::After;
    }

    /// Writes pending whitespace and the bare word read when it is a number or a literal.
    fn write_scalar(&mut self) -> bool {
        let at = self.out.len();
        if !push_scalar(&mut self.out, &self.word) {
            return false;
        }
        self.word.clear();
        if !self.ws.is_empty() {
            // before the word: only the word is moved
            self.out.splice(at..at, self.ws.drain(..));
        }
        true
    }

    /// The end of the string being read without the spaces at its end.
    fn trim_string_end(&self) -> usize {
        let content = self.str_start + 1;
        let spaces = self.out[content..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ')
            .count();
        self.out.len() - spaces
    }

    /// The state after a complete value.
    fn value_done(&self) -> State {
        if self.stack.is_empty() {
            State::Trailing
        } else {
            State::After
        }
    }

    /// The state after a comma.
    fn expect_item(&self) -> State {
        if self.stack.last() == Some(&OBJECT) {
            State::Key
        } else {
            State::Value
        }
    }

    /// Handles the closing bracket `c`. Returns `false` when `c` closed an inner container
    /// that was left open and must be read again.
    fn close(&mut self, c: u8) -> bool {
        let open = if c == ARRAY {
            self.arrays
        } else {
            self.objects
        };
        match self.stack.last() {
            Some(&top) if top == c => {
                self.strip_comma();
                self.flush_ws();
                self.out.push(c);
                self.pop();
                true
            }
            Some(&top) if open > 0 => {
                self.strip_comma();
                self.out.push(top);
                self.pop();
                false
            }
            // a closing bracket without an opening one: skipped
            _ => true,
        }
    }

    fn pop(&mut self) {
        if let Some(top) = self.stack.pop() {
            if top == ARRAY {
                self.arrays -= 1;
            } else {
                self.objects -= 1;
            }
        }
        self.state = self.value_done();
    }

    fn strip_comma(&mut self) {
        if self.out.last() == Some(&b',') {
            self.out.pop();
        }
    }

    fn flush_ws(&mut self) {
        if !self.ws.is_empty() {
            self.out.extend_from_slice(&self.ws);
            self.ws.clear();
        }
    }
}

/// Repairs `prefix`, the beginning of a JSON document, and deserializes the best-effort value
/// it holds (what [`Repairer::parse_partial`] gives after reading `prefix`).
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Reply { answer: Option<String>, sources: Option<Vec<String>> }
///
/// let prefix = r#"{"answer": "42", "sources": ["a", "b"#;
/// let r: Reply = resilient_json::parse_partial(prefix).unwrap();
/// assert_eq!(r.answer.as_deref(), Some("42"));
/// assert_eq!(r.sources, Some(vec!["a".to_string(), "b".to_string()]));
/// ```
pub fn parse_partial<T: DeserializeOwned>(prefix: &str) -> Result<T, ParseError> {
    let mut r = Repairer::new();
    r.push(prefix);
    r.parse_partial()
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that may be part of a bare word or number.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-' | b'+' | b'.') || b >= 0x80
}

/// Bytes that end an unquoted string of several words.
fn ends_unquoted(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}' | b'"' | b'\n' | b'\r')
}

/// Length of a non-standard whitespace character (no-break space, en to hair space, zero
/// width space, narrow no-break space, ideographic space, byte order mark) at `i`.
fn special_ws(s: &str, i: usize) -> Option<usize> {
    if *s.as_bytes().get(i)? < 0x80 {
        return None;
    }
    let c = s.get(i..)?.chars().next()?;
    matches!(
        c,
        '\u{a0}' | '\u{2000}'..='\u{200b}' | '\u{202f}' | '\u{3000}' | '\u{feff}'
    )
    .then(|| c.len_utf8())
}

fn utf8_width(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn hex_value(hex: [u8; 4]) -> u32 {
    hex.iter()
        .fold(0, |v, &h| v * 16 + char::from(h).to_digit(16).unwrap_or(0))
}

fn push_control(out: &mut Vec<u8>, c: u8) {
    match c {
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        }
    }
}

/// Writes a bare word as a JSON string (word bytes need no escaping).
fn push_string(out: &mut Vec<u8>, word: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(word);
    out.push(b'"');
}

/// Writes the JSON for a bare word that is a number or a literal and returns `true`, or
/// writes nothing and returns `false` (the word is a string).
fn push_scalar(out: &mut Vec<u8>, word: &[u8]) -> bool {
    let literal: &[u8] = match word {
        b"true" | b"True" | b"TRUE" => b"true",
        b"false" | b"False" | b"FALSE" => b"false",
        b"null" | b"None" | b"NULL" | b"Null" | b"none" => b"null",
        b"undefined" | b"NaN" | b"nan" | b"Infinity" | b"-Infinity" | b"inf" => b"null",
        _ if is_number(word) => word,
        _ => {
            // `+1`, `.5`, `-.5`, `1.`, `-`, `1e`, `1e+`: completed
            let at = out.len();
            let body = word.strip_prefix(b"+").unwrap_or(word);
            let digits = match body.strip_prefix(b"-") {
                Some(rest) => {
                    out.push(b'-');
                    rest
                }
                None => body,
            };
            if digits.starts_with(b".") {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
            if out.len() > at && matches!(out.last(), Some(b'-' | b'+' | b'.' | b'e' | b'E')) {
                out.push(b'0');
            }
            if is_number(&out[at..]) {
                return true;
            }
            out.truncate(at);
            return false;
        }
    };
    out.extend_from_slice(literal);
    true
}

/// `true` when `s` is a JSON number.
fn is_number(s: &[u8]) -> bool {
    let mut i = usize::from(s.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && s[int_start] == b'0') {
        return false;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == s.len()
}

fn into_string(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
