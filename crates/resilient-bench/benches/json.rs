//! JSON repair throughput on ~1 MiB inputs, `resilient_json::repair` side by side with the
//! `jsonrepair-rs` and `llm_json` crates, and on valid input against `serde_json`'s own
//! validation (deserializing into `serde::de::IgnoredAny`).
//!
//! Run: `cargo bench -p resilient-bench --bench json -- --warm-up-time 1 --measurement-time 3`
//! (add `--profile bench-lto` for the LTO build).
//!
//! Inputs are generated in code, deterministically:
//! - `llm_object`: an object as a language model writes it, inside a markdown fence after a
//!   line of prose: unquoted keys, single quotes, comments, trailing and missing commas;
//! - `truncated_deep_array`: records in arrays nested 100 deep (`jsonrepair-rs` refuses more
//!   than 128 levels), cut off inside a string;
//! - `python_dict`: a Python `repr` of a dict (`True`, `False`, `None`, single quotes);
//! - `valid`: pretty-printed valid JSON (1.3 MiB).
//!
//! Contenders: `resilient_json` (`repair`), `jsonrepair_rs` (`jsonrepair`), `llm_json`
//! (`repair_json` with `RepairOptions::default()`, as its documentation shows) and, on valid
//! input only, `serde_ignored_any` (`serde_json::from_slice::<IgnoredAny>`). Every
//! contender's output is checked once to be valid JSON before anything is measured.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IgnoredAny;

/// Target size of every input.
const SIZE: usize = 1 << 20;

/// `{...}` with every repair an LLM typically needs, fenced and preceded by prose.
fn llm_object() -> String {
    let mut s = String::from("Sure! Here is the JSON you asked for:\n\n```json\n{\n");
    s.push_str("  // records generated for the report\n  records: [\n");
    let mut i = 0u64;
    while s.len() < SIZE {
        // a missing comma between records every fourth record
        let sep = if i % 4 == 3 { "" } else { "," };
        s.push_str(&format!(
            "    {{id: {i}, 'name': 'item {i}', \"title\": \"The {i}th item\", \
             tags: ['red', 'large',], /* inline note */ price: {}.25,\n      \
             'active': true, \"owner\": {{name: 'Ada', 'email': 'ada{i}@example.com'}} \
             \"count\": {} }}{sep}\n",
            i % 1000,
            i % 7
        ));
        i += 1;
    }
    s.push_str("    {id: -1, 'name': 'last',},\n  ],\n  // the count\n  total: ");
    s.push_str(&i.to_string());
    s.push_str(",\n}\n```\nLet me know if you need anything else.");
    s
}

/// Arrays nested 100 deep (`jsonrepair-rs` refuses more than 128 levels), each level holding
/// records, cut off inside a string.
fn truncated_deep_array() -> String {
    let mut s = String::from("[");
    let mut depth = 1;
    let mut i = 0u64;
    while s.len() < SIZE {
        s.push_str(&format!(
            "{{\"id\": {i}, \"name\": \"node {i}\", \"values\": [{i}, {}.5, true, null], \
             \"leaf\": {}}}, ",
            i % 100,
            i.is_multiple_of(2)
        ));
        i += 1;
        if i.is_multiple_of(32) && depth < 100 {
            s.push_str("[\n");
            depth += 1;
        }
    }
    s.push_str("{\"id\": -1, \"name\": \"cut off her");
    s
}

/// A Python `repr` of a dict: single quotes, `True` / `False` / `None`, and double quotes
/// around strings holding an apostrophe, as Python writes them.
fn python_dict() -> String {
    let mut s = String::from("{'records': [");
    let mut i = 0u64;
    while s.len() < SIZE {
        if i > 0 {
            s.push_str(", ");
        }
        let bool_ = |b: bool| if b { "True" } else { "False" };
        s.push_str(&format!(
            "{{'id': {i}, 'name': 'record {i}', 'note': \"it's number {i}\", \
             'active': {}, 'deleted': {}, 'parent': None, 'score': {}.75, \
             'tags': ['alpha', 'beta', 'gamma'], 'meta': {{'source': 'db', 'rev': None}}}}",
            bool_(i.is_multiple_of(3)),
            bool_(i.is_multiple_of(5)),
            i % 50
        ));
        i += 1;
    }
    s.push_str("], 'count': ");
    s.push_str(&i.to_string());
    s.push('}');
    s
}

/// Pretty-printed valid JSON: an object holding an array of records.
fn valid() -> String {
    let mut items = Vec::new();
    let mut len = 0;
    let mut i = 0u64;
    while len < SIZE {
        let item = serde_json::json!({
            "id": i,
            "name": format!("item {i}"),
            "tags": ["red", "large", "café"],
            "price": (i as f64) * 1.25,
            "active": i.is_multiple_of(3),
            "note": "said \"hello\" twice",
            "parent": null,
            "nested": {"a": [1, 2, 3], "b": {"c": "d"}},
        });
        len += serde_json::to_string_pretty(&item).unwrap().len() + 6;
        items.push(item);
        i += 1;
    }
    serde_json::to_string_pretty(&serde_json::json!({ "items": items })).unwrap()
}

fn ours(input: &str) -> String {
    resilient_json::repair(input).unwrap()
}

fn jsonrepair_rs(input: &str) -> String {
    jsonrepair_rs::jsonrepair(input).unwrap()
}

fn llm_json(input: &str) -> String {
    llm_json::repair_json(input, &llm_json::RepairOptions::default()).unwrap()
}

/// Panics unless `out` is one valid JSON value.
fn assert_valid(who: &str, input: &str, out: &str) {
    if let Err(e) = serde_json::from_str::<IgnoredAny>(out) {
        panic!("{who} gave invalid JSON on {input}: {e}");
    }
}

/// A named input generator.
type Input = (&'static str, fn() -> String);

/// A named contender: input in, repaired JSON out.
type Contender = (&'static str, fn(&str) -> String);

fn bench(c: &mut Criterion) {
    let inputs: [Input; 4] = [
        ("llm_object", llm_object),
        ("truncated_deep_array", truncated_deep_array),
        ("python_dict", python_dict),
        ("valid", valid),
    ];
    let contenders: [Contender; 3] = [
        ("resilient_json", ours),
        ("jsonrepair_rs", jsonrepair_rs),
        ("llm_json", llm_json),
    ];
    for (name, make) in inputs {
        let input = make();
        let is_valid = serde_json::from_str::<IgnoredAny>(&input).is_ok();
        assert_eq!(is_valid, name == "valid", "{name}: wrong kind of input");
        for (who, f) in contenders {
            assert_valid(who, name, &f(&input));
        }
        if is_valid {
            assert_eq!(ours(&input), input, "valid input must come back unchanged");
        }

        let mut group = c.benchmark_group(format!("json_{name}"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(input.len() as u64));
        if is_valid {
            group.bench_function("serde_ignored_any", |b| {
                b.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(input.as_bytes())))
            });
        }
        for (who, f) in contenders {
            group.bench_function(who, |b| b.iter(|| f(black_box(&input))));
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
