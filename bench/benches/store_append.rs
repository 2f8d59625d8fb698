//! Appending events to the store: what "audit before forward" costs.
//!
//! A session's typical events, each appended on its own with
//! `Writer::append_blocking` (one submission per event, the gateway's worst
//! case): a ~100-byte frame event (a short query or a `ReadyForQuery`), a
//! statement event, and a 16 KiB result frame event. Side by side:
//! - durability `fsync` (group commit) and `os` (fsync every 50 ms);
//! - one appender, and 8 threads appending to 8 sessions at once: with
//!   `fsync`, submissions queued together share one fsync, so the concurrent
//!   figure is the group-commit throughput.
//!
//! Events are recorded (rkyv + BLAKE3 chain) before the clock starts: only
//! the append is timed. The reported time is wall time per event (for the
//! concurrent case: total wall time / events appended by all threads), so
//! the throughput is events/s. The store lives in a tempdir under cargo's
//! target directory (a real disk, not tmpfs, so fsync is real).
//!
//! `store_pipelined/*` measures throughput under load instead (issue 7's
//! "≥ 1,000,000 events/s with group commit"): 8 appender threads, each with
//! 4 sessions of its own, submit 100 B frame events (`Writer::submit_blocking`)
//! in submissions of 1, 4 or 16 events of one session (a response chunk;
//! a statement's frame, statement and verdict events; a pipelined batch),
//! keeping up to 64 `Ack`s outstanding as a gateway does for response
//! records. Events are recorded (encoded and chained) on the appender
//! threads before the clock starts, so the figure is the store's append
//! path alone; `store_pipelined/encode` gives the recording cost beside it.
//! In the same group, the ceiling: fjall's own `batch()` of the same kind
//! of keys and values, 64 or 1024 inserts per batch, one thread, into a
//! fresh keyspace, with the same durability (`SyncData` per batch for
//! `fsync`; fjall's default, written to the OS, for `os`). That is one
//! insert per event, as the store wrote until store format 3; the store
//! now writes a submission's events of one session as one entry (a run)
//! and joins runs that continue each other in a batch, so it can exceed
//! this "ceiling" (`bench/RESULTS.md`).

use std::collections::VecDeque;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_core::event::{
    Body, Direction, Encoded, Frame, Opened, Recorder, SessionId, Statement, StatementProtocol,
};
use gatehouse_store::{Durability, Store, StoreOptions, Writer};

/// Concurrent appenders in the concurrent case.
const THREADS: u64 = 8;

/// A fresh UUIDv7-shaped session id per call, so sessions never collide.
fn next_session() -> SessionId {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&1_764_000_000_000u64.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    id[12..].copy_from_slice(&n.to_be_bytes());
    SessionId(id)
}

#[derive(Clone, Copy)]
enum Kind {
    SmallFrame,
    Statement,
    ResultFrame,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SmallFrame => "100 B frame event",
            Kind::Statement => "statement event",
            Kind::ResultFrame => "16 KiB frame event",
        }
    }

    fn body(self, small: &Bytes, large: &Bytes) -> Body {
        match self {
            Kind::SmallFrame => Body::Frame(Frame {
                dir: Direction::ToUpstream,
                bytes: small.clone(),
            }),
            Kind::ResultFrame => Body::Frame(Frame {
                dir: Direction::ToClient,
                bytes: large.clone(),
            }),
            Kind::Statement => Body::Statement(Statement {
                protocol: StatementProtocol::Simple,
                text: "SELECT id, email, status FROM customers WHERE id = 42".into(),
                statement_name: String::new(),
                portal: String::new(),
                params: Vec::new(),
            }),
        }
    }
}

fn opened() -> Body {
    Body::Opened(Opened {
        subject: "agent-7".into(),
        jti: "bench".into(),
        issuer: "gatehouse".into(),
        purpose: "benchmark".into(),
        ticket: None,
        target: "orders".into(),
        client_user: "agent".into(),
        application_name: Some("psql".into()),
        client_addr: "127.0.0.1:5000".into(),
        tls: None,
        use_number: 1,
        max_uses: None,
        expires_at: 2_000_000_000,
    })
}

