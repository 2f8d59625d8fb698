//! COPY through the gateway: FROM STDIN (psql with text and CSV data on its
//! stdin, tokio-postgres with the binary format) and TO STDOUT (text, CSV,
//! binary) give what they give straight against PostgreSQL; bad COPY data
//! fails the COPY and the session goes on.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::pin::pin;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt as _, TryStreamExt as _};
use gatehouse_tests::values::raw_rows;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

struct Setup {
    gw: Gateway,
    pg: PgCluster,
    token: String,
}

impl Setup {
    /// A gateway and cluster, with tables `<name>_gw` (filled through the
    /// gateway) and `<name>_direct` (filled directly) for each of `tables`.
    async fn start(tables: &[(&str, &str)]) -> Setup {
        let pg = PgCluster::start();
        let gw = Gateway::start(&pg, GatewayOptions::default());
        let token = gw.grant(&GrantArgs::default());
        let direct = pg.client(User::App).await;
        for (name, columns) in tables {
            for side in ["gw", "direct"] {
                direct
                    .batch_execute(&format!("create table {name}_{side} ({columns})"))
                    .await
                    .unwrap();
            }
        }
        Setup { gw, pg, token }
    }

    fn psql_gateway(&self) -> Psql {
        Psql::new(self.gw.conn_string(&self.token))
    }

    fn psql_direct(&self) -> Psql {
        Psql::new(self.pg.conn_string(User::App))
    }

    async fn gateway_client(&self) -> Client {
        self.gw.connect(&self.token).await.0
    }

    async fn direct_client(&self) -> Client {
        self.pg.client(User::App).await
    }

    /// Asserts that `<table>_gw` and `<table>_direct` hold the same rows,
    /// and returns how many.
    async fn assert_same_tables(&self, table: &str) -> usize {
        let direct = self.direct_client().await;
        let a = direct
            .query(&format!("select * from {table}_gw order by 1"), &[])
            .await
            .unwrap();
        let b = direct
            .query(&format!("select * from {table}_direct order by 1"), &[])
            .await
            .unwrap();
        assert_eq!(raw_rows(&a), raw_rows(&b), "{table}_gw vs {table}_direct");
        a.len()
    }
}

const ITEMS: (&str, &str) = (
    "items",
    "id int primary key, name text, amount numeric, note text",
);

