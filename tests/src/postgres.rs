//! An ephemeral PostgreSQL 15 cluster per test.
//!
//! Each [`PgCluster`] is a copy of a prepared template (see
//! [`crate::pg_template`]) in its own temp dir, listening on its own loopback
//! port, so tests run in parallel. When the process is root the server runs
//! as the `postgres` user. The server logs every statement
//! (`log_statement=all`): [`PgCluster::statements`] is the ground truth for
//! what reached the database.
//!
//! Contents: database [`DATABASE`] owned by `app`, with table
//! `invoices(id int primary key, customer text, total numeric)` holding
//! [`INVOICES`]; one login role per authentication method, see [`User`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use crate::command::{DEFAULT_TIMEOUT, postgres_command, render, run, run_ok};
use crate::janitor;
use crate::logs::{self, LogFile};
pub use crate::pg_template::INVOICES;
use crate::pg_template::{base_dir, template_dir};
use crate::ports::free_port;

/// The test database.
pub const DATABASE: &str = "orders";
/// Password of [`User::App`] (stored as SCRAM-SHA-256).
pub const APP_PASSWORD: &str = "app-S3cret!";
/// Password of [`User::Md5`] (stored as an MD5 hash).
pub const MD5_PASSWORD: &str = "md5-S3cret!";
/// Password of [`User::Clear`] (sent in clear text, `password` method).
pub const CLEAR_PASSWORD: &str = "clear-S3cret!";

/// A login role of the test cluster and how it authenticates over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum User {
    /// `postgres`, superuser; `trust` on the socket and on 127.0.0.1.
    Postgres,
    /// `app`, owner of [`DATABASE`]; `scram-sha-256`.
    App,
    /// `md5user`; `md5`, with an MD5-hashed password.
    Md5,
    /// `clearuser`; `password` (clear text).
    Clear,
    /// `trustuser`; `trust`, no password.
    Trust,
}

impl User {
    /// Every role, superuser first.
    pub const ALL: [User; 5] = [
        User::Postgres,
        User::App,
        User::Md5,
        User::Clear,
        User::Trust,
    ];

    /// The role name.
    pub fn name(self) -> &'static str {
        match self {
            User::Postgres => "postgres",
            User::App => "app",
            User::Md5 => "md5user",
            User::Clear => "clearuser",
            User::Trust => "trustuser",
        }
    }

    /// The role's password; `None` for the trusted ones.
    pub fn password(self) -> Option<&'static str> {
        match self {
            User::App => Some(APP_PASSWORD),
            User::Md5 => Some(MD5_PASSWORD),
            User::Clear => Some(CLEAR_PASSWORD),
            User::Postgres | User::Trust => None,
        }
    }

    /// The `pg_hba.conf` method that applies to this role over TCP.
    pub fn auth_method(self) -> &'static str {
        match self {
            User::App => "scram-sha-256",
            User::Md5 => "md5",
            User::Clear => "password",
            User::Postgres | User::Trust => "trust",
        }
    }
}

/// A running (or stopped) PostgreSQL cluster in a temp dir. Dropping it stops
/// the server immediately and removes the dir (kept with
/// `GATEHOUSE_TEST_KEEP=1`); when the thread is panicking, the server log's
/// tail is printed first.
pub struct PgCluster {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    running: bool,
    log: LogFile,
}

impl PgCluster {
    /// Starts a fresh cluster on a free port and waits until it accepts
    /// connections. Panics with the server log if it cannot.
    pub fn start() -> PgCluster {
        janitor::sweep_once();
        let template = template_dir();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-pg-")
            .tempdir_in(base_dir())
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let root = dir.path().to_path_buf();
        janitor::claim(&root);
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(template)
                .arg(root.join("data")),
            DEFAULT_TIMEOUT,
        );
        if crate::command::is_root() {
            // The copy keeps the template's owner; only the dir itself is new.
            run_ok(
                Command::new("chown").arg("postgres:postgres").arg(&root),
                DEFAULT_TIMEOUT,
            );
        }
        let mut cluster = PgCluster {
            dir: Some(dir),
            log: LogFile::new("postgres log", root.join("postgres.log")),
            root,
            port: 0,
            running: false,
        };
        // Another process may grab the port between `free_port` and the
        // server's bind: try a few.
        for attempt in 1..=5 {
            cluster.port = free_port();
            let logged_before = cluster.log.read().len();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(_)
                    if attempt < 5
                        && cluster.log.read()[logged_before..].contains("could not bind") =>
                {
                    continue;
                }
                Err(msg) => panic!("cannot start PostgreSQL: {msg}\n{}", cluster.log.excerpt()),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Starts the server again after [`stop`](Self::stop) or
    /// [`kill`](Self::kill), on the same port and data. Panics with the log
    /// if it cannot.
    pub fn restart(&mut self) {
        assert!(!self.running, "PgCluster::restart: already running");
        if let Err(msg) = self.pg_ctl_start() {
            panic!("cannot restart PostgreSQL: {msg}\n{}", self.log.excerpt());
        }
    }

    /// Clean shutdown (`pg_ctl stop -m fast`): sessions are ended, a
    /// checkpoint is written.
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
    }

