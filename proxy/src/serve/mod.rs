//! `gatehouse serve`: workers, their listeners, and the connections they
//! serve, on either IO engine.
//!
//! One worker thread per core, each with a current-thread tokio runtime and
//! its own `SO_REUSEPORT` listener, so connections spread over cores with
//! no shared accept queue. On the io_uring engine ([`crate::uring`]) each
//! worker is also pinned to its core and has its own ring, which carries
//! the worker's sockets ([`Socket::Uring`]); on the tokio engine tokio's
//! reactor does. Everything above the socket is the same code. What workers share is only what must be shared:
//! the store writer, the cancel-key map, the grant ledger and verified-grant
//! cache, the per-grant session counts and statement rates (`[limits]`), the approval registry (which the admin API, on a thread of its
//! own, also serves), the revocations and the metrics. The upstream pool
//! is per worker: a socket stays with the runtime that registered it.
//!
//! The path of a connection: `listener` → `connection` (handshake, TLS,
//! `authorize`, upstream connect) → relay, with every frame recorded.

mod authorize;
mod cancel;
mod connection;
mod ledger;
mod limits;
mod listener;
mod pool;
mod queue;
mod setup;
mod socket;
mod stream;
mod targets;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_core::pg::{Authorized, Rejection, SessionConfig};
use gatehouse_store::Store;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::checkpoints::{Checkpointer, SessionRegistry};
use crate::revocations::Revocations;

use crate::approvals::ApprovalRegistry;
use crate::config::{AdminSettings, IoEngine};
use crate::metrics::{Metrics, RecordingWriter};
use authorize::Authorizer;
use ledger::GrantLedger;
use targets::{Target, TargetAddr};

use cancel::CancelMap;
pub use connection::now_us;
pub use limits::SessionSlot;
pub use socket::{Socket, peer_gone};
pub use stream::Io;
pub use tls::acceptor_with_alpn as tls_acceptor_with_alpn;

/// What every connection of the gateway shares.
pub struct Shared {
    /// Session settings; `backend_key` is filled per connection.
    pub session: SessionConfig,
    /// The TLS acceptor, when the listener has a certificate.
    pub tls: Option<TlsAcceptor>,
    /// Appends events to the store, counting them in [`metrics`](Self::metrics)
    /// on the way (it derefs to the store's `Writer`).
    pub writer: RecordingWriter,
    /// The grant check.
    pub authorizer: Authorizer,
    /// Gateway cancel keys of live sessions.
    cancels: CancelMap,
    /// Statements held for approval, shared with the admin API.
    pub approvals: Arc<ApprovalRegistry>,
    /// Flips to `true` when the gateway shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// The counters the admin API's `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// Revoked grants.
    pub revocations: Arc<Revocations>,
    /// Client connections served at once; past it clients are refused.
    pub max_connections: usize,
    /// How long a client has to finish startup (TLS, StartupMessage, grant
    /// check).
    pub startup_timeout: Duration,
    /// How long a logged-in client may take to finish a message.
    pub message_timeout: Duration,
}

impl Shared {
    fn authorize(
        &self,
        token: &str,
        target: &str,
        now_s: i64,
    ) -> Result<(Authorized, TargetAddr, SessionSlot), Rejection> {
        self.authorizer.authorize(token, target, now_s)
    }
}

/// A gateway ready to serve, built from a validated config.
pub struct Server {
    /// Where to listen.
    pub address: SocketAddr,
    /// Worker threads (at least one).
    pub workers: usize,
    /// The store the gateway owns.
    pub store: Store,
    /// Session settings.
    pub session: SessionConfig,
    /// The TLS acceptor, if the listener has a certificate.
    pub tls: Option<TlsAcceptor>,
    /// The grant check.
    pub authorizer: Authorizer,
    /// Statements held for approval.
    pub approvals: Arc<ApprovalRegistry>,
    /// The admin API, if `[admin]` is configured.
    pub admin: Option<AdminSettings>,
    /// Revoked grants, loaded from the store.
    pub revocations: Arc<Revocations>,
    /// The config file, re-read on SIGHUP.
    pub config_path: std::path::PathBuf,
    /// Client connections served at once.
    pub max_connections: usize,
    /// How long a client has to finish startup.
    pub startup_timeout: Duration,
    /// How long a logged-in client may take to finish a message.
    pub message_timeout: Duration,
    /// The IO engine asked for.
    pub io: IoEngine,
    /// With a seal key: the checkpointer and its interval.
    pub checkpoints: Option<(Checkpointer, Duration)>,
    /// With a seal key: the sessions the next checkpoint covers, noted as
    /// their events are handed to the store.
    pub sessions: Option<Arc<SessionRegistry>>,
    /// `[http]`: the HTTP listener's address and settings.
    pub http: Option<(SocketAddr, Arc<crate::http::HttpShared>)>,
}

