//! The masking engine over realistic rows, beside its ceilings.
//!
//! A batch is ~64 KiB of DataRows of eleven columns (an id, a uuid, a name,
//! an amount, a status, two timestamps, a quantity, a city, a short note
//! and a free-text comment; ~28 bytes a value on average), masked as the
//! protocol layer masks them ([`FrameMasker::frame`]: one screen of the
//! whole row, then per-value work only for rows it flags). Throughput is
//! counted in column-value bytes (length prefixes are not counted).
//! Side by side:
//! - `rows clean`: no value holds anything sensitive;
//! - `rows 1% sensitive`: one value in a hundred carries an e-mail address,
//!   a card number, a phone number, an SSN or a token, and is rewritten;
//! - `row screen clean`: [`Masker::row_may_match`] alone over the clean
//!   rows;
//! - `values clean` / `values 1% sensitive`: the same values through
//!   [`Masker::mask_value`] one at a time (the path without the screen);
//! - the ceilings: `aho-corasick`, the rule set's own automaton over the
//!   same value bytes as one haystack, and `memcpy`, copying them;
//! - `values clean long`: ~1 KiB free-text values one at a time, the
//!   per-byte cost without most of the per-value one.
//!
//! After each group, when no filter is given (or one naming `cpu`), the
//! rows, per-value masking and the ceilings are run again for two seconds
//! each and their throughput printed per second of this thread's CPU time
//! (from `/proc/thread-self/schedstat`): on a shared machine criterion's
//! wall-clock figures also count the time other processes held the core.
//!
//! Two rule sets: every detector alone (20 keywords; values are screened
//! for the few bytes keywords need before the automaton runs), and every
//! detector with a case-insensitive dictionary of 12 customer names (32
//! patterns; too many screening bytes, so every value is searched).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::mask::{Detector, DictionaryRule, MaskRules, Masker, RowScratch, Strategy};
use gatehouse_core::pg::mask::FrameMasker;

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
const CITY: &[&str] = &[
    "Lisbon", "Osaka", "Toronto", "Lagos", "Oslo", "Pune", "Recife", "Lyon",
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
        5 | 10 => format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000)
        ),
        7 => (1 + rng.below(20)).to_string(),
        8 => rng.pick(CITY).to_owned(),
        9 => {
            let n = 2 + rng.below(5);
            (0..n)
                .map(|_| rng.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ")
        }
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

/// Columns of a row.
const COLUMNS: usize = 11;

/// ~64 KiB of rows of [`COLUMNS`] values; one value in `sensitive_every`
/// (if any) carries something to mask.
fn batch(sensitive_every: Option<usize>) -> Vec<Vec<Vec<u8>>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rows = Vec::new();
    let (mut total, mut count) = (0, 0);
    while total < BATCH {
        let mut values = Vec::new();
        for col in 0..COLUMNS {
            let mut v = value(&mut rng, rows.len(), col);
            if sensitive_every.is_some_and(|n| count % n == n / 2) {
                let extra = SENSITIVE[count % SENSITIVE.len()];
                v = format!("{v} {extra}");
            }
            total += v.len();
            count += 1;
            values.push(v.into_bytes());
        }
        rows.push(values);
    }
    rows
}

