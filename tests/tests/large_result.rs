//! A 100 000-row result comes through the gateway byte for byte as it
//! comes straight from PostgreSQL: psql's output text, and every raw value
//! tokio-postgres receives.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::Duration;

use gatehouse_tests::values::{first_difference, raw_rows};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};

const ROWS: usize = 100_000;

/// Deterministic, a few columns of different types, ~100 bytes a row.
const QUERY: &str = "select g, md5(g::text), repeat('x', g % 50), (g * 1.5)::numeric(12,2), \
                     date '2024-01-01' + g, case when g % 7 = 0 then null else g::text end, \
                     (g % 3 = 0) \
                     from generate_series(1, 100000) g order by 1";

/// Generous: a debug-build gateway and server on two shared cores.
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn psql_output_is_identical() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());

    let through = Psql::new(gw.conn_string(&token))
        .command(QUERY)
        .timeout(PSQL_TIMEOUT)
        .run();
    let direct = Psql::new(pg.conn_string(User::App))
        .command(QUERY)
        .timeout(PSQL_TIMEOUT)
        .run();
    through.assert_success();
    direct.assert_success();
    assert_eq!(direct.lines().len(), ROWS);
    assert_eq!(
        direct.lines()[41],
        "42|a1d0c6e83f027327d8461063f4ac58a6|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx|63.00|2024-02-12||t"
    );
    if let Some(diff) = first_difference(&through.stdout, &direct.stdout) {
        panic!("psql output differs through the gateway: {diff}");
    }
    assert!(through.stderr.is_empty(), "{}", through.stderr);
}

#[tokio::test]
async fn tokio_postgres_rows_are_identical() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    let direct = pg.client(User::App).await;

    // Binary results (extended protocol) ...
    let limit = Duration::from_secs(120);
    let through = tokio::time::timeout(limit, client.query(QUERY, &[]))
        .await
        .expect("the query through the gateway finished in time")
        .unwrap();
    let reference = direct.query(QUERY, &[]).await.unwrap();
    assert_eq!(through.len(), ROWS);
    let (a, b) = (raw_rows(&through), raw_rows(&reference));
    if let Some(i) = (0..ROWS).find(|&i| a[i] != b[i]) {
        panic!("row {i} differs: {:?} != {:?}", a[i], b[i]);
    }
    drop((a, b, through, reference));

    // ... and text results (simple protocol), in one Query message.
    let through = tokio::time::timeout(limit, client.simple_query(QUERY))
        .await
        .expect("the simple query through the gateway finished in time")
        .unwrap();
    let reference = direct.simple_query(QUERY).await.unwrap();
    let text = |messages: &[tokio_postgres::SimpleQueryMessage]| -> Vec<Vec<Option<String>>> {
        messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    };
    let (a, b) = (text(&through), text(&reference));
    assert_eq!(a.len(), ROWS);
    assert!(a == b, "simple-protocol rows differ through the gateway");

    // The session is still fine after the large result.
    let n: i64 = client
        .query_one("select count(*) from invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
}

#[tokio::test]
async fn a_large_value_goes_up_and_comes_back() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;

    // 8 MiB in one Bind and back in one DataRow: frames far larger than
    // any read buffer, below the listener's 64 MiB frame cap.
    let value: Vec<u8> = (0..8usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let row = tokio::time::timeout(
        Duration::from_secs(60),
        client.query_one(
            "select $1::bytea, length($1::bytea), md5($1::bytea)",
            &[&value],
        ),
    )
    .await
    .expect("the round trip finished in time")
    .unwrap();
    assert_eq!(row.get::<_, i32>(1), value.len() as i32);
    assert!(
        row.get::<_, &[u8]>(0) == value.as_slice(),
        "the value came back changed"
    );
    let direct = pg.client(User::App).await;
    let md5: String = direct
        .query_one("select md5($1::bytea)", &[&value])
        .await
        .unwrap()
        .get(0);
    assert_eq!(row.get::<_, String>(2), md5);
}

#[tokio::test]
async fn large_values_pipelined_both_ways_do_not_deadlock() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    let stmt = client
        .prepare("select $1::bytea, length($1::bytea)")
        .await
        .unwrap();
    // 500 × 64 KiB up and back down, all in flight at once: both of the
    // gateway's directions fill past their high-water marks together.
    let payloads: Vec<Vec<u8>> = (0..500u32)
        .map(|i| vec![(i % 251) as u8; 64 << 10])
        .collect();
    let (client, stmt) = (&client, &stmt);
    let queries = payloads
        .iter()
        .map(|p| async move { client.query_one(stmt, &[p]).await });
    let rows = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::try_join_all(queries),
    )
    .await
    .expect("the pipeline finished in time")
    .unwrap();
    for (row, p) in rows.iter().zip(&payloads) {
        assert_eq!(row.get::<_, i32>(1), 64 << 10);
        assert!(row.get::<_, &[u8]>(0) == p.as_slice());
    }
}
