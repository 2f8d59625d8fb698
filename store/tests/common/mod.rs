//! Builders shared by the integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use gatehouse_core::event::{
    Body, CloseReason, Closed, Direction, Encoded, Frame, Opened, Recorder, SessionId, Statement,
    StatementProtocol,
};
use gatehouse_store::{Durability, StoreOptions};

/// A UUIDv7-shaped id: `ms` in the time prefix, `n` in the random part.
pub fn sid(ms: u64, n: u16) -> SessionId {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    id[6] = 0x70;
    id[8] = 0x80;
    id[14..].copy_from_slice(&n.to_be_bytes());
    SessionId(id)
}

pub fn opened(jti: &str, use_number: u32) -> Body {
    Body::Opened(Opened {
        subject: "agent-7".into(),
        jti: jti.into(),
        issuer: "gatehouse".into(),
        purpose: "tests".into(),
        ticket: None,
        target: "orders".into(),
        client_user: "agent".into(),
        application_name: Some("psql".into()),
        client_addr: "127.0.0.1:5000".into(),
        tls: None,
        use_number,
        max_uses: Some(3),
        expires_at: 2_000_000_000,
    })
}

pub fn frame(dir: Direction, bytes: &'static [u8]) -> Body {
    Body::Frame(Frame {
        dir,
        bytes: Bytes::from_static(bytes),
    })
}

pub fn statement(text: &str) -> Body {
    Body::Statement(Statement {
        protocol: StatementProtocol::Simple,
        text: text.into(),
        statement_name: String::new(),
        portal: String::new(),
        params: Vec::new(),
    })
}

pub fn closed(statements: u64) -> Body {
    Body::Closed(Closed {
        reason: CloseReason::ClientTerminated,
        bytes_to_upstream: 0,
        bytes_to_client: 0,
        statements,
        duration_us: 0,
        seal: None,
    })
}

/// The query frame [`session`] records.
pub const QUERY: &[u8] = b"Q\0\0\0\x0dSELECT 1\0";
/// The response frame [`session`] records.
pub const READY: &[u8] = b"Z\0\0\0\x05I";

/// A whole session: opened, `queries` statements each with a query frame
/// ([`QUERY`] up) and a response frame ([`READY`] down), closed.
pub fn session(id: SessionId, jti: &str, queries: u64) -> Vec<Encoded> {
    let mut rec = Recorder::new(id);
    let t0 = (id.unix_ms() * 1000) as i64;
    let mut out = vec![rec.record(t0, opened(jti, 1))];
    for i in 0..queries {
        let t = t0 + 10 * (i as i64 + 1);
        out.push(rec.record(t, statement("SELECT 1")));
        out.push(rec.record(t + 1, frame(Direction::ToUpstream, QUERY)));
        out.push(rec.record(t + 2, frame(Direction::ToClient, READY)));
    }
    out.push(rec.record(t0 + 10 * (queries as i64 + 1), closed(queries)));
    out
}

pub fn fsync() -> StoreOptions {
    StoreOptions::default()
}

pub fn os(ms: u64) -> StoreOptions {
    StoreOptions {
        durability: Durability::Os {
            sync_interval: std::time::Duration::from_millis(ms),
        },
        ..StoreOptions::default()
    }
}
