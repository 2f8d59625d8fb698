//! Per-session summaries, maintained incrementally as events are appended.

use gatehouse_core::event::{
    Body, Closed, Direction, Encoded, Event, EventKind, Opened, Refused, SessionId, event_key,
};
use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::StoreError;

/// What the store knows about one session without reading its events.
///
/// Written in the same atomic batch as the events it counts, so it is never
/// ahead of or behind them. A session whose gateway stopped without closing
/// it (a crash, a power cut) keeps the summary of its last written batch
/// with `closed == None`: it was cut. A live store cannot tell a cut session
/// from one still running; a store no gateway holds can.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The session.
    pub id: SessionId,
    /// Time of its first event, microseconds since the Unix epoch.
    pub started_us: i64,
    /// The grant and target it was opened with, if it was opened.
    pub opened: Option<Opened>,
    /// Why it was refused, if it was.
    pub refused: Option<Refused>,
    /// How it ended, if it ended.
    pub closed: Option<Closed>,
    /// Time of its last event.
    pub last_event_us: i64,
    /// Events recorded; also the sequence number of the next event.
    pub events: u64,
    /// [`Body::Statement`] events recorded.
    pub statements: u64,
    /// Sum of the sizes of frames forwarded to the target.
    pub bytes_to_upstream: u64,
    /// Sum of the sizes of frames sent to the client.
    pub bytes_to_client: u64,
}

impl SessionSummary {
    /// The summary of a session whose first event happened at `at_us`.
    pub(crate) fn new(id: SessionId, at_us: i64) -> Self {
        SessionSummary {
            id,
            started_us: at_us,
            opened: None,
            refused: None,
            closed: None,
            last_event_us: at_us,
            events: 0,
            statements: 0,
            bytes_to_upstream: 0,
            bytes_to_client: 0,
        }
    }

    /// Counts one more event.
    pub(crate) fn apply(&mut self, at_us: i64, fact: &Fact) {
        self.events += 1;
        self.last_event_us = at_us;
        match fact {
            Fact::Other | Fact::Revoked(_) | Fact::Verdict(_) => {}
            Fact::Statement => self.statements += 1,
            Fact::Frame(Direction::ToUpstream, len) => self.bytes_to_upstream += len,
            Fact::Frame(Direction::ToClient, len) => self.bytes_to_client += len,
            Fact::Opened(o) => self.opened = Some((**o).clone()),
            Fact::Refused(r) => self.refused = Some((**r).clone()),
            Fact::Closed(c) => self.closed = Some((**c).clone()),
        }
    }

    /// The stored form.
    pub(crate) fn encode(&self) -> AlignedVec {
        match rkyv::to_bytes::<rancor::Error>(self) {
            Ok(bytes) => bytes,
            // Serializing into a growable in-memory buffer has no failure
            // mode for these types (no shared pointers, no size limits).
            Err(e) => unreachable!("rkyv serialization into memory failed: {e}"),
        }
    }

    /// Reads a stored summary. Values carry no alignment guarantee, so
    /// they are copied into an aligned buffer and validated first.
    pub(crate) fn decode(key: &[u8], stored: &[u8]) -> Result<Self, StoreError> {
        let mut aligned = AlignedVec::<16>::with_capacity(stored.len());
        aligned.extend_from_slice(stored);
        rkyv::from_bytes::<SessionSummary, rancor::Error>(&aligned)
            .map_err(|e| StoreError::corrupt("session summary", key, e))
    }
}

/// What an event contributes to its session's summary, read from the
/// archive by the submitting task so the writer thread does not decode.
#[derive(Debug)]
pub(crate) enum Fact {
    /// Counted, nothing else.
    Other,
    /// A statement.
    Statement,
    /// A frame: its direction and size.
    Frame(Direction, u64),
    /// The session was opened.
    Opened(Box<Opened>),
    /// The session was refused.
    Refused(Box<Refused>),
    /// The session ended.
    Closed(Box<Closed>),
    /// A grant was revoked: its `jti`.
    Revoked(String),
    /// A statement was judged: what the secondary indexes key it by.
    Verdict(Box<VerdictKeys>),
}

