//! A real `gatehouse serve` process in front of a [`PgCluster`].
//!
//! [`Gateway::start`] makes a temp dir with signing keys (`gatehouse
//! keygen`), TLS certificates, a store dir and a config file, spawns the
//! binary built by `cargo build --workspace --bins` and waits until its port
//! accepts TCP. Dropping the gateway kills it (and prints its log's tail when
//! the thread is panicking).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use crate::certs::TestCerts;
use crate::command::{DEFAULT_TIMEOUT, describe, render, run, run_ok};
use crate::gateway_config::{self, ConfigPaths, GatewayOptions};
use crate::grant::{GrantArgs, decode_claims};
use crate::janitor;
use crate::logs::{self, LogFile};
use crate::ports::{free_port, port_accepts, wait_until};
use crate::postgres::{DATABASE, PgCluster};

/// How long the gateway may take to accept TCP after it is spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful [`Gateway::stop`] may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Written to the log before each spawn.
const START_MARKER: &str = "===== test harness: starting";

/// The role name a client passes when the token has no readable `sub`.
const FALLBACK_USER: &str = "agent";

/// The connection task of a tokio-postgres client.
pub type ConnectionTask = JoinHandle<Result<(), tokio_postgres::Error>>;

/// A running (or stopped) gateway process and its files.
pub struct Gateway {
    dir: Option<TempDir>,
    root: PathBuf,
    binary: PathBuf,
    port: u16,
    http_port: u16,
    options: GatewayOptions,
    certs: Option<TestCerts>,
    child: Option<Child>,
    log: LogFile,
}

