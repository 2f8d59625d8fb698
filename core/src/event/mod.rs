//! The recorded event model.
//!
//! A session is a sequence of [`Event`]s: every frame forwarded in either
//! direction, and the semantic steps around them (opened, statement, command
//! complete, error, closed). Events are rkyv-archived; each carries the
//! BLAKE3 hash of the previous event of its session, so a session is a hash
//! chain. When the gateway has a seal key, the `Closed` event is sealed:
//! signed over its place and the chain before it ([`seal_message`]). [`Recorder`]
//! assigns sequence numbers, chains, seals and encodes; the store only
//! appends what it is given. [`sign_checkpoint`] signs, with the same key,
//! a checkpoint over many sessions' chain heads, so that a deleted whole
//! session or a cut tail is detectable too (see [`Checkpoint`] for what it
//! covers and its encoding). [`sign_prune`] signs a [`PruneRecord`]: the
//! sessions retention removed on purpose, so that their absence verifies.
//!
//! # On-disk format
//!
//! [`FORMAT_VERSION`] names the archived layout of [`Event`]: little-endian,
//! 32-bit relative pointers, aligned. Readers copy a stored value into an
//! aligned buffer and validate it ([`decode`]) before looking inside. Any
//! change to the types in this module is a new format version.

pub mod archive;
mod body;
mod checkpoint;
mod fields;
mod id;
mod prune;
mod record;
pub mod runs;
mod seal;

pub use body::{
    Body, CloseReason, Closed, Decision, Direction, ErrorInfo, Frame, HttpBody, HttpHeader,
    HttpRequest, HttpResponse, MaskHit, Masked, MaskedCell, Opened, Param, Refusal, Refused,
    Revoked, Statement, StatementProtocol, TlsInfo, Verdict, WsMessage,
};
pub use checkpoint::{
    CHECKPOINT_CONTEXT, CHECKPOINT_VERSION, Checkpoint, CheckpointError, Covered,
    decode_checkpoint, sign_checkpoint, verify_checkpoint,
};
pub use id::SessionId;
pub use prune::{
    MAX_PRUNED, PRUNE_CONTEXT, PRUNE_VERSION, PruneError, PruneRecord, decode_prune, sign_prune,
    verify_prune,
};
pub use record::{
    ArchivedEvent, DecodeError, Encoded, Event, EventKind, HASH_LEN, Hash, Recorder, decode,
    encode, encode_into, event_key, hash_of,
};
pub use seal::{SIGNATURE_LEN, Seal, SealError, SealKey, SealPublicKey, seal_message, verify_seal};

/// The archived layout version of [`Event`]. Stored once per store and
/// checked when a store is opened.
///
/// 2: [`Closed`] carries a [`Seal`].
/// 3: [`Body::Verdict`], [`Body::Revoked`].
/// 4: the HTTP bodies ([`Body::HttpRequest`] …) and
/// [`StatementProtocol::Http`], appended: the archived [`Event`] keeps its
/// size and every format-3 event reads the same, so a format-3 store is
/// read as format 4 ([`FORMAT_COMPATIBLE`]).
pub const FORMAT_VERSION: u32 = 4;

/// Older formats whose events read unchanged as [`FORMAT_VERSION`]: a store
/// or archive written in one of them is read, and a store is re-stamped.
pub const FORMAT_COMPATIBLE: &[u32] = &[3];
