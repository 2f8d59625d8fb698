//! Chain verification against stores tampered with behind the store's
//! back (fjall opened directly, as an attacker with disk access would).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use gatehouse_core::event::{Body, CloseReason, SealKey, SessionId, decode, encode, event_key};
use gatehouse_replay::cli::open_store;
use gatehouse_replay::verify::{BreakKind, verify_session, verify_store};

/// Events: #0 Opened, #1 greeting, #2 query, #3 rows, #4 query,
/// #5 response, #6 Closed.
fn small_session(id: SessionId) -> SessionBuilder {
    let mut s = SessionBuilder::new(id);
    s.opened().greeting();
    s.wait(1_000).up(&[query("SELECT id, total FROM invoices")]);
    s.wait(500).down(&[
        row_description(&[("id", INT4, 0), ("total", NUMERIC, 0)]),
        data_row(&[Some(b"42"), Some(b"10.00")]),
        complete("SELECT 1"),
        ready(),
    ]);
    s.wait(1_000).up(&[query("DELETE FROM invoices")]);
    s.wait(500).down(&[complete("DELETE 7"), ready()]);
    s.closed(CloseReason::ClientTerminated);
    s
}

const A: u16 = 1;
const B: u16 = 2;

fn store_with_two(dir: &Path) -> (SessionId, SessionId) {
    let (a, b) = (sid(T0_MS, A), sid(T0_MS + 5, B));
    write_store(dir, &[&small_session(a), &small_session(b)]);
    (a, b)
}

/// Runs `f` on the store's `events` keyspace.
fn tamper(dir: &Path, f: impl FnOnce(&fjall::Keyspace)) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let events = db
        .keyspace("events", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    f(&events);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

fn breaks(dir: &Path) -> Vec<(String, Option<u64>, BreakKind)> {
    let reader = open_store(dir).unwrap();
    let report = verify_store(&reader, None, |_| {}).unwrap();
    assert_eq!(report.sessions, 2);
    report
        .breaks
        .into_iter()
        .map(|b| (b.session, b.seq, b.kind))
        .collect()
}

fn audit(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse-audit"))
        .arg("verify")
        .arg("--store")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn an_intact_store_verifies() {
    let dir = tempfile::tempdir().unwrap();
    store_with_two(dir.path());
    assert!(breaks(dir.path()).is_empty());
    let (code, out, err) = audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "2 sessions, 14 events verified, seals not checked (no --pubkey)\n"
    );
}

#[test]
fn a_modified_value_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = store_with_two(dir.path());
    // Change a recorded amount; the value still decodes.
    tamper(dir.path(), |events| {
        let key = event_key(a, 3);
        let mut value = events.get(key).unwrap().unwrap().to_vec();
        let at = value.windows(5).position(|w| w == b"10.00").unwrap();
        value[at..at + 5].copy_from_slice(b"99.00");
        events.insert(key, value).unwrap();
    });
    // It decodes, and the transcript shows the forged amount ...
    let reader = open_store(dir.path()).unwrap();
    let t = gatehouse_replay::load_transcript(&reader, a, Default::default())
        .unwrap()
        .unwrap();
    let shown = gatehouse_replay::render::render_to_string(&t);
    assert!(shown.contains("99.00"), "{shown}");
    drop(reader);
    // ... but the chain gives it away.
    assert_eq!(
        breaks(dir.path()),
        [(a.to_string(), Some(3), BreakKind::Modified)]
    );
    let (code, out, _) = audit(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BREAK session {a} #3: modified")),
        "{out}"
    );
    assert!(
        out.contains("1 break in 1 of 2 sessions (14 events read)"),
        "{out}"
    );
    // Verifying only the other session passes.
    let (code, out, _) = audit(
        dir.path(),
        &["--session", &sid(T0_MS + 5, B).to_string()[..13]],
    );
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "1 session, 7 events verified, seals not checked (no --pubkey)\n"
        )
    );
}

#[test]
fn a_change_the_decoder_ignores_is_still_modified() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = store_with_two(dir.path());
    // The last byte of #3 is unused space in the archive: flipping it
    // changes nothing decoded, only the stored bytes.
    tamper(dir.path(), |events| {
        let key = event_key(a, 3);
        let original = events.get(key).unwrap().unwrap().to_vec();
        let mut value = original.clone();
        *value.last_mut().unwrap() ^= 0xff;
        assert_eq!(decode(&value).unwrap(), decode(&original).unwrap());
        events.insert(key, value).unwrap();
    });
    assert_eq!(
        breaks(dir.path()),
        [(a.to_string(), Some(3), BreakKind::Modified)]
    );
    let (code, out, _) = audit(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BREAK session {a} #3: modified")),
        "{out}"
    );
}

