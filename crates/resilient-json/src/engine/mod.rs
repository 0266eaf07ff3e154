//! The repair engine: one forward pass over the input with an explicit stack of open
//! containers, so that nesting depth costs heap memory, never call-stack depth.
//!
//! Output is written as the input is read. Whitespace between tokens is held back in a small
//! buffer (`ws`) so that a missing comma, colon or bracket can be placed right after the
//! previous token in O(1). The few repairs that must change earlier output (a tuple that turns
//! out to be an array, an array item that turns out to be an object key) are recorded as
//! insertions and applied in one final pass.
//!
//! Time and memory are linear: strings are read at most three times and rereading is paid
//! from a budget proportional to the input (`string.rs`); heuristics that look ahead (is
//! this quote the end of the string? is this word a key?) look at most `string::LOOKAHEAD`
//! bytes, and the two that run at every comma remember how far they looked (`NextStop`);
//! pending whitespace is written once, only when a value follows it (`begin_scalar`); output
//! already written is only changed at its end or by the final insertion pass.
//!
//! Module map: `root.rs` handles what surrounds the JSON (code fences, prose, several root
//! values), `string.rs` quoted strings, `scalar.rs` everything else that is not a container;
//! `escaped.rs` removes escape levels from escaped JSON before the pass; this file holds the
//! container state machine.

mod escaped;
mod fast;
mod resume;
mod root;
mod scalar;
mod stack;
mod string;

use crate::chars::{CLASS, WS_START, is_ws, push_slice, quote_at, special_ws_len};
use crate::error::{RepairError, RepairErrorKind};
use crate::report::{Repair, RepairKind};

type Result<T> = std::result::Result<T, RepairError>;

/// Written where a tuple starts: becomes `[` when the tuple is written as an array, and is
/// removed at the end otherwise. Strict JSON never contains a NUL byte, so it cannot be
/// confused with output.
const PLACEHOLDER: u8 = 0;

/// Where an array (or a parenthesised tuple) is in its item sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    /// Right after the opening bracket.
    Open,
    /// Expecting an item.
    Item,
    /// After an item, expecting a comma or the closing bracket.
    After,
}

/// Where an object is in its member sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Open,
    Key,
    Colon,
    Value,
    After,
}

/// An open container on the explicit stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Array {
        seq: Seq,
        last_item: usize,
    },
    /// An object and the output offset of its `{`.
    Object(Obj, usize),
    /// `name(` of a JSONP wrapper or a MongoDB call: the argument replaces the call.
    Call {
        done: bool,
    },
    /// `(`: a tuple, written as an array once a comma shows it has several items.
    Paren {
        seq: Seq,
        out_start: usize,
        items: usize,
        comma: bool,
    },
}

pub(crate) struct Engine<'a> {
    s: &'a [u8],
    i: usize,
    out: Vec<u8>,
    /// Whitespace read but not yet written.
    ws: Vec<u8>,
    /// Offsets in `out` where `{` is to be inserted, applied by `finish`. They only grow, so
    /// each is stored as a variable-length delta from the one before (`stack::push_varint`).
    inserts: Vec<u8>,
    /// Number of insertions in `inserts`, and the offset of the last one.
    insert_count: usize,
    last_insert: usize,
    /// `out` holds [`PLACEHOLDER`] bytes, removed by `finish`.
    placeholders: bool,
    /// Earlier output was changed into a container (an insertion or a tuple made an array).
    rewrote: bool,
    stack: stack::Stack,
    repairs: Option<Vec<Repair>>,
    /// Output offset where the most recent value started.
    value_start: usize,
    /// Several root values were found: the output is wrapped in an array.
    multi: bool,
    /// Output offset before the object key being read (and its comma).
    key_mark: usize,
    /// Output offset of an empty string cut off by the end of the input (`["`), dropped when
    /// its container is closed.
    truncated_empty: Option<usize>,
    /// Offset of the last `"` in the input.
    last_quote: Option<usize>,
    /// The object key just read was not quoted.
    key_unquoted: bool,
    /// Bytes that string reading may still scan (see `string.rs`).
    reread_budget: usize,
    /// Where the look-ahead after a comma in an unquoted value stops (see `scalar.rs`).
    unquoted_stop: NextStop,
    /// Where the look-ahead after a comma in a string stops (see `string.rs`).
    prose_stop: NextStop,
    /// Every `"` closes the string it ends (see [`repair_trusting_quotes`]).
    quotes_trusted: bool,
}

