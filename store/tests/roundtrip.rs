//! Several sessions, appended interleaved, read back: order, range scans,
//! decoding, the hash chain, and summaries.

mod common;

use common::*;
use gatehouse_core::event::{Body, Encoded, Event, SessionId, decode, hash_of};
use gatehouse_store::{Reader, Store, StoreError};
use rkyv::rancor;

fn read_events(reader: &Reader, id: SessionId) -> Vec<Event> {
    reader
        .events(id)
        .collect::<Result<Vec<_>, _>>()
        .expect("events read back")
}

#[test]
fn sessions_round_trip_in_order_with_chains_and_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), fsync()).unwrap();
    let writer = store.writer();

    // Adjacent ids (same millisecond), so a sloppy range scan would leak.
    let ids = [
        sid(1_700_000_000_000, 1),
        sid(1_700_000_000_000, 2),
        sid(1_700_000_000_500, 0),
    ];
    let sessions: Vec<Vec<Encoded>> = ids
        .iter()
        .zip([3, 1, 0])
        .enumerate()
        .map(|(i, (id, q))| session(*id, &format!("jti-{i}"), q))
        .collect();

    // Interleave: one event of each session per round, each as its own
    // submission, and one session's tail as a multi-event submission.
    let longest = sessions.iter().map(Vec::len).max().unwrap();
    for round in 0..longest {
        for s in &sessions[..2] {
            if let Some(e) = s.get(round) {
                writer.append_blocking(vec![e.clone()]).unwrap();
            }
        }
    }
    writer.append_blocking(sessions[2].clone()).unwrap();
    writer.append_blocking(Vec::new()).unwrap();

    let reader = store.reader().unwrap();
    for (id, original) in ids.iter().zip(&sessions) {
        let events = read_events(&reader, *id);
        assert_eq!(events.len(), original.len(), "exactly one session's events");
        for (i, (ev, enc)) in events.iter().zip(original).enumerate() {
            assert_eq!(ev.session, *id);
            assert_eq!(ev.seq, i as u64);
            assert_eq!(*ev, decode(&enc.bytes).unwrap());
        }
        // The chain links: each event carries the hash of the previous
        // event's encoding (re-encoding is deterministic).
        assert_eq!(events[0].prev, [0; 32]);
        for pair in events.windows(2) {
            let bytes = rkyv::to_bytes::<rancor::Error>(&pair[0]).unwrap();
            assert_eq!(pair[1].prev, hash_of(&bytes));
        }
    }

    let summaries = reader.sessions().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(summaries.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    let newest_first = reader
        .sessions()
        .rev()
        .map(|s| s.unwrap().id)
        .collect::<Vec<_>>();
    assert_eq!(newest_first, [ids[2], ids[1], ids[0]]);

    let s = reader.session(ids[0]).unwrap().unwrap();
    assert_eq!(s, summaries[0]);
    assert_eq!(s.opened.as_ref().unwrap().jti, "jti-0");
    assert!(s.refused.is_none());
    assert!(matches!(&s.closed, Some(c) if c.statements == 3));
    assert_eq!(s.events, 3 * 3 + 2);
    assert_eq!(s.statements, 3);
    assert_eq!(s.bytes_to_upstream, 3 * QUERY.len() as u64);
    assert_eq!(s.bytes_to_client, 3 * READY.len() as u64);
    assert_eq!(s.started_us, sessions[0][0].at_us);
    assert_eq!(s.last_event_us, sessions[0].last().unwrap().at_us);

    let empty = reader.session(ids[2]).unwrap().unwrap();
    assert_eq!(
        (empty.events, empty.statements, empty.bytes_to_client),
        (2, 0, 0)
    );
    assert!(reader.session(sid(1, 1)).unwrap().is_none());
    assert_eq!(reader.events(sid(1, 1)).count(), 0);

    store.shutdown().unwrap();
}

