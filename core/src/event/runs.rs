//! How the store lays events out in its `events` keyspace: one entry per
//! event, or one per run of a session's consecutive events. Pure byte
//! layout, here so that the store, the archive format and the fuzz
//! targets share it; `gatehouse-store` writes and reads the entries.
//!
//! | key | value |
//! |---|---|
//! | session id ‖ seq (u64 BE): 24 bytes, [`event_key`] | the event's archive |
//! | session id ‖ first seq ‖ last seq (u64 BE each): 32 bytes, [`run_key`] | for each event `first..=last`, in order: its archive's length (u32 LE) ‖ the archive |
//!
//! Both kinds sort by their (first) sequence number, and runs never
//! overlap, so a session's events are one range scan in order, and an
//! event is found by looking back from [`lookup_bound`] to the entry at or
//! before it. The store writes the events of one submission of one
//! session (a statement's frame, statement and verdict; a burst of
//! response frames) as one run: fjall's cost per insert (its memtable's
//! skiplist) is many times its cost per byte. A lone event keeps the
//! 24-byte key, so stores written before runs (store format 2) read
//! unchanged.
//!
//! Everything here may read bytes someone altered on disk: lengths are
//! checked before they are used, and a malformed entry is an error naming
//! why, never a panic.

use std::ops::{Range, RangeInclusive};

use super::{Encoded, SessionId, event_key};

/// The length of a single event's key.
pub const EVENT_KEY: usize = 24;
/// The length of a run's key.
pub const RUN_KEY: usize = 32;
/// The length of the prefix before each archive in a run.
pub const LEN: usize = 4;
/// A run's value grows to this size at most (a larger event is stored
/// alone): past it, the cost of an insert is small beside the bytes, and
/// runs stay far below the archive format's largest value.
pub const MAX_RUN_BYTES: usize = 1 << 20;

/// The key of a run of `id`'s events `first..=last`.
pub fn run_key(id: SessionId, first: u64, last: u64) -> [u8; RUN_KEY] {
    let mut key = [0u8; RUN_KEY];
    let (head, tail) = key.split_at_mut(EVENT_KEY);
    head.copy_from_slice(&event_key(id, first));
    tail.copy_from_slice(&last.to_be_bytes());
    key
}

/// The upper bound (inclusive) of a look-back for the entry holding `id`'s
/// event `seq`: sorts after a single event's key `id ‖ seq` and after
/// every run that starts at `seq`, before anything that starts later.
pub fn lookup_bound(id: SessionId, seq: u64) -> [u8; RUN_KEY] {
    run_key(id, seq, u64::MAX)
}

/// The sequence numbers an entry of `id` holds, from its key alone.
pub fn seqs(id: &SessionId, key: &[u8]) -> Result<RangeInclusive<u64>, &'static str> {
    const WRONG: &str = "key is not a 16-byte session id and an 8-byte sequence number \
                         (or two, for a run of events)";
    let rest = key.strip_prefix(&id.0[..]).ok_or(WRONG)?;
    let word = |at: usize| {
        rest.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (key.len(), word(0), word(8)) {
        (EVENT_KEY, Some(seq), _) => Ok(seq..=seq),
        (RUN_KEY, Some(first), Some(last)) if first < last => Ok(first..=last),
        (RUN_KEY, ..) => {
            Err("a run's key names no run (its last sequence number is not after its first)")
        }
        _ => Err(WRONG),
    }
}

/// How many events an entry's key says it holds (1 for a malformed key,
/// which readers report as one corrupt entry).
pub fn count(id: &SessionId, key: &[u8]) -> u64 {
    seqs(id, key).map_or(1, |s| (s.end() - s.start()).saturating_add(1))
}