/// What a `Verdict` event is indexed by (see [`crate::index`]).
#[derive(Debug, Default)]
pub(crate) struct VerdictKeys {
    /// Its kinds and the operations of its accesses, deduplicated.
    pub(crate) kinds: Vec<String>,
    /// The relations its accesses name, deduplicated.
    pub(crate) relations: Vec<String>,
}

impl VerdictKeys {
    pub(crate) fn new<'a>(
        kinds: impl Iterator<Item = &'a str>,
        accesses: impl Iterator<Item = &'a str>,
    ) -> Self {
        let mut keys = VerdictKeys::default();
        let add = |list: &mut Vec<String>, v: &str| {
            if !list.iter().any(|have| have == v) {
                list.push(v.to_owned());
            }
        };
        for k in kinds {
            add(&mut keys.kinds, k);
        }
        for a in accesses {
            let (op, relation) = crate::index::access_parts(a);
            add(&mut keys.kinds, op);
            if !relation.is_empty() {
                add(&mut keys.relations, relation);
            }
        }
        keys
    }
}

type ArchivedBody = <Body as rkyv::Archive>::Archived;
type ArchivedDirection = <Direction as rkyv::Archive>::Archived;

/// Checks that `enc` is what its fields claim (a valid archive of an event
/// with that session, sequence number, time, key and kind) and extracts its
/// [`Fact`]. Validation is zero-copy: frames are not copied.
pub(crate) fn inspect(enc: &Encoded) -> Result<Fact, StoreError> {
    let invalid = |reason: String| StoreError::InvalidEvent {
        session: enc.session,
        seq: enc.seq,
        reason,
    };
    let event = rkyv::access::<<Event as rkyv::Archive>::Archived, rancor::Error>(&enc.bytes)
        .map_err(|e| invalid(format!("not a valid event archive: {e}")))?;
    if event.session.0 != enc.session.0
        || event.seq.to_native() != enc.seq
        || event.at_us.to_native() != enc.at_us
    {
        return Err(invalid("the archive disagrees with its envelope".into()));
    }
    if enc.key != event_key(enc.session, enc.seq) {
        return Err(invalid("the key is not event_key(session, seq)".into()));
    }
    let de = |e: rancor::Error| invalid(format!("body does not deserialize: {e}"));
    let (kind, fact) = match &event.body {
        ArchivedBody::Opened(o) => (
            EventKind::Opened,
            Fact::Opened(Box::new(rkyv::deserialize(o).map_err(de)?)),
        ),
        ArchivedBody::Refused(r) => (
            EventKind::Refused,
            Fact::Refused(Box::new(rkyv::deserialize(r).map_err(de)?)),
        ),
        ArchivedBody::Closed(c) => (
            EventKind::Closed,
            Fact::Closed(Box::new(rkyv::deserialize(c).map_err(de)?)),
        ),
        ArchivedBody::Frame(f) => (
            EventKind::Frame,
            Fact::Frame(direction(&f.dir), f.bytes.len() as u64),
        ),
        ArchivedBody::Statement(_) => (EventKind::Statement, Fact::Statement),
        ArchivedBody::CommandComplete { .. } => (EventKind::CommandComplete, Fact::Other),
        ArchivedBody::Error(_) => (EventKind::Error, Fact::Other),
        ArchivedBody::Masked(_) => (EventKind::Masked, Fact::Other),
        ArchivedBody::Verdict(v) => (
            EventKind::Verdict,
            Fact::Verdict(Box::new(VerdictKeys::new(
                v.kinds.iter().map(|k| k.as_str()),
                v.accesses.iter().map(|a| a.as_str()),
            ))),
        ),
        ArchivedBody::Revoked(r) => (EventKind::Revoked, Fact::Revoked(r.jti.as_str().to_owned())),
        // An HTTP request is the statement of an HTTP session; its bodies
        // and WebSocket messages are its frames.
        ArchivedBody::HttpRequest(_) => (EventKind::HttpRequest, Fact::Statement),
        ArchivedBody::HttpResponse(_) => (EventKind::HttpResponse, Fact::Other),
        ArchivedBody::HttpBody(b) => (
            EventKind::HttpBody,
            Fact::Frame(direction(&b.dir), b.bytes.len() as u64),
        ),
        ArchivedBody::WsMessage(m) => (
            EventKind::WsMessage,
            Fact::Frame(direction(&m.dir), m.bytes.len() as u64),
        ),
    };
    if kind != enc.kind {
        return Err(invalid(format!(
            "kind {:?} does not match the body ({kind:?})",
            enc.kind
        )));
    }
    Ok(fact)
}

