//! Byte and character classes used by the repair engine.

/// Class bit: `"`, `\\` and control characters, special inside every string.
pub(crate) const STR: u8 = 1;
/// Class bit: `'`, `` ` `` and the first bytes of curly quotes and `´`, special inside strings
/// that were not opened with `"`.
pub(crate) const QUOTE_LIKE: u8 = 2;
/// Class bit: characters that end an unquoted string (see [`is_unquoted_delimiter`]).
pub(crate) const DELIM: u8 = 4;
/// Class bit: brackets and parentheses.
pub(crate) const BRACKET: u8 = 8;
/// Class bit: `:`.
pub(crate) const COLON: u8 = 16;

/// Class bit: bytes that may start whitespace or a comment (`\t\n\r /#` and non-ASCII).
pub(crate) const WS_START: u8 = 32;

/// Class bits of every byte, so that hot loops test one table entry per byte.
pub(crate) static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = STR;
        i += 1;
    }
    t[b'"' as usize] = STR;
    t[b'\\' as usize] = STR;
    t[b'\'' as usize] = QUOTE_LIKE;
    t[b'`' as usize] = QUOTE_LIKE;
    t[0xC2] = QUOTE_LIKE;
    t[0xE2] = QUOTE_LIKE;
    let delims = b",[]/{}\n+";
    let mut k = 0;
    while k < delims.len() {
        t[delims[k] as usize] |= DELIM;
        k += 1;
    }
    let brackets = b"()[]{}";
    let mut k = 0;
    while k < brackets.len() {
        t[brackets[k] as usize] |= BRACKET;
        k += 1;
    }
    t[b':' as usize] |= COLON;
    let starts = b" \t\n\r/#";
    let mut k = 0;
    while k < starts.len() {
        t[starts[k] as usize] |= WS_START;
        k += 1;
    }
    let mut k = 0x80;
    while k < 0x100 {
        t[k] |= WS_START;
        k += 1;
    }
    t
};

/// ASCII whitespace allowed by JSON.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Length in bytes of a non-standard whitespace character (no-break space, em space, zero width
/// space, byte order mark, ...) starting at `i`, or 0.
pub(crate) fn special_ws_len(s: &[u8], i: usize) -> usize {
    match (s.get(i), s.get(i + 1), s.get(i + 2)) {
        (Some(0xC2), Some(0xA0), _) => 2,
        (Some(0xE1), Some(0xA0), Some(0x8E)) => 3,
        (Some(0xE2), Some(0x80), Some(c)) if (0x80..=0x8B).contains(c) || *c == 0xAF => 3,
        (Some(0xE2), Some(0x81), Some(0x9F)) => 3,
        (Some(0xE3), Some(0x80), Some(0x80)) => 3,
        (Some(0xEF), Some(0xBB), Some(0xBF)) => 3,
        _ => 0,
    }
}

/// Which quote opened a string; decides which characters may close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuoteKind {
    /// `"`: only `"` closes.
    Double,
    /// `'`: only `'` closes.
    Single,
    /// `“` or `”`: any double-quote-like character closes.
    DoubleLike,
    /// `‘`, `’`, `` ` `` or `´`: any single-quote-like character closes.
    SingleLike,
}

/// The quote character starting at `i` and its length in bytes.
#[inline]
pub(crate) fn quote_at(s: &[u8], i: usize) -> Option<(QuoteKind, usize)> {
    match s.get(i)? {
        b'"' => Some((QuoteKind::Double, 1)),
        b'\'' => Some((QuoteKind::Single, 1)),
        b'`' => Some((QuoteKind::SingleLike, 1)),
        0xC2 if s.get(i + 1) == Some(&0xB4) => Some((QuoteKind::SingleLike, 2)),
        0xE2 if s.get(i + 1) == Some(&0x80) => match s.get(i + 2)? {
            0x98 | 0x99 => Some((QuoteKind::SingleLike, 3)),
            0x9C | 0x9D => Some((QuoteKind::DoubleLike, 3)),
            _ => None,
        },
        _ => None,
    }
}

