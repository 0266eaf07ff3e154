//! A counter that many threads add to without contending: each thread counts in a cell
//! of its own, and a read sums the cells.

use std::sync::atomic::{AtomicU64, Ordering};

use thread_local::ThreadLocal;

/// A monotonic count (such as a breaker's rejected calls) on a hot path. Adding is a
/// load and a store in the calling thread's own cell: no atomic read-modify-write, so
/// no locked instruction and no cache line shared between threads. A thread's cell is
/// made the first time it adds (one allocation per thread for a new block of cells).
/// Reading sums every thread's cell, with the adds each thread has made visible so far.
///
/// ```ignore
/// let count = ShardedCount::default();
/// count.add_one();
/// assert_eq!(count.get(), 1);
/// ```
#[derive(Default)]
pub(crate) struct ShardedCount(ThreadLocal<AtomicU64>);

impl ShardedCount {
    /// Adds one in the calling thread's cell (only this thread writes it).
    #[inline]
    pub(crate) fn add_one(&self) {
        let cell = self.0.get_or_default();
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// The sum of every thread's cell.
    pub(crate) fn get(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, cell| {
            sum.wrapping_add(cell.load(Ordering::Relaxed))
        })
    }
}

impl std::fmt::Debug for ShardedCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShardedCount").field(&self.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_threads_adds_are_counted_once() {
        let count = Arc::new(ShardedCount::default());
        assert_eq!(count.get(), 0);
        // More threads than cores, some ending before others start (their ids, and so
        // their cells, are reused by later threads).
        for round in 0..3u64 {
            let threads: Vec<_> = (0..8u64)
                .map(|t| {
                    let count = Arc::clone(&count);
                    std::thread::spawn(move || {
                        for _ in 0..(1_000 + t + round) {
                            count.add_one();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        let expected: u64 = (0..3u64)
            .flat_map(|round| (0..8u64).map(move |t| 1_000 + t + round))
            .sum();
        assert_eq!(count.get(), expected);
        count.add_one();
        assert_eq!(count.get(), expected + 1);
    }

    #[test]
    fn a_read_while_threads_add_never_goes_back() {
        let count = Arc::new(ShardedCount::default());
        let adder = {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    count.add_one();
                }
            })
        };
        let mut last = 0;
        while !adder.is_finished() {
            let now = count.get();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
        adder.join().unwrap();
        assert_eq!(count.get(), 100_000);
    }
}
