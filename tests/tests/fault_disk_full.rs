//! The store's disk fills up under a running gateway.
//!
//! The gateway's store lives on a 4 MiB tmpfs, mostly taken by a filler
//! file; sessions stream padded INSERTs through the gateway until the store
//! cannot write. Then:
//!
//! - the client gets a protocol-native error (SQLSTATE 58030, "gatehouse
//!   cannot record this session"), never a dropped connection without one;
//! - nothing was forwarded unrecorded: every INSERT in PostgreSQL's
//!   statement log (`log_statement = all`) is a `Statement` event in the
//!   store;
//! - `/readyz` answers 503 naming the store's failure, `/metrics` says
//!   `gatehouse_store_healthy 0`, new sessions are refused with 58030, and
//!   nothing panics.
//!
//! Then the filler is deleted, so space is back, and the same gateway
//! process recovers by itself: the store reopens in place (dropping a
//! batch the failure tore), `/readyz` is 200 again, the metrics count the
//! recovery, and new sessions are served and recorded. Afterwards the
//! store verifies (`gatehouse-audit verify`: the sessions the failure cut
//! read as cut, no chain breaks) and holds every INSERT PostgreSQL ran —
//! before the failure and after the recovery.
//!
//! Needs root (to mount the tmpfs; CI runs tests as root) and the gateway
//! binary (`cargo build --workspace --bins`). Without root, or when the
//! mount fails (a container without `CAP_SYS_ADMIN`), it prints why and
//! passes without testing anything.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_core::event::Body;
use gatehouse_store::Reader;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, render, run};
use gatehouse_tests::ports::{free_port, wait_until};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The tmpfs's size.
const TMPFS_SIZE: &str = "4m";
/// Space left free for the store once the filler is written.
const HEADROOM: u64 = 768 << 10;
/// Each INSERT carries this much text, so the store fills quickly.
const PAD: usize = 2000;
/// INSERTs per session before it ends and a new one starts.
const PER_SESSION: u32 = 40;
/// How long the store may take to run out of space.
const FILL_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the store may take to recover once space is back (it retries
/// every second).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Marks this test's INSERTs in PostgreSQL's log.
const MARK: &str = "diskfull-";

/// A tmpfs mounted on a temp dir; unmounted (lazily, so that a process
/// still holding a file cannot keep it) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `Err` says why there is no tmpfs (not root, mount refused).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("cannot run `id -u`: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root, so a tmpfs cannot be mounted".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-diskfull-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "could not unmount the tmpfs at {}",
                self.dir.path().display()
            );
        }
    }
}

/// Fills `fs` with `path` until writes fail, then gives back `headroom`
/// bytes. Returns the filler's final size.
fn fill(path: &Path, headroom: u64) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0xa5u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let size = written.saturating_sub(headroom);
    file.set_len(size).expect("shrink the filler");
    file.sync_all().expect("sync the filler");
    size
}

/// One `GET` over a fresh connection: status and body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin API");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

fn insert_sql(id: i64) -> String {
    format!(
        "insert into invoices (id, customer, total) values ({id}, '{MARK}{id}-{}', {id})",
        "x".repeat(PAD)
    )
}

/// The row id in an INSERT written by [`insert_sql`].
fn id_of(sql: &str) -> Option<i64> {
    let rest = sql.split_once(MARK)?.1;
    rest.split('-').next()?.parse().ok()
}

/// How a session ended while the store was filling.
enum Ended {
    /// All [`PER_SESSION`] INSERTs went through.
    Done,
    /// The gateway refused with this SQLSTATE (at login or mid-session).
    Refused(String),
}

