//! Queries through the gateway behave as they do straight against
//! PostgreSQL: simple and multi-statement queries, the extended protocol with
//! parameters of several types, prepared statements, pipelining,
//! transactions, errors (the session goes on after them), the empty query,
//! notices, startup parameters (forwarded) and options (dropped), libpq's
//! fastpath, and a target session terminated under the client.
//!
//! Most checks run the same thing through the gateway and directly and
//! compare: PostgreSQL is the reference, the gateway must be invisible.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::{join_all, try_join_all};
use gatehouse_core::pg::encode;
use gatehouse_tests::messages::{self, Received};
use gatehouse_tests::values::{Text, raw_rows};
use gatehouse_tests::wire::{self, RawConn};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage};

/// A cluster, a gateway in front of it and a grant for `orders`.
struct Setup {
    gw: Gateway,
    pg: PgCluster,
    token: String,
}

impl Setup {
    fn start() -> Setup {
        Setup::with(GatewayOptions::default())
    }

    fn with(options: GatewayOptions) -> Setup {
        let pg = PgCluster::start();
        let gw = Gateway::start(&pg, options);
        let token = gw.grant(&GrantArgs::default());
        Setup { gw, pg, token }
    }

    async fn gateway_client(&self) -> Client {
        self.gw.connect(&self.token).await.0
    }

    async fn direct_client(&self) -> Client {
        self.pg.client(User::App).await
    }

    fn psql_gateway(&self) -> Psql {
        Psql::new(self.gw.conn_string(&self.token))
    }

    fn psql_direct(&self) -> Psql {
        Psql::new(self.pg.conn_string(User::App))
    }
}

/// A simple-query result as comparable text: one entry per row and per
/// completed command.
fn simple_transcript(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                let values: Vec<String> = (0..row.len())
                    .map(|i| row.get(i).map_or("NULL".to_owned(), str::to_owned))
                    .collect();
                format!("row {}", values.join("|"))
            }
            SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
            SimpleQueryMessage::RowDescription(cols) => {
                let names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
                format!("columns {}", names.join("|"))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// The outcome of one statement as comparable text: its rows, or its
/// SQLSTATE.
fn outcome(result: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>) -> String {
    match result {
        Ok(messages) => format!("ok {:?}", simple_transcript(&messages)),
        Err(e) => format!("error {}", sqlstate(&e)),
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| format!("(no SQLSTATE: {e})"), |c| c.code().to_owned())
}

#[tokio::test]
async fn simple_and_multi_statement_queries() {
    let s = Setup::start();

    let out = s.psql_gateway().command("select 1").run();
    assert_eq!(out.assert_success(), "1");

    // One Query message with two statements: psql 15 prints both results.
    let multi = "select 1; select 2";
    let through = s.psql_gateway().command(multi).run();
    let direct = s.psql_direct().command(multi).run();
    assert_eq!(through.assert_success(), direct.assert_success());
    assert_eq!(through.lines(), ["1", "2"]);

    let gw = s.gateway_client().await;
    let direct = s.direct_client().await;
    for sql in [
        "select 1",
        "select 1; select 2",
        "select 'a' as x, null as y, 3.50::numeric as z; select g from generate_series(1, 3) g",
        "create temp table t(x int); insert into t values (1), (2); select sum(x) from t",
    ] {
        let a = simple_transcript(&gw.simple_query(sql).await.unwrap());
        let b = simple_transcript(&direct.simple_query(sql).await.unwrap());
        assert_eq!(a, b, "{sql}");
    }
    let got = simple_transcript(&gw.simple_query("select 1; select 2").await.unwrap());
    assert_eq!(
        got,
        [
            "columns ?column?",
            "row 1",
            "complete 1",
            "columns ?column?",
            "row 2",
            "complete 1"
        ]
    );

    let statements = s.pg.statements();
    assert!(
        statements.iter().any(|st| st == "select 1; select 2"),
        "the multi-statement query did not reach PostgreSQL as one: {statements:#?}"
    );
}

#[tokio::test]
async fn extended_protocol_parameters_of_several_types() {
    let s = Setup::start();
    let gw = s.gateway_client().await;
    let direct = s.direct_client().await;

    let sql = "select $1::int4 as i, $2::text as t, $3::numeric as n, $4::bytea as b, \
               $5::int4 as nothing, $6::timestamptz as ts, $3::numeric * 2 as n2, \
               length($4::bytea) as blen, $7::int8[] as arr";
    let text = "héllo 'quoted' \"double\" \\ tab\tnewline\n end";
    let numeric = Text("12345678901234567890.123456789012345678901".to_owned());
    let bytes: Vec<u8> = vec![0, 1, 2, 0x5c, 0x27, 0xff, 0];
    let null: Option<i32> = None;
    let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let arr: Vec<i64> = vec![-1, 0, i64::MAX];
    let params: [&(dyn ToSql + Sync); 7] = [&42i32, &text, &numeric, &bytes, &null, &at, &arr];

    let through = gw.query(sql, &params).await.unwrap();
    let reference = direct.query(sql, &params).await.unwrap();
    assert_eq!(raw_rows(&through), raw_rows(&reference));

    let row = &through[0];
    assert_eq!(row.get::<_, i32>("i"), 42);
    assert_eq!(row.get::<_, &str>("t"), text);
    assert_eq!(row.get::<_, Vec<u8>>("b"), bytes);
    assert_eq!(row.get::<_, Option<i32>>("nothing"), None);
    assert_eq!(row.get::<_, SystemTime>("ts"), at);
    assert_eq!(row.get::<_, i32>("blen"), 7);
    assert_eq!(row.get::<_, Vec<i64>>("arr"), arr);
    let n: String = gw
        .query_one("select ($1::numeric * 2)::text", &[&numeric])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, "24691357802469135780.246913578024691357802");

    // Parameter types given by the client instead of inferred, and rows
    // from a table.
    use tokio_postgres::types::Type;
    let typed = "select id, customer, total from invoices where id = any($1) and total > $2 \
                 order by id";
    let ids: Vec<i32> = vec![1, 2, 3];
    let min = Text("0".to_owned());
    let types = [Type::INT4_ARRAY, Type::NUMERIC];
    let a = gw
        .query_typed(typed, &[(&ids, types[0].clone()), (&min, types[1].clone())])
        .await
        .unwrap();
    let b = direct
        .query_typed(typed, &[(&ids, types[0].clone()), (&min, types[1].clone())])
        .await
        .unwrap();
    assert!(!a.is_empty());
    assert_eq!(raw_rows(&a), raw_rows(&b));

    let statements = s.pg.statements();
    assert!(
        statements.iter().any(|st| st == sql),
        "the parameterized statement did not reach PostgreSQL: {statements:#?}"
    );
}

