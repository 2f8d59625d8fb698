//! An HTTP exchange as text, each line with the time it describes, so that
//! `play` and the asciicast export can show a streamed body or a terminal
//! as it happened.
//!
//! ```text
//! [+0.003s] GET /orders-api/v1/customers → 200 OK   12.3 ms
//!           operation: GET /v1/customers   upstream: /v1/customers
//!           allowed
//!           > accept: application/json
//!           > authorization: [redacted]
//!           < HTTP/1.1 200 OK
//!           < content-type: application/json
//!           < body (49 B; masked: key:email in items[].email ×2):
//!           <   {"items": [{"email": "****"}, {"email": "****"}]}
//! ```
//!
//! The verdict line says `allowed`, `denied by the plan: …`, or `held for
//! approval ap-7, approved by alice: …`. Text bodies show line by line
//! (at most the transcript's row cap of lines, each at most 10 000
//! characters), binary ones as their size and first bytes in hex.
//!
//! An exchange that upgraded to a WebSocket (`kubectl exec`) is followed by
//! its messages, each with its own time offset:
//!
//! ```text
//!           WebSocket v5.channel.k8s.io: 10 messages, 267 B
//!           [+0.004s] resize 120×40
//!           [+1.104s] stdin> ls /\r
//!           [+1.124s] stdout ls /
//!                            bin  etc
//!           [+1.624s] stderr warning: \u{1b}[31mred\u{1b}[0m
//!           [+2.644s] exit: Failure: command terminated with non-zero exit code (exit code 2)
//!           [+2.645s] close stdin
//!           [+2.646s] closed (1000) by the target
//! ```
//!
//! stdin is the agent's input; everything is sanitized as the rest of a
//! transcript is (terminal escapes shown, not obeyed).

use crate::text::{bytes, duration_us, ellipsize, grouped, hex, offset_us, plural, sanitize};
use crate::transcript::{BodyData, Exchange, HeaderField, HttpVerdict, WebSocket, WsEntry};

/// Longest body line shown, in characters (as a row cell).
const MAX_LINE: usize = 10_000;
/// Bytes of a binary body shown in hex.
const HEX_BYTES: usize = 64;

/// Timed lines: when each happened, and its (sanitized) text.
pub(crate) type Timed = Vec<(i64, String)>;

/// The lines of exchange `x` (an item at `at_us`); `max_lines` caps the
/// lines shown of each body. `started_us` is the session's start.
pub(crate) fn exchange(
    x: &Exchange,
    at_us: i64,
    started_us: i64,
    max_lines: Option<usize>,
) -> Timed {
    let mut out = Timed::new();
    let mut first = format!(
        "{} {}",
        sanitize(&x.method, false),
        sanitize(&x.target, false)
    );
    match x.status_text() {
        Some(status) => first.push_str(&format!(" → {status}")),
        None => first.push_str(" → no response recorded"),
    }
    if let Some(d) = x.duration_us {
        first.push_str(&format!("   {}", duration_us(d)));
    }
    out.push((at_us, first));
    let mut about = format!("operation: {}", sanitize(&x.operation, false));
    if x.upstream_target != x.target {
        about.push_str(&format!(
            "   upstream: {}",
            sanitize(&x.upstream_target, false)
        ));
    }
    out.push((at_us, about));
    out.push((at_us, verdict(x.verdict.as_ref())));
    headers(&mut out, at_us, ">", &x.request_headers);
    if let Some(b) = &x.request_body {
        body(&mut out, ">", b, &[], max_lines);
    }
    if let Some(r) = &x.response {
        let from = if r.from_gateway {
            "   (answered by the gateway)"
        } else {
            ""
        };
        let status = x.status_text().unwrap_or_default();
        out.push((
            r.at_us,
            format!("< {} {status}{from}", sanitize(&x.version, false)),
        ));
        headers(&mut out, r.at_us, "<", &r.headers);
    }
    if let Some(b) = &x.response_body {
        let masked: Vec<String> = x
            .masked
            .iter()
            .map(|m| {
                format!(
                    "{} in {} ×{}",
                    sanitize(&m.rule, false),
                    sanitize(&m.column, false),
                    grouped(m.count)
                )
            })
            .collect();
        body(&mut out, "<", b, &masked, max_lines);
    }
    if let Some(ws) = &x.websocket {
        websocket(
            &mut out,
            ws,
            x.response.as_ref().map_or(at_us, |r| r.at_us),
            started_us,
        );
    }
    out
}

/// `allowed`, `denied by the plan: …`, `held for approval ap-1, approved
/// by alice: …`.
fn verdict(v: Option<&HttpVerdict>) -> String {
    let Some(v) = v else {
        return "(no verdict recorded)".into();
    };
    let reason = if v.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", sanitize(&v.reason, false))
    };
    let by = if v.approver.is_empty() {
        String::new()
    } else {
        format!(" by {}", sanitize(&v.approver, false))
    };
    if v.held {
        let approval = if v.approval.is_empty() {
            "held for approval".to_owned()
        } else {
            format!("held for approval {}", sanitize(&v.approval, false))
        };
        match v.decision {
            "allow" => format!("{approval}, approved{by}{reason}"),
            "deny" => format!("{approval}, denied{by}{reason}"),
            _ => format!("{approval}, no decision recorded{reason}"),
        }
    } else {
        match v.decision {
            "allow" => "allowed".into(),
            "deny" => format!("denied by the plan{reason}"),
            other => format!("{other}{reason}"),
        }
    }
}

fn headers(out: &mut Timed, at: i64, mark: &str, h: &[HeaderField]) {
    for f in h {
        out.push((
            at,
            format!(
                "{mark} {}: {}",
                sanitize(&f.name, false),
                sanitize(&f.value, false)
            ),
        ));
    }
}

