//! A shortcut through the container state machine for the most common tokens: object keys
//! that are plain quoted strings or identifiers directly followed by a colon, and values
//! (or array items) that are plain quoted strings, plain numbers or literal words directly
//! followed by a comma or the closing bracket (`'id': 12, name: "Ada", 'ok': True,`).
//!
//! For such tokens the general path in `mod.rs` makes a fixed series of decisions; this
//! file makes the same ones without going round the state machine for every token, and
//! writes the same output and repairs (a test compares the two). Whenever the text ahead is
//! anything else, it stops in a state the general path continues from: after a key's colon,
//! after a value, or after a comma.

use super::string::Place;
use super::{Engine, Frame, Obj, Seq};
use crate::chars::{QuoteKind, is_ident, is_ident_start, is_ws, push_slice};
use crate::report::RepairKind;

#[cfg(test)]
thread_local! {
    /// Tests turn the shortcut off to compare against the general path.
    pub(super) static ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

impl Engine<'_> {
    /// At the key of the object whose `{` is at output offset `start`: reads members for as
    /// long as they are simple (a member whose key is simple but whose value is not is read
    /// up to its colon). Returns `false`, having changed nothing, when the first key is not.
    pub(super) fn fast_members(&mut self, start: usize) -> bool {
        #[cfg(test)]
        if !ENABLED.with(std::cell::Cell::get) {
            return false;
        }
        let mut any = false;
        loop {
            let Some(key) = self.simple_key() else {
                return any;
            };
            any = true;
            self.write_key(&key);
            let Some(value) = self.simple_value(self.i, self.reread_budget, b'}') else {
                // anything else: the general path reads the value
                self.set_top(Frame::Object(Obj::Value, start));
                self.open_container();
                return true;
            };
            // the spaces after the colon, which `skip_ws` would hold back until the value
            push_slice(&mut self.out, self.s, self.i, value.from);
            self.value_start = self.out.len();
            self.write_value(&value);
            let s = self.s;
            if s.get(self.i) != Some(&b',') {
                self.set_top(Frame::Object(Obj::After, start));
                if s.get(self.i) == Some(&b'}') {
                    // `Obj::After`
                    self.close(b"}", true);
                }
                return true;
            }
            self.out.push(b',');
            self.i += 1;
            self.set_top(Frame::Object(Obj::Key, start));
            // whitespace before the next key, held back as `skip_ws` does; comments and
            // anything unusual are left to the general path
            let from = self.i;
            let mut j = from;
            while j < s.len() && is_ws(s[j]) {
                j += 1;
            }
            push_slice(&mut self.ws, s, from, j);
            self.i = j;
        }
    }

    /// A key at the cursor that the general path would read as one token followed directly
    /// by `:`.
    fn simple_key(&self) -> Option<Token> {
        let s = self.s;
        let i = self.i;
        match *s.get(i)? {
            q @ (b'"' | b'\'') => {
                let kind = if q == b'"' {
                    QuoteKind::Double
                } else {
                    QuoteKind::Single
                };
                if self.reread_budget == 0 {
                    return None;
                }
                let end = self.simple_string_end(i + 1, kind, Place::Key).ok()?;
                (s.get(end + 1) == Some(&b':')).then_some(Token {
                    from: i,
                    to: end + 1,
                    kind: TokenKind::String(kind),
                    colon: end + 1,
                })
            }
            b if is_ident_start(b) => {
                let mut j = i + 1;
                while j < s.len() && is_ident(s[j]) {
                    j += 1;
                }
                (s.get(j) == Some(&b':') && s.get(j + 1) != Some(&b'/')).then_some(Token {
                    from: i,
                    to: j,
                    kind: TokenKind::Ident,
                    colon: j,
                })
            }
            _ => None,
        }
    }

    /// A value at `after_colon` (after plain spaces) that the general path would read as one
    /// token, directly followed by `,` or `closer`. `budget` is the reread budget left.
    fn simple_value(&self, after_colon: usize, budget: usize, closer: u8) -> Option<Token> {
        let s = self.s;
        let mut i = after_colon;
        while s.get(i) == Some(&b' ') {
            i += 1;
        }
        let token = match *s.get(i)? {
            q @ (b'"' | b'\'') => {
                let kind = if q == b'"' {
                    QuoteKind::Double
                } else {
                    QuoteKind::Single
                };
                if budget == 0 {
                    return None;
                }
                let end = self.simple_string_end(i + 1, kind, Place::Other).ok()?;
                Token {
                    from: i,
                    to: end + 1,
                    kind: TokenKind::String(kind),
                    colon: after_colon,
                }
            }
            b'0'..=b'9' => {
                let mut j = i + 1;
                while j < s.len() && s[j].is_ascii_digit() {
                    j += 1;
                }
                if s[i] == b'0' && j > i + 1 {
                    // leading zeros (`Self::plain_number`)
                    return None;
                }
                if s.get(j) == Some(&b'.') {
                    let frac = j + 1;
                    j = frac;
                    while j < s.len() && s[j].is_ascii_digit() {
                        j += 1;
                    }
                    if j == frac {
                        return None;
                    }
                }
                Token {
                    from: i,
                    to: j,
                    kind: TokenKind::Number,
                    colon: after_colon,
                }
            }
            b if is_ident_start(b) => {
                let mut j = i + 1;
                while j < s.len() && is_ident(s[j]) {
                    j += 1;
                }
                let (text, repair) = super::scalar::keyword(&s[i..j])?;
                Token {
                    from: i,
                    to: j,
                    kind: TokenKind::Word(text, repair),
                    colon: after_colon,
                }
            }
            _ => return None,
        };
        s.get(token.to)
            .is_some_and(|&b| b == b',' || b == closer)
            .then_some(token)
    }

    /// Writes a key found by [`Self::simple_key`] and its colon as the general path would
    /// (`step_object`, `Obj::Key` and `Obj::Colon`), and moves the cursor after the colon.
    fn write_key(&mut self, key: &Token) {
        let s = self.s;
        self.key_mark = self.out.len();
        if self.out.last() == Some(&b',') {
            self.key_mark -= 1;
        }
        self.flush_ws();
        let key_at = self.out.len();
        match key.kind {
            TokenKind::String(kind) => {
                self.key_unquoted = false;
                if kind != QuoteKind::Double {
                    self.note(RepairKind::Quotes, key.from);
                }
                self.reread_budget = self.reread_budget.saturating_sub(key.to - key.from);
                // the key and its colon are written as they are
                push_slice(&mut self.out, s, key.from, key.colon + 1);
                if kind != QuoteKind::Double {
                    self.requote(key_at, key.to - key.from);
                }
            }
            _ => {
                self.key_unquoted = true;
                self.note(RepairKind::UnquotedKey, key.from);
                self.out.push(b'"');
                push_slice(&mut self.out, s, key.from, key.to);
                self.out.extend_from_slice(b"\":");
            }
        }
        self.i = key.colon + 1;
    }

    /// Writes a value found by [`Self::simple_value`] and moves the cursor after it.
    fn write_value(&mut self, value: &Token) {
        let s = self.s;
        let at = self.out.len();
        match value.kind {
            TokenKind::String(kind) => {
                // `string.rs`, fast path of `string_pass`
                if kind != QuoteKind::Double {
                    self.note(RepairKind::Quotes, value.from);
                }
                push_slice(&mut self.out, s, value.from, value.to);
                if kind != QuoteKind::Double {
                    self.requote(at, value.to - value.from);
                }
                self.reread_budget = self.reread_budget.saturating_sub(value.to - value.from);
            }
            TokenKind::Number => push_slice(&mut self.out, s, value.from, value.to),
            TokenKind::Word(text, repair) => {
                if let Some(kind) = repair {
                    self.note(kind, value.from);
                }
                self.out.extend_from_slice(text);
            }
            TokenKind::Ident => {}
        }
        self.i = value.to;
    }

    /// At a value after plain spaces: when it is an object or an array, opens it as
    /// `begin_value` does (the spaces written first).
    fn open_container(&mut self) {
        let s = self.s;
        let mut v = self.i;
        while s.get(v) == Some(&b' ') {
            v += 1;
        }
        let frame = match s.get(v) {
            Some(b'{') => Frame::Object(Obj::Open, 0),
            Some(b'[') => Frame::Array {
                seq: Seq::Open,
                last_item: 0,
            },
            _ => return,
        };
        self.flush_ws();
        push_slice(&mut self.out, s, self.i, v);
        let at = self.out.len();
        self.value_start = at;
        self.out.push(s[v]);
        self.i = v + 1;
        self.stack.push(match frame {
            Frame::Object(st, _) => Frame::Object(st, at),
            other => other,
        });
    }

    /// Makes the quotes of the `len`-byte string written at output offset `at` double
    /// quotes (its text holds no quote of either kind).
    fn requote(&mut self, at: usize, len: usize) {
        for k in [at, at + len - 1] {
            if let Some(b) = self.out.get_mut(k) {
                *b = b'"';
            }
        }
    }

    /// At an item of the innermost array: reads items for as long as they are simple (as
    /// for values in [`Self::fast_members`]). Returns `false`, having changed nothing, when
    /// the first one is not.
    pub(super) fn fast_items(&mut self) -> bool {
        #[cfg(test)]
        if !ENABLED.with(std::cell::Cell::get) {
            return false;
        }
        let mut any = false;
        loop {
            let value = self.simple_value(self.i, self.reread_budget, b']');
            // (spaces before the item belong to `skip_ws`)
            let Some(value) = value.filter(|v| v.from == self.i) else {
                if matches!(self.s.get(self.i), Some(b'{' | b'[')) {
                    self.open_container();
                    return true;
                }
                return any;
            };
            any = true;
            self.flush_ws();
            let last_item = self.out.len();
            self.value_start = last_item;
            self.write_value(&value);
            let s = self.s;
            if s.get(self.i) != Some(&b',') {
                self.set_top(Frame::Array {
                    seq: Seq::After,
                    last_item,
                });
                if s.get(self.i) == Some(&b']') {
                    // `Seq::After`
                    self.close(b"]", true);
                }
                return true;
            }
            self.out.push(b',');
            self.i += 1;
            self.set_top(Frame::Array {
                seq: Seq::Item,
                last_item,
            });
            let from = self.i;
            let mut j = from;
            while j < s.len() && is_ws(s[j]) {
                j += 1;
            }
            push_slice(&mut self.ws, s, from, j);
            self.i = j;
        }
    }
}

