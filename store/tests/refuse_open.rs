//! Opens that must fail: a directory already held, an unknown format, a
//! directory with no store.

mod common;

use common::*;
use gatehouse_store::{Reader, STORE_FORMAT_VERSION, Store, StoreError, StoreOptions};

#[test]
fn second_open_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), fsync()).unwrap();

    let err = Store::open(dir.path(), fsync()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    let err = Reader::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");

    // A reader of the open store keeps the directory locked after shutdown.
    let reader = store.reader().unwrap();
    store.shutdown().unwrap();
    assert!(matches!(
        Store::open(dir.path(), fsync()),
        Err(StoreError::Locked { .. })
    ));
    drop(reader);
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();
}

/// Rewrites one of the store's format versions, as a store from another
/// build would have it.
fn stamp(dir: &std::path::Path, key: &str, version: u32) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    meta.insert(key, version.to_be_bytes()).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

/// A store written by an older build (here: before verdicts, event format
/// 2) is not read as if its events had the current layout.
#[test]
fn a_store_of_an_older_event_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();
    assert_eq!(gatehouse_core::event::FORMAT_VERSION, 4);
    stamp(dir.path(), "event_format", 2);
    let err = Reader::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownFormat {
                what: "event",
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Format 4 only appended HTTP events: a format-3 store is read as it is
/// (a reader leaves it untouched) and the gateway re-stamps it.
#[test]
fn a_format_3_store_is_read_and_restamped_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();
    stamp(dir.path(), "event_format", 3);
    drop(Reader::open(dir.path()).unwrap());
    let version = |dir: &std::path::Path| {
        let db = fjall::Database::builder(dir).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let v = meta.get("event_format").unwrap().unwrap();
        u32::from_be_bytes(v.as_ref().try_into().unwrap())
    };
    assert_eq!(version(dir.path()), 3, "a reader must not write");
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();
    assert_eq!(version(dir.path()), 4);
}

#[test]
fn unknown_format_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();

    stamp(dir.path(), "event_format", 999);
    let err = Store::open(dir.path(), fsync()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownFormat {
                what: "event",
                found: 999,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 999"), "{err}");
    assert!(matches!(
        Reader::open(dir.path()),
        Err(StoreError::UnknownFormat { .. })
    ));

    stamp(
        dir.path(),
        "event_format",
        gatehouse_core::event::FORMAT_VERSION,
    );
    stamp(dir.path(), "store_format", STORE_FORMAT_VERSION + 1);
    let err = Store::open(dir.path(), fsync()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownFormat { what: "store", .. }),
        "{err:?}"
    );

    stamp(dir.path(), "store_format", STORE_FORMAT_VERSION);
    Store::open(dir.path(), fsync())
        .unwrap()
        .shutdown()
        .unwrap();
}

#[test]
fn reading_a_directory_without_a_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        Reader::open(&missing),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!missing.exists());
    assert!(matches!(
        Reader::open(dir.path()),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for opts in [
        StoreOptions {
            queue_capacity: 0,
            ..fsync()
        },
        StoreOptions {
            max_batch: 0,
            ..fsync()
        },
        os(0),
    ] {
        assert!(matches!(
            Store::open(dir.path(), opts),
            Err(StoreError::InvalidOption(_))
        ));
    }
}