/// Finds the next byte of a fixed set within [`string::LOOKAHEAD`] bytes of an offset,
/// remembering how far it has looked: for items like `a,a,a,...` each look-ahead would
/// otherwise scan the same bytes again (up to `LOOKAHEAD` of them per item). Queries at
/// growing offsets scan every byte at most once; one at an earlier offset (a string read
/// again) starts afresh and scans at most `LOOKAHEAD` bytes.
#[derive(Default)]
struct NextStop(std::cell::Cell<(usize, usize, bool)>);

impl NextStop {
    /// Offset of the first byte in `j..j + LOOKAHEAD` for which `is_stop` holds; `is_stop`
    /// must be the same at every call.
    fn find(&self, s: &[u8], j: usize, is_stop: impl Fn(u8) -> bool) -> Option<usize> {
        let limit = (j + string::LOOKAHEAD).min(s.len());
        // `from..to` holds no stop; when `found`, `to` is one
        let (mut from, mut to, found) = self.0.get();
        if from <= j && j <= to {
            if found {
                return (to < limit).then_some(to);
            }
        } else {
            (from, to) = (j, j);
        }
        while to < limit && !is_stop(s[to]) {
            to += 1;
        }
        let found = to < limit;
        self.0.set((from, to, found));
        found.then_some(to)
    }
}

/// Repairs `input`; returns the JSON text and, when `report` is set, the repairs made.
/// `input[..valid]` is known to be a prefix of strict JSON (0 when nothing is known): most
/// of a long one is copied as it is (`resume.rs`).
pub(crate) fn repair(input: &str, report: bool, valid: usize) -> Result<(String, Vec<Repair>)> {
    match escaped::escaped_json_start(input.as_bytes()) {
        Some(first) => repair_escaped(input, report, first),
        None => run(input, report, false, valid),
    }
}

/// Repairs escaped JSON (`escaped.rs`): removes escape levels while the text stays escaped
/// JSON, repairs the result and maps repair positions back to `input`.
fn repair_escaped(input: &str, report: bool, first: usize) -> Result<(String, Vec<Repair>)> {
    let mut levels = vec![escaped::unescape(input, report)];
    let mut depth = 1;
    while depth < escaped::MAX_LEVELS {
        let last = &levels[levels.len() - 1].text;
        if escaped::escaped_json_start(last.as_bytes()).is_none() {
            break;
        }
        let next = escaped::unescape(last, report);
        if !report {
            // only the latest text is needed
            levels.clear();
        }
        levels.push(next);
        depth += 1;
    }
    let text = &levels[levels.len() - 1].text;
    let result = match crate::validate::classify(text.as_bytes()) {
        // nothing else to repair, so no position to map back
        crate::validate::Validity::Valid => {
            Ok((levels.pop().map(|l| l.text).unwrap_or_default(), Vec::new()))
        }
        crate::validate::Validity::RawControls => run(text, report, true, 0),
        crate::validate::Validity::Invalid => run(text, report, false, 0),
    };
    let map = |levels: &[escaped::Unescaped], mut p: usize| {
        for level in levels.iter().rev() {
            p = level.source_offset(p);
        }
        p
    };
    let (out, mut repairs) = match result {
        Ok(r) => r,
        Err(e) => {
            if !report {
                // the offsets were not recorded: unescape again, recording them
                levels.clear();
                for _ in 0..depth {
                    let from = levels.last().map_or(input, |l| l.text.as_str());
                    let next = escaped::unescape(from, true);
                    levels.push(next);
                }
            }
            return Err(RepairError::new(e.kind(), map(&levels, e.position())));
        }
    };
    if report {
        for r in &mut repairs {
            r.position = map(&levels, r.position);
        }
        repairs.push(Repair {
            kind: RepairKind::StringifiedJson,
            position: first,
        });
    }
    Ok((out, repairs))
}

