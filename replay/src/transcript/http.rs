//! HTTP exchanges and the WebSocket streams they upgrade to, as a
//! transcript shows them.
//!
//! An HTTP session (an HTTP or Kubernetes target) records, per request, an
//! `HttpRequest` head, the plan's `Verdict`, the request body's pieces, the
//! `HttpResponse` head, the response body's pieces (masked ones after a
//! `Masked` event) and, after a `101 Switching Protocols`, the upgraded
//! connection's WebSocket messages (`kubectl exec`). The transcript folds
//! all of that into one [`Exchange`] item per request.
//!
//! Bodies and messages keep their bytes up to a cap (see
//! [`TranscriptOptions`](super::TranscriptOptions)) and count the rest. In
//! JSON a body's or message's bytes are `"text"` when they are UTF-8 (a
//! cut-off last character of a truncated body does not count against
//! that), else `"base64"` (standard alphabet, padded).

use base64::Engine as _;
use serde::Serialize;

use super::MaskTotal;

/// One HTTP header as recorded (credentials already `[redacted]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderField {
    /// The name, lower case.
    pub name: String,
    /// The value.
    pub value: String,
}

/// One HTTP request, the plan's answer, and what the client received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// The request's number on its connection, from 1.
    pub exchange: u32,
    /// `GET`, `POST`, ….
    pub method: String,
    /// The path and query the client sent.
    pub target: String,
    /// The path and query as forwarded upstream.
    pub upstream_target: String,
    /// `HTTP/1.1`.
    pub version: String,
    /// What the plan saw: `GET /v1/invoices`, `list pods in billing`.
    pub operation: String,
    /// The request headers as forwarded (a refused request: as received).
    pub request_headers: Vec<HeaderField>,
    /// The plan's answer; `None` when no verdict was recorded.
    pub verdict: Option<HttpVerdict>,
    /// The request body, if any piece of it was recorded.
    pub request_body: Option<BodyData>,
    /// The response head, if one was recorded.
    pub response: Option<ResponseHead>,
    /// The response body as the client received it (masked).
    pub response_body: Option<BodyData>,
    /// What the gateway masked in the response body: rule, JSON key path
    /// (`column`), count. Absent from JSON when nothing was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<MaskTotal>,
    /// The messages of the WebSocket connection this request upgraded to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocket>,
    /// Microseconds from the request head to the last response event
    /// recorded for it (`None`: no response).
    pub duration_us: Option<i64>,
}

impl Exchange {
    /// Values the gateway masked in the response body.
    pub fn masked_values(&self) -> u64 {
        self.masked.iter().map(|m| m.count).sum()
    }

    /// The recorded status line's code and reason: `200 OK`.
    pub fn status_text(&self) -> Option<String> {
        self.response
            .as_ref()
            .map(|r| match reason_phrase(r.status) {
                Some(reason) => format!("{} {reason}", r.status),
                None => r.status.to_string(),
            })
    }
}

/// The plan's answer to an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpVerdict {
    /// The final decision: `allow`, `deny`, or `hold` (held, no decision
    /// recorded).
    pub decision: &'static str,
    /// The request was held for approval first.
    pub held: bool,
    /// What the plan lacks, or the approver's reason.
    pub reason: String,
    /// The approval request's id (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub approval: String,
    /// Who decided the approval (empty: nobody yet, or no approval).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub approver: String,
}

/// An HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseHead {
    /// When it was sent, microseconds since the Unix epoch.
    pub at_us: i64,
    /// The status code.
    pub status: u16,
    /// The headers as sent to the client.
    pub headers: Vec<HeaderField>,
    /// The gateway answered (a denial, a malformed request, an unreachable
    /// upstream), not the upstream.
    pub from_gateway: bool,
}

/// A request or response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BodyData {
    /// Bytes received.
    pub size: u64,
    /// The kept bytes as text or base64 (see the module docs).
    #[serde(flatten)]
    pub content: Content,
    /// Only the first bytes were kept.
    pub truncated: bool,
    /// The body's last piece was recorded.
    pub complete: bool,
    /// Pieces recorded (a streamed response has many).
    pub pieces_received: u64,
    /// When each kept piece arrived and its place in the kept bytes.
    pub pieces: Vec<Piece>,
    /// The kept bytes.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// One recorded piece of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Piece {
    /// When it crossed the gateway, microseconds since the Unix epoch.
    pub at_us: i64,
    /// Its first byte's offset in the body.
    pub offset: u64,
    /// Its length.
    pub size: u64,
}

/// Kept bytes, for JSON: text when UTF-8, else base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// The bytes are UTF-8.
    Text(String),
    /// They are not.
    Base64(String),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl Content {
    /// The JSON form of `data`; `cut` says it may end in the middle of a
    /// character.
    pub fn of(data: &[u8], cut: bool) -> Content {
        match std::str::from_utf8(data) {
            Ok(s) => Content::Text(s.to_owned()),
            // Only an incomplete character at the very end.
            Err(e) if cut && e.error_len().is_none() && data.len() - e.valid_up_to() < 4 => {
                let valid = data.get(..e.valid_up_to()).unwrap_or_default();
                Content::Text(String::from_utf8_lossy(valid).into_owned())
            }
            Err(_) => Content::Base64(base64::engine::general_purpose::STANDARD.encode(data)),
        }
    }

    /// Whether the bytes are text.
    pub fn is_text(&self) -> bool {
        matches!(self, Content::Text(_))
    }
}

