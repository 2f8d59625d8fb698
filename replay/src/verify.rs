//! Hash-chain verification of recorded sessions.
//!
//! Each event carries `prev`, the BLAKE3 hash of the previous event's
//! stored encoding ([`hash_of`]); the first carries zeros. Walking a
//! session's stored values in key order, [`check_chain`] reports every
//! place where the record is not what the gateway wrote:
//!
//! | kind | meaning |
//! |---|---|
//! | `modified` | an event's hash does not match the `prev` of the event after it (one of the two was altered), or the first event's `prev` is not zero |
//! | `missing` | sequence numbers jump (events deleted), or the store holds fewer events than the session's summary counts (a cut-off tail) |
//! | `reordered` | the value under key `#n` is event `#m` of the same session |
//! | `misplaced` | the value under this session's key belongs to another session |
//! | `undecodable` | the value is not a valid event archive |
//! | `appended` | an event beyond the count the session summary records, or after the session's `Closed` event |
//!
//! | `unsealed` | (with a public key) the session's `Closed` event carries no seal |
//! | `bad_seal` | (with a public key) the `Closed` event's seal does not verify: it, its `prev`, or its place was altered, or another key sealed it |
//! | `truncated` | a checkpoint recorded more events of the session than the store holds: its tail was cut off |
//!
//! # Checkpoints
//!
//! The gateway also writes signed checkpoints
//! ([`gatehouse_core::event::Checkpoint`]): every interval, the sessions
//! that had events since the previous one or are still open, each with its
//! event count and chain head. [`check_checkpoints`] walks them in number
//! order and reports, as [`CheckpointBreak`]s, a checkpoint that is
//! `missing` (a gap in the numbers: deleted), `modified` (its `prev` does
//! not match the previous checkpoint's hash), `reordered` (stored under
//! another number), `undecodable`, or — with the public key — a
//! `bad_seal` (its signature does not verify, or another key signed it).
//! Then every session a checkpoint lists (the latest listing counts;
//! listings of a checkpoint whose signature fails are not trusted) is held
//! against it: the session must exist (else `missing`: a deleted session,
//! or `missing` summary when only its summary is gone), hold at least that
//! many events (else `truncated`), and its event `count - 1` must hash to
//! the recorded head (else `modified`; the chain vouches for everything
//! before it). The newest checkpoint has nothing after it to vouch for
//! it, and sessions started after it are not covered yet.
//!
//! # Prune records
//!
//! `gatehouse store prune` removes old sessions on purpose and stores a
//! signed prune record ([`gatehouse_core::event::PruneRecord`]) naming
//! each one first. [`check_prunes`] decodes them and — with the public key
//! — checks their signatures; a record that does not decode, sits under
//! another number, is unsigned or whose signature fails is a
//! [`PruneBreak`], and the sessions it names are not trusted. A session a
//! checkpoint lists that is wholly absent (no summary, no event) is
//! accepted when a trusted prune record names it ([`Report::pruned`]
//! counts them); any other absent session is still `missing`. Checkpoints
//! are never pruned, so their chain stays whole.
//!
//! One altered event yields one break, not a cascade: a link is checked
//! only between two events that are each in their right place.
//!
//! The last event of a session has no successor to vouch for it; the
//! `Closed` event's seal does instead ([`gatehouse_core::event::seal_message`]
//! covers its `prev`, so the whole chain). Given the gateway's seal public
//! key, every `Closed` event's seal is verified. A session without a
//! `Closed` event was cut (a gateway crash or kill); it is reported as a
//! [`Warning`], not a break: its tail is not sealed, so events removed from
//! its end are detectable only through the session summary.

use std::collections::BTreeMap;

use gatehouse_core::event::{
    Body, Event, HASH_LEN, Hash, SealError, SealPublicKey, SessionId, decode, decode_checkpoint,
    decode_prune, hash_of, verify_checkpoint, verify_prune, verify_seal,
};
use gatehouse_store::{RawEvent, Reader, StoreError};
use serde::Serialize;

