//! One session's events, read entry by entry from the `events` keyspace
//! and flattened: an entry holds one event or a run of them
//! ([`gatehouse_core::event::runs`]).

use std::ops::Range;

use gatehouse_core::event::{Event, SessionId, decode, event_key};

use crate::StoreError;
use crate::keys::Db;
use gatehouse_core::event::runs;

/// Iterator over one session's events; see [`Reader::events`](crate::Reader::events).
pub struct Events(Flat<Event>);

/// Iterator over one session's stored values; see
/// [`Reader::raw_events`](crate::Reader::raw_events).
pub struct RawEvents(Flat<RawEvent>);

/// A stored event value as it is on disk, with the sequence number from
/// its key; see [`Reader::raw_events`](crate::Reader::raw_events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The sequence number the event's entry gives it.
    pub seq: u64,
    /// The stored archive: as the writer appended it, unless it was
    /// altered on disk.
    pub value: Vec<u8>,
}

impl Events {
    /// `id`'s events with numbers in `seqs`, from the entries `iter` scans.
    pub(crate) fn new(iter: fjall::Iter, id: SessionId, seqs: Option<Range<u64>>) -> Self {
        Events(Flat::new(iter, id, seqs, read_event))
    }
}

impl Events {
    /// Yields `error`, then nothing.
    pub(crate) fn failed(empty: fjall::Iter, id: SessionId, error: StoreError) -> Self {
        let mut flat = Flat::new(empty, id, None, read_event);
        flat.front = vec![Err(error)].into_iter();
        Events(flat)
    }
}

impl RawEvents {
    /// `id`'s stored values, from the entries `iter` scans.
    pub(crate) fn new(iter: fjall::Iter, id: SessionId) -> Self {
        RawEvents(Flat::new(iter, id, None, read_raw))
    }
}

impl Iterator for Events {
    type Item = Result<Event, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl DoubleEndedIterator for Events {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

impl Iterator for RawEvents {
    type Item = Result<RawEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl DoubleEndedIterator for RawEvents {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

/// Turns one stored event (`bytes`, numbered `seq` by entry `key`) into
/// an item.
type Read<T> = fn(&SessionId, u64, &[u8], &[u8]) -> Result<T, StoreError>;

/// Entries flattened into their events, from both ends.
struct Flat<T> {
    iter: fjall::Iter,
    id: SessionId,
    /// Only events with these numbers (all when `None`): an entry at
    /// either end of a range scan may hold more.
    seqs: Option<Range<u64>>,
    front: std::vec::IntoIter<Result<T, StoreError>>,
    back: std::vec::IntoIter<Result<T, StoreError>>,
    read: Read<T>,
}

impl<T> Flat<T> {
    fn new(iter: fjall::Iter, id: SessionId, seqs: Option<Range<u64>>, read: Read<T>) -> Self {
        Flat {
            iter,
            id,
            seqs,
            front: Vec::new().into_iter(),
            back: Vec::new().into_iter(),
            read,
        }
    }

    /// The items of one entry, in order. A malformed entry is one error.
    fn expand(&self, guard: fjall::Guard) -> Vec<Result<T, StoreError>> {
        let (key, value) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(e) => return vec![Err(e.into())],
        };
        match runs::split(&self.id, &key, &value) {
            Ok(parts) => parts
                .into_iter()
                .filter(|(seq, _)| self.seqs.as_ref().is_none_or(|s| s.contains(seq)))
                .map(|(seq, at)| match value.get(at) {
                    Some(bytes) => (self.read)(&self.id, seq, bytes, &key),
                    None => Err(StoreError::corrupt("event", &key, "out of bounds")),
                })
                .collect(),
            Err(reason) => vec![Err(StoreError::corrupt("event", &key, reason))],
        }
    }
}

impl<T> Iterator for Flat<T> {
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.front.next() {
                return Some(item);
            }
            match self.iter.next() {
                Some(guard) => self.front = self.expand(guard).into_iter(),
                None => return self.back.next(),
            }
        }
    }
}

impl<T> DoubleEndedIterator for Flat<T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.back.next_back() {
                return Some(item);
            }
            match self.iter.next_back() {
                Some(guard) => self.back = self.expand(guard).into_iter(),
                None => return self.front.next_back(),
            }
        }
    }
}

/// Decodes and checks one event: it must be the event its entry says.
pub(crate) fn read_event(
    id: &SessionId,
    seq: u64,
    bytes: &[u8],
    key: &[u8],
) -> Result<Event, StoreError> {
    let event =
        decode(bytes).map_err(|e| StoreError::corrupt("event", key, format!("#{seq}: {e}")))?;
    if event.session != *id || event.seq != seq {
        return Err(StoreError::corrupt(
            "event",
            key,
            format!("#{seq} holds event {} #{}", event.session, event.seq),
        ));
    }
    Ok(event)
}

fn read_raw(_: &SessionId, seq: u64, bytes: &[u8], _: &[u8]) -> Result<RawEvent, StoreError> {
    Ok(RawEvent {
        seq,
        value: bytes.to_vec(),
    })
}

/// The entry holding `id`'s event `seq`, looking back from where it would
/// be: its key and value. Entries with malformed keys are passed over
/// (a range scan reports them).
pub(crate) fn entry_holding(
    db: &Db,
    id: SessionId,
    seq: u64,
) -> Result<Option<(fjall::Slice, fjall::Slice)>, StoreError> {
    for guard in db
        .events
        .range(event_key(id, 0).to_vec()..=runs::lookup_bound(id, seq).to_vec())
        .rev()
    {
        let (key, value) = guard.into_inner()?;
        match runs::seqs(&id, &key) {
            Ok(seqs) if seqs.contains(&seq) => return Ok(Some((key, value))),
            Ok(_) => return Ok(None),
            Err(_) => continue,
        }
    }
    Ok(None)
}

/// `id`'s event `seq` as stored, with the key of its entry.
pub(crate) fn stored(
    db: &Db,
    id: SessionId,
    seq: u64,
) -> Result<Option<(fjall::Slice, Vec<u8>)>, StoreError> {
    let Some((key, value)) = entry_holding(db, id, seq)? else {
        return Ok(None);
    };
    let parts =
        runs::split(&id, &key, &value).map_err(|r| StoreError::corrupt("event", &key, r))?;
    let bytes = parts
        .into_iter()
        .find(|(s, _)| *s == seq)
        .and_then(|(_, at)| value.get(at))
        .map(<[u8]>::to_vec);
    Ok(bytes.map(|b| (key, b)))
}

/// Where a scan of `id`'s events `seqs` starts: the entry holding the
/// first, if one does (a run may start before it).
pub(crate) fn scan_start(db: &Db, id: SessionId, first: u64) -> Result<Vec<u8>, StoreError> {
    Ok(match entry_holding(db, id, first)? {
        Some((key, _)) => key.to_vec(),
        None => event_key(id, first).to_vec(),
    })
}
