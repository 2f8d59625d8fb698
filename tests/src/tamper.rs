//! Tampering with a store's `events` keyspace as someone with disk access
//! would, for the tests that check verification catches it. The keyspace
//! holds single events and runs of them under one key
//! ([`gatehouse_core::event::runs`]), so removing "events #n.." means
//! rewriting the run that holds them.

use gatehouse_core::event::runs::split;
use gatehouse_core::event::{SessionId, event_key};

/// Removes every entry of `id`'s events.
pub fn remove_events(events: &fjall::Keyspace, id: SessionId) {
    let keys: Vec<_> = events
        .prefix(id.0)
        .map(|g| g.key().expect("a key"))
        .collect();
    for key in keys {
        events.remove(key).expect("remove");
    }
}

/// Keeps `id`'s events `0..keep` and removes the rest, rewriting the
/// events kept as single entries (a layout every reader accepts).
pub fn cut_events(events: &fjall::Keyspace, id: SessionId, keep: u64) {
    let mut kept = Vec::new();
    for guard in events.prefix(id.0) {
        let (key, value) = guard.into_inner().expect("an entry");
        let parts = split(&id, &key, &value).expect("a well-formed entry");
        for (seq, at) in parts {
            if seq < keep {
                kept.push((seq, value[at].to_vec()));
            }
        }
    }
    remove_events(events, id);
    for (seq, value) in kept {
        events.insert(event_key(id, seq), value).expect("insert");
    }
}
