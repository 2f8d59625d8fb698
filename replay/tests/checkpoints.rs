//! Checkpoints against stores tampered with behind the store's back: a
//! deleted whole session, a cut tail (summary rewritten to match), a
//! modified last event of a session cut before its close, a deleted or
//! forged checkpoint — each invisible to the chains alone, each reported
//! by `gatehouse-audit verify`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use gatehouse_core::event::{
    CloseReason, Covered, SealKey, SessionId, event_key, hash_of, sign_checkpoint,
};
use gatehouse_replay::cli::open_store;
use gatehouse_replay::verify::{BreakKind, verify_session, verify_store};
use gatehouse_store::Store;

const A: u16 = 1;
const B: u16 = 2;
const C: u16 = 3;

fn key() -> std::sync::Arc<SealKey> {
    std::sync::Arc::new(SealKey::from_secret_bytes(&[21; 32]))
}

/// A sealed session of 7 events (#6 Closed), or cut after #3 when not
/// `closed`.
fn session(id: SessionId, closed: bool) -> SessionBuilder {
    let mut s = SessionBuilder::sealed(id, Some(key()));
    s.opened().greeting();
    s.wait(1_000).up(&[query("SELECT total FROM invoices")]);
    s.wait(500)
        .down(&[data_row(&[Some(b"10.00")]), complete("SELECT 1")]);
    if closed {
        s.wait(1_000).up(&[query("SELECT 2")]);
        s.wait(500).down(&[complete("SELECT 1"), ready()]);
        s.closed(CloseReason::ClientTerminated);
    }
    s
}

/// Writes checkpoints as the gateway does: each lists `sessions` with the
/// count and head the store holds, chained to the one before.
fn write_checkpoints(dir: &Path, rounds: &[&[SessionId]]) {
    let store = Store::open(dir, Default::default()).unwrap();
    let reader = store.reader().unwrap();
    let writer = store.checkpoint_writer().unwrap();
    let mut prev = [0; 32];
    for (n, sessions) in rounds.iter().enumerate() {
        let covered = sessions
            .iter()
            .map(|&id| {
                let events = reader.session(id).unwrap().unwrap().events;
                let last = reader.raw_event(id, events - 1).unwrap().unwrap();
                Covered {
                    session: id,
                    events,
                    head: hash_of(&last),
                }
            })
            .collect();
        let bytes = sign_checkpoint(&key(), n as u64, 1_000 + n as i64, &prev, covered);
        writer.write(n as u64, &bytes).unwrap();
        prev = hash_of(&bytes);
    }
    drop((reader, writer));
    store.shutdown().unwrap();
}

/// a and b closed, c cut; checkpoint #0 lists a and c, #1 b and c, #2 c.
fn store(dir: &Path) -> (SessionId, SessionId, SessionId) {
    let (a, b, c) = (sid(T0_MS, A), sid(T0_MS + 5, B), sid(T0_MS + 9, C));
    write_store(
        dir,
        &[&session(a, true), &session(b, true), &session(c, false)],
    );
    write_checkpoints(dir, &[&[a, c], &[b, c], &[c]]);
    (a, b, c)
}

/// Runs `f` on the store's fjall database, as someone with disk access.
fn tamper(dir: &Path, f: impl FnOnce(&fjall::Database, &dyn Fn(&str) -> fjall::Keyspace)) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let ks = |name: &str| {
        db.keyspace(name, fjall::KeyspaceCreateOptions::default)
            .unwrap()
    };
    f(&db, &ks);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

fn audit(dir: &Path, extra: &[&str]) -> (i32, String) {
    let keys = tempfile::tempdir().unwrap();
    let pubkey = keys.path().join("seal.pub");
    std::fs::write(&pubkey, key().public_key().to_spki_pem().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse-audit"))
        .arg("verify")
        .arg("--store")
        .arg(dir)
        .arg("--pubkey")
        .arg(&pubkey)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn an_untouched_store_with_checkpoints_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, c) = store(dir.path());
    let (code, out) = audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!(
            "WARN session {c}: cut (not sealed): no Closed event after #3; the session ended \
             without closing (a gateway crash or kill), so its tail is not sealed\n\
             3 sessions, 18 events, 3 checkpoints verified, seals checked with key {}\n",
            key().kid()
        )
    );
}