#[tokio::test]
async fn a_prepared_statement_is_reused_many_times() {
    let s = Setup::start();
    let gw = s.gateway_client().await;
    let sql = "select $1::int4 * 2, $2::text || '-prepared-marker'";
    let stmt = gw.prepare(sql).await.unwrap();
    const RUNS: i32 = 300;
    for i in 0..RUNS {
        let label = format!("run{i}");
        let row = gw.query_one(&stmt, &[&i, &label]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i * 2);
        assert_eq!(row.get::<_, String>(1), format!("run{i}-prepared-marker"));
    }
    let executed = s.pg.statements().iter().filter(|st| *st == sql).count();
    assert_eq!(executed, RUNS as usize, "executions in the server log");
}

#[tokio::test]
async fn a_pipelined_batch_keeps_its_order() {
    let s = Setup::start();
    let gw = s.gateway_client().await;
    let stmt = gw
        .prepare("select $1::int4 + 1000, pg_backend_pid()")
        .await
        .unwrap();
    // All queries are written before the first answer is read; an early
    // slow one must not let later answers overtake it.
    let slow = gw.query_one("select 'slow'::text, pg_sleep(0.2)::text", &[]);
    let fast = (0..200).map(|i| {
        let stmt = &stmt;
        let gw = &gw;
        async move { gw.query_one(stmt, &[&i]).await }
    });
    let (slow, fast) = tokio::join!(slow, try_join_all(fast));
    assert_eq!(slow.unwrap().get::<_, String>(0), "slow");
    let fast = fast.unwrap();
    let pids: std::collections::HashSet<i32> = fast.iter().map(|r| r.get(1)).collect();
    assert_eq!(pids.len(), 1, "one upstream session serves the whole batch");
    let values: Vec<i32> = fast.iter().map(|r| r.get(0)).collect();
    let want: Vec<i32> = (1000..1200).collect();
    assert_eq!(values, want);
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let s = Setup::start();
    let mut gw = s.gateway_client().await;
    let direct = s.direct_client().await;
    let count = |id: i32| {
        let direct = &direct;
        async move {
            direct
                .query_one("select count(*) from invoices where id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };

    gw.batch_execute("begin; insert into invoices values (500, 'rolled back', 1); rollback")
        .await
        .unwrap();
    assert_eq!(count(500).await, 0);

    gw.batch_execute("begin").await.unwrap();
    gw.execute("insert into invoices values (501, 'pending', 2)", &[])
        .await
        .unwrap();
    assert_eq!(count(501).await, 0, "uncommitted rows are not visible");
    gw.batch_execute("rollback").await.unwrap();
    assert_eq!(count(501).await, 0);

    {
        let tx = gw.transaction().await.unwrap();
        tx.execute("insert into invoices values (502, 'dropped', 3)", &[])
            .await
            .unwrap();
        // Dropped without commit: tokio-postgres rolls back.
    }
    assert_eq!(count(502).await, 0);

    let tx = gw.transaction().await.unwrap();
    tx.execute("insert into invoices values (503, 'kept', 4)", &[])
        .await
        .unwrap();
    tx.batch_execute(
        "savepoint sp; insert into invoices values (504, 'undone', 5); rollback to savepoint sp",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(503).await, 1);
    assert_eq!(count(504).await, 0);
    let rows = gw
        .query("select id from invoices where id >= 500 order by id", &[])
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [503]);
}

/// Runs the same steps on a client and returns what each did.
async fn error_in_a_transaction(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "create temp table t(x int)",
        "begin",
        "insert into t values (1)",
        "select 1/0",
        "select 1",
        "rollback",
        "select count(*) from t",
        "begin",
        "insert into t values (2)",
        "insert into t values ('not a number')",
        "commit",
        "select count(*) from t",
    ] {
        out.push(format!(
            "{sql}: {}",
            outcome(client.simple_query(sql).await)
        ));
    }
    // The same through the extended protocol.
    client.batch_execute("begin").await.unwrap();
    let r = client.query("select 10 / $1::int4", &[&0i32]).await;
    out.push(format!(
        "extended 10/0: {:?}",
        r.map(|_| ()).map_err(|e| sqlstate(&e))
    ));
    let r = client.query("select $1::int4", &[&1i32]).await;
    out.push(format!(
        "extended after: {:?}",
        r.map(|_| ()).map_err(|e| sqlstate(&e))
    ));
    out.push(format!(
        "rollback: {}",
        outcome(client.simple_query("rollback").await)
    ));
    let r = client.query_one("select $1::int4 + 1", &[&1i32]).await;
    out.push(format!(
        "extended after rollback: {:?}",
        r.map(|r| r.get::<_, i32>(0)).map_err(|e| sqlstate(&e))
    ));
    out
}

#[tokio::test]
async fn errors_in_a_transaction_leave_the_session_usable() {
    let s = Setup::start();
    let through = error_in_a_transaction(&s.gateway_client().await).await;
    let reference = error_in_a_transaction(&s.direct_client().await).await;
    assert_eq!(through, reference);
    let joined = through.join("\n");
    for expected in [
        "select 1/0: error 22012",
        "select 1: error 25P02",
        "insert into t values ('not a number'): error 22P02",
        "commit: ok",
        "extended after: Err(\"25P02\")",
        "extended after rollback: Ok(2)",
    ] {
        assert!(joined.contains(expected), "{expected:?} not in\n{joined}");
    }
    assert!(joined.contains("select count(*) from t: ok [\"columns count\", \"row 0\""));
}

#[tokio::test]
async fn an_error_in_a_pipelined_batch_fails_only_its_query() {
    let s = Setup::start();
    let run = |client: Client| async move {
        let queries = (0..9).map(|i| {
            let client = &client;
            async move {
                let divisor: i32 = if i == 4 { 0 } else { 1 };
                client
                    .query_one("select $1::int4 / $2::int4", &[&i, &divisor])
                    .await
                    .map(|r| r.get::<_, i32>(0))
                    .map_err(|e| sqlstate(&e))
            }
        });
        let results = join_all(queries).await;
        let after = client.query_one("select 'after'::text", &[]).await.unwrap();
        (results, after.get::<_, String>(0))
    };
    let through = run(s.gateway_client().await).await;
    let reference = run(s.direct_client().await).await;
    assert_eq!(through, reference);
    assert_eq!(through.0[4], Err("22012".to_owned()));
    assert_eq!(through.0[5], Ok(5));
}

#[tokio::test]
async fn an_error_in_an_extended_batch_skips_to_sync_as_postgres_does() {
    // A hand-built batch (three Parse/Bind/Execute, one Sync) over a raw
    // connection: drivers send a Sync per query, so this is the only way to
    // see the server skip the rest of a batch after an error.
    let s = Setup::with(GatewayOptions {
        allow_plaintext: true,
        ..GatewayOptions::default()
    });
    let batch = |c: &mut RawConn<std::net::TcpStream>| {
        let mut bytes = Vec::new();
        for sql in ["select 1", "select 1/0", "select 2"] {
            bytes.extend_from_slice(wire::parse(sql).bytes());
            bytes.extend_from_slice(wire::bind().bytes());
            bytes.extend_from_slice(wire::execute().bytes());
        }
        bytes.extend_from_slice(wire::sync().bytes());
        c.send(&bytes);
        let frames = c.until_ready();
        let after = c.simple_query("select 3");
        let empty = c.simple_query("");
        // Flush instead of Sync: the answers so far must come without
        // waiting for a Sync (drivers such as JDBC and asyncpg rely on it).
        let mut bytes = wire::parse("select 4 as four").bytes().to_vec();
        bytes.extend_from_slice(describe_statement().bytes());
        bytes.extend_from_slice(encode::frame(b'H', |_| {}).bytes());
        c.send(&bytes);
        let mut flushed = vec![c.frame(), c.frame(), c.frame()];
        c.send(wire::sync().bytes());
        flushed.extend(c.until_ready());
        (frames, after, (empty, flushed))
    };

    let mut gw = RawConn::plain(s.gw.port());
    gw.login_ok("agent-7", "orders", &s.token);
    let (through, through_after, (through_empty, through_flushed)) = batch(&mut gw);

    let mut direct = RawConn::plain(s.pg.port());
    direct.login_ok(User::Trust.name(), "orders", "");
    let (reference, reference_after, (reference_empty, reference_flushed)) = batch(&mut direct);

    assert_eq!(
        wire::tags(&through),
        wire::tags(&reference),
        "{} vs {}",
        wire::describe(&through),
        wire::describe(&reference)
    );
    assert_eq!(through, reference, "the same frames, byte for byte");
    assert_eq!(wire::error(&through).map(|e| e.0).as_deref(), Some("22012"));
    assert!(!wire::rows(&through).contains(&vec![Some("2".to_owned())]));
    assert_eq!(
        through.last().map(|f| f.body().to_vec()),
        Some(b"I".to_vec())
    );

    assert_eq!(wire::rows(&through_after), [[Some("3".to_owned())]]);
    assert_eq!(through_after, reference_after);
    // The empty query: EmptyQueryResponse, then ReadyForQuery.
    assert_eq!(wire::tags(&through_empty), "IZ");
    assert_eq!(through_empty, reference_empty);
    // ParseComplete, ParameterDescription, RowDescription before the Sync.
    assert_eq!(wire::tags(&through_flushed), "1tTZ");
    assert_eq!(through_flushed, reference_flushed);
}

/// A Describe of the unnamed statement.
fn describe_statement() -> gatehouse_core::pg::frame::Frame {
    encode::frame(b'D', |b| b.extend_from_slice(b"S\0"))
}

#[test]
fn session_parameters_options_and_fastpath() {
    let s = Setup::start();
    let blob = s.gw.dir().join("blob.txt");
    std::fs::write(&blob, "large object contents").unwrap();
    let run = |psql: Psql| {
        psql.env("PGCLIENTENCODING", "LATIN1")
            .env("PGDATESTYLE", "German")
            // Startup options are the gateway's to drop: the grant, not
            // the client, decides the session's settings and role.
            .env("PGOPTIONS", "-c search_path=pg_catalog -c role=postgres")
            .command("show client_encoding")
            .command("select date '2024-03-01'")
            .command("show search_path")
            .command("select current_user")
            .run()
    };
    let through = run(s.psql_gateway());
    assert_eq!(
        through.lines(),
        ["LATIN1", "01.03.2024", "\"$user\", public", "app"],
        "{through}"
    );

    // psql's \lo_import writes through libpq's fastpath (FunctionCall)
    // messages.
    let out = s
        .psql_gateway()
        .command(format!("\\lo_import {}", blob.display()))
        .run();
    let oid = out
        .assert_success()
        .strip_prefix("lo_import ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let out = s
        .psql_direct()
        .command(format!("select convert_from(lo_get({oid}), 'UTF8')"))
        .run();
    assert_eq!(out.assert_success(), "large object contents");

    // An error in the middle of a multi-statement query stops it there, as
    // directly.
    let multi = "select 1; select 1/0; select 2";
    let through = s.psql_gateway().command(multi).run();
    let direct = s.psql_direct().command(multi).run();
    assert_eq!(through.stdout, direct.stdout);
    assert_eq!(through.stderr, direct.stderr);
    assert_eq!(through.lines(), ["1"]);
    assert!(through.stderr.contains("division by zero"), "{through}");
}

#[tokio::test]
async fn the_empty_query() {
    let s = Setup::start();
    let gw = s.gateway_client().await;
    let direct = s.direct_client().await;
    for sql in ["", " ", ";", "-- only a comment"] {
        let a = outcome(gw.simple_query(sql).await);
        let b = outcome(direct.simple_query(sql).await);
        assert_eq!(a, b, "simple {sql:?}");
        let a = gw
            .query(sql, &[])
            .await
            .map(|r| r.len())
            .map_err(|e| sqlstate(&e));
        let b = direct
            .query(sql, &[])
            .await
            .map(|r| r.len())
            .map_err(|e| sqlstate(&e));
        assert_eq!(a, b, "extended {sql:?}");
    }
    assert_eq!(
        gw.query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    let through = s
        .psql_gateway()
        .command(";")
        .command("select 'still here'")
        .run();
    let reference = s
        .psql_direct()
        .command(";")
        .command("select 'still here'")
        .run();
    assert_eq!(through.assert_success(), reference.assert_success());
    assert_eq!(through.assert_success(), "still here");
}

#[tokio::test]
async fn notices_reach_the_client() {
    let s = Setup::start();
    let notice = "DO $$ BEGIN RAISE NOTICE 'hi'; END $$";

    let out = s.psql_gateway().command(notice).run();
    out.assert_success();
    assert!(out.stderr.contains("NOTICE:  hi"), "{out}");

    let (client, mut msgs) = messages::connect_gateway(&s.gw, &s.token).await;
    client.batch_execute(notice).await.unwrap();
    client
        .batch_execute("DO $$ BEGIN RAISE WARNING 'careful: %', 42; END $$")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match msgs.next(Duration::from_secs(10)).await {
            Some(Ok(AsyncMessage::Notice(n))) => {
                seen.push((n.severity().to_owned(), n.message().to_owned()))
            }
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(e)) => panic!("the connection failed: {e}"),
            None => panic!("no notice within 10 s; got {seen:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("NOTICE".to_owned(), "hi".to_owned()),
            ("WARNING".to_owned(), "careful: 42".to_owned())
        ]
    );
    let rest: Vec<Received> = msgs.drain();
    assert!(rest.is_empty(), "{rest:?}");
    // The session goes on after the notices.
    assert_eq!(
        client
            .query_one("select 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn a_terminated_target_session_ends_the_client_session_as_directly() {
    let s = Setup::start();
    let su = s.pg.superuser_client().await;
    let (gw, gw_conn) = s.gw.connect(&s.token).await;
    let (direct, direct_conn) = {
        let (c, conn) =
            s.pg.config(User::App)
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
        (c, tokio::spawn(conn))
    };
    for client in [&gw, &direct] {
        // The simple protocol, so that no request is in flight when the
        // FATAL arrives: tokio-postgres closes a dropped prepared statement
        // with a request of its own, and would take the FATAL for its
        // answer. Through the gateway (audit before forward) that request
        // is still on its way when the backend is terminated.
        let rows = client
            .simple_query("select pg_backend_pid()")
            .await
            .unwrap();
        let pid: i32 = match &rows[1] {
            SimpleQueryMessage::Row(row) => row.get(0).unwrap().parse().unwrap(),
            other => panic!("{other:?}"),
        };
        su.execute("select pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
    let ended = |conn: gatehouse_tests::gateway::ConnectionTask| async move {
        let r = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the connection ended in time")
            .unwrap();
        r.map_err(|e| e.code().map(|c| c.code().to_owned()))
    };
    let a = ended(gw_conn).await;
    let b = ended(direct_conn).await;
    assert_eq!(a, b);
    assert_eq!(a, Err(Some("57P01".to_owned())));
    assert!(gw.is_closed());
    let err = gw
        .simple_query("select 1")
        .await
        .expect_err("the session has ended");
    assert!(err.is_closed(), "{err}");
}
