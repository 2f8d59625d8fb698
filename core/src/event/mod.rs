//! The recorded event model.
//!
//! A session is a sequence of [`Event`]s: every frame forwarded in either
//! direction, and the semantic steps around them (opened, statement, command
//! complete, error, closed). Events are rkyv-archived; each carries the
//! BLAKE3 hash of the previous event of its session, so a session is a hash
//! chain. [`Recorder`] assigns sequence numbers, chains and encodes; the
//! store only appends what it is given.
//!
//! # On-disk format
//!
//! [`FORMAT_VERSION`] names the archived layout of [`Event`]: little-endian,
//! 32-bit relative pointers, aligned. Readers copy a stored value into an
//! aligned buffer and validate it ([`decode`]) before looking inside. Any
//! change to the types in this module is a new format version.

mod body;
mod id;
mod record;

pub use body::{
    Body, CloseReason, Closed, Direction, ErrorInfo, Frame, MaskHit, Masked, MaskedCell, Opened,
    Param, Refusal, Refused, Statement, StatementProtocol, TlsInfo,
};
pub use id::SessionId;
pub use record::{
    ArchivedEvent, DecodeError, Encoded, Event, EventKind, HASH_LEN, Hash, Recorder, decode,
    event_key, hash_of,
};

/// The archived layout version of [`Event`]. Stored once per store and
/// checked when a store is opened.
pub const FORMAT_VERSION: u32 = 1;
