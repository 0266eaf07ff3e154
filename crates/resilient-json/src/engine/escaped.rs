//! Escaped JSON without outer quotes (`{\"a\": 1}`, as logs and language models print a
//! JSON string's content): one level of escapes is removed and the result is repaired. Text
//! escaped several times (`{\\\"a\\\": 1}`) loses one level per pass, up to [`MAX_LEVELS`].
//!
//! The input qualifies only when it is unambiguous: the first `{` or `[` is followed (after
//! blanks, escaped line breaks and more opening brackets) by an escaped quote, and every `"`
//! of the input is escaped (an odd number of backslashes before it). JSON that mixes escaped
//! and bare quotes is left to the engine's string rules.
//!
//! Each pass reads the text once and writes a shorter copy, so the work is linear. Repair
//! positions found in the unescaped text are mapped back to the input through the offsets
//! recorded while unescaping (only when a report is asked for).

/// The most escape levels removed; a level needs twice the backslashes of the one before,
/// so deeper text is rare and is left as it is.
pub(super) const MAX_LEVELS: usize = 4;

/// Text with one level of escapes removed.
pub(super) struct Unescaped {
    pub(super) text: String,
    /// With a report: for every escape sequence, the offset in `text` right after what it
    /// became and the number of bytes removed up to there (both growing).
    pub(super) shifts: Vec<(usize, usize)>,
}

impl Unescaped {
    /// Maps an offset in the unescaped text to the offset in the text it came from.
    pub(super) fn source_offset(&self, p: usize) -> usize {
        let k = self.shifts.partition_point(|&(at, _)| at <= p);
        p + k.checked_sub(1).map_or(0, |k| self.shifts[k].1)
    }
}

/// Offset of the first escaped quote when `s` is escaped JSON as described in the module
/// documentation.
pub(super) fn escaped_json_start(s: &[u8]) -> Option<usize> {
    let open = s.iter().position(|&b| b == b'{' || b == b'[')?;
    let mut j = open + 1;
    // blanks, escaped blanks (`\n`, or `\\n` escaped twice) and further opening brackets
    loop {
        match s.get(j) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'[') => j += 1,
            Some(b'\\') => {
                let mut k = j;
                while s.get(k) == Some(&b'\\') {
                    k += 1;
                }
                if !matches!(s.get(k), Some(b'n' | b'r' | b't')) {
                    break;
                }
                j = k + 1;
            }
            _ => break,
        }
    }
    let first = j;
    while s.get(j) == Some(&b'\\') {
        j += 1;
    }
    if j == first || s.get(j) != Some(&b'"') {
        return None;
    }
    all_quotes_escaped(s).then_some(first)
}

/// `true` when every `"` in `s` follows an odd number of backslashes.
fn all_quotes_escaped(s: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for &b in s {
        if b == b'"' && backslashes.is_multiple_of(2) {
            return false;
        }
        if b == b'\\' {
            backslashes += 1;
        } else {
            backslashes = 0;
        }
    }
    true
}

/// Removes one level of escapes: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` and `\u`
/// escapes of characters (surrogate pairs included) become what they stand for; any other
/// backslash, a lone surrogate escape among them, is kept as written.
pub(super) fn unescape(s: &str, record: bool) -> Unescaped {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut shifts = Vec::new();
    let mut removed = 0usize;
    let mut i = 0;
    while i < b.len() {
        let Some(p) = b[i..].iter().position(|&c| c == b'\\') else {
            out.push_str(&s[i..]);
            break;
        };
        out.push_str(&s[i..i + p]);
        i += p;
        let (c, len) = match b.get(i + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => unicode_escape(b, i).unwrap_or(('\\', 1)),
            _ => ('\\', 1),
        };
        out.push(c);
        i += len;
        if len > c.len_utf8() {
            removed += len - c.len_utf8();
            if record {
                shifts.push((out.len(), removed));
            }
        }
    }
    // the engine's buffers come next: give back what the escapes saved
    out.shrink_to_fit();
    Unescaped { text: out, shifts }
}

/// The character of the `\u` escape (or surrogate pair) at `i`, and its length in bytes.
fn unicode_escape(b: &[u8], i: usize) -> Option<(char, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let h = b.get(at..at + 4)?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let v = hex(i + 2)?;
    if (0xD800..0xDC00).contains(&v) {
        if b.get(i + 6..i + 8) != Some(b"\\u") {
            return None;
        }
        let low = hex(i + 8).filter(|l| (0xDC00..0xE000).contains(l))?;
        let c = char::from_u32(0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00))?;
        return Some((c, 12));
    }
    Some((char::from_u32(v)?, 6))
}

#[cfg(test)]
mod tests {
    use super::{escaped_json_start, unescape};

    #[test]
    fn detection() {
        assert_eq!(escaped_json_start(br#"{\"a\": 1}"#), Some(1));
        assert_eq!(escaped_json_start(br#"[{\"a\": 1}]"#), Some(2));
        assert_eq!(escaped_json_start(br#"{\n  \"a\": 1\n}"#), Some(5));
        assert_eq!(escaped_json_start(br#"{\\\"a\\\": 1}"#), Some(1));
        assert_eq!(escaped_json_start(br#"{\\n\\\"a\\\": 1}"#), Some(4));
        assert_eq!(escaped_json_start(br#"x: {\"a\": 1}"#), Some(4));
        // a bare quote anywhere, or no escaped quote after the bracket
        assert_eq!(escaped_json_start(br#"{\"a\": "b"}"#), None);
        assert_eq!(escaped_json_start(br#"{"a": "\"b\""}"#), None);
        assert_eq!(escaped_json_start(br#"\"a\""#), None);
        assert_eq!(escaped_json_start(br#"{a: 1}"#), None);
        assert_eq!(escaped_json_start(br#"{\\"a\\": 1}"#), None);
    }

    #[test]
    fn one_level_is_removed() {
        let u = unescape(
            r#"{\"a\": \"x \\\"y\\\"\", \"é\": \"\u00e9\ud83d\ude00\ud800\"}"#,
            true,
        );
        assert_eq!(u.text, r#"{"a": "x \"y\"", "é": "é😀\ud800"}"#);
        // `"a"` starts at 1 in both; the `x` of the value is at 7 unescaped, 10 escaped
        assert_eq!(u.source_offset(1), 1);
        assert_eq!(u.source_offset(7), 10);
        assert_eq!(unescape(r"a\qb\", false).text, r"a\qb\");
    }
}