/// How the record differs from what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// Content altered (see the module docs).
    Modified,
    /// Events absent.
    Missing,
    /// An event stored under another sequence number.
    Reordered,
    /// An event of another session.
    Misplaced,
    /// Not a valid event.
    Undecodable,
    /// Events beyond what the session recorded.
    Appended,
    /// A `Closed` event without a seal, where a seal key was given.
    Unsealed,
    /// A `Closed` event whose seal does not verify, or a checkpoint whose
    /// signature does not.
    BadSeal,
    /// Fewer events than a checkpoint recorded: the tail was cut off.
    Truncated,
}

impl BreakKind {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            BreakKind::Modified => "modified",
            BreakKind::Missing => "missing",
            BreakKind::Reordered => "reordered",
            BreakKind::Misplaced => "misplaced",
            BreakKind::Undecodable => "undecodable",
            BreakKind::Appended => "appended",
            BreakKind::Unsealed => "unsealed",
            BreakKind::BadSeal => "bad seal",
            BreakKind::Truncated => "truncated",
        }
    }
}

/// One place where a session's record is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The session.
    pub session: String,
    /// The sequence number (store key) where it is; `None` for the
    /// session as a whole (its summary).
    pub seq: Option<u64>,
    /// What kind of break.
    pub kind: BreakKind,
    /// Precisely what was found.
    pub detail: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "session {} #{seq}: {}: {}",
                self.session,
                self.kind.name(),
                self.detail
            ),
            None => write!(
                f,
                "session {}: {}: {}",
                self.session,
                self.kind.name(),
                self.detail
            ),
        }
    }
}

/// Something an auditor should know that is not a break: a session cut
/// before its `Closed` event (expected after a gateway crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The session.
    pub session: String,
    /// What was found.
    pub detail: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session {}: {}", self.session, self.detail)
    }
}

/// A stored value, as verification needs it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The sequence number in its key.
    pub key_seq: u64,
    /// What the value holds.
    pub content: Content,
}

/// What a stored value holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// A valid event, and the hash of the stored bytes.
    Event {
        /// The decoded event.
        event: Box<Event>,
        /// [`hash_of`] the stored value.
        hash: Hash,
    },
    /// A valid event stored under another key than its own, known by the
    /// place it claims.
    Claims {
        /// The session it claims.
        session: SessionId,
        /// The sequence number it claims.
        seq: u64,
    },
    /// Not a valid event archive.
    Undecodable(String),
}

/// The outcome for one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionCheck {
    /// The session.
    pub session: String,
    /// Stored values read.
    pub events: u64,
    /// What is broken; empty when the chain holds.
    pub breaks: Vec<Break>,
    /// What is not broken but worth knowing (a cut session).
    pub warnings: Vec<Warning>,
}

