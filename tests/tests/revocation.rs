//! `gatehouse grants revoke`: a revoked grant's open session ends with a
//! FATAL error naming who revoked it and why, new sessions are refused
//! (28000), and both hold after a restart — the revocation is an event in
//! the store, sealed like a session.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::Body;
use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::ports::free_port;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::error::SqlState;

const ADMIN_TOKEN: &str = "revocation-test-token-0123456789";

fn revoke(admin: &str, token_file: &PathBuf, jti: &str, reason: &str) -> Output {
    run(
        Command::new(Gateway::binary())
            .args(["grants", "revoke", jti, "--reason", reason])
            .arg("--admin")
            .arg(admin)
            .arg("--token-file")
            .arg(token_file),
        Duration::from_secs(30),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_ends_its_sessions_and_stays_revoked() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let port = free_port();
    let admin = format!("http://127.0.0.1:{port}");
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: format!(
                "[admin]\nlisten = \"127.0.0.1:{port}\"\n[[admin.tokens]]\nname = \"alice\"\ntoken_file = \"{}\"\n",
                token_file.display()
            ),
            ..GatewayOptions::default()
        },
    );
    let grant = gw.grant(&GrantArgs {
        allow: vec!["select:public.invoices".to_owned()],
        ..GrantArgs::default()
    });
    let jti = decode_claims(&grant).expect("JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let other = gw.grant(&GrantArgs::default());

    let (client, _conn) = gw.connect(&grant).await;
    let (bystander, _conn2) = gw.connect(&other).await;
    client
        .simple_query("SELECT count(*) FROM invoices")
        .await
        .expect("before the revocation");

    let out = revoke(&admin, &token_file, &jti, "leaked in a build log");
    assert!(out.status.success(), "{}", render(&out));

    // The open session ends, with the reason.
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the session ended");
    if let Some(db) = err.as_db_error() {
        assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        assert_eq!(
            db.message(),
            "gatehouse: this session's grant was revoked by alice: leaked in a build log"
        );
    } else {
        assert!(err.is_closed(), "{err:?}");
    }
    // Other grants' sessions go on.
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("another grant is untouched");

    // New sessions are refused.
    let refused = |e: tokio_postgres::Error| {
        let db = e.as_db_error().expect("a server error").clone();
        assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
        assert!(db.message().contains("revoked"), "{}", db.message());
    };
    match gw.try_connect(&grant).await {
        Ok(_) => panic!("a revoked grant connected"),
        Err(e) => refused(e),
    }

    // Again: already revoked.
    let out = revoke(&admin, &token_file, &jti, "again");
    assert!(out.status.success(), "{}", render(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already revoked"));

    // After a restart too.
    drop(bystander);
    gw.restart();
    match gw.try_connect(&grant).await {
        Ok(_) => panic!("a revoked grant connected after a restart"),
        Err(e) => refused(e),
    }
    gw.stop();

    let reader = Reader::open(&gw.store_dir()).expect("store");
    assert_eq!(
        reader
            .revocations()
            .expect("revocations")
            .into_iter()
            .map(|(j, _)| j)
            .collect::<Vec<_>>(),
        [jti]
    );
    let revoked: Vec<_> = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .flat_map(|s| {
            reader
                .events(s.id)
                .map(|e| e.expect("event"))
                .collect::<Vec<_>>()
        })
        .filter_map(|e| match e.body {
            Body::Revoked(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].by, "alice");
    assert_eq!(revoked[0].reason, "leaked in a build log");
}