/// A DataRow body (the value count, then each value's length and bytes),
/// and where its values are.
fn data_row(values: &[Vec<u8>]) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut body = (values.len() as i16).to_be_bytes().to_vec();
    let mut ranges = Vec::new();
    for v in values {
        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
        ranges.push(body.len()..body.len() + v.len());
        body.extend_from_slice(v);
    }
    (body, ranges)
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
    let clean_rows = batch(None);
    let dirty_rows = batch(Some(100));
    let clean: Vec<Vec<u8>> = clean_rows.concat();
    let dirty: Vec<Vec<u8>> = dirty_rows.concat();
    let clean_frames: Vec<_> = clean_rows.iter().map(|r| data_row(r)).collect();
    let dirty_frames: Vec<_> = dirty_rows.iter().map(|r| data_row(r)).collect();
    let long = long_batch();
    let joined: Vec<u8> = clean.concat();
    let bytes = |b: &[Vec<u8>]| b.iter().map(Vec::len).sum::<usize>() as u64;
    let sensitive = dirty
        .iter()
        .filter(|v| SENSITIVE.iter().any(|s| v.ends_with(s.as_bytes())))
        .count();
    eprintln!(
        "batch: {} rows, {} values, {} value bytes ({} B a value), {} frame bytes; \
         {} values sensitive of {}; long: {} values, {} bytes",
        clean_rows.len(),
        clean.len(),
        bytes(&clean),
        bytes(&clean) / clean.len() as u64,
        clean_frames.iter().map(|f| f.0.len()).sum::<usize>(),
        sensitive,
        dirty.len(),
        long.len(),
        bytes(&long)
    );

    for (label, with_dictionary) in [("detectors+dictionary", true), ("detectors", false)] {
        let masker = Arc::new(
            Masker::new(rules(with_dictionary), b"bench secret of sixteen+ bytes").unwrap(),
        );
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
        // The row path rewrites exactly the rows the per-value path does.
        for (name, frames, rows) in [
            ("clean", &clean_frames, &clean_rows),
            ("1% sensitive", &dirty_frames, &dirty_rows),
        ] {
            let mut frame_masker = FrameMasker::new(masker.clone());
            let mut out = Vec::new();
            let mut flagged = 0;
            for (i, ((body, _), row)) in frames.iter().zip(rows.iter()).enumerate() {
                let by_row = frame_masker.frame(b'D', body, None, i as u32).is_some();
                let by_value = row.iter().any(|v| masker.mask_value(v, &mut out).is_some());
                assert_eq!(by_row, by_value);
                flagged += usize::from(by_row);
            }
            eprintln!("{label}: {flagged} of {} {name} rows rewritten", rows.len());
        }

        let mut g = c.benchmark_group(format!("masking/{label}"));
        for (name, frames, values) in [
            ("rows clean", &clean_frames, &clean),
            ("rows 1% sensitive", &dirty_frames, &dirty),
        ] {
            g.throughput(Throughput::Bytes(bytes(values)));
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                let mut frame_masker = FrameMasker::new(masker.clone());
                b.iter(|| {
                    let mut rewritten = 0usize;
                    for (i, (body, _)) in frames.iter().enumerate() {
                        if frame_masker.frame(b'D', body, None, i as u32).is_some() {
                            rewritten += 1;
                        }
                    }
                    frame_masker.take_summary();
                    rewritten
                })
            });
        }
        g.throughput(Throughput::Bytes(bytes(&clean)));
        g.bench_function(BenchmarkId::from_parameter("row screen clean"), |b| {
            let mut scratch = RowScratch::default();
            b.iter(|| {
                clean_frames
                    .iter()
                    .filter(|(body, ranges)| {
                        masker.row_may_match(body, ranges.iter().cloned(), &mut scratch)
                    })
                    .count()
            })
        });
        let cases = [
            ("values clean", &clean),
            ("values 1% sensitive", &dirty),
            ("values clean long", &long),
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
        g.bench_function(BenchmarkId::from_parameter("aho-corasick"), |b| {
            b.iter(|| ac.find_iter(&joined).count())
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

        if cpu_time_wanted() {
            eprintln!("masking/{label}, per second of CPU time (this thread's, from schedstat):");
            let mut frame_masker = FrameMasker::new(masker.clone());
            for (name, frames, values) in [
                ("rows clean", &clean_frames, &clean),
                ("rows 1% sensitive", &dirty_frames, &dirty),
            ] {
                per_cpu_second(name, bytes(values), || {
                    let rewritten = frames
                        .iter()
                        .enumerate()
                        .filter(|(i, (body, _))| {
                            frame_masker.frame(b'D', body, None, *i as u32).is_some()
                        })
                        .count();
                    frame_masker.take_summary();
                    rewritten
                });
            }
            let mut out = Vec::with_capacity(4096);
            per_cpu_second("values clean", bytes(&clean), || {
                clean
                    .iter()
                    .filter(|v| {
                        out.clear();
                        masker.mask_value(v, &mut out).is_some()
                    })
                    .count()
            });
            per_cpu_second("aho-corasick", bytes(&clean), || {
                ac.find_iter(&joined).count()
            });
            let mut copy = Vec::with_capacity(joined.len());
            per_cpu_second("memcpy", bytes(&clean), || {
                copy.clear();
                copy.extend_from_slice(black_box(&joined));
                copy.len()
            });
        }
    }
}

/// Whether to measure throughput per second of CPU time: when no filter
/// is given, or one naming `cpu`.
fn cpu_time_wanted() -> bool {
    const TAKES_VALUE: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--plotting-backend",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    let mut filters = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--profile-time" {
            return false;
        }
        if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters.is_empty() || filters.iter().any(|f| f.contains("cpu"))
}

/// This thread's time on a CPU so far, in nanoseconds (Linux; counted at
/// scheduler ticks, so only spans of seconds are accurate).
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Runs `f`, which goes over `bytes` bytes, for two seconds, and prints its
/// throughput per second of wall time and per second of this thread's CPU
/// time: on a shared machine the second is what one core does, the first
/// also counts the time other processes had the core.
fn per_cpu_second(name: &str, bytes: u64, mut f: impl FnMut() -> usize) {
    let (Some(cpu0), start) = (cpu_ns(), Instant::now()) else {
        return;
    };
    let mut iterations = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        black_box(f());
        iterations += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let Some(cpu1) = cpu_ns() else { return };
    let cpu = (cpu1 - cpu0) as f64 / 1e9;
    let total = (bytes * iterations) as f64;
    let mib = |secs: f64| total / secs / (1024.0 * 1024.0);
    eprintln!(
        "  {name}: {:.0} MiB/s per CPU-second ({:.3} GB/s), {:.0} MiB/s of wall time, \
         {:.0}% of it on a CPU",
        mib(cpu),
        total / cpu / 1e9,
        mib(wall),
        100.0 * cpu / wall
    );
}

criterion_group!(benches, masking);
criterion_main!(benches);
