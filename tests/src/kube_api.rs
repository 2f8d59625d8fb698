//! A small Kubernetes API server for the tests: real HTTP/1.1 (hyper), the
//! paths kubectl 1.32 calls, real JSON shapes.
//!
//! [`FakeKube::start`] serves, on its own thread and tokio runtime, on a
//! free loopback port (plain HTTP, or TLS with a throwaway CA):
//!
//! - discovery: `/version`, `/api` (`APIVersions`), `/apis`
//!   (`APIGroupList` with `apps/v1`), `/api/v1` and `/apis/apps/v1`
//!   (`APIResourceList`: namespaces, pods, pods/exec, pods/log, secrets;
//!   deployments); `/api` and `/apis` answer aggregated discovery
//!   (`APIGroupDiscoveryList` v2) when `Accept` asks for it, unless
//!   [`FakeKubeOptions::aggregated_discovery`] is off.
//! - pods in [`NAMESPACE`] ([`PODS`]): list (`fieldSelector=metadata.name=`
//!   honoured), get, create (POST; no OpenAPI documents are served, so
//!   `kubectl create` needs `--validate=false`), delete, and watch
//!   (`?watch=true`: chunked JSON lines, open until the client leaves,
//!   `timeoutSeconds` passes or [`FakeKube::end_watches`]; from a
//!   `resourceVersion` the events after it are replayed first, without one
//!   every pod comes as `ADDED`). When `Accept` asks `as=Table` (plain
//!   `kubectl get` does) lists, objects and watch events come as
//!   `meta.k8s.io/v1` `Table`s (pods: NAME READY STATUS RESTARTS AGE,
//!   `-o wide` adds IP and NODE); otherwise (`-o json`) as the objects and
//!   `…List`s themselves.
//! - `pods/<pod>/log` ([`LOG_LINES`]; with `follow=true` a `tick N` line
//!   every [`FakeKubeOptions::log_interval`] until the client leaves).
//! - `pods/<pod>/exec` and `pods/<pod>/attach` over WebSocket
//!   (`v5.channel.k8s.io`, also v4); `exec.rs` lists the commands it knows.
//! - secrets: [`SECRET`] (data [`SECRET_DATA`], an e-mail annotation).
//! - namespaces ([`NAMESPACES`]), `apps/v1` deployments (always empty).
//!
//! Every request is recorded ([`FakeKube::requests`]) before the optional
//! bearer-token check ([`FakeKubeOptions::token`]: anything else gets 401
//! and a `Status`). kubectl itself sends a token over `https` only: a test
//! where kubectl talks to this server directly with a token needs
//! [`FakeKubeOptions::tls`] (a gateway in between may use either). Pod
//! changes made through [`FakeKube::add_pod`], [`FakeKube::update_pod`],
//! [`FakeKube::remove_pod`] (and a `DELETE`) reach open watches at once.
//! Dropping the server stops it and its streams. [`Kubectl`] runs the real
//! kubectl against it or against a gateway.

mod discovery;
mod exec;
pub mod kubectl;
mod objects;
mod server;
mod state;
mod stream;
mod table;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub use kubectl::{Kubectl, Lines};
pub use objects::{
    CREATED, LOG_LINES, NAMESPACE, NAMESPACES, PODS, SECRET, SECRET_DATA, SECRET_OWNER_EMAIL,
};
pub use state::{EventType, WatchEvent};

use crate::certs::TestCerts;
use crate::ports::wait_until;
use state::{Broadcast, Shared};

/// How a [`FakeKube`] behaves.
#[derive(Clone, Debug)]
pub struct FakeKubeOptions {
    /// When set, every request must carry `Authorization: Bearer <token>`;
    /// others get 401 with an `Unauthorized` `Status`.
    pub token: Option<String>,
    /// Serve HTTPS (certificate for `localhost` and `127.0.0.1` from a
    /// fresh CA, see [`FakeKube::ca_cert`]) instead of plain HTTP.
    pub tls: bool,
    /// When set, pod `billing/web-1` is modified (annotation
    /// `gatehouse.test/tick`) this often while a watch is open.
    pub watch_tick: Option<Duration>,
    /// How often `logs -f` gets a `tick N` line after [`LOG_LINES`].
    pub log_interval: Duration,
    /// Answer aggregated discovery (`apidiscovery.k8s.io/v2`) on `/api`
    /// and `/apis` when asked, as API servers since 1.30 do (the
    /// default); `false` serves only the legacy documents, kubectl then
    /// also reads `/api/v1` and `/apis/apps/v1`.
    pub aggregated_discovery: bool,
}

impl Default for FakeKubeOptions {
    fn default() -> Self {
        FakeKubeOptions {
            token: None,
            tls: false,
            watch_tick: None,
            log_interval: Duration::from_millis(200),
            aggregated_discovery: true,
        }
    }
}

