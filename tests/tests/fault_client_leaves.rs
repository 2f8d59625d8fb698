//! A client that vanishes (its TCP connection dropped, no Terminate) in the
//! middle of a transaction or of a COPY FROM STDIN: the gateway closes the
//! upstream connection too, so the backend goes away and what the client
//! had not committed is rolled back.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::Client;

/// How long the backend may outlive its client.
const BACKEND_GONE: Duration = Duration::from_secs(15);

/// Waits (bounded) until the backend `pid` is in `state`, or gone when
/// `state` is `None`; panics with what it saw.
async fn wait_backend(direct: &Client, pid: i32, state: Option<&str>) {
    let deadline = Instant::now()
        + if state.is_some() {
            Duration::from_secs(10)
        } else {
            BACKEND_GONE
        };
    loop {
        let rows = direct
            .query(
                "select state, query from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .await
            .expect("pg_stat_activity");
        let now: Option<(Option<String>, Option<String>)> =
            rows.first().map(|r| (r.get(0), r.get(1)));
        let done = match (state, &now) {
            (None, None) => true,
            (Some(want), Some((Some(have), _))) => have == want,
            _ => false,
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid}: wanted {state:?}, still {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rows_with_customer(direct: &Client, customer: &str) -> i64 {
    direct
        .query_one(
            "select count(*) from invoices where customer = $1",
            &[&customer],
        )
        .await
        .expect("count rows")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishes_mid_transaction() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let direct = pg.superuser_client().await;

    let token = gw.grant(&GrantArgs::default());
    let (client, conn) = gw.connect(&token).await;
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0);
    client
        .batch_execute(
            "begin; insert into invoices (id, customer, total) values (900001, 'vanished-tx', 1)",
        )
        .await
        .expect("begin and insert");
    wait_backend(&direct, pid, Some("idle in transaction")).await;

    // Drop the socket without a Terminate.
    conn.abort();
    let _ = conn.await;
    drop(client);

    wait_backend(&direct, pid, None).await;
    assert_eq!(rows_with_customer(&direct, "vanished-tx").await, 0);

    // The gateway serves on.
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    client
        .simple_query("select 1")
        .await
        .expect("a new session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishes_mid_copy() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let direct = pg.superuser_client().await;

    let token = gw.grant(&GrantArgs::default());
    let (client, conn) = gw.connect(&token).await;
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0);
    let sink = client
        .copy_in::<_, Bytes>("copy invoices (id, customer, total) from stdin")
        .await
        .expect("COPY FROM STDIN starts");
    let mut sink = Box::pin(sink);
    for i in 0..100 {
        sink.feed(Bytes::from(format!(
            "{}\tvanished-copy\t{i}\n",
            910_000 + i
        )))
        .await
        .expect("feed a row");
    }
    sink.flush().await.expect("flush rows");
    wait_backend(&direct, pid, Some("active")).await;

    conn.abort();
    let _ = conn.await;
    drop(sink);
    drop(client);

    wait_backend(&direct, pid, None).await;
    assert_eq!(rows_with_customer(&direct, "vanished-copy").await, 0);

    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    client
        .simple_query("select 1")
        .await
        .expect("a new session");
}
