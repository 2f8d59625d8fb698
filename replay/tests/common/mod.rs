//! Builders for recorded sessions: protocol frames as the gateway records
//! them, events numbered and chained by the real `Recorder`, and stores in
//! temporary directories.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use gatehouse_core::event::{
    Body, CloseReason, Closed, Direction, Encoded, Event, Frame as FrameEvent, MaskHit, Masked,
    MaskedCell, Opened, Recorder, Refusal, Refused, SealKey, SessionId, Statement,
    StatementProtocol, TlsInfo, decode,
};
use gatehouse_core::pg::encode;
use gatehouse_core::pg::frame::Frame;
use gatehouse_store::{Store, StoreOptions};

/// A UUIDv7-shaped id: `ms` in the time prefix, `n` at the end.
pub fn sid(ms: u64, n: u16) -> SessionId {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    id[14..].copy_from_slice(&n.to_be_bytes());
    SessionId(id)
}

/// 2026-11-25T18:40:01.123Z
pub const T0_MS: u64 = 1_795_632_001_123;

pub struct SessionBuilder {
    rec: Recorder,
    pub events: Vec<Encoded>,
    pub t: i64,
    pub start: i64,
}

impl SessionBuilder {
    pub fn new(id: SessionId) -> Self {
        Self::sealed(id, None)
    }

    /// A builder whose `Closed` event is sealed with `key`.
    pub fn sealed(id: SessionId, key: Option<std::sync::Arc<SealKey>>) -> Self {
        let t = (id.unix_ms() * 1000) as i64;
        SessionBuilder {
            rec: Recorder::sealed_with(id, key),
            events: Vec::new(),
            t,
            start: t,
        }
    }

    /// Moves the clock forward.
    pub fn wait(&mut self, us: i64) -> &mut Self {
        self.t += us;
        self
    }

    pub fn body(&mut self, body: Body) -> &mut Self {
        let e = self.rec.record(self.t, body);
        self.events.push(e);
        self
    }

    pub fn opened(&mut self) -> &mut Self {
        self.body(Body::Opened(Opened {
            subject: "agent:reconciler".into(),
            jti: "jti-1".into(),
            issuer: "gatehouse".into(),
            purpose: "reconcile invoices".into(),
            ticket: Some("OPS-1234".into()),
            target: "orders".into(),
            client_user: "agent".into(),
            application_name: Some("psql".into()),
            client_addr: "127.0.0.1:51234".into(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
                direct: false,
            }),
            use_number: 1,
            max_uses: Some(1),
            expires_at: 2_000_000_000,
        }))
    }

    /// AuthenticationOk, parameters, key, ReadyForQuery: what a client is
    /// greeted with.
    pub fn greeting(&mut self) -> &mut Self {
        self.down(&[
            encode::authentication(0, &[]),
            parameter_status("server_version", "17.2"),
            parameter_status("TimeZone", "UTC"),
            encode::backend_key_data(1, 2),
            ready(),
        ])
    }

    /// One event of client frames.
    pub fn up(&mut self, frames: &[Frame]) -> &mut Self {
        self.frames(Direction::ToUpstream, frames)
    }

    /// One event of target frames.
    pub fn down(&mut self, frames: &[Frame]) -> &mut Self {
        self.frames(Direction::ToClient, frames)
    }

    pub fn frames(&mut self, dir: Direction, frames: &[Frame]) -> &mut Self {
        let mut bytes = Vec::new();
        for f in frames {
            bytes.extend_from_slice(f.bytes());
        }
        self.raw(dir, bytes)
    }

    pub fn raw(&mut self, dir: Direction, bytes: Vec<u8>) -> &mut Self {
        self.body(Body::Frame(FrameEvent {
            dir,
            bytes: Bytes::from(bytes),
        }))
    }

    /// A semantic Statement event (which transcripts ignore).
    pub fn statement_event(&mut self, text: &str) -> &mut Self {
        self.body(Body::Statement(Statement {
            protocol: StatementProtocol::Simple,
            text: text.into(),
            statement_name: String::new(),
            portal: String::new(),
            params: Vec::new(),
        }))
    }

    /// A `Masked` event, as the gateway records it right before the
    /// `Frame` event it describes: `hits` are (rule, column, count),
    /// `cells` are (frame index within the next event, field index).
    pub fn masked(&mut self, hits: &[(&str, &str, u32)], cells: &[(u32, u16)]) -> &mut Self {
        self.body(Body::Masked(Masked {
            hits: hits
                .iter()
                .map(|&(rule, column, count)| MaskHit {
                    rule: rule.into(),
                    column: column.into(),
                    count,
                })
                .collect(),
            cells: cells
                .iter()
                .map(|&(frame, column)| MaskedCell { frame, column })
                .collect(),
        }))
    }

    pub fn closed(&mut self, reason: CloseReason) -> &mut Self {
        let duration_us = (self.t - self.start) as u64;
        self.body(Body::Closed(Closed {
            reason,
            bytes_to_upstream: 100,
            bytes_to_client: 200,
            statements: 3,
            duration_us,
            seal: None,
        }))
    }

    pub fn refused(&mut self) -> &mut Self {
        self.body(Body::Refused(Refused {
            reason: Refusal::Expired,
            message: "the grant expired at 2026-11-25T18:00:00Z".into(),
            target: "orders".into(),
            client_addr: "10.0.0.9:40000".into(),
            subject: Some("agent:late".into()),
            jti: Some("jti-old".into()),
        }))
    }

    /// The events, decoded (for feeding a builder without a store).
    pub fn decoded(&self) -> Vec<Event> {
        self.events
            .iter()
            .map(|e| decode(&e.bytes).unwrap())
            .collect()
    }
}

