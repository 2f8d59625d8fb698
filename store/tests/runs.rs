//! Runs of events: what one call appends for one session is stored under
//! one key, and reads exactly like the same events stored one per key
//! (which is how store format 2 stored them, and how a lone event is
//! still stored). Damage inside a run is reported where it is.

mod common;

use common::*;
use gatehouse_core::event::{Encoded, Event, decode, hash_of};
use gatehouse_store::{Reader, STORE_FORMAT_VERSION, Store, StoreError};

/// Appends `events` in calls of the given sizes (the rest in one call).
fn append_in(dir: &std::path::Path, events: &[Encoded], sizes: &[usize]) {
    let store = Store::open(dir, fsync()).unwrap();
    let writer = store.writer();
    let mut rest = events;
    for &n in sizes {
        let (now, later) = rest.split_at(n.min(rest.len()));
        writer.append_blocking(now.to_vec()).unwrap();
        rest = later;
    }
    if !rest.is_empty() {
        writer.append_blocking(rest.to_vec()).unwrap();
    }
    store.shutdown().unwrap();
}

/// How many entries the `events` keyspace holds.
fn entries(dir: &std::path::Path) -> usize {
    let db = fjall::Database::builder(dir).open().unwrap();
    let events = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    events.iter().count()
}

fn all(it: impl Iterator<Item = Result<Event, StoreError>>) -> Vec<Event> {
    it.collect::<Result<_, _>>().unwrap()
}

#[test]
fn runs_read_exactly_like_single_events() {
    let id = sid(1_700_000_000_000, 1);
    let events = session(id, "jti", 6); // 20 events
    let (runs, singles) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    append_in(runs.path(), &events, &[1, 3, 1, 1, 5, 2]);
    append_in(singles.path(), &events, &[1; 20]);
    assert_eq!(
        entries(runs.path()),
        7,
        "calls of 1, 3, 1, 1, 5, 2, 7 events"
    );
    assert_eq!(entries(singles.path()), 20);

    let n = events.len() as u64;
    let expected: Vec<Event> = events.iter().map(|e| decode(&e.bytes).unwrap()).collect();
    for dir in [runs.path(), singles.path()] {
        let r = Reader::open(dir).unwrap();
        assert_eq!(all(r.events(id)), expected);
        let mut back = all(r.events(id).rev());
        back.reverse();
        assert_eq!(back, expected);
        let raw: Vec<_> = r.raw_events(id).collect::<Result<_, _>>().unwrap();
        assert_eq!(raw.len(), events.len());
        for (seq, (stored, appended)) in raw.iter().zip(&events).enumerate() {
            assert_eq!(stored.seq, seq as u64);
            assert_eq!(stored.value, appended.bytes.as_slice());
        }
        for seq in 0..n {
            let at = seq as usize;
            assert_eq!(r.event(id, seq).unwrap().as_ref(), Some(&expected[at]));
            assert_eq!(
                r.raw_event(id, seq).unwrap().as_deref(),
                Some(events[at].bytes.as_slice())
            );
        }
        assert_eq!(r.event(id, n).unwrap(), None);
        assert_eq!(r.raw_event(id, n).unwrap(), None);
        assert_eq!(r.event(sid(1_700_000_000_000, 2), 0).unwrap(), None);
        // Every range, from both ends: runs cut at either end.
        for start in 0..=n {
            for end in start..=n + 1 {
                let want = &expected[start as usize..end.min(n) as usize];
                assert_eq!(all(r.events_in(id, start..end)), want, "{start}..{end}");
                let mut back = all(r.events_in(id, start..end).rev());
                back.reverse();
                assert_eq!(back, want, "{start}..{end} reversed");
            }
        }
        let s = r.session(id).unwrap().unwrap();
        assert_eq!(s.events, n);
    }
}

#[test]
fn runs_and_single_events_mix_with_other_sessions_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sid(1_700_000_000_000, 1), sid(1_700_000_000_000, 2));
    let (ea, eb) = (session(a, "a", 3), session(b, "b", 3));
    let store = Store::open(dir.path(), os(5)).unwrap();
    let writer = store.writer();
    // One call with both sessions' events, interleaved: a run per stretch.
    let mixed: Vec<Encoded> = ea[..3]
        .iter()
        .chain(&eb[..2])
        .chain(&ea[3..5])
        .cloned()
        .collect();
    writer.append_blocking(mixed).unwrap();
    writer.append_blocking(eb[2..].to_vec()).unwrap();
    writer.append_blocking(ea[5..].to_vec()).unwrap();
    let r = store.reader().unwrap();
    for (id, events) in [(a, &ea), (b, &eb)] {
        let read: Vec<Event> = all(r.events(id));
        let want: Vec<Event> = events.iter().map(|e| decode(&e.bytes).unwrap()).collect();
        assert_eq!(read, want);
    }
    drop(r);
    store.shutdown().unwrap();
}

