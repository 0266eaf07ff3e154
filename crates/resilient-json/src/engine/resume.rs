//! Starting the engine after a long valid prefix: when strict validation of the input
//! failed far from its start (most often a truncated response), the text before that point
//! is copied as it is, and the engine starts where that copy ends, in the state it would
//! have reached by reading the copy itself.
//!
//! The engine's decisions look ahead, a bounded distance (`string::LOOKAHEAD`), so text
//! close to the point where validation failed may be read differently from how a strict
//! parser reads it (a string whose end quote is followed by prose, say). The copy therefore
//! stops [`MARGIN`] bytes before that point, at the last bracket, comma or colon, and inputs
//! that fail validation within `MARGIN` bytes of their start are read by the engine alone.

use super::{Engine, Frame, Obj, Seq};

/// How far before the end of the valid prefix the copy stops.
const MARGIN: usize = 4 * super::string::LOOKAHEAD;

/// Structural bytes: brackets, `,`, `:` and `"`.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b"{}[],:\"";
    let mut k = 0;
    while k < bytes.len() {
        t[bytes[k] as usize] = true;
        k += 1;
    }
    t
};

impl Engine<'_> {
    /// Given that `self.s[..valid]` is a prefix of strict JSON, copies most of it to the
    /// output and sets up the stack as reading it would have. Returns the output offset of
    /// the root value, or `None` (with nothing changed) when there is no such prefix to
    /// copy: a short one, a root value that is not a container, or one complete before it.
    pub(super) fn resume(&mut self, valid: usize) -> Option<usize> {
        let s = self.s;
        let limit = valid.checked_sub(MARGIN)?.min(s.len());
        let root = s.iter().position(|&b| !crate::chars::is_ws(b))?;
        if !matches!(s.get(root), Some(b'{' | b'[')) || root >= limit {
            return None;
        }
        // the output offset after the last structural byte read so far
        let mut resume_at = 0;
        let mut i = root;
        while i < limit {
            let b = s[i];
            if !STRUCTURAL[usize::from(b)] {
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    // a valid string: skip to its end quote (escapes are two bytes or more,
                    // the rest of a `\u` escape being ordinary bytes)
                    i += 1;
                    while i < limit && s[i] != b'"' {
                        i += if s[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                    continue;
                }
                b'{' => self.stack.push(Frame::Object(Obj::Open, i)),
                b'[' => self.stack.push(Frame::Array {
                    seq: Seq::Open,
                    last_item: 0,
                }),
                b']' | b'}' => {
                    self.stack.pop();
                    match self.stack.last_mut() {
                        // the root value is complete: the engine decides what follows
                        None => return None,
                        Some(Frame::Array { seq, last_item }) => {
                            *seq = Seq::After;
                            *last_item = usize::MAX;
                        }
                        Some(Frame::Object(st, _)) => *st = Obj::After,
                        // strict JSON holds neither calls nor tuples
                        Some(_) => return self.abandon_resume(),
                    }
                }
                b',' => match self.stack.last_mut() {
                    Some(Frame::Array { seq, .. }) => *seq = Seq::Item,
                    Some(Frame::Object(st, _)) => *st = Obj::Key,
                    _ => return self.abandon_resume(),
                },
                _ => match self.stack.last_mut() {
                    Some(Frame::Object(st, _)) => *st = Obj::Value,
                    _ => return self.abandon_resume(),
                },
            }
            i += 1;
            resume_at = i;
        }
        if resume_at == 0 {
            return self.abandon_resume();
        }
        self.out.extend_from_slice(&s[..resume_at]);
        self.i = resume_at;
        Some(root)
    }

    /// Empties the stack after a resume that found nothing to copy.
    fn abandon_resume(&mut self) -> Option<usize> {
        while !self.stack.is_empty() {
            self.stack.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::MARGIN;
    use crate::engine::repair;
    use crate::validate::{Validity, classify_prefix};

    const TEXTS: [&str; 7] = [
        "plain",
        "with \"quotes\"",
        "a [bracket",
        "x}, {\"k\": 1",
        "café ✓",
        "back\\slash",
        "tab\there",
    ];

    /// Strict JSON of about `size` bytes with nesting, escapes, brackets and quotes inside
    /// strings, and non-ASCII text; deterministic (a fixed linear congruential sequence).
    fn sample(size: usize, pretty: bool) -> String {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let mut items = Vec::new();
        let mut len = 0;
        while len < size {
            let text = TEXTS[next(TEXTS.len() as u64) as usize];
            let v = serde_json::json!({
                "id": next(1000),
                "text": text,
                "list": [next(10), -1.5e3, true, null, {"deep": [[], {}, [{"a": "]"}]]}],
                "empty": "",
            });
            len += v.to_string().len();
            items.push(v);
        }
        let root = serde_json::json!({ "items": items, "tail": [1, 2, 3] });
        if pretty {
            serde_json::to_string_pretty(&root).unwrap()
        } else {
            root.to_string()
        }
    }

    /// Starting after the valid prefix gives exactly what reading the whole input gives,
    /// with the same repairs, for inputs cut off or broken at many places.
    #[test]
    fn resuming_changes_nothing() {
        let mut checked = 0;
        for pretty in [false, true] {
            let text = sample(6 * MARGIN, pretty);
            for cut in (MARGIN..text.len()).step_by(97) {
                if !text.is_char_boundary(cut) {
                    continue;
                }
                let prefix = &text[..cut];
                for tail in [
                    "",
                    ", 'x': True,",
                    "]]}",
                    " // note\n",
                    "\"unterminated, text",
                ] {
                    let input = format!("{prefix}{tail}");
                    let (Validity::Invalid, valid) = classify_prefix(input.as_bytes()) else {
                        continue;
                    };
                    let whole = repair(&input, true, 0);
                    let resumed = repair(&input, true, valid);
                    match (whole, resumed) {
                        (Ok(a), Ok(b)) => {
                            assert_eq!(a.0, b.0, "output differs for {input:?}");
                            assert_eq!(a.1, b.1, "repairs differ for {input:?}");
                        }
                        (Err(a), Err(b)) => assert_eq!(a, b),
                        (a, b) => panic!("{input:?}: {a:?} vs {b:?}"),
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