/// Repairs `input`, known to be strict JSON but for raw control characters inside its
/// strings (`validate::Validity::RawControls`): every unescaped `"` ends its string, so no
/// heuristic may take one for text.
pub(crate) fn repair_trusting_quotes(input: &str, report: bool) -> Result<(String, Vec<Repair>)> {
    run(input, report, true, 0)
}

/// One pass of the engine; see [`repair`] for `valid`.
fn run(
    input: &str,
    report: bool,
    quotes_trusted: bool,
    valid: usize,
) -> Result<(String, Vec<Repair>)> {
    let mut e = Engine {
        s: input.as_bytes(),
        i: 0,
        out: Vec::with_capacity(input.len() + input.len() / 8 + 16),
        ws: Vec::new(),
        inserts: Vec::new(),
        insert_count: 0,
        last_insert: 0,
        placeholders: false,
        rewrote: false,
        stack: stack::Stack::default(),
        repairs: report.then(Vec::new),
        value_start: 0,
        multi: false,
        key_mark: 0,
        truncated_empty: None,
        last_quote: input.bytes().rposition(|b| b == b'"'),
        key_unquoted: false,
        reread_budget: input.len().saturating_mul(3).saturating_add(4096),
        unquoted_stop: NextStop::default(),
        prose_stop: NextStop::default(),
        quotes_trusted,
    };
    let resumed = e.resume(valid);
    e.run_root(resumed)?;
    let repairs = e.repairs.take().unwrap_or_default();
    let out = e.finish();
    // The engine only writes strict JSON. Debug builds (all tests) and the fuzz target
    // check every output with the strict validator; release builds trust the engine and
    // save that extra pass.
    if cfg!(any(debug_assertions, fuzzing)) && !crate::validate::is_valid(&out) {
        return Err(RepairError::new(RepairErrorKind::Internal, 0));
    }
    match String::from_utf8(out) {
        Ok(s) => Ok((s, repairs)),
        Err(_) => Err(RepairError::new(RepairErrorKind::Internal, 0)),
    }
}