/// Checks one session's stored values, in key order. `recorded` is the
/// event count of the session's summary, if it has one. With `seal_key`,
/// the seal of its `Closed` event is verified too.
pub fn check_chain(
    session: SessionId,
    recorded: Option<u64>,
    seal_key: Option<&SealPublicKey>,
    stored: impl IntoIterator<Item = Stored>,
) -> SessionCheck {
    let name = session.to_string();
    let mut warnings = Vec::new();
    let mut breaks = Vec::new();
    let mut brk = |seq: Option<u64>, kind, detail: String| {
        breaks.push(Break {
            session: name.clone(),
            seq,
            kind,
            detail,
        })
    };
    let mut next = 0u64;
    let mut read = 0u64;
    // The hash of the event at `next - 1`, if it is in its place.
    let mut prev: Option<Hash> = None;
    let mut closed_at: Option<u64> = None;
    for s in stored {
        read += 1;
        let seq = s.key_seq;
        if seq > next {
            let detail = match seq - next {
                1 => format!("event #{next} is not in the store"),
                n => format!("events #{next}..#{} ({n}) are not in the store", seq - 1),
            };
            brk(Some(next), BreakKind::Missing, detail);
            prev = None;
        }
        next = seq.saturating_add(1);
        if let Some(closed) = closed_at {
            brk(
                Some(seq),
                BreakKind::Appended,
                format!("follows the session's Closed event #{closed}"),
            );
        }
        let (event, hash) = match s.content {
            Content::Event { event, hash } => (event, hash),
            Content::Claims {
                session: other,
                seq: claimed,
            } => {
                misplaced(&mut brk, session, seq, other, claimed);
                prev = None;
                continue;
            }
            Content::Undecodable(reason) => {
                brk(Some(seq), BreakKind::Undecodable, reason);
                prev = None;
                continue;
            }
        };
        if event.session != session || event.seq != seq {
            misplaced(&mut brk, session, seq, event.session, event.seq);
            prev = None;
            continue;
        }
        if seq == 0 && event.prev != [0; HASH_LEN] {
            brk(
                Some(0),
                BreakKind::Modified,
                "the first event's prev is not zero".into(),
            );
        } else if let Some(expected) = prev
            && event.prev != expected
        {
            brk(
                Some(seq - 1),
                BreakKind::Modified,
                format!(
                    "its hash does not match the prev recorded in #{seq} \
                     (#{} or the prev of #{seq} was altered)",
                    seq - 1
                ),
            );
        }
        if let Body::Closed(closed) = &event.body
            && closed_at.is_none()
        {
            closed_at = Some(seq);
            if let Some(key) = seal_key {
                match verify_seal(key, session, seq, &event.prev, closed) {
                    Ok(()) => {}
                    Err(SealError::Unsealed) => brk(
                        Some(seq),
                        BreakKind::Unsealed,
                        "the Closed event carries no seal".into(),
                    ),
                    Err(e) => brk(Some(seq), BreakKind::BadSeal, e.to_string()),
                }
            }
        }
        prev = Some(hash);
    }
    if let Some(recorded) = recorded {
        if recorded > next {
            let detail = if recorded - next == 1 {
                format!(
                    "event #{next} is not in the store (the session summary counts {recorded} events)"
                )
            } else {
                format!(
                    "events #{next}..#{} are not in the store (the session summary counts {recorded} events)",
                    recorded - 1
                )
            };
            brk(Some(next), BreakKind::Missing, detail);
        } else if next > recorded {
            brk(
                Some(recorded),
                BreakKind::Appended,
                format!(
                    "the store holds events up to #{} but the session summary counts {recorded}",
                    next - 1
                ),
            );
        }
    }
    if closed_at.is_none() && read > 0 {
        warnings.push(Warning {
            session: name.clone(),
            detail: format!(
                "cut (not sealed): no Closed event after #{}; the session ended without \
                 closing (a gateway crash or kill), so its tail is not sealed",
                next.saturating_sub(1)
            ),
        });
    }
    SessionCheck {
        session: name,
        events: read,
        breaks,
        warnings,
    }
}

fn misplaced(
    brk: &mut impl FnMut(Option<u64>, BreakKind, String),
    session: SessionId,
    seq: u64,
    other: SessionId,
    claimed: u64,
) {
    if other == session {
        brk(
            Some(seq),
            BreakKind::Reordered,
            format!("the value stored as #{seq} is event #{claimed}"),
        );
    } else {
        brk(
            Some(seq),
            BreakKind::Misplaced,
            format!("the value stored here is event #{claimed} of session {other}"),
        );
    }
}

/// Reads session `id`'s stored values for [`check_chain`].
///
/// Each value's hash is [`hash_of`] the exact bytes stored, so any change
/// to a value — even in bytes the decoder ignores, such as padding — makes
/// it undecodable or breaks its link to the next event (the last event has
/// no next one; see the module docs). A value
/// that decodes to another place than its key is reported by the place it
/// claims. Errors are the store's (a failed read, a malformed key).
pub fn stored_events(
    reader: &Reader,
    id: SessionId,
) -> impl Iterator<Item = Result<Stored, StoreError>> + use<> {
    reader.raw_events(id).map(move |r| {
        let RawEvent {
            seq: key_seq,
            value,
        } = r?;
        let content = match decode(&value) {
            Err(e) => Content::Undecodable(e.to_string()),
            Ok(event) if event.session != id || event.seq != key_seq => Content::Claims {
                session: event.session,
                seq: event.seq,
            },
            Ok(event) => Content::Event {
                hash: hash_of(&value),
                event: Box::new(event),
            },
        };
        Ok(Stored { key_seq, content })
    })
}

