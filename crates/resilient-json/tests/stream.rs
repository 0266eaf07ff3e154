//! Incremental repair: every snapshot of a stream is valid JSON and a prefix view of the final
//! value, and the final result is what the batch repair gives (`stream_performance.rs` checks
//! that the work is linear, `stream_memory.rs` that the input is not kept).

use proptest::prelude::*;
use resilient_json::{Repairer, parse_partial, repair};
use serde_json::Value;

/// Valid JSON documents: every prefix of each is also checked against the batch repair.
const VALID: &[&str] = &[
    r#"{"name": "Ada", "age": 36, "active": true, "tags": ["x", "y"], "boss": null}"#,
    r#"[1, -2, 3.25, -0.5e-3, 6E+2, 0, 10]"#,
    r#"{"a": {"b": {"c": [[], {}, [[]], {"d": []}]}}}"#,
    r#"["quote \" backslash \\ slash \/ controls \b\f\n\r\t", "\u00e9\u4e2d"]"#,
    r#"{"emoji": "\ud83d\ude00 and 😀", "accents": "déjà vu", "cjk": "中文字符"}"#,
    r#"[true, false, null, [true], {"t": false}]"#,
    "{\n  \"pretty\": [\n    1,\n    2\n  ],\n  \"nested\": {\n    \"k\": \"v\"\n  }\n}\n",
    r#"{}"#,
    r#"[]"#,
    r#""just a string with \"escapes\" and \u0041""#,
    r#"{" ": " ", "k\"ey": "v\\al", "": ""}"#,
    r#"[[[[[[[[[[1]]]]]]]]]]"#,
    r#"{"numbers": [123456789, -987654321, 1.5e300, 2.0, -0.0]}"#,
    r#"{"items": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], "count": 2}"#,
    "  [ 1 , 2 , { \"a\" : [ ] } ]  ",
    r#"{"url": "https://example.com/a?b=c&d=e", "path": "C:\\dir\\file"}"#,
    r#"{"prose": "a, b; [c] {d} (e) + f: g", "after": 1}"#,
];

/// What language models write: the final value of each is checked against the batch repair.
const LLM: &[&str] = &[
    "```json\n{\"answer\": \"42\", \"sources\": [\"a\", \"b\"]}\n```",
    "Here is the JSON you asked for:\n```json\n[{\"id\": 1}, {\"id\": 2}]\n```\nLet me know!",
    "Sure! {\"name\": \"Bob\", \"ok\": true} Hope this helps.",
    "{name: 'Ada', tags: ['x', 'y',], active: True, spouse: None}",
    "{\"a\": 1, // one\n \"b\": 2 /* two */, \"c\": [1, 2,],}",
    "[1 2 3, \"four\" \"five\"]",
    "{\"a\": 1 \"b\": 2, \"c\" 3}",
    "{\"text\": \"line one\nline two\ttabbed\"}",
    "[NaN, Infinity, undefined, .5, 2., +1]",
    "{status: ok, message: all good here , note: time: 12:30\n count: 3}",
];

