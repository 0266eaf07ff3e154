//! Quoted strings: any quote style, missing or misplaced end quotes, unescaped quotes and
//! control characters, invalid escapes, escaped (stringified) JSON and `+` concatenation.
//!
//! A string is first read assuming its end quote is right ([`Mode::Normal`]). When the end
//! quote turns out to be wrong (followed by text instead of a delimiter), the string is read
//! again from its start, ending at a comma before that quote ([`Mode::StopAt`]) or at the
//! first delimiter ([`Mode::StopAtDelimiter`]). A `StopAt` pass may only fall back to
//! `StopAtDelimiter`, which never retries, so a string is read at most three times.

use super::{Engine, Result};
use crate::chars::{
    BRACKET, CLASS, COLON, DELIM, QUOTE_LIKE, QuoteKind, STR, closing_quote_len, is_delimiter,
    is_unquoted_delimiter, is_url_char, is_url_start, is_ws, push_control_escape, push_slice,
    quote_at, special_ws_len, utf8_len,
};
use crate::error::RepairErrorKind;
use crate::report::RepairKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Trust end quotes that are followed by a delimiter.
    Normal,
    /// End at the first delimiter. With `accept_quotes`, any end quote ends the string too;
    /// without, quotes are judged as in `Normal` but never cause another reading.
    Delimiter { accept_quotes: bool },
    /// End at this offset (a comma before a quote that turned out to start the next string).
    StopAt(usize),
}

/// How far some heuristics look ahead. A bound keeps the engine linear on any input.
pub(super) const LOOKAHEAD: usize = 256;

/// What to make of a quote that could end the string.
enum Quote {
    End,
    Content,
    /// A doubled opening quote (`""value"`): drop it.
    Skip,
    Retry(Mode),
}

/// Where the string being read stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Root,
    Key,
    ArrayItem,
    Other,
}