#[test]
fn damage_inside_a_run_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid(1_700_000_000_000, 1);
    let events = session(id, "jti", 2); // 8 events
    append_in(dir.path(), &events, &[2]); // runs #0..#1 and #2..#7
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    let ks = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let (key, value) = ks.iter().last().unwrap().into_inner().unwrap();
    assert_eq!(key.len(), 32);

    // A byte changed in #4's archive: the values read back, #4's differs,
    // and the chain gives it away.
    let mut changed = value.to_vec();
    let at4: usize = events[2..4]
        .iter()
        .map(|e| 4 + e.bytes.len())
        .sum::<usize>()
        + 4;
    changed[at4 + events[4].bytes.len() - 1] ^= 0xff;
    ks.insert(key.to_vec(), changed).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    drop((ks, db));
    let r = Reader::open(dir.path()).unwrap();
    let raw: Vec<_> = r.raw_events(id).collect::<Result<_, _>>().unwrap();
    assert_eq!(raw.len(), 8);
    assert_ne!(raw[4].value, events[4].bytes.as_slice());
    let prev5 = decode(&raw[5].value).unwrap().prev;
    assert_ne!(hash_of(&raw[4].value), prev5);
    assert_eq!(hash_of(&events[4].bytes), prev5);
    drop(r);

    // The run cut short: one corrupt entry, the events around it still read.
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    let ks = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    ks.insert(key.to_vec(), &value[..value.len() - 3]).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    drop((ks, db));
    let r = Reader::open(dir.path()).unwrap();
    let read: Vec<_> = r.raw_events(id).collect();
    assert_eq!(read.len(), 3);
    assert_eq!(read[1].as_ref().unwrap().seq, 1);
    assert!(
        matches!(&read[2], Err(StoreError::Corrupt { what: "event", reason, .. })
            if reason.contains("#7")),
        "{:?}",
        read[2]
    );
    assert!(r.event(id, 5).is_err());
    assert_eq!(r.event(id, 1).unwrap().unwrap().seq, 1);
}

#[test]
fn a_format_2_store_is_read_and_restamped_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let id = sid(1_700_000_000_000, 1);
    let events = session(id, "jti", 2);
    append_in(dir.path(), &events[..4], &[1, 1, 1]);
    let version = |dir: &std::path::Path| {
        let db = fjall::Database::builder(dir).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let v = meta.get("store_format").unwrap().unwrap();
        u32::from_be_bytes(v.as_ref().try_into().unwrap())
    };
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert("store_format", 2u32.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let r = Reader::open(dir.path()).unwrap();
    assert_eq!(all(r.events(id)).len(), 4);
    drop(r);
    assert_eq!(version(dir.path()), 2, "a reader must not write");
    // The gateway goes on with runs after the single events.
    append_in(dir.path(), &events[4..], &[]);
    assert_eq!(version(dir.path()), STORE_FORMAT_VERSION);
    let r = Reader::open(dir.path()).unwrap();
    let want: Vec<Event> = events.iter().map(|e| decode(&e.bytes).unwrap()).collect();
    assert_eq!(all(r.events(id)), want);
}

/// The session of an id that sorts right after `id`'s in the keyspace must
/// not be found by a look-back from `id`'s events.
#[test]
fn a_look_back_stays_in_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sid(1_700_000_000_000, 1), sid(1_700_000_000_000, 2));
    let eb = session(b, "b", 1);
    append_in(dir.path(), &eb, &[]);
    let r = Reader::open(dir.path()).unwrap();
    for seq in [0, 1, 3, u64::MAX] {
        assert_eq!(r.event(a, seq).unwrap(), None);
        assert_eq!(all(r.events_in(a, seq..seq.saturating_add(2))), []);
    }
    assert_eq!(all(r.events_in(b, 1..3)).len(), 2);
}
