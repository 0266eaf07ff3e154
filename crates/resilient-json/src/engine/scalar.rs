//! Unquoted values: numbers, literals, unquoted strings and keys, function calls (JSONP,
//! MongoDB) and regular expression literals.

use super::string::{LOOKAHEAD, Place};
use super::{Engine, Frame, Result};
use crate::chars::{
    is_delimiter, is_ident, is_ident_start, is_unquoted_delimiter, is_url_char, is_url_start,
    is_ws, push_escaped, push_slice, quote_at, special_ws_len,
};
use crate::report::RepairKind;

/// The JSON text for a literal word, and the repair it needs (`None` when already JSON).
pub(super) fn keyword(word: &[u8]) -> Option<(&'static [u8], Option<RepairKind>)> {
    let lit = |w: &'static [u8]| -> Option<(&'static [u8], Option<RepairKind>)> {
        Some((w, (word != w).then_some(RepairKind::PythonLiteral)))
    };
    // (the length is tested first: most words are no keyword, and this runs for every word)
    if word.len() == 4 && word.eq_ignore_ascii_case(b"true") {
        lit(b"true")
    } else if word.len() == 5 && word.eq_ignore_ascii_case(b"false") {
        lit(b"false")
    } else if word.len() == 4
        && (word.eq_ignore_ascii_case(b"null") || word.eq_ignore_ascii_case(b"none"))
    {
        lit(b"null")
    } else if matches!(word, b"undefined" | b"NaN" | b"Infinity" | b"nan" | b"inf") {
        Some((b"null", Some(RepairKind::NonJsonLiteral)))
    } else {
        None
    }
}

