//! Sealed archives: a time range exported from a store and imported into a
//! fresh directory reads back the same, and every kind of damage is named.

mod common;

use common::*;
use gatehouse_core::event::archive::{ArchiveError, HEADER_LEN, Item, decode_all};
use gatehouse_core::event::{Body, Recorder, Revoked, SessionId};
use gatehouse_store::archive::import_archive;
use gatehouse_store::{RawEvent, Reader, Store, StoreError};

const S: i64 = 1_000_000;

/// A session with events at the given seconds (the first one opens it).
fn at_seconds(id: SessionId, jti: &str, seconds: &[f64]) -> Vec<gatehouse_core::event::Encoded> {
    let mut rec = Recorder::new(id);
    seconds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = (s * S as f64) as i64;
            if i == 0 {
                rec.record(t, opened(jti, 1))
            } else {
                rec.record(t, statement("SELECT 1"))
            }
        })
        .collect()
}

fn raw(reader: &Reader, id: SessionId) -> Vec<RawEvent> {
    reader.raw_events(id).collect::<Result<_, _>>().unwrap()
}

/// A: opened at 1 s, busy until 4.5 s (in the range by its events);
/// B: 5 s to 5.2 s (started in it); C: from 9 s (after); D: 2 s to 3 s
/// (before); R: a revocation at 5.5 s.
fn store_with_sessions(dir: &std::path::Path) -> (Store, [SessionId; 5]) {
    let ids = [
        sid(1_000, 1),
        sid(5_000, 2),
        sid(9_000, 3),
        sid(2_000, 4),
        sid(5_500, 5),
    ];
    let store = Store::open(dir, fsync()).unwrap();
    let w = store.writer();
    w.append_blocking(at_seconds(ids[0], "jti-a", &[1.0, 2.0, 4.5]))
        .unwrap();
    w.append_blocking(at_seconds(ids[1], "jti-b", &[5.0, 5.1, 5.2]))
        .unwrap();
    w.append_blocking(at_seconds(ids[2], "jti-c", &[9.0, 9.5]))
        .unwrap();
    w.append_blocking(at_seconds(ids[3], "jti-d", &[2.0, 3.0]))
        .unwrap();
    let mut rec = Recorder::new(ids[4]);
    w.append_blocking(vec![rec.record(
        55 * S / 10,
        Body::Revoked(Revoked {
            jti: "jti-d".into(),
            by: "ops".into(),
            reason: "leaked".into(),
        }),
    )])
    .unwrap();
    store
        .checkpoint_writer()
        .unwrap()
        .write(0, b"checkpoint 0")
        .unwrap();
    (store, ids)
}

fn export(reader: &Reader, since: i64, until: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let exported = reader.export_archive(since, until, &mut out).unwrap();
    assert_eq!(exported.bytes, out.len() as u64);
    // Unsigned: the store does not sign.
    out.push(0);
    out
}

#[test]
fn a_time_range_round_trips_through_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (store, [a, b, c, d, r]) = store_with_sessions(dir.path());
    let reader = store.reader().unwrap();
    let bytes = export(&reader, 4 * S, 6 * S);

    let into = tempfile::tempdir().unwrap();
    let imported = import_archive(&bytes[..], &into.path().join("store")).unwrap();
    assert_eq!(
        (imported.header.since_us, imported.header.until_us),
        (4 * S, 6 * S)
    );
    assert_eq!(imported.signature, None);
    let copy = &imported.reader;

    // Exactly the sessions that started or had events in [4 s, 6 s).
    let ids: Vec<SessionId> = copy.sessions().map(|s| s.unwrap().id).collect();
    assert_eq!(ids, [a, b, r]);
    for id in [a, b, r] {
        assert_eq!(raw(copy, id), raw(&reader, id), "{id}");
        assert_eq!(copy.session(id).unwrap(), reader.session(id).unwrap());
    }
    for id in [c, d] {
        assert!(copy.session(id).unwrap().is_none());
        assert!(raw(copy, id).is_empty());
    }
    // Every grant use and revocation, whatever the range.
    assert_eq!(copy.grant_uses().unwrap(), reader.grant_uses().unwrap());
    assert_eq!(copy.grant_uses().unwrap().len(), 4);
    assert_eq!(copy.revocations().unwrap(), reader.revocations().unwrap());
    assert_eq!(copy.revocations().unwrap().len(), 1);
    // No checkpoint: they list sessions this range leaves out.
    let checkpoints = |r: &Reader| r.checkpoints().collect::<Result<Vec<_>, _>>().unwrap();
    assert!(checkpoints(copy).is_empty());
    // The whole store carries them.
    let whole = export(&reader, 0, i64::MAX);
    let imported = import_archive(&whole[..], &into.path().join("whole")).unwrap();
    assert_eq!(imported.reader.sessions().count(), 5);
    assert_eq!(
        checkpoints(&imported.reader),
        [(0, b"checkpoint 0".to_vec())]
    );
    // So does a range that leaves no session out.
    let all = export(&reader, 0, 10 * S);
    let imported = import_archive(&all[..], &into.path().join("all")).unwrap();
    assert_eq!(checkpoints(&imported.reader).len(), 1);
    drop(imported);

    // The same range exported again is the same bytes.
    assert_eq!(export(&reader, 4 * S, 6 * S), bytes);
    // An empty range still makes a valid archive.
    let empty = export(&reader, 100 * S, 200 * S);
    let imported = import_archive(&empty[..], &into.path().join("empty")).unwrap();
    assert_eq!(imported.reader.sessions().count(), 0);
    // Importing over a store is refused.
    assert!(matches!(
        import_archive(&bytes[..], &into.path().join("store")),
        Err(StoreError::InvalidOption(_))
    ));
    drop(reader);
    store.shutdown().unwrap();
}

#[test]
fn damage_is_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_sessions(dir.path());
    let good = export(&store.reader().unwrap(), 0, 10 * S);
    let items = decode_all(&good).unwrap();
    let trailer_at = (good.len() - 1 - 32) as u64;
    assert!(matches!(items.last(), Some(Item::Signature(None))));

    let into = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut import = |bytes: &[u8]| {
        n += 1;
        match import_archive(bytes, &into.path().join(n.to_string())) {
            Err(StoreError::Archive(e)) => e,
            other => panic!("{other:?}"),
        }
    };
    // A byte inside an event: the hash.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    assert_eq!(
        import(&flipped),
        ArchiveError::BadHash { offset: trailer_at }
    );
    // A byte of the hash itself.
    let mut flipped = good.clone();
    flipped[trailer_at as usize] ^= 0x80;
    assert_eq!(
        import(&flipped),
        ArchiveError::BadHash { offset: trailer_at }
    );
    // The first entry's tag: malformed at its offset.
    let mut flipped = good.clone();
    flipped[HEADER_LEN] = 0x7f;
    assert_eq!(
        import(&flipped),
        ArchiveError::Malformed {
            offset: HEADER_LEN as u64,
            reason: "unknown keyspace tag 127".into()
        }
    );
    // Cut short, anywhere.
    for cut in [10, HEADER_LEN + 5, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(import(&good[..cut]), ArchiveError::Truncated { offset, .. } if offset == cut as u64),
            "cut at {cut}"
        );
    }
    // Not an archive.
    let mut wrong = good.clone();
    wrong[0] = b'P';
    assert_eq!(import(&wrong), ArchiveError::BadMagic);
    assert_eq!(import(b"{\"error\": \"nope\"}"), ArchiveError::BadMagic);
    store.shutdown().unwrap();
}
