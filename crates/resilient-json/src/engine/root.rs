//! The root level: code fences and prose around the JSON, several root values (NDJSON),
//! redundant closing brackets and an object closed too early.

use super::{Engine, Frame, Obj, Result};
use crate::chars::{is_ident, is_ident_start, is_ws, quote_at};
use crate::error::RepairErrorKind;
use crate::report::RepairKind;

/// What follows a complete root value.
enum Next {
    /// Nothing (or only ignorable text): done.
    Done,
    /// Another root value starts at the cursor; `newline` tells whether a line break (or a
    /// code fence) separated it from the previous one, `comma` whether a comma did.
    Value { comma: bool, newline: bool },
    /// The root object was closed too early and has been reopened.
    Reopened,
}

impl Engine<'_> {
    /// Reads the root value(s). `resumed` is the output offset of a root value already
    /// started by [`Engine::resume`].
    pub(super) fn run_root(&mut self, mut resumed: Option<usize>) -> Result<()> {
        let fenced = resumed.is_none() && self.prelude();
        let mut kept = 0usize;
        let mut first_start = 0usize;
        let mut sep: Option<(bool, bool)> = None;
        loop {
            let comma_pos = self.out.len();
            if sep.is_some() {
                self.out.push(b',');
            }
            let value_in = self.i;
            if let Some(start) = resumed.take() {
                self.value_start = start;
            } else if !self.begin_value()? {
                self.skip_ws();
                if kept == 0 && self.at_eof() {
                    return self.error(RepairErrorKind::Empty);
                }
                if self.at_eof() {
                    self.out.truncate(comma_pos);
                    break;
                }
                return self.unexpected();
            }
            let start = self.value_start;
            let next = loop {
                self.drive()?;
                match self.after_root(start, fenced, sep.is_none())? {
                    Next::Reopened => {}
                    other => break other,
                }
            };
            match sep {
                None => {
                    kept = 1;
                    first_start = start;
                }
                Some((comma, newline)) => {
                    let end = self.out.len();
                    if newline || self.rewrote {
                        kept += 1;
                    } else if is_empty_container(&self.out[start..end]) {
                        // `{"a": 1}, []`: an empty value after the real one
                        self.out.truncate(comma_pos);
                    } else if kept == 1 && is_empty_container(&self.out[first_start..comma_pos]) {
                        // `[]{"a": 1}`: an empty value before the real one
                        self.out.drain(first_start..start);
                    } else if kept == 1
                        && !comma
                        && is_update(&self.out[first_start..comma_pos], &self.out[start..end])
                    {
                        // `{"a": 1}{"a": 2}`: the later value replaces the earlier one
                        self.note(RepairKind::ReplacedValue, value_in);
                        self.out.drain(first_start..start);
                    } else {
                        kept += 1;
                    }
                }
            }
            // only values that were kept let later values follow without a separator
            self.multi = kept >= 2;
            match next {
                Next::Value { comma, newline } => sep = Some((comma, newline)),
                _ => break,
            }
        }
        self.multi = kept >= 2;
        if self.multi {
            self.note(RepairKind::MultipleValues, 0);
        }
        Ok(())
    }

    /// Skips an opening code fence, or prose before the JSON. Returns `true` when the JSON was
    /// found inside a code fence after prose (then text after the closing fence is prose too).
    fn prelude(&mut self) -> bool {
        self.skip_ws();
        if self.skip_opening_fence() {
            return false;
        }
        let Some(c) = self.peek() else { return false };
        let jsonish = matches!(c, b'{' | b'[') || quote_at(self.s, self.i).is_some();
        if !jsonish && let Some(p) = find(self.s, self.i, b"```") {
            self.note(RepairKind::SurroundingText, self.i);
            self.ws.clear();
            self.i = p;
            self.skip_opening_fence();
            return true;
        }
        let bullet = matches!(c, b'-' | b'*') && self.s.get(self.i + 1).is_some_and(|&b| is_ws(b));
        if (is_ident_start(c) && !self.word_is_call_or_literal()) || bullet {
            let from = self.i;
            if let Some(p) = self.s[from..].iter().position(|&b| b == b'{' || b == b'[') {
                self.note(RepairKind::SurroundingText, from);
                self.ws.clear();
                self.i = from + p;
            }
        }
        false
    }

    /// `true` when the identifier at the cursor is a function call or a literal keyword.
    fn word_is_call_or_literal(&self) -> bool {
        let s = self.s;
        let mut j = self.i;
        while j < s.len() && is_ident(s[j]) {
            j += 1;
        }
        let word = &s[self.i..j];
        let j = super::scalar::skip_ws_and_comments(s, j);
        s.get(j) == Some(&b'(') || super::scalar::keyword(word).is_some()
    }

    /// Skips ```` ``` ````, ```` [``` ```` or ```` {``` ```` with an optional language tag.
    fn skip_opening_fence(&mut self) -> bool {
        let skip = if self.starts_with(b"```") {
            0
        } else if self.starts_with(b"[```") || self.starts_with(b"{```") {
            1
        } else {
            return false;
        };
        self.note(RepairKind::CodeFence, self.i);
        self.i += skip;
        while self.peek() == Some(b'`') {
            self.i += 1;
        }
        while self.peek().is_some_and(|b| is_ident(b) || b == b'-') {
            self.i += 1;
        }
        self.skip_ws();
        true
    }

    /// Skips a closing code fence (```` ``` ````, optionally followed by `]` or `}`).
    fn skip_closing_fence(&mut self) -> bool {
        if !self.at_fence() {
            return false;
        }
        self.note(RepairKind::CodeFence, self.i);
        while self.peek() == Some(b'`') {
            self.i += 1;
        }
        if matches!(self.peek(), Some(b']' | b'}')) {
            self.i += 1;
        }
        self.skip_ws();
        true
    }

    /// Decides what follows a complete root value that started at output offset `start`.
    fn after_root(&mut self, start: usize, fenced: bool, first: bool) -> Result<Next> {
        self.skip_ws();
        let closed_fence = self.skip_closing_fence();
        if fenced && closed_fence {
            // prose between and after code blocks: look for another block
            return Ok(match find(self.s, self.i, b"```") {
                Some(p) => {
                    self.note(RepairKind::SurroundingText, self.i);
                    self.i = p;
                    self.skip_opening_fence();
                    self.next_root_value(false, true)
                }
                None => {
                    self.note(RepairKind::SurroundingText, self.i);
                    self.i = self.s.len();
                    Next::Done
                }
            });
        }
        if self.peek() == Some(b';') {
            self.note(RepairKind::FunctionCall, self.i);
            self.i += 1;
            self.skip_ws();
        }
        if self.at_eof() {
            return Ok(Next::Done);
        }
        let root_is_object = self
            .out
            .get(start..)
            .is_some_and(|r| r.iter().find(|b| !is_ws(**b)) == Some(&b'{'));
        let comma = self.peek() == Some(b',');
        if comma {
            let at = self.i;
            self.i += 1;
            self.skip_ws();
            while self.peek() == Some(b',') {
                self.note(RepairKind::RedundantComma, self.i);
                self.i += 1;
                self.skip_ws();
            }
            if first && root_is_object && self.out.last() == Some(&b'}') && self.key_colon_ahead() {
                // `{"a": 1}, "b": 2}`: the object was closed too early
                self.note(RepairKind::ReopenedObject, at);
                self.out.pop();
                if self.out.iter().rev().find(|b| !is_ws(**b)) != Some(&b'{') {
                    self.out.push(b',');
                }
                self.stack.push(Frame::Object(Obj::Key, start));
                return Ok(Next::Reopened);
            }
            if self.at_eof() {
                self.note(RepairKind::TrailingComma, at);
                return Ok(Next::Done);
            }
        }
        let newline = self.ws.contains(&b'\n');
        while matches!(self.peek(), Some(b'}' | b']')) {
            self.note(RepairKind::RedundantClosingBracket, self.i);
            self.i += 1;
            self.skip_ws();
        }
        if self.at_eof() {
            return Ok(Next::Done);
        }
        let root_is_container = root_is_object
            || self
                .out
                .get(start..)
                .is_some_and(|r| r.iter().find(|b| !is_ws(**b)) == Some(&b'['));
        let next_is_container = matches!(self.peek(), Some(b'{' | b'['));
        if self.can_start_value()
            && (comma || newline || self.multi || (root_is_container && next_is_container))
        {
            if root_is_container && !next_is_container && self.peek().is_some_and(is_ident_start) {
                // prose after the JSON
                self.note(RepairKind::SurroundingText, self.i);
                self.i = self.s.len();
                return Ok(Next::Done);
            }
            return Ok(self.next_root_value(comma, newline));
        }
        if root_is_container {
            // text after the JSON, like `{"a": 1} and more`
            self.note(RepairKind::SurroundingText, self.i);
            self.i = self.s.len();
            return Ok(Next::Done);
        }
        self.unexpected()
    }

    fn next_root_value(&mut self, comma: bool, newline: bool) -> Next {
        self.multi = true;
        Next::Value { comma, newline }
    }

    /// `true` when a key (quoted or not) followed by a colon starts at the cursor.
    fn key_colon_ahead(&self) -> bool {
        let s = self.s;
        let mut j = self.i;
        if let Some((_, n)) = quote_at(s, j) {
            let q = s[j];
            j += n;
            match s[j..].iter().position(|&b| b == q || b == b'\n') {
                Some(p) if s[j + p] == q => j += p + 1,
                _ => return false,
            }
        } else if s.get(j).is_some_and(|&b| is_ident_start(b)) {
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
        } else {
            return false;
        }
        while j < s.len() && is_ws(s[j]) {
            j += 1;
        }
        s.get(j) == Some(&b':') || s.get(j) == Some(&b'"')
    }
}

