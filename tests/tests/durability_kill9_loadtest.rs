//! `kill -9` under load from the load-test harness, with PostgreSQL's own
//! statement log (`log_statement = all`) as the ground truth.
//!
//! `gatehouse-loadtest` drives several agents through a gateway this test
//! started — point and range reads, writes in transactions
//! (`BEGIN`/`UPDATE`/`COMMIT`) and connect-per-task cycles — and the
//! gateway is killed with SIGKILL while they run. The harness sees errors
//! and ends by itself, in bounded time. Then, in both durability modes:
//!
//! - the store opens, and every session's events decode without a gap;
//! - `gatehouse-audit verify` finds no break, and the sessions open at the
//!   kill are cut (no `Closed` event; `verify` warns, `gatehouse-replay
//!   list` says `cut`), not lost;
//! - every statement PostgreSQL logged from the gateway's upstream
//!   connections is a `Statement` event in the store, as many times as
//!   PostgreSQL ran it. The gateway logs in upstream as `app`; everything
//!   else this test does (the harness's `--setup` included) runs as
//!   `postgres`, so the role in the log tells the two apart. Recorded but
//!   not executed is allowed (audit before forward), at most one in-flight
//!   statement per agent;
//! - the gateway restarts on the same store and serves a new session.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_core::event::Body;
use gatehouse_store::Reader;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, render, run, wait_with_output};
use gatehouse_tests::{Durability, Gateway, GatewayOptions, GrantArgs, PgCluster, User, loadtest};
use serde_json::Value;

/// Concurrent agents of the harness.
const AGENTS: u32 = 6;
/// Rows in the harness's table.
const ROWS: i64 = 500;
/// The harness's measured run; the kill comes well inside it.
const HARNESS_DURATION: &str = "8s";
/// The harness's `--timeout` for one task.
const TASK_TIMEOUT: &str = "5s";
/// The gateway is killed once PostgreSQL has logged this many statements
/// from it.
const KILL_AFTER: usize = 1000;
/// How long the load may take to reach [`KILL_AFTER`].
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the harness may run in all (it would be killed then, and the
/// test fail): its duration plus its own bound on tasks in flight.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs `gatehouse-replay` or `gatehouse-audit` with `--json` on `store`;
/// its exit status and its JSON.
fn tool_json(name: &str, args: &[&str], store: &Path) -> (bool, Value) {
    let binary = Gateway::binary().with_file_name(name);
    let out = run(
        Command::new(&binary)
            .args(args)
            .arg("--json")
            .arg("--store")
            .arg(store),
        DEFAULT_TIMEOUT,
    );
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name} {args:?} printed no JSON: {e}\n{}", render(&out)));
    (out.status.success(), json)
}

/// Statement texts and how often each occurs.
fn multiset(texts: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in texts {
        *counts.entry(t).or_insert(0) += 1;
    }
    counts
}

/// A statement the harness sent (each starts with its tag).
fn tagged(text: &str) -> bool {
    text.starts_with("/* lt:")
}

