//! The HTTP listener: HTTP APIs and Kubernetes through the gateway, with
//! the same grants, verdicts, masking and recording as PostgreSQL.
//!
//! An agent's ordinary client (`curl`, `kubectl`) sends its grant as a
//! bearer token. A request goes to a target by its host name (Host, or
//! TLS SNI) or by path prefix (`/orders-api/v1/invoices` → target
//! `orders-api`, upstream path `/v1/invoices`). The path of a request:
//!
//! `listen` (TLS, ALPN `http/1.1`) → `exchange` (route, grant, verdict,
//! approval, request body recorded and durable) → `upstream` (the target's
//! credential in the grant's place) → `body` (the response masked and
//! recorded as it streams) or `upgrade` (WebSocket, recorded per message
//! and Kubernetes stream channel).
//!
//! HTTP/1.1 framing is hyper's: keep-alive, pipelining (answered in
//! order), chunked and length-delimited bodies, `Expect: 100-continue`
//! (answered when the gateway reads the body, after the verdict; a request
//! refused before its body is read gets `Connection: close`), upgrades,
//! and 400/431 for malformed or oversized heads, which never reach a
//! target. The gateway answers `CONNECT`, `TRACE` and `OPTIONS *` itself
//! (4xx), and a body in a transfer coding other than chunked (501). Under
//! masking, `Range` is not passed on, and HEAD, 204 and 304 answers pass
//! unmasked with their Content-Length.
//!
//! A session is one grant's use on one client connection: it opens at the
//! connection's first request and closes with the connection (or when a
//! request on it carries another grant or names another target).

mod body;
mod exchange;
mod headers;
mod mask;
mod respond;
mod route;
mod session;
mod upgrade;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::TlsAcceptor;

use crate::config::HttpListener;
use crate::serve::{Io, Shared, Socket};

pub use upstream::HttpUpstream;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the gateway sends, either way.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// What every HTTP connection shares besides [`Shared`].
pub struct HttpShared {
    /// The listener's settings.
    pub settings: HttpListener,
    /// TLS with ALPN `http/1.1`, when `[tls]` is configured.
    pub tls: Option<TlsAcceptor>,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    crate::serve::now_us()
}

/// Serves one client connection until it closes.
pub async fn serve(shared: Arc<Shared>, http: Arc<HttpShared>, socket: Socket, peer: SocketAddr) {
    let _guard = shared.metrics.connection();
    let _ = socket.set_nodelay(true);
    // Notices a client that leaves while its request waits for approval.
    let watcher = socket.watcher().ok();
    let open = shared.metrics.open_connections();
    let at_capacity = open > shared.max_connections as u64;
    if at_capacity {
        tracing::warn!(
            open,
            limit = shared.max_connections,
            "answering an HTTP client 503: too many connections"
        );
    }
    let (io, tls_info, sni): (Box<dyn Io>, _, _) = match &http.tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(http.settings.header_timeout, acceptor.accept(socket)).await;
            match handshake {
                Ok(Ok(tls)) => {
                    let (_, conn) = tls.get_ref();
                    let info = gatehouse_core::event::TlsInfo {
                        version: conn
                            .protocol_version()
                            .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."))
                            .unwrap_or_default(),
                        cipher: conn
                            .negotiated_cipher_suite()
                            .and_then(|s| s.suite().as_str())
                            .unwrap_or("")
                            .to_owned(),
                        direct: true,
                    };
                    let sni = conn.server_name().map(str::to_ascii_lowercase);
                    (Box::new(tls), Some(info), sni)
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, "HTTP TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "HTTP TLS handshake timed out");
                    return;
                }
            }
        }
        None if http.settings.allow_plaintext => (Box::new(socket), None, None),
        None => return,
    };
    let conn = Arc::new(exchange::Conn::new(
        shared.clone(),
        http.clone(),
        peer,
        tls_info,
        sni,
        at_capacity,
        watcher,
    ));
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(conn.handle(req).await) }
        })
    };
    let s = &http.settings;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .half_close(false)
        .max_buf_size(s.max_header_bytes.max(8192))
        .max_headers(s.max_headers)
        .header_read_timeout(s.header_timeout);
    let mut stop = shared.shutdown.clone();
    let mut idle = tokio::time::interval(s.idle_timeout / 4 + std::time::Duration::from_millis(1));
    let mut closing = false;
    // The connection (and with it a request still in progress) is dropped
    // before the session is closed.
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = Box::pin(connection);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle.tick(), if !closing => {
                if conn.idle_for() >= s.idle_timeout {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(connection);
    conn.finished().await;
}

/// `[http]` TLS: the listener's certificate, ALPN `http/1.1` only.
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<TlsAcceptor> {
    crate::serve::tls_acceptor_with_alpn(cert_pem, key_pem, vec![b"http/1.1".to_vec()])
}
