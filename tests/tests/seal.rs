//! A real gateway seals its sessions: with `[store] seal_key` set, every
//! session it closes (a normal one, a refused one) ends in a sealed
//! `Closed` event, and `gatehouse-audit verify --pubkey` accepts the store
//! with the seal key's public half and rejects it with any other key,
//! naming the bad seals.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::Body;
use gatehouse_store::Reader;
use gatehouse_tests::command::{audit_verify, render, run_ok};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn verify(store: &Path, pubkey: &Path) -> Output {
    audit_verify(store, pubkey)
}

#[test]
fn closed_sessions_are_sealed_and_verify_only_with_the_gateways_key() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let out = Psql::new(gw.conn_string(&token))
        .command("select 41 + 1")
        .run();
    assert_eq!(out.assert_success(), "42");
    // A refused connection is recorded, closed and sealed too.
    let refused = Psql::new(gw.conn_string("not-a-grant"))
        .command("select 1")
        .run();
    assert!(!refused.success(), "a bad grant was accepted");
    let status = gw.stop();
    assert!(status.success(), "exit status {status}\n{}", gw.log());

    // Every session ends in a Closed event carrying a seal.
    {
        let reader = Reader::open(&gw.store_dir()).expect("the store opens");
        let sessions = reader
            .sessions()
            .collect::<Result<Vec<_>, _>>()
            .expect("read summaries");
        assert_eq!(sessions.len(), 2, "{sessions:#?}");
        for s in &sessions {
            let events = reader
                .events(s.id)
                .collect::<Result<Vec<_>, _>>()
                .expect("events decode");
            match events.last().map(|e| &e.body) {
                Some(Body::Closed(c)) => assert!(c.seal.is_some(), "unsealed: {c:?}"),
                other => panic!("session {} does not end in Closed: {other:?}", s.id),
            }
        }
    }

    // The gateway's public key verifies every seal.
    let ok = verify(&gw.store_dir(), &gw.seal_public_key());
    assert!(ok.status.success(), "verify failed\n{}", render(&ok));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("2 sessions") && stdout.contains("seals checked with key"),
        "{}",
        render(&ok)
    );
    assert!(
        !stdout.contains("BREAK") && !stdout.contains("WARN"),
        "{stdout}"
    );

    // Another key (as if the store were forged and sealed by someone
    // else): every seal is bad, and so is the signature of the checkpoint
    // written at shutdown, and the exit status says so.
    let other = gw.dir().join("other-keys");
    run_ok(
        Command::new(Gateway::binary())
            .arg("keygen")
            .args(["--name", "seal", "--out"])
            .arg(&other),
        TOOL_TIMEOUT,
    );
    let bad = verify(&gw.store_dir(), &other.join("seal.pub"));
    assert_eq!(bad.status.code(), Some(1), "{}", render(&bad));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(stdout.matches(": bad seal: ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("BREAK checkpoint #0: bad seal: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 breaks in 2 of 2 sessions and in the checkpoint chain"),
        "{stdout}"
    );
}