/// One token of a simple member: `s[from..to]`.
struct Token {
    from: usize,
    to: usize,
    kind: TokenKind,
    /// For a key, the offset of the colon after it; for a value, the offset after it.
    colon: usize,
}

#[derive(Clone, Copy)]
enum TokenKind {
    String(QuoteKind),
    Ident,
    Number,
    /// A literal word: its JSON text and the repair it needs.
    Word(&'static [u8], Option<RepairKind>),
}

#[cfg(test)]
mod tests {
    use super::ENABLED;
    use crate::engine::repair;

    const KEYS: [&str; 12] = [
        "'a'", "\"b\"", "c", "_d", "$e", "'x y'", "\"(p\"", "'it\\'s'", "new", "'k,'", "f1", "'",
    ];
    const COLONS: [&str; 5] = [":", ": ", ":  ", " :", ":\n"];
    const VALUES: [&str; 26] = [
        "'v'",
        "\"w\"",
        "1",
        "0",
        "007",
        "1.5",
        "2.",
        "True",
        "None",
        "null",
        "false",
        "new",
        "'a, b'",
        "\"x, more words\"",
        "undefined",
        "-1",
        "[1, 'a', True]",
        "{}",
        "'q\"'",
        "NaN",
        "call(1)",
        "'",
        "\"\"",
        "12e3",
        "'{\"k\": 1}'",
        "words here",
    ];
    const AFTER: [&str; 10] = [
        ",", ", ", ",\n  ", "", " ,", ",// c\n", " + 'x',", ",,", "\n", "}",
    ];