/// A body: a summary line, then its text lines (each at the time the piece
/// that completed it arrived) or a hex summary.
fn body(out: &mut Timed, mark: &str, b: &BodyData, masked: &[String], max_lines: Option<usize>) {
    let start = b.pieces.first().map_or(0, |p| p.at_us);
    let end = b.pieces.last().map_or(start, |p| p.at_us);
    let mut summary = format!("{mark} body ({}", bytes(b.size));
    if b.pieces_received > 1 {
        summary.push_str(&format!(
            " in {}",
            plural(b.pieces_received, "piece", "pieces")
        ));
    }
    if !masked.is_empty() {
        summary.push_str(&format!("; masked: {}", masked.join(", ")));
    }
    if !b.complete {
        summary.push_str("; incomplete");
    }
    summary.push_str("):");
    if b.size == 0 {
        out.push((end, format!("{mark} body (empty)")));
        return;
    }
    out.push((start, summary));
    let time_of = |offset: usize| -> i64 {
        b.pieces
            .iter()
            .find(|p| p.offset + p.size >= offset as u64)
            .map_or(end, |p| p.at_us)
    };
    if b.content.is_text() {
        let text = String::from_utf8_lossy(&b.data);
        let mut lines = Vec::new();
        let mut pos = 0usize;
        for raw in text.split_inclusive('\n') {
            pos += raw.len();
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            let line = line.strip_suffix('\r').unwrap_or(line);
            lines.push((time_of(pos), line));
        }
        let shown = max_lines.unwrap_or(usize::MAX);
        for (at, line) in lines.iter().take(shown) {
            out.push((
                *at,
                format!("{mark}   {}", ellipsize(&sanitize(line, false), MAX_LINE)),
            ));
        }
        if lines.len() > shown {
            out.push((
                end,
                format!(
                    "{mark}   … {} more (--all-rows shows them)",
                    plural((lines.len() - shown) as u64, "line", "lines")
                ),
            ));
        }
    } else {
        let head = b.data.get(..HEX_BYTES).unwrap_or(&b.data);
        let more = if b.data.len() > head.len() { "…" } else { "" };
        out.push((end, format!("{mark}   binary: {}{more}", hex(head))));
    }
    if b.truncated {
        out.push((
            end,
            format!(
                "{mark}   … only the first {} kept (--all-rows keeps it all)",
                bytes(b.data.len() as u64)
            ),
        ));
    }
}

/// The messages of an upgraded connection, each at its own offset.
fn websocket(out: &mut Timed, ws: &WebSocket, at: i64, started_us: i64) {
    let protocol = ws
        .protocol
        .as_deref()
        .map(|p| format!(" {}", sanitize(p, false)))
        .unwrap_or_default();
    out.push((
        at,
        format!(
            "WebSocket{protocol}: {}, {}",
            plural(ws.messages_received, "message", "messages"),
            bytes(ws.bytes_received)
        ),
    ));
    for m in &ws.messages {
        let prefix = offset_us(m.at_us.saturating_sub(started_us));
        let pad = " ".repeat(prefix.chars().count() + 1);
        let lines = message_lines(m);
        for (i, line) in lines.iter().enumerate() {
            let lead = if i == 0 { &prefix } else { &pad };
            let sep = if i == 0 { " " } else { "" };
            out.push((m.at_us, format!("{lead}{sep}{line}")));
        }
    }
    if ws.messages_received > ws.messages.len() as u64 {
        out.push((
            at,
            format!(
                "… {} not kept (--all-rows keeps them)",
                plural(
                    ws.messages_received - ws.messages.len() as u64,
                    "message",
                    "messages"
                )
            ),
        ));
    }
}

/// What one message shows: a label and its text, or its note.
fn message_lines(m: &WsEntry) -> Vec<String> {
    let who = if m.direction == "to_upstream" {
        "the agent"
    } else {
        "the target"
    };
    let cut = if m.truncated { " (truncated)" } else { "" };
    if let Some(note) = &m.note {
        let note = sanitize(note, false);
        return vec![match m.kind.as_str() {
            "close" => format!("{note} by {who}"),
            _ => match m.stream {
                Some("error") => note,
                _ => format!("{note}{cut}"),
            },
        }];
    }
    let label = match (m.stream, m.kind.as_str()) {
        (Some("stdin"), _) => "stdin>".to_owned(),
        (Some(stream), _) => stream.to_owned(),
        (None, "ping" | "pong") => return vec![format!("{} from {who}", m.kind)],
        (None, kind) => {
            let arrow = if m.direction == "to_upstream" {
                "→"
            } else {
                "←"
            };
            format!("{arrow} {kind}")
        }
    };
    if !m.content.is_text() && m.stream.is_none() {
        let head = m.data.get(..HEX_BYTES).unwrap_or(&m.data);
        let more = if m.data.len() > head.len() { "…" } else { "" };
        return vec![format!(
            "{label} {}: {}{more}{cut}",
            bytes(m.size),
            hex(head)
        )];
    }
    let text = String::from_utf8_lossy(&m.data).replace("\r\n", "\n");
    let text = sanitize(&text, true);
    let mut lines: Vec<String> = text.split('\n').map(|l| ellipsize(l, MAX_LINE)).collect();
    // Output that ends with a newline has no empty last line to show.
    if lines.len() > 1 && lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let width = label.chars().count() + 1;
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{label} {l}")
            } else {
                format!("{:width$}{l}", "")
            }
        })
        .chain(std::iter::once(cut.trim().to_owned()).filter(|c| !c.is_empty()))
        .collect()
}
