//! Events, their encoding, and the per-session hash chain.

use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::{Body, SealKey, SessionId};

/// Bytes in a chain hash (BLAKE3-256).
pub const HASH_LEN: usize = 32;

/// A chain hash.
pub type Hash = [u8; HASH_LEN];

/// One recorded event.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Event {
    /// The session it belongs to.
    pub session: SessionId,
    /// Its position in the session, from 0, without gaps.
    pub seq: u64,
    /// When it happened, microseconds since the Unix epoch.
    pub at_us: i64,
    /// BLAKE3 of the previous event's encoding; all zeros for `seq == 0`.
    pub prev: Hash,
    /// What happened.
    pub body: Body,
}

/// The kind of an event, without its payload: lets the store decide what
/// to index without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`Body::Opened`].
    Opened,
    /// [`Body::Refused`].
    Refused,
    /// [`Body::Frame`].
    Frame,
    /// [`Body::Statement`].
    Statement,
    /// [`Body::CommandComplete`].
    CommandComplete,
    /// [`Body::Error`].
    Error,
    /// [`Body::Closed`].
    Closed,
    /// [`Body::Masked`].
    Masked,
    /// [`Body::Verdict`].
    Verdict,
    /// [`Body::Revoked`].
    Revoked,
    /// [`Body::HttpRequest`].
    HttpRequest,
    /// [`Body::HttpResponse`].
    HttpResponse,
    /// [`Body::HttpBody`].
    HttpBody,
    /// [`Body::WsMessage`].
    WsMessage,
}

impl Body {
    /// This body's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Body::Opened(_) => EventKind::Opened,
            Body::Refused(_) => EventKind::Refused,
            Body::Frame(_) => EventKind::Frame,
            Body::Statement(_) => EventKind::Statement,
            Body::CommandComplete { .. } => EventKind::CommandComplete,
            Body::Error(_) => EventKind::Error,
            Body::Closed(_) => EventKind::Closed,
            Body::Masked(_) => EventKind::Masked,
            Body::Verdict(_) => EventKind::Verdict,
            Body::Revoked(_) => EventKind::Revoked,
            Body::HttpRequest(_) => EventKind::HttpRequest,
            Body::HttpResponse(_) => EventKind::HttpResponse,
            Body::HttpBody(_) => EventKind::HttpBody,
            Body::WsMessage(_) => EventKind::WsMessage,
        }
    }
}

/// An event ready to append: its store key and its archived bytes.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// [`event_key`] of the event.
    pub key: [u8; 24],
    /// The rkyv archive of the [`Event`].
    pub bytes: AlignedVec,
    /// What kind of event it is.
    pub kind: EventKind,
    /// The event's session.
    pub session: SessionId,
    /// The event's sequence number.
    pub seq: u64,
    /// The event's time.
    pub at_us: i64,
}

/// The store key of an event: session id, then the sequence number big-endian,
/// so one session is one contiguous, ordered range.
pub fn event_key(session: SessionId, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    let (id, n) = key.split_at_mut(16);
    id.copy_from_slice(&session.0);
    n.copy_from_slice(&seq.to_be_bytes());
    key
}

/// The chain hash of an encoded event.
pub fn hash_of(encoded: &[u8]) -> Hash {
    *blake3::hash(encoded).as_bytes()
}

/// Numbers, chains, seals and encodes the events of one session.
///
/// One per session, owned by whoever drives the session. Events must be
/// handed to the store in the order they were recorded.
#[derive(Debug)]
pub struct Recorder {
    session: SessionId,
    next_seq: u64,
    prev: Hash,
    seal_key: Option<Arc<SealKey>>,
}

impl Recorder {
    /// A recorder for a new session that does not seal it.
    pub fn new(session: SessionId) -> Self {
        Self::sealed_with(session, None)
    }

    /// A recorder for a new session; with a key, every [`Body::Closed`] it
    /// records gets a [`Seal`](super::Seal) over the chain before it.
    pub fn sealed_with(session: SessionId, seal_key: Option<Arc<SealKey>>) -> Self {
        Recorder {
            session,
            next_seq: 0,
            prev: [0; HASH_LEN],
            seal_key,
        }
    }