impl Gateway {
    /// The `gatehouse` binary: `$GATEHOUSE_BIN`, else `gatehouse` in the
    /// target profile dir this test executable runs from
    /// (`target/debug/deps/…` → `target/debug/gatehouse`). Panics with what
    /// to do when it is not there.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("GATEHOUSE_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executables run from <target>/<profile>/deps/");
        let binary = profile_dir.join("gatehouse");
        assert!(
            binary.is_file(),
            "the gateway binary {} does not exist: run `cargo build --workspace --bins` first \
             (or set GATEHOUSE_BIN)",
            binary.display()
        );
        binary
    }

    /// Runs the `gatehouse` CLI with `args` (bounded wait), whatever its
    /// exit status.
    pub fn cli<I, S>(args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(Command::new(Self::binary()).args(args), DEFAULT_TIMEOUT)
    }

    /// Sets up keys, certificates, store and config for a gateway in front
    /// of `cluster`, spawns it and waits until its port accepts TCP. Panics
    /// with the gateway's log if it exits or does not listen in time.
    pub fn start(cluster: &PgCluster, options: GatewayOptions) -> Gateway {
        let binary = Self::binary();
        janitor::sweep_once();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-gw-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let root = dir.path().to_path_buf();
        janitor::claim(&root);
        let keys = root.join("keys");
        run_ok(
            Command::new(&binary).arg("keygen").arg("--out").arg(&keys),
            DEFAULT_TIMEOUT,
        );
        run_ok(
            Command::new(&binary)
                .arg("keygen")
                .args(["--name", "seal", "--out"])
                .arg(&keys),
            DEFAULT_TIMEOUT,
        );
        let certs = options.tls.then(|| TestCerts::generate(&root));
        let mut gateway = Gateway {
            dir: Some(dir),
            log: LogFile::new("gateway log", root.join("gatehouse.log")),
            root,
            binary,
            port: 0,
            http_port: 0,
            options,
            certs,
            child: None,
        };
        // Another process may take the port before the gateway binds it.
        for attempt in 1..=3 {
            gateway.port = free_port();
            if gateway.options.http.is_some() {
                gateway.http_port = free_port();
            }
            gateway.write_config(cluster.port());
            match gateway.spawn() {
                Ok(()) => return gateway,
                Err(_) if attempt < 3 && gateway.last_run_log().contains("in use") => continue,
                Err(why) => panic!(
                    "the gateway did not start: {why}\n{}",
                    gateway.log.excerpt()
                ),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// The listener's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP listener's port on 127.0.0.1 (with
    /// [`GatewayOptions::http`]; 0 without).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The gateway's temp dir.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The store directory (`[store] dir`). Open it only after
    /// [`stop`](Self::stop) or [`kill9`](Self::kill9): fjall allows one
    /// process per store. [`GatewayOptions::store_dir`] when set.
    pub fn store_dir(&self) -> PathBuf {
        match &self.options.store_dir {
            Some(dir) => dir.clone(),
            None => self.root.join("store"),
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("gatehouse.toml")
    }

    /// The grant signing key (`gatehouse keygen`).
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("keys").join("grant.key")
    }

    /// The grant verification key named in the config.
    pub fn public_key(&self) -> PathBuf {
        self.root.join("keys").join("grant.pub")
    }

    /// The key that seals sessions (`[store] seal_key`,
    /// `gatehouse keygen --name seal`).
    pub fn seal_key(&self) -> PathBuf {
        self.root.join("keys").join("seal.key")
    }

    /// The seal key's public half, for `gatehouse-audit verify --pubkey`.
    pub fn seal_public_key(&self) -> PathBuf {
        self.root.join("keys").join("seal.pub")
    }

    /// The TLS material, when the options asked for TLS.
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref()
    }

    /// The options the gateway was started with.
    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// The gateway's stdout and stderr file.
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// Everything the gateway has logged (over restarts).
    pub fn log(&self) -> String {
        self.log.read()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (started and not yet exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Mints a grant with `gatehouse grant --key <keys>/grant.key …` and
    /// returns the token. Panics with the CLI's output if it fails.
    pub fn grant(&self, args: &GrantArgs) -> String {
        match self.try_grant(args) {
            Ok(token) => token,
            Err(out) => panic!("gatehouse grant failed\n{}", render(&out)),
        }
    }

    /// Like [`grant`](Self::grant), returning the CLI's output on failure.
    pub fn try_grant(&self, args: &GrantArgs) -> Result<String, Output> {
        let out = run(
            Command::new(&self.binary)
                .arg("grant")
                .arg("--key")
                .arg(self.signing_key())
                .args(args.to_args()),
            DEFAULT_TIMEOUT,
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !token.is_empty() {
            Ok(token)
        } else {
            Err(out)
        }
    }

    /// A libpq conninfo string for the `orders` target with `token` as the
    /// password: `sslmode=require` (encrypted, unverified, as most agents
    /// run) with TLS, `sslmode=disable` without.
    pub fn conn_string(&self, token: &str) -> String {
        self.conn_string_to(DATABASE, token)
    }

    /// [`conn_string`](Self::conn_string) naming another database/target.
    /// The user is the token's `sub`.
    pub fn conn_string_to(&self, dbname: &str, token: &str) -> String {
        let sslmode = if self.certs.is_some() {
            "require"
        } else {
            "disable"
        };
        format!(
            "host=127.0.0.1 port={} dbname={dbname} user={} password={token} sslmode={sslmode}",
            self.port,
            user_of(token)
        )
    }

    /// A conninfo string that verifies the gateway's certificate against the
    /// test CA (`sslmode=verify-full sslrootcert=…`). Panics without TLS.
    pub fn conn_string_verify_full(&self, token: &str) -> String {
        let certs = self.certs.as_ref().expect("the gateway runs without TLS");
        format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={} password={token} \
             sslmode=verify-full sslrootcert={}",
            self.port,
            user_of(token),
            certs.ca_cert.display()
        )
    }

    /// A tokio-postgres config for the `orders` target with `token` as the
    /// password; `sslmode=require` with TLS.
    pub fn pg_config(&self, token: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .dbname(DATABASE)
            .user(user_of(token))
            .password(token)
            .connect_timeout(Duration::from_secs(10))
            .ssl_mode(if self.certs.is_some() {
                SslMode::Require
            } else {
                SslMode::Disable
            });
        config
    }

    /// Connects tokio-postgres through the gateway (TLS verified against the
    /// test CA when TLS is on) and spawns the connection task, returned so
    /// that a test can see how the connection ended.
    pub async fn try_connect(
        &self,
        token: &str,
    ) -> Result<(Client, ConnectionTask), tokio_postgres::Error> {
        self.try_connect_with(&self.pg_config(token)).await
    }

    /// [`try_connect`](Self::try_connect) with a config the test adjusted.
    pub async fn try_connect_with(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, ConnectionTask), tokio_postgres::Error> {
        match &self.certs {
            Some(certs) => {
                let (client, connection) = config.connect(certs.make_tls_connect()).await?;
                Ok((client, tokio::spawn(connection)))
            }
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                Ok((client, tokio::spawn(connection)))
            }
        }
    }

    /// [`try_connect`](Self::try_connect), panicking with the gateway's log
    /// on failure.
    pub async fn connect(&self, token: &str) -> (Client, ConnectionTask) {
        match self.try_connect(token).await {
            Ok(pair) => pair,
            Err(e) => panic!(
                "cannot connect through the gateway: {e}\n{}",
                self.log.excerpt()
            ),
        }
    }

    /// SIGKILL: the gateway dies without any cleanup, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.wait_for_port_release();
        }
    }

    /// Waits until nothing accepts on the gateway's port any more. On the
    /// io_uring engine the kernel tears a dead process's ring down after
    /// the process is gone, and until then its listeners (held by their
    /// pending accepts) still take connections, which a restarted gateway
    /// would never see.
    fn wait_for_port_release(&self) {
        wait_until(STOP_TIMEOUT, || !port_accepts(self.port));
    }

    /// Graceful shutdown: SIGTERM, then waits for the exit. Panics (after
    /// SIGKILL) with the log if the gateway takes longer than
    /// [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("Gateway::stop: not running");
        };
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        let _ = run(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
            DEFAULT_TIMEOUT,
        );
        let mut status = None;
        wait_until(STOP_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(status) => {
                self.wait_for_port_release();
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the gateway did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log.excerpt()
                );
            }
        }
    }

    /// Starts the gateway again with the same config, port and store (after
    /// [`stop`](Self::stop) or [`kill9`](Self::kill9); kills a running one
    /// first).
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(why) = self.spawn() {
            panic!("the gateway did not restart: {why}\n{}", self.log.excerpt());
        }
    }

    fn write_config(&self, upstream_port: u16) {
        let certs = self.certs.clone();
        let cert = certs.as_ref().map(|c| c.server_cert.clone());
        let key = certs.as_ref().map(|c| c.server_key.clone());
        let none = PathBuf::new();
        let store = self.store_dir();
        let public_key = self.public_key();
        let seal_key = self.seal_key();
        let text = gateway_config::render(
            &self.options,
            self.port,
            self.http_port,
            upstream_port,
            &ConfigPaths {
                cert: cert.as_ref().unwrap_or(&none),
                key: key.as_ref().unwrap_or(&none),
                store: &store,
                public_key: &public_key,
                seal_key: &seal_key,
            },
        );
        std::fs::write(self.config_path(), text)
            .unwrap_or_else(|e| panic!("cannot write the gateway config: {e}"));
    }

    /// What the gateway logged since it was last spawned.
    pub fn last_run_log(&self) -> String {
        let log = self.log.read();
        match log.rfind(START_MARKER) {
            Some(i) => log[i..].to_owned(),
            None => log,
        }
    }

    /// Spawns `gatehouse serve` and waits for its port; `Err` says why not.
    fn spawn(&mut self) -> Result<(), String> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the gateway log: {e}"));
        let _ = writeln!(
            log,
            "{START_MARKER} gatehouse serve on 127.0.0.1:{} =====",
            self.port
        );
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("GATEHOUSE_LOG", "info")
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(clone(&log))
            .stderr(log);
        for target in self.options.targets() {
            cmd.env(target.password_env(), target.password_value());
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(&cmd)));
        let _ = std::fs::write(
            self.root.join(janitor::GATEWAY_PID_FILE),
            child.id().to_string(),
        );
        let child = self.child.insert(child);
        let mut exited = None;
        let ready = wait_until(READY_TIMEOUT, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some() || port_accepts(self.port)
        });
        let why = match (exited, ready) {
            (None, true) => return Ok(()),
            (Some(status), _) => format!("it exited ({status})"),
            (None, false) => format!(
                "its port {} did not accept within {READY_TIMEOUT:?}",
                self.port
            ),
        };
        self.kill9();
        Err(format!("{why}: {}", describe(&cmd)))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.log.dump_if_panicking();
        self.kill9();
        if let Some(dir) = self.dir.take()
            && logs::keep_dirs()
        {
            janitor::release(dir.path());
            eprintln!("keeping gateway dir {}", dir.keep().display());
        }
    }
}

fn clone(file: &File) -> File {
    file.try_clone()
        .unwrap_or_else(|e| panic!("cannot clone the log file handle: {e}"))
}

/// The role name a client passes with `token`: its `sub`.
fn user_of(token: &str) -> String {
    decode_claims(token)
        .and_then(|claims| claims.get("sub")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| FALLBACK_USER.to_owned())
}
