//! Raw reads: one session's stored values exactly as appended, in key
//! order, chained by the hash of those bytes; a malformed key is reported
//! where it is and the scan goes on.

mod common;

use common::*;
use gatehouse_core::event::{decode, event_key, hash_of};
use gatehouse_store::{RawEvent, Reader, Store, StoreError};

fn raw(reader: &Reader, id: gatehouse_core::event::SessionId) -> Vec<RawEvent> {
    reader
        .raw_events(id)
        .collect::<Result<Vec<_>, _>>()
        .expect("raw values read back")
}

#[test]
fn raw_values_are_the_appended_bytes_and_chain_by_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), fsync()).unwrap();
    let writer = store.writer();
    // Adjacent ids, so a sloppy range scan would leak.
    let (a, b) = (sid(1_700_000_000_000, 1), sid(1_700_000_000_000, 2));
    let (ea, eb) = (session(a, "jti-a", 2), session(b, "jti-b", 1));
    writer.append_blocking(ea.clone()).unwrap();
    writer.append_blocking(eb.clone()).unwrap();

    let reader = store.reader().unwrap();
    for (id, appended) in [(a, &ea), (b, &eb)] {
        let stored = raw(&reader, id);
        assert_eq!(stored.len(), appended.len(), "exactly one session's values");
        for (n, (r, enc)) in stored.iter().zip(appended).enumerate() {
            assert_eq!(r.seq, n as u64);
            assert_eq!(r.value, enc.bytes.as_slice());
        }
        assert_eq!(decode(&stored[0].value).unwrap().prev, [0; 32]);
        for pair in stored.windows(2) {
            assert_eq!(
                hash_of(&pair[0].value),
                decode(&pair[1].value).unwrap().prev
            );
        }
    }
    assert!(raw(&reader, sid(1_700_000_000_000, 3)).is_empty());
    drop(reader);
    store.shutdown().unwrap();
}

#[test]
fn a_malformed_key_is_corrupt_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid(1_700_000_000_000, 1);
    let events = session(id, "jti", 1);
    let store = Store::open(dir.path(), fsync()).unwrap();
    // One call per event: each is an entry of its own, not a run.
    for e in &events {
        store.writer().append_blocking(vec![e.clone()]).unwrap();
    }
    store.shutdown().unwrap();

    // Behind the store's back: a key one byte too long, between #0 and #1.
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("events", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut key = event_key(id, 0).to_vec();
        key.push(0);
        ks.insert(key, &b"whatever"[..]).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }

    let reader = Reader::open(dir.path()).unwrap();
    let read: Vec<_> = reader.raw_events(id).collect();
    assert_eq!(read.len(), events.len() + 1);
    assert!(
        matches!(&read[1], Err(StoreError::Corrupt { what: "event", key, .. })
            if key.len() == 50),
        "{:?}",
        read[1]
    );
    let seqs: Vec<u64> = read
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
}
