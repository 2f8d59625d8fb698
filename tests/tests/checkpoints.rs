//! A real gateway writes signed checkpoints: with `[store] seal_key` and a
//! short `checkpoint_interval`, sessions run through it are listed in
//! checkpoints (periodic ones while it serves), and `gatehouse-audit verify
//! --pubkey` accepts the untouched store. Then copies of the stopped
//! gateway's store are tampered with as someone with disk access would —
//! a whole session deleted (events and summary), another session's tail
//! cut off, a checkpoint deleted — and verify names each break.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gatehouse_core::event::SealPublicKey;
use gatehouse_core::event::{SessionId, decode_checkpoint, verify_checkpoint};
use gatehouse_store::Reader;
use gatehouse_tests::command::{audit_verify, render};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, tamper};

const INTERVAL: Duration = Duration::from_millis(200);

fn verify(store: &Path, pubkey: &Path) -> Output {
    audit_verify(store, pubkey)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a store file");
        }
    }
}

/// Each checkpoint's number and the sessions it lists with their counts,
/// every signature checked with the gateway's key.
fn checkpoints(store: &Path, key: &SealPublicKey) -> Vec<(u64, BTreeMap<SessionId, u64>)> {
    let reader = Reader::open(store).expect("the store opens");
    reader
        .checkpoints()
        .map(|c| {
            let (number, bytes) = c.expect("a checkpoint reads");
            let cp = decode_checkpoint(&bytes).expect("a checkpoint decodes");
            assert_eq!(cp.number, number);
            verify_checkpoint(key, &cp).expect("the gateway's key signed it");
            (
                number,
                cp.sessions.iter().map(|c| (c.session, c.events)).collect(),
            )
        })
        .collect()
}

#[test]
fn checkpoints_make_a_deleted_session_a_cut_tail_and_a_deleted_checkpoint_detectable() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            store_config: format!("checkpoint_interval = \"{}ms\"", INTERVAL.as_millis()),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    // Four sessions, with pauses of several intervals between the last
    // three, so periodic checkpoints list them apart.
    let session = |sql: &str| {
        let out = Psql::new(gw.conn_string(&token)).command(sql).run();
        out.assert_success();
    };
    session("select 1");
    session("select 2");
    std::thread::sleep(INTERVAL * 5);
    session("select 3");
    std::thread::sleep(INTERVAL * 5);
    session("select 4");
    std::thread::sleep(INTERVAL * 5);
    let status = gw.stop();
    assert!(status.success(), "exit status {status}\n{}", gw.log());
    let store = gw.store_dir();
    let pubkey = gw.seal_public_key();
    let key = SealPublicKey::from_spki_pem(&std::fs::read_to_string(&pubkey).unwrap())
        .expect("the seal public key");

    // The sessions, oldest first, and what the checkpoints say of them.
    let ids: Vec<SessionId> = {
        let reader = Reader::open(&store).expect("the store opens");
        reader
            .sessions()
            .map(|s| s.expect("a summary").id)
            .collect()
    };
    assert_eq!(ids.len(), 4, "{ids:?}");
    let (a, b) = (ids[0], ids[1]);
    let cps = checkpoints(&store, &key);
    assert!(cps.len() >= 3, "checkpoints: {cps:?}\n{}", gw.log());
    let numbers: Vec<u64> = cps.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (0..cps.len() as u64).collect::<Vec<_>>());
    let latest = |id: SessionId| {
        cps.iter()
            .rev()
            .find(|(_, listed)| listed.contains_key(&id))
            .map(|(n, listed)| (*n, listed[&id]))
            .unwrap_or_else(|| panic!("no checkpoint lists {id}: {cps:?}"))
    };
    let events = |id: SessionId| {
        let reader = Reader::open(&store).expect("the store opens");
        reader.session(id).unwrap().unwrap().events
    };
    for &id in &ids {
        // Every session is covered with all its events (closed before the
        // last periodic checkpoint, or by the last one at shutdown).
        assert_eq!(latest(id).1, events(id), "{id}: {cps:?}");
    }
    // A checkpoint in the middle that is not the latest listing of a or b:
    // deleting it shows as a gap, and leaves a's and b's listings intact.
    let last = *numbers.last().unwrap();
    let deleted = numbers
        .iter()
        .copied()
        .find(|&n| n < last && n != latest(a).0 && n != latest(b).0)
        .unwrap_or_else(|| panic!("no checkpoint to delete in {cps:?}"));

    // The untouched store verifies, checkpoints and all.
    let ok = verify(&store, &pubkey);
    assert!(ok.status.success(), "verify failed\n{}", render(&ok));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains(&format!(
            "4 sessions, {} events, {} checkpoints verified",
            { ids.iter().map(|&id| events(id)).sum::<u64>() },
            cps.len()
        )) && stdout.contains("seals checked with key"),
        "{}",
        render(&ok)
    );
    assert!(
        !stdout.contains("BREAK") && !stdout.contains("WARN"),
        "{stdout}"
    );

    // A copy, tampered with.
    let dir = tempfile::tempdir().unwrap();
    let copy: PathBuf = dir.path().join("store");
    copy_dir(&store, &copy);
    let b_events = events(b);
    {
        let db = fjall::Database::builder(&copy)
            .open()
            .expect("fjall opens the copy");
        let ks = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .expect("a keyspace")
        };
        let (events_ks, sessions_ks, checkpoints_ks) =
            (ks("events"), ks("sessions"), ks("checkpoints"));
        // a: gone, events and summary.
        tamper::remove_events(&events_ks, a);
        sessions_ks.remove(a.0).unwrap();
        // b: its last two events (its Closed among them) cut off.
        tamper::cut_events(&events_ks, b, b_events - 2);
        // One checkpoint deleted.
        checkpoints_ks.remove(deleted.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let bad = verify(&copy, &pubkey);
    assert_eq!(bad.status.code(), Some(1), "{}", render(&bad));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    let (a_cp, a_events) = latest(a);
    let (b_cp, _) = latest(b);
    for expected in [
        format!(
            "BREAK checkpoint #{deleted}: missing: checkpoint #{deleted} is not in the store (deleted)"
        ),
        format!(
            "BREAK session {a}: missing: deleted session: checkpoint #{a_cp} recorded {a_events} \
             events, the store holds neither them nor the session summary"
        ),
        format!(
            "BREAK session {b} #{}: truncated: events #{}..#{} are not in the store: \
             checkpoint #{b_cp} recorded {b_events} events",
            b_events - 2,
            b_events - 2,
            b_events - 1
        ),
        "3 breaks in 2 of 4 sessions and in the checkpoint chain".to_owned(),
    ] {
        assert!(
            stdout.contains(&expected),
            "{expected}\nnot in\n{}",
            render(&bad)
        );
    }
    assert_eq!(stdout.matches("BREAK").count(), 3, "{stdout}");
}
