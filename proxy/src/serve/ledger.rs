//! How often each grant has been used.
//!
//! A use is reserved here, atomically across all workers, before the
//! session's `Opened` event (which carries the use number) is written; the
//! store indexes that event by `jti`, so the count survives restarts and is
//! loaded back at start. A reservation whose `Opened` event never reaches
//! the store is lost, never handed out twice: single-use stays single-use.

use std::collections::HashMap;
use std::sync::Mutex;

use gatehouse_core::grant::GrantError;

/// Entries beyond which expired grants are forgotten.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Uses {
    count: u32,
    /// The grant's `exp`; 0 when loaded from the store (unknown).
    exp: i64,
}

/// Use counts by `jti`.
#[derive(Debug, Default)]
pub struct GrantLedger {
    uses: Mutex<HashMap<String, Uses>>,
}

impl GrantLedger {
    /// A ledger starting from the counts recorded in the store.
    pub fn from_recorded(recorded: impl IntoIterator<Item = (String, u32)>) -> Self {
        let uses = recorded
            .into_iter()
            .map(|(jti, count)| (jti, Uses { count, exp: 0 }))
            .collect();
        GrantLedger {
            uses: Mutex::new(uses),
        }
    }

    /// Reserves the next use of `jti`; returns its number (1-based).
    pub fn reserve(
        &self,
        jti: &str,
        max: Option<u32>,
        exp: i64,
        now_s: i64,
    ) -> Result<u32, GrantError> {
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        if uses.len() > PRUNE_ABOVE {
            // Expired grants are refused by the verifier anyway. Entries
            // loaded from the store (exp unknown) are kept.
            uses.retain(|_, u| u.exp == 0 || u.exp > now_s - 3600);
        }
        let entry = uses.entry(jti.to_owned()).or_insert(Uses { count: 0, exp });
        entry.exp = exp;
        if let Some(max) = max
            && entry.count >= max
        {
            return Err(GrantError::UsedUp { uses: max });
        }
        entry.count = entry.count.saturating_add(1);
        Ok(entry.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_is_single_across_reload() {
        let ledger = GrantLedger::default();
        assert_eq!(ledger.reserve("a", Some(1), 10, 0).unwrap(), 1);
        assert!(ledger.reserve("a", Some(1), 10, 0).is_err());
        let reloaded = GrantLedger::from_recorded([("a".to_owned(), 1)]);
        assert!(reloaded.reserve("a", Some(1), 10, 0).is_err());
        assert_eq!(reloaded.reserve("b", Some(2), 10, 0).unwrap(), 1);
        assert_eq!(reloaded.reserve("b", Some(2), 10, 0).unwrap(), 2);
        assert!(reloaded.reserve("b", Some(2), 10, 0).is_err());
        assert_eq!(reloaded.reserve("c", None, 10, 0).unwrap(), 1);
    }

    #[test]
    fn racing_reservations_hand_out_one_use() {
        let ledger = std::sync::Arc::new(GrantLedger::default());
        let wins: usize = (0..8)
            .map(|_| {
                let l = ledger.clone();
                std::thread::spawn(move || l.reserve("race", Some(1), 10, 0).is_ok())
            })
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
    }
}
