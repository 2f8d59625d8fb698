//! Running the real `kubectl` (`/usr/bin/kubectl`, 1.32) against any API
//! server — a [`FakeKube`](super::FakeKube) directly, or a gateway in
//! front of one — and reading a streaming command's output line by line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::command::{render, run};

/// How long one kubectl command may take.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);

/// kubectl with its own kubeconfig (one server, one bearer token) and its
/// own discovery cache dir, so nothing of the user's setup is read and no
/// stale discovery is reused.
pub struct Kubectl {
    dir: TempDir,
    config: PathBuf,
}

impl Kubectl {
    /// kubectl for `server` (`https://…` or `http://…`) with bearer `token`,
    /// trusting `ca` (PEM file) when given. kubectl sends the token over
    /// `https` only.
    pub fn new(server: &str, token: &str, ca: Option<&Path>) -> Kubectl {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("kubectl temp dir: {e}"));
        let config = super::write_kubeconfig(&dir.path().join("kubeconfig"), server, token, ca);
        Kubectl { dir, config }
    }

    /// kubectl straight at `kube` (its URL and CA) with `token`.
    pub fn for_fake(kube: &super::FakeKube, token: &str) -> Kubectl {
        Kubectl::new(&kube.url(), token, kube.ca_cert())
    }

    /// A temp dir for the test's own files (manifests); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.config
    }

    /// `kubectl --kubeconfig … --cache-dir … --request-timeout 20s ARGS`,
    /// not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.config)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(["--request-timeout", "20s"])
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl to completion (killed after [`KUBECTL_TIMEOUT`]);
    /// success or not is the caller's to judge.
    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args), KUBECTL_TIMEOUT)
    }

    /// Runs kubectl and returns its stdout; panics with its output unless
    /// it exits 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl {args:?}\n{}", render(&out));
        String::from_utf8(out.stdout).expect("kubectl printed UTF-8")
    }

    /// [`ok`](Self::ok) with `-o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("kubectl printed JSON")
    }

    /// Starts a long-running kubectl (`get -w`, `logs -f`) whose stdout
    /// lines arrive as they are printed.
    pub fn spawn_lines(&self, args: &[&str]) -> Lines {
        Lines::spawn(self.command(args))
    }
}

/// A child process whose stdout lines arrive on a channel as they are
/// printed (stderr is inherited); killed on drop.
pub struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Lines {
    /// Spawns `cmd` with stdin closed and stdout piped.
    pub fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", crate::command::describe(&cmd)));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { child, lines }
    }

    /// The next line that contains `needle`, skipping others; panics with
    /// what was seen when none comes within `timeout`.
    pub fn expect(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no line with {needle:?} within {timeout:?} ({e}); got {seen:?}"),
            }
        }
    }

    /// The next line, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The process, e.g. to check whether it exited.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