    /// Inputs made of simple and not-so-simple members and items, cut off at any place.
    fn inputs() -> Vec<String> {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        let mut all = Vec::new();
        for _ in 0..3000 {
            let mut s = String::from(["{", "{ ", "[{", "{'r': {", "[", "{'l': ["][next(6)]);
            let array = s.ends_with('[');
            for _ in 0..1 + next(6) {
                if !array || next(3) == 0 {
                    s.push_str(KEYS[next(KEYS.len())]);
                    s.push_str(COLONS[next(COLONS.len())]);
                }
                s.push_str(VALUES[next(VALUES.len())]);
                s.push_str(AFTER[next(AFTER.len())]);
            }
            s.push_str(["}", "]", "}]", "", "}}", "]}"][next(6)]);
            let cut = next(s.len() + 1);
            if next(2) == 0 && s.is_char_boundary(cut) {
                s.truncate(cut);
            }
            all.push(s);
        }
        all
    }

    /// The shortcut writes exactly what the general path writes, with the same repairs.
    #[test]
    fn shortcut_changes_nothing() {
        let mut compared = 0;
        for input in inputs() {
            if input.trim().is_empty() {
                continue;
            }
            let fast = repair(&input, true, 0);
            ENABLED.with(|e| e.set(false));
            let general = repair(&input, true, 0);
            ENABLED.with(|e| e.set(true));
            match (fast, general) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.0, b.0, "output differs for {input:?}");
                    assert_eq!(a.1, b.1, "repairs differ for {input:?}");
                    compared += 1;
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{input:?}"),
                (a, b) => panic!("{input:?}: {a:?} vs {b:?}"),
            }
        }
        assert!(compared > 2000, "{compared}");
    }
}
