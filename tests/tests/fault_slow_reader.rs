//! A client that asks for a huge result and stops reading: the gateway's
//! memory stays bounded — it stops reading from the target once its queue
//! towards the client is full, so PostgreSQL itself waits to write
//! (`ClientWrite`) — other sessions are served meanwhile, and when the
//! client goes away the backend goes too.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::{Duration, Instant};

use gatehouse_tests::wire::{RawConn, query};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, User};

/// The gateway's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_grow_the_gateway() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            tls: false,
            allow_plaintext: true,
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let pid = gw.pid().expect("running");
    let before = rss_bytes(pid);

    // About 2 GB of rows, asked for and never read.
    let mut stalled = RawConn::plain(gw.port());
    stalled.login_ok("agent", "orders", &token);
    stalled.send(query("SELECT repeat('x', 1000) FROM generate_series(1, 2000000)").bytes());

    // PostgreSQL ends up waiting to write: the backpressure reached it.
    let direct = pg.client(User::App).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event = 'ClientWrite' AND query LIKE 'SELECT repeat%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backend never blocked on writing\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the gateway time to have grown, if it were going to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_bytes(pid);
    assert!(
        during < before + 64 * 1024 * 1024,
        "the gateway grew from {before} to {during} bytes for a client that does not read"
    );

    // Another session is served meanwhile.
    let (other, _conn) = gw
        .try_connect_with(
            &gw.pg_config(&token)
                .ssl_mode(tokio_postgres::config::SslMode::Disable)
                .to_owned(),
        )
        .await
        .expect("connect");
    other.simple_query("SELECT 1").await.expect("served");

    // The client leaves: the backend goes too.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the backend outlived its client");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
