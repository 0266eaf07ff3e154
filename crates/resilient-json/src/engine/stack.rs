//! The stack of open containers, packed so that deep nesting stays cheap: the innermost
//! container is held unpacked, every enclosing one costs two bits for its kind, and those
//! that must remember an output offset (objects and tuples) add a variable-length delta to
//! the offset below them, usually one byte.
//!
//! An enclosing container's state need not be stored: it is always waiting for the value
//! that the inner container is, and [`Engine::value_done`](super::Engine) sets its state as
//! soon as that value is complete. So [`Stack::pop`] gives back the enclosing container in
//! a placeholder state that its caller overwrites at once.

use super::{Frame, Obj, Seq};

/// Kinds of enclosing containers, two bits each.
const ARRAY: u8 = 0;
const OBJECT: u8 = 1;
const CALL: u8 = 2;
const PAREN: u8 = 3;

#[derive(Default)]
pub(super) struct Stack {
    /// The innermost open container.
    top: Option<Frame>,
    /// Kinds of the enclosing containers, four to a byte, innermost last.
    kinds: Vec<u8>,
    /// Number of enclosing containers (the top is not counted).
    below: usize,
    /// Offsets of enclosing objects and tuples, as deltas from the entry below them.
    offsets: Vec<u8>,
    /// The offset stored by the innermost entry of `offsets` (0 when there is none).
    last_offset: usize,
}

impl Stack {
    /// Number of open containers.
    pub(super) fn len(&self) -> usize {
        self.below + usize::from(self.top.is_some())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.top.is_none()
    }

    pub(super) fn last(&self) -> Option<&Frame> {
        self.top.as_ref()
    }

    pub(super) fn last_mut(&mut self) -> Option<&mut Frame> {
        self.top.as_mut()
    }

    /// `true` when the container enclosing the innermost one is an object.
    pub(super) fn parent_is_object(&self) -> bool {
        self.below > 0 && self.kind(self.below - 1) == OBJECT
    }

    fn kind(&self, k: usize) -> u8 {
        (self.kinds[k / 4] >> ((k % 4) * 2)) & 3
    }

    pub(super) fn push(&mut self, f: Frame) {
        if let Some(old) = self.top.replace(f) {
            let kind = match old {
                Frame::Array { .. } => ARRAY,
                Frame::Object(_, start) => {
                    self.push_offset(start, false);
                    OBJECT
                }
                Frame::Call { .. } => CALL,
                Frame::Paren {
                    out_start, comma, ..
                } => {
                    self.push_offset(out_start, comma);
                    PAREN
                }
            };
            let k = self.below;
            if k.is_multiple_of(4) {
                self.kinds.push(0);
            }
            self.kinds[k / 4] |= kind << ((k % 4) * 2);
            self.below += 1;
        }
    }

    /// Removes the innermost container; the enclosing one (if any) becomes the innermost,
    /// in a placeholder state that the caller must overwrite (see the module comment).
    pub(super) fn pop(&mut self) {
        if self.below == 0 {
            self.top = None;
            return;
        }
        self.below -= 1;
        let k = self.below;
        let kind = self.kind(k);
        if k.is_multiple_of(4) {
            self.kinds.pop();
        } else {
            self.kinds[k / 4] &= !(3 << ((k % 4) * 2));
        }
        self.top = Some(match kind {
            ARRAY => Frame::Array {
                seq: Seq::Item,
                last_item: 0,
            },
            OBJECT => Frame::Object(Obj::Value, self.pop_offset().0),
            CALL => Frame::Call { done: false },
            _ => {
                let (out_start, comma) = self.pop_offset();
                Frame::Paren {
                    seq: Seq::Item,
                    out_start,
                    items: 0,
                    comma,
                }
            }
        });
    }

    /// Stores `offset` and `flag` as a delta from the offset below.
    fn push_offset(&mut self, offset: usize, flag: bool) {
        let delta = offset as i128 - self.last_offset as i128;
        let zigzag = ((delta << 1) ^ (delta >> 127)) as u128;
        push_varint(&mut self.offsets, (zigzag << 1) | u128::from(flag));
        self.last_offset = offset;
    }

    /// Removes the innermost stored offset; returns it with its flag.
    fn pop_offset(&mut self) -> (usize, bool) {
        let offset = self.last_offset;
        let v = pop_varint(&mut self.offsets);
        let flag = v & 1 == 1;
        let zigzag = v >> 1;
        let delta = ((zigzag >> 1) as i128) ^ -((zigzag & 1) as i128);
        self.last_offset = (offset as i128 - delta) as usize;
        (offset, flag)
    }
}

/// Appends `v` in groups of seven bits, most significant first, with the marker bit set on
/// the first byte only, so that [`pop_varint`] can read it from the end.
pub(super) fn push_varint(buf: &mut Vec<u8>, mut v: u128) {
    if v < 0x80 {
        // the usual case: one byte
        buf.push(v as u8 | 0x80);
        return;
    }
    let mut groups = [0u8; 19];
    let mut n = 0;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    buf.push(groups[n - 1] | 0x80);
    for g in groups[..n - 1].iter().rev() {
        buf.push(*g);
    }
}

/// Removes the last value appended by [`push_varint`] and returns it (0 when `buf` is empty).
pub(super) fn pop_varint(buf: &mut Vec<u8>) -> u128 {
    let mut v: u128 = 0;
    let mut shift = 0;
    while let Some(b) = buf.pop() {
        v |= u128::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 != 0 {
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order() {
        let mut s = Stack::default();
        let frames = [
            Frame::Object(Obj::Key, 5),
            Frame::Paren {
                seq: Seq::After,
                out_start: 3,
                items: 2,
                comma: true,
            },
            Frame::Array {
                seq: Seq::After,
                last_item: 9,
            },
            Frame::Object(Obj::After, 1 << 40),
            Frame::Call { done: true },
            Frame::Paren {
                seq: Seq::Open,
                out_start: 7,
                items: 0,
                comma: false,
            },
            Frame::Array {
                seq: Seq::Open,
                last_item: 0,
            },
        ];
        for f in frames {
            s.push(f);
        }
        assert_eq!(s.len(), frames.len());
        for f in frames[..frames.len() - 1].iter().rev() {
            s.pop();
            let got = *s.last().unwrap();
            match (f, got) {
                (Frame::Object(_, a), Frame::Object(_, b)) => assert_eq!(*a, b),
                (
                    Frame::Paren {
                        out_start: a,
                        comma: c,
                        ..
                    },
                    Frame::Paren {
                        out_start: b,
                        comma: d,
                        ..
                    },
                ) => assert_eq!((*a, *c), (b, d)),
                (Frame::Array { .. }, Frame::Array { .. })
                | (Frame::Call { .. }, Frame::Call { .. }) => {}
                other => panic!("wrong frame {other:?}"),
            }
        }
        s.pop();
        assert!(s.is_empty());
        assert!(s.kinds.is_empty() && s.offsets.is_empty());
    }
}