    /// Crash-like shutdown (`pg_ctl stop -m immediate`): every server
    /// process quits at once without a checkpoint, as after a crash; the next
    /// [`restart`](Self::restart) runs recovery.
    pub fn kill(&mut self) {
        self.pg_ctl_stop("immediate");
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The cluster's temp dir (data dir, socket dir and log live in it).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The whole server log. With `log_statement=all` it names every
    /// statement the server received, so it is the ground truth for "did this
    /// reach the database".
    pub fn statement_log(&self) -> String {
        self.log.read()
    }

    /// The statements in the server log, in order: the text of each
    /// `statement:` (simple protocol) and `execute <name>:` (extended
    /// protocol) entry, continuation lines included.
    pub fn statements(&self) -> Vec<String> {
        parse_statements(&self.statement_log())
    }

    /// [`statements`](Self::statements) that `user` sent (the role the
    /// session logged in as). A gateway logs in upstream as its target's
    /// role, so a test whose own connections use another role (the
    /// superuser) gets exactly what came through the gateway.
    pub fn statements_of(&self, user: User) -> Vec<String> {
        parse_logged_statements(&self.statement_log())
            .into_iter()
            .filter(|s| s.user == user.name())
            .map(|s| s.text)
            .collect()
    }

    /// A libpq conninfo string for `user` straight to the cluster over TCP,
    /// password included.
    pub fn conn_string(&self, user: User) -> String {
        let mut s = format!(
            "host={} port={} dbname={DATABASE} user={} sslmode=disable",
            self.host(),
            self.port,
            user.name()
        );
        if let Some(pw) = user.password() {
            s.push_str(&format!(" password={pw}"));
        }
        s
    }

    /// A tokio-postgres config for `user` over TCP, without TLS.
    pub fn config(&self, user: User) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.host())
            .port(self.port)
            .dbname(DATABASE)
            .user(user.name())
            .connect_timeout(Duration::from_secs(10));
        if let Some(pw) = user.password() {
            config.password(pw);
        }
        config
    }

    /// Connects as `user` with its own password; the connection runs on a
    /// spawned task. Panics (with the server log) if it cannot.
    pub async fn client(&self, user: User) -> Client {
        match self.try_client(user.name(), user.password()).await {
            Ok(client) => client,
            Err(e) => panic!(
                "cannot connect to PostgreSQL as {}: {e}\n{}",
                user.name(),
                self.log.excerpt()
            ),
        }
    }

    /// Connects as the superuser `postgres` (trusted on loopback).
    pub async fn superuser_client(&self) -> Client {
        self.client(User::Postgres).await
    }

    /// Connects as any role with any password, for tests of failures.
    pub async fn try_client(
        &self,
        user: &str,
        password: Option<&str>,
    ) -> Result<Client, tokio_postgres::Error> {
        let mut config = self.config(User::Postgres);
        config.user(user);
        if let Some(pw) = password {
            config.password(pw);
        }
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("postgres connection ended with an error: {e}");
            }
        });
        Ok(client)
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c fsync=off -c log_statement=all -c logging_collector=off \
             -c log_connections=on -c log_line_prefix='%m [%p] %q%u@%d '",
            self.port,
            self.root.display()
        );
        let out = run(
            postgres_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
            DEFAULT_TIMEOUT,
        );
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start on port {}\n{}",
                self.port,
                render(&out)
            ))
        }
    }

    fn pg_ctl_stop(&mut self, mode: &str) {
        let out = run(
            postgres_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "60", "-m", mode, "stop"]),
            DEFAULT_TIMEOUT,
        );
        if !out.status.success() {
            panic!(
                "pg_ctl stop -m {mode} failed\n{}\n{}",
                render(&out),
                self.log.excerpt()
            );
        }
        self.running = false;
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.log.dump_if_panicking();
        // Also after a failed or timed-out start: whatever server may run.
        if self.data_dir().join("postmaster.pid").exists() {
            // Never panic in drop: report and go on.
            let out = run(
                postgres_command("pg_ctl")
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-w", "-t", "30", "-m", "immediate", "stop"]),
                DEFAULT_TIMEOUT,
            );
            if !out.status.success() {
                eprintln!("PgCluster drop: pg_ctl stop failed\n{}", render(&out));
            }
        }
        if let Some(dir) = self.dir.take() {
            if logs::keep_dirs() {
                janitor::release(dir.path());
                eprintln!("keeping PostgreSQL dir {}", dir.keep().display());
            } else {
                // Files made by the server belong to `postgres`; root may
                // remove them, and a non-root run owns them.
                drop(dir);
            }
        }
    }
}

