//! SIGTERM drains: an idle session open when the gateway is told to stop
//! gets FATAL 57P01 ("shutting down"), the gateway exits within its drain
//! bound, and the store it leaves opens with that session closed for
//! reason `Shutdown` and every chain verifying.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, CloseReason};
use gatehouse_store::Reader;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

/// How long the client may take to learn of the shutdown.
const CLIENT_END_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_sessions_and_seals_the_store() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let jti = decode_claims(&token).expect("claims")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let (client, conn) = gw.connect(&token).await;
    client.simple_query("select 1").await.expect("a query");

    // Idle now. SIGTERM; `stop` panics past its 15 s bound.
    let started = Instant::now();
    let status = gw.stop();
    eprintln!("the gateway exited in {:?}: {status}", started.elapsed());
    assert!(status.success(), "exit status {status}\n{}", gw.log());

    let ended = tokio::time::timeout(CLIENT_END_TIMEOUT, conn)
        .await
        .expect("the client's connection ended")
        .expect("the connection task");
    let err = ended.expect_err("the connection ends with an error");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("no protocol-native error, only: {err:?}"));
    assert_eq!(db.code().code(), "57P01", "{db:?}");
    assert!(db.message().contains("shutting down"), "{}", db.message());
    assert!(client.simple_query("select 1").await.is_err());

    // The store: the session is closed for Shutdown, its chain intact.
    {
        let reader = Reader::open(&gw.store_dir()).expect("the store opens");
        let sessions: Vec<_> = reader
            .sessions()
            .collect::<Result<Vec<_>, _>>()
            .expect("read summaries")
            .into_iter()
            .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
            .collect();
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        let closed = sessions[0]
            .closed
            .as_ref()
            .unwrap_or_else(|| panic!("the session was cut, not closed: {sessions:#?}"));
        assert_eq!(closed.reason, CloseReason::Shutdown);
        let events = reader
            .events(sessions[0].id)
            .collect::<Result<Vec<_>, _>>()
            .expect("events decode");
        assert!(matches!(
            events.last().map(|e| &e.body),
            Some(Body::Closed(_))
        ));
    }
    let audit = Gateway::binary().with_file_name("gatehouse-audit");
    let out = run(
        Command::new(&audit)
            .arg("verify")
            .arg("--store")
            .arg(gw.store_dir())
            .arg("--pubkey")
            .arg(gw.seal_public_key()),
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "verify failed\n{}", render(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("BREAK"), "{stdout}");
    // The session drained at shutdown is sealed, not cut.
    assert!(!stdout.contains("WARN"), "{stdout}");
}