/// Writes sessions into a new store in `dir` and shuts it down.
///
/// One call per event, so each is an entry of its own under its
/// `event_key` (as store format 2 laid every event out): the tests tamper
/// with single events by key. [`write_store_in_runs`] stores each
/// session as one run, as the gateway stores a statement's events.
pub fn write_store(dir: &Path, sessions: &[&SessionBuilder]) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let writer = store.writer();
    for s in sessions {
        for e in &s.events {
            writer.append_blocking(vec![e.clone()]).unwrap();
        }
    }
    store.shutdown().unwrap();
}

/// [`write_store`], each session appended in one call: one run of events
/// under one key.
pub fn write_store_in_runs(dir: &Path, sessions: &[&SessionBuilder]) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let writer = store.writer();
    for s in sessions {
        writer.append_blocking(s.events.clone()).unwrap();
    }
    store.shutdown().unwrap();
}

// ---- client messages ----

pub fn query(sql: &str) -> Frame {
    encode::frame(b'Q', |b| cstr(b, sql))
}

pub fn parse(name: &str, sql: &str) -> Frame {
    encode::frame(b'P', |b| {
        cstr(b, name);
        cstr(b, sql);
        b.extend_from_slice(&0i16.to_be_bytes());
    })
}

/// Bind with per-parameter formats and result formats.
pub fn bind(portal: &str, stmt: &str, params: &[(i16, Option<&[u8]>)], results: &[i16]) -> Frame {
    encode::frame(b'B', |b| {
        cstr(b, portal);
        cstr(b, stmt);
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for (f, _) in params {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for (_, v) in params {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&(results.len() as i16).to_be_bytes());
        for f in results {
            b.extend_from_slice(&f.to_be_bytes());
        }
    })
}

pub fn describe(kind: u8, name: &str) -> Frame {
    encode::frame(b'D', |b| {
        b.push(kind);
        cstr(b, name);
    })
}

pub fn execute(portal: &str, max_rows: i32) -> Frame {
    encode::frame(b'E', |b| {
        cstr(b, portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
    })
}

pub fn sync() -> Frame {
    encode::frame(b'S', |_| {})
}

pub fn copy_data(data: &[u8]) -> Frame {
    encode::frame(b'd', |b| b.extend_from_slice(data))
}

pub fn copy_done() -> Frame {
    encode::frame(b'c', |_| {})
}

// ---- server messages ----

pub fn parameter_status(name: &str, value: &str) -> Frame {
    encode::frame(b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    })
}

pub fn ready() -> Frame {
    encode::ready_for_query(b'I')
}

pub const INT4: u32 = 23;
pub const NUMERIC: u32 = 1700;
pub const TEXT: u32 = 25;

/// RowDescription of (name, type oid, format) columns.
pub fn row_description(cols: &[(&str, u32, i16)]) -> Frame {
    encode::frame(b'T', |b| {
        b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (name, oid, format) in cols {
            cstr(b, name);
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&format.to_be_bytes());
        }
    })
}

pub fn data_row(values: &[Option<&[u8]>]) -> Frame {
    encode::frame(b'D', |b| {
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    })
}

pub fn complete(tag: &str) -> Frame {
    encode::frame(b'C', |b| cstr(b, tag))
}

/// An ErrorResponse with detail and hint.
pub fn error(code: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> Frame {
    encode::frame(b'E', |b| {
        for (f, v) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(f);
            cstr(b, v);
        }
        for (f, v) in [(b'D', detail), (b'H', hint)] {
            if let Some(v) = v {
                b.push(f);
                cstr(b, v);
            }
        }
        b.push(0);
    })
}

pub fn notification(pid: i32, channel: &str, payload: &str) -> Frame {
    encode::frame(b'A', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        cstr(b, channel);
        cstr(b, payload);
    })
}

/// A NoticeResponse with a message.
pub fn notice(message: &str) -> Frame {
    encode::frame(b'N', |b| {
        for (f, v) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message),
        ] {
            b.push(f);
            cstr(b, v);
        }
        b.push(0);
    })
}

/// CopyOutResponse (`H`) or CopyInResponse (`G`), text format.
pub fn copy_response(tag: u8, ncols: i16) -> Frame {
    encode::frame(tag, |b| {
        b.push(0);
        b.extend_from_slice(&ncols.to_be_bytes());
        for _ in 0..ncols {
            b.extend_from_slice(&0i16.to_be_bytes());
        }
    })
}

/// A message with no body: ParseComplete `1`, BindComplete `2`, NoData `n`,
/// EmptyQueryResponse `I`, PortalSuspended `s`, CopyDone `c`.
pub fn bare(tag: u8) -> Frame {
    encode::frame(tag, |_| {})
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// Runs the real `gatehouse-replay` with `args` on `store`: exit code,
/// stdout, stderr.
pub fn replay(args: &[&str], store: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-replay"))
        .args(args)
        .arg("--store")
        .arg(store)
        .env_remove("GATEHOUSE_STORE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
