//! A recorded session comes back offline: after the gateway stops,
//! `gatehouse-replay list` lists the sessions (including a refused one),
//! `gatehouse-replay show` rebuilds what the client sent and saw —
//! statements, parameter values, column names, rows, row counts, errors
//! with their SQLSTATE, notices, COPY data — and `gatehouse-audit verify`
//! finds every hash chain intact.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::Refusal;
use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};
use tokio_postgres::SimpleQueryMessage;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// `gatehouse-replay` or `gatehouse-audit`, next to the gateway binary.
fn tool(name: &str) -> PathBuf {
    let path = Gateway::binary().with_file_name(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

fn run_tool(name: &str, args: &[&str], store: &Path) -> Output {
    run(
        Command::new(tool(name))
            .args(args)
            .arg("--store")
            .arg(store),
        TOOL_TIMEOUT,
    )
}

/// Runs a tool that must succeed; its stdout.
fn tool_ok(name: &str, args: &[&str], store: &Path) -> String {
    let out = run_tool(name, args, store);
    assert!(
        out.status.success(),
        "{name} {args:?} failed\n{}",
        render(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

/// How a value the client saw may appear in a transcript: as text, or —
/// when it crossed the wire in binary format — as the hex of its bytes.
fn shown(text: &str) -> Vec<String> {
    vec![text.to_owned(), hex(text.as_bytes())]
}

/// `\x…`, as transcripts show binary values.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn exactly(text: &str) -> Vec<String> {
    vec![text.to_owned()]
}

/// Asserts that `haystack` contains one of each group of `needles`, the
/// groups in order.
fn assert_in_order(what: &str, haystack: &str, needles: &[Vec<String>]) {
    let mut from = 0;
    for options in needles {
        let found = options
            .iter()
            .filter_map(|n| haystack[from..].find(n.as_str()).map(|i| (i, n.len())))
            .min();
        match found {
            Some((i, len)) => from += i + len,
            None => panic!("{what}: none of {options:?} appears after byte {from}:\n{haystack}"),
        }
    }
}

/// The line of `text` that mentions `id`.
fn line_of<'a>(text: &'a str, id: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("no line mentions {id}:\n{text}"))
}

/// The session a grant opened.
fn session_of(reader: &Reader, jti: &str) -> String {
    let ids: Vec<String> = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids.len(), 1, "sessions of grant {jti}: {ids:?}");
    ids.into_iter().next().expect("one")
}

#[tokio::test]
async fn replay_shows_what_the_client_sent_and_saw() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());

    // ---- a tokio-postgres session: extended and simple protocol ----
    let driver_token = gw.grant(&GrantArgs {
        purpose: "replay test, driver".to_owned(),
        ticket: Some("OPS-4711".to_owned()),
        ..GrantArgs::default()
    });
    let (client, conn) = gw.connect(&driver_token).await;

    // A simple query with rows.
    let rows = client
        .simple_query("select id, customer from invoices where id <= 2 order by id")
        .await
        .expect("simple query");
    let seen: Vec<(String, String)> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get("id").expect("id").to_owned(),
                r.get("customer").expect("customer").to_owned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");

    // An extended query with a parameter.
    let row = client
        .query_one(
            "select customer as who, total::text as amount from invoices where id = $1::int",
            &[&3i32],
        )
        .await
        .expect("extended query");
    let (who3, amount3): (String, String) = (row.get("who"), row.get("amount"));
    let text_param = client
        .query_one("select upper($1::text) as shout", &[&"quiet please"])
        .await
        .expect("text parameter");
    assert_eq!(text_param.get::<_, String>("shout"), "QUIET PLEASE");

    // An error.
    let err = client
        .simple_query("select 1/0 as boom")
        .await
        .expect_err("division by zero");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "22012");
    let division_message = db.message().to_owned();

    // A multi-statement query.
    client
        .batch_execute(
            "create temp table scratch (n int); \
             insert into scratch select generate_series(1, 5); \
             update scratch set n = n * 10 where n > 3",
        )
        .await
        .expect("multi-statement query");

    // A NOTICE.
    client
        .batch_execute("do $$ begin raise notice 'replay notice %', 42; end $$")
        .await
        .expect("notice");
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;

    // ---- a psql session: COPY TO STDOUT and the psql view of things ----
    let psql_token = gw.grant(&GrantArgs {
        purpose: "replay test, psql".to_owned(),
        ..GrantArgs::default()
    });
    let out = Psql::new(gw.conn_string(&psql_token))
        .command("copy (select id, customer from invoices where id <= 2 order by id) to stdout with (format csv)")
        .command("select count(*) as invoice_count from invoices")
        .run();
    let psql_lines: Vec<String> = out.assert_success().lines().map(str::to_owned).collect();
    assert_eq!(psql_lines.len(), 3, "{out}");

    // ---- a refused connection ----
    let refused = Psql::new(gw.conn_string_to("nowhere", &psql_token))
        .command("select 1")
        .run();
    refused.assert_failure();

    gw.stop();
    let store = gw.store_dir();
    let (driver_id, psql_id, refused_id) = {
        let reader = Reader::open(&store).expect("open the store");
        let driver_id = session_of(&reader, &jti_of(&driver_token));
        let psql_id = session_of(&reader, &jti_of(&psql_token));
        let refusals: Vec<_> = reader
            .sessions()
            .map(|s| s.expect("summary"))
            .filter(|s| s.refused.is_some())
            .collect();
        assert_eq!(refusals.len(), 1, "{refusals:#?}");
        assert_eq!(
            refusals[0].refused.as_ref().map(|r| r.reason),
            Some(Refusal::UnknownTarget)
        );
        (driver_id, psql_id, refusals[0].id.to_string())
    };

    // ---- gatehouse-replay list ----
    let list = tool_ok("gatehouse-replay", &["list"], &store);
    let driver_line = line_of(&list, &driver_id);
    for word in [
        "agent-7",
        "orders",
        "replay test, driver",
        "OPS-4711",
        "closed",
    ] {
        assert!(driver_line.contains(word), "{word:?} missing:\n{list}");
    }
    let psql_line = line_of(&list, &psql_id);
    for word in ["agent-7", "orders", "replay test, psql", "closed"] {
        assert!(psql_line.contains(word), "{word:?} missing:\n{list}");
    }
    let refused_line = line_of(&list, &refused_id);
    for word in ["nowhere", "refused", "unknown target"] {
        assert!(refused_line.contains(word), "{word:?} missing:\n{list}");
    }
    // The JSON form, for the counts.
    let json: serde_json::Value =
        serde_json::from_str(&tool_ok("gatehouse-replay", &["list", "--json"], &store))
            .expect("list --json is JSON");
    let rows = json.as_array().expect("an array of sessions");
    assert_eq!(rows.len(), 3, "{json:#}");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {json:#}"))
    };
    assert_eq!(row(&driver_id)["statements"], 6, "{json:#}");
    assert_eq!(row(&psql_id)["statements"], 2, "{json:#}");
    assert_eq!(row(&refused_id)["statements"], 0, "{json:#}");
    assert_eq!(row(&driver_id)["jti"], jti_of(&driver_token).as_str());

    // ---- gatehouse-replay show: the driver's session ----
    let show = tool_ok("gatehouse-replay", &["show", &driver_id], &store);
    let (id1, customer1) = &seen[0];
    let (id2, customer2) = &seen[1];
    assert_in_order(
        "driver transcript",
        &show,
        &[
            exactly(&driver_id),
            exactly("agent-7"),
            exactly("replay test, driver"),
            exactly("OPS-4711"),
            // The simple query: its columns, rows and row count.
            exactly("select id, customer from invoices where id <= 2 order by id"),
            exactly("id"),
            exactly("customer"),
            exactly(id1),
            exactly(customer1),
            exactly(id2),
            exactly(customer2),
            exactly("2 rows"),
            exactly("SELECT 2"),
            // The extended query with its parameter.
            exactly(
                "select customer as who, total::text as amount from invoices where id = $1::int",
            ),
            exactly("$1"),
            vec!["'3'".to_owned(), hex(&3i32.to_be_bytes())],
            exactly("who"),
            exactly("amount"),
            shown(&who3),
            shown(&amount3),
            exactly("1 row"),
            exactly("SELECT 1"),
            exactly("select upper($1::text) as shout"),
            shown("quiet please"),
            exactly("shout"),
            shown("QUIET PLEASE"),
            exactly("SELECT 1"),
            // The error.
            exactly("select 1/0 as boom"),
            exactly("22012"),
            exactly(&division_message),
            // The multi-statement query, statement by statement.
            exactly("create temp table scratch (n int)"),
            exactly("insert into scratch select generate_series(1, 5)"),
            exactly("update scratch set n = n * 10 where n > 3"),
            exactly("CREATE TABLE"),
            exactly("INSERT 0 5"),
            exactly("UPDATE 2"),
            // The notice.
            exactly("raise notice 'replay notice %', 42"),
            exactly("NOTICE"),
            exactly("replay notice 42"),
            exactly("DO"),
        ],
    );
    assert!(
        !show.contains(&driver_token),
        "the grant is in the transcript"
    );

    // ---- gatehouse-replay show: the psql session ----
    let show = tool_ok("gatehouse-replay", &["show", &psql_id[..13]], &store);
    assert_in_order(
        "psql transcript",
        &show,
        &[
            exactly(&psql_id),
            exactly("replay test, psql"),
            exactly("psql"),
            exactly(
                "copy (select id, customer from invoices where id <= 2 order by id) to stdout with (format csv)",
            ),
            exactly(&psql_lines[0]),
            exactly(&psql_lines[1]),
            exactly("COPY 2"),
            exactly("select count(*) as invoice_count from invoices"),
            exactly("invoice_count"),
            exactly(&psql_lines[2]),
            exactly("1 row"),
            exactly("SELECT 1"),
        ],
    );
    assert!(
        !show.contains(&psql_token),
        "the grant is in the transcript"
    );

    // ---- gatehouse-replay show: the refusal ----
    let show = tool_ok("gatehouse-replay", &["show", &refused_id], &store);
    assert_in_order(
        "refusal transcript",
        &show,
        &[
            exactly(&refused_id),
            exactly("nowhere"),
            exactly("refused"),
            exactly("names no target"),
        ],
    );
    assert!(
        show.contains("28000"),
        "no SQLSTATE in the refusal:\n{show}"
    );

    // An unknown session is an error that says so, not a panic.
    let out = run_tool("gatehouse-replay", &["show", "ffffffff"], &store);
    assert!(!out.status.success(), "{}", render(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no session") && !stderr.contains("panicked"),
        "{}",
        render(&out)
    );

    // ---- gatehouse-audit verify ----
    let pubkey = gw.seal_public_key();
    let pubkey = pubkey.to_str().expect("a UTF-8 path");
    let verify = run_tool("gatehouse-audit", &["verify", "--pubkey", pubkey], &store);
    assert!(
        verify.status.success(),
        "verify failed on an untouched store\n{}",
        render(&verify)
    );
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        stdout.contains("3 sessions")
            && stdout.contains("seals checked")
            && !stdout.contains("BREAK")
            && !stdout.contains("WARN"),
        "{}",
        render(&verify)
    );
}