/// Length of the quote at `i` if it closes a string opened by `open`, or 0.
#[inline]
pub(crate) fn closing_quote_len(s: &[u8], i: usize, open: QuoteKind) -> usize {
    if open == QuoteKind::Double {
        return usize::from(s.get(i) == Some(&b'"'));
    }
    match (open, quote_at(s, i)) {
        (QuoteKind::Double, Some((QuoteKind::Double, n))) => n,
        (QuoteKind::Single, _) if s.get(i) == Some(&b'\'') => 1,
        (QuoteKind::DoubleLike, Some((QuoteKind::Double | QuoteKind::DoubleLike, n))) => n,
        (QuoteKind::SingleLike, Some((QuoteKind::Single | QuoteKind::SingleLike, n))) => n,
        _ => 0,
    }
}

/// Characters that end a value: `,:[]/{}()` newline, `+` and `;`.
pub(crate) fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b',' | b':' | b'[' | b']' | b'/' | b'{' | b'}' | b'(' | b')' | b'\n' | b'+' | b';'
    )
}

/// Characters that end an unquoted string (a colon does not: `She said: no` is one string).
pub(crate) fn is_unquoted_delimiter(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'/' | b'{' | b'}' | b'\n' | b'+')
}

/// First character of an identifier (function name, unquoted word).
pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

/// Following characters of an identifier.
pub(crate) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Characters allowed in a URL (used to keep `https://` from being read as a comment).
pub(crate) fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#@!$&'()*+;=%".contains(&b)
}

/// `true` when `s[start..end]` followed by `//` is a URL scheme like `https://`.
pub(crate) fn is_url_start(s: &[u8], start: usize, end: usize) -> bool {
    const SCHEMES: [&[u8]; 7] = [
        b"http", b"https", b"ftp", b"mailto", b"file", b"data", b"irc",
    ];
    end > start
        && s.get(end.wrapping_sub(1)) == Some(&b':')
        && s.get(end) == Some(&b'/')
        && s.get(end + 1) == Some(&b'/')
        && SCHEMES.iter().any(|sch| &s[start..end - 1] == *sch)
}

/// Appends `s[from..to]` to `out`. Short pieces (most tokens) are copied as one fixed-size
/// block, which compiles to a couple of moves instead of a call to `memcpy`; the bytes
/// beyond `to` are cut off again at once.
#[inline(always)]
pub(crate) fn push_slice(out: &mut Vec<u8>, s: &[u8], from: usize, to: usize) {
    const BLOCK: usize = 32;
    let n = to.saturating_sub(from);
    match s.get(from..).and_then(<[u8]>::first_chunk::<BLOCK>) {
        Some(block) if n <= BLOCK => {
            let len = out.len();
            out.extend_from_slice(block);
            out.truncate(len + n);
        }
        _ => out.extend_from_slice(s.get(from..to).unwrap_or_default()),
    }
}

/// Writes `c` (a control character) as a JSON escape.
pub(crate) fn push_control_escape(out: &mut Vec<u8>, c: u8) {
    match c {
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        }
    }
}

/// Writes `raw` as the content of a JSON string (quotes not included).
pub(crate) fn push_escaped(out: &mut Vec<u8>, raw: &[u8]) {
    let clean = raw.iter().position(|&b| CLASS[usize::from(b)] & STR != 0);
    let (plain, rest) = raw.split_at(clean.unwrap_or(raw.len()));
    out.extend_from_slice(plain);
    for &b in rest {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1F => push_control_escape(out, b),
            _ => out.push(b),
        }
    }
}

/// Length in bytes of the UTF-8 character whose first byte is `b`.
pub(crate) fn utf8_len(b: u8) -> usize {
    match b {
        0..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}
