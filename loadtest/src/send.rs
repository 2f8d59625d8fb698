//! Sending one task's statements: each with its tag in front, its slot
//! in the ledger taken before it goes out and marked when an answer comes
//! back, and the SQL of the built-in workloads.

use std::sync::Mutex;

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::ledger::AgentLedger;
use crate::schedule::Leg;
use crate::workload::{DENIED_SQL, POINT_SQL, Tag, WRITE_SQL};

/// The ledger, also after a panic elsewhere poisoned its lock.
pub fn lock(ledger: &Mutex<AgentLedger>) -> std::sync::MutexGuard<'_, AgentLedger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends tagged statements on one connection and keeps the ledger.
pub struct Sender<'a> {
    /// The connection.
    pub client: &'a Client,
    /// The run id.
    pub run: &'a str,
    /// Its leg.
    pub leg: Leg,
    /// The agent.
    pub agent: u32,
    /// The connection's number.
    pub conn: u32,
    /// The agent's ledger (gateway statements).
    pub ledger: &'a Mutex<AgentLedger>,
    /// The agent's direct statement counter.
    pub direct_seq: &'a mut u64,
    /// Statements answered so far.
    pub answered: u32,
}

impl Sender<'_> {
    /// The tagged text of the next statement, and its sequence number;
    /// `denied`: one the plan must deny.
    fn next(&mut self, sql: &str, denied: bool) -> (String, u64) {
        let seq = match self.leg {
            Leg::Gateway if denied => lock(self.ledger).send_denied(),
            Leg::Gateway => lock(self.ledger).send(),
            Leg::Direct => {
                *self.direct_seq += 1;
                *self.direct_seq - 1
            }
        };
        let tag = Tag {
            run: self.run,
            leg: self.leg,
            agent: self.agent,
            conn: self.conn,
            seq,
        };
        (tag.apply(sql), seq)
    }

    /// Notes the answer (rows or an SQL error) to statement `seq`.
    fn done<T>(&mut self, seq: u64, result: &Result<T, tokio_postgres::Error>) {
        let answered = match result {
            Ok(_) => true,
            Err(e) => e.as_db_error().is_some(),
        };
        if answered {
            self.answered += 1;
            if self.leg == Leg::Gateway {
                lock(self.ledger).answered(seq);
            }
        }
    }

    /// A simple-protocol query.
    pub async fn simple(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let (text, seq) = self.next(sql, false);
        let result = self.client.simple_query(&text).await;
        self.done(seq, &result);
        result.map(drop)
    }

    /// An extended-protocol query in one round trip (unnamed statement:
    /// Parse, Bind, Describe, Execute, Sync); returns the row count.
    pub async fn typed(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<usize, tokio_postgres::Error> {
        self.extended(sql, params, false).await
    }

    async fn extended(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        denied: bool,
    ) -> Result<usize, tokio_postgres::Error> {
        let (text, seq) = self.next(sql, denied);
        let result = self.client.query_typed(&text, params).await;
        self.done(seq, &result);
        result.map(|rows| rows.len())
    }
}

/// A point read of row `id`.
pub async fn point(s: &mut Sender<'_>, id: i32) -> Result<(), tokio_postgres::Error> {
    s.typed(POINT_SQL, &[(&id, Type::INT4)]).await.map(drop)
}

/// The denied workload's delete of row `id` (which deletes nothing where
/// it runs); returns the row count.
pub async fn denied(s: &mut Sender<'_>, id: i32) -> Result<usize, tokio_postgres::Error> {
    s.extended(DENIED_SQL, &[(&id, Type::INT4)], true).await
}

/// `BEGIN`, the update of row `id`, `COMMIT` (`ROLLBACK` after an SQL
/// error).
pub async fn write(s: &mut Sender<'_>, id: i32) -> Result<(), tokio_postgres::Error> {
    s.simple("BEGIN").await?;
    match s.typed(WRITE_SQL, &[(&id, Type::INT4)]).await {
        Ok(_) => s.simple("COMMIT").await,
        Err(e) => {
            if e.as_db_error().is_some() {
                let _ = s.simple("ROLLBACK").await;
            }
            Err(e)
        }
    }
}

/// Every script statement in order; `ROLLBACK` after an SQL error.
pub async fn script(
    s: &mut Sender<'_>,
    statements: &[String],
) -> Result<(), tokio_postgres::Error> {
    for sql in statements {
        if let Err(e) = s.simple(sql).await {
            // Leave no aborted transaction behind for the next task.
            if e.as_db_error().is_some() {
                let _ = s.simple("ROLLBACK").await;
            }
            return Err(e);
        }
    }
    Ok(())
}
