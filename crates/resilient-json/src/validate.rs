//! A strict, iterative JSON validator (no recursion, so any nesting depth is fine).
//!
//! It accepts exactly RFC 8259 JSON with one restriction shared with `serde_json`: `\u` escapes
//! must not leave a surrogate unpaired.

use crate::chars::{CLASS, STR, is_ws};

/// `true` when `s` is one strict JSON value surrounded by optional whitespace.
pub(crate) fn is_valid(s: &[u8]) -> bool {
    let mut v = Validator {
        s,
        i: 0,
        allow_controls: false,
        control: false,
    };
    v.run().is_some()
}

/// What [`classify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validity {
    /// Strict JSON.
    Valid,
    /// Strict JSON but for raw (unescaped) control characters inside strings: every
    /// unescaped `"` in it is a string delimiter.
    RawControls,
    /// Anything else.
    Invalid,
}

/// Validates `s`. Only an input that fails at a raw control character inside a string is
/// validated a second time (allowing them), so other inputs cost one pass as before.
pub(crate) fn classify(s: &[u8]) -> Validity {
    classify_prefix(s).0
}

/// [`classify`], and for input that is not strict JSON the offset where strict validation
/// stopped: every byte before it (but the last few, which may begin a token that turned out
/// wrong) is a prefix of some strict JSON text.
pub(crate) fn classify_prefix(s: &[u8]) -> (Validity, usize) {
    let mut v = Validator {
        s,
        i: 0,
        allow_controls: false,
        control: false,
    };
    if v.run().is_some() {
        return (Validity::Valid, s.len());
    }
    let stopped = v.i;
    if !v.control {
        return (Validity::Invalid, stopped);
    }
    let mut v = Validator {
        s,
        i: 0,
        allow_controls: true,
        control: false,
    };
    if v.run().is_some() {
        (Validity::RawControls, stopped)
    } else {
        (Validity::Invalid, stopped)
    }
}

struct Validator<'a> {
    s: &'a [u8],
    i: usize,
    /// Accept raw control characters inside strings.
    allow_controls: bool,
    /// A raw control character was met inside a string.
    control: bool,
}

impl Validator<'_> {
    #[inline(always)]
    fn ws(&mut self) {
        let s = self.s;
        let mut i = self.i;
        while i < s.len() && is_ws(s[i]) {
            i += 1;
        }
        self.i = i;
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    fn run(&mut self) -> Option<()> {
        let mut stack = BitStack::default();
        self.ws();
        'value: loop {
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}').is_none() {
                        stack.push(true);
                        self.member_key()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']').is_none() {
                        stack.push(false);
                        continue 'value;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // after a value: close containers or move to the next member
            loop {
                self.ws();
                match stack.last() {
                    None => return (self.i == self.s.len()).then_some(()),
                    Some(object) => {
                        let close = if object { b'}' } else { b']' };
                        match self.peek()? {
                            b',' => {
                                self.i += 1;
                                self.ws();
                                if object {
                                    self.member_key()?;
                                }
                                continue 'value;
                            }
                            c if c == close => {
                                self.i += 1;
                                stack.pop();
                            }
                            _ => return None,
                        }
                    }
                }
            }
        }
    }

    fn member_key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u16> {
        let h = self.s.get(self.i..self.i + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        let v = u16::from_str_radix(h, 16).ok()?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<()> {
        self.i += 1; // opening quote
        loop {
            let s = self.s;
            let mut i = self.i;
            while i < s.len() && CLASS[usize::from(s[i])] & STR == 0 {
                i += 1;
            }
            self.i = i;
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return Some(()),
                b'\\' => match self.peek()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                    b'u' => {
                        self.i += 1;
                        let v = self.hex4()?;
                        if (0xD800..0xDC00).contains(&v) {
                            self.eat(b'\\')?;
                            self.eat(b'u')?;
                            let low = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return None;
                            }
                        } else if (0xDC00..0xE000).contains(&v) {
                            return None;
                        }
                    }
                    _ => return None,
                },
                0..=0x1F => {
                    self.control = true;
                    if !self.allow_controls {
                        return None;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Validity, classify, is_valid};

    #[test]
    fn accepts_and_rejects() {
        for ok in [
            "{}",
            " [ ] ",
            "0",
            "-0.5e+3",
            "\"a\\u00e9\\ud83d\\ude00\"",
            "[1,[2,{\"a\":null}]]",
            "{\"a\":{\"b\":[true,false]}}",
        ] {
            assert!(is_valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "{\"a\"}",
            "{a:1}",
            "[1 2]",
            "\"\t\"",
            "tru",
            "1 2",
            "{\"a\":1,}",
            "-",
            "\"\\x\"",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn raw_control_characters_in_strings_are_told_apart() {
        assert_eq!(classify(b"{\"a\n\": \"b\tc\"}"), Validity::RawControls);
        assert_eq!(classify(b"[\"\x01\", 1]"), Validity::RawControls);
        assert_eq!(classify(b"[\"a\n\", 1,]"), Validity::Invalid);
        assert_eq!(classify(b"[\"a\", \n 1]"), Validity::Valid);
        assert_eq!(classify(b"[\"a\", \x01]"), Validity::Invalid);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        assert!(is_valid(deep.as_bytes()));
    }
}

/// The open containers, one bit each (`true` for an object), so that validating deeply
/// nested JSON costs an eighth of a byte per level.
#[derive(Default)]
struct BitStack {
    bits: Vec<u8>,
    len: usize,
}

impl BitStack {
    fn push(&mut self, object: bool) {
        if self.len.is_multiple_of(8) {
            self.bits.push(0);
        }
        if object {
            self.bits[self.len / 8] |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    fn last(&self) -> Option<bool> {
        let k = self.len.checked_sub(1)?;
        Some(self.bits[k / 8] & (1 << (k % 8)) != 0)
    }

    fn pop(&mut self) {
        if let Some(k) = self.len.checked_sub(1) {
            self.bits[k / 8] &= !(1 << (k % 8));
            if k % 8 == 0 {
                self.bits.pop();
            }
            self.len = k;
        }
    }
}
