//! Replay and audit read a live gateway and a sealed archive the same way
//! as a store directory (issue 6): with a few sessions recorded, an
//! archive fetched from the running gateway's admin API
//! (`gatehouse-replay … --gateway URL`, `gatehouse store export --gateway`)
//! gives the same `list`, `show` and `audit verify` answers as the store
//! directory once the gateway has stopped; an archive exported from the
//! stopped store with `gatehouse store export --store` reads the same and
//! verifies with the seal key's public half (with the checkpoint; a range
//! that leaves a session out leaves the checkpoint out and still verifies
//! clean); one altered byte, a cut file, or another key is refused, saying
//! precisely what is wrong.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::archive::{Item, decode_all};
use gatehouse_tests::command::{render, run};
use gatehouse_tests::ports::{free_port, wait_until};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "archive-admin-token-0123456789";

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

fn run_tool(name: &str, args: &[&str]) -> Output {
    run(
        Command::new(tool(name))
            .args(args)
            .env_remove("GATEHOUSE_STORE")
            .env_remove("GATEHOUSE_ADMIN_TOKEN"),
        TOOL_TIMEOUT,
    )
}

/// Runs a tool that must succeed; its stdout and stderr.
fn tool_ok(name: &str, args: &[&str]) -> (String, String) {
    let out = run_tool(name, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed\n{}",
        render(&out)
    );
    (
        String::from_utf8(out.stdout).expect("UTF-8 output"),
        String::from_utf8(out.stderr).expect("UTF-8 output"),
    )
}

