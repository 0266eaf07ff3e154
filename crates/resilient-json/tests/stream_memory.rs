//! Memory of a stream repair: the input is not kept, so peak heap depends on the output and
//! the nesting depth, not on how much was read. Measured with a counting global allocator
//! (this test binary only) that counts the measuring thread's allocations only, so the
//! test harness's other threads (reporting, output capture) never show in a peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};

use resilient_json::Repairer;

struct Counting;

/// Bytes held, counted on the measuring thread only (signed: a block allocated before the
/// measurement may be freed during it).
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted (const: no allocation to read it).
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    MEASURING.try_with(Cell::get).unwrap_or(false)
}

fn grow(n: usize) {
    if counted() {
        let n = n as isize;
        let now = CURRENT.fetch_add(n, Ordering::SeqCst) + n;
        PEAK.fetch_max(now, Ordering::SeqCst);
    }
}

fn shrink(n: usize) {
    if counted() {
        CURRENT.fetch_sub(n as isize, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded to `System`; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded with the caller's layout
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: forwarded with the caller's pointer and layout
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // counted as the change in size, as large blocks are moved by remapping pages
        if new_size >= layout.size() {
            grow(new_size - layout.size());
        } else {
            shrink(layout.size() - new_size);
        }
        // SAFETY: forwarded with the caller's pointer, layout and size
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Tests in this binary run one at a time, so that one test's allocations do not count in
/// another's peak.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MIB: usize = 1 << 20;

/// Feeds `input` in chunks of `chunk` bytes, taking a snapshot every `every` chunks, then
/// finishes. Returns the peak heap held meanwhile (the input is not counted) and the output.
fn peak_of(input: &str, chunk: usize, every: usize) -> (usize, String) {
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    let mut r = Repairer::new();
    for (k, c) in input.as_bytes().chunks(chunk).enumerate() {
        r.push_bytes(c);
        if k % every == 0 {
            drop(r.snapshot());
        }
    }
    let out = r.finish().unwrap();
    MEASURING.with(|m| m.set(false));
    let peak = PEAK.load(Ordering::SeqCst) - before;
    (usize::try_from(peak).unwrap_or(0), out)
}

#[test]
fn input_that_gives_no_output_is_not_kept() {
    let _serial = serial();
    let noise = "/* a comment the stream reads and drops */".repeat(8 * MIB / 42);
    let input = format!("Some prose first, then: [1, {noise} 2]");
    let (peak, out) = peak_of(&input, 4096, 16);
    eprintln!(
        "{} bytes in, {} out, peak heap {peak}",
        input.len(),
        out.len()
    );
    assert_eq!(out, "[1,  2]");
    assert!(peak < 4096, "peak heap {peak}");
}

#[test]
fn peak_heap_is_a_small_multiple_of_the_output() {
    let _serial = serial();
    let item = r#"{"id": 12345, "name": "caf\u00e9 \"q\" 😀", "ok": true, "tags": ["a", "b"]}, "#;
    let input = format!("[{}0]", item.repeat(MIB / item.len()));
    let (peak, out) = peak_of(&input, 1000, 256);
    eprintln!(
        "{} bytes in, {} out, peak heap {peak}",
        input.len(),
        out.len()
    );
    assert_eq!(out, input);
    // the output grows by doubling (up to twice its length) and a snapshot copies it
    assert!(peak <= 3 * out.len() + (64 << 10), "peak heap {peak}");
}

#[test]
fn deep_nesting_costs_a_byte_per_level() {
    let _serial = serial();
    let input = "[".repeat(MIB);
    let (peak, out) = peak_of(&input, 4096, 64);
    eprintln!(
        "{} bytes in, {} out, peak heap {peak}",
        input.len(),
        out.len()
    );
    assert_eq!(out.len(), 2 * MIB);
    // output and stack grow by doubling; a snapshot and `finish` hold the closed output
    assert!(peak <= 6 * MIB, "peak heap {peak}");
}