#[tokio::test]
async fn psql_copy_from_stdin_text_and_csv() {
    let s = Setup::start(&[ITEMS]).await;

    // Text format, with escapes and NULL.
    let text = "1\talice\t10.50\tplain\n\
                2\tbob\t\\N\twith\\ttab\n\
                3\tcarol\t-3\tback\\\\slash and \\n newline\n\
                4\tdännis\t0.000001\t\n";
    // CSV with a header, quoting, embedded commas, quotes and newlines.
    let csv = "id,name,amount,note\n\
               10,\"dave, jr\",1e3,\"quote \"\"x\"\"\"\n\
               11,eve,,\n\
               12,\"multi\nline\",42,\"\"\n";
    for (side, psql) in [("gw", s.psql_gateway()), ("direct", s.psql_direct())] {
        let out = psql
            .command(format!("copy items_{side} from stdin"))
            .stdin(text)
            .run();
        assert_eq!(out.assert_success(), "COPY 4", "{side}");
    }
    for (side, psql) in [("gw", s.psql_gateway()), ("direct", s.psql_direct())] {
        let out = psql
            .command(format!(
                "copy items_{side} from stdin with (format csv, header true)"
            ))
            .stdin(csv)
            .run();
        assert_eq!(out.assert_success(), "COPY 3", "{side}");
    }
    assert_eq!(s.assert_same_tables("items").await, 7);

    let direct = s.direct_client().await;
    let row = direct
        .query_one(
            "select name, amount::text, note from items_gw where id = 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "carol");
    assert_eq!(row.get::<_, &str>(1), "-3");
    assert_eq!(row.get::<_, &str>(2), "back\\slash and \n newline");
    let note: Option<String> = direct
        .query_one("select amount::text from items_gw where id = 11", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, None);
}

#[tokio::test]
async fn copy_to_stdout_text_csv_and_binary() {
    let s = Setup::start(&[]).await;
    let source = "select g, md5(g::text), case when g % 5 = 0 then null else g * 0.25 end, \
                  e'tab\\there, quote \"' || g, now()::date - now()::date + g \
                  from generate_series(1, 20000) g";

    for options in [
        "",
        "with (format csv, header true)",
        "with (format text, null 'NIL')",
    ] {
        let sql = format!("copy ({source}) to stdout {options}");
        let through = s.psql_gateway().command(&sql).run();
        let direct = s.psql_direct().command(&sql).run();
        through.assert_success();
        assert!(
            through.stdout == direct.stdout,
            "psql `{sql}` differs through the gateway ({} vs {} bytes)",
            through.stdout.len(),
            direct.stdout.len()
        );
        assert!(direct.stdout.lines().count() >= 20_000);
    }

    let gw = s.gateway_client().await;
    let direct = s.direct_client().await;
    for format in ["text", "csv", "binary"] {
        let sql = format!("copy ({source}) to stdout with (format {format})");
        let a = copy_out(&gw, &sql).await;
        let b = copy_out(&direct, &sql).await;
        assert!(
            a == b,
            "copy_out {format} differs ({} vs {} bytes)",
            a.len(),
            b.len()
        );
        assert!(a.len() > 500_000, "{format}: {} bytes", a.len());
        if format == "binary" {
            assert!(a.starts_with(b"PGCOPY\n\xff\r\n\0"));
        }
    }
    // The session goes on.
    assert_eq!(
        gw.query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

async fn copy_out(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client.copy_out(sql).await.unwrap();
    let chunks: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(60), stream.try_collect())
        .await
        .expect("COPY TO finished in time")
        .unwrap();
    chunks.concat()
}

const BINARY: (&str, &str) = (
    "bin",
    "id int primary key, label text, data bytea, at timestamptz, flag bool, ratio float8",
);

#[tokio::test]
async fn binary_copy_in_with_tokio_postgres() {
    let s = Setup::start(&[BINARY]).await;
    let types = [
        Type::INT4,
        Type::TEXT,
        Type::BYTEA,
        Type::TIMESTAMPTZ,
        Type::BOOL,
        Type::FLOAT8,
    ];
    async fn fill(client: &Client, table: &str, types: &[Type]) -> u64 {
        let sink = client
            .copy_in::<_, Bytes>(&format!("copy {table} from stdin with (format binary)"))
            .await
            .unwrap();
        let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
        for i in 0..5000i32 {
            let label = format!("row {i} ünïcode");
            let data: Vec<u8> = (0..(i % 300)).map(|b| (b * 7 + i) as u8).collect();
            let at = UNIX_EPOCH + Duration::from_micros(1_600_000_000_000_000 + i as u64 * 1_001);
            let flag = (i % 2 == 0).then_some(i % 4 == 0);
            let ratio = f64::from(i) / 7.0;
            let row: [&(dyn ToSql + Sync); 6] = [&i, &label, &data, &at, &flag, &ratio];
            writer.as_mut().write(&row).await.unwrap();
        }
        writer.as_mut().finish().await.unwrap()
    }
    let gw = s.gateway_client().await;
    let direct = s.direct_client().await;
    assert_eq!(fill(&gw, "bin_gw", &types).await, 5000);
    assert_eq!(fill(&direct, "bin_direct", &types).await, 5000);
    assert_eq!(s.assert_same_tables("bin").await, 5000);

    // And back out in binary, through the gateway, identical to direct.
    let a = copy_out(
        &gw,
        "copy (select * from bin_gw order by id) to stdout (format binary)",
    )
    .await;
    let b = copy_out(
        &direct,
        "copy (select * from bin_direct order by id) to stdout (format binary)",
    )
    .await;
    assert!(a == b, "binary COPY TO of the two tables differs");
}

/// Bad COPY data, an aborted COPY, and what the session does after each;
/// returned as comparable text.
async fn failing_copies(client: &Client, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    let state = |r: Result<u64, tokio_postgres::Error>| match r {
        Ok(n) => format!("ok {n}"),
        Err(e) => e.code().map_or_else(
            || format!("error without SQLSTATE: {e}"),
            |c| c.code().to_owned(),
        ),
    };

    // A row whose id is not an integer, after a good one.
    let sink = client
        .copy_in::<_, Bytes>(&format!("copy {table} from stdin"))
        .await
        .unwrap();
    let mut sink = pin!(sink);
    sink.send(Bytes::from_static(b"1\tgood\t1\tx\n"))
        .await
        .unwrap();
    let _ = sink.send(Bytes::from_static(b"two\tbad\t2\ty\n")).await;
    out.push(format!("bad data: {}", state(sink.as_mut().finish().await)));
    out.push(format!(
        "after bad data: {}",
        state(client.execute(&format!("select * from {table}"), &[]).await)
    ));

    // A wrong number of columns.
    let sink = client
        .copy_in::<_, Bytes>(&format!("copy {table} from stdin with (format csv)"))
        .await
        .unwrap();
    let mut sink = pin!(sink);
    let _ = sink.send(Bytes::from_static(b"5,a,1,x,extra\n")).await;
    out.push(format!(
        "extra column: {}",
        state(sink.as_mut().finish().await)
    ));

    // The client gives up: tokio-postgres sends CopyFail when the sink is
    // dropped unfinished.
    {
        let sink = client
            .copy_in::<_, Bytes>(&format!("copy {table} from stdin"))
            .await
            .unwrap();
        let mut sink = pin!(sink);
        sink.send(Bytes::from_static(b"7\tabandoned\t7\tz\n"))
            .await
            .unwrap();
    }
    out.push(format!(
        "after CopyFail: {}",
        state(
            client
                .execute(
                    &format!("insert into {table} values (8, 'after', 8, 'ok')"),
                    &[]
                )
                .await
        )
    ));

    // A COPY in a transaction that fails aborts the transaction.
    client.batch_execute("begin").await.unwrap();
    let sink = client
        .copy_in::<_, Bytes>(&format!("copy {table} from stdin"))
        .await
        .unwrap();
    let mut sink = pin!(sink);
    let _ = sink.send(Bytes::from_static(b"not\ta\trow\n")).await;
    out.push(format!(
        "bad data in a transaction: {}",
        state(sink.as_mut().finish().await)
    ));
    out.push(format!(
        "then: {}",
        state(client.execute("select 1", &[]).await)
    ));
    client.batch_execute("rollback").await.unwrap();

    let ids: Vec<i32> = client
        .query(&format!("select id from {table} order by id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.push(format!("rows: {ids:?}"));
    out
}

#[tokio::test]
async fn bad_copy_data_fails_the_copy_and_the_session_goes_on() {
    let s = Setup::start(&[ITEMS]).await;
    let through = failing_copies(&s.gateway_client().await, "items_gw").await;
    let reference = failing_copies(&s.direct_client().await, "items_direct").await;
    assert_eq!(through, reference);
    assert_eq!(
        through,
        [
            "bad data: 22P02",
            "after bad data: ok 0",
            "extra column: 22P04",
            "after CopyFail: ok 1",
            "bad data in a transaction: 22P02",
            "then: 25P02",
            "rows: [8]",
        ]
    );

    // psql running a script (no ON_ERROR_STOP): the COPY data is inline,
    // the bad row fails the COPY, the statements after it still run.
    let script = s.gw.dir().join("copy.sql");
    std::fs::write(
        &script,
        "copy items_TABLE from stdin;\n\
         20\tfine\t1\ta\n\
         twenty-one\toops\t2\tb\n\
         \\.\n\
         select 'after the copy';\n\
         select count(*) from items_TABLE where id >= 20;\n",
    )
    .unwrap();
    let run = |psql: Psql, side: &str| {
        let path = s.gw.dir().join(format!("copy-{side}.sql"));
        let text = std::fs::read_to_string(&script)
            .unwrap()
            .replace("TABLE", side);
        std::fs::write(&path, text).unwrap();
        psql.arg("-v").arg("ON_ERROR_STOP=0").file(path).run()
    };
    let through = run(s.psql_gateway(), "gw");
    let direct = run(s.psql_direct(), "direct");
    assert_eq!(through.assert_success(), direct.assert_success());
    assert_eq!(through.lines(), ["after the copy", "0"]);
    assert!(
        through
            .stderr
            .contains("invalid input syntax for type integer: \"twenty-one\""),
        "{through}"
    );
    assert_eq!(
        through
            .stderr
            .replace("copy-gw.sql", "copy-X.sql")
            .replace("items_gw", "items_X"),
        direct
            .stderr
            .replace("copy-direct.sql", "copy-X.sql")
            .replace("items_direct", "items_X")
    );
}

#[tokio::test]
async fn a_large_copy_from_stdin() {
    let s = Setup::start(&[ITEMS]).await;
    // ~12 MB of COPY data: many CopyData messages, each batch recorded
    // before it is forwarded.
    let mut data = String::new();
    for i in 0..200_000 {
        data.push_str(&format!(
            "{i}\tname {i}\t{}.{:02}\t{}\n",
            i * 3,
            i % 100,
            "n".repeat(i % 40)
        ));
    }
    for (side, psql) in [("gw", s.psql_gateway()), ("direct", s.psql_direct())] {
        let out = psql
            .command(format!("copy items_{side} from stdin"))
            .stdin(data.clone())
            .timeout(Duration::from_secs(120))
            .run();
        assert_eq!(out.assert_success(), "COPY 200000", "{side}");
    }
    let direct = s.direct_client().await;
    let digest = |table: &'static str| {
        let direct = &direct;
        async move {
            direct
                .query_one(
                    &format!(
                        "select count(*), md5(string_agg(t::text, ',' order by id)) from {table} t"
                    ),
                    &[],
                )
                .await
                .unwrap()
        }
    };
    let (a, b) = (digest("items_gw").await, digest("items_direct").await);
    assert_eq!(a.get::<_, i64>(0), 200_000);
    assert_eq!(a.get::<_, String>(1), b.get::<_, String>(1));
}