impl Engine<'_> {
    /// `true` at a quote, or at a backslash before a quote (escaped JSON like `{\"a\": 1}`).
    #[inline]
    pub(super) fn at_string_start(&self) -> bool {
        quote_at(self.s, self.i).is_some()
            || (self.peek() == Some(b'\\') && quote_at(self.s, self.i + 1).is_some())
    }

    /// Reads the string at the cursor and writes it as a JSON string (without its opening
    /// quote when `emit_open` is false, to join concatenated strings).
    pub(super) fn parse_string(&mut self, emit_open: bool, place: Place) -> Result<()> {
        self.flush_ws();
        if emit_open && self.simple_string(place) {
            return Ok(());
        }
        let start = self.i;
        let out_before = self.out.len();
        let notes_before = self.repairs.as_ref().map_or(0, Vec::len);
        // Rereading is paid from a budget proportional to the input; once it is spent,
        // strings are read once, ending at the first delimiter or quote. This keeps inputs
        // with many misleading quotes linear.
        let mut mode = if self.reread_budget == 0 {
            Mode::Delimiter {
                accept_quotes: true,
            }
        } else {
            Mode::Normal
        };
        loop {
            self.i = start;
            self.out.truncate(out_before);
            if let Some(r) = self.repairs.as_mut() {
                r.truncate(notes_before);
            }
            let result = self.string_pass(start, mode, emit_open, place)?;
            self.reread_budget = self
                .reread_budget
                .saturating_sub(self.i.saturating_sub(start));
            match result {
                None => return Ok(()),
                Some(next) if self.reread_budget == 0 => {
                    mode = match next {
                        Mode::StopAt(k) => Mode::StopAt(k),
                        _ => Mode::Delimiter {
                            accept_quotes: true,
                        },
                    }
                }
                Some(next) => mode = next,
            }
        }
    }

    /// One reading of a string; returns the mode to read it again with, if it must be.
    fn string_pass(
        &mut self,
        start: usize,
        mode: Mode,
        emit_open: bool,
        place: Place,
    ) -> Result<Option<Mode>> {
        let s = self.s;
        let len = s.len();
        let mut i = start;
        let skip_escapes = s[i] == b'\\';
        if skip_escapes {
            self.note(RepairKind::StringifiedJson, i);
            i += 1;
        }
        let Some((kind, qlen)) = quote_at(s, i) else {
            return self.error(RepairErrorKind::Internal);
        };
        if kind != QuoteKind::Double {
            self.note(RepairKind::Quotes, i);
        }
        let open_quote = i;
        i += qlen;
        if emit_open {
            self.out.push(b'"');
        }
        let content_start = self.out.len();
        let content_in = i;
        if mode == Mode::Normal
            && !skip_escapes
            && place != Place::Root
            && self.reread_budget > 0
            && matches!(kind, QuoteKind::Double | QuoteKind::Single)
        {
            match self.simple_string_end(i, kind, place) {
                Ok(end) => {
                    // fast path: plain text, then the end quote right before a delimiter
                    push_slice(&mut self.out, s, i, end);
                    self.out.push(b'"');
                    self.i = end + 1;
                    return Ok(None);
                }
                // the bytes looked at are read again below: pay them from the budget
                Err(scanned) => self.reread_budget = self.reread_budget.saturating_sub(scanned),
            }
        }
        let mut just_skipped = true;
        // brackets opened inside the text: a quote followed by the matching closing bracket,
        // like `"(5'3")"`, is part of the text
        let mut depth = [0u32; 4];
        let mut escaped = 0usize;
        let mut doubled_open = false;
        let limit = match mode {
            Mode::StopAt(k) => k.min(len),
            _ => len,
        };
        loop {
            if i >= limit {
                if i >= len && mode == Mode::Normal {
                    // a closing code fence right at the end does not belong to the string
                    let mut end = prev_non_ws(s, len, open_quote) + 1;
                    if end >= open_quote + 4 && s[..end].ends_with(b"```") {
                        end -= 3;
                    }
                    let p = prev_non_ws(s, end, open_quote);
                    let retry = match place {
                        // `{"key:value}`: only a closing bracket shows the key went too far
                        Place::Key => matches!(s[p], b'}' | b']'),
                        // at the root there is no structure to go on with, except `"a +`;
                        // the re-scan ends the string at its first delimiter, so only
                        // when the `+` is the first (`"{ +` stays one cut-off string)
                        Place::Root => {
                            s[p] == b'+' && !s[open_quote + 1..p].iter().any(|&c| is_delimiter(c))
                        }
                        _ => is_delimiter(s[p]) && !matches!(s[p], b'/' | b':'),
                    };
                    if p > open_quote && retry {
                        self.i = i;
                        return Ok(Some(Mode::Delimiter {
                            accept_quotes: false,
                        }));
                    }
                }
                self.note(RepairKind::MissingEndQuote, i);
                if i >= len
                    && self.out.len() == content_start
                    && emit_open
                    && matches!(place, Place::ArrayItem | Place::Key)
                {
                    self.truncated_empty = Some(content_start - 1);
                }
                self.close_content(content_start);
                self.i = i;
                return Ok(None);
            }
            let b = s[i];
            let ql = if CLASS[usize::from(b)] & (STR | QUOTE_LIKE) != 0 {
                closing_quote_len(s, i, kind)
            } else {
                0
            };
            if ql > 0 {
                let mut after = i + ql;
                let q2 = closing_quote_len(s, after, kind);
                if doubled_open && q2 > 0 {
                    // `""key""`: doubled quotes around the text
                    after += q2;
                    self.out.push(b'"');
                    self.i = after;
                    return Ok(None);
                }
                let q = QuoteAt {
                    i,
                    after,
                    open_quote,
                    content_in,
                    kind,
                    depth,
                    escaped,
                };
                match self.judge_quote(&q, mode, place) {
                    Quote::End => {
                        self.trim_raw_newlines(content_start, content_in, i, place);
                        self.out.push(b'"');
                        self.i = after;
                        return Ok(None);
                    }
                    Quote::Retry(m) => {
                        self.i = after;
                        return Ok(Some(m));
                    }
                    Quote::Skip => {
                        self.note(RepairKind::UnescapedQuote, i);
                        doubled_open = true;
                    }
                    Quote::Content => {
                        self.note(RepairKind::UnescapedQuote, i);
                        escaped += 1;
                        if b == b'\'' {
                            self.out.push(b'\'');
                        } else {
                            self.out.extend_from_slice(b"\\\"");
                        }
                    }
                }
                i = after;
                just_skipped = false;
                continue;
            }
            if matches!(mode, Mode::Delimiter { .. })
                && ((is_unquoted_delimiter(b)
                    && (b != b'/' || is_comment_start(s, i))
                    && (b != b',' || !self.prose_comma(i, place))
                    && (b != b'}' || self.brace_ends_value(i, place)))
                    || (b == b':' && place == Place::Key))
            {
                if b == b'/' && is_url_start(s, content_in, i) {
                    let url_start = i;
                    while i < len && is_url_char(s[i]) {
                        i += 1;
                    }
                    self.out.extend_from_slice(&s[url_start..i]);
                }
                self.note(RepairKind::MissingEndQuote, i);
                self.close_content(content_start);
                self.i = i;
                return Ok(None);
            }
            match b {
                b'\\' if skip_escapes && !just_skipped => {
                    i += 1;
                    just_skipped = true;
                    continue;
                }
                b'\\' => i = self.escape(i, kind)?,
                b'"' => {
                    self.note(RepairKind::UnescapedQuote, i);
                    self.out.extend_from_slice(b"\\\"");
                    i += 1;
                }
                0..=0x1F => {
                    self.note(RepairKind::ControlCharacter, i);
                    push_control_escape(&mut self.out, b);
                    i += 1;
                }
                _ => {
                    // a run of ordinary characters
                    let mut stop = STR;
                    if kind != QuoteKind::Double {
                        stop |= QUOTE_LIKE;
                    }
                    if matches!(mode, Mode::Delimiter { .. }) {
                        stop |= DELIM;
                        if place == Place::Key {
                            stop |= COLON;
                        }
                    }
                    if CLASS[usize::from(b)] & BRACKET != 0 {
                        track_bracket(&mut depth, b, s.get(i + 1) == Some(&b'"'));
                    }
                    let mut j = (i + utf8_len(b)).min(limit);
                    let mask = stop | BRACKET;
                    loop {
                        while j < limit && CLASS[usize::from(s[j])] & mask == 0 {
                            j += 1;
                        }
                        if j < limit && CLASS[usize::from(s[j])] & stop == 0 {
                            track_bracket(&mut depth, s[j], s.get(j + 1) == Some(&b'"'));
                            j += 1;
                            continue;
                        }
                        break;
                    }
                    self.out.extend_from_slice(&s[i..j]);
                    i = j;
                }
            }
            just_skipped = false;
        }
    }

    /// The first reading of [`Self::string_pass`] when it takes its fast path (see
    /// [`Self::simple_string_end`]), without the set-up for reading again: writes the string
    /// and returns `true`, or returns `false` having changed nothing.
    #[inline(always)]
    fn simple_string(&mut self, place: Place) -> bool {
        let s = self.s;
        let open = self.i;
        let kind = match s.get(open) {
            Some(b'"') => QuoteKind::Double,
            Some(b'\'') => QuoteKind::Single,
            _ => return false,
        };
        if place == Place::Root || self.reread_budget == 0 {
            return false;
        }
        let Ok(end) = self.simple_string_end(open + 1, kind, place) else {
            return false;
        };
        if kind != QuoteKind::Double {
            self.note(RepairKind::Quotes, open);
        }
        self.out.push(b'"');
        push_slice(&mut self.out, s, open + 1, end);
        self.out.push(b'"');
        self.i = end + 1;
        self.reread_budget = self.reread_budget.saturating_sub(self.i - open);
        true
    }

    /// For a string of plain text (no escapes, control characters, brackets or other quotes)
    /// whose end quote is directly followed by `,` `:` `]` or `}`, returns the offset of that
    /// end quote. Such a quote always ends the string, so the general rules can be skipped.
    /// Otherwise returns how many bytes were looked at.
    #[inline]
    pub(super) fn simple_string_end(
        &self,
        from: usize,
        kind: QuoteKind,
        place: Place,
    ) -> std::result::Result<usize, usize> {
        let s = self.s;
        let quote = if kind == QuoteKind::Double {
            b'"'
        } else {
            b'\''
        };
        let mut j = from;
        while j < s.len() {
            let c = s[j];
            if c == quote {
                break;
            }
            if CLASS[usize::from(c)] & (STR | BRACKET) != 0 {
                return Err(j - from);
            }
            j += 1;
        }
        match s.get(j + 1) {
            Some(b':' | b']' | b'}') if j > from => Ok(j),
            Some(b',') if j > from && !self.prose_comma(j + 1, place) => Ok(j),
            _ => Err(j - from),
        }
    }

    /// Decides whether the quote at `q.i` ends the string.
    fn judge_quote(&self, q: &QuoteAt, mode: Mode, place: Place) -> Quote {
        if self.quotes_trusted {
            return Quote::End;
        }
        let s = self.s;
        let len = s.len();
        let j = skip_inline_ws(s, q.after);
        let next = s.get(j).copied();
        let in_brackets = q.depth[1] > 0 || q.depth[2] > 0;
        let inside = match next {
            Some(b')') => q.depth[0] > 0 && self.quote_follows(j),
            Some(b']') => q.depth[1] > 0 && self.quote_follows(j),
            Some(b'}') => q.depth[2] > 0 && self.quote_follows(j),
            // `{"k": 1}` quoted inside the text
            Some(b':') => q.depth[3] > 0 && place != Place::Key,
            // `"72""` or `"...\n"\n",`: this quote is text, the next one ends the string
            Some(b)
                if q.i > q.content_in && (b == b'\n' || closing_quote_len(s, j, q.kind) > 0) =>
            {
                let k = skip_all_ws(s, j);
                let q2 = closing_quote_len(s, k, q.kind);
                q2 > 0 && {
                    let m = skip_inline_ws(s, k + q2);
                    m >= len || matches!(s[m], b',' | b'}' | b']' | b':' | b'\n')
                }
            }
            _ => false,
        };
        if inside {
            return Quote::Content;
        }
        if q.i == q.content_in
            && j == q.after
            && next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            // `""key""`: a doubled opening quote
            return Quote::Skip;
        }
        let ends = match next {
            None => true,
            Some(b',') => !self.prose_comma(j, place),
            Some(n) => {
                is_delimiter(n)
                    || n == b'#'
                    || (n == b'=' && place == Place::Key)
                    || (!in_brackets && (n.is_ascii_digit() || quote_at(s, j).is_some()))
            }
        };
        if ends
            || mode
                == (Mode::Delimiter {
                    accept_quotes: true,
                })
        {
            return Quote::End;
        }
        if place != Place::Key && j > q.after && self.key_follows(j) {
            // `"text" next: 1`: a comma is missing before an unquoted key
            return Quote::End;
        }
        if q.i == q.content_in && next.is_some_and(|b| !is_ws(b)) {
            return Quote::Skip;
        }
        if place == Place::ArrayItem && q.escaped == 0 && j > q.after && mode == Mode::Normal {
            // `["a" b", "c"]`: items missing quotes and commas
            return Quote::End;
        }
        if place != Place::Root
            && q.kind == QuoteKind::Double
            && q.escaped == 0
            && Some(q.i) == self.last_quote
        {
            // the last quote of the input, followed by stray text
            return Quote::End;
        }
        let p = prev_non_ws(s, q.i, q.open_quote);
        // an unmatched closing bracket inside the text (`"value} "tail"`) is text too
        let stray_closer = (s[p] == b'}' && q.depth[2] == 0) || (s[p] == b']' && q.depth[1] == 0);
        // `Note: "x"`: a colon after a word that does not follow a comma is text
        let prose_colon = s[p] == b':' && place != Place::Key && !key_before(s, p, q.open_quote);
        if !in_brackets
            && p > q.open_quote
            && is_delimiter(s[p])
            && !matches!(s[p], b'(' | b'[' | b'{')
            && !stray_closer
            && !prose_colon
        {
            return match mode {
                Mode::Normal if s[p] == b',' && (place != Place::Other || self.key_ahead(q.i)) => {
                    Quote::Retry(Mode::StopAt(p))
                }
                Mode::Normal if s[p] == b',' => Quote::Content,
                Mode::Normal | Mode::StopAt(_) => Quote::Retry(Mode::Delimiter {
                    accept_quotes: true,
                }),
                Mode::Delimiter { .. } => Quote::Content,
            };
        }
        Quote::Content
    }

    /// `true` when, after the closing bracket at `j`, the next quote (within [`LOOKAHEAD`]
    /// bytes) looks like the end of a string: the string goes on after the bracket, as in
    /// `"the list [1, 2"] more"`.
    fn quote_follows(&self, j: usize) -> bool {
        let s = self.s;
        let window = &s[j + 1..(j + 1 + LOOKAHEAD).min(s.len())];
        match window.iter().position(|&b| b == b'"') {
            Some(p) => {
                let k = skip_inline_ws(s, j + 1 + p + 1);
                k >= s.len() || matches!(s[k], b',' | b'}' | b']' | b'\n')
            }
            None => false,
        }
    }

    /// `true` when the comma at `c`, inside an object value, is followed by words that are not
    /// a key (`"a": "x, y and z"`): the comma is part of the text.
    fn prose_comma(&self, c: usize, place: Place) -> bool {
        if place != Place::Other || !matches!(self.stack.last(), Some(super::Frame::Object(..))) {
            return false;
        }
        let s = self.s;
        let k = skip_inline_ws(s, c + 1);
        if !s.get(k).is_some_and(|b| b.is_ascii_alphabetic()) || self.key_follows(k) {
            return false;
        }
        let stop = self
            .prose_stop
            .find(s, k, |b| matches!(b, b'"' | b':' | b'{' | b'['));
        match stop {
            // a quote that ends the text, not one that starts a key
            Some(p) if s[p] == b'"' => {
                let m = skip_inline_ws(s, p + 1);
                m >= s.len() || matches!(s[m], b',' | b'}' | b']')
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Whether the `}` at `c`, met while looking for the end of an object value that lost its
    /// end quote, closes the object: it does when it is the last one, or when structure or a
    /// key follows it. Otherwise it is text (`"value} more text}`).
    fn brace_ends_value(&self, c: usize, place: Place) -> bool {
        if place != Place::Other || !matches!(self.stack.last(), Some(super::Frame::Object(..))) {
            return true;
        }
        let s = self.s;
        let k = skip_all_ws(s, c + 1);
        k >= s.len()
            || matches!(s[k], b',' | b'}' | b']')
            || s[k..].starts_with(b"```")
            || self.key_follows(k)
            || (s[k] == b'"' && self.key_ahead(k))
    }

    /// `true` when an unquoted key and a colon (like `name:`) start at `j`.
    fn key_follows(&self, j: usize) -> bool {
        let s = self.s;
        if !s
            .get(j)
            .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        {
            return false;
        }
        let end = (j + LOOKAHEAD).min(s.len());
        let mut k = j;
        while k < end && (s[k].is_ascii_alphanumeric() || s[k] == b'_' || s[k] == b'$') {
            k += 1;
        }
        if s.get(k) == Some(&b'"') {
            // `b":` a key missing its opening quote
            k += 1;
        }
        let k = skip_inline_ws(s, k);
        s.get(k) == Some(&b':') && s.get(k + 1).is_none_or(|&b| b != b'/')
    }

    /// `true` when a quoted key (`"name"` and a colon) starts at the quote `q`, looking at most
    /// [`LOOKAHEAD`] bytes ahead.
    fn key_ahead(&self, q: usize) -> bool {
        let s = self.s;
        let window = &s[q + 1..(q + 1 + LOOKAHEAD).min(s.len())];
        match window.iter().position(|&b| b == b'"' || b == b'\n') {
            Some(p) if window[p] == b'"' => {
                let k = skip_inline_ws(s, q + 1 + p + 1);
                s.get(k) == Some(&b':')
            }
            _ => false,
        }
    }

    /// Handles the escape sequence at `i` (a backslash); returns the offset after it.
    fn escape(&mut self, i: usize, kind: QuoteKind) -> Result<usize> {
        let s = self.s;
        let Some(&n) = s.get(i + 1) else {
            self.note(RepairKind::InvalidEscape, i);
            return Ok(i + 1);
        };
        match n {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.out.extend_from_slice(&s[i..i + 2]);
                Ok(i + 2)
            }
            b'u' => self.unicode_escape(i),
            0..=0x1F => {
                self.note(RepairKind::ControlCharacter, i);
                push_control_escape(&mut self.out, n);
                Ok(i + 2)
            }
            b's' | b'd' | b'w' | b'S' | b'D' | b'W' | b'(' | b')' | b'[' | b']' | b'{' | b'}'
            | b'.' | b'*' | b'?' | b'|' | b'^' | b'$' => {
                // a regular expression escape like `\s` or `\(`: keep the backslash
                self.note(RepairKind::InvalidEscape, i);
                self.out.extend_from_slice(b"\\\\");
                self.out.push(n);
                Ok(i + 2)
            }
            _ if kind != QuoteKind::Double && n.is_ascii_alphanumeric() => {
                // `'\le'`: in a single-quoted (Python) string an unknown escape is literal
                self.note(RepairKind::InvalidEscape, i);
                self.out.extend_from_slice(b"\\\\");
                self.out.push(n);
                Ok(i + 2)
            }
            _ => {
                // invalid escape like `\a` or `\'`: keep the character, drop the backslash
                self.note(RepairKind::InvalidEscape, i);
                let end = (i + 1 + utf8_len(n)).min(s.len());
                self.out.extend_from_slice(&s[i + 1..end]);
                Ok(end)
            }
        }
    }

    /// Handles `\u` at `i`; lone surrogates become U+FFFD, a truncated escape at the end of
    /// the input is dropped.
    fn unicode_escape(&mut self, i: usize) -> Result<usize> {
        let s = self.s;
        let hex = |at: usize| -> Option<u16> {
            let h = s.get(at..at + 4)?;
            if !h.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        let Some(v) = hex(i + 2) else {
            let digits = s[i + 2..]
                .iter()
                .take(4)
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if i + 2 + digits >= s.len() {
                self.note(RepairKind::MissingEndQuote, i);
                return Ok(s.len());
            }
            self.i = i;
            return self.error(RepairErrorKind::InvalidUnicodeEscape);
        };
        if (0xD800..0xDC00).contains(&v)
            && s.get(i + 6..i + 8) == Some(b"\\u")
            && hex(i + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low))
        {
            self.out.extend_from_slice(&s[i..i + 12]);
            return Ok(i + 12);
        }
        if (0xD800..0xE000).contains(&v) {
            self.note(RepairKind::InvalidEscape, i);
            self.out.extend_from_slice(b"\\ufffd");
        } else {
            self.out.extend_from_slice(&s[i..i + 6]);
        }
        Ok(i + 6)
    }

    /// Removes raw line breaks (and the blanks around them) right before an end quote, as in
    /// `"key\n"` written over two lines. Only keys and text holding a markdown code fence are
    /// trimmed: every other string keeps all of its characters up to its end quote.
    fn trim_raw_newlines(
        &mut self,
        content_start: usize,
        content_in: usize,
        quote: usize,
        place: Place,
    ) {
        let s = self.s;
        let mut p = quote;
        let mut out_len = 0;
        let mut newline = false;
        while p > content_in && matches!(s[p - 1], b'\n' | b'\r' | b' ' | b'\t') {
            p -= 1;
            newline |= matches!(s[p], b'\n' | b'\r');
            out_len += if s[p] == b' ' { 1 } else { 2 };
        }
        if newline
            && p > content_in
            && s[p - 1] != b'\\'
            && (place == Place::Key || contains_fence(&s[content_in..p]))
        {
            let keep = self.out.len().saturating_sub(out_len).max(content_start);
            self.out.truncate(keep);
        }
    }

    /// Ends a string whose end quote is missing: the quote goes before trailing spaces.
    fn close_content(&mut self, content_start: usize) {
        let spaces = self.out[content_start..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ')
            .count();
        self.out.truncate(self.out.len() - spaces);
        self.out.push(b'"');
        self.ws.extend(std::iter::repeat_n(b' ', spaces));
    }

    /// Joins `"a" + "b"` into `"ab"`.
    pub(super) fn parse_concat(&mut self) -> Result<()> {
        loop {
            self.skip_ws();
            if self.peek() != Some(b'+') {
                return Ok(());
            }
            let plus = self.i;
            self.i += 1;
            self.skip_ws();
            if !self.at_string_start() {
                // a `+` followed by something else: drop it
                self.note(RepairKind::Concatenation, plus);
                return Ok(());
            }
            self.note(RepairKind::Concatenation, plus);
            self.ws.clear();
            if self.out.last() == Some(&b'"') {
                self.out.pop();
                self.parse_string(false, Place::Other)?;
            } else {
                self.parse_string(true, Place::Other)?;
            }
        }
    }
}

/// A quote that may end the string being read, with what is known about the string so far.
struct QuoteAt {
    i: usize,
    after: usize,
    open_quote: usize,
    content_in: usize,
    kind: QuoteKind,
    /// Unclosed `(`, `[` and `{` in the text so far, and how many of those `{` were
    /// followed by a quote.
    depth: [u32; 4],
    /// Quotes already kept as part of the text.
    escaped: usize,
}

/// Index of the last non-whitespace byte before `i`, not going below `floor`.
fn prev_non_ws(s: &[u8], i: usize, floor: usize) -> usize {
    let mut p = i;
    while p > floor {
        p -= 1;
        if !is_ws(s[p]) {
            return p;
        }
    }
    floor
}

/// `true` when the colon at `colon` follows a word that follows a comma or an opening brace
/// (`, b:`), that is when it looks like a key inside the text rather than prose.
fn key_before(s: &[u8], colon: usize, floor: usize) -> bool {
    let mut k = colon;
    while k > floor && matches!(s[k - 1], b' ' | b'\t') {
        k -= 1;
    }
    let word_end = k;
    while k > floor
        && word_end - k < LOOKAHEAD
        && (s[k - 1].is_ascii_alphanumeric() || s[k - 1] == b'_')
    {
        k -= 1;
    }
    if k == word_end {
        return false;
    }
    while k > floor && matches!(s[k - 1], b' ' | b'\t') {
        k -= 1;
    }
    k > floor && matches!(s[k - 1], b',' | b'{')
}

/// `true` when `text` holds a markdown code fence (```` ``` ````): a line break before the
/// end quote of such text is the layout of a language model's answer (the quote put on a
/// line of its own after the closing fence), not part of the value.
fn contains_fence(text: &[u8]) -> bool {
    text.windows(3).any(|w| w == b"```")
}

/// Counts an opening or closing bracket met inside a string.
fn track_bracket(depth: &mut [u32; 4], c: u8, quote_next: bool) {
    match c {
        b'(' => depth[0] += 1,
        b')' => depth[0] = depth[0].saturating_sub(1),
        b'[' => depth[1] += 1,
        b']' => depth[1] = depth[1].saturating_sub(1),
        b'{' => {
            depth[2] += 1;
            // `{"`: JSON quoted inside the text
            if quote_next {
                depth[3] += 1;
            }
        }
        b'}' => {
            depth[2] = depth[2].saturating_sub(1);
            depth[3] = depth[3].saturating_sub(1);
        }
        _ => {}
    }
}

/// `true` at `//` or `/*`.
fn is_comment_start(s: &[u8], i: usize) -> bool {
    s.get(i) == Some(&b'/') && matches!(s.get(i + 1), Some(b'/' | b'*'))
}

/// Skips all whitespace, line breaks included.
fn skip_all_ws(s: &[u8], mut j: usize) -> usize {
    while j < s.len() && is_ws(s[j]) {
        j += 1;
    }
    j
}

/// Skips spaces, tabs and carriage returns (not newlines) and special whitespace.
fn skip_inline_ws(s: &[u8], mut j: usize) -> usize {
    loop {
        match s.get(j) {
            Some(b' ' | b'\t' | b'\r') => j += 1,
            Some(&b) if b >= 0x80 => {
                let n = special_ws_len(s, j);
                if n == 0 {
                    return j;
                }
                j += n;
            }
            _ => return j,
        }
    }
}
