//! The client side of the HTTP tests: real `curl` against the gateway's
//! HTTP listener (several requests on one connection), a hand-driven
//! keep-alive connection for requests spaced in time, the gateway's JSON
//! answers read back, and the record read after the gateway stops.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::event::Body;
use gatehouse_store::Reader;

use crate::Gateway;
use crate::command::{audit_verify, render, run};

/// One answer as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status; 0 when no response head arrived.
    pub status: u16,
    /// `Retry-After`, empty when absent.
    pub retry_after: String,
    /// The body as received (lossy UTF-8).
    pub body: String,
}

impl Answer {
    /// The `message` of the gateway's own JSON answer (which must be one).
    pub fn message(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        assert_eq!(v["gateway"], "gatehouse", "{}", self.body);
        assert_eq!(v["status"], self.status, "{}", self.body);
        let message = v["message"].as_str().unwrap_or_default().to_owned();
        eprintln!("{} {message}", self.status);
        message
    }
}

const MARK: &str = "\n~~gatehouse-test~~";

/// `curl` with `token` as bearer for each of `paths` in turn, on one
/// connection (curl reuses it), verifying the gateway by its test CA:
/// each answer, and curl's own output (its exit code says whether a body
/// was cut).
pub fn curl(gw: &Gateway, token: &str, paths: &[&str]) -> (Vec<Answer>, Output) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&gw.certs().expect("TLS").ca_cert)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("-w")
        .arg(format!("{MARK} %{{http_code}} %header{{retry-after}}~~\n"));
    for p in paths {
        cmd.arg(format!("https://localhost:{}{p}", gw.http_port()));
    }
    let out = run(&mut cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut answers = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let Some(end) = after.find("~~\n") else {
            break;
        };
        let mut fields = after[..end].split_whitespace();
        answers.push(Answer {
            status: fields.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            retry_after: fields.next().unwrap_or("").to_owned(),
            body: rest[..at].to_owned(),
        });
        rest = &after[end + 3..];
    }
    assert_eq!(answers.len(), paths.len(), "{}", render(&out));
    (answers, out)
}

/// A TLS connection to `gw`'s HTTP listener (trusting the test CA, 20 s
/// read timeout), for requests written by hand.
pub fn tls_stream(gw: &Gateway) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = gw.certs().expect("TLS").client_config();
    let name = "localhost".try_into().expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let tcp = TcpStream::connect(("127.0.0.1", gw.http_port())).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// One TLS connection to the HTTP listener, kept alive between requests
/// the test sends when it chooses. Answers must have a `Content-Length`
/// (the gateway's own do).
pub struct KeepAlive {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl KeepAlive {
    /// Connects to `gw`'s HTTP listener.
    pub fn open(gw: &Gateway) -> KeepAlive {
        KeepAlive {
            stream: tls_stream(gw),
            buf: Vec::new(),
        }
    }

    /// `GET path` with `token`; `None` when the connection closed first.
    pub fn get(&mut self, path: &str, token: &str) -> Option<Answer> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).ok()?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let field = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        let len: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length");
        while self.buf.len() < head_end + len {
            self.fill()?;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        Some(Answer {
            status: head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            retry_after: field("retry-after").unwrap_or_default(),
            body,
        })
    }

    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }
}

/// Stops the gateway, checks the store's seals (`gatehouse-audit
/// verify`), and returns every recorded event's body, session by session.
pub fn recorded_events(gw: &mut Gateway) -> Vec<Body> {
    let store = gw.store_dir();
    gw.stop();
    let reader = Reader::open(&store).expect("store");
    let mut bodies = Vec::new();
    for summary in reader.sessions() {
        let summary = summary.expect("summary");
        for e in reader.events(summary.id) {
            bodies.push(e.expect("event").body);
        }
    }
    drop(reader);
    let out = audit_verify(&store, &gw.seal_public_key());
    assert!(out.status.success(), "{}", render(&out));
    bodies
}
