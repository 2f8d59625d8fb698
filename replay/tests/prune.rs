//! Prune records: sessions a prune removed verify as pruned, not deleted,
//! when a signed record names them; an unsigned, forged or altered record
//! is reported and the sessions it names are deleted again; a session
//! removed by hand is reported whatever the records say. A whole-store
//! archive carries the records.

mod common;

use std::path::Path;

use common::*;
use gatehouse_core::event::{
    CloseReason, Covered, SealKey, SessionId, event_key, hash_of, sign_checkpoint, sign_prune,
};
use gatehouse_replay::cli::open_store;
use gatehouse_replay::verify::{BreakKind, Report, verify_session, verify_store};
use gatehouse_store::{Retention, Store};

fn key() -> std::sync::Arc<SealKey> {
    std::sync::Arc::new(SealKey::from_secret_bytes(&[21; 32]))
}

fn session(id: SessionId) -> SessionBuilder {
    let mut s = SessionBuilder::sealed(id, Some(key()));
    s.opened().greeting();
    s.wait(1_000).up(&[query("SELECT 1")]);
    s.wait(500).down(&[complete("SELECT 1"), ready()]);
    s.closed(CloseReason::ClientTerminated);
    s
}

/// Three closed sessions, one checkpoint listing all three.
fn store(dir: &Path) -> [SessionId; 3] {
    let ids = [sid(T0_MS, 1), sid(T0_MS + 5, 2), sid(T0_MS + 9, 3)];
    write_store(dir, &[&session(ids[0]), &session(ids[1]), &session(ids[2])]);
    let store = Store::open(dir, Default::default()).unwrap();
    let reader = store.reader().unwrap();
    let covered = ids
        .iter()
        .map(|&id| {
            let events = reader.session(id).unwrap().unwrap().events;
            Covered {
                session: id,
                events,
                head: hash_of(&reader.raw_event(id, events - 1).unwrap().unwrap()),
            }
        })
        .collect();
    let bytes = sign_checkpoint(&key(), 0, 1_000, &[0; 32], covered);
    store.checkpoint_writer().unwrap().write(0, &bytes).unwrap();
    drop(reader);
    store.shutdown().unwrap();
    ids
}

/// Removes `ids` with `record` (number 0) as `gatehouse store prune` does.
fn prune(dir: &Path, record: Vec<u8>, ids: &[SessionId]) {
    let r = Retention::open(dir).unwrap();
    let done = r.prune(&[(0, record)], ids).unwrap();
    assert_eq!(done.sessions, ids.len() as u64);
}

fn verify(dir: &Path) -> Report {
    let reader = open_store(dir).unwrap();
    verify_store(&reader, Some(&key().public_key()), |_| {}).unwrap()
}

fn kinds(report: &Report) -> Vec<(String, BreakKind)> {
    report
        .breaks
        .iter()
        .map(|b| (b.session.clone(), b.kind))
        .collect()
}

#[test]
fn pruned_sessions_verify_and_a_hand_deleted_one_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = store(dir.path());
    prune(
        dir.path(),
        sign_prune(Some(&key()), 0, 2_000, 1_500, vec![a, b]),
        &[a, b],
    );
    let report = verify(dir.path());
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        (report.sessions, report.pruned, report.prune_records),
        (1, 2, 1)
    );
    // One session at a time: a pruned one has nothing to report.
    let reader = open_store(dir.path()).unwrap();
    let check = verify_session(&reader, a, Some(&key().public_key())).unwrap();
    assert!(check.breaks.is_empty(), "{:?}", check.breaks);
    drop(reader);

    // c, removed by hand, is a deleted session as before.
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    let ks = |n: &str| {
        db.keyspace(n, fjall::KeyspaceCreateOptions::default)
            .unwrap()
    };
    for seq in 0..5 {
        ks("events").remove(event_key(c, seq)).unwrap();
    }
    ks("sessions").remove(c.0).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    drop(db);
    let report = verify(dir.path());
    assert_eq!(kinds(&report), [(c.to_string(), BreakKind::Missing)]);
    assert_eq!(report.pruned, 2);
}

#[test]
fn untrusted_prune_records_are_reported_and_cover_nothing() {
    let other = SealKey::from_secret_bytes(&[22; 32]);
    type Make = Box<dyn Fn(SessionId) -> Vec<u8>>;
    let cases: Vec<(&str, Make, BreakKind)> = vec![
        (
            "unsigned",
            Box::new(|a| sign_prune(None, 0, 2_000, 1_500, vec![a])),
            BreakKind::BadSeal,
        ),
        (
            "another key",
            Box::new(move |a| sign_prune(Some(&other), 0, 2_000, 1_500, vec![a])),
            BreakKind::BadSeal,
        ),
        (
            "cut-off altered after signing",
            Box::new(|a| {
                let mut r = sign_prune(Some(&key()), 0, 2_000, 1_500, vec![a]);
                // before_us: after magic, version, number and at.
                r[4 + 1 + 8 + 8 + 7] ^= 1;
                r
            }),
            BreakKind::BadSeal,
        ),
        (
            "undecodable",
            Box::new(|_| b"GHPR\x01".to_vec()),
            BreakKind::Undecodable,
        ),
    ];
    for (name, make, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        let [a, _, _] = store(dir.path());
        let record = make(a);
        prune(dir.path(), record, &[a]);
        let report = verify(dir.path());
        assert_eq!(report.prune_breaks.len(), 1, "{name}: {report:#?}");
        assert_eq!(report.prune_breaks[0].kind, kind, "{name}");
        assert_eq!(
            kinds(&report),
            [(a.to_string(), BreakKind::Missing)],
            "{name}"
        );
        assert_eq!(report.pruned, 0, "{name}");
        assert!(!report.is_clean());
    }
}

#[test]
fn a_whole_store_archive_carries_the_prune_records() {
    let dir = tempfile::tempdir().unwrap();
    let [a, _, _] = store(dir.path());
    prune(
        dir.path(),
        sign_prune(Some(&key()), 0, 2_000, 1_500, vec![a]),
        &[a],
    );
    let mut file = Vec::new();
    open_store(dir.path())
        .unwrap()
        .export_archive(0, i64::MAX, &mut file)
        .unwrap();
    gatehouse_core::event::archive::encode_signature(&mut file, None);
    let imported = tempfile::tempdir().unwrap();
    let got =
        gatehouse_store::archive::import_archive(&file[..], &imported.path().join("s")).unwrap();
    let report = verify_store(&got.reader, Some(&key().public_key()), |_| {}).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!((report.sessions, report.pruned), (2, 1));
}
