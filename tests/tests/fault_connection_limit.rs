//! A flood of connections beyond `[listener] max_connections` (clients
//! that connect and idle, or just keep connecting): the ones past the limit
//! are refused with SQLSTATE 53300, as PostgreSQL refuses clients past its
//! own limit, the sessions already open go on, and once connections end,
//! new clients are served again.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gatehouse_tests::ports::wait_until;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_the_limit_are_refused_and_the_rest_go_on() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            max_connections: Some(3),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let (a, _ca) = gw.connect(&token).await;
    let (b, _cb) = gw.connect(&token).await;
    // An idle connection that never says hello holds the third place. It
    // sends an SSLRequest and reads the answer: then the gateway has
    // accepted it and counts it (a bare connect may still wait in another
    // worker's accept queue while the next client is served).
    let mut idle = TcpStream::connect(("127.0.0.1", gw.port())).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    idle.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .expect("SSLRequest");
    let mut answer = [0u8; 1];
    idle.read_exact(&mut answer)
        .expect("an answer to SSLRequest");
    assert!(matches!(&answer, b"S" | b"N"), "{answer:?}");

    for _ in 0..3 {
        match gw.try_connect(&token).await {
            Ok(_) => panic!("a client past the limit was served"),
            Err(e) => {
                let db = e.as_db_error().expect("a server error");
                assert_eq!(db.code(), &SqlState::TOO_MANY_CONNECTIONS, "{db:?}");
                assert!(
                    db.message().contains("too many connections"),
                    "{}",
                    db.message()
                );
            }
        }
    }
    // The open sessions are untouched.
    a.simple_query("SELECT 1").await.expect("a goes on");
    b.simple_query("SELECT 1").await.expect("b goes on");

    // Room again once connections end.
    drop(idle);
    drop(a);
    let served = {
        let mut ok = false;
        for _ in 0..50 {
            if let Ok((c, _conn)) = gw.try_connect(&token).await {
                c.simple_query("SELECT 1").await.expect("served");
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ok
    };
    assert!(served, "no room after connections ended\n{}", gw.log());
    assert!(wait_until(Duration::from_secs(1), || gw
        .log()
        .contains("too many connections")));
}
