//! Per-grant limits and the startup deadline, against real processes:
//!
//! - `[limits] connections_per_grant`: a grant past its sessions is refused
//!   with SQLSTATE 53300 (and the refusal recorded) while other grants are
//!   served; once one of its sessions ends, it is served again.
//! - `[limits] statements_per_second_per_grant`: statements over the rate
//!   are refused with 53400 and never reach PostgreSQL; the session goes on,
//!   a transaction block fails as PostgreSQL fails it, and every denial is
//!   a recorded verdict.
//! - `[listener] startup_timeout`: a slowloris client (a byte of its
//!   startup packet every 300 ms) and a silent one are disconnected, while
//!   a normal client connecting meanwhile is served.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gatehouse_core::event::{Body, Decision};
use gatehouse_store::Reader;
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::ports::wait_until;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::error::SqlState;

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

/// The server's SQLSTATE and message of a database error.
fn db_error(err: &tokio_postgres::Error) -> (SqlState, String) {
    match err.as_db_error() {
        Some(db) => (db.code().clone(), db.message().to_owned()),
        None => panic!("not a server error: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_grant_are_limited_and_given_back() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: "[limits]\nconnections_per_grant = 2".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let jti = jti_of(&token);
    let other = gw.grant(&GrantArgs::default());

    let (a, a_conn) = gw.connect(&token).await;
    let (b, _b_conn) = gw.connect(&token).await;
    let err = match gw.try_connect(&token).await {
        Ok(_) => panic!("a third session of the grant was served"),
        Err(e) => e,
    };
    let (code, message) = db_error(&err);
    assert_eq!(code, SqlState::TOO_MANY_CONNECTIONS, "{message}");
    assert!(
        message.contains(&format!("grant {jti} already has 2 sessions open"))
            && message.contains("connections_per_grant"),
        "{message}"
    );
    // Another grant is served meanwhile, and the grant's open sessions go on.
    let (c, _c_conn) = gw.connect(&other).await;
    c.simple_query("SELECT 1").await.expect("another grant");
    a.simple_query("SELECT 1").await.expect("a goes on");
    b.simple_query("SELECT 1").await.expect("b goes on");

    // Once one session ends, the grant is served again.
    drop(a);
    let _ = a_conn.await;
    let mut served = None;
    for _ in 0..100 {
        if let Ok(pair) = gw.try_connect(&token).await {
            served = Some(pair);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (d, _d_conn) = served.unwrap_or_else(|| panic!("never served again\n{}", gw.log()));
    d.simple_query("SELECT 1").await.expect("served again");
    drop((b, c, d));

    // The refusal is recorded, with the grant.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let refused: Vec<_> = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .filter_map(|s| s.refused)
        .filter(|r| r.jti.as_deref() == Some(jti.as_str()))
        .collect();
    assert!(!refused.is_empty(), "the refusal is not in the store");
    assert!(
        refused
            .iter()
            .all(|r| r.message.contains("connections_per_grant")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_the_rate_are_denied_and_the_session_goes_on() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: "[limits]\nstatements_per_second_per_grant = 5".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let jti = jti_of(&token);
    let (client, _conn) = gw.connect(&token).await;

    // A burst of 20, simple and extended (Parse) alternately.
    let (mut ran, mut denied) = (0, 0);
    for i in 0..20i32 {
        let result = if i % 2 == 0 {
            client.simple_query("SELECT 1").await.map(drop)
        } else {
            client.query_one("SELECT $1::int", &[&i]).await.map(drop)
        };
        match result {
            Ok(()) => ran += 1,
            Err(e) => {
                let (code, message) = db_error(&e);
                assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                assert!(
                    message.contains(&format!("grant {jti} is over its limit of 5"))
                        && message.contains("statements_per_second_per_grant"),
                    "{message}"
                );
                denied += 1;
            }
        }
    }
    assert!(ran >= 1 && denied >= 1, "ran {ran}, denied {denied}");

    // After a pause the session is usable.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rows = client
        .query("SELECT 41 + 1", &[])
        .await
        .expect("after a pause");
    assert_eq!(rows[0].get::<_, i32>(0), 42);

    // Inside a transaction block, a denial fails the block on both sides.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.simple_query("BEGIN").await.expect("begin");
    let mut denied_in_block = false;
    for _ in 0..20 {
        match client.simple_query("SELECT 1").await {
            Ok(_) => {}
            Err(e) => {
                let (code, message) = db_error(&e);
                assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                denied_in_block = true;
                denied += 1;
                break;
            }
        }
    }
    assert!(denied_in_block, "no denial inside the block");
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the block is aborted");
    assert_eq!(
        db_error(&err).0,
        SqlState::IN_FAILED_SQL_TRANSACTION,
        "PostgreSQL agrees the block failed"
    );
    // ROLLBACK is never refused for the rate; then the session goes on.
    client.simple_query("ROLLBACK").await.expect("rollback");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .simple_query("SELECT 1")
        .await
        .expect("after rollback");
    drop(client);

    // Every denial is a recorded verdict naming the limit.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let id = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .find(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
        .expect("the session")
        .id;
    let recorded = reader
        .events(id)
        .map(|e| e.expect("event"))
        .filter(|e| {
            matches!(&e.body, Body::Verdict(v) if v.decision == Decision::Deny
                && v.reason.contains("statements_per_second_per_grant"))
        })
        .count();
    // The SELECT in the failed block may also have been over the rate: the
    // client then saw 25P02, and the verdict is recorded all the same.
    assert!(
        recorded >= denied,
        "{recorded} denials recorded, {denied} seen"
    );
}

/// A StartupMessage for `orders` (protocol 3.0).
fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for s in ["user", "agent", "database", "orders", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// Sends `packet` a byte every 300 ms: the bytes sent when the gateway
/// disconnected, or `None` if it never did.
fn slowloris(port: u16, packet: &[u8]) -> Option<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let mut scratch = [0u8; 256];
    for (sent, byte) in packet.iter().enumerate() {
        if s.write_all(&[*byte]).is_err() {
            return Some(sent);
        }
        match s.read(&mut scratch) {
            Ok(0) => return Some(sent + 1),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(sent + 1),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_at_the_startup_timeout() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            listener_config: "startup_timeout = \"1s\"".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let port = gw.port();
    let packet = startup_packet();
    let total = packet.len();
    let slow = tokio::task::spawn_blocking(move || slowloris(port, &packet));
    let silent = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut scratch = [0u8; 16];
        match s.read(&mut scratch) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    });

    // A normal client connecting meanwhile is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    client.simple_query("SELECT 1").await.expect("served");

    let sent = slow.await.expect("slowloris thread");
    match sent {
        Some(n) => assert!(n < total, "cut only after all {total} bytes"),
        None => panic!(
            "the slowloris client sent all {total} bytes without being cut\n{}",
            gw.log()
        ),
    }
    assert!(
        silent.await.expect("silent thread"),
        "the silent client was not disconnected"
    );
    // The normal session outlives both.
    client.simple_query("SELECT 1").await.expect("still served");
    assert!(wait_until(Duration::from_secs(2), || gw
        .log()
        .contains("did not complete startup in time")));
}