/// The events of one entry of `id`: each one's sequence number and where
/// its archive is in `value`. The archives themselves are not validated
/// here (readers decode them, verification hashes them).
pub fn split(id: &SessionId, key: &[u8], value: &[u8]) -> Result<Vec<(u64, Range<usize>)>, String> {
    let seqs = seqs(id, key)?;
    if key.len() == EVENT_KEY {
        return Ok(vec![(*seqs.start(), 0..value.len())]);
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for seq in seqs {
        let len = value
            .get(at..at + LEN)
            .and_then(|b| <[u8; LEN]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("the run ends before event #{seq} (at byte {at})"))?;
        let start = at + LEN;
        let end = start
            .checked_add(len as usize)
            .filter(|end| *end <= value.len())
            .ok_or_else(|| {
                format!(
                    "event #{seq} is said to be {len} bytes long, past the run's end (at byte {at})"
                )
            })?;
        out.push((seq, start..end));
        at = end;
    }
    if at != value.len() {
        return Err(format!(
            "{} bytes follow the run's last event",
            value.len() - at
        ));
    }
    Ok(out)
}

/// How many of `events`' leading events form one run: same session,
/// consecutive sequence numbers, [`MAX_RUN_BYTES`] in all at most.
pub fn run_length(events: &[Encoded]) -> usize {
    let mut size = 0;
    let mut len = 0;
    let mut prev: Option<&Encoded> = None;
    for e in events {
        size += LEN + e.bytes.len();
        let continues =
            prev.is_none_or(|p| p.session == e.session && p.seq.checked_add(1) == Some(e.seq));
        if len > 0 && (!continues || size > MAX_RUN_BYTES) {
            break;
        }
        len += 1;
        prev = Some(e);
    }
    len
}

/// The prefix of an archive of `len` bytes in a run (callers keep runs
/// below [`MAX_RUN_BYTES`], so the length fits).
pub fn length_prefix(len: usize) -> [u8; LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SessionId {
        SessionId([n; 16])
    }

    #[test]
    fn keys_sort_by_their_first_sequence_number() {
        let a = id(1);
        let mut keys = [
            run_key(a, 5, 9).to_vec(),
            event_key(a, 4).to_vec(),
            event_key(a, 10).to_vec(),
            run_key(a, 0, 3).to_vec(),
            run_key(id(0), 7, 8).to_vec(),
            event_key(id(2), 0).to_vec(),
        ];
        keys.sort();
        let seqs: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k[0],
                    seqs(&SessionId(k[..16].try_into().unwrap()), k).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seqs,
            [
                (0, 7..=8),
                (1, 0..=3),
                (1, 4..=4),
                (1, 5..=9),
                (1, 10..=10),
                (2, 0..=0)
            ]
        );
        // The look-back bound of #7 is after the run holding it and before
        // the next entry.
        let bound = lookup_bound(a, 7).to_vec();
        assert!(bound > run_key(a, 5, 9).to_vec() && bound < event_key(a, 10).to_vec());
        let bound = lookup_bound(a, 4).to_vec();
        assert!(bound > event_key(a, 4).to_vec() && bound < run_key(a, 5, 9).to_vec());
    }

    #[test]
    fn malformed_keys_and_values_are_errors() {
        let a = id(1);
        assert!(seqs(&a, &event_key(id(2), 0)).is_err());
        assert!(seqs(&a, &[1; 20]).is_err());
        assert!(seqs(&a, &run_key(a, 4, 4)).is_err());
        assert!(seqs(&a, &run_key(a, 5, 4)).is_err());
        let key = run_key(a, 0, 1);
        assert!(split(&a, &key, b"").is_err());
        assert!(split(&a, &key, &[3, 0, 0, 0, 1, 2, 3]).is_err());
        assert!(split(&a, &key, &[255, 255, 255, 255]).is_err());
        let two = [1, 0, 0, 0, 9, 0, 0, 0, 0];
        assert_eq!(split(&a, &key, &two).unwrap(), [(0, 4..5), (1, 9..9)]);
        let mut trailing = two.to_vec();
        trailing.push(0);
        assert!(split(&a, &key, &trailing).is_err());
        assert_eq!(count(&a, &key), 2);
        assert_eq!(count(&a, &run_key(a, 0, u64::MAX)), u64::MAX);
        assert_eq!(count(&a, b"junk"), 1);
    }

    #[test]
    fn split_never_panics_on_any_bytes() {
        let a = id(1);
        let key = run_key(a, 0, 2);
        for len in 0..64usize {
            let value: Vec<u8> = (0..len).map(|i| (i * 37 % 7) as u8).collect();
            let _ = split(&a, &key, &value);
        }
    }
}