async fn kill_under_load(durability: Durability) {
    let mode = durability.as_str();
    let pg = PgCluster::start();
    // Tables `postgres` creates (the harness's --setup) are `app`'s to use.
    pg.superuser_client()
        .await
        .batch_execute(
            "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public \
             GRANT SELECT, UPDATE ON TABLES TO app",
        )
        .await
        .expect("default privileges");
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            durability,
            ..GatewayOptions::default()
        },
    );
    let pid = gw.pid().expect("the gateway runs");
    let ca = gw.certs().expect("TLS").ca_cert.clone();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let json = out_dir.path().join("result.json");

    let mut cmd = Command::new(loadtest::binary());
    cmd.arg("--gateway")
        .arg(format!("127.0.0.1:{}", gw.port()))
        .arg("--gateway-pid")
        .arg(pid.to_string())
        .arg("--signing-key")
        .arg(gw.signing_key())
        .arg("--ca")
        .arg(&ca)
        .args(["--dbname", "orders"])
        .arg("--direct")
        .arg(pg.conn_string(User::Postgres))
        .args(["--setup", "--rows", &ROWS.to_string(), "--range-rows", "20"])
        .args(["--agents", &AGENTS.to_string(), "--ramp-up", "0s"])
        .args(["--warmup", "0s", "--duration", HARNESS_DURATION])
        .args(["--timeout", TASK_TIMEOUT, "--seed", "9"])
        .args(["--mix", "point=40,range=10,write=30,connect=20"])
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start gatehouse-loadtest");
    let harness = tokio::task::spawn_blocking(move || wait_with_output(child, HARNESS_TIMEOUT));

    // Kill once PostgreSQL has run a good part of the load, writes included.
    let started = Instant::now();
    loop {
        let from_gateway = pg.statements_of(User::App);
        let updates = from_gateway
            .iter()
            .filter(|s| tagged(s) && s.contains("UPDATE gatehouse_lt_items"))
            .count();
        if from_gateway.len() >= KILL_AFTER && updates >= 10 {
            break;
        }
        if harness.is_finished() || started.elapsed() > LOAD_TIMEOUT {
            let out = match harness.await.expect("harness thread") {
                Ok(out) | Err(out) => render(&out),
            };
            panic!(
                "{mode}: only {} statements ({updates} updates) from the gateway in {:?}\n{out}",
                from_gateway.len(),
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.kill9();
    let killed_at = Instant::now();
    eprintln!(
        "{mode}: killed the gateway after {:?} of load",
        killed_at - started
    );

    // The harness sees errors and ends by itself.
    let out = match harness.await.expect("harness thread") {
        Ok(out) => out,
        Err(out) => panic!(
            "{mode}: gatehouse-loadtest did not end within {HARNESS_TIMEOUT:?} of its start after \
             the gateway died\n{}",
            render(&out)
        ),
    };
    eprintln!(
        "{mode}: the harness ended {:?} after the kill, {}",
        killed_at.elapsed(),
        out.status
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("{mode}: no report ({e})\n{}", render(&out))),
    )
    .expect("the report is JSON");
    let leg = &report["gateway"];
    eprintln!(
        "{mode}: harness: {} ok, {} errors {}",
        leg["ok"], leg["errors"], leg["errors_by_kind"]
    );
    assert!(
        leg["ok"].as_u64().is_some_and(|n| n > 0),
        "{mode}: {}",
        render(&out)
    );
    assert!(
        leg["errors"].as_u64().is_some_and(|n| n > 0),
        "{mode}: the harness saw no error from the kill\n{}",
        render(&out)
    );
    for workload in ["point", "range", "write", "connect"] {
        assert!(
            leg["workloads"][workload]["ok"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{mode}: workload {workload} did not run before the kill: {}",
            leg["workloads"]
        );
    }

    // What PostgreSQL ran for the gateway; nothing else logs in as `app`.
    let executed = pg.statements_of(User::App);
    assert!(executed.len() >= KILL_AFTER, "{mode}");
    let untagged: Vec<_> = executed.iter().filter(|s| !tagged(s)).collect();
    assert!(
        untagged.is_empty(),
        "{mode}: PostgreSQL ran statements as app that the harness did not send: {untagged:?}"
    );
    let executed = multiset(executed);

    // The store opens after SIGKILL; every event decodes, in order.
    let store = gw.store_dir();
    let (recorded, cut, cut_agents) = {
        let reader = Reader::open(&store)
            .unwrap_or_else(|e| panic!("{mode}: the store does not open after kill -9: {e}"));
        let mut texts = Vec::new();
        let mut cut = Vec::new();
        let mut cut_agents = BTreeSet::new();
        let mut sessions = 0;
        for summary in reader.sessions() {
            let summary = summary.expect("a session summary");
            sessions += 1;
            let events = reader
                .events(summary.id)
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| panic!("{mode}: an event does not decode: {e}"));
            assert_eq!(events.len() as u64, summary.events, "{mode}: {summary:?}");
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.seq, i as u64, "{mode}: a gap in {}", summary.id);
                if let Body::Statement(s) = &e.body {
                    texts.push(s.text.clone());
                }
            }
            if let Some(opened) = &summary.opened
                && summary.closed.is_none()
            {
                // `gatehouse-loadtest:RUN:g:AGENT:CONN`.
                let agent = opened
                    .application_name
                    .as_deref()
                    .filter(|a| a.starts_with("gatehouse-loadtest:"))
                    .and_then(|a| a.rsplit(':').nth(1)?.parse::<u32>().ok())
                    .unwrap_or_else(|| {
                        panic!("{mode}: a session not of the harness was cut: {summary:?}")
                    });
                cut_agents.insert(agent);
                cut.push(summary.id.to_string());
            }
        }
        eprintln!(
            "{mode}: {sessions} sessions in the store, {} cut, {} statements recorded",
            cut.len(),
            texts.len()
        );
        (multiset(texts), cut, cut_agents)
    };

    // Every statement PostgreSQL ran is recorded, as often as it ran.
    let unrecorded: Vec<_> = executed
        .iter()
        .filter(|(text, n)| recorded.get(*text).copied().unwrap_or(0) < **n)
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{mode}: statements PostgreSQL executed that are not in the store (text, times \
         executed): {unrecorded:?} ({} executed, {} recorded)",
        executed.values().sum::<usize>(),
        recorded.values().sum::<usize>()
    );
    // Recorded but never run: only what was in flight at the kill.
    let not_run: usize = recorded
        .iter()
        .map(|(text, n)| n.saturating_sub(executed.get(text).copied().unwrap_or(0)))
        .sum();
    assert!(
        not_run <= AGENTS as usize,
        "{mode}: {not_run} statements recorded but not executed, more than the {AGENTS} agents \
         could have had in flight"
    );
    eprintln!(
        "{mode}: {} statements executed, all recorded; {not_run} recorded but cut before they ran",
        executed.values().sum::<usize>()
    );

    // The sessions open at the kill are cut, not lost: every agent had its
    // connection open (it keeps one across tasks), and at most also a
    // connect-per-task one.
    assert_eq!(
        cut_agents,
        (0..AGENTS).collect::<BTreeSet<_>>(),
        "{mode}: agents with a session cut at the kill"
    );
    assert!(
        cut.len() <= 2 * AGENTS as usize,
        "{mode}: {} sessions without a Closed event: {cut:?}",
        cut.len()
    );
    let (ok, verify) = tool_json("gatehouse-audit", &["verify"], &store);
    assert!(ok, "{mode}: gatehouse-audit verify failed: {verify:#}");
    assert_eq!(
        verify["breaks"].as_array().map(Vec::len),
        Some(0),
        "{mode}: a chain break after kill -9: {verify:#}"
    );
    let mut warned: Vec<&str> = verify["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("{mode}: no warnings list in {verify:#}"))
        .iter()
        .map(|w| {
            assert!(
                w["detail"].as_str().is_some_and(|d| d.starts_with("cut")),
                "{mode}: {w}"
            );
            w["session"].as_str().expect("a session id")
        })
        .collect();
    warned.sort_unstable();
    let mut want: Vec<&str> = cut.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(warned, want, "{mode}: verify's cut sessions");
    let (ok, list) = tool_json("gatehouse-replay", &["list"], &store);
    assert!(ok, "{mode}: gatehouse-replay list failed: {list:#}");
    let mut listed_cut: Vec<&str> = list
        .as_array()
        .expect("a JSON array of sessions")
        .iter()
        .filter(|r| r["status"]["state"] != "closed")
        .map(|r| {
            assert_eq!(r["status"]["state"], "cut", "{mode}: {r:#}");
            r["id"].as_str().expect("an id")
        })
        .collect();
    listed_cut.sort_unstable();
    assert_eq!(listed_cut, want, "{mode}: the sessions list calls cut");

    // The gateway restarts on the same store and serves.
    gw.restart();
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    let row = client
        .query_one("SELECT count(*) FROM gatehouse_lt_items", &[])
        .await
        .expect("a new session after the restart");
    assert_eq!(row.get::<_, i64>(0), ROWS, "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_durability_records_every_executed_statement_across_kill9_under_load() {
    kill_under_load(Durability::Fsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_durability_records_every_executed_statement_across_kill9_under_load() {
    kill_under_load(Durability::Os).await;
}