/// Pulls statement texts out of a server log written with
/// `log_line_prefix='%m …'` (each entry starts with a `YYYY-` timestamp; a
/// line that does not is a continuation of the previous entry).
pub fn parse_statements(log: &str) -> Vec<String> {
    parse_logged_statements(log)
        .into_iter()
        .map(|s| s.text)
        .collect()
}

/// One statement entry of the server log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedStatement {
    /// The role of the session that sent it (`%u` of the line prefix).
    pub user: String,
    /// The statement's text, continuation lines included.
    pub text: String,
}

/// [`parse_statements`] with the role each statement came from, read
/// from the `%u@%d` of the cluster's `log_line_prefix`.
pub fn parse_logged_statements(log: &str) -> Vec<LoggedStatement> {
    let mut statements = Vec::new();
    let mut current: Option<LoggedStatement> = None;
    for line in log.lines() {
        let starts_entry = line.len() > 5
            && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && line.as_bytes()[4] == b'-';
        if !starts_entry {
            if let Some(stmt) = current.as_mut() {
                stmt.text.push('\n');
                stmt.text.push_str(line);
            }
            continue;
        }
        statements.extend(current.take());
        let text = if let Some((_, rest)) = line.split_once("LOG:  statement: ") {
            Some(rest)
        } else if let Some((_, rest)) = line.split_once("LOG:  execute ") {
            rest.split_once(": ").map(|(_, text)| text)
        } else {
            None
        };
        if let Some(text) = text {
            // `… [pid] user@db LOG:  …`: the word before ` LOG:`.
            let user = line
                .split_once(" LOG:  ")
                .and_then(|(head, _)| head.rsplit(' ').next())
                .and_then(|who| who.split_once('@'))
                .map_or("", |(user, _)| user);
            current = Some(LoggedStatement {
                user: user.to_owned(),
                text: text.to_owned(),
            });
        }
    }
    statements.extend(current);
    statements
}

#[cfg(test)]
mod tests {
    use super::{LoggedStatement, parse_logged_statements, parse_statements};

    #[test]
    fn statements_are_parsed_with_continuations() {
        let log = "\
2025-01-01 00:00:00.000 UTC [1] app@orders LOG:  connection authorized: user=app
2025-01-01 00:00:00.001 UTC [1] app@orders LOG:  statement: select 1
2025-01-01 00:00:00.002 UTC [1] app@orders LOG:  statement: select
\t2
2025-01-01 00:00:00.003 UTC [1] app@orders LOG:  execute <unnamed>: select $1
2025-01-01 00:00:00.004 UTC [1] app@orders DETAIL:  parameters: $1 = '3'
2025-01-01 00:00:00.005 UTC [1] app@orders LOG:  execute s0: select 4
";
        assert_eq!(
            parse_statements(log),
            ["select 1", "select\n\t2", "select $1", "select 4"]
        );
        let users: Vec<_> = parse_logged_statements(log)
            .into_iter()
            .map(|s| s.user)
            .collect();
        assert_eq!(users, ["app", "app", "app", "app"]);
        let other = "2025-01-01 00:00:00.000 UTC [2] postgres@orders LOG:  statement: select 5";
        assert_eq!(
            parse_logged_statements(other),
            [LoggedStatement {
                user: "postgres".into(),
                text: "select 5".into()
            }]
        );
    }
}
