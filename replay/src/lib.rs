//! Offline readers of a Gatehouse store.
//!
//! - [`transcript`]: a session rebuilt from its recorded protocol frames —
//!   statements, parameters, result rows, errors, notices, notifications,
//!   COPY data and timings — as a model ([`Transcript`]).
//! - [`render`]: a transcript as psql-like text; [`list`]: the session list.
//! - [`export`]: a transcript as one JSON document, CSV, a self-contained
//!   HTML page, or an asciicast v2 recording; [`play`]: the psql-like text
//!   replayed on a terminal at the pace the session had.
//! - [`verify`]: hash-chain verification of the recorded events, of
//!   each session's seal given the gateway's public key, and of the
//!   gateway's signed checkpoints (deleted sessions, cut tails, deleted
//!   checkpoints).
//! - [`query`]: auditors' questions — sessions by subject, grant, target,
//!   purpose, ticket, client and time; statements by relation, kind,
//!   verdict and text; masking hits by column — as tables, JSON lines or
//!   CSV.
//! - [`cli`]: opening a store directory, a sealed archive or a live
//!   gateway (`--store PATH`, `--gateway URL`) and resolving session ids for the binaries
//!   `gatehouse-replay` and `gatehouse-audit` (`verify`, `sessions`,
//!   `statements`, `masked`).
//!
//! `gatehouse-replay` commands (SOURCE is `--store DIR`, `--store FILE` for a
//! sealed archive, or `--gateway URL --token-file F [--since T] [--until T]`,
//! each with an optional `--pubkey FILE` that checks an archive's signature;
//! see [`cli`]):
//!
//! - `list SOURCE [--json]`: the recorded sessions, oldest first;
//! - `show SESSION SOURCE [--all-rows] [--json]`: a transcript as
//!   psql-like text (or the model as JSON);
//! - `export SESSION SOURCE --format json|csv|html|asciicast
//!   [--out FILE] [--all-rows]`: a transcript for other tools and people
//!   (see [`export`] for each format);
//! - `play SESSION SOURCE [--speed 4] [--max-wait 2s]`: the psql-like
//!   text written item by item with the session's pauses (sped up, each
//!   capped); no pauses with `--speed 0` or when stdout is not a terminal.
//!
//! What this crate is not: it never writes to a store, and it never opens
//! a store a gateway holds. fjall allows one process per store, so these
//! tools read a store no gateway holds (a stopped gateway's), a sealed
//! archive, or a running gateway through its admin API — which streams an
//! archive of its own store, imported into a temporary directory here —
//! and every command reads all three the same way.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod cli;
pub mod export;
pub mod list;
pub mod play;
pub mod query;
pub mod render;
pub mod text;
pub mod transcript;
pub mod verify;

pub use transcript::{Transcript, TranscriptBuilder, TranscriptOptions};

use gatehouse_core::event::SessionId;
use gatehouse_store::{Reader, StoreError};

/// Rebuilds session `id`'s transcript from the store. Events that cannot
/// be read become [`transcript::ItemKind::Unreadable`] items; only a
/// failure of the store itself is an error. `None` if the session has no
/// events and no summary.
pub fn load_transcript(
    reader: &Reader,
    id: SessionId,
    opts: TranscriptOptions,
) -> Result<Option<Transcript>, StoreError> {
    let mut builder = TranscriptBuilder::new(id, opts);
    let mut any = false;
    for event in reader.events(id) {
        any = true;
        match event {
            Ok(event) => builder.push(&event),
            Err(e @ StoreError::Corrupt { .. }) => builder.unreadable(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if !any {
        // Nothing to rebuild; the summary still says who and when.
        let Some(summary) = reader.session(id)? else {
            return Ok(None);
        };
        builder.summary_only(&summary);
    }
    Ok(Some(builder.finish()))
}
