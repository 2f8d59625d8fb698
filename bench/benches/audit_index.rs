//! Audit queries over a large store: through the secondary indexes and
//! through a scan, side by side (issue 6: "over a store of 10 million
//! events, a query by relation or subject over a week returns in under a
//! second").
//!
//! The store: `GATEHOUSE_AUDIT_EVENTS` events (default 10,000,000) in
//! sessions of 22 events spread evenly over six weeks — `Opened` (one of
//! 200 subjects, 10 targets), four statements of five events each (the
//! client's `Query` frame, `Statement`, an allowed simple `Verdict` whose
//! accesses name one to three of 50 relations, a 200-byte result frame,
//! `CommandComplete`), and `Closed`. Events are recorded (rkyv + BLAKE3
//! chain) and submitted a session at a time with `os` durability, up to
//! 256 submissions in flight. Built once and kept under
//! `target/audit-index-store/v{STORE_VERSION}-{events}` (a `complete`
//! file marks a finished build); delete it to rebuild.
//!
//! The queries, over the third week (sessions started in it):
//! - `sessions by subject`: the sessions of one subject, with their
//!   summaries — `index`: `Reader::sessions_by` then each summary, what
//!   `gatehouse_replay::query::sessions` does with `--subject`; `scan`:
//!   every summary read and filtered, what it did before (and still does
//!   for filters without an index).
//! - `statements touching a relation`: `index`: `Reader::statements_by`,
//!   then per candidate its session's summary (the session filter), the
//!   `Verdict` event and the `Statement` before it (its text), what
//!   `query::statements` does with `--relation`; `scan`: the week's
//!   sessions selected from the summaries and all their events read and
//!   decoded, what `query::statements_scan` does. The bench cannot
//!   depend on `gatehouse-replay` (it sits above `store`), so these are the
//!   same reader calls, written out here.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_core::event::{
    Body, CloseReason, Closed, Decision, Direction, Frame, Opened, Recorder, SessionId, Statement,
    StatementProtocol, Verdict,
};
use gatehouse_store::{
    Durability, Reader, SessionIndex, SessionSummary, StatementIndex, Store, StoreOptions,
};

/// Bump when the generated store changes, so a cached one is rebuilt.
const STORE_VERSION: u32 = 1;
const EVENTS_PER_SESSION: u64 = 22;
const SUBJECTS: u64 = 200;
const TARGETS: u64 = 10;
const RELATIONS: u64 = 50;
const DAY_US: i64 = 86_400_000_000;
const WEEKS: i64 = 6;
/// 2026-10-01T00:00:00Z.
const T0_US: i64 = 1_790_812_800_000_000;

fn events_wanted() -> u64 {
    std::env::var("GATEHOUSE_AUDIT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn store_dir(events: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("audit-index-store")
        .join(format!("v{STORE_VERSION}-{events}"))
}

/// A cheap deterministic generator (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn session_id(at_us: i64, n: u64) -> SessionId {
    let ms = (at_us / 1000) as u64;
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    id[10..].copy_from_slice(&n.to_be_bytes()[2..]);
    SessionId(id)
}

fn subject(n: u64) -> String {
    format!("agent:worker-{n:03}")
}

fn relation(n: u64) -> String {
    format!("public.table_{n:02}")
}

fn frame(dir: Direction, len: usize) -> Body {
    Body::Frame(Frame {
        dir,
        bytes: Bytes::from(vec![b'x'; len]),
    })
}