/// One session of INSERTs from `next_id` on.
async fn session(gw: &Gateway, next_id: &mut i64) -> Ended {
    let token = gw.grant(&GrantArgs::default());
    let (client, conn) = match gw.try_connect(&token).await {
        Ok(pair) => pair,
        Err(e) => {
            let code = e.code().map(|c| c.code().to_owned());
            return Ended::Refused(
                code.unwrap_or_else(|| panic!("login failed without a SQLSTATE: {e}")),
            );
        }
    };
    for _ in 0..PER_SESSION {
        let id = *next_id;
        *next_id += 1;
        if let Err(e) = client.simple_query(&insert_sql(id)).await {
            let code = e.code().map(|c| c.code().to_owned());
            // The error may arrive on the connection task (a FATAL).
            let code = match code {
                Some(c) => c,
                None => match tokio::time::timeout(Duration::from_secs(10), conn).await {
                    Ok(Ok(Err(conn_err))) => conn_err
                        .code()
                        .map(|c| c.code().to_owned())
                        .unwrap_or_else(|| panic!("no SQLSTATE: {e} / {conn_err}")),
                    other => panic!("statement failed without a SQLSTATE: {e} ({other:?})"),
                },
            };
            return Ended::Refused(code);
        }
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    Ended::Done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_commands_then_recovers_in_place() {
    let tmpfs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED fault_disk_full: {why}");
            return;
        }
    };
    let store_dir: PathBuf = tmpfs.path().join("store");
    let filler = tmpfs.path().join("filler");
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let admin = free_port();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            store_dir: Some(store_dir.clone()),
            extra_config: format!(
                "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[admin.tokens]]\nname = \"alice\"\n\
                 token_file = \"{}\"\n",
                token_file.display()
            ),
            ..GatewayOptions::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            admin
        ))
        .is_ok()),
        "the admin API does not listen\n{}",
        gw.log()
    );
    assert_eq!(get(admin, "/readyz", None).0, 200);

    // Fill the tmpfs, leaving a little room for the store.
    let filler_size = fill(&filler, HEADROOM);
    eprintln!("filler: {filler_size} bytes; the store has about {HEADROOM} left");

    // Sessions of INSERTs until the gateway refuses.
    let mut next_id: i64 = 1_000_000;
    let started = Instant::now();
    let mut sessions = 0;
    let code = loop {
        assert!(
            started.elapsed() < FILL_TIMEOUT,
            "the store did not fill within {FILL_TIMEOUT:?} ({} INSERTs)\n{}",
            next_id - 1_000_000,
            gw.log()
        );
        sessions += 1;
        match session(&gw, &mut next_id).await {
            Ended::Done => continue,
            Ended::Refused(code) => break code,
        }
    };
    eprintln!(
        "the gateway refused with {code} after {} INSERTs in {sessions} sessions",
        next_id - 1_000_000
    );
    assert!(
        code == "58030" || code == "53100",
        "a full store must be reported as 58030 (io_error) or 53100 (disk_full), not {code}\n{}",
        gw.log()
    );

    // Readiness and metrics say so, and nothing panicked.
    let (status, body) = get(admin, "/readyz", None);
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    eprintln!("/readyz while the store is full: {body}");
    assert_eq!(ready["ready"], false, "{ready}");
    assert_eq!(ready["reason"], "store_failed", "{ready}");
    assert!(
        ready["store"]
            .as_str()
            .is_some_and(|s| s.contains("stopped accepting events")),
        "{ready}"
    );
    let (status, metrics) = get(admin, "/metrics", Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "gatehouse_store_healthy 0"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "gatehouse_ready 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("gatehouse_store_write_errors_total 0\n"),
        "{metrics}"
    );
    assert!(
        matches!(session(&gw, &mut next_id).await, Ended::Refused(c) if c == "58030"),
        "a new session while the store fails must be refused with 58030"
    );

    // Space comes back: the same gateway recovers, without a restart.
    std::fs::remove_file(&filler).expect("delete the filler");
    assert!(
        wait_until(RECOVERY_TIMEOUT, || get(admin, "/readyz", None).0 == 200),
        "the store did not recover within {RECOVERY_TIMEOUT:?} of space returning\n{}",
        gw.log()
    );
    let (_, metrics) = get(admin, "/metrics", Some(ADMIN_TOKEN));
    for line in [
        "gatehouse_store_healthy 1",
        "gatehouse_store_recoveries_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?}:\n{metrics}"
        );
    }
    let first_after = next_id;
    for _ in 0..2 {
        assert!(
            matches!(session(&gw, &mut next_id).await, Ended::Done),
            "a new session after the recovery must work\n{}",
            gw.log()
        );
    }
    assert!(gw.is_running(), "the gateway died\n{}", gw.log());
    let _ = gw.stop();
    let log = gw.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");

    // Nothing was forwarded unrecorded: every INSERT PostgreSQL ran is a
    // Statement event in the store.
    let executed: BTreeSet<i64> = pg.statements().iter().filter_map(|s| id_of(s)).collect();
    assert!(!executed.is_empty(), "no INSERT reached PostgreSQL");
    let recorded: BTreeSet<i64> = {
        let reader = Reader::open(&store_dir).expect("the store opens once space is back");
        let mut recorded = BTreeSet::new();
        for summary in reader.sessions() {
            let summary = summary.expect("a session summary");
            for event in reader.events(summary.id) {
                if let Body::Statement(s) = event.expect("an event").body
                    && let Some(id) = id_of(&s.text)
                {
                    recorded.insert(id);
                }
            }
        }
        recorded
    };
    let unrecorded: Vec<_> = executed.difference(&recorded).collect();
    assert!(
        unrecorded.is_empty(),
        "INSERTs PostgreSQL executed that are not in the store: {unrecorded:?} ({} executed, {} \
         recorded)",
        executed.len(),
        recorded.len()
    );
    eprintln!(
        "{} INSERTs executed, all recorded ({} recorded)",
        executed.len(),
        recorded.len()
    );
    let after: Vec<_> = (first_after..next_id).collect();
    assert!(
        after
            .iter()
            .all(|id| executed.contains(id) && recorded.contains(id)),
        "the INSERTs after the recovery must have run and been recorded"
    );
    // Every chain holds: the sessions the failure cut are cut, not broken.
    let audit = Gateway::binary().with_file_name("gatehouse-audit");
    let out = run(
        Command::new(&audit)
            .arg("verify")
            .arg("--store")
            .arg(&store_dir),
        DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "gatehouse-audit verify found breaks after the recovery\n{}",
        render(&out)
    );

    drop(gw);
    drop(tmpfs);
}
