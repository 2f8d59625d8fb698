//! What each agent sent through the gateway, for the recording check.
//!
//! A statement's slot is written *before* it is sent, as
//! [`Sent::Uncertain`], and turned into [`Sent::Answered`] when an answer
//! (rows or an SQL error) comes back. A statement whose answer never came
//! (the connection broke, the task timed out) stays uncertain: the gateway
//! may or may not have received it, so the check expects it at most once.
//! An answered one must be recorded exactly once — the gateway records
//! before it forwards. A statement of the denied workload is noted as such:
//! it must be recorded as a denial, not as a statement.

use std::collections::BTreeSet;

/// What became of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Sent; no answer seen.
    Uncertain,
    /// Answered: the gateway received it.
    Answered,
}

/// What became of one connection attempt through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Attempted; it did not open.
    Failed,
    /// It opened.
    Opened,
}

/// One agent's statements and connections through the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentLedger {
    /// By sequence number (the `SEQ` of the tag).
    pub statements: Vec<Sent>,
    /// By connection number (the `CONN` of the tag).
    pub conns: Vec<Conn>,
    /// The sequence numbers of the denied workload's statements.
    pub denied: BTreeSet<u64>,
}

impl AgentLedger {
    /// Takes the next sequence number for a statement about to be sent.
    pub fn send(&mut self) -> u64 {
        self.statements.push(Sent::Uncertain);
        (self.statements.len() - 1) as u64
    }

    /// Like [`AgentLedger::send`], for a statement the plan must deny.
    pub fn send_denied(&mut self) -> u64 {
        let seq = self.send();
        self.denied.insert(seq);
        seq
    }

    /// Whether statement `seq` is one the plan must deny.
    pub fn is_denied(&self, seq: u64) -> bool {
        self.denied.contains(&seq)
    }

    /// The statement `seq` was answered.
    pub fn answered(&mut self, seq: u64) {
        if let Some(s) = usize::try_from(seq)
            .ok()
            .and_then(|i| self.statements.get_mut(i))
        {
            *s = Sent::Answered;
        }
    }

    /// Takes the next connection number for an attempt about to be made.
    pub fn connect(&mut self) -> u32 {
        self.conns.push(Conn::Failed);
        u32::try_from(self.conns.len() - 1).unwrap_or(u32::MAX)
    }

    /// Connection `conn` opened.
    pub fn opened(&mut self, conn: u32) {
        if let Some(c) = self.conns.get_mut(conn as usize) {
            *c = Conn::Opened;
        }
    }
}

/// Every agent's ledger, and the run facts the check needs.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// The run id in the tags.
    pub run: String,
    /// By agent number.
    pub agents: Vec<AgentLedger>,
    /// Whether a preflight connection opened through the gateway.
    pub preflight: bool,
    /// The `jti`s of the grants the agents presented.
    pub jtis: Vec<String>,
    /// When the run started, µs since the Unix epoch.
    pub started_us: i64,
    /// Masked-workload statements answered through the gateway.
    pub masked_answered: u64,
}

impl Ledger {
    /// Statements answered and uncertain, in all, but for the denied
    /// workload's ([`Ledger::denied_counts`]).
    pub fn statement_counts(&self) -> (u64, u64) {
        let (mut answered, mut uncertain) = (0, 0);
        for s in self.agents.iter().flat_map(|a| &a.statements) {
            match s {
                Sent::Answered => answered += 1,
                Sent::Uncertain => uncertain += 1,
            }
        }
        let (denied_answered, denied_uncertain) = self.denied_counts();
        (answered - denied_answered, uncertain - denied_uncertain)
    }

    /// The denied workload's statements answered and uncertain.
    pub fn denied_counts(&self) -> (u64, u64) {
        let mut answered = 0;
        let mut uncertain = 0;
        for a in &self.agents {
            for s in a
                .denied
                .iter()
                .filter_map(|&seq| usize::try_from(seq).ok().and_then(|i| a.statements.get(i)))
            {
                match s {
                    Sent::Answered => answered += 1,
                    Sent::Uncertain => uncertain += 1,
                }
            }
        }
        (answered, uncertain)
    }

    /// Connections attempted and opened through the gateway, in all
    /// (the preflight included).
    pub fn connection_counts(&self) -> (u64, u64) {
        let mut attempted = u64::from(self.preflight);
        let mut opened = u64::from(self.preflight);
        for c in self.agents.iter().flat_map(|a| &a.conns) {
            attempted += 1;
            if *c == Conn::Opened {
                opened += 1;
            }
        }
        (attempted, opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_before_sending() {
        let mut a = AgentLedger::default();
        let c = a.connect();
        let s0 = a.send();
        let s1 = a.send();
        let s2 = a.send_denied();
        a.answered(s0);
        a.answered(s2);
        a.opened(c);
        assert_eq!((s0, s1, s2), (0, 1, 2));
        assert_eq!(
            a.statements,
            [Sent::Answered, Sent::Uncertain, Sent::Answered]
        );
        assert!(a.is_denied(2) && !a.is_denied(1));
        let ledger = Ledger {
            agents: vec![a, AgentLedger::default()],
            preflight: true,
            ..Ledger::default()
        };
        assert_eq!(ledger.statement_counts(), (1, 1));
        assert_eq!(ledger.denied_counts(), (1, 0));
        assert_eq!(ledger.connection_counts(), (2, 2));
    }
}