/// Session `n` of `sessions`, started at its share of the six weeks.
fn session(n: u64, sessions: u64) -> Vec<gatehouse_core::event::Encoded> {
    let span = WEEKS * 7 * DAY_US;
    let start = T0_US + (i128::from(span) * i128::from(n) / i128::from(sessions.max(1))) as i64;
    let r = mix(n);
    let id = session_id(start, n);
    let mut rec = Recorder::new(id);
    let mut t = start;
    let mut out = Vec::with_capacity(EVENTS_PER_SESSION as usize);
    out.push(rec.record(
        t,
        Body::Opened(Opened {
            subject: subject(r % SUBJECTS),
            jti: format!("jti-{n}"),
            issuer: "gatehouse".into(),
            purpose: "nightly reconciliation".into(),
            ticket: Some(format!("OPS-{}", r % 1000)),
            target: format!("db-{}", (r >> 8) % TARGETS),
            client_user: "agent".into(),
            application_name: Some("worker".into()),
            client_addr: format!(
                "10.0.{}.{}:5{:04}",
                (r >> 16) % 4,
                (r >> 20) % 250,
                n % 10000
            ),
            tls: None,
            use_number: 1,
            max_uses: None,
            expires_at: (start / 1_000_000) + 3600,
        }),
    ));
    for s in 0..4u64 {
        let q = mix(r ^ s);
        let rels: Vec<String> = (0..1 + q % 3)
            .map(|i| relation(mix(q + i) % RELATIONS))
            .collect();
        let write = q.is_multiple_of(5);
        let kind = if write { "update" } else { "select" };
        let text = format!(
            "{} {} WHERE id = {}",
            if write { "UPDATE" } else { "SELECT * FROM" },
            rels.join(", "),
            q % 100_000
        );
        t += 1_000;
        out.push(rec.record(t, frame(Direction::ToUpstream, text.len() + 6)));
        out.push(rec.record(
            t,
            Body::Statement(Statement {
                protocol: StatementProtocol::Simple,
                text,
                statement_name: String::new(),
                portal: String::new(),
                params: Vec::new(),
            }),
        ));
        out.push(rec.record(
            t,
            Body::Verdict(Verdict {
                decision: Decision::Allow,
                protocol: StatementProtocol::Simple,
                statement_name: String::new(),
                text: String::new(),
                kinds: vec![kind.into()],
                accesses: rels.iter().map(|r| format!("{kind} on {r}")).collect(),
                reason: String::new(),
                approval: String::new(),
                approver: String::new(),
            }),
        ));
        t += 2_000;
        out.push(rec.record(t, frame(Direction::ToClient, 200)));
        out.push(rec.record(
            t,
            Body::CommandComplete {
                tag: "SELECT 1".into(),
            },
        ));
    }
    t += 1_000;
    out.push(rec.record(
        t,
        Body::Closed(Closed {
            reason: CloseReason::ClientTerminated,
            bytes_to_upstream: 400,
            bytes_to_client: 800,
            statements: 4,
            duration_us: (t - start) as u64,
            seal: None,
        }),
    ));
    out
}

/// Opens the cached store, building it first if absent.
fn store(events: u64) -> Reader {
    let dir = store_dir(events);
    let done = dir.join("complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir, events);
        std::fs::write(&done, b"").expect("mark the store complete");
    }
    Reader::open(&dir).expect("open the store")
}

fn build(dir: &Path, events: u64) {
    let sessions = events / EVENTS_PER_SESSION;
    eprintln!(
        "building {} events ({sessions} sessions) in {} (once)",
        sessions * EVENTS_PER_SESSION,
        dir.display()
    );
    let started = Instant::now();
    let store = Store::open(
        dir,
        StoreOptions {
            durability: Durability::Os {
                sync_interval: Duration::from_secs(1),
            },
            ..StoreOptions::default()
        },
    )
    .expect("open a store");
    let w = store.writer();
    let mut window = VecDeque::new();
    for n in 0..sessions {
        if window.len() >= 256 {
            gatehouse_store::Ack::wait_blocking(window.pop_front().expect("an ack"))
                .expect("appended");
        }
        window.push_back(w.submit_blocking(session(n, sessions)).expect("submit"));
        if n.is_multiple_of(50_000) && n > 0 {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  {n} sessions, {:.0} events/s",
                (n * EVENTS_PER_SESSION) as f64 / secs
            );
        }
    }
    for ack in window {
        ack.wait_blocking().expect("appended");
    }
    store.shutdown().expect("shut down");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "built in {secs:.1} s ({:.0} events/s)",
        (sessions * EVENTS_PER_SESSION) as f64 / secs
    );
}

fn week3() -> (i64, i64) {
    (T0_US + 14 * DAY_US, T0_US + 21 * DAY_US)
}

fn in_week(s: &SessionSummary, (since, until): (i64, i64)) -> bool {
    s.started_us >= since && s.started_us < until
}

fn subject_of(s: &SessionSummary) -> Option<&str> {
    s.opened.as_ref().map(|o| o.subject.as_str())
}

