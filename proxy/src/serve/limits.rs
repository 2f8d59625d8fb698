//! Per-grant limits (`[limits]`), shared by every worker: sessions open at
//! once with one grant, and one grant's statements per second.
//!
//! - [`GrantLimits::open_session`] counts a session of a grant and hands
//!   back a [`SessionSlot`] that gives the count back when dropped: when
//!   the session ends, also when its task is aborted.
//! - [`GrantRates`] is the statement rate the sessions enforce
//!   ([`StatementRate`]): one token bucket per grant, holding up to one
//!   second's worth of statements and refilled continuously. A grant whose
//!   bucket has been full for a second is dropped from the map (a full
//!   bucket and no bucket are the same).
//!
//! Both limits are read on every use, so a reload changes them for new
//! sessions and statements alike; a session that connected without a rate
//! limit stays without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gatehouse_core::pg::StatementRate;

use crate::config::Limits;

/// Microseconds in which a full bucket refills from empty: one second.
const REFILL_US: i64 = 1_000_000;

/// The per-grant limits and what counts against them.
#[derive(Debug)]
pub struct GrantLimits {
    /// `connections_per_grant`; 0: unlimited.
    sessions_max: AtomicUsize,
    /// Open sessions by `jti` (only grants with at least one).
    sessions: Mutex<HashMap<String, usize>>,
    /// The statement rate.
    rates: Arc<GrantRates>,
}

/// One session counted against its grant; gives the count back when
/// dropped.
#[derive(Debug)]
pub struct SessionSlot {
    limits: Arc<GrantLimits>,
    jti: String,
}

impl GrantLimits {
    /// Limits as configured.
    pub fn new(limits: Limits) -> Arc<GrantLimits> {
        Arc::new(GrantLimits {
            sessions_max: AtomicUsize::new(limits.connections_per_grant),
            sessions: Mutex::default(),
            rates: Arc::new(GrantRates {
                per_second: AtomicU64::new(limits.statements_per_second_per_grant),
                buckets: Mutex::default(),
            }),
        })
    }

    /// Takes new limits (a config reload).
    pub fn set(&self, limits: Limits) {
        self.sessions_max
            .store(limits.connections_per_grant, Ordering::Relaxed);
        self.rates
            .per_second
            .store(limits.statements_per_second_per_grant, Ordering::Relaxed);
    }

    /// Counts a session of grant `jti`: its slot, or `Err(limit)` when the
    /// grant already has `limit` sessions open.
    pub fn open_session(self: &Arc<Self>, jti: &str) -> Result<SessionSlot, usize> {
        let max = self.sessions_max.load(Ordering::Relaxed);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let open = sessions.entry(jti.to_owned()).or_insert(0);
        if max != 0 && *open >= max {
            if *open == 0 {
                sessions.remove(jti);
            }
            return Err(max);
        }
        *open += 1;
        Ok(SessionSlot {
            limits: Arc::clone(self),
            jti: jti.to_owned(),
        })
    }

    /// The statement rate for a new session; `None` when unlimited.
    pub fn statement_rate(&self) -> Option<Arc<dyn StatementRate>> {
        if self.rates.per_second.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(Arc::clone(&self.rates) as Arc<dyn StatementRate>)
    }

    #[cfg(test)]
    fn open(&self, jti: &str) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(jti).copied().unwrap_or(0)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut sessions = self
            .limits
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = sessions.get_mut(&self.jti) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sessions.remove(&self.jti);
            }
        }
    }
}

/// Token buckets by `jti`.
#[derive(Debug)]
pub struct GrantRates {
    /// Statements per second, and the bucket's size; 0: unlimited.
    per_second: AtomicU64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_jti: HashMap<String, Bucket>,
    /// When grants with full buckets were last dropped.
    swept_us: i64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in millionths of a statement.
    micro_tokens: u64,
    /// When `micro_tokens` was last brought up to date.
    at_us: i64,
}