/// Verifies session `id` (its summary, if any, gives the expected count),
/// with `seal_key` its seal, and against the latest checkpoint that lists
/// it (breaks of the checkpoint chain itself are [`verify_store`]'s).
pub fn verify_session(
    reader: &Reader,
    id: SessionId,
    seal_key: Option<&SealPublicKey>,
) -> Result<SessionCheck, StoreError> {
    let summary = reader.session(id)?;
    let recorded = summary.as_ref().map(|s| s.events);
    let stored = stored_events(reader, id).collect::<Result<Vec<_>, _>>()?;
    let mut check = check_chain(id, recorded, seal_key, stored.iter().cloned());
    let checkpoints = check_checkpoints(reader, seal_key)?;
    let pruned = || -> Result<bool, StoreError> {
        Ok(summary.is_none()
            && stored.is_empty()
            && check_prunes(reader, seal_key)?.pruned.contains_key(&id))
    };
    if let Some(listing) = checkpoints.covered.get(&id)
        && !pruned()?
    {
        check_coverage(&mut check, listing, summary.is_some(), &stored);
    }
    Ok(check)
}

/// One prune record that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneBreak {
    /// The record's number (its key).
    pub record: u64,
    /// What kind of break.
    pub kind: BreakKind,
    /// Precisely what was found.
    pub detail: String,
}

impl std::fmt::Display for PruneBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prune record #{}: {}: {}",
            self.record,
            self.kind.name(),
            self.detail
        )
    }
}

/// The outcome of [`check_prunes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneCheck {
    /// Prune records read.
    pub records: u64,
    /// Records that are not trusted, and why.
    pub breaks: Vec<PruneBreak>,
    /// Every session a trusted record names, with the record's number
    /// and its cut-off (µs).
    pub pruned: BTreeMap<SessionId, (u64, i64)>,
}

/// Reads the stored prune records: each must decode, sit under its own
/// number and, with `seal_key`, carry a signature that verifies (an
/// unsigned record is a break then). Collects what the trusted ones name
/// (see the [module docs](self#prune-records)).
pub fn check_prunes(
    reader: &Reader,
    seal_key: Option<&SealPublicKey>,
) -> Result<PruneCheck, StoreError> {
    let mut out = PruneCheck::default();
    for stored in reader.prunes() {
        let (number, bytes) = stored?;
        out.records += 1;
        let mut brk = |kind, detail: String| {
            out.breaks.push(PruneBreak {
                record: number,
                kind,
                detail: format!("{detail}; the sessions it names are not trusted"),
            })
        };
        let record = match decode_prune(&bytes) {
            Ok(record) => record,
            Err(e) => {
                brk(BreakKind::Undecodable, e.to_string());
                continue;
            }
        };
        if record.number != number {
            brk(
                BreakKind::Reordered,
                format!("the record stored as #{number} is #{}", record.number),
            );
            continue;
        }
        if let Some(key) = seal_key {
            let checked = match record.signature {
                None => Err("it is unsigned".to_owned()),
                Some(_) => verify_prune(key, &record).map_err(|e| e.to_string()),
            };
            if let Err(e) = checked {
                brk(BreakKind::BadSeal, e);
                continue;
            }
        }
        for id in record.sessions {
            out.pruned.insert(id, (number, record.before_us));
        }
    }
    Ok(out)
}

/// How the latest trusted checkpoint that lists a session recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    /// The checkpoint's number.
    pub checkpoint: u64,
    /// The events the session had.
    pub events: u64,
    /// The hash of its event `events - 1`.
    pub head: Hash,
}

/// One place where the checkpoint chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointBreak {
    /// The checkpoint's number (for a gap, the first missing one).
    pub checkpoint: u64,
    /// What kind of break.
    pub kind: BreakKind,
    /// Precisely what was found.
    pub detail: String,
}

impl std::fmt::Display for CheckpointBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoint #{}: {}: {}",
            self.checkpoint,
            self.kind.name(),
            self.detail
        )
    }
}