impl Engine<'_> {
    /// Fast path for the common valid number like `12` or `3.25` followed by a delimiter or
    /// whitespace: copies it and returns `true`. Anything else goes to [`Self::number`].
    #[inline(always)]
    pub(super) fn plain_number(&mut self) -> bool {
        let s = self.s;
        let start = self.i;
        let mut j = start + 1;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if s[start] == b'0' && j > start + 1 {
            return false;
        }
        if s.get(j) == Some(&b'.') {
            let frac = j + 1;
            j = frac;
            while j < s.len() && s[j].is_ascii_digit() {
                j += 1;
            }
            if j == frac {
                return false;
            }
        }
        if !matches!(
            s.get(j),
            None | Some(b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t')
        ) {
            return false;
        }
        push_slice(&mut self.out, s, start, j);
        self.i = j;
        true
    }

    /// Reads a scalar that is not a quoted string. Returns `false` when none starts here.
    pub(super) fn scalar(&mut self) -> Result<bool> {
        let c = self.s[self.i];
        if matches!(c, b'+' | b'-')
            && let Some(end) = self.signed_non_finite()
        {
            self.note(RepairKind::NonJsonLiteral, self.i);
            self.out.extend_from_slice(b"null");
            self.i = end;
            self.value_done();
            return Ok(true);
        }
        if c == b'-' && self.s.get(self.i + 1).is_some_and(|&b| is_ws(b)) {
            // a dash followed by a space is not a number: skip it
            self.note(RepairKind::SurroundingText, self.i);
            self.i += 1;
            return Ok(false);
        }
        if (c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.')) && self.number() {
            self.value_done();
            return Ok(true);
        }
        if is_ident_start(c) {
            return Ok(self.word());
        }
        if c == b'/' {
            self.regex();
            self.value_done();
            return Ok(true);
        }
        if can_start_unquoted(self.s, self.i) && self.unquoted(false) {
            self.value_done();
            return Ok(true);
        }
        Ok(false)
    }

    /// `-Infinity`, `+ NaN`, ...: returns the offset after the word.
    fn signed_non_finite(&self) -> Option<usize> {
        let s = self.s;
        let mut j = self.i + 1;
        loop {
            match s.get(j) {
                Some(&b) if is_ws(b) => j += 1,
                Some(_) if special_ws_len(s, j) > 0 => j += special_ws_len(s, j),
                _ => break,
            }
        }
        let w = j;
        while j < s.len() && is_ident(s[j]) {
            j += 1;
        }
        matches!(&s[w..j], b"NaN" | b"Infinity" | b"nan" | b"inf").then_some(j)
    }

    /// Reads a number, repairing `+1`, `.5`, `2.`, `2e`, `-`, `1_000`; numbers with leading
    /// zeros become strings. Returns `false` (consuming nothing) when the text is not a number,
    /// like `1.2.3` or `2024-10-18`, so that it is read as an unquoted string instead.
    fn number(&mut self) -> bool {
        let s = self.s;
        let start = self.i;
        let out_start = self.out.len();
        let mut j = start;
        let mut repaired = false;
        let fail = |e: &mut Self| {
            e.out.truncate(out_start);
            false
        };
        if s[j] == b'+' {
            repaired = true;
            j += 1;
        }
        if s.get(j) == Some(&b'-') {
            self.out.push(b'-');
            j += 1;
        }
        if j == start + 1 && s[start] == b'-' && at_number_end(s, j) {
            // a lone minus
            self.out.push(b'0');
            self.note(RepairKind::Number, start);
            self.i = j;
            return true;
        }
        let int_start = j;
        if s.get(j) == Some(&b'.') {
            if !(s.get(j + 1).is_some_and(u8::is_ascii_digit) || at_number_end(s, j + 1)) {
                return fail(self);
            }
            repaired = true;
            self.out.push(b'0');
        } else if !s.get(j).is_some_and(u8::is_ascii_digit) {
            return fail(self);
        }
        repaired |= self.digits(&mut j);
        let int_end = j;
        if s.get(j) == Some(&b'.') {
            self.out.push(b'.');
            j += 1;
            if at_number_end(s, j) {
                self.out.push(b'0');
                repaired = true;
            } else if !s.get(j).is_some_and(u8::is_ascii_digit) {
                return fail(self);
            } else {
                repaired |= self.digits(&mut j);
            }
        }
        if matches!(s.get(j), Some(b'e' | b'E')) {
            self.out.push(s[j]);
            j += 1;
            if matches!(s.get(j), Some(b'+' | b'-')) {
                self.out.push(s[j]);
                j += 1;
            }
            if at_number_end(s, j) {
                self.out.push(b'0');
                repaired = true;
            } else if !s.get(j).is_some_and(u8::is_ascii_digit) {
                return fail(self);
            } else {
                repaired |= self.digits(&mut j);
            }
        }
        let mut stray_quote = false;
        if s.get(j) == Some(&b'"') {
            // `12345",`: a number with a stray end quote
            let k = skip_ascii_ws(s, j + 1);
            stray_quote = k >= s.len() || matches!(s[k], b',' | b'}' | b']');
        }
        if !stray_quote && !at_number_end(s, j) {
            return fail(self);
        }
        let int = &s[int_start..int_end];
        if int.len() > 1 && int[0] == b'0' {
            // leading zeros are not allowed in JSON, and may carry meaning: keep the text
            self.out.truncate(out_start);
            self.out.push(b'"');
            push_escaped(&mut self.out, &s[start..j]);
            self.out.push(b'"');
            self.note(RepairKind::LeadingZeros, start);
        } else if repaired {
            self.note(RepairKind::Number, start);
        }
        self.i = j + usize::from(stray_quote);
        true
    }

    /// Copies digits (dropping `_` between digits); returns `true` if any `_` was dropped.
    fn digits(&mut self, j: &mut usize) -> bool {
        let s = self.s;
        let mut dropped = false;
        while let Some(&b) = s.get(*j) {
            if b.is_ascii_digit() {
                self.out.push(b);
            } else if b == b'_'
                && *j > 0
                && s[*j - 1].is_ascii_digit()
                && s.get(*j + 1).is_some_and(u8::is_ascii_digit)
            {
                dropped = true;
            } else {
                break;
            }
            *j += 1;
        }
        dropped
    }

    /// Reads a word: a literal, a function call, or an unquoted string.
    fn word(&mut self) -> bool {
        let s = self.s;
        let start = self.i;
        let mut j = start;
        while j < s.len() && is_ident(s[j]) {
            j += 1;
        }
        let word = &s[start..j];
        let k = skip_ws_and_comments(s, j);
        if s.get(k) == Some(&b'(') && self.looks_like_call(k) {
            self.note(RepairKind::FunctionCall, start);
            self.i = k + 1;
            self.stack.push(Frame::Call { done: false });
            return true;
        }
        if word.eq_ignore_ascii_case(b"new")
            && k > j
            && s.get(k).is_some_and(|&b| is_ident_start(b))
        {
            let mut e = k;
            while e < s.len() && is_ident(s[e]) {
                e += 1;
            }
            let m = skip_ws_and_comments(s, e);
            if s.get(m) == Some(&b'(') && self.looks_like_call(m) {
                self.note(RepairKind::FunctionCall, start);
                self.i = m + 1;
                self.stack.push(Frame::Call { done: false });
                return true;
            }
        }
        if let Some((text, kind)) = keyword(word) {
            if let Some(kind) = kind {
                self.note(kind, start);
            }
            self.out.extend_from_slice(text);
            self.i = j;
            self.value_done();
            return true;
        }
        if self.unquoted(false) {
            self.value_done();
            return true;
        }
        false
    }

    /// At `(` after a function name: `true` when the argument is one value followed by `)`
    /// (`callback({...})`, `NumberLong("2")`), `false` for text like `foo(1, 2)`.
    fn looks_like_call(&self, paren: usize) -> bool {
        let s = self.s;
        let m = skip_ws_and_comments(s, paren + 1);
        let Some(&c) = s.get(m) else { return true };
        if matches!(c, b'{' | b'[' | b')') || quote_at(s, m).is_some() {
            return true;
        }
        let mut e = m;
        if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.') {
            while e < s.len()
                && (s[e].is_ascii_alphanumeric() || matches!(s[e], b'.' | b'+' | b'-'))
            {
                e += 1;
            }
        } else if is_ident_start(c) {
            while e < s.len() && is_ident(s[e]) {
                e += 1;
            }
            if keyword(&s[m..e]).is_none() {
                return false;
            }
        } else {
            return false;
        }
        let e = skip_ws_and_comments(s, e);
        e >= s.len() || s[e] == b')'
    }

    /// Reads an object key that is not quoted (it ends at a colon too).
    pub(super) fn parse_key(&mut self) -> Result<bool> {
        if self.at_string_start() {
            self.parse_string(true, Place::Key)?;
            self.parse_concat()?;
            return Ok(true);
        }
        if !can_start_unquoted(self.s, self.i) {
            return Ok(false);
        }
        if let Some(q) = self.word_before_key() {
            // `{"a": 1, COMMENT "b": 2}`: a stray word before a quoted key
            self.note(RepairKind::SurroundingText, self.i);
            self.i = q;
            self.parse_string(true, Place::Key)?;
            return Ok(true);
        }
        self.flush_ws();
        Ok(self.unquoted(true))
    }

    /// When the cursor is at a bare word followed by a quoted key and a colon, returns the
    /// offset of that key's quote.
    fn word_before_key(&self) -> Option<usize> {
        let s = self.s;
        let window = &s[self.i..(self.i + LOOKAHEAD).min(s.len())];
        let q = self.i
            + window
                .iter()
                .position(|&b| matches!(b, b'"' | b'\n' | b':' | b','))?;
        if s[q] != b'"' || q == self.i || !is_ws(s[q - 1]) {
            return None;
        }
        let rest = &s[q + 1..(q + 1 + LOOKAHEAD).min(s.len())];
        let end = q + 1 + rest.iter().position(|&b| b == b'"' || b == b'\n')?;
        (s[end] == b'"' && s.get(skip_ascii_ws(s, end + 1)) == Some(&b':')).then_some(q)
    }

    /// Reads an unquoted string up to a delimiter and writes it quoted. `undefined` becomes
    /// `null` in value position.
    fn unquoted(&mut self, key: bool) -> bool {
        let s = self.s;
        let start = self.i;
        let in_paren = matches!(
            self.stack.last(),
            Some(Frame::Paren { .. } | Frame::Call { .. })
        );
        let mut depth = 0usize;
        let mut j = start;
        while let Some(&b) = s.get(j) {
            if b == b'\n' {
                break;
            }
            if depth > 0 {
                if matches!(b, b')' | b']' | b'}') {
                    depth -= 1;
                } else if matches!(b, b'(' | b'[' | b'{') {
                    depth += 1;
                }
                j += 1;
                continue;
            }
            if !key
                && (b == b'('
                    || (matches!(b, b'{' | b'[') && j > start && s[j - 1].is_ascii_alphanumeric()))
            {
                depth += 1;
                j += 1;
                continue;
            }
            let fraction = b == b'/'
                && j > start
                && s[j - 1].is_ascii_digit()
                && s.get(j + 1).is_some_and(u8::is_ascii_digit);
            if (is_unquoted_delimiter(b) && !fraction)
                || quote_at(s, j).is_some()
                || (key && b == b':')
                || (in_paren && b == b')')
            {
                break;
            }
            j += 1;
        }
        if s.get(j) == Some(&b'/') && is_url_start(s, start, j) {
            while j < s.len() && is_url_char(s[j]) {
                j += 1;
            }
        }
        if !key && s.get(j) == Some(&b',') && !self.stack.is_empty() {
            // `ipsum, sic, datum.",`: text missing its start quote runs to its end quote
            // the first `"`, line break, `:` or bracket after the comma
            let stop = self.unquoted_stop.find(s, j, |b| {
                matches!(b, b'"' | b'\n' | b':' | b'{' | b'[' | b'}' | b']')
            });
            if let Some(p) = stop
                && s[p] == b'"'
            {
                let k = skip_ascii_ws(s, p + 1);
                if k >= s.len() || matches!(s[k], b',' | b'}' | b']') {
                    j = p;
                }
            }
        }
        while j > start && is_ws(s[j - 1]) {
            j -= 1;
        }
        if j == start {
            return false;
        }
        let text = &s[start..j];
        if !key && text == b"undefined" {
            self.note(RepairKind::NonJsonLiteral, start);
            self.out.extend_from_slice(b"null");
        } else {
            self.note(
                if key {
                    RepairKind::UnquotedKey
                } else {
                    RepairKind::UnquotedString
                },
                start,
            );
            self.out.push(b'"');
            push_escaped(&mut self.out, text);
            self.out.push(b'"');
        }
        self.i = j;
        if s.get(j) == Some(&b'"') {
            // the end quote of a string that lacked its start quote
            self.i += 1;
        }
        true
    }

    /// Reads a regular expression literal `/.../` as a string.
    fn regex(&mut self) {
        let s = self.s;
        let start = self.i;
        let mut j = start + 1;
        while j < s.len() && !(s[j] == b'/' && s[j - 1] != b'\\') {
            j += 1;
        }
        let end = (j + 1).min(s.len());
        self.note(RepairKind::Regex, start);
        self.out.push(b'"');
        push_escaped(&mut self.out, &s[start..end]);
        self.out.push(b'"');
        self.i = end;
    }
}

