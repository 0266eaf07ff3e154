//! Measures the heap bytes a keyed limiter spends per key (printed with `--nocapture`,
//! documented in the `ratelimit` module docs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use resilient::ratelimit::{Gcra, KeyedLimiter, Rate, bytes_per_key};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const KEYS: u32 = 100_000;

fn per_key<K: std::hash::Hash + Eq + Clone>(key: impl Fn(u32) -> K) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let k = KeyedLimiter::builder(Gcra::new(Rate::per_second(10)).unwrap())
        .build::<K>()
        .unwrap();
    for i in 0..KEYS {
        k.check_at(&key(i), 0, 1);
    }
    assert_eq!(k.len(), KEYS as usize);
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(k);
    bytes as f64 / f64::from(KEYS)
}

#[test]
fn bytes_per_key_measured() {
    let u64_key = per_key(u64::from);
    let ip_key = per_key(|i| IpAddr::V4(Ipv4Addr::from(i)));
    println!(
        "bytes per key at {KEYS} keys: u64 key {u64_key:.1} (slot {}), IpAddr key {ip_key:.1} (slot {})",
        bytes_per_key::<u64>(),
        bytes_per_key::<IpAddr>()
    );
    // A slot is key + 8-byte state + 1 control byte; the table is between 7/16 and 7/8
    // full, so the measured cost lies between one and about 2.3 slots.
    assert!(
        u64_key >= bytes_per_key::<u64>() as f64 && u64_key < 2.5 * bytes_per_key::<u64>() as f64
    );
    assert!(
        ip_key >= bytes_per_key::<IpAddr>() as f64
            && ip_key < 2.5 * bytes_per_key::<IpAddr>() as f64
    );
}