#[test]
fn frames_and_statements_only_count_their_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(5)).unwrap();
    let id = sid(1_700_000_000_000, 9);
    let mut rec = gatehouse_core::event::Recorder::new(id);
    let events = vec![
        rec.record(1, opened("j", 1)),
        rec.record(
            2,
            Body::CommandComplete {
                tag: "SELECT 1".into(),
            },
        ),
        rec.record(3, frame(gatehouse_core::event::Direction::ToClient, b"abc")),
    ];
    store.writer().append_blocking(events).unwrap();
    let s = store.reader().unwrap().session(id).unwrap().unwrap();
    assert_eq!(
        (
            s.events,
            s.statements,
            s.bytes_to_client,
            s.bytes_to_upstream
        ),
        (3, 0, 3, 0)
    );
    assert!(s.closed.is_none(), "still open");
    store.shutdown().unwrap();
}

#[test]
fn session_id_prefixes_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(5)).unwrap();
    let a = sid(0x0193_a5e2_7c1e, 1);
    let b = sid(0x0193_a5e2_7c1e, 2);
    let c = sid(0x0193_b000_0000, 1);
    for id in [a, b, c] {
        store.writer().append_blocking(session(id, "j", 0)).unwrap();
    }
    let reader = store.reader().unwrap();
    assert_eq!(reader.find_session_prefix("0193a5e2-7C1E").unwrap(), [a, b]);
    assert_eq!(reader.find_session_prefix("0193a").unwrap(), [a, b]);
    assert_eq!(reader.find_session_prefix("0193b").unwrap(), [c]);
    assert_eq!(reader.find_session_prefix("0193").unwrap(), [a, b, c]);
    assert_eq!(reader.find_session_prefix(&b.to_string()).unwrap(), [b]);
    assert!(reader.find_session_prefix("ff").unwrap().is_empty());
    for bad in ["", "-", "01x3", &"0".repeat(33)] {
        assert!(
            matches!(
                reader.find_session_prefix(bad),
                Err(StoreError::InvalidIdPrefix(_))
            ),
            "{bad:?}"
        );
    }
    store.shutdown().unwrap();
}

/// One submission whose events alternate between two sessions (the writer
/// looks a summary up once per run of one session's events): each session
/// gets its own events and counts, and a gap in either refuses the whole
/// submission.
#[test]
fn one_submission_interleaving_sessions_keeps_each_summary() {
    use gatehouse_core::event::{Direction, Recorder};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), fsync()).unwrap();
    let writer = store.writer();
    let (a, b) = (sid(1_700_000_000_000, 21), sid(1_700_000_000_000, 22));
    let (mut ra, mut rb) = (Recorder::new(a), Recorder::new(b));
    let events = vec![
        ra.record(1, opened("ja", 1)),
        rb.record(2, opened("jb", 1)),
        rb.record(3, frame(Direction::ToClient, b"bb")),
        ra.record(4, frame(Direction::ToUpstream, b"a")),
        ra.record(5, frame(Direction::ToUpstream, b"aaa")),
        rb.record(6, frame(Direction::ToClient, b"b")),
    ];
    writer.append_blocking(events).unwrap();
    let skipped = ra.record(7, frame(Direction::ToClient, b"x"));
    let refused = vec![
        rb.record(8, frame(Direction::ToClient, b"y")),
        ra.record(9, frame(Direction::ToClient, b"z")),
    ];
    drop(skipped);
    assert!(matches!(
        writer.append_blocking(refused),
        Err(StoreError::OutOfSequence { got: 4, .. })
    ));
    let reader = store.reader().unwrap();
    let summary = |id| {
        let s = reader.session(id).unwrap().unwrap();
        (s.events, s.bytes_to_upstream, s.bytes_to_client)
    };
    assert_eq!(summary(a), (3, 4, 0));
    assert_eq!(summary(b), (3, 0, 3));
    assert_eq!(read_events(&reader, a).len(), 3);
    assert_eq!(read_events(&reader, b).len(), 3);
    drop(reader);
    store.shutdown().unwrap();
}
