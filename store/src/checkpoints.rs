//! The `checkpoints` keyspace's write side: signed checkpoints stored
//! beside the events, outside the writer thread's group commit.
//!
//! A checkpoint is written once a minute or so, by one task of the
//! gateway; it needs none of the commit path's ordering or summaries. fjall
//! keyspaces are safe to write from any thread, so [`CheckpointWriter`]
//! inserts directly and persists with the store's [`Durability`]. Every
//! write goes through fjall's one journal, after the batches committed
//! before it: a checkpoint never reaches the disk without the events it
//! covers (which were committed before it was taken).

use std::sync::Arc;

use fjall::PersistMode;

use crate::keys::{Db, checkpoint_key};
use crate::writer::Shared;
use crate::{Durability, StoreError};

/// Writes signed checkpoints into the store's `checkpoints` keyspace.
///
/// Like a [`Reader`](crate::Reader) it holds the database it was made
/// from, so it keeps working after [`Store::shutdown`](crate::Store::shutdown)
/// (the gateway's last checkpoint is written after the store is flushed)
/// and the directory stays locked until it is dropped. Take one per
/// checkpoint, not for the gateway's lifetime: a recovery after a failure
/// waits for it.
pub struct CheckpointWriter {
    db: Arc<Db>,
    shared: Arc<Shared>,
    durability: Durability,
}

impl CheckpointWriter {
    pub(crate) fn new(db: Arc<Db>, shared: Arc<Shared>, durability: Durability) -> Self {
        CheckpointWriter {
            db,
            shared,
            durability,
        }
    }

    /// Stores checkpoint `number`'s signed bytes (the store does not look
    /// inside them). With [`Durability::Fsync`] it is fsynced before this
    /// returns; with [`Durability::Os`] it is written to the operating
    /// system and fsynced with the store's next sync.
    ///
    /// Refused with [`StoreError::CheckpointExists`] when that number is
    /// already stored (checkpoints are never overwritten), and with the
    /// poison error when the store has failed. A failed write or fsync
    /// poisons the store like a failed batch: the disk under the events'
    /// journal failed, and a later fsync might wrongly report success.
    pub fn write(&self, number: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let key = checkpoint_key(number);
        if self.db.checkpoints.contains_key(key)? {
            return Err(StoreError::CheckpointExists(number));
        }
        let mode = match self.durability {
            Durability::Fsync => PersistMode::SyncData,
            Durability::Os { .. } => PersistMode::Buffer,
        };
        self.db
            .checkpoints
            .insert(key, bytes)
            .and_then(|()| self.db.db.persist(mode))
            .map_err(|e| {
                let cause = self
                    .shared
                    .poison(format!("writing checkpoint #{number} failed: {e}"));
                tracing::error!(%cause, "a checkpoint write failed; the store stops");
                StoreError::Poisoned { cause }
            })
    }
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("path", &self.db.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}
