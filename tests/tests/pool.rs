//! The upstream pool: a session that ended cleanly hands its logged-in
//! target connection to the next session of the same target (the same
//! PostgreSQL backend answers), and nothing of the first agent's session
//! state is visible to the next: its temporary table, its `SET`, its
//! prepared statement, its `LISTEN` and its advisory lock are gone. A
//! session that ended inside a transaction block is not pooled.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::Duration;

use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::{Client, SimpleQueryMessage};

async fn value(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Ends a session cleanly and gives the gateway a moment to reset and
/// pool its connection.
async fn end(client: Client, conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) {
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_carries_nothing_to_the_next_agent() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            pool_size: Some(4),
            // One worker, so the next session lands on the same pool.
            workers: 1,
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());

    let (first, conn) = gw.connect(&token).await;
    let pid = value(&first, "SELECT pg_backend_pid()").await;
    first
        .batch_execute(
            "CREATE TEMP TABLE scratch (x int);
             SET statement_timeout = '1234s';
             PREPARE leftover AS SELECT 1;
             LISTEN agent_one;
             SELECT pg_advisory_lock(42);",
        )
        .await
        .expect("state of the first agent");
    end(first, conn).await;

    let (second, conn) = gw.connect(&token).await;
    assert_eq!(
        value(&second, "SELECT pg_backend_pid()").await,
        pid,
        "the pooled backend serves the next session\n{}",
        gw.log()
    );
    assert_eq!(
        value(&second, "SELECT to_regclass('pg_temp.scratch') IS NULL").await,
        "t"
    );
    assert_eq!(value(&second, "SHOW statement_timeout").await, "0");
    assert_eq!(
        value(&second, "SELECT count(*) FROM pg_prepared_statements").await,
        "0"
    );
    assert_eq!(
        value(&second, "SELECT count(*) FROM pg_listening_channels()").await,
        "0"
    );
    assert_eq!(
        value(
            &second,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        .await,
        "0"
    );
    // Inside a transaction block when it ends: not pooled.
    second.batch_execute("BEGIN").await.expect("begin");
    end(second, conn).await;

    let (third, _conn) = gw.connect(&token).await;
    assert_ne!(
        value(&third, "SELECT pg_backend_pid()").await,
        pid,
        "a connection left in a transaction block is not reused"
    );
}
