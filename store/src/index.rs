//! Secondary indexes: the `index` keyspace (see the crate docs' layout).
//!
//! Every key is `tag ‖ len (u32 BE) ‖ value ‖ started (8 bytes) ‖ session
//! id (16 bytes)`, and for statement indexes also `‖ seq (u64 BE)`; the
//! stored value is empty. `started` is the session's start (the time of
//! its first event, [`SessionSummary::started_us`]) as an order-preserving
//! big-endian integer (`i64` with its sign bit flipped), so one value's
//! entries are ordered by session start and a time range is one range
//! scan. The statement indexes are keyed by the *session's* start too: the
//! audit queries select statements by the sessions they belong to.
//!
//! The writer adds entries in the same batch as the events they index.
//! An index is a superset: a reader re-checks what it finds against the
//! summaries and events (an entry may name a session whose `Opened` was
//! later superseded, or one a retention run removed).

use std::ops::Bound;

use fjall::Keyspace;
use gatehouse_core::event::{Body, SessionId};

use crate::StoreError;
use crate::keys::Db;
use crate::summary::{Fact, SessionSummary, VerdictKeys};

/// A session index: which sessions have this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionIndex {
    /// The grant's `sub` (of `Opened`, or of `Refused` when the session
    /// was never opened).
    Subject,
    /// The target.
    Target,
    /// The grant's `jti`.
    Jti,
}

/// A statement index: which judged statements (`Verdict` events) have
/// this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementIndex {
    /// A relation the verdict's `accesses` name: the part after ` on `
    /// (`update on public.invoices` → `public.invoices`), as the plan
    /// wrote it (schema-qualified).
    Relation,
    /// One of the verdict's `kinds`, or an operation of its `accesses`
    /// (the part before ` on `, or the whole access when it has none).
    Kind,
}

impl SessionIndex {
    fn tag(self) -> u8 {
        match self {
            SessionIndex::Subject => b's',
            SessionIndex::Target => b't',
            SessionIndex::Jti => b'j',
        }
    }
}

impl StatementIndex {
    fn tag(self) -> u8 {
        match self {
            StatementIndex::Relation => b'r',
            StatementIndex::Kind => b'k',
        }
    }
}

