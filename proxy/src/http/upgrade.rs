//! Upgraded connections (WebSocket: `kubectl exec`, `attach`,
//! `port-forward`): relayed byte for byte both ways, and recorded per
//! message — per Kubernetes stream channel for the `*.channel.k8s.io`
//! subprotocols. The decoders only watch copies of the bytes: a message
//! they cannot read is recorded as an error once, and the relay goes on.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gatehouse_core::event::{Body as EventBody, CloseReason, Direction, WsMessage};
use gatehouse_core::http::websocket::{Role, WsDecoder, WsLimits, k8s_channel};
use http::Response;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::session::SessionLog;
use super::{ProxyBody, now_us};

/// Answers the client's upgrade with the target's 101 and relays the two
/// upgraded connections on a task of their own, which ends the session.
pub fn relay(
    log: Arc<SessionLog>,
    exchange: u32,
    protocol: String,
    client: OnUpgrade,
    mut response: Response<Incoming>,
) -> Response<ProxyBody> {
    let upstream = hyper::upgrade::on(&mut response);
    let subprotocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    super::session::record_head(&log, exchange, &response, None, false);
    let websocket = protocol.eq_ignore_ascii_case("websocket");
    tokio::spawn(async move {
        let reason = match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let recorder = Recording {
                    log: Arc::clone(&log),
                    exchange,
                    subprotocol,
                    websocket,
                };
                recorder
                    .run(TokioIo::new(client), TokioIo::new(upstream))
                    .await
            }
            Err(e) => {
                tracing::info!("an upgrade did not complete: {e}");
                CloseReason::IoError
            }
        };
        log.close(reason, now_us()).await;
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(
        parts,
        Empty::new().map_err(|never| match never {}).boxed_unsync(),
    )
}

/// Relays and records one upgraded connection.
struct Recording {
    log: Arc<SessionLog>,
    exchange: u32,
    subprotocol: String,
    websocket: bool,
}

/// One direction's decoder, when the connection is WebSocket.
struct Side {
    dir: Direction,
    decoder: Option<WsDecoder>,
    failed: bool,
}

impl Recording {
    async fn run<C, U>(&self, client: C, upstream: U) -> CloseReason
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut ur, mut uw) = tokio::io::split(upstream);
        let decoder = |role| {
            self.websocket
                .then(|| WsDecoder::new(role, WsLimits::default()))
        };
        let mut up = Side {
            dir: Direction::ToUpstream,
            decoder: decoder(Role::Client),
            failed: false,
        };
        let mut down = Side {
            dir: Direction::ToClient,
            decoder: decoder(Role::Server),
            failed: false,
        };
        let mut cbuf = BytesMut::with_capacity(16 << 10);
        let mut ubuf = BytesMut::with_capacity(16 << 10);
        let (mut client_open, mut upstream_open) = (true, true);
        while client_open || upstream_open {
            tokio::select! {
                n = cr.read_buf(&mut cbuf), if client_open => match n {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        let _ = uw.shutdown().await;
                    }
                    Ok(_) => {
                        let bytes = cbuf.split().freeze();
                        self.observe(&mut up, &bytes);
                        // Recorded (handed to the store) before forwarded.
                        if self.log.flush_durable().await.is_err() {
                            return CloseReason::StoreFailed;
                        }
                        if uw.write_all(&bytes).await.is_err() {
                            return CloseReason::UpstreamClosed;
                        }
                    }
                },
                n = ur.read_buf(&mut ubuf), if upstream_open => match n {
                    Ok(0) | Err(_) => {
                        upstream_open = false;
                        let _ = cw.shutdown().await;
                    }
                    Ok(_) => {
                        let bytes = ubuf.split().freeze();
                        self.observe(&mut down, &bytes);
                        if self.log.backlogged() && self.log.flush().await.is_err() {
                            return CloseReason::StoreFailed;
                        }
                        if cw.write_all(&bytes).await.is_err() {
                            return CloseReason::ClientDisconnected;
                        }
                        let _ = self.log.flush().await;
                    }
                },
            }
        }
        for side in [&mut up, &mut down] {
            if let Some(m) = side.decoder.as_mut().and_then(WsDecoder::finish) {
                self.message(side.dir, &m);
            }
        }
        if upstream_open {
            CloseReason::ClientDisconnected
        } else {
            CloseReason::UpstreamClosed
        }
    }

    /// Feeds one direction's bytes to its decoder and records what it
    /// says; without WebSocket, the bytes themselves.
    fn observe(&self, side: &mut Side, bytes: &Bytes) {
        let count = |log: &SessionLog| match side.dir {
            Direction::ToUpstream => log.count(0, bytes.len() as u64, 0),
            Direction::ToClient => log.count(0, 0, bytes.len() as u64),
        };
        count(&self.log);
        let Some(decoder) = side.decoder.as_mut() else {
            self.record(side.dir, "bytes", None, bytes.clone(), false);
            return;
        };
        if side.failed {
            return;
        }
        decoder.feed(bytes);
        while let Some(next) = decoder.next_message() {
            match next {
                Ok(m) => self.message(side.dir, &m),
                Err(e) => {
                    side.failed = true;
                    self.record(side.dir, "error", None, Bytes::from(e.to_string()), false);
                    break;
                }
            }
        }
    }

    fn message(&self, dir: Direction, m: &gatehouse_core::http::websocket::WsMessage) {
        match k8s_channel(&self.subprotocol, m) {
            Some(frame) => self.record(
                dir,
                m.opcode.name(),
                Some(frame.channel),
                frame.data,
                m.truncated,
            ),
            None => self.record(dir, m.opcode.name(), None, m.payload.clone(), m.truncated),
        }
    }

    fn record(
        &self,
        dir: Direction,
        kind: &str,
        channel: Option<u8>,
        bytes: Bytes,
        truncated: bool,
    ) {
        self.log.record(
            now_us(),
            EventBody::WsMessage(Box::new(WsMessage {
                exchange: self.exchange,
                dir,
                kind: kind.to_owned(),
                channel,
                bytes,
                truncated,
            })),
        );
    }
}
