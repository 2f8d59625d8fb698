//! The masking engine over realistic rows, beside its ceilings.
//!
//! A batch is ~64 KiB of column values (ids, uuids, names, amounts, statuses,
//! timestamps, free-text comments), masked one value at a time as the
//! protocol layer does. Side by side:
//! - `mask clean`: no value holds anything sensitive (every value costs the
//!   prefilter passes and nothing else);
//! - `mask 1% sensitive`: one value in a hundred carries an e-mail address, a
//!   card number, a phone number, an SSN or a token, and is rewritten;
//! - `aho-corasick batch`: the rule set's own automaton over the same bytes as
//!   one haystack (the keyword-scan ceiling), and `aho-corasick per value`;
//! - `memcpy`: copying the batch;
//! - `mask clean long values`: ~1 KiB free-text values instead of short
//!   columns, the per-byte cost without most of the per-value one.
//!
//! Two rule sets: every detector alone (20 keywords; values are screened
//! for the few bytes keywords need before the automaton runs), and every
//! detector with a case-insensitive dictionary of 12 customer names (32
//! patterns; too many screening bytes, so every value is searched).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_core::mask::{Detector, DictionaryRule, MaskRules, Masker, Strategy};

const BATCH: usize = 64 * 1024;

/// A small deterministic generator (xorshift64*), so every run sees the
/// same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "Maria", "James", "Aiko", "Olu", "Sofía", "Lars", "Priya", "Chen", "Zoë", "Mateus",
];
const LAST: &[&str] = &[
    "Garcia", "Smith", "Tanaka", "Adeyemi", "Müller", "Nilsen", "Patel", "Wei", "Dubois", "Silva",
];
const STATUS: &[&str] = &[
    "pending",
    "paid",
    "shipped",
    "delivered",
    "refunded",
    "cancelled",
];
const WORDS: &[&str] = &[
    "the",
    "customer",
    "asked",
    "about",
    "delivery",
    "window",
    "package",
    "was",
    "left",
    "at",
    "front",
    "door",
    "please",
    "call",
    "before",
    "arriving",
    "replacement",
    "sent",
    "on",
    "order",
    "invoice",
    "updated",
    "discount",
    "applied",
    "warehouse",
    "Lisbon",
    "Osaka",
    "Toronto",
    "delay",
    "due",
    "to",
    "weather",
    "backorder",
    "item",
    "size",
    "colour",
    "return",
    "label",
    "printed",
    "courier",
    "confirmed",
    "signature",
    "required",
    "gift",
    "wrap",
    "note",
    "thanks",
    "again",
];
const SENSITIVE: &[&str] = &[
    "please email the receipt to maria.garcia@example.com today",
    "paid with card 4111 1111 1111 1111, exp 12/27",
    "call me on (415) 555-2671 after 5pm",
    "SSN on file: 123-45-6789",
    "token ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6 leaked in logs",
    "forward to ops+billing@corp.example.org please",
];

/// One value of column `col` of a row.
fn value(rng: &mut Rng, row: usize, col: usize) -> String {
    match col {
        0 => (1_000_000 + row * 7).to_string(),
        1 => format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            rng.next() as u32,
            rng.next() as u16,
            rng.next() & 0xfff,
            rng.next() & 0xfff,
            rng.next() & 0xffff_ffff_ffff
        ),
        2 => format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
        3 => format!("{}.{:02}", rng.below(5000), rng.below(100)),
        4 => rng.pick(STATUS).to_owned(),
        5 => format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000)
        ),
        _ => {
            let n = 8 + rng.below(32);
            let mut s = String::new();
            for i in 0..n {
                if i > 0 {
                    s.push(' ');
                }
                if rng.below(12) == 0 {
                    s.push_str(&rng.below(100_000).to_string());
                } else {
                    s.push_str(rng.pick(WORDS));
                }
            }
            s
        }
    }
}

/// ~64 KiB of values; one in `sensitive_every` (if any) carries something to
/// mask.
fn batch(sensitive_every: Option<usize>) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut values = Vec::new();
    let mut total = 0;
    let mut row = 0;
    while total < BATCH {
        for col in 0..7 {
            let mut v = value(&mut rng, row, col);
            if sensitive_every.is_some_and(|n| values.len() % n == n / 2) {
                let extra = SENSITIVE[values.len() % SENSITIVE.len()];
                v = format!("{v} {extra}");
            }
            total += v.len();
            values.push(v.into_bytes());
        }
        row += 1;
    }
    values
}

