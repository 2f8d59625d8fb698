//! The HTTP events of a session folded into one [`Exchange`] item per
//! request: its verdict, response head, bodies, masking summary and
//! WebSocket messages, each found by the request's exchange number.

use std::collections::HashMap;

use gatehouse_core::event::{
    Decision, Direction, HttpBody, HttpHeader, HttpRequest, HttpResponse, MaskHit, Verdict,
    WsMessage,
};

use super::TranscriptBuilder;
use crate::transcript::http::ws_note;
use crate::transcript::{
    BodyData, Content, Exchange, HeaderField, HttpVerdict, ItemKind, MaskTotal, Piece,
    ResponseHead, WebSocket, WsEntry, channel_name,
};

/// Bytes kept per body, and per WebSocket connection, under a row cap.
pub const KEEP_BYTES: usize = 256 * 1024;

/// What the builder tracks of an HTTP session.
#[derive(Debug, Default)]
pub(super) struct HttpState {
    /// The item of each exchange number.
    exchanges: HashMap<u32, usize>,
    /// The latest request's item: the one a verdict answers.
    last: Option<usize>,
    /// A `Masked` event's hits, for the next response body piece.
    masked: Option<Vec<MaskHit>>,
}

impl HttpState {
    /// Holds a `Masked` event's hits for the next response body piece.
    pub(super) fn masked(&mut self, hits: &[MaskHit]) {
        self.masked = Some(hits.to_vec());
    }
}

fn headers(h: &[HttpHeader]) -> Vec<HeaderField> {
    h.iter()
        .map(|h| HeaderField {
            name: h.name.clone(),
            value: h.value.clone(),
        })
        .collect()
}

fn direction(dir: Direction) -> &'static str {
    match dir {
        Direction::ToUpstream => "to_upstream",
        Direction::ToClient => "to_client",
    }
}

impl TranscriptBuilder {
    /// How many bytes a body or a WebSocket connection keeps.
    fn keep_bytes(&self) -> usize {
        match self.opts.max_rows {
            Some(_) => KEEP_BYTES,
            None => usize::MAX,
        }
    }

    fn exchange_mut(&mut self, number: u32) -> Option<(i64, &mut Exchange)> {
        let index = *self.http.exchanges.get(&number)?;
        let item = self.items.get_mut(index)?;
        match &mut item.kind {
            ItemKind::Http(x) => Some((item.at_us, x)),
            _ => None,
        }
    }

    /// A request head opens an exchange item.
    pub(super) fn http_request(&mut self, r: &HttpRequest, at: i64) {
        self.order += 1;
        let x = Exchange {
            exchange: r.exchange,
            method: r.method.clone(),
            target: r.target.clone(),
            upstream_target: r.upstream_target.clone(),
            version: r.version.clone(),
            operation: r.operation.clone(),
            request_headers: headers(&r.headers),
            verdict: None,
            request_body: None,
            response: None,
            response_body: None,
            masked: Vec::new(),
            websocket: None,
            duration_us: None,
        };
        let index = self.push_item(at, ItemKind::Http(Box::new(x)));
        self.http.exchanges.insert(r.exchange, index);
        self.http.last = Some(index);
    }

