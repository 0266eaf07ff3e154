//! [`ConfigCell`]: a runtime-adjustable configuration of a few words, read as one consistent
//! snapshot per decision without a lock (a sequence lock: readers retry only while a rare
//! writer is mid-update).

use super::sync::{AtomicU64, Ordering, fence, spin_loop};

/// `K` words written together and read together.
#[derive(Debug)]
pub(crate) struct ConfigCell<const K: usize> {
    /// Even when stable, odd while a writer is updating the words.
    seq: AtomicU64,
    words: [AtomicU64; K],
}

impl<const K: usize> ConfigCell<K> {
    pub(crate) fn new(words: [u64; K]) -> Self {
        Self {
            seq: AtomicU64::new(0),
            words: words.map(AtomicU64::new),
        }
    }

    /// A consistent snapshot of the words.
    #[inline]
    pub(crate) fn read(&self) -> [u64; K] {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let words = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if before & 1 == 0 && self.seq.load(Ordering::Relaxed) == before {
                return words;
            }
            spin_loop();
        }
    }

    /// Replaces the words with `f(current)` atomically with respect to readers and other
    /// writers; `f` returning an error leaves them unchanged.
    pub(crate) fn update<E>(
        &self,
        f: impl FnOnce([u64; K]) -> Result<[u64; K], E>,
    ) -> Result<(), E> {
        let seq = loop {
            let s = self.seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && self
                    .seq
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break s;
            }
            spin_loop();
        };
        // Readers must never see an odd sequence forever, even if `f` panics.
        struct Unlock<'a>(&'a AtomicU64, u64);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(self.1 + 2, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.seq, seq);
        fence(Ordering::Release);
        let current = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        f(current).map(|next| {
            for (w, v) in self.words.iter().zip(next) {
                w.store(v, Ordering::Relaxed);
            }
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::ConfigCell;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Readers racing a writer only ever see whole snapshots.
    #[test]
    fn readers_see_consistent_snapshots() {
        let cell = Arc::new(ConfigCell::new([0u64; 4]));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (cell, stop) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let w = cell.read();
                    assert!(w.iter().all(|&x| x == w[0]), "torn read {w:?}");
                    seen = seen.max(w[0]);
                }
                seen
            })
        };
        for i in 1..=20_000u64 {
            cell.update(|_| Ok::<_, ()>([i; 4])).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() <= 20_000);
        assert_eq!(cell.update(|_| Err("no")), Err("no"));
        assert_eq!(cell.read(), [20_000; 4]);
    }
}
