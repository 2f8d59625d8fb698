//! The plan, enforced on every statement, through real clients: what it
//! allows runs, what it does not is refused with SQLSTATE 42501 (the rule
//! it lacks, the grant's `jti`, what to do) and never reaches PostgreSQL,
//! and the session goes on — inside a transaction block too, where client
//! and PostgreSQL agree the block failed. Unparseable SQL is refused; the
//! plan's limits end statements or the session; every verdict is recorded
//! and the transcript shows the denials.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gatehouse_core::event::{Body, CloseReason, Decision, Event};
use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

/// Read invoices, update their totals; nothing else.
fn reader_updater() -> GrantArgs {
    GrantArgs {
        allow: vec![
            "select:public.invoices".to_owned(),
            "update:public.invoices".to_owned(),
        ],
        purpose: "policy test".to_owned(),
        ..GrantArgs::default()
    }
}

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

async fn invoice_count(pg: &PgCluster) -> i64 {
    let direct = pg.client(User::App).await;
    direct
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .expect("count directly")
        .get(0)
}

/// The first column of the one row of a simple query.
fn one_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_allowed_runs_denied_is_refused_and_the_session_goes_on() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&reader_updater());
    let jti = jti_of(&token);

    let out = Psql::new(gw.conn_string(&token))
        .arg("-v")
        .arg("ON_ERROR_STOP=0")
        .stdin(
            "SELECT count(*) FROM invoices;\n\
             DELETE FROM invoices;\n\
             WITH gone AS (DELETE FROM invoices RETURNING id) SELECT count(*) FROM gone;\n\
             SELECT count(*) FROM invoices;\n",
        )
        .run();
    let stdout = out.stdout.clone();
    let stderr = out.stderr.clone();
    assert_eq!(
        stdout.lines().filter(|l| l.trim() == "3").count(),
        2,
        "both counts ran: {stdout}\n{stderr}"
    );
    let expected = format!(
        "ERROR:  gatehouse: the plan of grant {jti} does not allow delete on public.invoices"
    );
    assert_eq!(stderr.matches(&expected).count(), 2, "{stderr}");
    assert!(
        stderr.contains(
            "HINT:  Ask the planner for a grant whose plan allows delete on public.invoices"
        ),
        "{stderr}"
    );
    assert_eq!(invoice_count(&pg).await, 3, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_inside_a_transaction_fails_it_on_both_sides() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&reader_updater());
    let (client, _conn) = gw.connect(&token).await;

    // Simple protocol.
    client.simple_query("BEGIN").await.expect("begin");
    client
        .simple_query("UPDATE invoices SET total = 0 WHERE id = 1")
        .await
        .expect("an allowed update");
    let err = client
        .simple_query("INSERT INTO invoices VALUES (9, 'x', 1)")
        .await
        .expect_err("insert is not in the plan");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    // PostgreSQL agrees the block failed: it refuses what follows.
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the block is aborted");
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    client.simple_query("ROLLBACK").await.expect("rollback");
    let total = one_value(
        &client
            .simple_query("SELECT total FROM invoices WHERE id = 1")
            .await
            .expect("after rollback"),
    );
    assert_ne!(total.as_deref(), Some("0"), "the update was rolled back");

    // Extended protocol, in a driver-managed transaction.
    let mut client = client;
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        "UPDATE invoices SET total = total + 1 WHERE id = $1",
        &[&2i32],
    )
    .await
    .expect("an allowed update");
    let err = tx
        .execute("DELETE FROM invoices WHERE id = $1", &[&2i32])
        .await
        .expect_err("delete is not in the plan");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = tx
        .query("SELECT id FROM invoices WHERE id = $1", &[&2i32])
        .await
        .expect_err("the block is aborted");
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    tx.rollback().await.expect("rollback");

    // And the session goes on.
    let rows = client
        .query("SELECT id FROM invoices WHERE id = $1", &[&2i32])
        .await
        .expect("after rollback");
    assert_eq!(rows.len(), 1);
    assert_eq!(invoice_count(&pg).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_is_judged_at_parse() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&reader_updater());
    let jti = jti_of(&token);
    let (client, _conn) = gw.connect(&token).await;

    let err = client
        .prepare("DELETE FROM invoices WHERE id = $1")
        .await
        .expect_err("delete is not in the plan");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(
        db.message(),
        format!("gatehouse: the plan of grant {jti} does not allow delete on public.invoices")
    );

    // Pipelined: the allowed and the denied in flight together.
    let select = client.prepare("SELECT customer FROM invoices WHERE id = $1");
    let delete = client.execute("DELETE FROM invoices WHERE id = $1", &[&1i32]);
    let insert = client.execute("INSERT INTO invoices VALUES ($1, 'x', 1)", &[&7i32]);
    let (select, delete, insert) = tokio::join!(select, delete, insert);
    let select = select.expect("select is allowed");
    assert!(delete.is_err() && insert.is_err());
    for _ in 0..3 {
        let row = client.query_one(&select, &[&1i32]).await.expect("select");
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("acme"));
    }
    // A function the plan does not name.
    let err = client
        .query("SELECT nextval('invoices_seq')", &[])
        .await
        .expect_err("nextval is not allowed");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(message(&err).contains("calling function nextval"), "{err}");
    assert_eq!(invoice_count(&pg).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_classified_is_refused() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&reader_updater());
    let (client, _conn) = gw.connect(&token).await;

    let err = client.simple_query("SELEC 1").await.expect_err("a typo");
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR), "{err}");
    assert!(
        message(&err).contains("gatehouse cannot parse this statement"),
        "{err}"
    );
    for sql in [
        "DO $$ BEGIN DELETE FROM invoices; END $$",
        "SET ROLE postgres",
        "COPY invoices TO PROGRAM 'cat'",
        "SELECT set_config('role', 'postgres', false)",
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // Harmless session commands need no rule.
    client
        .simple_query("SET statement_timeout = '5s'; SHOW statement_timeout; BEGIN; COMMIT")
        .await
        .expect("always allowed");
    assert_eq!(invoice_count(&pg).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_end_the_statement_or_the_session() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());

    // Statements: the third is refused, and so is every one after it.
    let mut args = reader_updater();
    args.extra = vec!["--max-statements".into(), "2".into()];
    let token = gw.grant(&args);
    let (client, _conn) = gw.connect(&token).await;
    for _ in 0..2 {
        client
            .simple_query("SELECT 1")
            .await
            .expect("within the limit");
    }
    let err = client.simple_query("SELECT 1").await.expect_err("past it");
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");

    // Rows: a result past the limit ends the session.
    let mut args = reader_updater();
    args.extra = vec!["--max-rows".into(), "2".into()];
    let token = gw.grant(&args);
    let (client, _conn) = gw.connect(&token).await;
    let err = client
        .simple_query("SELECT id FROM invoices")
        .await
        .expect_err("3 rows is past 2");
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");
    assert!(
        message(&err).contains("limits a session to 2 rows"),
        "{err}"
    );
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "the session ended"
    );

    // Duration: the first statement after it ends the session.
    let mut args = reader_updater();
    args.extra = vec!["--max-duration".into(), "1s".into()];
    let token = gw.grant(&args);
    let (client, _conn) = gw.connect(&token).await;
    client.simple_query("SELECT 1").await.expect("in time");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = client.simple_query("SELECT 1").await.expect_err("too late");
    assert!(message(&err).contains("limits a session to 1 s"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_recorded_and_denials_replayed() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&reader_updater());
    let jti = jti_of(&token);
    {
        let (client, _conn) = gw.connect(&token).await;
        client
            .simple_query("SELECT count(*) FROM invoices")
            .await
            .expect("allowed");
        client
            .simple_query("TRUNCATE invoices")
            .await
            .expect_err("denied");
        client
            .prepare("DELETE FROM invoices WHERE id = $1")
            .await
            .expect_err("denied at parse");
    }
    gw.stop();
    let store = gw.store_dir();
    let events: Vec<Event> = {
        let reader = Reader::open(&store).expect("open the store");
        let id = reader
            .sessions()
            .map(|s| s.expect("summary"))
            .find(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
            .expect("the session")
            .id;
        reader.events(id).map(|e| e.expect("event")).collect()
    };
    let verdicts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Verdict(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    assert_eq!(verdicts[0].decision, Decision::Allow);
    assert_eq!(verdicts[0].accesses, ["select on public.invoices"]);
    assert_eq!(verdicts[1].decision, Decision::Deny);
    assert_eq!(verdicts[1].text, "TRUNCATE invoices");
    assert!(verdicts[1].reason.contains("truncate on public.invoices"));
    assert_eq!(verdicts[2].decision, Decision::Deny);
    assert_eq!(verdicts[2].text, "DELETE FROM invoices WHERE id = $1");
    assert!(events.iter().any(|e| matches!(
        &e.body,
        Body::Closed(c) if c.reason == CloseReason::ClientTerminated
    )));

    // The transcript names the denials, not the gateway's stand-ins.
    let out = run(
        Command::new(tool("gatehouse-replay"))
            .args(["show", &events[0].session.to_string()])
            .arg("--store")
            .arg(&store),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", render(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("denied by the plan: TRUNCATE invoices"),
        "{text}"
    );
    assert!(
        text.contains("denied by the plan: DELETE FROM invoices WHERE id = $1"),
        "{text}"
    );
    assert!(text.contains("plan: 2 denied"), "{text}");
    assert!(!text.contains("$gatehouse$"), "{text}");
}

/// `gatehouse-replay`, next to the gateway binary.
fn tool(name: &str) -> PathBuf {
    Gateway::binary().with_file_name(name)
}

/// The server's message of a database error (its `Display` says only
/// "db error").
fn message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}
