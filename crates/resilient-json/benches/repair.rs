//! Throughput of `repair` on valid and on malformed JSON of several sizes, side by side with
//! the `jsonrepair-rs` and `llm_json` crates.
//!
//! Run with `cargo bench -p resilient-json --bench repair -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Valid, pretty-printed JSON of about `size` bytes: an object holding an array of records.
fn valid(size: usize) -> String {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0u64;
    while len < size {
        let item = serde_json::json!({
            "id": i,
            "name": format!("item {i}"),
            "tags": ["red", "large", "café"],
            "price": (i as f64) * 1.25,
            "active": i.is_multiple_of(3),
            "note": "said \"hello\" twice",
            "parent": null,
        });
        len += item.to_string().len() + 8;
        items.push(item);
        i += 1;
    }
    serde_json::to_string_pretty(&serde_json::json!({ "items": items })).unwrap()
}

/// Malformed JSON of about `size` bytes, as a language model writes it: single quotes,
/// unquoted keys, Python literals, comments, trailing commas, and the end cut off. All three
/// libraries repair it to the same value (checked before measuring).
fn malformed(size: usize) -> String {
    let mut s = String::from("{\"items\": [\n");
    let mut i = 0u64;
    while s.len() < size {
        s.push_str(&format!(
            "  {{id: {i}, 'name': 'item {i}', \"tags\": ['red', \"large\",], // note\n   \
             \"price\": {}.50, 'active': True, \"parent\": None,}},\n",
            i % 100
        ));
        i += 1;
    }
    s.push_str("  {id: -1, 'name': 'last");
    s
}

fn bench(c: &mut Criterion) {
    for (kind, make) in [
        ("valid", valid as fn(usize) -> String),
        ("malformed", malformed),
    ] {
        let mut group = c.benchmark_group(kind);
        group.sample_size(10);
        for size in [1 << 10, 32 << 10, 256 << 10] {
            let input = make(size);
            // all libraries must produce the same value, or the comparison would be meaningless
            let value = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
            let ours = value(resilient_json::repair(&input).unwrap());
            let theirs = value(jsonrepair_rs::jsonrepair(&input).unwrap());
            assert_eq!(ours, theirs, "jsonrepair-rs disagrees");
            let opts = llm_json::RepairOptions::default();
            let theirs = value(llm_json::repair_json(&input, &opts).unwrap());
            assert_eq!(ours, theirs, "llm_json disagrees");

            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(BenchmarkId::new("resilient_json", size), &input, |b, i| {
                b.iter(|| resilient_json::repair(black_box(i)))
            });
            group.bench_with_input(BenchmarkId::new("jsonrepair_rs", size), &input, |b, i| {
                b.iter(|| jsonrepair_rs::jsonrepair(black_box(i)))
            });
            group.bench_with_input(BenchmarkId::new("llm_json", size), &input, |b, i| {
                b.iter(|| llm_json::repair_json(black_box(i), &opts))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