/// A new session, its `Opened` event already appended, and `n` events of
/// `kind` recorded for it.
fn session(w: &Writer, kind: Kind, n: u64) -> Vec<Encoded> {
    let small = Bytes::from(vec![b'x'; 100]);
    let large = Bytes::from(vec![b'y'; 16 * 1024]);
    let mut rec = Recorder::new(next_session());
    w.append_blocking(vec![rec.record(0, opened())])
        .expect("append the opening");
    (0..n)
        .map(|i| rec.record(i as i64 + 1, kind.body(&small, &large)))
        .collect()
}

/// Appends `iters` events of `kind` from `threads` threads, one submission
/// per event; the wall time of the appends alone.
fn run(store: &Store, kind: Kind, threads: u64, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let batches: Vec<(Writer, Vec<Encoded>)> = (0..threads)
        .map(|_| {
            let w = store.writer();
            let events = session(&w, kind, per_thread);
            (w, events)
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (w, events) in batches {
            scope.spawn(move || {
                for e in events {
                    w.append_blocking(vec![e]).expect("append");
                }
            });
        }
    });
    // Scale to `iters` when rounding up gave some threads an extra event.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_thread * threads) as f64)
}

fn bench(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (dname, durability) in [
        ("fsync", Durability::Fsync),
        (
            "os",
            Durability::Os {
                sync_interval: Duration::from_millis(50),
            },
        ),
    ] {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let store = Store::open(
            dir.path(),
            StoreOptions {
                durability,
                ..StoreOptions::default()
            },
        )
        .expect("open the store");
        let mut g = c.benchmark_group(format!("store_append/{dname}"));
        g.throughput(Throughput::Elements(1));
        for kind in [Kind::SmallFrame, Kind::Statement, Kind::ResultFrame] {
            for threads in [1, THREADS] {
                let id = BenchmarkId::new(kind.name(), format!("{threads} appender(s)"));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| run(&store, kind, threads, iters))
                });
            }
        }
        g.finish();
        let stats = store.stats();
        eprintln!(
            "{dname}: {} submissions in {} batches, {} syncs",
            stats.submissions, stats.batches, stats.syncs
        );
        store.shutdown().expect("shutdown");
    }
}

// ---- Throughput under load: pipelined appenders, group commit ----

/// Appenders in the throughput benchmark, each a thread with its own
/// sessions.
const PIPE_APPENDERS: usize = 8;
/// Sessions per appender; its submissions go to them in turn.
const SESSIONS_PER_APPENDER: usize = 4;
/// Outstanding [`gatehouse_store::Ack`]s per appender: a submission waits
/// for the oldest ack once this many are pending.
const WINDOW: usize = 64;

/// A 100-byte frame event's body; directions alternate as in a session.
fn frame_body(small: &Bytes, i: u64) -> Body {
    let dir = if i.is_multiple_of(2) {
        Direction::ToUpstream
    } else {
        Direction::ToClient
    };
    Body::Frame(Frame {
        dir,
        bytes: small.clone(),
    })
}

/// At least `events` 100 B frame events, recorded for `sessions` new
/// sessions (their `Opened` events handed to `opened`), cut into
/// submissions of `per_submission` events of one session each, the
/// sessions taking turns.
fn submissions(
    sessions: usize,
    per_submission: usize,
    events: u64,
    mut opened_event: impl FnMut(Encoded),
) -> Vec<Vec<Encoded>> {
    let small = Bytes::from(vec![b'x'; 100]);
    let mut recs: Vec<Recorder> = (0..sessions)
        .map(|_| {
            let mut rec = Recorder::new(next_session());
            opened_event(rec.record(0, opened()));
            rec
        })
        .collect();
    let n = (events as usize).div_ceil(per_submission);
    (0..n)
        .map(|i| {
            let rec = &mut recs[i % sessions];
            (0..per_submission)
                .map(|_| {
                    let seq = rec.recorded();
                    rec.record(seq as i64, frame_body(&small, seq))
                })
                .collect()
        })
        .collect()
}

