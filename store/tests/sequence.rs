//! The writer refuses, per submission, events that are not what they claim
//! or that do not continue their session; nothing recorded is overwritten.

mod common;

use common::*;
use gatehouse_core::event::{Direction, EventKind, Recorder, decode};
use gatehouse_store::{Store, StoreError};

#[test]
fn gaps_repeats_and_events_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(5)).unwrap();
    let w = store.writer();
    let id = sid(1_700_000_000_000, 1);
    let mut rec = Recorder::new(id);
    let e: Vec<_> = (0..5)
        .map(|i| match i {
            0 => rec.record(0, opened("j", 1)),
            3 => rec.record(3, closed(0)),
            4 => rec.record(4, statement("after close")),
            _ => rec.record(i, frame(Direction::ToUpstream, b"x")),
        })
        .collect();

    // A new session must start at 0.
    let err = w.append_blocking(vec![e[1].clone()]).unwrap_err();
    assert!(
        matches!(err, StoreError::OutOfSequence { got: 1, .. }),
        "{err:?}"
    );
    w.append_blocking(vec![e[0].clone()]).unwrap();
    // A gap, and a repeat (which would overwrite #0), are refused…
    assert!(matches!(
        w.append_blocking(vec![e[2].clone()]),
        Err(StoreError::OutOfSequence { got: 2, .. })
    ));
    assert!(matches!(
        w.append_blocking(vec![e[0].clone()]),
        Err(StoreError::OutOfSequence { got: 0, .. })
    ));
    // …also inside one submission, which is then refused as a whole.
    assert!(matches!(
        w.append_blocking(vec![e[1].clone(), e[1].clone()]),
        Err(StoreError::OutOfSequence { got: 1, .. })
    ));
    assert_eq!(
        store.reader().unwrap().session(id).unwrap().unwrap().events,
        1
    );
    // The refusals did not poison anything.
    w.append_blocking(vec![e[1].clone(), e[2].clone(), e[3].clone()])
        .unwrap();
    let err = w.append_blocking(vec![e[4].clone()]).unwrap_err();
    assert!(err.to_string().contains("already closed"), "{err}");

    let stored: Vec<_> = store
        .reader()
        .unwrap()
        .events(id)
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[0], decode(&e[0].bytes).unwrap());
    store.shutdown().unwrap();
}

#[test]
fn events_that_are_not_what_they_claim_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), os(5)).unwrap();
    let w = store.writer();
    let mut rec = Recorder::new(sid(1_700_000_000_000, 2));
    let good = rec.record(0, opened("j", 1));

    let mut wrong_key = good.clone();
    wrong_key.key[23] = 9;
    let mut wrong_kind = good.clone();
    wrong_kind.kind = EventKind::Frame;
    let mut wrong_seq = good.clone();
    wrong_seq.seq = 1;
    let mut garbage = good.clone();
    garbage.bytes.clear();
    garbage
        .bytes
        .extend_from_slice(b"definitely not an archived event");
    let mut other_session = good.clone();
    other_session.session = sid(1, 1);

    for bad in [wrong_key, wrong_kind, wrong_seq, garbage, other_session] {
        let err = w.append_blocking(vec![good.clone(), bad]).unwrap_err();
        assert!(matches!(err, StoreError::InvalidEvent { .. }), "{err:?}");
    }
    assert_eq!(
        store.reader().unwrap().sessions().count(),
        0,
        "nothing of a refused call is written"
    );
    w.append_blocking(vec![good]).unwrap();
    assert_eq!(store.reader().unwrap().sessions().count(), 1);
    store.shutdown().unwrap();
}