impl StatementRate for GrantRates {
    /// A query of more statements than the bucket holds costs a full
    /// bucket.
    fn take(&self, jti: &str, n: u64, now_us: i64) -> Result<(), u64> {
        let per_second = self.per_second.load(Ordering::Relaxed);
        if per_second == 0 {
            return Ok(());
        }
        let full = per_second.saturating_mul(1_000_000);
        let cost = n.clamp(1, per_second).saturating_mul(1_000_000);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if now_us.saturating_sub(buckets.swept_us) >= REFILL_US {
            buckets
                .by_jti
                .retain(|_, b| now_us.saturating_sub(b.at_us) < REFILL_US);
            buckets.swept_us = now_us;
        }
        let bucket = buckets.by_jti.entry(jti.to_owned()).or_insert(Bucket {
            micro_tokens: full,
            at_us: now_us,
        });
        // A clock that went back refills nothing.
        let elapsed = u64::try_from(now_us.saturating_sub(bucket.at_us)).unwrap_or(0);
        bucket.micro_tokens = bucket
            .micro_tokens
            .saturating_add(elapsed.saturating_mul(per_second))
            .min(full);
        bucket.at_us = bucket.at_us.max(now_us);
        if bucket.micro_tokens < cost {
            return Err(per_second);
        }
        bucket.micro_tokens -= cost;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sessions: usize, rate: u64) -> Arc<GrantLimits> {
        GrantLimits::new(Limits {
            connections_per_grant: sessions,
            statements_per_second_per_grant: rate,
        })
    }

    #[test]
    fn sessions_per_grant_are_counted_and_given_back_on_drop() {
        let l = limits(2, 0);
        let a = l.open_session("j").unwrap();
        let b = l.open_session("j").unwrap();
        assert_eq!(l.open_session("j").unwrap_err(), 2);
        let other = l.open_session("k").unwrap();
        drop(a);
        let c = l.open_session("j").unwrap();
        assert_eq!(l.open("j"), 2);
        drop((b, c, other));
        assert_eq!(l.open("j"), 0);
        assert!(l.sessions.lock().unwrap().is_empty(), "nothing left over");
        // Unlimited, and a reload.
        let l = limits(0, 0);
        let many: Vec<_> = (0..100).map(|_| l.open_session("j").unwrap()).collect();
        l.set(Limits {
            connections_per_grant: 100,
            statements_per_second_per_grant: 0,
        });
        assert!(l.open_session("j").is_err());
        drop(many);
        assert!(l.open_session("j").is_ok());
    }

    #[test]
    fn the_rate_is_a_bucket_per_grant_of_one_seconds_worth() {
        let l = limits(0, 0);
        assert!(l.statement_rate().is_none(), "unlimited: no rate at all");
        let l = limits(0, 5);
        let rate = l.statement_rate().unwrap();
        let t = 1_000_000_000;
        for _ in 0..5 {
            assert_eq!(rate.take("j", 1, t), Ok(()));
        }
        assert_eq!(rate.take("j", 1, t), Err(5));
        assert_eq!(rate.take("k", 1, t), Ok(()), "another grant's bucket");
        // A fifth of a second later: one more.
        assert_eq!(rate.take("j", 1, t + 200_000), Ok(()));
        assert_eq!(rate.take("j", 1, t + 200_000), Err(5));
        // A query of many statements costs at most a full bucket.
        assert_eq!(rate.take("j", 50, t + 2_000_000), Ok(()));
        assert_eq!(rate.take("j", 1, t + 2_000_000), Err(5));
        // A clock that goes back refills nothing.
        assert_eq!(rate.take("j", 1, t), Err(5));
        // Idle grants are dropped.
        assert_eq!(rate.take("x", 1, t + 10_000_000), Ok(()));
        assert_eq!(l.rates.buckets.lock().unwrap().by_jti.len(), 1);
    }
}
