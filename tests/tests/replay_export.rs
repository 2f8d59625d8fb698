//! A session recorded through a real gateway comes back out of
//! `gatehouse-replay export` in every format — JSON that parses, CSV that
//! reads back as one record per item, one self-contained HTML page with recorded values
//! escaped (rendered by headless Chromium), an asciicast v2 recording —
//! and `gatehouse-replay play --speed 0` writes the transcript at once.
//!
//! The session: a SELECT returning a cell an agent could have written to
//! attack an auditor's browser (`<script>…`) and one the gateway masks, an
//! extended query with a parameter, an error, and a statement the plan
//! denies.
//!
//! Needs the binaries (`cargo build --workspace --bins`) and `chromium`
//! (scripts/test installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const SELECT: &str = "select id, '<script>alert(1)</script>' as note, '123-45-6789' as ssn from invoices where id = 1";
const EXTENDED: &str = "select customer from invoices where id = $1::int";
const FAILING: &str = "select 1/0 as boom";
const DENIED: &str = "TRUNCATE invoices";

fn replay() -> PathBuf {
    let path = Gateway::binary().with_file_name("gatehouse-replay");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `gatehouse-replay ARGS --store STORE`, which must succeed.
fn replay_ok(args: &[&str], store: &Path) -> Output {
    let out = run(
        Command::new(replay()).args(args).arg("--store").arg(store),
        TOOL_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "gatehouse-replay {args:?} failed\n{}",
        render(&out)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// The records of a CSV text, header included.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| {
            r.expect("a valid CSV record")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn assert_contains_all(what: &str, haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "{what}: {needle:?} missing from:\n{haystack}"
        );
    }
}

#[tokio::test]
async fn export_writes_every_format_from_a_real_recording() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions::default().with_masking(
            "orders",
            r#"
            [[columns]]
            pattern = "ssn"
            strategy = "redact"
            "#,
        ),
    );
    let token = gw.grant(&GrantArgs {
        purpose: "export test".to_owned(),
        ticket: Some("OPS-5150".to_owned()),
        allow: vec!["select:public.invoices".to_owned()],
        ..GrantArgs::default()
    });
    let jti = decode_claims(&token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    {
        let (client, conn) = gw.connect(&token).await;
        client.simple_query(SELECT).await.expect("the select");
        let row = client
            .query_one(EXTENDED, &[&2i32])
            .await
            .expect("the extended query");
        let _: String = row.get("customer");
        let err = client.simple_query(FAILING).await.expect_err("1/0");
        assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("22012"));
        let err = client.simple_query(DENIED).await.expect_err("denied");
        assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42501"));
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    }
    gw.stop();
    let store = gw.store_dir();
    let session = {
        let reader = Reader::open(&store).expect("open the store");
        let ids: Vec<String> = reader
            .sessions()
            .map(|s| s.expect("summary"))
            .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.into_iter().next().expect("one")
    };
    let out_dir = tempfile::tempdir().expect("a temporary directory");

    // ---- JSON ----
    let json = stdout(&replay_ok(
        &["export", &session, "--format", "json"],
        &store,
    ));
    let doc: serde_json::Value = serde_json::from_str(&json).expect("export json is JSON");
    assert_eq!(doc["version"], 1, "{doc:#}");
    assert_eq!(doc["session"]["id"], session.as_str());
    assert_eq!(doc["session"]["jti"], jti.as_str());
    assert_eq!(doc["session"]["subject"], "agent-7");
    assert_eq!(doc["session"]["target"], "orders");
    assert_eq!(doc["session"]["purpose"], "export test");
    assert_eq!(doc["session"]["ticket"], "OPS-5150");
    assert_eq!(doc["session"]["close_reason"], "client_terminated");
    let items = doc["items"].as_array().expect("items");
    let statement = |text: &str| {
        items
            .iter()
            .find(|i| i["kind"] == "statement" && i["request"]["text"] == text)
            .unwrap_or_else(|| panic!("no statement {text:?} in {doc:#}"))
    };
    let select = statement(SELECT);
    let row = &select["results"][0]["rows"][0];
    assert_eq!(row[1], HOSTILE, "{select:#}");
    assert_eq!(row[2]["masked"], true, "the ssn cell is marked: {select:#}");
    assert_ne!(row[2]["value"], "123-45-6789", "{select:#}");
    let extended = statement(EXTENDED);
    assert_eq!(extended["request"]["protocol"], "extended", "{extended:#}");
    assert_eq!(
        extended["request"]["params"].as_array().map(Vec::len),
        Some(1)
    );
    let failing = statement(FAILING);
    assert_eq!(failing["results"][0]["error"]["code"], "22012");
    let denied = items
        .iter()
        .find(|i| i["kind"] == "denied")
        .unwrap_or_else(|| panic!("no denial in {doc:#}"));
    assert_eq!(denied["text"], DENIED);
    assert_eq!(denied["decision"], "deny");
    let mut last = i64::MIN;
    for item in items {
        let offset = item["offset_us"].as_i64().expect("offset_us");
        assert!(offset >= 0, "{item:#}");
        last = last.max(offset);
    }

    // ---- CSV, to a file ----
    let csv_path = out_dir.path().join("session.csv");
    let csv_arg = csv_path.to_str().expect("UTF-8 path");
    let out = replay_ok(
        &["export", &session, "--format", "csv", "--out", csv_arg],
        &store,
    );
    assert!(out.stdout.is_empty(), "{}", render(&out));
    let mut records = parse_csv(&std::fs::read_to_string(&csv_path).expect("the CSV file"));
    let headers = records.remove(0);
    assert!(
        records.iter().all(|r| r.len() == headers.len()),
        "{records:?}"
    );
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
    };
    assert_eq!(records.len(), items.len(), "one row per item");
    let by_text = |text: &str| {
        records
            .iter()
            .find(|r| r[col("text")] == text)
            .unwrap_or_else(|| panic!("no row for {text:?}: {records:?}"))
    };
    let r = by_text(SELECT);
    assert_eq!(&r[col("kind")], "statement");
    assert_eq!(&r[col("rows_returned")], "1");
    assert_eq!(&r[col("masked_cells")], "1");
    assert_eq!(&r[col("tags")], "SELECT 1");
    assert!(r[col("parameters")].is_empty());
    assert!(by_text(EXTENDED)[col("parameters")].contains("$1 = "));
    assert_eq!(&by_text(FAILING)[col("error_code")], "22012");
    let r = by_text(DENIED);
    assert_eq!(&r[col("kind")], "denied");
    assert_eq!(&r[col("decision")], "deny");
    assert!(!r[col("reason")].is_empty());

    // ---- HTML ----
    let html_path = out_dir.path().join("session.html");
    let html_arg = html_path.to_str().expect("UTF-8 path");
    replay_ok(
        &["export", &session, "--format", "html", "--out", html_arg],
        &store,
    );
    let html = std::fs::read_to_string(&html_path).expect("the HTML file");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        !html.contains("<script"),
        "a recorded value is live:\n{html}"
    );
    assert_contains_all(
        "html",
        &html,
        &[
            HOSTILE_ESCAPED,
            &session,
            "agent-7",
            "export test",
            "OPS-5150",
            "select id, &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; as note",
            EXTENDED,
            FAILING,
            DENIED,
            "22012",
            "class=\"item denied\"",
            "class=\"masked\"",
            "⟨masked⟩",
        ],
    );
    for external in ["src=", "href=", "http://", "https://"] {
        assert!(!html.contains(external), "{external} in:\n{html}");
    }

    // Headless Chromium renders it: the statements are in its DOM, the
    // hostile cell as text (no script element).
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    let mut chromium = Command::new("chromium");
    chromium
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&html_path);
    let dom = run(&mut chromium, TOOL_TIMEOUT);
    assert!(
        dom.status.success(),
        "chromium did not render the export (scripts/test installs it)\n{}",
        render(&dom)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert_contains_all(
        "chromium DOM",
        &dom,
        &[EXTENDED, FAILING, DENIED, HOSTILE_ESCAPED, &session],
    );
    assert!(!dom.contains("<script"), "{dom}");

    // ---- asciicast ----
    let cast = stdout(&replay_ok(
        &["export", &session, "--format", "asciicast"],
        &store,
    ));
    let mut lines = cast.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().expect("a header line")).expect("the header is JSON");
    assert_eq!(header["version"], 2, "{header}");
    assert!(
        header["width"].as_u64().is_some_and(|w| w >= 80),
        "{header}"
    );
    assert!(header["height"].as_u64().is_some_and(|h| h > 0), "{header}");
    assert!(header["timestamp"].is_i64(), "{header}");
    let mut time = 0.0;
    let mut output = String::new();
    let mut events = 0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).expect("an event line is JSON");
        let event = event.as_array().expect("an event is an array");
        assert_eq!(event.len(), 3, "{line}");
        let at = event[0].as_f64().expect("a time");
        assert!(at >= time, "time goes back: {line}");
        time = at;
        assert_eq!(event[1], "o", "{line}");
        output.push_str(event[2].as_str().expect("output text"));
        events += 1;
    }
    assert_eq!(events, items.len() + 1, "the header, then one per item");
    assert!(
        time * 1e6 >= last as f64 - 1.0,
        "the last event is at the last item"
    );
    // The output is the `show` text, as a terminal wants its line ends.
    let show = stdout(&replay_ok(&["show", &session], &store));
    assert_eq!(output, show.replace('\n', "\r\n"));
    assert_contains_all("asciicast", &output, &[SELECT, EXTENDED, FAILING, DENIED]);

    // ---- play --speed 0 (and stdout is no terminal): all at once ----
    let started = std::time::Instant::now();
    let played = stdout(&replay_ok(
        &["play", &session, "--speed", "0", "--max-wait", "10s"],
        &store,
    ));
    assert_eq!(played, show);
    assert!(started.elapsed() < Duration::from_secs(30));
    // A speed that is not one is refused with a message.
    let out = run(
        Command::new(replay())
            .args(["play", &session, "--speed", "fast", "--store"])
            .arg(&store),
        TOOL_TIMEOUT,
    );
    assert!(!out.status.success(), "{}", render(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a speed"),
        "{}",
        render(&out)
    );
}
