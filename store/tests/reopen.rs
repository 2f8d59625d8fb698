//! What survives a restart: grant use counts, summaries of cut sessions,
//! and sessions continued after reopening.

mod common;

use common::*;
use gatehouse_core::event::Recorder;
use gatehouse_store::{Reader, Store, StoreError};

#[test]
fn grant_uses_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), fsync()).unwrap();
        let w = store.writer();
        // g1 is used twice (use 2 first, then a stale use 1 that must not
        // lower the count), g2 once.
        for (i, (jti, n)) in [("g1", 2), ("g1", 1), ("g2", 1)].into_iter().enumerate() {
            let mut rec = Recorder::new(sid(1_700_000_000_000 + i as u64, 0));
            w.append_blocking(vec![rec.record(1, opened(jti, n))])
                .unwrap();
        }
        assert_eq!(store.reader().unwrap().grant_use_count("g1").unwrap(), 2);
        store.shutdown().unwrap();
    }
    let store = Store::open(dir.path(), fsync()).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(
        reader.grant_uses().unwrap(),
        [("g1".to_string(), 2), ("g2".to_string(), 1)]
    );
    assert_eq!(reader.grant_use_count("g2").unwrap(), 1);
    assert_eq!(reader.grant_use_count("never").unwrap(), 0);

    // A third use after the restart counts on from what was stored.
    let mut rec = Recorder::new(sid(1_700_000_001_000, 0));
    store
        .writer()
        .append_blocking(vec![rec.record(1, opened("g1", 3))])
        .unwrap();
    assert_eq!(reader.grant_use_count("g1").unwrap(), 3);
    drop(reader);
    store.shutdown().unwrap();
}

#[test]
fn cut_session_keeps_its_summary_and_can_be_continued() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid(1_700_000_000_000, 7);
    let mut rec = Recorder::new(id);
    {
        let store = Store::open(dir.path(), os(1)).unwrap();
        let w = store.writer();
        w.append_blocking(vec![
            rec.record(1, opened("j", 1)),
            rec.record(2, statement("SELECT 1")),
        ])
        .unwrap();
        // Dropping without shutdown also drains and syncs.
        drop(w);
        drop(store);
    }

    let reader = Reader::open(dir.path()).unwrap();
    let s = reader.session(id).unwrap().unwrap();
    assert!(s.closed.is_none(), "cut: no close event");
    assert_eq!((s.events, s.statements), (2, 1));
    drop(reader);

    let store = Store::open(dir.path(), fsync()).unwrap();
    let w = store.writer();
    // Continuing needs the next sequence number, loaded from the store.
    let next = rec.record(3, closed(1));
    w.append_blocking(vec![next]).unwrap();
    let s = store.reader().unwrap().session(id).unwrap().unwrap();
    assert_eq!(s.events, 3);
    assert!(s.closed.is_some());

    store.clone().shutdown().unwrap();
    assert!(matches!(
        w.append_blocking(vec![rec.record(4, statement("late"))]),
        Err(StoreError::Closed)
    ));
    let mut other = Recorder::new(sid(1_700_000_002_000, 0));
    assert!(matches!(
        store
            .writer()
            .append_blocking(vec![other.record(1, opened("k", 1))]),
        Err(StoreError::Closed)
    ));
}

#[test]
fn revocations_survive_reopen() {
    use gatehouse_core::event::{Body, Revoked};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), fsync()).unwrap();
        for (i, jti) in ["g2", "g1"].into_iter().enumerate() {
            let mut rec = Recorder::new(sid(1_700_000_000_000 + i as u64, 0));
            let revoked = Body::Revoked(Revoked {
                jti: jti.into(),
                by: "alice".into(),
                reason: "leaked".into(),
            });
            store
                .writer()
                .append_blocking(vec![rec.record(10 + i as i64, revoked)])
                .unwrap();
        }
        store.shutdown().unwrap();
    }
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reader.revocations().unwrap(),
        [("g1".to_string(), 11), ("g2".to_string(), 10)]
    );
}
