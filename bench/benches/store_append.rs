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

use std::sync::atomic::{AtomicU16, Ordering};
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
    static N: AtomicU16 = AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&1_764_000_000_000u64.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    id[14..].copy_from_slice(&n.to_be_bytes());
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

criterion_group! {
    name = benches;
    // fsync appends take milliseconds: few samples, short runs, so the
    // whole file finishes in about a minute.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