#[test]
fn a_dropped_event_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = store_with_two(dir.path());
    tamper(dir.path(), |events| {
        events.remove(event_key(a, 4)).unwrap();
        // The tail of the other session: only the summary's count shows it.
        events.remove(event_key(b, 6)).unwrap();
    });
    assert_eq!(
        breaks(dir.path()),
        [
            (a.to_string(), Some(4), BreakKind::Missing),
            (b.to_string(), Some(6), BreakKind::Missing),
        ]
    );
    let (code, out, _) = audit(dir.path(), &["--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["breaks"][0]["kind"], "missing");
    assert_eq!(v["breaks"][0]["seq"], 4);
    assert_eq!(v["events"], 12);
}

#[test]
fn undecodable_reordered_and_misplaced_values() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = store_with_two(dir.path());
    tamper(dir.path(), |events| {
        events.insert(event_key(a, 1), &b"garbage"[..]).unwrap();
        // Swap #3 and #4 of a.
        let three = events.get(event_key(a, 3)).unwrap().unwrap();
        let four = events.get(event_key(a, 4)).unwrap().unwrap();
        events.insert(event_key(a, 3), four).unwrap();
        events.insert(event_key(a, 4), three).unwrap();
        // b's #2 replaced by a's #2.
        let a2 = events.get(event_key(a, 2)).unwrap().unwrap();
        events.insert(event_key(b, 2), a2).unwrap();
    });
    assert_eq!(
        breaks(dir.path()),
        [
            (a.to_string(), Some(1), BreakKind::Undecodable),
            (a.to_string(), Some(3), BreakKind::Reordered),
            (a.to_string(), Some(4), BreakKind::Reordered),
            (b.to_string(), Some(2), BreakKind::Misplaced),
        ]
    );
    let reader = open_store(dir.path()).unwrap();
    let check = verify_session(&reader, b, None).unwrap();
    assert!(
        check.breaks[0]
            .detail
            .contains(&format!("event #2 of session {a}")),
        "{:?}",
        check.breaks
    );
}

#[test]
fn an_appended_event_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = store_with_two(dir.path());
    // A forged event chained correctly onto the last one, beyond the close
    // and beyond the summary's count.
    let mut forged = small_session(a);
    forged.wait(1).statement_event("DROP TABLE invoices");
    let extra = forged.events.last().unwrap().clone();
    tamper(dir.path(), |events| {
        events.insert(extra.key, extra.bytes.to_vec()).unwrap();
    });
    let found = breaks(dir.path());
    assert_eq!(
        found,
        [
            (a.to_string(), Some(7), BreakKind::Appended),
            (a.to_string(), Some(7), BreakKind::Appended),
        ]
    );
}

#[test]
fn help_explains_seals() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse-audit"))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--pubkey"), "{help}");
    assert!(help.contains("bad seal"), "{help}");
}

#[test]
fn a_session_stripped_of_its_events_still_shows_who_and_is_missing_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = store_with_two(dir.path());
    tamper(dir.path(), |events| {
        for seq in 0..7 {
            events.remove(event_key(a, seq)).unwrap();
        }
    });
    let reader = open_store(dir.path()).unwrap();
    let t = gatehouse_replay::load_transcript(&reader, a, Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(t.header.subject.as_deref(), Some("agent:reconciler"));
    assert_eq!(t.header.started_us, (T0_MS * 1000) as i64);
    assert!(t.items.is_empty());
    let check = verify_session(&reader, a, None).unwrap();
    assert_eq!(check.breaks.len(), 1);
    assert_eq!(
        (check.breaks[0].seq, check.breaks[0].kind),
        (Some(0), BreakKind::Missing)
    );
    assert!(
        check.breaks[0].detail.contains("events #0..#6"),
        "{}",
        check.breaks[0].detail
    );
}

fn seal_key(seed: u8) -> std::sync::Arc<SealKey> {
    std::sync::Arc::new(SealKey::from_secret_bytes(&[seed; 32]))
}

/// Writes `key`'s public half into `dir` and returns its path.
fn pubkey_file(dir: &Path, key: &SealKey, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key.public_key().to_spki_pem().unwrap()).unwrap();
    path
}