    /// An HTTP verdict answers the latest request; false when there is
    /// none (the verdict is then shown on its own).
    pub(super) fn http_verdict(&mut self, v: &Verdict) -> bool {
        let Some(item) = self.http.last.and_then(|i| self.items.get_mut(i)) else {
            return false;
        };
        let ItemKind::Http(x) = &mut item.kind else {
            return false;
        };
        let held = v.decision == Decision::Hold || x.verdict.as_ref().is_some_and(|old| old.held);
        let decision = match v.decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Hold => "hold",
        };
        let keep = |new: &str, old: Option<&HttpVerdict>, f: fn(&HttpVerdict) -> &String| {
            if new.is_empty() {
                old.map(f).cloned().unwrap_or_default()
            } else {
                new.to_owned()
            }
        };
        let old = x.verdict.as_ref();
        x.verdict = Some(HttpVerdict {
            decision,
            held,
            reason: keep(&v.reason, old, |o| &o.reason),
            approval: keep(&v.approval, old, |o| &o.approval),
            approver: v.approver.clone(),
        });
        true
    }

    /// A response head.
    pub(super) fn http_response(&mut self, r: &HttpResponse, at: i64) {
        let Some((start, x)) = self.exchange_mut(r.exchange) else {
            self.orphan("response", "to_client", r.exchange, at);
            return;
        };
        x.duration_us = Some(at.saturating_sub(start));
        x.response = Some(ResponseHead {
            at_us: at,
            status: r.status,
            headers: headers(&r.headers),
            from_gateway: r.from_gateway,
        });
        if r.status == 101 {
            x.websocket = Some(WebSocket {
                protocol: r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
                    .map(|h| h.value.clone()),
                ..WebSocket::default()
            });
        }
    }

    /// A piece of a request or response body.
    pub(super) fn http_body(&mut self, b: &HttpBody, at: i64) {
        let keep = self.keep_bytes();
        let hits = match b.dir {
            Direction::ToClient => self.http.masked.take(),
            Direction::ToUpstream => None,
        };
        // A `Masked` event before a body piece has no frame to describe.
        self.masked = None;
        let Some((start, x)) = self.exchange_mut(b.exchange) else {
            self.orphan("body", direction(b.dir), b.exchange, at);
            return;
        };
        for hit in hits.into_iter().flatten() {
            match x
                .masked
                .iter_mut()
                .find(|t| t.rule == hit.rule && t.column == hit.column)
            {
                Some(t) => t.count += u64::from(hit.count),
                None => x.masked.push(MaskTotal {
                    rule: hit.rule,
                    column: hit.column,
                    count: u64::from(hit.count),
                }),
            }
        }
        let body = match b.dir {
            Direction::ToUpstream => &mut x.request_body,
            Direction::ToClient => {
                x.duration_us = Some(at.saturating_sub(start));
                &mut x.response_body
            }
        };
        let body = body.get_or_insert_with(BodyData::default);
        let offset = body.size;
        body.size += b.bytes.len() as u64;
        body.pieces_received += 1;
        body.complete |= b.end;
        let room = keep.saturating_sub(body.data.len());
        if room > 0 || b.bytes.is_empty() {
            body.pieces.push(Piece {
                at_us: at,
                offset,
                size: b.bytes.len() as u64,
            });
        }
        let take = room.min(b.bytes.len());
        body.data
            .extend_from_slice(b.bytes.get(..take).unwrap_or_default());
        body.truncated = body.size > body.data.len() as u64;
        body.content = Content::of(&body.data, body.truncated);
    }

    /// A message on the WebSocket connection an exchange upgraded to.
    pub(super) fn ws_message(&mut self, m: &WsMessage, at: i64) {
        let keep = self.keep_bytes();
        let Some((start, x)) = self.exchange_mut(m.exchange) else {
            self.orphan("WebSocket message", direction(m.dir), m.exchange, at);
            return;
        };
        x.duration_us = Some(at.saturating_sub(start));
        let ws = x.websocket.get_or_insert_with(WebSocket::default);
        ws.messages_received += 1;
        ws.bytes_received += m.bytes.len() as u64;
        let room = keep.saturating_sub(ws.kept_bytes);
        if room == 0 && !m.bytes.is_empty() {
            return;
        }
        let data = m.bytes.get(..room.min(m.bytes.len())).unwrap_or_default();
        ws.kept_bytes += data.len();
        let truncated = m.truncated || data.len() < m.bytes.len();
        ws.messages.push(WsEntry {
            at_us: at,
            direction: direction(m.dir),
            kind: m.kind.clone(),
            channel: m.channel,
            stream: m.channel.and_then(channel_name),
            size: m.bytes.len() as u64,
            content: Content::of(data, truncated),
            truncated,
            note: ws_note(&m.kind, m.channel, data),
            data: data.to_vec(),
        });
    }

    /// An HTTP event for an exchange whose request was not recorded.
    fn orphan(&mut self, what: &str, direction: &'static str, exchange: u32, at: i64) {
        self.order += 1;
        let detail = format!("HTTP {what} for exchange {exchange}, whose request was not recorded");
        self.push_item(at, ItemKind::Malformed { direction, detail });
    }
}
