//! The `checkpoints` keyspace: written beside the group commit, read back
//! in number order, never overwritten, still writable after the store is
//! shut down (the gateway's last checkpoint), and present (empty) in a
//! store made before it existed.

mod common;

use common::*;
use gatehouse_core::event::hash_of;
use gatehouse_store::{Reader, Store, StoreError};

#[test]
fn checkpoints_are_stored_in_order_and_never_overwritten() {
    for opts in [fsync(), os(5)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts).unwrap();
        let id = sid(1_700_000_000_000, 1);
        let events = session(id, "g1", 2);
        store.writer().append_blocking(events.clone()).unwrap();

        // What a checkpoint needs of a session: its count and its last
        // event's stored bytes, whose hash is the chain head.
        let reader = store.reader().unwrap();
        let count = reader.session(id).unwrap().unwrap().events;
        assert_eq!(count, events.len() as u64);
        let last = reader.raw_event(id, count - 1).unwrap().unwrap();
        let expected = events.last().unwrap();
        assert_eq!(last, expected.bytes.as_slice());
        assert_eq!(hash_of(&last), hash_of(&expected.bytes));
        assert_eq!(reader.raw_event(id, count).unwrap(), None);
        assert_eq!(reader.last_checkpoint().unwrap(), None);
        drop(reader);

        let writer = store.checkpoint_writer().unwrap();
        // Out of order on purpose: keys sort by number.
        writer.write(1, b"second").unwrap();
        writer.write(0, b"first").unwrap();
        assert!(matches!(
            writer.write(1, b"forged"),
            Err(StoreError::CheckpointExists(1))
        ));
        drop(writer);

        // The last one is written after the store is flushed and shut down,
        // through a handle taken before.
        let last_writer = store.checkpoint_writer().unwrap();
        store.shutdown().unwrap();
        last_writer.write(2, b"at shutdown").unwrap();
        drop(last_writer);

        let reader = Reader::open(dir.path()).unwrap();
        let all = reader.checkpoints().collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(
            all,
            [
                (0, b"first".to_vec()),
                (1, b"second".to_vec()),
                (2, b"at shutdown".to_vec()),
            ]
        );
        assert_eq!(
            reader.last_checkpoint().unwrap(),
            Some((2, b"at shutdown".to_vec()))
        );
        // The events are untouched by it.
        assert_eq!(reader.events(id).count(), events.len());
    }
}

#[test]
fn a_store_made_without_the_keyspace_gets_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    // A store as an older build left it: every keyspace but `checkpoints`.
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        for name in ["events", "sessions", "grant_uses", "revocations"] {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap();
        }
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(
            "event_format",
            &gatehouse_core::event::FORMAT_VERSION.to_be_bytes()[..],
        )
        .unwrap();
        meta.insert(
            "store_format",
            &gatehouse_store::STORE_FORMAT_VERSION.to_be_bytes()[..],
        )
        .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(reader.checkpoints().count(), 0);
    assert_eq!(reader.last_checkpoint().unwrap(), None);
    drop(reader);
    let store = Store::open(dir.path(), fsync()).unwrap();
    store.checkpoint_writer().unwrap().write(0, b"x").unwrap();
    store.shutdown().unwrap();
}
