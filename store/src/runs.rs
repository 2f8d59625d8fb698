//! Builds the `events` keyspace's entries for a submission: runs of a
//! session's events under one key (the layout is
//! [`gatehouse_core::event::runs`]).

use gatehouse_core::event::Encoded;
use gatehouse_core::event::runs::{LEN, length_prefix, run_key, run_length};

/// Splits a submission's events into entries: each run of one session's
/// consecutive events becomes one, a lone event its own. The entries are
/// built here, on the submitting thread, as fjall's buffers (copied once,
/// straight into them), so the writer thread only moves them into its
/// batch.
pub(crate) fn entries(events: &[Encoded]) -> Vec<(fjall::Slice, fjall::Slice)> {
    let mut out = Vec::new();
    let mut rest = events;
    while let Some(first) = rest.first() {
        let len = run_length(rest);
        let (run, tail) = rest.split_at(len);
        rest = tail;
        if let [only] = run {
            out.push((
                fjall::Slice::from(&only.key[..]),
                fjall::Slice::from(&only.bytes[..]),
            ));
            continue;
        }
        let last = first.seq + (len as u64 - 1);
        let size = run.iter().map(|e| LEN + e.bytes.len()).sum();
        let value = fjall::Slice::from_reader(&mut RunReader::new(run), size)
            .unwrap_or_else(|_| unreachable!("a run's reader yields exactly its size"));
        out.push((
            fjall::Slice::from(&run_key(first.session, first.seq, last)[..]),
            value,
        ));
    }
    out
}

/// Reads a run's value out of its events, for [`fjall::Slice::from_reader`].
struct RunReader<'a> {
    events: &'a [Encoded],
    /// Where in the current event: its length prefix, then its archive.
    at: usize,
}

impl<'a> RunReader<'a> {
    fn new(events: &'a [Encoded]) -> Self {
        RunReader { events, at: 0 }
    }
}

impl std::io::Read for RunReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(event) = self.events.first() else {
            return Ok(0);
        };
        let len = length_prefix(event.bytes.len());
        let part: &[u8] = if self.at < LEN {
            len.get(self.at..).unwrap_or_default()
        } else {
            event.bytes.get(self.at - LEN..).unwrap_or_default()
        };
        let n = part.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), part.get(..n)) {
            to.copy_from_slice(from);
        }
        self.at += n;
        if self.at >= LEN + event.bytes.len() {
            self.events = self.events.split_first().map_or(&[], |(_, rest)| rest);
            self.at = 0;
        }
        Ok(n)
    }
}
