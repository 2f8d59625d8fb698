//! The on-disk layout (described in the crate docs): keyspace names, meta
//! keys, and the format version check.

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use gatehouse_core::event::{FORMAT_COMPATIBLE, FORMAT_VERSION};

use crate::StoreError;

/// The version of the store's own layout: keyspaces, keys, and the encoding
/// of session summaries and grant use counts. Stored in the `meta` keyspace
/// next to the event format ([`FORMAT_VERSION`]) and checked on open.
///
/// 2: session summaries hold the sealed `Closed` of event format 2.
/// 3: the `events` keyspace also holds runs of a session's events under
/// one key ([`gatehouse_core::event::runs`]).
pub const STORE_FORMAT_VERSION: u32 = 3;

/// Older store formats this build reads unchanged: a format-2 store's
/// events are all single entries, which format 3 still writes.
pub const STORE_FORMAT_COMPATIBLE: [u32; 1] = [2];

const EVENTS: &str = "events";
const SESSIONS: &str = "sessions";
const GRANT_USES: &str = "grant_uses";
const REVOCATIONS: &str = "revocations";
const CHECKPOINTS: &str = "checkpoints";
const PRUNES: &str = "prunes";
const EXPORTS: &str = "exports";
const INDEX: &str = "index";
const META: &str = "meta";

const META_EVENT_FORMAT: &[u8] = b"event_format";
const META_STORE_FORMAT: &[u8] = b"store_format";
/// Present (u32 BE, [`INDEX_FORMAT`]) once the `index` keyspace covers
/// every event in the store.
const META_INDEX_FORMAT: &[u8] = b"index_format";
/// 1 when the gateway that holds the store runs with
/// `[store.retention] require_export`, 0 otherwise (absent: never said).
const META_REQUIRE_EXPORT: &[u8] = b"require_export";
/// The version of the `index` keyspace's keys ([`crate::index`]).
const INDEX_FORMAT: u32 = 1;

/// The file fjall writes first when it creates a database; its absence means
/// the directory holds no database yet.
const FJALL_MARKER: &str = "version";

/// An open database and its keyspaces.
pub(crate) struct Db {
    pub(crate) db: Database,
    pub(crate) events: Keyspace,
    pub(crate) sessions: Keyspace,
    pub(crate) grant_uses: Keyspace,
    /// Revoked grants: `jti` → when (µs, big-endian). Added in event
    /// format 3; a store without it gets it empty on open.
    pub(crate) revocations: Keyspace,
    /// Signed checkpoints: number (u64 BE) → the checkpoint's bytes.
    /// Added after event format 3 without a format change: a store
    /// without it gets it empty on open (older builds ignore it).
    pub(crate) checkpoints: Keyspace,
    /// Signed prune records: number (u64 BE) → the record's bytes
    /// ([`gatehouse_core::event::PruneRecord`]). Added like `checkpoints`.
    pub(crate) prunes: Keyspace,
    /// What `gatehouse store export` exported: number (u64 BE) → an
    /// [`ExportRecord`](crate::ExportRecord). Added like `checkpoints`.
    pub(crate) exports: Keyspace,
    /// Secondary indexes ([`crate::index`]). Added after store format 2
    /// without a format change: a store without them gets them built
    /// once, on open (see `Db::ensure_index`).
    pub(crate) index: Keyspace,
    pub(crate) path: PathBuf,
}

impl Db {
    /// Opens the store in `dir`. With `create`, a missing store is created
    /// and stamped with the current format versions; without, a directory
    /// with no store is [`StoreError::NotFound`].
    pub(crate) fn open(dir: &Path, create: bool) -> Result<Db, StoreError> {
        let path = dir.to_path_buf();
        if !create && !dir.join(FJALL_MARKER).is_file() {
            return Err(StoreError::NotFound { path });
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let db = Database::builder(dir)
            .open()
            .map_err(|e| StoreError::engine(dir, e))?;
        let keyspace = |name| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(StoreError::from)
        };
        let events = keyspace(EVENTS)?;
        let sessions = keyspace(SESSIONS)?;
        let grant_uses = keyspace(GRANT_USES)?;
        let revocations = keyspace(REVOCATIONS)?;
        let checkpoints = keyspace(CHECKPOINTS)?;
        let prunes = keyspace(PRUNES)?;
        let exports = keyspace(EXPORTS)?;
        let index = keyspace(INDEX)?;
        let meta = keyspace(META)?;

        let found = (
            read_version(&meta, META_EVENT_FORMAT)?,
            read_version(&meta, META_STORE_FORMAT)?,
        );
        match found {
            (Some(event), Some(store)) => {
                let event_reads = event == FORMAT_VERSION || FORMAT_COMPATIBLE.contains(&event);
                let store_reads =
                    store == STORE_FORMAT_VERSION || STORE_FORMAT_COMPATIBLE.contains(&store);
                if event_reads && store_reads {
                    // It reads unchanged as the current formats. The
                    // gateway (which creates) stamps the new ones, so that
                    // an older gateway never reads what it does not know
                    // (events of a newer kind, runs of events); readers
                    // leave an auditor's copy untouched.
                    if create && (event, store) != (FORMAT_VERSION, STORE_FORMAT_VERSION) {
                        stamp(&db, &meta)?;
                    }
                } else if !event_reads {
                    check(&path, "event", event, FORMAT_VERSION)?;
                } else {
                    check(&path, "store", store, STORE_FORMAT_VERSION)?;
                }
            }
            (None, None) if !create => return Err(StoreError::NotFound { path }),
            (None, None) if events.is_empty()? && sessions.is_empty()? => stamp(&db, &meta)?,
            _ => {
                return Err(StoreError::corrupt(
                    "format version",
                    META_EVENT_FORMAT,
                    "the store holds data but its format versions are missing",
                ));
            }
        }
        let db = Db {
            db,
            events,
            sessions,
            grant_uses,
            revocations,
            checkpoints,
            prunes,
            exports,
            index,
            path,
        };
        db.ensure_index(&meta)?;
        Ok(db)
    }

