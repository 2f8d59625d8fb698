//! Classifications kept by normalized statement text.
//!
//! The key is `pg_query::normalize` of the SQL: PostgreSQL's own lexer
//! replaces every constant with `$n`, so statements that differ only in
//! their literals (what an agent sends over and over) share one entry.
//! Constants never change a classification: relations, functions,
//! statement kinds and the variables of `SET` are names, not constants.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use super::classify::{Classification, ClassifyError, classify};

/// How many independently locked maps the entries are spread over.
const SHARDS: usize = 16;

/// A classification, shared between the cache and its callers.
type Entry = Arc<Result<Classification, ClassifyError>>;

/// Classifications kept by normalized statement text, shared by every
/// session (`Send + Sync`).
///
/// Bounded: when a shard holds its share of `capacity`, it is emptied
/// before the next insert (cheap, and a hot statement is back after one
/// miss).
#[derive(Debug)]
pub struct ClassifierCache {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    per_shard: usize,
}

impl ClassifierCache {
    /// A cache of about `capacity` classifications (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        ClassifierCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The classification of `sql`, from the cache when a statement with
    /// the same normalized text was classified before.
    ///
    /// SQL that cannot be normalized cannot be parsed either: it is
    /// classified (to its syntax error) without being kept.
    pub fn classify(&self, sql: &str) -> Entry {
        let Ok(key) = pg_query::normalize(sql) else {
            return Arc::new(classify(sql));
        };
        let Some(shard) = self.shard(&key) else {
            return Arc::new(classify(sql));
        };
        if let Some(hit) = lock(shard).get(&key) {
            return Arc::clone(hit);
        }
        // Classified without the lock held: a concurrent miss on the same
        // key classifies twice and one result wins, which is harmless.
        let entry = Arc::new(classify(sql));
        let mut map = lock(shard);
        if map.len() >= self.per_shard {
            map.clear();
        }
        Arc::clone(map.entry(key).or_insert(entry))
    }

    /// How many classifications are kept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard of `key` (always `Some`: there are `SHARDS` of them).
    fn shard(&self, key: &str) -> Option<&Mutex<HashMap<String, Entry>>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.shards.get((hasher.finish() % SHARDS as u64) as usize)
    }
}

impl Default for ClassifierCache {
    /// Room for 10 000 classifications.
    fn default() -> Self {
        ClassifierCache::new(10_000)
    }
}

/// The map, even if a thread panicked holding it (the map itself is
/// never left half-updated by the code above).
fn lock(shard: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_share_an_entry_relations_do_not() {
        let cache = ClassifierCache::new(100);
        assert!(cache.is_empty());
        let a = cache.classify("SELECT * FROM invoices WHERE id = 1");
        let b = cache.classify("SELECT * FROM invoices WHERE id = 'abc'");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 1);
        let c = cache.classify("SELECT * FROM customers WHERE id = 1");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(a, c);
        assert_eq!(cache.len(), 2);
        assert_eq!(*a, classify("SELECT * FROM invoices WHERE id = 7"));
    }

    #[test]
    fn syntax_errors_are_not_kept() {
        let cache = ClassifierCache::new(100);
        let r = cache.classify("SELEC 1");
        assert!(matches!(*r, Err(ClassifyError::Syntax(_))));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_shard_is_emptied() {
        let cache = ClassifierCache::new(SHARDS);
        for i in 0..200 {
            cache.classify(&format!("SELECT * FROM t{i}"));
        }
        assert!(cache.len() <= SHARDS);
        assert!(!cache.is_empty());
    }
}