/// Serves `config` until SIGINT or SIGTERM.
pub fn run(config: crate::config::Config) -> Result<()> {
    setup::server(config)?.run()
}

impl Server {
    /// Serves until SIGINT or SIGTERM, then closes sessions and the store.
    pub fn run(self) -> Result<()> {
        let engine = resolve(self.io)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let seal_key = self.session.seal_key.clone();
        let shared = Arc::new(Shared {
            session: self.session,
            tls: self.tls,
            writer: RecordingWriter::new(self.store.writer(), metrics.clone())
                .with_sessions(self.sessions.clone()),
            authorizer: self.authorizer,
            cancels: CancelMap::default(),
            approvals: self.approvals.clone(),
            shutdown: stop_rx.clone(),
            metrics: metrics.clone(),
            revocations: self.revocations.clone(),
            max_connections: self.max_connections,
            startup_timeout: self.startup_timeout,
            message_timeout: self.message_timeout,
        });
        let admin = match self.admin {
            Some(settings) => {
                let observed = crate::admin::Observed {
                    store: Some(self.store.clone()),
                    metrics,
                    shutdown: stop_rx.clone(),
                    revocations: Some(self.revocations.clone()),
                    seal_key,
                };
                Some(crate::admin::spawn(
                    settings,
                    self.approvals,
                    observed,
                    stop_rx,
                )?)
            }
            None => {
                tracing::info!(
                    "no [admin] section: statements that need approval can only time out, and \
                     there is no /readyz or /metrics"
                );
                None
            }
        };
        let checkpoints = match self.checkpoints {
            Some((checkpointer, interval)) => Some(
                crate::checkpoints::spawn(self.store.clone(), checkpointer, interval)
                    .context("spawning the checkpoint thread")?,
            ),
            None => None,
        };
        let mut handles = Vec::new();
        for n in 0..self.workers.max(1) {
            let std_listener = listener::bind(self.address)?;
            let http = match &self.http {
                Some((address, http)) => Some((listener::bind(*address)?, http.clone())),
                None => None,
            };
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("gatehouse-worker-{n}"))
                .spawn(move || worker(std_listener, http, shared, engine, n))
                .context("spawning a worker thread")?;
            handles.push(handle);
        }
        if let Some((address, _)) = &self.http {
            tracing::info!(%address, "serving HTTP and Kubernetes targets");
        }
        tracing::info!(
            address = %self.address,
            workers = handles.len(),
            io = %engine,
            "gatehouse is serving"
        );
        wait_for_signal(
            || match setup::reload(&self.config_path, &shared.authorizer) {
                Ok(()) => tracing::info!(
                    config = %self.config_path.display(),
                    "SIGHUP: config reloaded (grant keys, policies, targets, masking rules, limits)"
                ),
                Err(e) => tracing::error!(
                    config = %self.config_path.display(),
                    "SIGHUP: the config was not reloaded, the gateway keeps the one it had: {e:#}"
                ),
            },
        )?;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        for h in handles {
            let _ = h.join();
        }
        if let Some(admin) = admin {
            let _ = admin.join();
        }
        drop(shared);
        // The last checkpoint covers the sessions just drained: taken after
        // the store is flushed and shut down, through handles that hold
        // its database open until then.
        let checkpointer = checkpoints.and_then(|t| {
            let stopped = t.stop();
            if stopped.is_none() {
                tracing::error!("the checkpoint thread panicked: no last checkpoint");
            }
            stopped
        });
        let last = match checkpointer {
            Some(checkpointer) => {
                let handles = self
                    .store
                    .reader()
                    .and_then(|r| Ok((r, self.store.checkpoint_writer()?)));
                match handles {
                    Ok(handles) => Some((checkpointer, handles)),
                    Err(e) => {
                        tracing::error!("no last checkpoint: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        self.store.shutdown().context("closing the store")?;
        if let Some((mut checkpointer, (reader, writer))) = last {
            match checkpointer.checkpoint(&reader, &writer, crate::checkpoints::now_us()) {
                Ok(Some(n)) => tracing::info!(checkpoint = n, "last checkpoint written"),
                Ok(None) => tracing::info!("nothing new since the last checkpoint"),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("writing the last checkpoint"));
                }
            }
        }
        tracing::info!("store closed; bye");
        Ok(())
    }
}

/// How long open sessions get to end after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// The engine to run: `auto` is io_uring where the kernel allows it.
fn resolve(asked: IoEngine) -> Result<IoEngine> {
    match (asked, crate::uring::unavailable()) {
        (IoEngine::Tokio, _) => Ok(IoEngine::Tokio),
        (IoEngine::Uring | IoEngine::Auto, None) => Ok(IoEngine::Uring),
        (IoEngine::Uring, Some(why)) => {
            anyhow::bail!("io = \"uring\" was asked for, but {why}; use \"auto\" or \"tokio\"")
        }
        (IoEngine::Auto, Some(why)) => {
            tracing::warn!("io_uring is not available ({why}): using the tokio engine");
            Ok(IoEngine::Tokio)
        }
    }
}

/// A worker's listening socket on its engine.
enum Listener {
    Tokio(tokio::net::TcpListener),
    Uring(crate::uring::Acceptor),
}

impl Listener {
    async fn accept(&mut self) -> std::io::Result<(Socket, SocketAddr)> {
        match self {
            Listener::Tokio(l) => l.accept().await.map(|(s, a)| (Socket::Tokio(s), a)),
            Listener::Uring(l) => l.accept().await.map(|(s, a)| (Socket::Uring(s), a)),
        }
    }
}

/// The HTTP listener of a worker, and what its connections share.
type HttpListening = (std::net::TcpListener, Arc<crate::http::HttpShared>);

fn worker(
    std_listener: std::net::TcpListener,
    http: Option<HttpListening>,
    shared: Arc<Shared>,
    engine: IoEngine,
    n: usize,
) {
    if engine == IoEngine::Uring {
        crate::uring::pin_to_cpu(n);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker runtime failed to start: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match engine {
            IoEngine::Uring => crate::uring::install(crate::uring::RingConfig::default())
                .map(|pump| {
                    tokio::spawn(pump.run());
                })
                .and_then(|()| crate::uring::Acceptor::new(std_listener))
                .map(Listener::Uring),
            _ => tokio::net::TcpListener::from_std(std_listener).map(Listener::Tokio),
        };
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("worker listener failed: {e}");
                return;
            }
        };
        let http = match http {
            Some((l, settings)) => {
                let l = match engine {
                    IoEngine::Uring => crate::uring::Acceptor::new(l).map(Listener::Uring),
                    _ => tokio::net::TcpListener::from_std(l).map(Listener::Tokio),
                };
                match l {
                    Ok(l) => Some((l, settings)),
                    Err(e) => {
                        tracing::error!("worker HTTP listener failed: {e}");
                        return;
                    }
                }
            }
            None => None,
        };
        let (mut http_listener, http_settings) = http.unzip();
        let mut stop = shared.shutdown.clone();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        tasks.spawn(connection::serve(shared.clone(), socket, peer));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                accepted = accept_opt(&mut http_listener) => match (accepted, &http_settings) {
                    (Ok((socket, peer)), Some(settings)) => {
                        tasks.spawn(crate::http::serve(shared.clone(), settings.clone(), socket, peer));
                    }
                    (Ok(_), None) => {}
                    (Err(e), _) => {
                        tracing::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        drop(http_listener);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            tracing::warn!("sessions still open after {DRAIN:?}; cutting them");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    });
}

/// Accepts on `listener`, or waits forever without one.
async fn accept_opt(listener: &mut Option<Listener>) -> std::io::Result<(Socket, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Waits for SIGTERM or SIGINT; each SIGHUP calls `reload`.
fn wait_for_signal(reload: impl Fn()) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(),
            }
        }
        Ok(())
    })
}
