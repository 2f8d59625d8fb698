//! Random JSON documents, written with random whitespace and escapes: the
//! masked output is the same at random splits, parses, and equals a
//! reference masking of the parsed tree.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::*;

/// A document; objects keep duplicate keys (serde_json keeps the last).
enum Node {
    Obj(Vec<(String, Node)>),
    Arr(Vec<Node>),
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
}

const KEYS: &[&str] = &[
    "password",
    "Token",
    "access_token",
    "credentials",
    "ssn",
    "pin",
    "apikey",
    "name",
    "items",
    "spec",
    "a@b.co",
    "pass\"word",
    "\u{e9}t\u{e9}",
    "",
];

const PIECES: &[&str] = &[
    "bob@example.com",
    "4111 1111 1111 1111",
    "123-45-6789",
    "Initech",
    "plain",
    " ",
    "\"",
    "\\",
    "/",
    "\n",
    "\t",
    "\u{1}",
    "\u{7f}",
    "\u{e9}",
    "\u{1F600}",
    "\u{2028}",
    "x",
    "42",
];

fn node(rng: &mut StdRng, depth: u32) -> Node {
    match rng.gen_range(0..if depth > 4 { 4 } else { 6 }) {
        0 => {
            let n = rng.gen_range(0..4);
            Node::Str(
                (0..n)
                    .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                    .collect(),
            )
        }
        1 => Node::Int([0, -5, 12_345_678, 4_111_111_111_111_111, 7][rng.gen_range(0..5)]),
        2 => Node::Bool(rng.r#gen()),
        3 => Node::Null,
        4 => Node::Arr(
            (0..rng.gen_range(0..4))
                .map(|_| node(rng, depth + 1))
                .collect(),
        ),
        _ => Node::Obj(
            (0..rng.gen_range(0..4))
                .map(|_| {
                    (
                        KEYS[rng.gen_range(0..KEYS.len())].to_owned(),
                        node(rng, depth + 1),
                    )
                })
                .collect(),
        ),
    }
}

fn ws(rng: &mut StdRng, out: &mut String) {
    for _ in 0..rng.gen_range(0..3) {
        out.push([' ', '\n', '\t', '\r'][rng.gen_range(0..4)]);
    }
}

/// Writes `s` as a JSON string, escaping at random where JSON allows.
fn string(rng: &mut StdRng, s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must = c == '"' || c == '\\' || (c as u32) < 0x20;
        if must || rng.gen_ratio(1, 8) {
            match (c, rng.gen_range(0..2)) {
                ('"', 0) => out.push_str("\\\""),
                ('\\', 0) => out.push_str("\\\\"),
                ('/', 0) => out.push_str("\\/"),
                ('\n', 0) => out.push_str("\\n"),
                _ => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

fn write(rng: &mut StdRng, n: &Node, out: &mut String) {
    ws(rng, out);
    match n {
        Node::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                string(rng, k, out);
                ws(rng, out);
                out.push(':');
                write(rng, v, out);
            }
            ws(rng, out);
            out.push('}');
        }
        Node::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(rng, v, out);
            }
            ws(rng, out);
            out.push(']');
        }
        Node::Str(s) => string(rng, s, out),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
    }
    ws(rng, out);
}

/// What masking should make of `n`, `rule` being the key rule over it.
fn reference(n: &Node, rule: Option<(usize, Strategy)>, keys: &JsonKeys, masker: &Masker) -> Value {
    let by_rule = |text: &[u8], strategy| {
        let mut out = Vec::new();
        match keys.apply(strategy, text, &mut out) {
            true => Value::String(String::from_utf8_lossy(&out).into_owned()),
            false => Value::Null,
        }
    };
    let by_content = |text: &[u8], unchanged: Value| {
        let mut out = Vec::new();
        match masker.mask_value(text, &mut out) {
            None => unchanged,
            Some(o) if o.nulled() => Value::Null,
            Some(_) => Value::String(String::from_utf8_lossy(&out).into_owned()),
        }
    };
    match (n, rule) {
        (Node::Obj(fields), _) => {
            let mut map = serde_json::Map::new();
            for (k, v) in fields {
                let inner = rule.or_else(|| keys.find(k.as_bytes()));
                map.insert(k.clone(), reference(v, inner, keys, masker));
            }
            Value::Object(map)
        }
        (Node::Arr(items), _) => Value::Array(
            items
                .iter()
                .map(|v| reference(v, rule, keys, masker))
                .collect(),
        ),
        (Node::Null, _) => Value::Null,
        (Node::Str(s), Some((_, strategy))) => by_rule(s.as_bytes(), strategy),
        (Node::Int(i), Some((_, strategy))) => by_rule(i.to_string().as_bytes(), strategy),
        (Node::Bool(b), Some((_, strategy))) => by_rule(b.to_string().as_bytes(), strategy),
        (Node::Str(s), None) => by_content(s.as_bytes(), Value::String(s.clone())),
        (Node::Int(i), None) => by_content(i.to_string().as_bytes(), Value::from(*i)),
        (Node::Bool(b), None) => Value::Bool(*b),
    }
}

#[test]
fn random_documents_match_the_reference_at_any_split() {
    let (keys, masker) = (keys(), masker());
    let make = json_stream(&keys, &masker);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut masked = 0;
    for _ in 0..400 {
        // A stream of one to three documents, like a watch.
        let docs: Vec<Node> = (0..rng.gen_range(1..4))
            .map(|_| node(&mut rng, 0))
            .collect();
        let mut text = String::new();
        for d in &docs {
            write(&mut rng, d, &mut text);
            text.push('\n');
        }
        let input = text.as_bytes();
        let whole = run_chunks(make(), &[input]);
        assert_eq!(whole.1, Ok(()), "{text}");
        let out = String::from_utf8(whole.0.clone()).unwrap();
        let got: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}: {text} -> {out}"));
        let want: Vec<Value> = docs
            .iter()
            .map(|d| reference(d, None, &keys, &masker))
            .collect();
        assert_eq!(got, want, "{text} -> {out}");
        masked += whole.2.iter().map(|h| h.count).sum::<u32>();
        for _ in 0..8 {
            let mut cuts: Vec<usize> = (0..rng.gen_range(1..6))
                .map(|_| rng.gen_range(0..=input.len()))
                .collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts {
                chunks.push(&input[from..c]);
                from = c;
            }
            chunks.push(&input[from..]);
            let run = run_chunks(make(), &chunks);
            assert_eq!((run.0, run.1, run.2), whole.clone(), "{text} at {chunks:?}");
        }
    }
    // The documents do exercise the rules.
    assert!(masked > 100, "{masked}");
}
