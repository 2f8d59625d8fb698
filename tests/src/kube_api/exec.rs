//! `pods/<pod>/exec` (and `attach`) over WebSocket, as the API server (and kubelet) speak
//! it to kubectl: subprotocol `v5.channel.k8s.io` (or `v4`), each binary
//! message one channel byte then data — 0 stdin, 1 stdout, 2 stderr,
//! 3 the final `Status`, 4 terminal resize, 255 (v5) "the client closed
//! stream N".
//!
//! Commands (`?command=` values, in order):
//! - `echo ARGS…` prints ARGS joined by spaces and a newline;
//! - `cat`, and `sh` / `bash` without `-c`: with `stdin=true`, echo every
//!   stdin message back on stdout until stdin is closed;
//! - `true`, `false` (exit 1), `sh -c "exit N"` (exit N);
//! - `sleep SECONDS`;
//! - anything else prints `<cmd>: command not found` on stderr, exit 127.
//!
//! `pods/<pod>/attach` speaks the same protocol: with `stdin=true` it
//! echoes stdin like `cat`, without it prints `attached` and ends.
//!
//! A non-zero exit is reported as the API server does: a `Failure` status
//! with reason `NonZeroExitCode` and the code as an `ExitCode` cause.
//! Every message both ways is recorded ([`FakeKube::exec_frames`]).
//! SPDY upgrades are refused with 400.
//!
//! [`FakeKube::exec_frames`]: super::FakeKube::exec_frames

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::ExecFrame;
use super::server::{Body, param, respond, status_response};
use super::state::Shared;

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Answers an exec request: 101 and a session task, or a `Status` error.
pub(crate) fn upgrade(
    shared: Arc<Shared>,
    headers: &HeaderMap,
    on: Option<OnUpgrade>,
    params: &[(String, String)],
    attach: bool,
) -> Response<Body> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let websocket = header(UPGRADE).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let (Some(on), true) = (on, websocket) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "this test server speaks exec over WebSocket (v5.channel.k8s.io) only, not SPDY",
        );
    };
    let Some(key) = header(hyper::header::SEC_WEBSOCKET_KEY) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key",
        );
    };
    let offered: Vec<&str> = headers
        .get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(protocol) = PROTOCOLS.into_iter().find(|p| offered.contains(p)) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("none of the offered subprotocols {offered:?} is supported"),
        );
    };
    let flag = |name| matches!(param(params, name), Some("true" | "1"));
    let command: Vec<String> = match attach {
        // Attached to the container's main process: an echoing shell
        // with stdin, else one line.
        true if flag("stdin") => vec!["sh".into()],
        true => vec!["echo".into(), "attached".into()],
        false => params
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    let session = Session {
        shared,
        command,
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr") && !flag("tty"),
        v5: protocol == PROTOCOLS[0],
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = on.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session.run(ws).await;
    });
    let mut resp = respond(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
    let h = resp.headers_mut();
    h.remove(hyper::header::CONTENT_TYPE);
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        hyper::header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    resp
}

struct Session {
    shared: Arc<Shared>,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    v5: bool,
}

impl Session {
    async fn run(self, mut ws: Ws) {
        let args: Vec<&str> = self.command.iter().map(String::as_str).collect();
        let code = match args.as_slice() {
            ["echo", rest @ ..] => {
                let line = format!("{}\n", rest.join(" "));
                self.send(&mut ws, STDOUT, line.as_bytes()).await;
                0
            }
            ["cat"] | ["sh"] | ["bash"] | ["/bin/sh"] | ["/bin/bash"] => {
                if self.stdin {
                    self.echo_stdin(&mut ws).await;
                }
                0
            }
            ["true"] => 0,
            ["false"] => 1,
            ["sh" | "/bin/sh" | "bash", "-c", script] => script
                .strip_prefix("exit ")
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0),
            ["sleep", secs] => {
                let secs: f64 = secs.parse().unwrap_or(0.0);
                tokio::time::sleep(Duration::from_secs_f64(secs.clamp(0.0, 600.0))).await;
                0
            }
            [cmd, ..] => {
                let msg = format!("{cmd}: command not found\n");
                self.send(&mut ws, STDERR, msg.as_bytes()).await;
                127
            }
            [] => {
                let msg = "you must specify at least one command for the container\n";
                self.send(&mut ws, STDERR, msg.as_bytes()).await;
                1
            }
        };
        let status = if code == 0 {
            json!({"metadata": {}, "status": "Success"})
        } else {
            json!({
                "metadata": {}, "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command {:?}, exit code {code}",
                    self.command
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            })
        };
        self.send(&mut ws, STATUS, status.to_string().as_bytes())
            .await;
        // kubectl (gorilla/websocket) treats a close without a code as an
        // error: close normally, as the API server does.
        let _ = ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        // Read until the client's close (or a bounded wait), recording.
        let drain = async {
            while let Some(Ok(msg)) = ws.next().await {
                self.record_client(&msg)
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// Echoes stdin to stdout until the client closes stdin (v5) or the
    /// connection.
    async fn echo_stdin(&self, ws: &mut Ws) {
        while let Some(Ok(msg)) = ws.next().await {
            self.record_client(&msg);
            let data: &[u8] = match &msg {
                Message::Binary(b) => b,
                Message::Text(t) => t.as_bytes(),
                Message::Close(_) => return,
                _ => continue,
            };
            match data.split_first() {
                Some((&STDIN, rest)) if !rest.is_empty() => {
                    let rest = rest.to_vec();
                    if self.stdout {
                        self.send(ws, STDOUT, &rest).await;
                    }
                }
                Some((&CLOSE, [STDIN, ..])) if self.v5 => return,
                _ => {}
            }
        }
    }

    fn record_client(&self, msg: &Message) {
        let data: &[u8] = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => t.as_bytes(),
            _ => return,
        };
        if let Some((&channel, rest)) = data.split_first() {
            self.shared.lock().exec_frames.push(ExecFrame {
                from_client: true,
                channel,
                data: rest.to_vec(),
            });
        }
    }

    async fn send(&self, ws: &mut Ws, channel: u8, data: &[u8]) {
        if (channel == STDOUT && !self.stdout) || (channel == STDERR && !self.stderr) {
            return;
        }
        self.shared.lock().exec_frames.push(ExecFrame {
            from_client: false,
            channel,
            data: data.to_vec(),
        });
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(channel);
        msg.extend_from_slice(data);
        let _ = ws.send(Message::binary(msg)).await;
    }
}