/// A JSON value that keeps the order of object members, and duplicate keys.
#[derive(Debug, PartialEq)]
enum Tree {
    Scalar(Value),
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Tree, E> {
                Ok(Tree::Scalar(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Tree, E> {
                Ok(Tree::Scalar(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Tree, E> {
                Ok(Tree::Scalar(n.into()))
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::Null))
            }
            fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
                Ok(Tree::Str(s.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(t) = a.next_element()? {
                    items.push(t);
                }
                Ok(Tree::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut members = Vec::new();
                while let Some(m) = a.next_entry()? {
                    members.push(m);
                }
                Ok(Tree::Map(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// `snap` is a prefix view of `fin`: an array holds the first items of the final array, an
/// object its first members (same keys, in the same order), all equal to the final ones but
/// the last, which may itself be a prefix view; a string is a prefix of the final string;
/// anything else is equal.
fn is_prefix_view(snap: &Tree, fin: &Tree) -> bool {
    fn seq<T: PartialEq>(a: &[T], b: &[T], last: impl Fn(&T, &T) -> bool) -> bool {
        a.len() <= b.len()
            && a.iter()
                .zip(b)
                .enumerate()
                .all(|(i, (x, y))| x == y || (i + 1 == a.len() && last(x, y)))
    }
    match (snap, fin) {
        (Tree::Str(a), Tree::Str(b)) => b.starts_with(a.as_str()),
        (Tree::Seq(a), Tree::Seq(b)) => seq(a, b, is_prefix_view),
        (Tree::Map(a), Tree::Map(b)) => seq(a, b, |x, y| x.0 == y.0 && is_prefix_view(&x.1, &y.1)),
        _ => snap == fin,
    }
}

fn json(text: &str) -> Tree {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Feeds `chunks` to a repairer, checking after each one that the snapshot is valid JSON, a
/// prefix view of the final value and of every later snapshot. Returns the final JSON.
#[track_caller]
fn check_stream(doc: &str, chunks: &[&[u8]]) -> String {
    let mut r = Repairer::new();
    let mut snaps = Vec::new();
    for chunk in chunks {
        r.push_bytes(chunk);
        if let Some(s) = r.snapshot() {
            snaps.push((json(&s), s));
        }
    }
    let fin_text = r.finish().unwrap_or_else(|e| panic!("{doc:?}: {e}"));
    let fin = json(&fin_text);
    let mut later = (&fin, &fin_text);
    for (v, s) in snaps.iter().rev() {
        assert!(
            is_prefix_view(v, later.0),
            "{doc:?}: snapshot {s} is not a prefix view of {} (final {fin_text})",
            later.1
        );
        assert!(is_prefix_view(v, &fin), "{doc:?}: {s} vs final {fin_text}");
        later = (v, s);
    }
    fin_text
}

/// `false` when `prefix`, a prefix of valid JSON, ends inside a string whose text so far ends
/// with a bracket, comma, `+` or `;`: the batch repair then takes the end quote as missing
/// before that character, and the stream repair keeps the string whole.
fn batch_agrees_on(prefix: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for b in prefix.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ => {}
        }
    }
    let last = prefix.trim_end().bytes().last();
    !(in_string
        && matches!(
            last,
            Some(b',' | b'[' | b']' | b'{' | b'}' | b'(' | b')' | b'+' | b';')
        ))
}

/// `doc` split into one chunk per byte.
fn bytes(doc: &str) -> Vec<&[u8]> {
    doc.as_bytes().chunks(1).collect()
}

#[test]
fn every_prefix_of_valid_documents() {
    for doc in VALID {
        // byte by byte: a snapshot after every prefix, characters split between chunks
        assert_eq!(check_stream(doc, &bytes(doc)), *doc, "{doc:?}");
        // every prefix ended there gives what the batch repair gives for it
        for end in (0..=doc.len()).filter(|&e| doc.is_char_boundary(e)) {
            let prefix = &doc[..end];
            let mut r = Repairer::new();
            r.push(prefix);
            let snap = r.snapshot();
            let streamed = r.finish();
            match repair(prefix) {
                _ if !batch_agrees_on(prefix) => {}
                Ok(batch) => assert_eq!(streamed.as_ref(), Ok(&batch), "prefix {prefix:?}"),
                Err(_) => assert!(streamed.is_err(), "prefix {prefix:?}"),
            }
            // a snapshot is also a prefix view of what finishing there gives
            if let (Some(s), Ok(f)) = (snap, &streamed) {
                assert!(
                    is_prefix_view(&json(&s), &json(f)),
                    "{prefix:?}: {s} vs {f}"
                );
            }
        }
    }
}

#[test]
fn every_prefix_of_llm_documents() {
    for doc in LLM {
        let streamed = check_stream(doc, &bytes(doc));
        assert_eq!(streamed, repair(doc).unwrap(), "{doc:?}");
    }
}

#[test]
fn snapshots_while_a_document_arrives() {
    let doc = r#"{"title": "Stream", "n": -12.5, "ok": true, "list": [1, "two"]}"#;
    let mut r = Repairer::new();
    let mut seen = Vec::new();
    for c in doc.chars() {
        r.push(c.encode_utf8(&mut [0; 4]));
        let s = r.snapshot();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
    }
    let seen: Vec<_> = seen.into_iter().flatten().collect();
    for s in [
        "{}",
        r#"{"title": ""}"#,
        r#"{"title": "Str"}"#,
        r#"{"title": "Stream"}"#,
        // the number appears only once complete, the literal too
        r#"{"title": "Stream", "n": -12.5}"#,
        r#"{"title": "Stream", "n": -12.5, "ok": true}"#,
        r#"{"title": "Stream", "n": -12.5, "ok": true, "list": []}"#,
        r#"{"title": "Stream", "n": -12.5, "ok": true, "list": [1]}"#,
        r#"{"title": "Stream", "n": -12.5, "ok": true, "list": [1, "tw"]}"#,
        doc,
    ] {
        assert!(seen.iter().any(|x| x == s), "{s} not among {seen:#?}");
    }
    for s in &seen {
        for half in [
            r#""n": -}"#,
            r#""n": -1}"#,
            r#""n": -12.}"#,
            r#""ok": t}"#,
            r#""ok": tr}"#,
            r#""ti}"#,
        ] {
            assert!(!s.contains(half), "{s}");
        }
    }
}

#[test]
fn escapes_and_characters_split_across_chunks() {
    let cases: &[(&[&str], &str, &str)] = &[
        // (chunks, snapshot after all but the last, final)
        (&[r#"["a\"#, r#"nb"]"#], r#"["a"]"#, r#"["a\nb"]"#),
        (&[r#"["a\u00"#, r#"e9"]"#], r#"["a"]"#, r#"["a\u00e9"]"#),
        (&[r#"["\ud83d"#, r#"\ude00"]"#], "[]", r#"["\ud83d\ude00"]"#),
        (&[r#"["\ud83d\u"#, r#"de00"]"#], "[]", r#"["\ud83d\ude00"]"#),
        (&[r#"["x\ud83d"#, r#"!"]"#], r#"["x"]"#, r#"["x\ufffd!"]"#),
        (&[r#"{"k\"#, r#""ey": 1}"#], "{}", r#"{"k\"ey": 1}"#),
        (&[r#"[1, "\"#, r#"\"]"#], "[1]", r#"[1, "\\"]"#),
        (&[r#"["a", ""#, r#"b"]"#], r#"["a"]"#, r#"["a", "b"]"#),
    ];
    for (chunks, snap, fin) in cases {
        let mut r = Repairer::new();
        let (last, init) = chunks.split_last().unwrap();
        for c in init {
            r.push(c);
        }
        assert_eq!(r.snapshot().as_deref(), Some(*snap), "{chunks:?}");
        r.push(last);
        assert_eq!(r.finish().unwrap(), *fin, "{chunks:?}");
    }
    // a character split between byte chunks appears once complete
    let doc = "{\"k\": \"a😀b\"}";
    let mut r = Repairer::new();
    let b = doc.as_bytes();
    let at = doc.find('😀').unwrap();
    r.push_bytes(&b[..at + 2]);
    assert_eq!(r.snapshot().as_deref(), Some("{\"k\": \"a\"}"));
    r.push_bytes(&b[at + 2..at + 3]);
    assert_eq!(r.snapshot().as_deref(), Some("{\"k\": \"a\"}"));
    r.push_bytes(&b[at + 3..]);
    assert_eq!(r.finish().unwrap(), doc);
    // bytes that are not UTF-8 are read as U+FFFD
    let mut r = Repairer::new();
    r.push_bytes(b"[\"a\xff\xe2\x82");
    r.push("\"]");
    assert_eq!(r.finish().unwrap(), "[\"a\u{fffd}\u{fffd}\"]");
}

#[test]
fn nothing_before_a_value_starts() {
    let mut r = Repairer::new();
    assert_eq!(r.snapshot(), None);
    r.push("Sure, here it is: ");
    assert_eq!(r.snapshot(), None);
    r.push("```js");
    assert_eq!(r.snapshot(), None);
    r.push("on\n[");
    assert_eq!(r.snapshot().as_deref(), Some("\n[]"));
    // a root number or literal is shown once complete
    let mut r = Repairer::new();
    r.push("12");
    assert_eq!(r.snapshot(), None);
    r.push("3 ");
    assert_eq!(r.snapshot().as_deref(), Some("123"));
    assert_eq!(r.finish().unwrap(), "123 ");
    // prose with a list bullet before the JSON
    let mut r = Repairer::new();
    r.push("- the answer:\n");
    assert_eq!(r.snapshot(), None);
    r.push("{\"a\": 1}");
    assert_eq!(r.finish().unwrap(), "{\"a\": 1}");
    assert!(Repairer::new().finish().is_err());
    // the error position counts input bytes, not the U+FFFD they were read as
    let mut r = Repairer::new();
    r.push_bytes(b"\xef\x11");
    assert_eq!(r.finish().unwrap_err().position(), 2);
    assert!(parse_partial::<Value>("").is_err());
}

#[test]
fn deep_nesting_uses_no_call_stack() {
    let depth = 1 << 20;
    let mut r = Repairer::new();
    r.push(&"[{\"a\": ".repeat(depth / 2));
    r.push("\"x");
    let snap = r.snapshot().unwrap();
    assert!(snap.ends_with(&format!("\"x\"{}", "}]".repeat(depth / 2))));
    let fin = r.finish().unwrap();
    assert!(fin.ends_with(&format!("\"x\"{}", "}]".repeat(depth / 2))));
}

#[test]
fn parse_partial_fills_optional_fields_as_they_arrive() {
    #[derive(serde::Deserialize, Debug, PartialEq, Default)]
    struct Answer {
        title: Option<String>,
        score: Option<f64>,
        tags: Option<Vec<String>>,
        done: Option<bool>,
    }
    let doc =
        r#"{"title": "Linear time", "score": 0.75, "tags": ["json", "stream"], "done": true}"#;
    let mut r = Repairer::new();
    let mut answers = Vec::new();
    for c in doc.chars() {
        r.push(c.encode_utf8(&mut [0; 4]));
        if let Ok(a) = r.parse_partial::<Answer>() {
            answers.push(a);
        }
    }
    let expect = |title: &str, score, tags: &[&str], done: Option<bool>| Answer {
        title: Some(title.into()),
        score,
        tags: (!tags.is_empty() || done.is_some())
            .then(|| tags.iter().map(|t| t.to_string()).collect()),
        done,
    };
    assert!(answers.contains(&Answer::default()));
    assert!(answers.contains(&Answer {
        title: Some("Lin".into()),
        ..Answer::default()
    }));
    assert!(answers.contains(&expect("Linear time", Some(0.75), &["json", "st"], None)));
    assert_eq!(
        answers.last(),
        Some(&expect(
            "Linear time",
            Some(0.75),
            &["json", "stream"],
            Some(true)
        ))
    );
    // no answer shows a score other than the final one
    assert!(
        answers
            .iter()
            .all(|a| a.score.is_none() || a.score == Some(0.75))
    );
    // the free function reads a prefix at once
    let a: Answer = parse_partial(r#"{"title": "Lin"#).unwrap();
    assert_eq!(a.title.as_deref(), Some("Lin"));
    // a prefix that does not fit the type is a serde error
    assert!(parse_partial::<Answer>(r#"{"score": "high"#).is_err());
}

/// Arbitrary JSON values (small, so that serde_json's recursion limit is not reached).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `doc` cut at the (sorted, deduplicated) byte offsets `cuts`, anywhere, even inside a
/// character.
fn split<'a>(doc: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
    at.push(0);
    at.push(doc.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &doc[w[0]..w[1]]).collect()
}

/// Text that looks a bit like JSON, to reach every state of the reader.
fn jsonish_text() -> impl Strategy<Value = String> {
    let parts = [
        "{", "}", "[", "]", ",", ":", "\"", "'", "\\", " ", "\n", "a", "1", "-", ".", "e", "true",
        "None", "/*", "*/", "//", "#", "+", "```", "\u{a0}", "\\u12", "\\ud83d", "é", "😀",
    ];
    prop::collection::vec(prop::sample::select(parts.to_vec()), 0..40).prop_map(|p| p.concat())
}

fn corpus() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VALID.iter().chain(LLM).copied().collect::<Vec<_>>())
}

proptest! {
    // Seeded: the same chunkings on every run.
    #![proptest_config(ProptestConfig {
        cases: 300,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5_7ea4),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_chunkings_of_the_corpus(doc in corpus(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let chunks = split(doc.as_bytes(), &cuts);
        let fin = check_stream(doc, &chunks);
        prop_assert_eq!(fin, repair(doc).unwrap());
    }

    #[test]
    fn random_chunkings_of_random_values(v in json_value(), pretty in any::<bool>(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let doc = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
        let chunks = split(doc.as_bytes(), &cuts);
        let fin = check_stream(&doc, &chunks);
        prop_assert_eq!(&fin, &doc);
        // and cut off after any chunk, finishing gives what the batch repair gives
        let end = chunks.first().map_or(0, |c| c.len());
        if doc.is_char_boundary(end) && batch_agrees_on(&doc[..end]) {
            let mut r = Repairer::new();
            r.push(&doc[..end]);
            prop_assert_eq!(r.finish().ok(), repair(&doc[..end]).ok());
        }
    }

    #[test]
    fn snapshots_of_jsonish_text_are_prefix_views(doc in jsonish_text(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut r = Repairer::new();
        r.push(&doc);
        if r.finish().is_ok() {
            check_stream(&doc, &split(doc.as_bytes(), &cuts));
            check_stream(&doc, &bytes(&doc));
        }
    }

    #[test]
    fn snapshots_of_any_text_are_json(input in any::<String>(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut r = Repairer::new();
        for chunk in split(input.as_bytes(), &cuts) {
            r.push_bytes(chunk);
            if let Some(s) = r.snapshot() {
                prop_assert!(serde_json::from_str::<Value>(&s).is_ok(), "{:?}: {}", input, s);
            }
        }
        if let Ok(s) = r.finish() {
            prop_assert!(serde_json::from_str::<Value>(&s).is_ok(), "{:?}: {}", input, s);
        }
    }
}