/// `tag ‖ len ‖ value`: the prefix all entries of one value share.
fn value_prefix(tag: u8, value: &str) -> Vec<u8> {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(1 + 4 + value.len() + 8 + 16 + 8);
    key.push(tag);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

/// A time as an order-preserving big-endian integer.
fn time_bytes(us: i64) -> [u8; 8] {
    ((us as u64) ^ (1 << 63)).to_be_bytes()
}

fn session_key(index: SessionIndex, value: &str, started_us: i64, id: SessionId) -> Vec<u8> {
    let mut key = value_prefix(index.tag(), value);
    key.extend_from_slice(&time_bytes(started_us));
    key.extend_from_slice(&id.0);
    key
}

fn statement_key(
    index: StatementIndex,
    value: &str,
    started_us: i64,
    id: SessionId,
    seq: u64,
) -> Vec<u8> {
    let mut key = value_prefix(index.tag(), value);
    key.extend_from_slice(&time_bytes(started_us));
    key.extend_from_slice(&id.0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits an access as the audit queries read it: `(operation, relation)`,
/// the relation empty when the access names none.
pub(crate) fn access_parts(access: &str) -> (&str, &str) {
    access.split_once(" on ").unwrap_or((access, ""))
}

/// The index entries one event adds, given its session's summary *after*
/// the event was applied. Most events add none.
pub(crate) fn entries(summary: &SessionSummary, seq: u64, fact: &Fact, out: &mut Vec<Vec<u8>>) {
    let (id, started) = (summary.id, summary.started_us);
    let mut sessions = |subject: Option<&str>, target: &str, jti: Option<&str>| {
        if let Some(s) = subject {
            out.push(session_key(SessionIndex::Subject, s, started, id));
        }
        out.push(session_key(SessionIndex::Target, target, started, id));
        if let Some(j) = jti {
            out.push(session_key(SessionIndex::Jti, j, started, id));
        }
    };
    match fact {
        Fact::Opened(o) => sessions(Some(&o.subject), &o.target, Some(&o.jti)),
        // The queries read `Refused` only for sessions never opened.
        Fact::Refused(r) if summary.opened.is_none() => {
            sessions(r.subject.as_deref(), &r.target, r.jti.as_deref());
        }
        Fact::Verdict(v) => {
            for r in &v.relations {
                out.push(statement_key(StatementIndex::Relation, r, started, id, seq));
            }
            for k in &v.kinds {
                out.push(statement_key(StatementIndex::Kind, k, started, id, seq));
            }
        }
        _ => {}
    }
}

/// Bounds of a scan over one value's entries, sessions started in
/// `[since, until)`.
fn bounds(
    prefix: &[u8],
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut lower = prefix.to_vec();
    lower.extend_from_slice(&time_bytes(since_us.unwrap_or(i64::MIN)));
    let upper = match until_us {
        Some(t) => {
            let mut upper = prefix.to_vec();
            upper.extend_from_slice(&time_bytes(t));
            Bound::Excluded(upper)
        }
        None => Bound::Unbounded,
    };
    (Bound::Included(lower), upper)
}

fn scan(
    index: &Keyspace,
    prefix: &[u8],
    since_us: Option<i64>,
    until_us: Option<i64>,
    rest_len: usize,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for guard in index.range(bounds(prefix, since_us, until_us)) {
        let key = guard.key()?;
        let Some(rest) = key.strip_prefix(prefix) else {
            break;
        };
        // rest = started (8) ‖ id (16) ‖ …
        let (Some(id), Some(tail)) = (rest.get(8..24), rest.get(24..)) else {
            return Err(StoreError::corrupt("index entry", &key, "too short"));
        };
        if rest.len() != rest_len {
            return Err(StoreError::corrupt("index entry", &key, "wrong length"));
        }
        each(id, tail)?;
    }
    Ok(())
}

fn session_id(bytes: &[u8]) -> Result<SessionId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(SessionId)
        .map_err(|_| StoreError::corrupt("index entry", bytes, "bad session id"))
}

/// Sessions with `value` in `index` that started in `[since, until)`, in
/// start order.
pub(crate) fn sessions_by(
    db: &Db,
    index: SessionIndex,
    value: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<Vec<SessionId>, StoreError> {
    let prefix = value_prefix(index.tag(), value);
    let mut out = Vec::new();
    scan(&db.index, &prefix, since_us, until_us, 24, |id, _| {
        out.push(session_id(id)?);
        Ok(())
    })?;
    Ok(out)
}

/// Statements (session, seq of the `Verdict`) with `value` in `index`
/// whose sessions started in `[since, until)`, in session start order.
pub(crate) fn statements_by(
    db: &Db,
    index: StatementIndex,
    value: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<Vec<(SessionId, u64)>, StoreError> {
    let prefix = value_prefix(index.tag(), value);
    let mut out = Vec::new();
    scan(&db.index, &prefix, since_us, until_us, 32, |id, seq| {
        let seq = <[u8; 8]>::try_from(seq)
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::corrupt("index entry", seq, "bad seq"))?;
        out.push((session_id(id)?, seq));
        Ok(())
    })?;
    Ok(out)
}

/// Entries written per batch while backfilling.
const BACKFILL_BATCH: usize = 16 * 1024;

/// Every index entry of one stored session (its summary and its events'),
/// as the writer added them: for [`backfill`], and for a prune, which
/// removes them with the session.
pub(crate) fn session_entries(
    db: &Db,
    summary: &SessionSummary,
    keys: &mut Vec<Vec<u8>>,
) -> Result<(), StoreError> {
    if let Some(o) = &summary.opened {
        entries(summary, 0, &Fact::Opened(Box::new(o.clone())), keys);
    } else if let Some(r) = &summary.refused {
        entries(summary, 0, &Fact::Refused(Box::new(r.clone())), keys);
    }
    for event in crate::read::events_of(db, summary.id) {
        let event = event?;
        if let Body::Verdict(verdict) = &event.body {
            let fact = Fact::Verdict(Box::new(VerdictKeys::new(
                verdict.kinds.iter().map(String::as_str),
                verdict.accesses.iter().map(String::as_str),
            )));
            entries(summary, event.seq, &fact, keys);
        }
    }
    Ok(())
}

/// Builds the indexes of a store written before they existed (or filled
/// by an archive import): reads every session's summary and events and
/// writes their entries. Idempotent (entries are keys with empty values).
pub(crate) fn backfill(db: &Db) -> Result<u64, StoreError> {
    let mut batch = db.db.batch();
    let (mut pending, mut written) = (0usize, 0u64);
    let mut keys = Vec::new();
    for guard in db.sessions.iter() {
        let (k, v) = guard.into_inner()?;
        let summary = SessionSummary::decode(&k, &v)?;
        keys.clear();
        session_entries(db, &summary, &mut keys)?;
        for key in keys.drain(..) {
            batch.insert(&db.index, key, &[][..]);
            pending += 1;
            written += 1;
        }
        if pending >= BACKFILL_BATCH {
            std::mem::replace(&mut batch, db.db.batch()).commit()?;
            pending = 0;
        }
    }
    batch.commit()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    use gatehouse_core::event::{Decision, Opened, Recorder, StatementProtocol, Verdict};

    use crate::{Reader, Store, StoreOptions};

    fn opened(subject: &str, target: &str, jti: &str) -> Body {
        Body::Opened(Opened {
            subject: subject.into(),
            jti: jti.into(),
            issuer: "iss".into(),
            purpose: "p".into(),
            ticket: None,
            target: target.into(),
            client_user: "u".into(),
            application_name: None,
            client_addr: "127.0.0.1:1".into(),
            tls: None,
            use_number: 1,
            max_uses: None,
            expires_at: 0,
        })
    }

    fn verdict(kinds: &[&str], accesses: &[&str]) -> Body {
        Body::Verdict(Verdict {
            decision: Decision::Allow,
            protocol: StatementProtocol::Simple,
            statement_name: String::new(),
            text: "x".into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            accesses: accesses.iter().map(|k| k.to_string()).collect(),
            reason: String::new(),
            approval: String::new(),
            approver: String::new(),
        })
    }

    /// Three sessions a day apart; what each index finds, then the same
    /// after the index is dropped and rebuilt on open (an older store).
    #[test]
    fn indexes_find_sessions_and_statements_and_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000_000i64;
        let t0 = 1_764_000_000_000_000i64;
        let ids: Vec<SessionId> = (1u8..=3).map(|n| SessionId([n; 16])).collect();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let w = store.writer();
            for (n, id) in ids.iter().enumerate() {
                let at = t0 + day * n as i64;
                let mut rec = Recorder::new(*id);
                let subject = if n == 1 { "b" } else { "a" };
                w.append_blocking(vec![
                    rec.record(at, opened(subject, "db", &format!("j{n}"))),
                    rec.record(at + 1, verdict(&["select"], &["select on public.t"])),
                    rec.record(at + 2, verdict(&["update"], &["update on public.u"])),
                ])
                .unwrap();
            }
            store.shutdown().unwrap();
        }
        let check = |r: &Reader| {
            assert_eq!(
                r.sessions_by(SessionIndex::Subject, "a", None, None)
                    .unwrap(),
                vec![ids[0], ids[2]]
            );
            assert_eq!(
                r.sessions_by(SessionIndex::Subject, "a", Some(t0 + 1), None)
                    .unwrap(),
                vec![ids[2]]
            );
            assert_eq!(
                r.sessions_by(SessionIndex::Target, "db", Some(t0), Some(t0 + 2 * day))
                    .unwrap(),
                vec![ids[0], ids[1]]
            );
            assert_eq!(
                r.sessions_by(SessionIndex::Jti, "j1", None, None).unwrap(),
                vec![ids[1]]
            );
            assert!(
                r.sessions_by(SessionIndex::Jti, "j", None, None)
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                r.statements_by(StatementIndex::Relation, "public.u", None, Some(t0 + day))
                    .unwrap(),
                vec![(ids[0], 2)]
            );
            assert_eq!(
                r.statements_by(StatementIndex::Kind, "select", None, None)
                    .unwrap(),
                vec![(ids[0], 1), (ids[1], 1), (ids[2], 1)]
            );
        };
        let r = Reader::open(dir.path()).unwrap();
        check(&r);
        // An older store: no marker, no entries.
        let keys: Vec<_> = r.db().index.iter().map(|g| g.key().unwrap()).collect();
        assert_eq!(keys.len(), 3 * 3 + 3 * 2 * 2);
        for k in keys {
            r.db().index.remove(k).unwrap();
        }
        r.db()
            .db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap()
            .remove(&b"index_format"[..])
            .unwrap();
        assert!(
            r.sessions_by(SessionIndex::Subject, "a", None, None)
                .unwrap()
                .is_empty()
        );
        drop(r);
        check(&Reader::open(dir.path()).unwrap());
    }

    #[test]
    fn odd_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let r = Reader::open(dir.path()).unwrap();
        let mut key = value_prefix(b's', "a");
        key.extend_from_slice(&[1, 2, 3]);
        r.db().index.insert(&key, b"").unwrap();
        assert!(
            r.sessions_by(SessionIndex::Subject, "a", None, None)
                .is_err()
        );
        assert!(
            r.sessions_by(SessionIndex::Subject, "b", None, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn time_bytes_keep_order() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_764_000_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]));
        }
    }

    #[test]
    fn one_value_is_not_a_prefix_of_another() {
        let a = session_key(SessionIndex::Subject, "ab", 0, SessionId([0; 16]));
        assert!(!a.starts_with(&value_prefix(b's', "a")));
        assert!(a.starts_with(&value_prefix(b's', "ab")));
    }

    #[test]
    fn accesses_split_like_the_queries() {
        assert_eq!(
            access_parts("update on public.invoices"),
            ("update", "public.invoices")
        );
        assert_eq!(
            access_parts("calling function nextval"),
            ("calling function nextval", "")
        );
    }
}