/// Offset of the first `pat` in `s` at or after `from`.
fn find(s: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

/// `true` for `{}` or `[]` (with optional whitespace).
fn is_empty_container(v: &[u8]) -> bool {
    let mut it = v
        .iter()
        .copied()
        .filter(|&b| !is_ws(b) && b != super::PLACEHOLDER);
    matches!(
        (it.next(), it.next(), it.next()),
        (Some(b'{'), Some(b'}'), None) | (Some(b'['), Some(b']'), None)
    )
}

/// `true` when the root value `later`, written right after `earlier` (no comma or line
/// between them), looks like a corrected version of it, as in Python `json_repair`: both are
/// objects, or non-empty arrays of objects of the same length, with the same keys and the
/// same shape at every level (`{"a": 1}{"a": 2}`, `[{"k": "v"}][{"k": "w"}]`). Any other
/// pair is kept as two values (`{"a": 1}{"b": 2}`, `[1, 2][3, 4]`), so nothing is lost
/// unless the later value has the very same structure.
///
/// Both slices are complete JSON values written by the engine. This runs at most twice per
/// root value, so the work stays linear.
fn is_update(earlier: &[u8], later: &[u8]) -> bool {
    use serde_json::Value;
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<Value>(earlier),
        serde_json::from_slice::<Value>(later),
    ) else {
        return false;
    };
    match (&a, &b) {
        (Value::Object(_), Value::Object(_)) => same_shape(&a, &b),
        (Value::Array(x), Value::Array(y)) => {
            !x.is_empty()
                && x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(v, w)| v.is_object() && same_shape(v, w))
        }
        _ => false,
    }
}

/// Python `json_repair`'s `ObjectComparer.is_same_object`: the same type, the same keys and
/// array lengths, recursively; scalar values themselves may differ. (`serde_json` limits
/// nesting to 128 levels, which bounds the recursion.)
fn same_shape(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_shape(v, w))
        }
        (Value::Number(x), Value::Number(y)) => x.is_f64() == y.is_f64(),
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => true,
        _ => false,
    }
}
