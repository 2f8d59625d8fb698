//! Many concurrent appenders, from threads and from async tasks: every
//! acknowledged event is present, in order, in both durability modes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use gatehouse_core::event::Recorder;
use gatehouse_store::{Store, StoreOptions};

fn concurrent_threads(opts: StoreOptions) {
    const THREADS: u16 = 8;
    const SESSIONS: u16 = 4;
    const QUERIES: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let w = store.writer();
            let acked = acked.clone();
            scope.spawn(move || {
                for s in 0..SESSIONS {
                    let id = sid(1_700_000_000_000 + u64::from(s), t);
                    // One submission per event: the worst case for fsync.
                    for e in session(id, "g", QUERIES) {
                        w.append_blocking(vec![e]).unwrap();
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let per_session = QUERIES * 3 + 2;
    let total = u64::from(THREADS * SESSIONS) * per_session;
    assert_eq!(acked.load(Ordering::Relaxed), total);

    let stats = store.stats();
    assert_eq!(
        (stats.submissions, stats.events, stats.refused),
        (total, total, 0)
    );
    assert!(stats.batches <= stats.submissions);
    eprintln!(
        "{} submissions in {} batches, {} syncs",
        stats.submissions, stats.batches, stats.syncs
    );

    let reader = store.reader().unwrap();
    let summaries: Vec<_> = reader.sessions().map(Result::unwrap).collect();
    assert_eq!(summaries.len(), usize::from(THREADS * SESSIONS));
    assert!(summaries.windows(2).all(|p| p[0].id < p[1].id));
    for s in &summaries {
        assert_eq!(s.events, per_session);
        assert!(s.closed.is_some());
        let seqs: Vec<u64> = reader.events(s.id).map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs, (0..per_session).collect::<Vec<_>>());
    }
    store.shutdown().unwrap();
}

#[test]
fn concurrent_threads_fsync() {
    concurrent_threads(StoreOptions {
        queue_capacity: 4,
        max_batch: 16,
        ..fsync()
    });
}

#[test]
fn concurrent_threads_os() {
    concurrent_threads(os(2));
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_tasks_append_and_submit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            queue_capacity: 2,
            ..fsync()
        },
    )
    .unwrap();
    let mut tasks = Vec::new();
    for n in 0..32u16 {
        let w = store.writer();
        tasks.push(tokio::spawn(async move {
            let id = sid(1_700_000_000_000, n);
            let mut events = session(id, "g", 2).into_iter();
            // The opening is appended (audit before forward); the rest is
            // submitted and its acks awaited at the end.
            w.append(vec![events.next().unwrap()]).await.unwrap();
            let mut acks = Vec::new();
            for e in events {
                acks.push(w.submit(vec![e]).await.unwrap());
            }
            for ack in acks {
                ack.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reader = store.reader().unwrap();
    assert_eq!(reader.sessions().count(), 32);
    assert!(reader.sessions().all(|s| s.unwrap().events == 8));
    drop(reader);
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn dropped_acks_still_get_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(50)).unwrap();
    let w = store.writer();
    let mut rec = Recorder::new(sid(1_700_000_000_000, 0));
    for i in 0..100 {
        let body = if i == 0 {
            opened("g", 1)
        } else {
            statement("SELECT 1")
        };
        drop(w.submit_blocking(vec![rec.record(i, body)]).unwrap());
    }
    let reader = store.reader().unwrap();
    store.shutdown().unwrap();
    assert_eq!(
        reader
            .session(sid(1_700_000_000_000, 0))
            .unwrap()
            .unwrap()
            .events,
        100
    );
}

#[test]
fn os_mode_syncs_an_idle_writer_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(20)).unwrap();
    let mut rec = Recorder::new(sid(1_700_000_000_000, 0));
    store
        .writer()
        .append_blocking(vec![rec.record(0, opened("g", 1))])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.stats().syncs == 0 {
        assert!(std::time::Instant::now() < deadline, "no sync while idle");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Nothing new written: no further syncs.
    let syncs = store.stats().syncs;
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(store.stats().syncs, syncs);
    store.shutdown().unwrap();
}

/// Submits one session's `n` events one per submission without waiting
/// (pipelined), then waits for every acknowledgement.
fn pipeline(w: &gatehouse_store::Writer, worker: u16, n: i64) {
    let mut rec = Recorder::new(sid(1_700_000_000_000, worker));
    let acks: Vec<_> = (0..n)
        .map(|i| {
            let body = if i == 0 {
                opened("g", 1)
            } else {
                statement("SELECT 1")
            };
            w.submit_blocking(vec![rec.record(i, body)]).unwrap()
        })
        .collect();
    for ack in acks {
        ack.wait_blocking().unwrap();
    }
}

/// Submissions that queue up while the writer is busy share one batch and
/// one fsync: many pipelined submissions, far fewer batches and syncs.
#[test]
fn queued_submissions_share_batches_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    pipeline(&store.writer(), 9, 500);
    let stats = store.stats();
    eprintln!(
        "{} submissions in {} batches, {} syncs",
        stats.submissions, stats.batches, stats.syncs
    );
    assert_eq!(stats.submissions, 500);
    // Without group commit every submission would be its own batch and
    // fsync. Queueing 500 submissions takes far less than 500 fsyncs, so
    // most of them must have shared one.
    assert!(stats.batches < 250, "{} batches", stats.batches);
    assert!(stats.syncs < 250, "{} syncs", stats.syncs);
    store.shutdown().unwrap();
}

/// In `Os` mode a caller commits inline when nothing is queued; pipelined
/// submissions of one session, racing a second thread's, still land in
/// order, whichever way each one took.
#[test]
fn os_mode_pipelined_submissions_stay_in_order_inline_or_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(2)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..2u16 {
            let w = store.writer();
            scope.spawn(move || pipeline(&w, t, 500));
        }
    });
    let stats = store.stats();
    assert_eq!((stats.submissions, stats.refused), (1000, 0));
    assert!(stats.inline <= stats.submissions);
    let reader = store.reader().unwrap();
    for t in 0..2u16 {
        let id = sid(1_700_000_000_000, t);
        let seqs: Vec<u64> = reader.events(id).map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs, (0..500).collect::<Vec<_>>());
    }
    drop(reader);
    store.shutdown().unwrap();
}

/// One appender at a time in `Os` mode: nothing is ever queued, so every
/// submission is committed inline on the caller's thread; `Fsync` mode
/// never commits inline (group commit needs the queue).
#[test]
fn os_mode_commits_a_lone_appender_inline_and_fsync_mode_never() {
    // A long sync interval: a periodic sync holds the commit state, and an
    // append that meets it queues instead (correctly, but not this test).
    for (opts, inline) in [(os(10_000), true), (fsync(), false)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts).unwrap();
        let w = store.writer();
        let mut rec = Recorder::new(sid(1_700_000_000_000, 3));
        for i in 0..20 {
            let body = if i == 0 {
                opened("g", 1)
            } else {
                statement("SELECT 1")
            };
            w.append_blocking(vec![rec.record(i, body)]).unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.submissions, 20);
        if inline {
            // The writer thread takes the commit state briefly when it
            // starts and after each queued commit; an append that meets it
            // there queues (correctly). On a loaded machine that happens
            // now and then, never for most.
            assert!(stats.inline >= 15, "{stats:?}");
        } else {
            assert_eq!(stats.inline, 0, "{stats:?}");
        }
        store.shutdown().unwrap();
    }
}
