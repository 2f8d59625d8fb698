//! Builds the `events` keyspace's entries: runs of a session's events
//! under one key (the layout is [`gatehouse_core::event::runs`]).
//!
//! A submission's events become entries on the submitting thread
//! ([`entries`]), copied once straight into fjall's buffers. The writer
//! then joins a batch's entries that continue each other — the same
//! session's submissions queued together — into longer runs ([`join`]):
//! one memtable insert for all of them instead of one each, for the
//! price of copying their bytes once more.

use gatehouse_core::event::runs::{LEN, MAX_RUN_BYTES, length_prefix, run_key, run_length};
use gatehouse_core::event::{Encoded, SessionId};

/// One entry of the `events` keyspace, about to be written.
pub(crate) struct Entry {
    pub(crate) session: SessionId,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) key: fjall::Slice,
    pub(crate) value: fjall::Slice,
}

impl Entry {
    /// Its bytes as part of a run: a lone event gains its length prefix.
    fn run_bytes(&self) -> usize {
        if self.first == self.last {
            LEN + self.value.len()
        } else {
            self.value.len()
        }
    }
}

/// Splits a submission's events into entries: each run of one session's
/// consecutive events becomes one, a lone event its own.
pub(crate) fn entries(events: &[Encoded]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut rest = events;
    while let Some(first) = rest.first() {
        let len = run_length(rest);
        let (run, tail) = rest.split_at(len);
        rest = tail;
        if let [only] = run {
            out.push(Entry {
                session: only.session,
                first: only.seq,
                last: only.seq,
                key: fjall::Slice::from(&only.key[..]),
                value: fjall::Slice::from(&only.bytes[..]),
            });
            continue;
        }
        let last = first.seq + (len as u64 - 1);
        let prefixes: Vec<[u8; LEN]> = run.iter().map(|e| length_prefix(e.bytes.len())).collect();
        let parts = prefixes
            .iter()
            .zip(run)
            .flat_map(|(p, e)| [&p[..], &e.bytes[..]]);
        out.push(Entry {
            session: first.session,
            first: first.seq,
            last,
            key: fjall::Slice::from(&run_key(first.session, first.seq, last)[..]),
            value: concat(parts),
        });
    }
    out
}