    /// The session this recorder numbers.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Events recorded so far.
    pub fn recorded(&self) -> u64 {
        self.next_seq
    }

    /// Numbers, chains and encodes `body` as happening at `at_us`.
    /// A `Closed` body is sealed when the recorder has a seal key (its
    /// `seal` replaced); without one it is recorded as given.
    pub fn record(&mut self, at_us: i64, mut body: Body) -> Encoded {
        let kind = body.kind();
        if let (Body::Closed(closed), Some(key)) = (&mut body, &self.seal_key) {
            closed.seal = Some(key.seal(self.session, self.next_seq, &self.prev, closed));
        }
        let event = Event {
            session: self.session,
            seq: self.next_seq,
            at_us,
            prev: self.prev,
            body,
        };
        let bytes = encode(&event);
        self.prev = hash_of(&bytes);
        let seq = self.next_seq;
        self.next_seq += 1;
        Encoded {
            key: event_key(self.session, seq),
            bytes,
            kind,
            session: self.session,
            seq,
            at_us,
        }
    }
}

/// The stored encoding (rkyv archive) of an event. [`Recorder::record`]
/// uses it; on its own it serves tools and tests that rewrite events.
pub fn encode(event: &Event) -> AlignedVec {
    // Sized up front for the whole archive: growing the buffer costs a
    // reallocation and a copy per event on the hot path.
    let mut bytes = AlignedVec::with_capacity(
        size_of::<ArchivedEvent>() + body_size_hint(&event.body) + ALIGN_SLACK,
    );
    encode_into(event, &mut bytes);
    bytes
}

/// Padding rkyv may put between an archive's parts.
const ALIGN_SLACK: usize = 32;

/// [`encode`] into `out`, replacing what it held: a caller that encodes
/// many events into one buffer allocates nothing once the buffer is large
/// enough. The bytes are the same as [`encode`]'s.
pub fn encode_into(event: &Event, out: &mut AlignedVec) {
    out.clear();
    if let Err(e) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(event, &mut *out) {
        // Serializing into a growable in-memory buffer has no failure
        // mode for these types (no shared pointers, no size limits).
        unreachable!("rkyv serialization into memory failed: {e}")
    }
}

/// Roughly the archived size of a body's variable parts.
fn body_size_hint(body: &Body) -> usize {
    match body {
        Body::Frame(f) => f.bytes.len(),
        Body::Statement(s) => {
            s.text.len()
                + s.params
                    .iter()
                    .map(|p| p.value.as_ref().map_or(0, |v| v.len()) + 16)
                    .sum::<usize>()
        }
        Body::HttpBody(b) => b.bytes.len(),
        Body::WsMessage(m) => m.bytes.len(),
        _ => 256,
    }
}

/// A stored value that is not a valid archived [`Event`].
#[derive(Debug, thiserror::Error)]
#[error("stored event is not a valid archive: {0}")]
pub struct DecodeError(String);

