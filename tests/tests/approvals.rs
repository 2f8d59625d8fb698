//! Statements held for a human's approval, through real clients and the
//! real `gatehouse approvals` CLI talking to the admin API: approve (the
//! statement runs and the client gets its result), deny (the client gets
//! 42501 naming the approval and the approver's reason), timeout, and
//! reject-and-retry (refused at once with the approval id; the identical
//! statement passes once after approval).
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::{Body, Decision};
use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::ports::{free_port, wait_until};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, User};
use tokio_postgres::error::SqlState;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

struct Setup {
    pg: PgCluster,
    gw: Gateway,
    admin: String,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(timeout: &str, mode: &str) -> Setup {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let port = free_port();
    let options = GatewayOptions {
        extra_config: format!(
            "[admin]\nlisten = \"127.0.0.1:{port}\"\n[[admin.tokens]]\nname = \"alice\"\ntoken_file = \"{}\"\n\n[approvals]\ntimeout = \"{timeout}\"\nmode = \"{mode}\"\n",
            token_file.display()
        ),
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(&pg, options);
    Setup {
        pg,
        gw,
        admin: format!("http://127.0.0.1:{port}"),
        token_file,
        _dir: dir,
    }
}

impl Setup {
    /// Reads invoices; deleting them needs approval.
    fn grant(&self) -> String {
        self.gw.grant(&GrantArgs {
            allow: vec!["select:public.invoices".to_owned()],
            extra: vec!["--approve".to_owned(), "delete:public.invoices".to_owned()],
            purpose: "approvals test".to_owned(),
            ..GrantArgs::default()
        })
    }

    fn approvals(&self, args: &[&str]) -> Output {
        run(
            Command::new(Gateway::binary())
                .arg("approvals")
                .args(args)
                .arg("--admin")
                .arg(&self.admin)
                .arg("--token-file")
                .arg(&self.token_file),
            Duration::from_secs(30),
        )
    }

    fn approvals_ok(&self, args: &[&str]) -> String {
        let out = self.approvals(args);
        assert!(out.status.success(), "approvals {args:?}\n{}", render(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for one pending approval and returns it.
    fn pending(&self) -> serde_json::Value {
        let mut found = None;
        let appeared = wait_until(Duration::from_secs(20), || {
            let list: serde_json::Value =
                serde_json::from_str(&self.approvals_ok(&["list", "--json"])).expect("JSON");
            match list.as_array().and_then(|a| a.first()) {
                Some(p) => {
                    found = Some(p.clone());
                    true
                }
                None => false,
            }
        });
        assert!(appeared, "no approval request appeared");
        found.expect("found")
    }

    async fn count(&self) -> i64 {
        self.pg
            .client(User::App)
            .await
            .query_one("SELECT count(*) FROM invoices", &[])
            .await
            .expect("count")
            .get(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_runs_denied_is_refused_with_the_reason() {
    let s = start("2m", "wait");
    let token = s.grant();
    let jti = decode_claims(&token).expect("JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    let (client, _conn) = s.gw.connect(&token).await;
    let client = std::sync::Arc::new(client);

    // Approve: the held DELETE runs and the client gets its result.
    let c = client.clone();
    let held =
        tokio::spawn(async move { c.execute("DELETE FROM invoices WHERE id = 3", &[]).await });
    let p = s.pending();
    assert_eq!(p["jti"], jti.as_str());
    assert_eq!(p["statement"], "DELETE FROM invoices WHERE id = 3");
    assert_eq!(p["needs"][0], "delete on public.invoices");
    let id = p["id"].as_str().expect("id").to_owned();
    assert!(!held.is_finished(), "the statement waits");
    s.approvals_ok(&["approve", &id, "--reason", "cleanup ticket OPS-9"]);
    let deleted = held.await.expect("task").expect("approved: it ran");
    assert_eq!(deleted, 1);
    assert_eq!(s.count().await, 2);

    // Deny: 42501 naming the approval, the approver and the reason.
    let c = client.clone();
    let held = tokio::spawn(async move { c.batch_execute("DELETE FROM invoices").await });
    let id = s.pending()["id"].as_str().expect("id").to_owned();
    // A denial needs a reason.
    assert!(!s.approvals(&["deny", &id]).status.success());
    s.approvals_ok(&["deny", &id, "--reason", "not during month end"]);
    let err = held.await.expect("task").expect_err("denied");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let message = err.as_db_error().expect("db error").message().to_owned();
    assert_eq!(
        message,
        format!("gatehouse: approval {id} was denied by alice: not during month end")
    );
    assert_eq!(s.count().await, 2);

    // The session goes on.
    let n: i64 = client
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .expect("after the denial")
        .get(0);
    assert_eq!(n, 2);
    drop(client);

    // Holds and decisions are recorded with the approver.
    let mut gw = s.gw;
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("store");
    let session = reader
        .sessions()
        .map(|x| x.expect("summary"))
        .find(|x| x.opened.as_ref().is_some_and(|o| o.jti == jti))
        .expect("session");
    let verdicts: Vec<_> = reader
        .events(session.id)
        .map(|e| e.expect("event"))
        .filter_map(|e| match e.body {
            Body::Verdict(v) if !v.approval.is_empty() => Some(v),
            _ => None,
        })
        .collect();
    let seen: Vec<(Decision, &str)> = verdicts
        .iter()
        .map(|v| (v.decision, v.approver.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Decision::Hold, ""),
            (Decision::Allow, "alice"),
            (Decision::Hold, ""),
            (Decision::Deny, "alice"),
        ]
    );
    assert_eq!(verdicts[1].reason, "cleanup ticket OPS-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_nobody_decides_times_out() {
    let s = start("1s", "wait");
    let token = s.grant();
    let (client, _conn) = s.gw.connect(&token).await;
    let err = client
        .batch_execute("DELETE FROM invoices")
        .await
        .expect_err("timed out");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(
        message(&err).contains("no approver decided in time"),
        "{err}"
    );
    assert_eq!(s.count().await, 3);
    // Nothing is left pending.
    let list: serde_json::Value =
        serde_json::from_str(&s.approvals_ok(&["list", "--json"])).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_retry_passes_once_after_approval() {
    let s = start("2m", "reject");
    let token = s.grant();
    let (client, _conn) = s.gw.connect(&token).await;
    let sql = "DELETE FROM invoices WHERE id = 2";
    let err = client
        .batch_execute(sql)
        .await
        .expect_err("refused at once");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let id = s.pending()["id"].as_str().expect("id").to_owned();
    assert!(
        message(&err).contains(&format!("requested as approval {id}")),
        "{err}"
    );
    s.approvals_ok(&["approve", &id]);
    client.batch_execute(sql).await.expect("approved: passes");
    assert_eq!(s.count().await, 2);
    // Once.
    client
        .batch_execute(sql)
        .await
        .expect_err("the approval is used");
}

/// The server's message of a database error (its `Display` says only
/// "db error").
fn message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}