/// `iters` events appended by [`PIPE_APPENDERS`] threads in submissions of
/// `per_submission`, each thread keeping up to [`WINDOW`] acks
/// outstanding. Events are recorded on the threads before the clock
/// starts; the time is from all threads starting to the last ack.
fn pipelined(store: &Store, per_submission: usize, iters: u64, cpu: &mut CpuTally) -> Duration {
    let per_thread = iters.div_ceil(PIPE_APPENDERS as u64);
    let barrier = Barrier::new(PIPE_APPENDERS + 1);
    let (start, appended) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..PIPE_APPENDERS)
            .map(|_| {
                let w = store.writer();
                let barrier = &barrier;
                scope.spawn(move || {
                    let subs =
                        submissions(SESSIONS_PER_APPENDER, per_submission, per_thread, |o| {
                            w.append_blocking(vec![o]).expect("append the opening")
                        });
                    let events = (subs.len() * per_submission) as u64;
                    barrier.wait();
                    submit_windowed(&w, subs);
                    events
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let ticks = cpu_ticks();
        let appended: u64 = threads
            .into_iter()
            .map(|t| t.join().expect("appender"))
            .sum();
        cpu.add(appended, cpu_ticks() - ticks);
        (start, appended)
    });
    start.elapsed().mul_f64(iters as f64 / appended as f64)
}

/// One appender's timed part: submits each submission, waiting for the
/// oldest ack when [`WINDOW`] are outstanding, then for the rest.
/// Not inlined, so that a profiler can count its instructions alone
/// (`valgrind --tool=callgrind --toggle-collect='*submit_windowed*'`).
#[inline(never)]
fn submit_windowed(w: &Writer, subs: Vec<Vec<Encoded>>) {
    let mut window = VecDeque::with_capacity(WINDOW);
    for sub in subs {
        if window.len() == WINDOW
            && let Some(ack) = window.pop_front()
        {
            gatehouse_store::Ack::wait_blocking(ack).expect("ack");
        }
        window.push_back(w.submit_blocking(sub).expect("submit"));
    }
    for ack in window {
        ack.wait_blocking().expect("ack");
    }
}

/// The ceiling: the same kind of events (keys and values), inserted with
/// fjall's own `batch()`, `per_batch` inserts per batch, into a fresh
/// keyspace, from one thread. `fsync`: each batch commits with
/// `PersistMode::SyncData`, as the store's do.
fn fjall_batches(
    db: &fjall::Database,
    ks: &fjall::Keyspace,
    fsync: bool,
    per_batch: usize,
    iters: u64,
    cpu: &mut CpuTally,
) -> Duration {
    let subs = submissions(SESSIONS_PER_APPENDER * PIPE_APPENDERS, 16, iters, |_| {});
    let events: Vec<Encoded> = subs.into_iter().flatten().collect();
    let start = Instant::now();
    let ticks = cpu_ticks();
    fjall_insert(db, ks, fsync, per_batch, &events);
    cpu.add(events.len() as u64, cpu_ticks() - ticks);
    start.elapsed().mul_f64(iters as f64 / events.len() as f64)
}

/// The ceiling's timed part; not inlined, for profilers.
#[inline(never)]
fn fjall_insert(
    db: &fjall::Database,
    ks: &fjall::Keyspace,
    fsync: bool,
    per_batch: usize,
    events: &[Encoded],
) {
    for chunk in events.chunks(per_batch) {
        let mut batch = db.batch();
        if fsync {
            batch = batch.durability(Some(fjall::PersistMode::SyncData));
        }
        for e in chunk {
            batch.insert(ks, &e.key[..], &e.bytes[..]);
        }
        batch.commit().expect("fjall batch");
    }
}

/// The process's CPU time so far (all threads, fjall's workers included),
/// in clock ticks (`/proc/self/stat` utime + stime); 0 where unreadable.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields 14 and 15 of the line; the text after the name starts at field 3.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    next() + next()
}