/// ~64 KiB of long free-text values (~1 KiB each, like JSON documents or
/// notes): the per-byte cost without the per-value one.
fn long_batch() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let mut values = Vec::new();
    let mut total = 0;
    while total < BATCH {
        let mut v = String::new();
        for row in 0..5 {
            v.push_str(&format!(
                "{{\"id\": {}, \"at\": \"{}\", \"who\": \"{}\", \"note\": \"{}\"}}\n",
                value(&mut rng, row, 0),
                value(&mut rng, row, 5),
                value(&mut rng, row, 2),
                value(&mut rng, row, 6)
            ));
        }
        total += v.len();
        values.push(v.into_bytes());
    }
    values
}

fn rules(with_dictionary: bool) -> MaskRules {
    let detectors = Detector::ALL
        .iter()
        .map(|&d| match d {
            Detector::CardNumber => (d, Strategy::Partial { keep_last: 4 }),
            Detector::Email => (d, Strategy::Token),
            _ => (d, Strategy::Redact),
        })
        .collect();
    let dictionaries = if with_dictionary {
        vec![DictionaryRule {
            terms: [
                "Northwind Traders",
                "Contoso",
                "Fabrikam",
                "Initech",
                "Globex",
                "Umbrella Corp",
                "Hooli",
                "Vandelay Industries",
                "Wayne Enterprises",
                "Stark Industries",
                "db-prod-7.internal",
                "billing.corp.internal",
            ]
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
            case_insensitive: true,
            strategy: Strategy::Redact,
        }]
    } else {
        Vec::new()
    };
    MaskRules {
        columns: Vec::new(),
        detectors,
        dictionaries,
    }
}

fn masking(c: &mut Criterion) {
    let clean = batch(None);
    let dirty = batch(Some(100));
    let long = long_batch();
    let joined: Vec<u8> = clean.concat();
    let bytes = |b: &[Vec<u8>]| b.iter().map(Vec::len).sum::<usize>() as u64;
    let sensitive = dirty
        .iter()
        .filter(|v| SENSITIVE.iter().any(|s| v.ends_with(s.as_bytes())))
        .count();
    eprintln!(
        "batch: {} values, {} bytes clean, {} values sensitive of {}; long: {} values, {} bytes",
        clean.len(),
        bytes(&clean),
        sensitive,
        dirty.len(),
        long.len(),
        bytes(&long)
    );

    for (label, with_dictionary) in [("detectors+dictionary", true), ("detectors", false)] {
        let masker =
            Masker::new(rules(with_dictionary), b"bench secret of sixteen+ bytes").unwrap();
        for (name, values) in [("clean", &clean), ("1% sensitive", &dirty), ("long", &long)] {
            let mut out = Vec::new();
            let rewritten: Vec<_> = values
                .iter()
                .filter(|v| masker.mask_value(v, &mut out).is_some())
                .collect();
            eprintln!(
                "{label}: {} of {} {name} values rewritten",
                rewritten.len(),
                values.len()
            );
            for v in rewritten.iter().take(3) {
                eprintln!("  e.g. {}", String::from_utf8_lossy(v));
            }
        }
        let mut g = c.benchmark_group(format!("masking/{label}"));
        let cases = [
            ("mask clean", &clean),
            ("mask 1% sensitive", &dirty),
            ("mask clean long values", &long),
        ];
        for (name, values) in cases {
            g.throughput(Throughput::Bytes(bytes(values)));
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                let mut out = Vec::with_capacity(4096);
                b.iter(|| {
                    let mut rewritten = 0usize;
                    for v in values.iter() {
                        out.clear();
                        if masker.mask_value(v, &mut out).is_some() {
                            rewritten += 1;
                        }
                    }
                    rewritten
                })
            });
        }
        g.throughput(Throughput::Bytes(bytes(&clean)));
        let ac = masker.automaton().unwrap();
        g.bench_function(BenchmarkId::from_parameter("aho-corasick batch"), |b| {
            b.iter(|| ac.find_iter(&joined).count())
        });
        g.bench_function(BenchmarkId::from_parameter("aho-corasick per value"), |b| {
            b.iter(|| clean.iter().filter(|v| ac.is_match(v.as_slice())).count())
        });
        g.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
            let mut out = Vec::with_capacity(joined.len());
            b.iter(|| {
                out.clear();
                out.extend_from_slice(std::hint::black_box(&joined));
                out.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, masking);
criterion_main!(benches);
