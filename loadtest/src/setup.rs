//! `--setup`: the table the built-in workloads use, created over the direct
//! connection (never through the gateway, so that setup is not recorded as
//! load).

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::workload::TABLE;

/// Creates `gatehouse_lt_items` if absent and makes it hold exactly ids
/// `1..=rows`; refills it only when its row count differs. Returns whether
/// it refilled.
pub async fn prepare(client: &Client, rows: u32) -> anyhow::Result<bool> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (\
               id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, \
               amount numeric NOT NULL)"
        ))
        .await
        .with_context(|| format!("--setup: cannot create {TABLE}"))?;
    let row = client
        .query_one(
            &format!("SELECT count(*), coalesce(min(id), 0), coalesce(max(id), 0) FROM {TABLE}"),
            &[],
        )
        .await
        .with_context(|| format!("--setup: cannot count {TABLE}"))?;
    let (count, min, max): (i64, i32, i32) = (row.get(0), row.get(1), row.get(2));
    let want = i64::from(rows);
    if count == want && min == 1 && i64::from(max) == want {
        return Ok(false);
    }
    client
        .batch_execute(&format!(
            "BEGIN; \
             TRUNCATE {TABLE}; \
             INSERT INTO {TABLE} (id, name, email, amount) \
               SELECT i, 'item ' || i, 'user' || i || '@example.com', (i % 1000) * 1.25 \
               FROM generate_series(1, {rows}) AS i; \
             COMMIT; \
             ANALYZE {TABLE}"
        ))
        .await
        .with_context(|| format!("--setup: cannot fill {TABLE} with {rows} rows"))?;
    Ok(true)
}