/// Runs a tool that must fail; its stderr.
fn tool_err(name: &str, args: &[&str]) -> String {
    let out = run_tool(name, args);
    assert!(
        !out.status.success(),
        "{name} {args:?} succeeded\n{}",
        render(&out)
    );
    String::from_utf8(out.stderr).expect("UTF-8 output")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The session ids in `list --json` output.
fn session_ids(list_json: &str) -> Vec<String> {
    let rows: serde_json::Value = serde_json::from_str(list_json).expect("list --json is JSON");
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `audit verify`'s verdict without the checkpoint count (the gateway
/// writes a last checkpoint when it stops).
fn verdict(stdout: &str) -> String {
    let line = stdout.lines().last().unwrap_or_default();
    let (sessions, _) = line.split_once(" events").unwrap_or((line, ""));
    sessions.to_owned()
}

/// A gateway with its admin API on, and an auditor's token for it in
/// `dir`: the gateway, the API's URL and the token file.
fn gateway_with_admin(pg: &PgCluster, dir: &Path) -> (Gateway, String, PathBuf) {
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let port = free_port();
    let gw = Gateway::start(
        pg,
        GatewayOptions {
            extra_config: format!(
                "[admin]\nlisten = \"127.0.0.1:{port}\"\n[[admin.tokens]]\nname = \"auditor\"\n\
                 token_file = \"{}\"\n",
                token_file.display()
            ),
            ..GatewayOptions::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the admin API does not listen\n{}",
        gw.log()
    );
    (gw, format!("http://127.0.0.1:{port}"), token_file)
}

/// A response's records wait for the session's next command only
/// briefly (a few milliseconds, so that both are one commit): the last
/// answer of a session that stays open and idle is in the store, read
/// live through the admin API, long before the session ends.
#[test]
fn the_last_answer_of_an_idle_open_session_is_recorded() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (gw, url, token_file) = gateway_with_admin(&pg, dir.path());
    let token = gw.grant(&GrantArgs {
        purpose: "idle answer".to_owned(),
        ..GrantArgs::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (client, connection) = rt.block_on(gw.connect(&token));
    let rows = rt
        .block_on(client.simple_query("select 'needle-' || (41 + 1)::text"))
        .expect("the query runs");
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("needle-42"));
    // The session stays open and sends nothing more.
    let live = ["--gateway", &url, "--token-file", s(&token_file)];
    let (mut list, mut shown) = (String::new(), String::new());
    let found = wait_until(Duration::from_secs(10), || {
        list = tool_ok(
            "gatehouse-replay",
            &[&["list", "--json"][..], &live].concat(),
        )
        .0;
        let Some(id) = session_ids(&list).pop() else {
            return false;
        };
        shown = tool_ok("gatehouse-replay", &[&["show", &id][..], &live].concat()).0;
        shown.contains("needle-42")
    });
    assert!(found, "the answer was not recorded:\n{shown}");
    // Read while the session is open: it has no `Closed` event yet.
    let rows: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    assert_eq!(rows[0]["status"]["state"], "cut", "{list}");
    drop((client, connection));
}

#[test]
fn replay_and_audit_read_a_live_gateway_and_a_sealed_archive_like_the_store() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gw, url, token_file) = gateway_with_admin(&pg, dir.path());

    // A few sessions, all ended before the archive is taken.
    let token = gw.grant(&GrantArgs {
        purpose: "archive test".to_owned(),
        ..GrantArgs::default()
    });
    for sql in ["select 41 + 1", "select count(*) from invoices"] {
        let out = Psql::new(gw.conn_string(&token)).command(sql).run();
        out.assert_success();
    }
    let refused = Psql::new(gw.conn_string("not-a-grant"))
        .command("select 1")
        .run();
    assert!(!refused.success(), "a bad grant was accepted");

    let live = ["--gateway", &url, "--token-file", s(&token_file)];
    let live_with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(live.iter())
            .map(|a| (*a).to_owned())
            .collect()
    };

    // The store directory is the gateway's: the tools say to go through it.
    let locked = tool_err("gatehouse-replay", &["list", "--store", s(&gw.store_dir())]);
    assert!(locked.contains("--gateway URL"), "{locked}");

    // ---- the live gateway, through its admin API ----
    let (live_list, live_note) =
        tool_ok("gatehouse-replay", &argv(&live_with(&["list", "--json"])));
    let ids = session_ids(&live_list);
    assert_eq!(ids.len(), 3, "{live_list}");
    assert!(
        live_note.contains("content matches its hash")
            && live_note.contains("was not checked (give --pubkey)"),
        "{live_note}"
    );
    let first = ids.first().expect("a session").clone();
    let (live_show, _) = tool_ok("gatehouse-replay", &argv(&live_with(&["show", &first])));
    assert!(live_show.contains("select 41 + 1"), "{live_show}");
    let pubkey = gw.seal_public_key();
    let (live_verify, live_note) = tool_ok(
        "gatehouse-audit",
        &argv(&live_with(&["verify", "--pubkey", s(&pubkey)])),
    );
    assert!(
        live_note.contains("signature verified with key"),
        "{live_note}"
    );
    let (live_sessions, _) = tool_ok(
        "gatehouse-audit",
        &argv(&live_with(&[
            "sessions", "--since", "1h", "--format", "csv",
        ])),
    );
    // Without a token, or with a wrong one, nothing is read.
    let refused = tool_err(
        "gatehouse-replay",
        &["list", "--gateway", &url, "--token-file", "/dev/null"],
    );
    assert!(refused.contains("admin token is empty"), "{refused}");
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token").expect("token file");
    let refused = tool_err(
        "gatehouse-replay",
        &["list", "--gateway", &url, "--token-file", s(&wrong)],
    );
    assert!(refused.contains("refused the token"), "{refused}");

    // `gatehouse store export --gateway` writes the same kind of file.
    let fetched = dir.path().join("live.ghar");
    let out = Gateway::cli([
        "store",
        "export",
        "--gateway",
        &url,
        "--token-file",
        s(&token_file),
        "--since",
        "1d",
        "--out",
        s(&fetched),
    ]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signed with seal key"),
        "{}",
        render(&out)
    );

    let status = gw.stop();
    assert!(status.success(), "exit status {status}\n{}", gw.log());

    // ---- the stopped store: the same answers ----
    let store = gw.store_dir();
    // The gateway recorded the one `gatehouse store export --gateway`, not
    // the archives the tools fetched to read.
    {
        let exports = gatehouse_store::Retention::open(&store)
            .expect("the store opens")
            .exports()
            .expect("export records read");
        assert_eq!(exports.len(), 1, "{exports:?}");
        assert_eq!(exports[0].sessions, 3, "{exports:?}");
    }
    let (dir_list, _) = tool_ok(
        "gatehouse-replay",
        &["list", "--json", "--store", s(&store)],
    );
    assert_eq!(session_ids(&dir_list), ids);
    assert_eq!(dir_list, live_list);
    let (dir_show, _) = tool_ok("gatehouse-replay", &["show", &first, "--store", s(&store)]);
    assert_eq!(dir_show, live_show);
    let (dir_verify, _) = tool_ok(
        "gatehouse-audit",
        &["verify", "--store", s(&store), "--pubkey", s(&pubkey)],
    );
    assert_eq!(verdict(&dir_verify), verdict(&live_verify));
    assert!(
        verdict(&dir_verify).starts_with("3 sessions, "),
        "{dir_verify}"
    );
    let (dir_sessions, _) = tool_ok(
        "gatehouse-audit",
        &[
            "sessions",
            "--since",
            "1h",
            "--format",
            "csv",
            "--store",
            s(&store),
        ],
    );
    assert_eq!(dir_sessions, live_sessions);

    // The file fetched from the live gateway reads the same.
    let (file_list, _) = tool_ok(
        "gatehouse-replay",
        &["list", "--json", "--store", s(&fetched)],
    );
    assert_eq!(file_list, live_list);

    // ---- an archive exported from the stopped store ----
    let archive = dir.path().join("range.ghar");
    let out = Gateway::cli([
        "store",
        "export",
        "--store",
        s(&store),
        "--seal-key",
        s(&gw.seal_key()),
        "--since",
        "1d",
        "--until",
        "1970-01-01T00:00:00Z",
        "--out",
        s(&archive),
    ]);
    assert!(!out.status.success(), "an empty range was accepted");
    let out = Gateway::cli([
        "store",
        "export",
        "--store",
        s(&store),
        "--seal-key",
        s(&gw.seal_key()),
        "--since",
        "1d",
        "--out",
        s(&archive),
    ]);
    assert!(out.status.success(), "{}", render(&out));
    let (arch_list, _) = tool_ok(
        "gatehouse-replay",
        &["list", "--json", "--store", s(&archive)],
    );
    assert_eq!(arch_list, dir_list);
    let (arch_show, _) = tool_ok(
        "gatehouse-replay",
        &["show", &first, "--store", s(&archive)],
    );
    assert_eq!(arch_show, dir_show);
    let (arch_verify, note) = tool_ok(
        "gatehouse-audit",
        &["verify", "--store", s(&archive), "--pubkey", s(&pubkey)],
    );
    assert_eq!(verdict(&arch_verify), verdict(&dir_verify));
    assert!(note.contains("signature verified with key"), "{note}");

    // The stopped gateway wrote a checkpoint; the archive of the whole
    // store carries it.
    assert!(dir_verify.contains("checkpoint"), "{dir_verify}");
    assert!(arch_verify.contains("checkpoint"), "{arch_verify}");

    // A range that leaves the first session out: the checkpoint (which
    // lists it) stays out too, so what is there verifies clean.
    let rows: serde_json::Value = serde_json::from_str(&dir_list).expect("JSON");
    let last = rows.as_array().and_then(|r| r.last()).expect("sessions");
    let partial = dir.path().join("partial.ghar");
    let out = Gateway::cli([
        "store",
        "export",
        "--store",
        s(&store),
        "--seal-key",
        s(&gw.seal_key()),
        "--since",
        last["started"].as_str().expect("started"),
        "--out",
        s(&partial),
    ]);
    assert!(out.status.success(), "{}", render(&out));
    let (part_list, _) = tool_ok(
        "gatehouse-replay",
        &["list", "--json", "--store", s(&partial)],
    );
    let part_ids = session_ids(&part_list);
    assert!(
        part_ids.len() < ids.len() && !part_ids.contains(&first),
        "{part_list}"
    );
    assert!(part_ids.contains(&last["id"].as_str().expect("id").to_owned()));
    let (part_verify, _) = tool_ok(
        "gatehouse-audit",
        &["verify", "--store", s(&partial), "--pubkey", s(&pubkey)],
    );
    assert!(
        !part_verify.contains("BREAK") && part_verify.contains(" verified"),
        "{part_verify}"
    );

    // ---- damage: each refused, saying what and where ----
    let bytes = std::fs::read(&archive).expect("the archive");
    let damaged = dir.path().join("damaged.ghar");
    // One byte inside the largest recorded value: the hash.
    let items = decode_all(&bytes).expect("the archive decodes");
    let entry = items
        .iter()
        .filter_map(|i| match i {
            Item::Entry(e) => Some(e),
            _ => None,
        })
        .max_by_key(|e| e.value.len())
        .expect("entries");
    let inside = entry.offset as usize + 1 + 2 + entry.key.len() + 4 + entry.value.len() / 2;
    let mut altered = bytes.clone();
    altered[inside] ^= 0x01;
    std::fs::write(&damaged, &altered).expect("write");
    for name in ["gatehouse-replay", "gatehouse-audit"] {
        let command = if name == "gatehouse-replay" {
            "list"
        } else {
            "verify"
        };
        let err = tool_err(name, &[command, "--store", s(&damaged)]);
        assert!(err.contains("bad hash"), "{err}");
    }
    // A length: malformed at the entry's offset, or cut short.
    let mut altered = bytes.clone();
    let key_len_at = entry.offset as usize + 1;
    altered[key_len_at] = 0xff;
    std::fs::write(&damaged, &altered).expect("write");
    let err = tool_err("gatehouse-replay", &["list", "--store", s(&damaged)]);
    assert!(
        err.contains(&format!("malformed archive at offset {}", entry.offset)),
        "{err}"
    );
    // The magic: not an archive at all.
    let mut altered = bytes.clone();
    altered[0] = b'X';
    std::fs::write(&damaged, &altered).expect("write");
    let err = tool_err("gatehouse-replay", &["list", "--store", s(&damaged)]);
    assert!(
        err.contains("neither a store directory nor a Gatehouse archive"),
        "{err}"
    );
    // The hash's last byte, just before the signature block: the hash.
    let mut altered = bytes.clone();
    let signature_block = 1 + 1 + 64 + kid_len(&bytes);
    let at = altered.len() - signature_block - 1;
    altered[at] ^= 0x80;
    std::fs::write(&damaged, &altered).expect("write");
    let err = tool_err("gatehouse-replay", &["list", "--store", s(&damaged)]);
    assert!(err.contains("bad hash"), "{err}");
    // The signature's last byte: only the public key tells.
    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x01;
    std::fs::write(&damaged, &altered).expect("write");
    let (_, note) = tool_ok("gatehouse-replay", &["list", "--store", s(&damaged)]);
    assert!(note.contains("was not checked"), "{note}");
    let err = tool_err(
        "gatehouse-replay",
        &["list", "--store", s(&damaged), "--pubkey", s(&pubkey)],
    );
    assert!(err.contains("bad signature"), "{err}");
    // A cut file.
    std::fs::write(&damaged, &bytes[..bytes.len() - 100]).expect("write");
    let err = tool_err("gatehouse-replay", &["list", "--store", s(&damaged)]);
    assert!(err.contains("truncated"), "{err}");
    // Another key.
    let other = dir.path().join("other");
    let out = Gateway::cli(["keygen", "--name", "seal", "--out", s(&other)]);
    assert!(out.status.success(), "{}", render(&out));
    let err = tool_err(
        "gatehouse-audit",
        &[
            "verify",
            "--store",
            s(&archive),
            "--pubkey",
            s(&other.join("seal.pub")),
        ],
    );
    assert!(err.contains("signed with key"), "{err}");
}

/// The length of the key id in an archive's signature block: the block is
/// 1 ‖ kid length ‖ kid ‖ 64-byte signature, at the end of the file.
fn kid_len(bytes: &[u8]) -> usize {
    // Key ids are base64url of a hash: try the lengths they can have.
    (1..=255)
        .find(|&n| {
            let block = 2 + n + 64;
            bytes.len() >= block
                && bytes[bytes.len() - block] == 1
                && usize::from(bytes[bytes.len() - block + 1]) == n
        })
        .expect("a signature block")
}
