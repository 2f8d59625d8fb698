//! The real `psql` client, run as a test's agent would run it.
//!
//! Every run gets `-X -A -t -v ON_ERROR_STOP=1` (no psqlrc, unaligned,
//! tuples only, stop at the first error), a clean libpq environment (no
//! `PG*` variables leak in from the caller, no `~/.pgpass`) and a bounded
//! wait.
//!
//! ```no_run
//! # use gatehouse_tests::psql::Psql;
//! let out = Psql::new("host=127.0.0.1 port=6432 dbname=orders user=agent sslmode=require")
//!     .password("eyJ…")
//!     .command("select 1")
//!     .run();
//! assert_eq!(out.assert_success(), "1");
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::command::{describe, render, wait_with_output};

/// Where psql lives.
pub const PSQL: &str = "/usr/bin/psql";

/// How long a psql run may take unless [`Psql::timeout`] says otherwise.
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// libpq environment variables removed from every run.
const SCRUBBED_ENV: [&str; 12] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGAPPNAME",
];

enum Action {
    Command(String),
    File(PathBuf),
}

/// One psql invocation, built up and then [`run`](Psql::run) or
/// [`spawn`](Psql::spawn)ed.
pub struct Psql {
    conninfo: String,
    password: Option<String>,
    actions: Vec<Action>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Psql {
    /// psql connecting with a libpq conninfo string (`host=… port=…
    /// sslmode=require`, plus `sslrootcert=…` when verifying).
    pub fn new(conninfo: impl Into<String>) -> Psql {
        Psql {
            conninfo: conninfo.into(),
            password: None,
            actions: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: PSQL_TIMEOUT,
        }
    }

    /// The password (a grant token through the gateway), as `PGPASSWORD`.
    pub fn password(mut self, password: impl Into<String>) -> Psql {
        self.password = Some(password.into());
        self
    }

    /// Runs `sql` with `-c`. Several commands and files run in order.
    pub fn command(mut self, sql: impl Into<String>) -> Psql {
        self.actions.push(Action::Command(sql.into()));
        self
    }

    /// Runs the script at `path` with `-f`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Psql {
        self.actions.push(Action::File(path.into()));
        self
    }

    /// Feeds `input` to psql's stdin (the data of `COPY … FROM STDIN`, or the
    /// script itself when there is no command or file).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Psql {
        self.stdin = Some(input.into());
        self
    }

    /// An extra command-line argument, e.g. `-q` or `--echo-errors`.
    pub fn arg(mut self, arg: impl Into<String>) -> Psql {
        self.args.push(arg.into());
        self
    }

    /// An extra environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Psql {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long [`run`](Self::run) waits before killing psql.
    pub fn timeout(mut self, timeout: Duration) -> Psql {
        self.timeout = timeout;
        self
    }

    /// The command line this would run.
    pub fn to_command(&self) -> Command {
        let mut cmd = Command::new(PSQL);
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        cmd.args(&self.args);
        for action in &self.actions {
            match action {
                Action::Command(sql) => cmd.arg("-c").arg(sql),
                Action::File(path) => cmd.arg("-f").arg(path),
            };
        }
        cmd.arg("-d").arg(&self.conninfo);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.env("PGPASSFILE", "/dev/null")
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some(pw) = &self.password {
            cmd.env("PGPASSWORD", pw);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts psql and returns without waiting, e.g. for a statement that the
    /// gateway holds for approval.
    pub fn spawn(self) -> PsqlChild {
        let mut cmd = self.to_command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(&cmd)));
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            // A thread, so that a psql that stops reading cannot block us.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        PsqlChild {
            child,
            description: describe(&cmd),
            timeout: self.timeout,
        }
    }

    /// Runs psql to completion (bounded by the timeout).
    pub fn run(self) -> PsqlOutput {
        self.spawn().wait()
    }
}

/// A running psql.
pub struct PsqlChild {
    child: Child,
    description: String,
    timeout: Duration,
}

impl PsqlChild {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether psql has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for psql to finish; panics (with what it printed) if it has not
    /// within the run's timeout.
    pub fn wait(self) -> PsqlOutput {
        let timeout = self.timeout;
        match wait_with_output(self.child, timeout) {
            Ok(out) => PsqlOutput {
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                status: out.status,
                description: self.description,
            },
            Err(out) => panic!(
                "{} did not finish within {timeout:?}; it was killed\n{}",
                self.description,
                render(&out)
            ),
        }
    }
}

/// What a psql run printed and how it ended.
#[derive(Debug)]
pub struct PsqlOutput {
    /// Everything psql wrote to stdout.
    pub stdout: String,
    /// Everything psql wrote to stderr (errors, notices).
    pub stderr: String,
    /// psql's exit status: 0 ok, 1 fatal error, 2 connection lost or
    /// refused, 3 a script error with `ON_ERROR_STOP`.
    pub status: ExitStatus,
    description: String,
}

impl PsqlOutput {
    /// Whether psql exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout without its trailing newline; panics with the whole run's
    /// output unless psql exited 0.
    pub fn assert_success(&self) -> &str {
        assert!(self.success(), "psql failed: {self}");
        self.stdout.trim_end_matches('\n')
    }

    /// stderr; panics unless psql exited non-zero.
    pub fn assert_failure(&self) -> &str {
        assert!(!self.success(), "psql unexpectedly succeeded: {self}");
        &self.stderr
    }

    /// stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for PsqlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description, self.status, self.stdout, self.stderr
        )
    }
}