/// Writes a batch's entries through `insert`, joining those that continue
/// each other (same session, next sequence number) into one run each, up
/// to [`gatehouse_core::event::runs::MAX_RUN_BYTES`]. Reorders `entries`.
pub(crate) fn join(entries: &mut [Entry], mut insert: impl FnMut(fjall::Slice, fjall::Slice)) {
    entries.sort_unstable_by_key(|e| (e.session, e.first));
    let mut rest: &mut [Entry] = entries;
    while !rest.is_empty() {
        let mut n = 1;
        let mut size = rest.first().map_or(0, Entry::run_bytes);
        while let (Some(prev), Some(next)) = (rest.get(n - 1), rest.get(n)) {
            if next.session != prev.session
                || prev.last.checked_add(1) != Some(next.first)
                || size + next.run_bytes() > MAX_RUN_BYTES
            {
                break;
            }
            size += next.run_bytes();
            n += 1;
        }
        let (group, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        match group {
            [] => {}
            [one] => insert(
                std::mem::replace(&mut one.key, fjall::Slice::empty()),
                std::mem::replace(&mut one.value, fjall::Slice::empty()),
            ),
            [first, .., last] => {
                let key = run_key(first.session, first.first, last.last);
                let prefixes: Vec<Option<[u8; LEN]>> = group
                    .iter()
                    .map(|e| (e.first == e.last).then(|| length_prefix(e.value.len())))
                    .collect();
                let parts = prefixes
                    .iter()
                    .zip(group.iter())
                    .flat_map(|(p, e)| [p.as_ref().map_or(&[][..], |p| &p[..]), &e.value[..]]);
                insert(fjall::Slice::from(&key[..]), concat(parts));
            }
        }
    }
}

/// The bytes of `parts`, one after the other, in one new fjall buffer.
fn concat<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> fjall::Slice {
    let size = parts.clone().map(<[u8]>::len).sum();
    let mut reader = Concat {
        parts,
        current: &[],
    };
    fjall::Slice::from_reader(&mut reader, size)
        .unwrap_or_else(|_| unreachable!("the parts' reader yields exactly their size"))
}

/// Reads byte slices one after the other, for [`fjall::Slice::from_reader`].
struct Concat<'a, I> {
    parts: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> std::io::Read for Concat<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.parts.next() {
                Some(part) => self.current = part,
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        let (now, later) = self.current.split_at(n);
        if let Some(to) = buf.get_mut(..n) {
            to.copy_from_slice(now);
        }
        self.current = later;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use gatehouse_core::event::runs::split;
    use gatehouse_core::event::{Body, CloseReason, Closed, Recorder};

    fn events(id: SessionId, n: usize) -> Vec<Encoded> {
        let mut rec = Recorder::new(id);
        (0..n)
            .map(|i| {
                rec.record(
                    i as i64,
                    Body::Closed(Closed {
                        reason: CloseReason::ClientTerminated,
                        bytes_to_upstream: i as u64,
                        bytes_to_client: 0,
                        statements: 0,
                        duration_us: 0,
                        seal: None,
                    }),
                )
            })
            .collect()
    }

    /// The stored (seq, archive) pairs of the entries `insert` got.
    fn stored(id: SessionId, written: &[(fjall::Slice, fjall::Slice)]) -> Vec<(u64, Vec<u8>)> {
        written
            .iter()
            .filter(|(k, _)| k.starts_with(&id.0))
            .flat_map(|(k, v)| {
                split(&id, k, v)
                    .unwrap()
                    .into_iter()
                    .map(|(seq, at)| (seq, v[at].to_vec()))
            })
            .collect()
    }

    #[test]
    fn entries_and_joined_runs_hold_exactly_the_events() {
        let (a, b) = (SessionId([1; 16]), SessionId([2; 16]));
        let (ea, eb) = (events(a, 9), events(b, 3));
        // Submissions as they might queue: a's in three, b's between, and
        // a gap in a (#6 refused, say) that must not be joined over.
        let mut all = Vec::new();
        all.extend(entries(&ea[0..1]));
        all.extend(entries(&eb[0..3]));
        all.extend(entries(&ea[1..4]));
        all.extend(entries(&ea[4..6]));
        all.extend(entries(&ea[7..9]));
        assert_eq!(all.len(), 5);
        let mut written = Vec::new();
        join(&mut all, |k, v| written.push((k, v)));
        let keys: Vec<usize> = written.iter().map(|(k, _)| k.len()).collect();
        assert_eq!(keys, [32, 32, 32], "a #0..#5, a #7..#8, b #0..#2");
        let want = |e: &[Encoded], seqs: &[u64]| -> Vec<(u64, Vec<u8>)> {
            seqs.iter()
                .map(|s| (*s, e[*s as usize].bytes.to_vec()))
                .collect()
        };
        let mut got_a = stored(a, &written);
        got_a.sort();
        assert_eq!(got_a, want(&ea, &[0, 1, 2, 3, 4, 5, 7, 8]));
        assert_eq!(stored(b, &written), want(&eb, &[0, 1, 2]));
    }

    #[test]
    fn a_lone_entry_is_written_as_it_came() {
        let a = SessionId([1; 16]);
        let ea = events(a, 1);
        let mut all = entries(&ea);
        let mut written = Vec::new();
        join(&mut all, |k, v| written.push((k, v)));
        assert_eq!(written.len(), 1);
        assert_eq!(&written[0].0[..], &ea[0].key[..]);
        assert_eq!(&written[0].1[..], &ea[0].bytes[..]);
    }
}
