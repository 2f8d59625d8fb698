//! Running helper programs (initdb, pg_ctl, psql, the gatehouse CLI) with a
//! bounded wait and failures that say what ran and what it printed.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a helper program may run before it is killed, unless the caller
/// says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this process runs as root (uid 0), asked of `id -u` once.
///
/// PostgreSQL refuses to run as root, so the cluster helpers then run its
/// programs as the `postgres` user.
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let out = run(Command::new("id").arg("-u"), Duration::from_secs(10));
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    })
}

/// The uid of this process (`id -u`), as text.
pub fn uid() -> String {
    let out = run(Command::new("id").arg("-u"), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A command for one of PostgreSQL's server programs: run as the `postgres`
/// user (through `runuser`) when this process is root, directly otherwise.
pub fn postgres_command(program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// Hands `path` (recursively) to the `postgres` user when this process is
/// root; does nothing otherwise.
pub fn chown_to_postgres(path: &std::path::Path) {
    if is_root() {
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(path),
            DEFAULT_TIMEOUT,
        );
    }
}

/// Runs `cmd` to completion with its stdout and stderr captured and stdin
/// closed, killing it after `timeout`. Panics when it cannot be started or
/// does not finish in time; the exit status is the caller's to judge.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    match wait_with_output(child, timeout) {
        Ok(out) => out,
        Err(out) => panic!(
            "{} did not finish within {timeout:?}; it was killed\n{}",
            describe(cmd),
            render(&out)
        ),
    }
}

/// Like [`run`], and panics with the program's output unless it exits 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run(cmd, timeout);
    if !out.status.success() {
        panic!("{} failed\n{}", describe(cmd), render(&out));
    }
    out
}

/// Waits for a child whose stdout and stderr are piped, collecting both;
/// kills it once `timeout` has passed. `Err` carries what it printed before
/// it was killed.
pub fn wait_with_output(mut child: Child, timeout: Duration) -> Result<Output, Output> {
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break (child.wait().unwrap_or_else(|e| panic!("wait: {e}")), true);
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("cannot wait for child {}: {e}", child.id()),
        }
    };
    let join = |h: Option<thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let out = Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    };
    if timed_out { Err(out) } else { Ok(out) }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// `program arg arg …`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Exit status, stdout and stderr, for messages.
pub fn render(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        status_text(out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn status_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// `gatehouse-audit verify --store STORE --pubkey PUBKEY` (the binary next
/// to the gateway's), within [`DEFAULT_TIMEOUT`]; its output, whatever it
/// found.
pub fn audit_verify(store: &std::path::Path, pubkey: &std::path::Path) -> Output {
    let audit = crate::Gateway::binary().with_file_name("gatehouse-audit");
    assert!(
        audit.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        audit.display()
    );
    run(
        Command::new(audit)
            .arg("verify")
            .arg("--store")
            .arg(store)
            .arg("--pubkey")
            .arg(pubkey),
        DEFAULT_TIMEOUT,
    )
}