/// The outcome of [`check_checkpoints`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointCheck {
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Where their chain is broken.
    pub breaks: Vec<CheckpointBreak>,
    /// Every session the trusted checkpoints list, with its latest
    /// (largest) listing.
    pub covered: BTreeMap<SessionId, Listing>,
}

/// Walks the stored checkpoints in number order: numbering gaps, `prev`
/// links, decoding and, with `seal_key`, signatures (see the [module
/// docs](self#checkpoints)). Collects what the trusted ones list.
pub fn check_checkpoints(
    reader: &Reader,
    seal_key: Option<&SealPublicKey>,
) -> Result<CheckpointCheck, StoreError> {
    let mut out = CheckpointCheck::default();
    let mut expected = 0u64;
    // The hash of checkpoint `expected - 1`, if it is in its place; zeros
    // before checkpoint 0.
    let mut prev: Option<Hash> = Some([0; HASH_LEN]);
    for stored in reader.checkpoints() {
        let (number, bytes) = stored?;
        out.checkpoints += 1;
        let mut brk = |checkpoint, kind, detail: String| {
            out.breaks.push(CheckpointBreak {
                checkpoint,
                kind,
                detail,
            })
        };
        if number > expected {
            let detail = match number - expected {
                1 => format!("checkpoint #{expected} is not in the store (deleted)"),
                n => format!(
                    "checkpoints #{expected}..#{} ({n}) are not in the store (deleted)",
                    number - 1
                ),
            };
            brk(expected, BreakKind::Missing, detail);
            prev = None;
        }
        expected = number.saturating_add(1);
        let this = hash_of(&bytes);
        let link = prev.replace(this);
        let cp = match decode_checkpoint(&bytes) {
            Ok(cp) => cp,
            Err(e) => {
                brk(number, BreakKind::Undecodable, e.to_string());
                prev = None;
                continue;
            }
        };
        if cp.number != number {
            brk(
                number,
                BreakKind::Reordered,
                format!("the checkpoint stored as #{number} is #{}", cp.number),
            );
            prev = None;
            continue;
        }
        match link {
            Some(zero) if number == 0 && cp.prev != zero => brk(
                0,
                BreakKind::Modified,
                "the first checkpoint's prev is not zero".into(),
            ),
            Some(link) if cp.prev != link => brk(
                number - 1,
                BreakKind::Modified,
                format!(
                    "its hash does not match the prev recorded in checkpoint #{number} \
                     (#{} or #{number} was altered)",
                    number - 1
                ),
            ),
            _ => {}
        }
        if let Some(key) = seal_key
            && let Err(e) = verify_checkpoint(key, &cp)
        {
            brk(
                number,
                BreakKind::BadSeal,
                format!("{e}; the sessions it lists are not trusted"),
            );
            continue;
        }
        for c in &cp.sessions {
            let listing = Listing {
                checkpoint: number,
                events: c.events,
                head: c.head,
            };
            out.covered
                .entry(c.session)
                .and_modify(|l| {
                    if listing.events >= l.events {
                        *l = listing;
                    }
                })
                .or_insert(listing);
        }
    }
    Ok(out)
}