#[test]
fn seals_verify_and_a_changed_total_in_the_last_event_is_a_bad_seal() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = seal_key(11);
    let (a, b) = (sid(T0_MS, A), sid(T0_MS + 5, B));
    let sa = {
        let mut s = SessionBuilder::sealed(a, Some(key.clone()));
        s.opened().greeting();
        s.wait(1_000).up(&[query("SELECT 1")]);
        s.wait(500).down(&[complete("SELECT 1"), ready()]);
        s.closed(CloseReason::ClientTerminated);
        s
    };
    let mut sb = SessionBuilder::sealed(b, Some(key.clone()));
    sb.opened().greeting();
    sb.closed(CloseReason::ClientDisconnected);
    write_store(dir.path(), &[&sa, &sb]);
    let closed_seq = sa.events.len() as u64 - 1;
    let public = pubkey_file(keys.path(), &key, "seal.pub");
    let pubkey = public.to_str().unwrap();

    let (code, out, err) = audit(dir.path(), &["--pubkey", pubkey]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("seals checked with key"), "{out}");
    assert!(!out.contains("WARN"), "{out}");

    // Lower the recorded statement count of a's Closed event, re-encoded
    // with its prev untouched: the chain has nothing after it to notice.
    tamper(dir.path(), |events| {
        let k = event_key(a, closed_seq);
        let mut event = decode(&events.get(k).unwrap().unwrap()).unwrap();
        let Body::Closed(closed) = &mut event.body else {
            panic!("not Closed: {event:?}")
        };
        closed.statements = 0;
        events.insert(k, encode(&event).as_slice()).unwrap();
    });
    assert!(
        breaks(dir.path()).is_empty(),
        "the chain alone cannot see it"
    );
    let reader = open_store(dir.path()).unwrap();
    let report = verify_store(&reader, Some(&key.public_key()), |_| {}).unwrap();
    drop(reader);
    let found: Vec<_> = report
        .breaks
        .iter()
        .map(|b| (b.session.clone(), b.seq, b.kind))
        .collect();
    assert_eq!(
        found,
        [(a.to_string(), Some(closed_seq), BreakKind::BadSeal)]
    );
    let (code, out, _) = audit(dir.path(), &["--pubkey", pubkey]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BREAK session {a} #{closed_seq}: bad seal")),
        "{out}"
    );

    // Another key: every seal is bad, and says which key sealed it.
    let other = pubkey_file(keys.path(), &seal_key(12), "other.pub");
    let (code, out, _) = audit(dir.path(), &["--pubkey", other.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.matches(": bad seal: sealed with key").count(),
        2,
        "{out}"
    );
}

#[test]
fn unsealed_sessions_break_with_a_pubkey_and_cut_sessions_only_warn() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (a, b) = (sid(T0_MS, A), sid(T0_MS + 5, B));
    // a: closed without a seal; b: sealed, but cut before its Closed event.
    let mut sb = SessionBuilder::sealed(b, Some(seal_key(11)));
    sb.opened().greeting();
    write_store(dir.path(), &[&small_session(a), &sb]);
    let public = pubkey_file(keys.path(), &seal_key(11), "seal.pub");

    let (code, out, _) = audit(dir.path(), &["--pubkey", public.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BREAK session {a} #6: unsealed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("WARN session {b}: cut (not sealed)")),
        "{out}"
    );
    assert!(!out.contains(&format!("BREAK session {b}")), "{out}");

    // Without a key, the cut session is still a warning, not a break.
    let (code, out, _) = audit(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("WARN"), "{out}");
}

#[test]
fn an_unreadable_pubkey_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    store_with_two(dir.path());
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "not a key").unwrap();
    let (code, _, err) = audit(dir.path(), &["--pubkey", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--pubkey"), "{err}");
}

/// The gateway stores what it submits together as a run of events under
/// one key: damage inside a run is still reported at the event it hit,
/// and a run removed whole is a gap of exactly its events.
#[test]
fn damage_to_runs_of_events_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sid(T0_MS, A), sid(T0_MS + 5, B));
    write_store_in_runs(dir.path(), &[&small_session(a)]);
    // b in two runs, #0..#2 and #3..#6.
    let b_events = small_session(b).events;
    {
        let store = gatehouse_store::Store::open(dir.path(), Default::default()).unwrap();
        store
            .writer()
            .append_blocking(b_events[..3].to_vec())
            .unwrap();
        store
            .writer()
            .append_blocking(b_events[3..].to_vec())
            .unwrap();
        store.shutdown().unwrap();
    }
    assert!(breaks(dir.path()).is_empty());
    tamper(dir.path(), |events| {
        // a's amount, inside its one run.
        let (key, value) = events.prefix(a.0).next().unwrap().into_inner().unwrap();
        assert_eq!(key.len(), 32, "a run");
        let mut value = value.to_vec();
        let at = value.windows(5).position(|w| w == b"10.00").unwrap();
        value[at..at + 5].copy_from_slice(b"99.00");
        events.insert(key.to_vec(), value).unwrap();
        // b's first run, gone.
        let first = events.prefix(b.0).next().unwrap().key().unwrap();
        events.remove(first).unwrap();
    });
    assert_eq!(
        breaks(dir.path()),
        [
            (a.to_string(), Some(3), BreakKind::Modified),
            (b.to_string(), Some(0), BreakKind::Missing),
        ]
    );
    let reader = open_store(dir.path()).unwrap();
    let check = verify_session(&reader, b, None).unwrap();
    assert!(
        check.breaks[0].detail.contains("events #0..#2"),
        "{}",
        check.breaks[0].detail
    );
}