/// Validates and deserializes a stored event. The bytes are copied into an
/// aligned buffer first: stored values carry no alignment guarantee.
pub fn decode(stored: &[u8]) -> Result<Event, DecodeError> {
    let mut aligned = AlignedVec::<16>::with_capacity(stored.len());
    aligned.extend_from_slice(stored);
    rkyv::from_bytes::<Event, rancor::Error>(&aligned).map_err(|e| DecodeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, Frame};
    use bytes::Bytes;

    /// Format 4 appended variants to [`Body`] and promised that format-3
    /// events read unchanged: that holds only while the archived event
    /// keeps the size (and so the root position) format 3 gave it.
    #[test]
    fn archived_event_keeps_format_3_size() {
        assert_eq!(size_of::<ArchivedEvent>(), 200);
    }

    fn frame(b: &'static [u8]) -> Body {
        Body::Frame(Frame {
            dir: Direction::ToUpstream,
            bytes: Bytes::from_static(b),
        })
    }

    #[test]
    fn recorder_numbers_and_chains() {
        let id = SessionId([7; 16]);
        let mut rec = Recorder::new(id);
        let a = rec.record(10, frame(b"Q\0\0\0\x05\0"));
        let b = rec.record(
            11,
            Body::CommandComplete {
                tag: "SELECT 1".into(),
            },
        );
        assert_eq!((a.seq, b.seq), (0, 1));
        let a_ev = decode(&a.bytes).unwrap();
        let b_ev = decode(&b.bytes).unwrap();
        assert_eq!(a_ev.prev, [0; 32]);
        assert_eq!(b_ev.prev, hash_of(&a.bytes));
        assert_eq!(a_ev.body, frame(b"Q\0\0\0\x05\0"));
        assert_eq!(&a.key[..16], &id.0);
        assert_eq!(&b.key[16..], &1u64.to_be_bytes());
    }

    #[test]
    fn recorder_seals_closed_over_its_prev() {
        use crate::event::{CloseReason, Closed, SealKey, verify_seal};
        let key = Arc::new(SealKey::from_secret_bytes(&[5; 32]));
        let id = SessionId([7; 16]);
        let mut rec = Recorder::sealed_with(id, Some(key.clone()));
        let a = rec.record(1, frame(b"X\0\0\0\x04"));
        let closed = Closed {
            reason: CloseReason::ClientTerminated,
            bytes_to_upstream: 5,
            bytes_to_client: 0,
            statements: 0,
            duration_us: 1,
            seal: None,
        };
        let c = rec.record(2, Body::Closed(closed));
        let ev = decode(&c.bytes).unwrap();
        assert_eq!(ev.prev, hash_of(&a.bytes));
        let Body::Closed(mut closed) = ev.body else {
            panic!("not closed: {:?}", ev.body)
        };
        let public = key.public_key();
        assert_eq!(verify_seal(&public, id, 1, &ev.prev, &closed), Ok(()));
        closed.statements = 1;
        assert!(verify_seal(&public, id, 1, &ev.prev, &closed).is_err());
        // Without a key, Closed is recorded unsealed.
        let mut plain = Recorder::new(id);
        let c = plain.record(
            2,
            Body::Closed(Closed {
                reason: CloseReason::Shutdown,
                bytes_to_upstream: 0,
                bytes_to_client: 0,
                statements: 0,
                duration_us: 0,
                seal: None,
            }),
        );
        assert!(matches!(
            decode(&c.bytes).unwrap().body,
            Body::Closed(Closed { seal: None, .. })
        ));
    }

    #[test]
    fn encode_sizes_its_buffer_and_encode_into_writes_the_same_bytes() {
        let mut rec = Recorder::new(SessionId([3; 16]));
        let mut reused = AlignedVec::new();
        for size in [0usize, 1, 64, 1000, 16 * 1024] {
            let body = Body::Frame(Frame {
                dir: Direction::ToClient,
                bytes: Bytes::from(vec![7u8; size]),
            });
            let e = rec.record(5, body.clone());
            let event = decode(&e.bytes).unwrap();
            let fresh = encode(&event);
            assert_eq!(fresh.as_slice(), e.bytes.as_slice());
            // One allocation: the hint covers the whole archive.
            assert!(
                fresh.len() <= size_of::<ArchivedEvent>() + size + ALIGN_SLACK,
                "{size}: {} bytes",
                fresh.len()
            );
            reused.extend_from_slice(b"left over from before");
            encode_into(&event, &mut reused);
            assert_eq!(reused.as_slice(), e.bytes.as_slice());
        }
    }

    #[test]
    fn decode_rejects_garbage_and_unaligned_input_is_fine() {
        assert!(decode(b"not an event").is_err());
        assert!(decode(&[]).is_err());
        let mut rec = Recorder::new(SessionId([1; 16]));
        let e = rec.record(1, frame(b"X\0\0\0\x04"));
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&e.bytes);
        assert!(decode(&shifted[1..]).is_ok());
    }
}