/// One request as it reached the server.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Every header in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (empty for upgrades and bodiless requests).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

/// One WebSocket message of an exec session, either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecFrame {
    /// `true` when the client sent it, `false` when the server did.
    pub from_client: bool,
    /// The channel byte (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize,
    /// 255 close).
    pub channel: u8,
    /// The payload after the channel byte.
    pub data: Vec<u8>,
}

/// A running fake API server; stopped on drop.
pub struct FakeKube {
    shared: Arc<Shared>,
    port: u16,
    certs: Option<(TempDir, TestCerts)>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKube {
    /// Plain HTTP, no token required, default options.
    pub fn start() -> FakeKube {
        FakeKube::start_with(FakeKubeOptions::default())
    }

    /// Starts serving with `options`; returns once the port accepts.
    pub fn start_with(options: FakeKubeOptions) -> FakeKube {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("FakeKube: cannot bind 127.0.0.1:0: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("FakeKube: set_nonblocking: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        let certs = options.tls.then(|| {
            let dir = tempfile::Builder::new()
                .prefix("gatehouse-kube-")
                .tempdir()
                .unwrap_or_else(|e| panic!("FakeKube: temp dir: {e}"));
            let certs = TestCerts::generate(dir.path());
            (dir, certs)
        });
        let tls = certs.as_ref().map(|(_, c)| server::tls_config(c));
        let shared = Arc::new(Shared::new(options, format!("127.0.0.1:{port}")));
        let (shutdown, stop) = oneshot::channel();
        let served = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-kube-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("FakeKube runtime");
                rt.block_on(server::serve(listener, served, tls, stop));
            })
            .expect("spawn FakeKube thread");
        FakeKube {
            shared,
            port,
            certs,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate file (PEM) that signed the server's certificate,
    /// when serving TLS.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.certs.as_ref().map(|(_, c)| c.ca_cert.as_path())
    }

    /// The CA certificate as PEM text, when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_cert().map(crate::logs::read)
    }

    /// The throwaway certificates, when serving TLS.
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref().map(|(_, c)| c)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Waits up to `timeout` for a recorded request that `matches`.
    pub fn wait_for_request(
        &self,
        timeout: Duration,
        matches: impl Fn(&RecordedRequest) -> bool,
    ) -> Option<RecordedRequest> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .shared
                .lock()
                .requests
                .iter()
                .find(|r| matches(r))
                .cloned();
            found.is_some()
        });
        found
    }

    /// Every exec WebSocket message so far, both ways, in order.
    pub fn exec_frames(&self) -> Vec<ExecFrame> {
        self.shared.lock().exec_frames.clone()
    }

    /// The stored pod, if it exists.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_owned(), name.to_owned());
        self.shared.lock().pods.get(&key).cloned()
    }

    /// Creates a running pod `namespace/name` (watches get `ADDED`);
    /// `None` when it exists already.
    pub fn add_pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .change_pod(EventType::Added, namespace, name, None, |_| {})
    }

    /// Edits pod `namespace/name` (watches get `MODIFIED` with the new
    /// resource version); `None` when it does not exist.
    pub fn update_pod(
        &self,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        self.shared
            .change_pod(EventType::Modified, namespace, name, None, edit)
    }

    /// Deletes pod `namespace/name` (watches get `DELETED`); `None` when it
    /// does not exist.
    pub fn remove_pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .change_pod(EventType::Deleted, namespace, name, None, |_| {})
    }

    /// How many watch streams are open right now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` until at least `n` watch streams are open.
    pub fn wait_for_watches(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.open_watches() >= n)
    }

    /// Waits up to `timeout` until fewer than `n` watch streams are open.
    pub fn wait_for_watches_below(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.open_watches() < n)
    }

    /// Ends every open watch stream (the chunked body finishes cleanly).
    pub fn end_watches(&self) {
        let _ = self.shared.events.send(Broadcast::EndWatches);
    }

    /// Writes a kubeconfig at `path` for this server with `token` (and the
    /// CA when serving TLS); see [`write_kubeconfig`].
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> PathBuf {
        write_kubeconfig(path, &self.url(), token, self.ca_cert())
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes a kubeconfig (context `test`, namespace [`NAMESPACE`]) for
/// `server` with bearer `token`, trusting `ca` when given; returns `path`.
/// Use it with `kubectl --kubeconfig <path>` (or `KUBECONFIG`), so that
/// nothing of the user's own configuration is read.
pub fn write_kubeconfig(path: &Path, server: &str, token: &str, ca: Option<&Path>) -> PathBuf {
    let ca_line = match ca {
        Some(ca) => format!("    certificate-authority: {}\n", ca.display()),
        None => String::new(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n{ca_line}\
         users:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    \
         cluster: test\n    user: test\n    namespace: {NAMESPACE}\ncurrent-context: test\n"
    );
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path.to_path_buf()
}