/// CPU time spent in the timed parts of one benchmark, over all its
/// samples: a figure less at the mercy of other load than wall time
/// (a loaded machine stretches wall time; CPU time per event much less).
#[derive(Default)]
struct CpuTally {
    events: u64,
    ticks: u64,
}

impl CpuTally {
    fn add(&mut self, events: u64, ticks: u64) {
        self.events += events;
        self.ticks += ticks;
    }

    fn report(&self, what: &str) {
        // Clock ticks are 10 ms on Linux (USER_HZ = 100).
        let us = self.ticks as f64 * 10_000.0 / self.events.max(1) as f64;
        eprintln!(
            "{what}: CPU {us:.2} µs/event, all threads ({} events, {:.2} s CPU)",
            self.events,
            self.ticks as f64 / 100.0
        );
    }
}

/// Events per fjall batch in the ceiling.
const CEILING_BATCHES: [usize; 2] = [64, 1024];

fn throughput(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    {
        let mut g = c.benchmark_group("store_pipelined/encode");
        g.throughput(Throughput::Elements(1));
        let small = Bytes::from(vec![b'x'; 100]);
        let mut rec = Recorder::new(next_session());
        g.bench_function("record a 100 B frame event (not timed below)", |b| {
            b.iter(|| {
                let seq = rec.recorded();
                rec.record(seq as i64, frame_body(&small, seq))
            })
        });
        g.finish();
    }
    for (dname, durability) in [
        ("fsync", Durability::Fsync),
        (
            "os",
            Durability::Os {
                sync_interval: Duration::from_millis(50),
            },
        ),
    ] {
        let fsync = durability == Durability::Fsync;
        let mut g = c.benchmark_group(format!("store_pipelined/{dname}"));
        g.throughput(Throughput::Elements(1));
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let store = Store::open(
            dir.path(),
            StoreOptions {
                durability,
                ..StoreOptions::default()
            },
        )
        .expect("open the store");
        for per_submission in [1, 4, 16] {
            let before = store.stats();
            let id = BenchmarkId::new(
                format!("store, {PIPE_APPENDERS} appenders x {WINDOW} acks"),
                format!("{per_submission} ev/submission"),
            );
            let mut cpu = CpuTally::default();
            g.bench_function(id, |b| {
                b.iter_custom(|iters| pipelined(&store, per_submission, iters, &mut cpu))
            });
            cpu.report(&format!("{dname}, store, {per_submission} ev/submission"));
            let after = store.stats();
            let batches = (after.batches - before.batches).max(1);
            eprintln!(
                "{dname}, {per_submission} ev/submission: {} events, {:.1} events and {:.1} submissions per batch, {} syncs, {} inline",
                after.events - before.events,
                (after.events - before.events) as f64 / batches as f64,
                (after.submissions - before.submissions) as f64 / batches as f64,
                after.syncs - before.syncs,
                after.inline - before.inline,
            );
        }
        store.shutdown().expect("shutdown");
        drop(dir);
        for per_batch in CEILING_BATCHES {
            let dir = tempfile::tempdir_in(root).expect("tempdir");
            let db = fjall::Database::builder(dir.path()).open().expect("fjall");
            let ks = db
                .keyspace("events", fjall::KeyspaceCreateOptions::default)
                .expect("keyspace");
            let id = BenchmarkId::new("fjall batch(), 1 thread", format!("{per_batch} ev/batch"));
            let mut cpu = CpuTally::default();
            g.bench_function(id, |b| {
                b.iter_custom(|iters| fjall_batches(&db, &ks, fsync, per_batch, iters, &mut cpu))
            });
            cpu.report(&format!("{dname}, fjall, {per_batch} ev/batch"));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // fsync appends take milliseconds: few samples, short runs, so the
    // whole file finishes in about a minute.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench, throughput
}
criterion_main!(benches);
