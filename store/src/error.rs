//! The store's one error type.

use std::path::PathBuf;
use std::sync::Arc;

use gatehouse_core::event::SessionId;

/// What went wrong in the store.
///
/// Variants say who is at fault: the environment (another process holds the
/// directory, the disk failed), the data on disk (unknown format, corrupt
/// value), or the caller (an event out of sequence).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another open handle in this one) holds the store
    /// directory: fjall allows one open database per directory.
    #[error(
        "store {} is in use by another process (a running gateway holds it; \
         stop it, or read an exported archive instead)",
        path.display()
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },

    /// The directory holds no Gatehouse store (when opening for reading only).
    #[error("no Gatehouse store at {}", path.display())]
    NotFound {
        /// The directory that was looked at.
        path: PathBuf,
    },

    /// The store was written in a format this build does not read.
    #[error(
        "store {} has {what} format version {found}, this build reads version {expected}",
        path.display()
    )]
    UnknownFormat {
        /// The store directory.
        path: PathBuf,
        /// Which format: `event` (the archived events) or `store` (keys and
        /// summaries).
        what: &'static str,
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },

    /// A stored key or value could not be read back.
    #[error("corrupt {what} in the store at key {key}: {reason}")]
    Corrupt {
        /// What was being read (`event`, `session summary`, …).
        what: &'static str,
        /// The key, in hex.
        key: String,
        /// Why it could not be read.
        reason: String,
    },

    /// The storage engine failed.
    #[error("storage engine error: {0}")]
    Engine(#[source] fjall::Error),

    /// An earlier write or fsync failed. The writer stops at the first
    /// failure: that batch and everything submitted after it is refused, so
    /// nothing is ever acknowledged that may not be on disk.
    #[error("the store stopped accepting events after a failed write: {cause}")]
    Poisoned {
        /// The first failure.
        cause: Arc<str>,
    },

    /// The store was shut down; nothing more is accepted.
    #[error("the store is shut down")]
    Closed,

    /// The caller handed over an event that is not what its [`Encoded`]
    /// fields claim (wrong key, undecodable bytes, kind mismatch).
    ///
    /// [`Encoded`]: gatehouse_core::event::Encoded
    #[error("invalid event {session} #{seq}: {reason}")]
    InvalidEvent {
        /// The session the event claims to belong to.
        session: SessionId,
        /// The sequence number it claims.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// An event does not continue its session: a gap, a repeat (which would
    /// overwrite a recorded event), or an event after the session's close.
    #[error("event {session} #{got} out of sequence: {reason}")]
    OutOfSequence {
        /// The session.
        session: SessionId,
        /// The sequence number the event has.
        got: u64,
        /// What the store expected instead.
        reason: String,
    },

    /// A checkpoint under this number is already stored: checkpoints,
    /// like events, are never overwritten.
    #[error("checkpoint #{0} is already in the store")]
    CheckpointExists(u64),

    /// A session id prefix typed by a person is not hexadecimal.
    #[error("{0:?} is not a session id prefix (expected hex digits, hyphens allowed)")]
    InvalidIdPrefix(String),

    /// An option is out of range.
    #[error("invalid store option: {0}")]
    InvalidOption(&'static str),

    /// A sealed archive cannot be read: not an archive, malformed at an
    /// offset, truncated, or altered (its hash does not match).
    #[error("{0}")]
    Archive(#[from] gatehouse_core::event::archive::ArchiveError),

    /// Reading or writing an archive's bytes failed (the file, the
    /// connection).
    #[error("archive I/O: {0}")]
    ArchiveIo(#[source] std::io::Error),

    /// Creating the store directory failed, or similar filesystem trouble
    /// outside the storage engine.
    #[error("store directory {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Maps a fjall error, naming the directory for the lock case.
    pub(crate) fn engine(path: &std::path::Path, e: fjall::Error) -> Self {
        match e {
            fjall::Error::Locked => StoreError::Locked { path: path.into() },
            e => StoreError::Engine(e),
        }
    }

    /// A [`StoreError::Corrupt`] for the value under `key`.
    pub(crate) fn corrupt(what: &'static str, key: &[u8], reason: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            key: hex(key),
            reason: reason.to_string(),
        }
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        StoreError::Engine(e)
    }
}

/// Lower-case hex of `bytes`, for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