    /// Makes sure the `index` keyspace covers the store: an empty store is
    /// marked indexed; a store written by an older build (no marker) gets
    /// its indexes built from its summaries and events, once, logged.
    fn ensure_index(&self, meta: &Keyspace) -> Result<(), StoreError> {
        match read_version(meta, META_INDEX_FORMAT)? {
            Some(INDEX_FORMAT) => return Ok(()),
            Some(found) => {
                return Err(StoreError::UnknownFormat {
                    path: self.path.clone(),
                    what: "index",
                    found,
                    expected: INDEX_FORMAT,
                });
            }
            None => {}
        }
        if !(self.events.is_empty()? && self.sessions.is_empty()?) {
            self.rebuild_index()?;
        }
        meta.insert(META_INDEX_FORMAT, &INDEX_FORMAT.to_be_bytes()[..])?;
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    /// Builds the secondary indexes from the summaries and events (see
    /// `crate::index::backfill`), logged.
    pub(crate) fn rebuild_index(&self) -> Result<(), StoreError> {
        tracing::info!(path = %self.path.display(), "building the store's secondary indexes (once)");
        let started = std::time::Instant::now();
        let entries = crate::index::backfill(self)?;
        tracing::info!(
            path = %self.path.display(),
            entries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "secondary indexes built"
        );
        Ok(())
    }
}

impl Db {
    /// Proves the database takes writes again: rewrites the format
    /// versions (unchanged) and fsyncs.
    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        let meta = self.db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(stamp(&self.db, &meta)?)
    }

    /// Remembers whether pruning this store needs an export first, and
    /// fsyncs it.
    pub(crate) fn set_require_export(&self, yes: bool) -> Result<(), StoreError> {
        let meta = self.db.keyspace(META, KeyspaceCreateOptions::default)?;
        meta.insert(META_REQUIRE_EXPORT, [u8::from(yes)])?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Whether the gateway last said pruning this store needs an export
    /// first (`false` if it never said).
    pub(crate) fn require_export(&self) -> Result<bool, StoreError> {
        let meta = self.db.keyspace(META, KeyspaceCreateOptions::default)?;
        Ok(meta
            .get(META_REQUIRE_EXPORT)?
            .is_some_and(|v| v.as_ref() != [0]))
    }
}

/// Writes the current format versions and fsyncs.
fn stamp(db: &Database, meta: &Keyspace) -> Result<(), fjall::Error> {
    let mut batch = db.batch();
    batch.insert(meta, META_EVENT_FORMAT, &FORMAT_VERSION.to_be_bytes()[..]);
    batch.insert(
        meta,
        META_STORE_FORMAT,
        &STORE_FORMAT_VERSION.to_be_bytes()[..],
    );
    batch.commit()?;
    db.persist(PersistMode::SyncAll)
}

fn read_version(meta: &Keyspace, key: &[u8]) -> Result<Option<u32>, StoreError> {
    let Some(value) = meta.get(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 4] = value
        .as_ref()
        .try_into()
        .map_err(|_| StoreError::corrupt("format version", key, "not 4 bytes"))?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

fn check(path: &Path, what: &'static str, found: u32, expected: u32) -> Result<(), StoreError> {
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::UnknownFormat {
            path: path.into(),
            what,
            found,
            expected,
        })
    }
}

/// Decodes a `grant_uses` value.
pub(crate) fn decode_uses(key: &[u8], value: &[u8]) -> Result<u32, StoreError> {
    let bytes: [u8; 4] = value
        .try_into()
        .map_err(|_| StoreError::corrupt("grant use count", key, "not 4 bytes"))?;
    Ok(u32::from_be_bytes(bytes))
}

/// The `checkpoints` key of checkpoint `number`.
pub(crate) fn checkpoint_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

/// Decodes a `checkpoints` key.
pub(crate) fn decode_checkpoint_key(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::corrupt("checkpoint key", key, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}
