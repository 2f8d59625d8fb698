//! The admin API: a small HTTP/1.1 server (hyper) on its own listener and
//! thread, loopback by default (`[admin] listen`). Approvers list and
//! decide held statements here; `gatehouse approvals` is its client.
//!
//! Every request but `GET /healthz` and `GET /readyz` (which load
//! balancers probe) needs `Authorization: Bearer TOKEN` with a token from
//! `[[admin.tokens]]`; the token's name is the approver recorded with a
//! decision. Answers are JSON (errors are `{"error": "…"}`) unless the
//! table says otherwise:
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` (no token needed): the process is alive |
//! | `GET /readyz` | 200 `ready` (no token needed) when the gateway accepts sessions and its store writes; otherwise 503 `{"ready": false, "reason": "…", "store": "…"}` (the store failed a write or fsync and refuses everything until it recovers in place, or the gateway is shutting down) |
//! | `GET /metrics` | 200, Prometheus text format 0.0.4 ([`crate::metrics::render`] lists the series) |
//! | `GET /approvals` | 200, the pending requests, oldest first |
//! | `POST /approvals/{id}/approve` `{"reason": "…"}` (optional) | 200 `{"approval", "decision"}`; 404 unknown; 409 already decided or withdrawn |
//! | `POST /approvals/{id}/deny` `{"reason": "…"}` (required) | the same; 400 without a reason |
//! | `GET /approvals/watch` | 200, JSON lines (`application/x-ndjson`), one per [`ApprovalEvent`](crate::approvals::ApprovalEvent), until the client goes; an empty line every 15 s keeps the connection checked |
//! | `GET /store/archive?since=TIME&until=TIME` | 200, `application/octet-stream`: a sealed archive ([`gatehouse_core::event::archive`]) of the sessions that started or had events in `[since, until)`, streamed from the gateway's own store (no second process opens it), signed with the seal key if the gateway has one; TIME is RFC 3339 or a time ago (`7d`); no `since` is the beginning, no `until` is now and later. 400 for a bad time, 503 when the store cannot be read |
//!
//! It is plain HTTP: behind loopback, or a TLS-terminating proxy. Without
//! an `[admin]` section there is no admin API at all, so no `/readyz` and
//! no `/metrics` either. The one read of the store is `/store/archive`,
//! read-only: what replay and audit read of a live gateway
//! (`gatehouse-replay … --gateway URL`, `gatehouse store export --gateway
//! URL`); each request is logged with the token's name and the range.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::approvals::ApprovalRegistry;
use crate::config::{AdminSettings, AdminToken};
use crate::metrics::Metrics;

mod archive;
pub mod client;
mod routes;

pub(crate) use archive::parse_time;

#[cfg(test)]
pub(crate) use routes::percent_decode;
#[cfg(test)]
mod tests;

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/readyz` and `/metrics` look at.
#[derive(Clone)]
pub struct Observed {
    /// The gateway's store (its health and counters); `None` in tests of
    /// the API alone.
    pub store: Option<gatehouse_store::Store>,
    /// The gateway's counters.
    pub metrics: Arc<Metrics>,
    /// `true` once the gateway is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Revoked grants (`POST /grants/{jti}/revoke`); `None` in tests of the
    /// API alone.
    pub revocations: Option<Arc<crate::revocations::Revocations>>,
    /// The key that seals sessions also signs store archives
    /// (`/store/archive`); `None`: archives go out unsigned.
    pub seal_key: Option<Arc<gatehouse_core::event::SealKey>>,
}

/// Binds `settings.listen` and serves the admin API on a thread of its own
/// until `shutdown` turns true (or its sender is dropped).
pub fn spawn(
    settings: AdminSettings,
    registry: Arc<ApprovalRegistry>,
    observed: Observed,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(settings.listen)
        .with_context(|| format!("admin API: cannot listen on {}", settings.listen))?;
    tracing::info!(address = %settings.listen, "admin API listening");
    spawn_on(listener, settings.tokens, registry, observed, shutdown)
}

/// [`spawn`] on a listener already bound (tests bind port 0).
pub fn spawn_on(
    listener: std::net::TcpListener,
    tokens: Vec<AdminToken>,
    registry: Arc<ApprovalRegistry>,
    observed: Observed,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    listener
        .set_nonblocking(true)
        .context("admin API listener")?;
    let state = Arc::new(routes::State::new(registry, &tokens, observed));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("admin API runtime")?;
    std::thread::Builder::new()
        .name("gatehouse-admin".to_owned())
        .spawn(move || rt.block_on(serve(listener, state, shutdown)))
        .context("spawning the admin API thread")
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<routes::State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin API listener failed: {e}");
            return;
        }
    };
    let mut connections = tokio::task::JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::warn!(%peer, "admin API: too many connections; closing this one");
                        continue;
                    }
                    connections.spawn(connection(state.clone(), tcp));
                }
                Err(e) => {
                    tracing::warn!("admin API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    // Requests are short; `watch` streams never end by themselves.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    tracing::debug!("admin API stopped");
}

async fn connection(state: Arc<routes::State>, tcp: tokio::net::TcpStream) {
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&state, request).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tcp), service)
        .await;
    if let Err(e) = result {
        tracing::debug!("admin API connection: {e}");
    }
}