/// The WebSocket connection an exchange upgraded to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebSocket {
    /// The negotiated subprotocol (`v5.channel.k8s.io`), if the response
    /// named one.
    pub protocol: Option<String>,
    /// Messages recorded.
    pub messages_received: u64,
    /// Payload bytes recorded.
    pub bytes_received: u64,
    /// The messages kept, in order.
    pub messages: Vec<WsEntry>,
    /// Payload bytes kept.
    #[serde(skip)]
    pub(crate) kept_bytes: usize,
}

/// One WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WsEntry {
    /// When it crossed the gateway, microseconds since the Unix epoch.
    pub at_us: i64,
    /// `to_upstream` (from the agent) or `to_client`.
    pub direction: &'static str,
    /// `text`, `binary`, `close`, `ping`, `pong`, or `error` (the gateway
    /// could no longer decode the stream).
    pub kind: String,
    /// The Kubernetes stream channel, if the protocol has channels.
    pub channel: Option<u8>,
    /// The channel's name: `stdin`, `stdout`, `stderr`, `error`, `resize`,
    /// `close`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'static str>,
    /// Payload bytes recorded (without the channel byte).
    pub size: u64,
    /// The payload, as text or base64.
    #[serde(flatten)]
    pub content: Content,
    /// The message was longer than the gateway records.
    pub truncated: bool,
    /// What it means, when that is more than its bytes: `exit: Success`,
    /// `resize 80×24`, `close stdin`, `closed (1000)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The payload bytes.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The name of a Kubernetes stream channel.
pub fn channel_name(channel: u8) -> Option<&'static str> {
    Some(match channel {
        0 => "stdin",
        1 => "stdout",
        2 => "stderr",
        3 => "error",
        4 => "resize",
        255 => "close",
        _ => return None,
    })
}

/// What a control message says: the error channel's `Status`, a resize, a
/// channel close, a WebSocket close frame, a recording error.
pub fn ws_note(kind: &str, channel: Option<u8>, data: &[u8]) -> Option<String> {
    match (kind, channel) {
        ("close", _) => Some(close_note(data)),
        ("error", _) => Some(format!(
            "recording stopped: {}",
            String::from_utf8_lossy(data)
        )),
        (_, Some(3)) => Some(status_note(data)),
        (_, Some(4)) => Some(resize_note(data)),
        (_, Some(255)) => Some(match data.first().copied() {
            Some(c) => match channel_name(c) {
                Some(name) => format!("close {name}"),
                None => format!("close channel {c}"),
            },
            None => "close".into(),
        }),
        _ => None,
    }
}

/// `closed (1000)`, `closed (1001: going away)`, `closed`.
fn close_note(data: &[u8]) -> String {
    match data {
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let reason = String::from_utf8_lossy(reason);
            if reason.is_empty() {
                format!("closed ({code})")
            } else {
                format!("closed ({code}: {reason})")
            }
        }
        _ => "closed".into(),
    }
}

/// The error channel carries a `metav1.Status`: `exit: Success`, or
/// `exit: Failure: command terminated with non-zero exit code (exit code
/// 2)`.
fn status_note(data: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return format!("error: {}", String::from_utf8_lossy(data).trim());
    };
    let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("?");
    let mut note = format!("exit: {status}");
    if let Some(message) = v.get("message").and_then(|m| m.as_str()) {
        note.push_str(": ");
        note.push_str(message);
    }
    let code = v
        .pointer("/details/causes")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
        .and_then(|c| c.get("message").and_then(|m| m.as_str()));
    if let Some(code) = code {
        note.push_str(&format!(" (exit code {code})"));
    }
    note
}

/// A resize message: `{"Width":80,"Height":24}` → `resize 80×24`.
fn resize_note(data: &[u8]) -> String {
    let v = serde_json::from_slice::<serde_json::Value>(data).ok();
    let dim = |k: &str| v.as_ref().and_then(|v| v.get(k)).and_then(|n| n.as_u64());
    match (dim("Width"), dim("Height")) {
        (Some(w), Some(h)) => format!("resize {w}×{h}"),
        _ => format!("resize {}", String::from_utf8_lossy(data).trim()),
    }
}

/// The reason phrase of the common status codes (RFC 9110, 6585).
pub fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_or_base64() {
        assert_eq!(
            Content::of(b"{\"a\":1}", false),
            Content::Text("{\"a\":1}".into())
        );
        assert_eq!(
            Content::of(&[0xff, 0], false),
            Content::Base64("/wA=".into())
        );
        // "é" cut after its first byte: text when the body was cut there.
        assert_eq!(Content::of(b"caf\xc3", true), Content::Text("caf".into()));
        assert!(!Content::of(b"caf\xc3", false).is_text());
    }

    #[test]
    fn control_messages_are_summarized() {
        let failure = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#;
        assert_eq!(
            ws_note("binary", Some(3), failure).unwrap(),
            "exit: Failure: command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2 (exit code 2)"
        );
        assert_eq!(
            ws_note("binary", Some(3), br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            "exit: Success"
        );
        assert_eq!(
            ws_note("binary", Some(4), br#"{"Width":120,"Height":40}"#).unwrap(),
            "resize 120×40"
        );
        assert_eq!(ws_note("binary", Some(255), &[0]).unwrap(), "close stdin");
        assert_eq!(ws_note("close", None, &[3, 232]).unwrap(), "closed (1000)");
        assert_eq!(ws_note("binary", Some(1), b"hi"), None);
    }
}
