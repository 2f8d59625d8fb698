//! `GET /store/archive?since=…&until=…`: a sealed archive of a time range,
//! streamed from the running gateway's own store handle, so that replay
//! and audit read a live gateway without a second process opening the
//! fjall directory.
//!
//! The export runs on a blocking thread over one snapshot of the store
//! (`Reader::export_archive`) and sends the bytes in 64 KiB chunks as they
//! are written; nothing holds the whole archive. The trailer's hash is
//! signed with the gateway's seal key, if it has one. A failure half-way
//! (the store, the client going away) ends the body early: the client gets
//! a truncated archive, which every reader refuses, and the log says why.
//! The export holds a reader of the store while it streams, so a store
//! recovering in place from a failed write waits until it is done (or the
//! client goes away).
//!
//! Once the whole archive (signature block included) is handed to the
//! response, when the request asked with `record=1` (`gatehouse store
//! export --gateway` does; the replay and audit tools, which fetch an
//! archive only to read it, do not), its range, hash and time (less a
//! second of slack) are recorded in the store's `exports` keyspace, which `gatehouse store
//! prune` checks with `[store.retention] require_export`. "Handed to the
//! response" is as far as the gateway can see: a client that loses the
//! last chunks after that still counts as having exported.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gatehouse_core::event::archive::{encode_signature, sign};
use gatehouse_store::ExportRecord;
use hyper::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::routes::{AdminBody, Answer, State, error, percent_decode};

/// Bytes sent per chunk.
const CHUNK: usize = 64 << 10;
/// Chunks buffered between the export thread and the connection.
const CHUNKS_QUEUED: usize = 8;

/// A time as the CLIs take it: RFC 3339 (`2026-11-18T00:00:00Z`) or a
/// duration ago (`7d`, `12h`), as microseconds since the Unix epoch.
pub(crate) fn parse_time(s: &str, now: SystemTime) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).map_err(|_| {
                format!("{s:?} is neither a time (2026-11-18T00:00:00Z) nor a duration ago (7d)")
            })?;
            now.checked_sub(ago)
                .ok_or_else(|| format!("{s:?} reaches before 1970"))?
        }
    };
    let us = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_micros();
    i64::try_from(us).map_err(|_| format!("{s:?} is too far in the future"))
}

/// The range a query asks for: `since` (default: the beginning) and
/// `until` (default: no end).
fn range(query: Option<&str>, now: SystemTime) -> Result<(i64, i64), String> {
    let (mut since, mut until) = (0, i64::MAX);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "since" => since = parse_time(&value, now).map_err(|e| format!("since: {e}"))?,
            "until" => until = parse_time(&value, now).map_err(|e| format!("until: {e}"))?,
            // Whether to record the export: see `serve`.
            "record" => {}
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (since, until, record)"
                ));
            }
        }
    }
    if since >= until {
        return Err("since must be before until".to_owned());
    }
    Ok((since, until))
}

/// Answers `GET /store/archive` for the token named `by`.
pub(super) fn serve(state: &State, by: &str, query: Option<&str>) -> Answer {
    let (since, until) = match range(query, SystemTime::now()) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let Some(store) = &state.observed.store else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway has no store to read",
        );
    };
    let reader = match store.reader() {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store cannot be read now: {e}"),
            );
        }
    };
    let key = state.observed.seal_key.clone();
    // `record=1` (what `gatehouse store export --gateway` asks): record
    // the export for `gatehouse store prune`. The replay and audit tools
    // fetch archives to read them and do not ask.
    let recorder = query
        .is_some_and(|q| q.split('&').any(|p| p == "record=1"))
        .then(|| store.clone());
    tracing::info!(by, since, until, "admin API: store archive requested");
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let by = by.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        // A second of slack: an event stamped just before the snapshot may
        // be committed just after it (see `ExportRecord::covers`).
        let at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .saturating_sub(1_000_000);
        let exported = match reader.export_archive(since, until, &mut out) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(by, "admin API: store archive cut short: {e}");
                return;
            }
        };
        drop(reader);
        let signature = key.map(|k| sign(&k, &exported.hash));
        let mut block = Vec::new();
        encode_signature(&mut block, signature.as_ref());
        match out.write_all(&block).and_then(|()| out.flush()) {
            Ok(()) => {
                tracing::info!(
                    by,
                    sessions = exported.sessions,
                    events = exported.events,
                    bytes = exported.bytes + block.len() as u64,
                    hash = %blake3::Hash::from_bytes(exported.hash),
                    signed = signature.is_some(),
                    "admin API: store archive sent"
                );
                // For `gatehouse store prune` with require_export: the
                // whole archive was handed to the response.
                let record = ExportRecord {
                    at_us,
                    since_us: since,
                    until_us: until,
                    hash: exported.hash,
                    sessions: exported.sessions,
                };
                if let Some(recorder) = recorder
                    && let Err(e) = recorder.record_export(&record)
                {
                    tracing::warn!(by, "admin API: the archive was sent but not recorded: {e}");
                }
            }
            Err(e) => tracing::warn!(by, "admin API: store archive cut short: {e}"),
        }
    });
    let mut response = Response::new(AdminBody::Lines(rx));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"gatehouse.ghar\""),
    );
    response
}

/// A writer that sends what it is given to the response body in chunks.
struct Chunks {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ranges_take_rfc3339_and_times_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        assert_eq!(range(None, now), Ok((0, i64::MAX)));
        assert_eq!(
            range(Some("since=7d&until=1970-01-10T00%3A00%3A00Z"), now),
            Ok((3 * 86_400_000_000, 9 * 86_400_000_000))
        );
        assert!(
            range(Some("since=yesterday"), now)
                .unwrap_err()
                .contains("since")
        );
        assert!(range(Some("since=1d&until=2d"), now).is_err());
        assert!(range(Some("limit=3"), now).is_err());
    }
}