fn sessions_by_subject_index(r: &Reader, who: &str) -> usize {
    let week = week3();
    let mut ids = r
        .sessions_by(SessionIndex::Subject, who, Some(week.0), Some(week.1))
        .expect("index");
    ids.sort_unstable();
    let mut n = 0;
    for id in ids {
        let s = r.session(id).expect("summary").expect("a session");
        n += usize::from(in_week(&s, week) && subject_of(&s) == Some(who));
    }
    n
}

fn sessions_by_subject_scan(r: &Reader, who: &str) -> usize {
    let week = week3();
    r.sessions()
        .map(|s| s.expect("summary"))
        .filter(|s| in_week(s, week) && subject_of(s) == Some(who))
        .count()
}

fn touches(v: &Verdict, rel: &str) -> bool {
    v.accesses
        .iter()
        .any(|a| a.split_once(" on ").is_some_and(|(_, on)| on == rel))
}

/// Statements touching `rel`: (count, total text length) so nothing is
/// optimized away and both ways can be compared.
fn statements_by_relation_index(r: &Reader, rel: &str) -> (usize, usize) {
    let week = week3();
    let mut found = r
        .statements_by(StatementIndex::Relation, rel, Some(week.0), Some(week.1))
        .expect("index");
    found.sort_unstable();
    let (mut n, mut text) = (0, 0);
    let mut current: Option<(SessionId, bool)> = None;
    for (id, seq) in found {
        if !matches!(current, Some((have, _)) if have == id) {
            let s = r.session(id).expect("summary").expect("a session");
            current = Some((id, in_week(&s, week)));
        }
        if !matches!(current, Some((_, true))) {
            continue;
        }
        let event = r.event(id, seq).expect("event").expect("the verdict");
        let Body::Verdict(v) = event.body else {
            continue;
        };
        if !touches(&v, rel) {
            continue;
        }
        for e in r.events_in(id, 0..seq).rev() {
            match e.expect("event").body {
                Body::Statement(st) => {
                    text += st.text.len();
                    break;
                }
                Body::Verdict(_) => break,
                _ => {}
            }
        }
        n += 1;
    }
    (n, text)
}

fn statements_by_relation_scan(r: &Reader, rel: &str) -> (usize, usize) {
    let week = week3();
    let (mut n, mut text) = (0, 0);
    for s in r.sessions() {
        let s = s.expect("summary");
        if !in_week(&s, week) {
            continue;
        }
        let mut last = 0;
        for e in r.events(s.id) {
            match e.expect("event").body {
                Body::Statement(st) => last = st.text.len(),
                Body::Verdict(v) => {
                    let taken = std::mem::take(&mut last);
                    if touches(&v, rel) {
                        n += 1;
                        text += taken;
                    }
                }
                _ => {}
            }
        }
    }
    (n, text)
}

fn audit_index(c: &mut Criterion) {
    let events = events_wanted();
    let reader = store(events);
    let who = subject(7);
    let rel = relation(13);
    // Both ways give the same answer.
    let by_subject = sessions_by_subject_index(&reader, &who);
    assert_eq!(by_subject, sessions_by_subject_scan(&reader, &who));
    let by_relation = statements_by_relation_index(&reader, &rel);
    assert_eq!(by_relation, statements_by_relation_scan(&reader, &rel));
    eprintln!(
        "{events} events: {by_subject} sessions of {who} and {} statements touching {rel} in week 3",
        by_relation.0
    );

    let mut g = c.benchmark_group(format!("audit_index/{events}_events/week"));
    g.sample_size(10);
    g.bench_function("sessions by subject/index", |b| {
        b.iter(|| sessions_by_subject_index(&reader, &who))
    });
    g.bench_function("sessions by subject/scan", |b| {
        b.iter(|| sessions_by_subject_scan(&reader, &who))
    });
    g.bench_function("statements touching a relation/index", |b| {
        b.iter(|| statements_by_relation_index(&reader, &rel))
    });
    g.bench_function("statements touching a relation/scan", |b| {
        b.iter(|| statements_by_relation_scan(&reader, &rel))
    });
    g.finish();
}

criterion_group!(benches, audit_index);
criterion_main!(benches);