#[test]
fn a_deleted_session_a_cut_tail_and_a_changed_last_event_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = store(dir.path());
    // For b's summary after the cut: the same session written up to #4
    // elsewhere, its summary copied over, so the summary agrees with the
    // events and the chain alone sees only a cut session.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut short = session(b, true);
    short.events.truncate(5);
    write_store(elsewhere.path(), &[&short]);
    let short_summary = {
        let db = fjall::Database::builder(elsewhere.path()).open().unwrap();
        let sessions = db
            .keyspace("sessions", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        sessions.get(b.0).unwrap().unwrap().to_vec()
    };
    tamper(dir.path(), |_, ks| {
        let (events, sessions) = (ks("events"), ks("sessions"));
        // a: gone entirely, events and summary.
        for seq in 0..7 {
            events.remove(event_key(a, seq)).unwrap();
        }
        sessions.remove(a.0).unwrap();
        // b: #5 and #6 (the Closed event) cut off, summary made to match.
        events.remove(event_key(b, 5)).unwrap();
        events.remove(event_key(b, 6)).unwrap();
        sessions.insert(b.0, short_summary).unwrap();
        // c (cut, so unsealed at its end): its last event altered, in a
        // way that still decodes.
        let key = event_key(c, 3);
        let mut value = events.get(key).unwrap().unwrap().to_vec();
        let at = value.windows(5).position(|w| w == b"10.00").unwrap();
        value[at..at + 5].copy_from_slice(b"99.00");
        events.insert(key, value).unwrap();
    });
    let reader = open_store(dir.path()).unwrap();
    let report = verify_store(&reader, Some(&key().public_key()), |_| {}).unwrap();
    let found: Vec<_> = report
        .breaks
        .iter()
        .map(|b| (b.session.clone(), b.seq, b.kind))
        .collect();
    assert_eq!(
        found,
        [
            (b.to_string(), Some(5), BreakKind::Truncated),
            (c.to_string(), Some(3), BreakKind::Modified),
            (a.to_string(), None, BreakKind::Missing),
        ],
        "{:#?}",
        report.breaks
    );
    assert!(report.checkpoint_breaks.is_empty());
    // One session at a time, the same.
    let check = verify_session(&reader, b, Some(&key().public_key())).unwrap();
    assert_eq!(check.breaks.len(), 1, "{:?}", check.breaks);
    assert_eq!(check.breaks[0].kind, BreakKind::Truncated);
    drop(reader);

    let (code, out) = audit(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    for line in [
        format!(
            "BREAK session {a}: missing: deleted session: checkpoint #0 recorded 7 events, \
             the store holds neither them nor the session summary"
        ),
        format!(
            "BREAK session {b} #5: truncated: events #5..#6 are not in the store: \
             checkpoint #1 recorded 7 events"
        ),
        format!("BREAK session {c} #3: modified: it does not hash to the chain head checkpoint #2"),
        "3 breaks in 3 of 3 sessions".to_owned(),
    ] {
        assert!(out.contains(&line), "{line}\nnot in\n{out}");
    }
    let (_, json) = audit(dir.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["checkpoints"], 3);
    assert_eq!(v["breaks"][0]["kind"], "truncated");
    assert_eq!(v["breaks"][2]["kind"], "missing");
}

#[test]
fn a_deleted_or_forged_checkpoint_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    tamper(dir.path(), |_, ks| {
        let checkpoints = ks("checkpoints");
        // #1 deleted; #2 replaced by one signed with another key.
        checkpoints.remove(1u64.to_be_bytes()).unwrap();
        let other = SealKey::from_secret_bytes(&[22; 32]);
        let forged = sign_checkpoint(&other, 2, 0, &[0; 32], vec![]);
        checkpoints.insert(2u64.to_be_bytes(), forged).unwrap();
    });
    let reader = open_store(dir.path()).unwrap();
    let report = verify_store(&reader, Some(&key().public_key()), |_| {}).unwrap();
    let found: Vec<_> = report
        .checkpoint_breaks
        .iter()
        .map(|b| (b.checkpoint, b.kind))
        .collect();
    assert_eq!(
        found,
        [(1, BreakKind::Missing), (2, BreakKind::BadSeal)],
        "{:#?}",
        report.checkpoint_breaks
    );
    assert!(report.breaks.is_empty(), "{:#?}", report.breaks);
    drop(reader);
    let (code, out) = audit(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BREAK checkpoint #1: missing: checkpoint #1 is not in the store (deleted)"),
        "{out}"
    );
    assert!(out.contains("BREAK checkpoint #2: bad seal"), "{out}");
    assert!(
        out.contains("2 breaks in 0 of 3 sessions and in the checkpoint chain"),
        "{out}"
    );

    // Without the key the forged one is not caught by its signature, but
    // its link to #1 cannot be checked (#1 is gone) and the gap still is.
    let reader = open_store(dir.path()).unwrap();
    let report = verify_store(&reader, None, |_| {}).unwrap();
    assert_eq!(report.checkpoint_breaks.len(), 1);
    assert_eq!(report.checkpoint_breaks[0].kind, BreakKind::Missing);
}

#[test]
fn a_replaced_checkpoint_breaks_the_link_of_the_next() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    // #0 re-signed (by the right key, as a thief of the key could) with b
    // never listed: #1's prev no longer matches.
    tamper(dir.path(), |_, ks| {
        let checkpoints = ks("checkpoints");
        let forged = sign_checkpoint(&key(), 0, 5, &[0; 32], vec![]);
        checkpoints.insert(0u64.to_be_bytes(), forged).unwrap();
    });
    let reader = open_store(dir.path()).unwrap();
    let report = verify_store(&reader, Some(&key().public_key()), |_| {}).unwrap();
    let found: Vec<_> = report
        .checkpoint_breaks
        .iter()
        .map(|b| (b.checkpoint, b.kind))
        .collect();
    assert_eq!(found, [(0, BreakKind::Modified)]);
}