/// Holds one session's stored values (in key order) against the latest
/// checkpoint that lists it, adding to `check` what does not match.
/// `has_summary`: whether the store holds the session's summary.
pub fn check_coverage(
    check: &mut SessionCheck,
    listing: &Listing,
    has_summary: bool,
    stored: &[Stored],
) {
    let Listing {
        checkpoint,
        events,
        head,
    } = *listing;
    let Some(last) = stored.last() else {
        let detail = if has_summary {
            format!(
                "deleted session: checkpoint #{checkpoint} recorded {events} events, \
                 the store holds none of them (only the session summary)"
            )
        } else {
            format!(
                "deleted session: checkpoint #{checkpoint} recorded {events} events, \
                 the store holds neither them nor the session summary"
            )
        };
        // A summary that counts events already reported them missing.
        check.breaks.retain(|b| b.kind != BreakKind::Missing);
        push(check, None, BreakKind::Missing, detail);
        return;
    };
    if !has_summary {
        push(
            check,
            None,
            BreakKind::Missing,
            format!(
                "the session summary is not in the store (checkpoint #{checkpoint} lists \
                 the session with {events} events)"
            ),
        );
    }
    let at = events - 1;
    match stored.iter().find(|s| s.key_seq == at) {
        Some(Stored {
            content: Content::Event { hash, .. },
            ..
        }) => {
            let reported = check.breaks.iter().any(|b| b.seq == Some(at));
            if *hash != head && !reported {
                push(
                    check,
                    Some(at),
                    BreakKind::Modified,
                    format!(
                        "it does not hash to the chain head checkpoint #{checkpoint} \
                         recorded for it (event {at} of {events})"
                    ),
                );
            }
        }
        // Undecodable or in another's place: the chain check said so.
        Some(_) => {}
        None if last.key_seq < at => {
            let from = last.key_seq + 1;
            // The tail cut off, which the summary's count (if it was left
            // alone) reported as missing: the checkpoint says it precisely.
            check
                .breaks
                .retain(|b| !(b.kind == BreakKind::Missing && b.seq == Some(from)));
            let gone = if from == at {
                format!("event #{at} is not in the store")
            } else {
                format!("events #{from}..#{at} are not in the store")
            };
            push(
                check,
                Some(from),
                BreakKind::Truncated,
                format!("{gone}: checkpoint #{checkpoint} recorded {events} events"),
            );
        }
        // A gap in the middle: the chain check reported it missing.
        None => {}
    }
}

fn push(check: &mut SessionCheck, seq: Option<u64>, kind: BreakKind, detail: String) {
    check.breaks.push(Break {
        session: check.session.clone(),
        seq,
        kind,
        detail,
    });
}

/// The outcome for a whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Sessions checked.
    pub sessions: u64,
    /// Stored events read.
    pub events: u64,
    /// Every break found.
    pub breaks: Vec<Break>,
    /// Every warning (cut sessions).
    pub warnings: Vec<Warning>,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Every break in the checkpoint chain.
    pub checkpoint_breaks: Vec<CheckpointBreak>,
    /// Prune records read.
    pub prune_records: u64,
    /// Sessions checkpoints list that are absent because a trusted prune
    /// record names them (not breaks).
    pub pruned: u64,
    /// Every prune record that is not trusted.
    pub prune_breaks: Vec<PruneBreak>,
}

impl Report {
    /// Adds one session's outcome.
    pub fn add(&mut self, check: SessionCheck) {
        self.sessions += 1;
        self.events += check.events;
        self.breaks.extend(check.breaks);
        self.warnings.extend(check.warnings);
    }

    /// Whether nothing is broken: no session break, no checkpoint break.
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty() && self.checkpoint_breaks.is_empty() && self.prune_breaks.is_empty()
    }

    /// Sessions with at least one break.
    pub fn broken_sessions(&self) -> usize {
        let mut ids: Vec<&str> = self.breaks.iter().map(|b| b.session.as_str()).collect();
        ids.dedup();
        ids.len()
    }
}