fn direction(dir: &ArchivedDirection) -> Direction {
    match dir {
        ArchivedDirection::ToUpstream => Direction::ToUpstream,
        ArchivedDirection::ToClient => Direction::ToClient,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use gatehouse_core::event::{CloseReason, TlsInfo};

    use super::*;
    use crate::error::hex;

    fn sample() -> SessionSummary {
        let mut s = SessionSummary::new(SessionId([0xab; 16]), 1_700_000_000_000_000);
        s.apply(
            1_700_000_000_000_000,
            &Fact::Opened(Box::new(Opened {
                subject: "agent".into(),
                jti: "jti-1".into(),
                issuer: "gh".into(),
                purpose: "p".into(),
                ticket: Some("T-1".into()),
                target: "db".into(),
                client_user: "u".into(),
                application_name: None,
                client_addr: "127.0.0.1:1".into(),
                tls: Some(TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "X".into(),
                    direct: false,
                }),
                use_number: 1,
                max_uses: Some(2),
                expires_at: 1_800_000_000,
            })),
        );
        s.apply(1_700_000_000_000_010, &Fact::Statement);
        s.apply(
            1_700_000_000_000_020,
            &Fact::Frame(Direction::ToUpstream, 14),
        );
        s.apply(1_700_000_000_000_030, &Fact::Frame(Direction::ToClient, 6));
        s.apply(
            1_700_000_000_000_040,
            &Fact::Closed(Box::new(Closed {
                reason: CloseReason::ClientTerminated,
                bytes_to_upstream: 14,
                bytes_to_client: 6,
                statements: 1,
                duration_us: 40,
                seal: None,
            })),
        );
        s
    }

    #[test]
    fn summary_round_trips_unaligned() {
        let s = sample();
        assert_eq!((s.events, s.statements), (5, 1));
        assert_eq!((s.bytes_to_upstream, s.bytes_to_client), (14, 6));
        let bytes = s.encode();
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(SessionSummary::decode(b"k", &shifted[1..]).unwrap(), s);
        assert!(SessionSummary::decode(b"k", b"garbage").is_err());
    }

    /// The stored form of a summary is part of the on-disk format. If this
    /// fails, the layout changed: bump `STORE_FORMAT_VERSION` (and, if an
    /// event type changed, core's `FORMAT_VERSION`), then update `GOLDEN`.
    #[test]
    fn summary_layout_is_stable() {
        const GOLDEN: &str = concat!(
            "3132372e302e302e313a310000000000abababababababababababababababab",
            "00401e18240a060001000000000000006167656e74ffffff6a74692d31ffffff",
            "6768ffffffffffff70ffffffffffffff01000000542d31ffffffffff6462ffff",
            "ffffffff75ffffffffffffff0000000000000000000000008b00000088ffffff",
            "01000000544c5376312e33ff58ffffffffffffff000000000100000001000000",
            "020000000000000000d2496b0000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000010000000000000000000000000000000e00000000000000",
            "0600000000000000010000000000000028000000000000000000000000000000",
            "0000000000000000000000000000000028401e18240a06000500000000000000",
            "01000000000000000e000000000000000600000000000000",
        );
        assert_eq!(hex(&sample().encode()), GOLDEN);
    }
}
