//! A target that stops answering: one that accepts TCP and then says
//! nothing (a listener in the test that never reads or writes), and a real
//! PostgreSQL whose postmaster is stopped with SIGSTOP. A client opening a
//! session gets FATAL 08001 within the target's `connect_timeout` (which
//! covers the login, not only the TCP connect), and the gateway serves
//! other sessions throughout.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse_tests::command::{DEFAULT_TIMEOUT, run_ok};
use gatehouse_tests::{APP_PASSWORD, Gateway, GatewayOptions, GrantArgs, PgCluster};

/// The stalled targets' `connect_timeout`.
const CONNECT_TIMEOUT: &str = "2s";
/// How long the client may wait for its error (the timeout plus slack for
/// a busy machine).
const ERROR_BOUND: Duration = Duration::from_secs(15);

/// A TCP listener that accepts and holds connections, never answering,
/// until dropped.
struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Silent { port, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// SIGCONT for a stopped process when dropped, also when the test panics.
struct Stopped(String);

impl Stopped {
    fn stop(pid: &str) -> Stopped {
        run_ok(Command::new("kill").args(["-STOP", pid]), DEFAULT_TIMEOUT);
        Stopped(pid.to_owned())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

fn target_section(name: &str, port: u16) -> String {
    format!(
        "[targets.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ndatabase = \"orders\"\n\
         user = \"app\"\npassword_env = \"GATEHOUSE_STALLED_PASSWORD\"\n\
         connect_timeout = \"{CONNECT_TIMEOUT}\"\n"
    )
}

/// Opens a session to `target`; it must fail with FATAL 08001 naming the
/// target within [`ERROR_BOUND`].
async fn expect_login_timeout(gw: &Gateway, target: &str) {
    let token = gw.grant(&GrantArgs {
        target: target.to_owned(),
        ..GrantArgs::default()
    });
    let mut config = gw.pg_config(&token);
    config.dbname(target);
    let started = Instant::now();
    let err = tokio::time::timeout(ERROR_BOUND, gw.try_connect_with(&config))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no answer within {ERROR_BOUND:?} from a stalled target\n{}",
                gw.log()
            )
        })
        .map(|_| ())
        .expect_err("a stalled target cannot log in");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a protocol-native error: {err:?}"));
    eprintln!("{target}: after {:?}: {}", started.elapsed(), db.message());
    assert_eq!(db.code().code(), "08001", "{db:?}");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message().contains(&format!("\"{target}\"")),
        "{}",
        db.message()
    );
    assert!(db.message().contains("timed out"), "{}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_targets_time_out_with_08001() {
    let pg = PgCluster::start();
    let pg_stalled = PgCluster::start();
    let silent = Silent::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: format!(
                "{}\n{}",
                target_section("silent", silent.port),
                target_section("stalled", pg_stalled.port())
            ),
            env: vec![(
                "GATEHOUSE_STALLED_PASSWORD".to_owned(),
                APP_PASSWORD.to_owned(),
            )],
            ..GatewayOptions::default()
        },
    );

    // A session to a healthy target, open throughout.
    let token = gw.grant(&GrantArgs::default());
    let (healthy, _conn) = gw.connect(&token).await;

    // A listener that never answers.
    expect_login_timeout(&gw, "silent").await;
    healthy.simple_query("select 1").await.expect("healthy");

    // A real PostgreSQL whose postmaster is frozen: TCP connects (the
    // kernel's backlog accepts), the login never gets an answer. A session
    // opened to it before keeps working: its backend is not stopped.
    let token = gw.grant(&GrantArgs {
        target: "stalled".to_owned(),
        ..GrantArgs::default()
    });
    let mut config = gw.pg_config(&token);
    config.dbname("stalled");
    let (before, _before_conn) = gw
        .try_connect_with(&config)
        .await
        .expect("a session before the stall");
    let pid = std::fs::read_to_string(pg_stalled.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid");
    let pid = pid.lines().next().expect("pid line").trim().to_owned();
    {
        let _frozen = Stopped::stop(&pid);
        expect_login_timeout(&gw, "stalled").await;
        before
            .simple_query("select 1")
            .await
            .expect("the session opened before the stall");
        healthy.simple_query("select 1").await.expect("healthy");
    }

    // Thawed: new sessions log in again.
    let (after, _after_conn) = gw
        .try_connect_with(&config)
        .await
        .expect("a session after the stall");
    after.simple_query("select 1").await.expect("after");
}