/// Verifies the checkpoint chain, then every session that has a summary,
/// oldest first, each against the latest checkpoint listing it, then the
/// sessions checkpoints list that have no summary (deleted, or their
/// summary removed), calling `each` as each session is done (for progress
/// output).
///
/// A session summary that does not decode is itself a break (its id is
/// its key); that session's events are still checked, without an expected
/// count.
pub fn verify_store(
    reader: &Reader,
    seal_key: Option<&SealPublicKey>,
    mut each: impl FnMut(&SessionCheck),
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let CheckpointCheck {
        checkpoints,
        breaks,
        mut covered,
    } = check_checkpoints(reader, seal_key)?;
    report.checkpoints = checkpoints;
    report.checkpoint_breaks = breaks;
    let prunes = check_prunes(reader, seal_key)?;
    report.prune_records = prunes.records;
    report.prune_breaks = prunes.breaks;
    for summary in reader.sessions() {
        let (id, recorded, summary_break) = match summary {
            Ok(s) => (s.id, Some(s.events), None),
            Err(StoreError::Corrupt { key, reason, .. }) => {
                let id: SessionId = key.parse().map_err(|_| StoreError::Corrupt {
                    what: "session summary",
                    key: key.clone(),
                    reason: reason.clone(),
                })?;
                (id, None, Some(reason))
            }
            Err(e) => return Err(e),
        };
        let stored = stored_events(reader, id).collect::<Result<Vec<_>, _>>()?;
        let mut check = check_chain(id, recorded, seal_key, stored.iter().cloned());
        if let Some(listing) = covered.remove(&id) {
            check_coverage(&mut check, &listing, true, &stored);
        }
        if let Some(reason) = summary_break {
            check.breaks.insert(
                0,
                Break {
                    session: id.to_string(),
                    seq: None,
                    kind: BreakKind::Undecodable,
                    detail: format!("the session summary does not decode: {reason}"),
                },
            );
        }
        each(&check);
        report.add(check);
    }
    // Listed by a checkpoint, without a summary.
    for (id, listing) in covered {
        let stored = stored_events(reader, id).collect::<Result<Vec<_>, _>>()?;
        if stored.is_empty() && prunes.pruned.contains_key(&id) {
            report.pruned += 1;
            continue;
        }
        let mut check = check_chain(id, None, seal_key, stored.iter().cloned());
        check_coverage(&mut check, &listing, false, &stored);
        each(&check);
        report.add(check);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::event::Recorder;

    fn stored(enc: &gatehouse_core::event::Encoded) -> Stored {
        Stored {
            key_seq: enc.seq,
            content: Content::Event {
                event: Box::new(decode(&enc.bytes).unwrap()),
                hash: hash_of(&enc.bytes),
            },
        }
    }

    fn session(n: usize) -> (SessionId, Vec<gatehouse_core::event::Encoded>) {
        let id = SessionId([3; 16]);
        let mut rec = Recorder::new(id);
        let events = (0..n)
            .map(|i| {
                rec.record(
                    i as i64,
                    Body::CommandComplete {
                        tag: format!("SELECT {i}"),
                    },
                )
            })
            .collect();
        (id, events)
    }

    #[test]
    fn intact_chain_has_no_breaks() {
        let (id, events) = session(5);
        let check = check_chain(id, Some(5), None, events.iter().map(stored));
        assert_eq!((check.events, check.breaks.len()), (5, 0));
    }

    #[test]
    fn each_kind_is_reported_once_where_it_is() {
        let (id, events) = session(8);
        let mut s: Vec<Stored> = events.iter().map(stored).collect();
        // #2 altered: its hash no longer matches #3's prev.
        if let Content::Event { hash, .. } = &mut s[2].content {
            hash[0] ^= 1;
        }
        // #5 undecodable; #6 missing.
        s[5].content = Content::Undecodable("garbage".into());
        s.remove(6);
        let check = check_chain(id, Some(9), None, s);
        let found: Vec<(Option<u64>, BreakKind)> =
            check.breaks.iter().map(|b| (b.seq, b.kind)).collect();
        assert_eq!(
            found,
            [
                (Some(2), BreakKind::Modified),
                (Some(5), BreakKind::Undecodable),
                (Some(6), BreakKind::Missing),
                (Some(8), BreakKind::Missing),
            ]
        );
    }

    #[test]
    fn reordered_and_misplaced() {
        let (id, events) = session(4);
        let mut s: Vec<Stored> = events.iter().map(stored).collect();
        s.swap(1, 2);
        s[1].key_seq = 1;
        s[2].key_seq = 2;
        s[3].content = Content::Claims {
            session: SessionId([9; 16]),
            seq: 3,
        };
        let check = check_chain(id, Some(4), None, s);
        let found: Vec<(Option<u64>, BreakKind)> =
            check.breaks.iter().map(|b| (b.seq, b.kind)).collect();
        assert_eq!(
            found,
            [
                (Some(1), BreakKind::Reordered),
                (Some(2), BreakKind::Reordered),
                (Some(3), BreakKind::Misplaced),
            ]
        );
    }
}