/// `true` when an unquoted string may start at `i` (not at a delimiter, quote or space).
fn can_start_unquoted(s: &[u8], i: usize) -> bool {
    match s.get(i) {
        None => false,
        Some(&b) => {
            !(is_delimiter(b) || is_ws(b) || matches!(b, b'\\' | b'=' | b'#' | b'"' | b'\''))
                && quote_at(s, i).is_none()
        }
    }
}

/// `true` when a number ends at `j` (end of input, whitespace or a delimiter, but not a `/`
/// followed by a digit, which makes a fraction like `1/3` that is kept as a string).
#[inline]
fn at_number_end(s: &[u8], j: usize) -> bool {
    match s.get(j) {
        None => true,
        Some(&b) => {
            is_ws(b)
                || (b >= 0x80 && special_ws_len(s, j) > 0)
                || (is_delimiter(b) && !(b == b'/' && s.get(j + 1).is_some_and(u8::is_ascii_digit)))
        }
    }
}

/// Skips whitespace and `//` and `/* */` comments (JSONP like `cb( // note` or
/// `cb /* x */ (`). Each comment is read here at most once more than by the engine's own
/// `skip_ws`, so the work stays linear.
pub(super) fn skip_ws_and_comments(s: &[u8], mut j: usize) -> usize {
    loop {
        j = skip_ascii_ws(s, j);
        if s.get(j) != Some(&b'/') {
            return j;
        }
        match s.get(j + 1) {
            Some(b'/') => {
                j = match s[j..].iter().position(|&c| c == b'\n') {
                    Some(p) => j + p,
                    None => return s.len(),
                }
            }
            Some(b'*') => {
                j = match s[j + 2..].windows(2).position(|w| w == b"*/") {
                    Some(p) => j + 2 + p + 2,
                    None => return s.len(),
                }
            }
            _ => return j,
        }
    }
}

fn skip_ascii_ws(s: &[u8], mut j: usize) -> usize {
    while j < s.len() && is_ws(s[j]) {
        j += 1;
    }
    j
}