impl Engine<'_> {
    #[inline(always)]
    fn note(&mut self, kind: RepairKind, position: usize) {
        if let Some(r) = self.repairs.as_mut() {
            r.push(Repair { kind, position });
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn at_eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn starts_with(&self, pat: &[u8]) -> bool {
        self.s.get(self.i..).is_some_and(|r| r.starts_with(pat))
    }

    fn error<T>(&self, kind: RepairErrorKind) -> Result<T> {
        Err(RepairError::new(kind, self.i))
    }

    fn unexpected<T>(&self) -> Result<T> {
        let c = std::str::from_utf8(&self.s[self.i..])
            .ok()
            .and_then(|r| r.chars().next())
            .unwrap_or('\u{fffd}');
        self.error(RepairErrorKind::UnexpectedCharacter(c))
    }

    /// Writes pending whitespace, then `bytes`.
    fn emit(&mut self, bytes: &[u8]) {
        self.flush_ws();
        self.out.extend_from_slice(bytes);
    }

    /// Writes pending whitespace, then `b`.
    #[inline(always)]
    fn emit_byte(&mut self, b: u8) {
        self.flush_ws();
        self.out.push(b);
    }

    #[inline(always)]
    fn flush_ws(&mut self) {
        match self.ws.len() {
            0 => {}
            1 => {
                self.out.push(self.ws[0]);
                self.ws.clear();
            }
            _ => {
                self.out.extend_from_slice(&self.ws);
                self.ws.clear();
            }
        }
    }

    /// Removes a comma written right before the pending whitespace.
    fn strip_trailing_comma(&mut self) {
        if self.out.last() == Some(&b',') {
            self.out.pop();
            self.note(RepairKind::TrailingComma, self.i);
        }
    }

    /// Skips whitespace (kept for the output) and comments (dropped).
    #[inline(always)]
    fn skip_ws(&mut self) {
        match self.s.get(self.i) {
            Some(&b) if CLASS[usize::from(b)] & WS_START != 0 => self.skip_ws_slow(),
            _ => {}
        }
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self) {
        let s = self.s;
        while let Some(&b) = s.get(self.i) {
            if is_ws(b) {
                let start = self.i;
                let mut end = start + 1;
                while end < s.len() && is_ws(s[end]) {
                    end += 1;
                }
                if end == start + 1 {
                    self.ws.push(b);
                } else {
                    push_slice(&mut self.ws, s, start, end);
                }
                self.i = end;
            } else if b >= 0x80 {
                let n = special_ws_len(s, self.i);
                if n == 0 {
                    break;
                }
                self.note(RepairKind::Whitespace, self.i);
                self.ws.push(b' ');
                self.i += n;
            } else if b == b'/' && s.get(self.i + 1) == Some(&b'*') {
                self.note(RepairKind::Comment, self.i);
                let body = self.i + 2;
                self.i = match s[body..].windows(2).position(|w| w == b"*/") {
                    Some(p) => body + p + 2,
                    None => s.len(),
                };
            } else if b == b'/' && s.get(self.i + 1) == Some(&b'/') {
                self.note(RepairKind::Comment, self.i);
                self.i = match s[self.i..].iter().position(|&c| c == b'\n') {
                    Some(p) => self.i + p,
                    None => s.len(),
                };
            } else if b == b'#' {
                // a `#` comment ends at the line end or before a closing bracket
                self.note(RepairKind::Comment, self.i);
                self.i = match s[self.i..]
                    .iter()
                    .position(|&c| matches!(c, b'\n' | b'}' | b']'))
                {
                    Some(p) => self.i + p,
                    None => s.len(),
                };
            } else {
                break;
            }
        }
    }

    /// Skips `...` standing for omitted items, and a comma after it.
    #[inline(always)]
    fn skip_ellipsis(&mut self) {
        if self.peek() == Some(b'.') && self.starts_with(b"...") {
            self.note(RepairKind::Ellipsis, self.i);
            self.i += 3;
            self.skip_ws();
            if self.peek() == Some(b',') {
                self.i += 1;
                self.skip_ws();
            }
        }
    }

    /// `true` when the byte at the cursor can start a value (used to decide whether a
    /// missing comma or colon should be inserted).
    fn can_start_value(&self) -> bool {
        match self.peek() {
            None => false,
            Some(b) => {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'{' | b'[' | b'(' | b'-' | b'+' | b'.' | b'_' | b'$' | b'\\'
                    )
                    || quote_at(self.s, self.i).is_some()
                    || (b >= 0x80 && special_ws_len(self.s, self.i) == 0)
            }
        }
    }

    /// Starts a value at the cursor. Scalars are written completely; containers are opened and
    /// pushed. Returns `false` when no value starts here.
    fn begin_value(&mut self) -> Result<bool> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Ok(false);
        };
        if !(matches!(c, b'{' | b'[' | b'(') || c.is_ascii_alphanumeric() || self.at_string_start())
        {
            // possibly not a value at all (`-`, `+`, `.`, `/`, other characters)
            return self.begin_scalar();
        }
        self.flush_ws();
        self.value_start = self.out.len();
        match c {
            b'{' => {
                let start = self.out.len();
                self.out.push(b'{');
                self.i += 1;
                self.stack.push(Frame::Object(Obj::Open, start));
            }
            b'[' => {
                self.out.push(b'[');
                self.i += 1;
                self.stack.push(Frame::Array {
                    seq: Seq::Open,
                    last_item: 0,
                });
            }
            b'(' => {
                self.note(RepairKind::Tuple, self.i);
                self.i += 1;
                let out_start = self.out.len();
                // a placeholder, made `[` if the tuple turns out to have several items (or
                // none) and removed by `finish` otherwise
                self.out.push(PLACEHOLDER);
                self.placeholders = true;
                self.stack.push(Frame::Paren {
                    seq: Seq::Open,
                    out_start,
                    items: 0,
                    comma: false,
                });
            }
            b'0'..=b'9' if self.plain_number() => self.value_done(),
            // a digit or a letter always starts a value (a number, a literal, a function
            // call or an unquoted string)
            _ if c.is_ascii_alphanumeric() => {
                if !self.scalar()? {
                    return Ok(false);
                }
            }
            _ => {
                let place = match self.stack.last() {
                    None => string::Place::Root,
                    Some(Frame::Array { .. }) => string::Place::ArrayItem,
                    Some(_) => string::Place::Other,
                };
                self.parse_string(true, place)?;
                self.parse_concat()?;
                self.value_done();
            }
        }
        Ok(true)
    }

    /// Starts a scalar that is not a quoted string; pending whitespace is written only when
    /// a value is found. (Writing it first and taking it back on failure would copy it again
    /// for every stray character, making `[ ; ; ; ...` quadratic.)
    fn begin_scalar(&mut self) -> Result<bool> {
        let at = self.out.len();
        self.value_start = at + self.ws.len();
        if !self.scalar()? {
            return Ok(false);
        }
        if !self.ws.is_empty() {
            // put the whitespace before what the scalar wrote: linear in what was written
            let n = self.ws.len();
            self.out.extend_from_slice(&self.ws);
            self.out[at..].rotate_right(n);
            self.ws.clear();
        }
        Ok(true)
    }

    /// Tells the innermost open container that one of its values is complete.
    fn value_done(&mut self) {
        let start = self.value_start;
        match self.stack.last_mut() {
            Some(Frame::Array { seq, last_item }) => {
                *seq = Seq::After;
                *last_item = start;
            }
            Some(Frame::Object(st, _)) => *st = Obj::After,
            Some(Frame::Call { done }) => *done = true,
            Some(Frame::Paren { seq, items, .. }) => {
                *seq = Seq::After;
                *items += 1;
            }
            None => {}
        }
    }

    fn set_top(&mut self, f: Frame) {
        if let Some(top) = self.stack.last_mut() {
            *top = f;
        }
    }

    /// Closes the innermost container with `close`, consuming it from the input when present.
    fn close(&mut self, close: &[u8], consume: bool) {
        if let Some(p) = self.truncated_empty.take()
            && self.at_eof()
            && self.out.len() == p + 2
        {
            self.out.truncate(p);
            while self.out.last().is_some_and(|&b| is_ws(b)) {
                self.out.pop();
            }
        }
        self.strip_trailing_comma();
        if consume {
            if let [b] = close {
                self.emit_byte(*b);
            } else {
                self.emit(close);
            }
            self.i += 1;
        } else {
            self.note(RepairKind::MissingClosingBracket, self.i);
            self.out.extend_from_slice(close);
        }
        self.stack.pop();
        // the completed value is a container, not a string that could become a key
        self.value_start = usize::MAX;
        self.value_done();
    }

    /// Skips one character that cannot start or continue anything here.
    fn skip_garbage(&mut self) {
        self.note(RepairKind::SurroundingText, self.i);
        let n = self.peek().map_or(1, crate::chars::utf8_len);
        self.i = (self.i + n).min(self.s.len());
    }

    /// Runs the open containers until the stack is empty.
    fn drive(&mut self) -> Result<()> {
        while let Some(&top) = self.stack.last() {
            match top {
                Frame::Array { seq, last_item } => self.run_array(seq, last_item)?,
                Frame::Object(st, start) => self.run_object(st, start)?,
                Frame::Call { done } => self.step_call(done)?,
                Frame::Paren {
                    seq,
                    out_start,
                    items,
                    comma,
                } => self.step_paren(seq, out_start, items, comma)?,
            }
        }
        Ok(())
    }

    /// `true` when the container below the innermost one is an object.
    fn parent_is_object(&self) -> bool {
        self.stack.parent_is_object()
    }

    fn at_fence(&self) -> bool {
        self.starts_with(b"```")
    }

    /// Steps the innermost array for as long as it stays the innermost container, without
    /// going back through the dispatch in `drive`.
    fn run_array(&mut self, mut seq: Seq, mut last_item: usize) -> Result<()> {
        let depth = self.stack.len();
        loop {
            self.step_array(seq, last_item)?;
            if self.stack.len() != depth {
                return Ok(());
            }
            match self.stack.last() {
                Some(&Frame::Array {
                    seq: s,
                    last_item: l,
                }) => {
                    seq = s;
                    last_item = l;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Steps the innermost object for as long as it stays the innermost container.
    fn run_object(&mut self, mut st: Obj, mut start: usize) -> Result<()> {
        let depth = self.stack.len();
        loop {
            self.step_object(st, start)?;
            if self.stack.len() != depth {
                return Ok(());
            }
            match self.stack.last() {
                Some(&Frame::Object(s, b)) => {
                    st = s;
                    start = b;
                }
                _ => return Ok(()),
            }
        }
    }

    #[inline(always)]
    fn step_array(&mut self, seq: Seq, last_item: usize) -> Result<()> {
        self.skip_ws();
        match seq {
            Seq::Open => {
                if self.peek() == Some(b',') {
                    self.note(RepairKind::RedundantComma, self.i);
                    self.i += 1;
                }
                self.set_top(Frame::Array {
                    seq: Seq::Item,
                    last_item,
                });
            }
            Seq::Item => {
                self.skip_ellipsis();
                match self.peek() {
                    None => self.close(b"]", false),
                    Some(b']') => self.close(b"]", true),
                    Some(b',') => {
                        self.note(RepairKind::RedundantComma, self.i);
                        self.i += 1;
                    }
                    Some(b'}') if !self.parent_is_object() => {
                        self.note(RepairKind::RedundantClosingBracket, self.i);
                        self.i += 1;
                    }
                    Some(_) if self.at_fence() => self.close(b"]", false),
                    Some(_) if self.fast_items() => {}
                    Some(_) => {
                        if !self.begin_value()? {
                            match self.peek() {
                                None | Some(b')' | b'}') => self.close(b"]", false),
                                Some(_) => self.skip_garbage(),
                            }
                        }
                    }
                }
            }
            Seq::After => match self.peek() {
                None => self.close(b"]", false),
                Some(b']') => self.close(b"]", true),
                Some(b'}') if !self.parent_is_object() => {
                    self.note(RepairKind::RedundantClosingBracket, self.i);
                    self.i += 1;
                }
                Some(b',') => {
                    self.emit_byte(b',');
                    self.i += 1;
                    self.set_top(Frame::Array {
                        seq: Seq::Item,
                        last_item,
                    });
                }
                Some(b':') if self.out.get(last_item) == Some(&b'"') => {
                    // `["key": "value"]`: the last item was the key of an object
                    self.note(RepairKind::MissingClosingBracket, self.i);
                    // offsets written later are larger, unless output was taken back
                    let at = last_item.max(self.last_insert);
                    stack::push_varint(&mut self.inserts, (at - self.last_insert) as u128);
                    self.last_insert = at;
                    self.insert_count += 1;
                    self.rewrote = true;
                    self.emit_byte(b':');
                    self.i += 1;
                    self.set_top(Frame::Array {
                        seq: Seq::After,
                        last_item,
                    });
                    self.stack.push(Frame::Object(Obj::Value, last_item));
                }
                Some(_) if self.at_fence() => self.close(b"]", false),
                Some(_) if self.can_start_value() => {
                    self.note(RepairKind::MissingComma, self.i);
                    self.out.push(b',');
                    self.set_top(Frame::Array {
                        seq: Seq::Item,
                        last_item,
                    });
                }
                Some(_) => self.close(b"]", false),
            },
        }
        Ok(())
    }

    #[inline(always)]
    fn step_object(&mut self, st: Obj, start: usize) -> Result<()> {
        let set = |e: &mut Self, st: Obj| e.set_top(Frame::Object(st, start));
        self.skip_ws();
        match st {
            Obj::Open => {
                if self.peek() == Some(b',') {
                    self.note(RepairKind::RedundantComma, self.i);
                    self.i += 1;
                }
                set(self, Obj::Key);
            }
            Obj::Key => {
                self.skip_ellipsis();
                match self.peek() {
                    None => self.close(b"}", false),
                    Some(b'}') => self.close(b"}", true),
                    Some(b',') => {
                        self.note(RepairKind::RedundantComma, self.i);
                        self.i += 1;
                    }
                    Some(b'[') if self.out.ends_with(b"],") => {
                        // `{"a": [1], [2]}`: more items for the array before
                        self.note(RepairKind::MissingClosingBracket, self.i);
                        self.out.truncate(self.out.len() - 2);
                        if self.out.iter().rev().find(|b| !is_ws(**b)) != Some(&b'[') {
                            self.out.push(b',');
                        }
                        self.ws.clear();
                        self.i += 1;
                        let last_item = self.out.len();
                        self.stack.push(Frame::Array {
                            seq: Seq::Item,
                            last_item,
                        });
                    }
                    Some(b'{' | b'[' | b']') => self.close(b"}", false),
                    Some(_) if self.at_fence() => self.close(b"}", false),
                    Some(_) => {
                        if self.fast_members(start) {
                            return Ok(());
                        }
                        self.key_mark = self.out.len();
                        if self.out.last() == Some(&b',') {
                            self.key_mark -= 1;
                        }
                        self.key_unquoted = !self.at_string_start();
                        if self.parse_key()? {
                            set(self, Obj::Colon);
                        } else if self.peek() == Some(b':') {
                            return self.error(RepairErrorKind::ObjectKeyExpected);
                        } else {
                            self.skip_garbage();
                        }
                    }
                }
            }
            Obj::Colon => match self.peek() {
                Some(b':') => {
                    self.emit_byte(b':');
                    self.i += 1;
                    set(self, Obj::Value);
                }
                Some(b'=') => {
                    self.note(RepairKind::MissingColon, self.i);
                    self.emit_byte(b':');
                    self.i += 1;
                    set(self, Obj::Value);
                }
                None if self.truncated_empty.is_some() || self.key_unquoted => {
                    // `{"`: a key cut off before it started
                    self.out.truncate(self.key_mark.max(start + 1));
                    self.truncated_empty = None;
                    self.close(b"}", false);
                }
                None => {
                    self.note(RepairKind::MissingColon, self.i);
                    self.out.push(b':');
                    set(self, Obj::Value);
                }
                Some(_) if self.can_start_value() => {
                    self.note(RepairKind::MissingColon, self.i);
                    self.out.push(b':');
                    set(self, Obj::Value);
                }
                Some(b'}') => {
                    // a key without value at the end: drop it
                    self.note(RepairKind::SurroundingText, self.i);
                    self.out.truncate(self.key_mark.max(start + 1));
                    self.ws.clear();
                    self.close(b"}", true);
                }
                Some(b',')
                    if self.out.get(self.key_mark) == Some(&b'"')
                        && self.out[start + 1..self.key_mark].iter().all(|&b| is_ws(b)) =>
                {
                    // `{'a', 'b'}`: a set, written as an array
                    self.note(RepairKind::Tuple, self.i);
                    self.out[start] = b'[';
                    let last_item = self.key_mark;
                    self.set_top(Frame::Array {
                        seq: Seq::After,
                        last_item,
                    });
                }
                Some(_) => {
                    // `{"a" ]`: a key without colon or value
                    self.note(RepairKind::MissingColon, self.i);
                    self.out.push(b':');
                    set(self, Obj::Value);
                }
            },
            Obj::Value => {
                if self.at_fence() || !self.begin_value()? {
                    self.note(RepairKind::MissingValue, self.i);
                    self.emit(b"null");
                    set(self, Obj::After);
                }
            }
            Obj::After => match self.peek() {
                None => self.close(b"}", false),
                Some(b'}') => self.close(b"}", true),
                Some(b',') => {
                    self.emit_byte(b',');
                    self.i += 1;
                    set(self, Obj::Key);
                }
                Some(_) if self.at_fence() => self.close(b"}", false),
                Some(b) if b != b'{' && b != b'[' && b != b'(' && self.can_start_value() => {
                    self.note(RepairKind::MissingComma, self.i);
                    self.out.push(b',');
                    set(self, Obj::Key);
                }
                Some(b']' | b')' | b'{' | b'[') => self.close(b"}", false),
                Some(_) => self.skip_garbage(),
            },
        }
        Ok(())
    }

    fn step_call(&mut self, done: bool) -> Result<()> {
        if !done {
            self.skip_ws();
            if self.peek() == Some(b')') || !self.begin_value()? {
                self.emit(b"null");
                self.set_top(Frame::Call { done: true });
            }
            return Ok(());
        }
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.i += 1;
            self.skip_ws();
            if self.peek() == Some(b';') {
                self.i += 1;
            }
        }
        self.stack.pop();
        self.value_done();
        Ok(())
    }

    fn step_paren(&mut self, seq: Seq, out_start: usize, items: usize, comma: bool) -> Result<()> {
        self.skip_ws();
        let close = |e: &mut Self, consume: bool| {
            if consume {
                e.i += 1;
            }
            if items == 0 {
                e.out[out_start] = b'[';
                e.emit(b"]");
            } else if comma {
                e.strip_trailing_comma();
                e.out.push(b']');
            }
            e.stack.pop();
            e.value_start = usize::MAX;
            e.value_done();
        };
        match (seq, self.peek()) {
            (_, None) => close(self, false),
            (_, Some(b')')) => close(self, true),
            (Seq::Open | Seq::Item, Some(b',')) => {
                self.note(RepairKind::RedundantComma, self.i);
                self.i += 1;
            }
            (Seq::Open | Seq::Item, _) => {
                if !self.begin_value()? {
                    close(self, false);
                }
            }
            (Seq::After, Some(b',')) => {
                if !comma {
                    self.out[out_start] = b'[';
                    self.rewrote = true;
                }
                self.emit_byte(b',');
                self.i += 1;
                self.set_top(Frame::Paren {
                    seq: Seq::Item,
                    out_start,
                    items,
                    comma: true,
                });
            }
            (Seq::After, _) => close(self, false),
        }
        Ok(())
    }

    /// Applies recorded insertions, removes placeholders and returns the output. The output
    /// is changed in place (widened, its pieces moved back to front), so no second copy of
    /// it is held.
    fn finish(mut self) -> Vec<u8> {
        self.flush_ws();
        if self.insert_count > 0 || self.multi {
            self.apply_inserts();
        }
        // After the insertions: their offsets were taken with the placeholders in place.
        if self.placeholders {
            self.out.retain(|&b| b != PLACEHOLDER);
        }
        self.out
    }

    /// Writes the recorded `{` insertions (and, for several top-level values, the array
    /// around them) into the output.
    fn apply_inserts(&mut self) {
        let (head, tail): (&[u8], &[u8]) = if self.multi {
            (b"[\n", b"\n]")
        } else {
            (b"", b"")
        };
        let len = self.out.len();
        let extra = head.len() + self.insert_count + tail.len();
        self.out.resize(len + extra, 0);
        let out = &mut self.out;
        let mut dst = len + extra - tail.len();
        out[dst..].copy_from_slice(tail);
        let mut end = len;
        let mut next = self.last_insert;
        for _ in 0..self.insert_count {
            let pos = next.min(end);
            let delta = stack::pop_varint(&mut self.inserts);
            next = next.saturating_sub(usize::try_from(delta).unwrap_or(usize::MAX));
            let n = end - pos;
            out.copy_within(pos..end, dst - n);
            dst -= n + 1;
            out[dst] = b'{';
            end = pos;
        }
        out.copy_within(0..end, dst - end);
        out[..head.len()].copy_from_slice(head);
    }
}
