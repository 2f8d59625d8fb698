//! What the two binaries share: opening a store for reading and resolving
//! a session id typed by a person, with errors that say what to do.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_core::event::SessionId;
use gatehouse_store::{Reader, StoreError};

/// Opens the store in `dir` for reading.
///
/// fjall allows one process per store, so this fails while a gateway runs
/// on it; the message says so and what to do instead.
pub fn open_store(dir: &Path) -> Result<Reader> {
    if !dir.exists() {
        bail!("store directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Reader::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow!(
            "the store at {} is in use by a running gateway; stop it or point at an exported copy",
            dir.display()
        ),
        StoreError::NotFound { .. } => anyhow!(
            "{} holds no Gatehouse store (expected the directory the gateway's [store] dir names)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store at {}", dir.display())),
    })
}

/// The one session whose id starts with `prefix` (hex digits, hyphens
/// ignored, any case).
pub fn resolve_session(reader: &Reader, prefix: &str) -> Result<SessionId> {
    let matches = reader
        .find_session_prefix(prefix)
        .with_context(|| format!("cannot look up session {prefix:?}"))?;
    match matches.as_slice() {
        [] => bail!("no session id starts with {prefix:?}"),
        [one] => Ok(*one),
        many => {
            const SHOWN: usize = 5;
            let mut list: Vec<String> = many.iter().take(SHOWN).map(|id| id.to_string()).collect();
            if many.len() > SHOWN {
                list.push(format!("… {} more", many.len() - SHOWN));
            }
            bail!(
                "session prefix {prefix:?} is ambiguous: it matches {} sessions ({}); type more of the id",
                many.len(),
                list.join(", ")
            )
        }
    }
}
