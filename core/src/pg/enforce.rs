//! The plan, enforced on the wire.
//!
//! Every simple query, Parse and FunctionCall is classified and held
//! against the grant's scope ([`crate::policy`]) before it is forwarded.
//!
//! # Denials the target agrees with
//!
//! A denied statement is not answered by the gateway alone: inside a
//! transaction block the client must see the transaction fail, and so must
//! PostgreSQL, or the two disagree about what a later `COMMIT` means. So
//! the gateway sends the target, in the statement's place, a `DO` block
//! that raises the denial (SQLSTATE 42501, the gateway's message and hint).
//! The target answers it like any failed statement: the error, and a
//! ReadyForQuery whose status is the truth (`E` in a failed block, `I`
//! otherwise).
//!
//! - Simple query: the Query becomes `Query(DO …)`.
//! - Parse: becomes Parse, Bind and Execute of the `DO` block on the
//!   unnamed statement and portal. The target answers ParseComplete,
//!   BindComplete, then the error, and skips everything else up to the
//!   client's Sync. The two completions are not the client's: a ledger of
//!   the requests in flight finds them among the target's answers and drops
//!   them, so the client sees its Parse fail.
//! - FunctionCall (the legacy sub-protocol names a function by OID and
//!   cannot be classified): denied unless the plan allows the command
//!   `function_call`; it becomes `Query(DO …)`, answered the same way.
//!
//! # Holds
//!
//! A statement that only an `approve` rule covers is held: in
//! [`HoldMode::Wait`] the session stops there until the driver reports a
//! decision, then judges the same frame again with the decision in hand
//! (approved: forwarded; denied or timed out: refused naming the approval).
//! In [`HoldMode::Reject`] it is refused at once with the approval's id,
//! and passes once when the identical statement comes again after an
//! approver approved it ([`ApprovedStatements`]).
//!
//! # Rates
//!
//! A statement the plan allows may still be refused for going over the
//! grant's statement rate, which the gateway keeps per grant across all its
//! sessions ([`StatementRate`]). It is refused the same way (SQLSTATE
//! 53400): the target raises the error in its place, so the session goes
//! on and a transaction block fails as PostgreSQL would fail it. Simple
//! queries and Parse count; a Bind or Execute of a statement prepared
//! earlier does not, and neither do `COMMIT`, `ROLLBACK` and `ROLLBACK TO`
//! (refusing them would only keep a block and its locks open longer).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::encode;
use super::frontend::Message;
use super::wire::put_cstr;
use crate::event::{self, Decision, StatementProtocol};
use crate::grant::TargetScope;
use crate::policy::{Access, ClassifierCache, ClassifyError, Verdict, check};

/// What a session enforces: its grant's scope on the target.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The grant's scope on this target.
    pub scope: Arc<TargetScope>,
    /// Classifications shared by the gateway's sessions.
    pub classifier: Arc<ClassifierCache>,
    /// The grant's `jti`, named in denials.
    pub jti: String,
    /// What a hold does to the client.
    pub hold: HoldMode,
    /// Approvals granted to statements refused in reject-and-retry mode.
    pub approvals: Option<Arc<dyn ApprovedStatements>>,
}

/// What a statement that needs approval does to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HoldMode {
    /// The statement waits at the gateway until an approver decides.
    #[default]
    Wait,
    /// The statement is refused with the approval's id; once approved, the
    /// identical statement passes once.
    Reject,
}

/// Approvals granted in reject-and-retry mode, kept by the gateway.
pub trait ApprovedStatements: Send + Sync + fmt::Debug {
    /// An approval granted to grant `jti` for exactly `sql`, taken: it lets
    /// the statement pass once. Its id.
    fn take_approved(&self, jti: &str, sql: &str) -> Option<String>;
}

/// Statement rates shared by all the sessions of a grant, kept by the
/// gateway (across its workers). The session passes the time in; it never
/// reads a clock.
pub trait StatementRate: Send + Sync + fmt::Debug {
    /// Takes `n` statements (at least one) of grant `jti` at `now_us` from
    /// the grant's allowance: `Ok(())`, or `Err(per_second)`, the limit the
    /// grant is over.
    fn take(&self, jti: &str, n: u64, now_us: i64) -> Result<(), u64>;
}

/// A statement held for approval: what the driver registers with the
/// gateway's approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The approval's id, unique in the gateway.
    pub id: String,
    /// The statement.
    pub statement: String,
    /// What only an `approve` rule covers (`delete on public.invoices`).
    pub needs: Vec<String>,
}

/// An approver's answer, or the gateway's when none came in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalDecision {
    /// Whether the statement may run.
    pub approved: bool,
    /// Who decided (`gatehouse` for a timeout).
    pub approver: String,
    /// Why.
    pub reason: String,
}

/// What to do with one client message.
#[derive(Debug)]
pub(crate) enum Step {
    /// Forward it as it is.
    Forward,
    /// Send these bytes to the target in its place.
    Replace(Bytes),
    /// Keep it (unconsumed) until the approval is decided.
    Hold(ApprovalRequest),
}

/// The policy's answer to one client message: what to do, and the verdict
/// to record (if the message was judged), and in reject-and-retry mode the
/// approval to request.
#[derive(Debug)]
pub(crate) struct Judged {
    pub step: Step,
    pub verdict: Option<event::Verdict>,
    pub request: Option<ApprovalRequest>,
}

/// A request the target has yet to answer, as far as ParseComplete and
/// BindComplete are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    /// A Parse; `ours` when the gateway sent it.
    Parse { ours: bool },
    /// A Bind; `ours` when the gateway sent it.
    Bind { ours: bool },
    /// A Sync: answered by ReadyForQuery.
    Sync,
    /// A simple query or function call: answered by ReadyForQuery.
    Query,
}

/// A session's enforcement state.
#[derive(Debug)]
pub(crate) struct Enforcer {
    policy: Policy,
    /// The grant's statement rate, when the gateway limits it.
    rate: Option<Arc<dyn StatementRate>>,
    in_flight: VecDeque<InFlight>,
    /// A denial was injected into the current extended batch: the target
    /// skips the rest of it, so it is not judged again.
    batch_denied: bool,
    statements: u64,
    rows: u64,
    /// Approval ids are this prefix and a counter.
    id_prefix: String,
    approvals_requested: u64,
    /// The decision on the held statement, for judging it again.
    decided: Option<(String, ApprovalDecision)>,
}

/// Why a statement was refused, as the client is told.
struct Denial {
    sqlstate: &'static str,
    message: String,
    hint: String,
}

impl Enforcer {
    /// Enforces `policy` and the statement `rate`; approval ids start with
    /// `id_prefix`.
    pub(super) fn new(
        policy: Policy,
        rate: Option<Arc<dyn StatementRate>>,
        id_prefix: String,
    ) -> Self {
        Enforcer {
            policy,
            rate,
            in_flight: VecDeque::new(),
            batch_denied: false,
            statements: 0,
            rows: 0,
            id_prefix,
            approvals_requested: 0,
            decided: None,
        }
    }

    /// The held statement's fate: it is judged again with this in hand.
    pub(super) fn decide(&mut self, id: String, decision: ApprovalDecision) {
        self.decided = Some((id, decision));
    }

    fn next_approval_id(&mut self) -> String {
        self.approvals_requested += 1;
        format!("{}-{}", self.id_prefix, self.approvals_requested)
    }

    /// The scope's session duration limit, microseconds.
    pub(super) fn duration_limit_us(&self) -> Option<i64> {
        let s = self.policy.scope.limits.duration_s?;
        Some(
            i64::try_from(s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000),
        )
    }

    /// Whether the target owes no answer to anything sent so far.
    pub(super) fn idle(&self) -> bool {
        self.in_flight.is_empty() && !self.batch_denied
    }

    /// Whether the current extended batch holds a denial, so the target
    /// skips the rest of it up to the Sync.
    pub(super) fn batch_denied(&self) -> bool {
        self.batch_denied
    }

    /// The jti, for messages.
    pub(super) fn jti(&self) -> &str {
        &self.policy.jti
    }

    /// Judges one client message, arrived at `now_us`.
    pub(super) fn client(&mut self, msg: &Message<'_>, now_us: i64) -> Judged {
        match msg {
            Message::Query(sql) => {
                let judged = self.judge(sql, "", StatementProtocol::Simple, now_us);
                if !matches!(judged.step, Step::Hold(_)) {
                    self.in_flight.push_back(InFlight::Query);
                }
                judged
            }
            Message::Parse { name, sql, .. } => {
                if self.batch_denied {
                    // The target skips it along with the rest of the batch.
                    self.in_flight.push_back(InFlight::Parse { ours: false });
                    return forward();
                }
                let judged = self.judge(sql, name, StatementProtocol::Extended, now_us);
                match judged.step {
                    Step::Forward => self.in_flight.push_back(InFlight::Parse { ours: false }),
                    Step::Replace(_) => {
                        self.batch_denied = true;
                        self.in_flight.push_back(InFlight::Parse { ours: true });
                        self.in_flight.push_back(InFlight::Bind { ours: true });
                    }
                    Step::Hold(_) => {}
                }
                judged
            }
            Message::Bind(_) => {
                self.in_flight.push_back(InFlight::Bind { ours: false });
                forward()
            }
            Message::Sync => {
                self.in_flight.push_back(InFlight::Sync);
                self.batch_denied = false;
                forward()
            }
            Message::FunctionCall => {
                self.in_flight.push_back(InFlight::Query);
                let access = Access::Command {
                    name: "function_call".into(),
                    relation: None,
                };
                let allowed = self
                    .policy
                    .scope
                    .allow
                    .iter()
                    .any(|r| crate::policy::covers(r, &access));
                if allowed {
                    return forward();
                }
                let denial = self.denial_for(&Verdict::Deny {
                    access: access.clone(),
                });
                Judged {
                    verdict: Some(event::Verdict {
                        decision: Decision::Deny,
                        protocol: StatementProtocol::Simple,
                        statement_name: String::new(),
                        text: "<function call>".into(),
                        kinds: vec!["function_call".into()],
                        accesses: vec![access.to_string()],
                        reason: denial.message.clone(),
                        approval: String::new(),
                        approver: String::new(),
                    }),
                    step: Step::Replace(deny_query(&denial)),
                    request: None,
                }
            }
            _ => forward(),
        }
    }

    fn judge(&mut self, sql: &str, name: &str, protocol: StatementProtocol, now_us: i64) -> Judged {
        let extended = protocol == StatementProtocol::Extended;
        let classified = self.policy.classifier.classify(sql);
        let (kinds, accesses) = match classified.as_ref() {
            Ok(c) => (
                c.statements.iter().map(|s| s.kind.clone()).collect(),
                c.statements
                    .iter()
                    .flat_map(|s| &s.accesses)
                    .map(ToString::to_string)
                    .collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let count = classified
            .as_ref()
            .as_ref()
            .map_or(1, |c| c.statements.len() as u64);
        let mut record = event::Verdict {
            decision: Decision::Allow,
            protocol,
            statement_name: name.to_owned(),
            text: if extended {
                sql.to_owned()
            } else {
                String::new()
            },
            kinds,
            accesses,
            reason: String::new(),
            approval: String::new(),
            approver: String::new(),
        };
        let verdict = check(&classified, &self.policy.scope);
        let verdict = match verdict {
            Verdict::Hold { needs } => match self.resolve_hold(sql, &mut record) {
                Some(true) => Verdict::Allow,
                Some(false) => {
                    let denial = Denial {
                        sqlstate: "42501",
                        message: format!(
                            "gatehouse: approval {} was denied by {}: {}",
                            record.approval, record.approver, record.reason
                        ),
                        hint: "The statement did not run. Ask the approver, or for a plan that allows it.".into(),
                    };
                    return self.refuse(sql, record, denial, extended);
                }
                None => return self.hold(sql, needs, record, extended),
            },
            other => other,
        };
        if verdict == Verdict::Allow
            && !ends_block(&record.kinds)
            && let Some(denial) = self.over_rate(count, now_us)
        {
            record.reason = denial.message.clone();
            return self.refuse(sql, record, denial, extended);
        }
        let verdict = match verdict {
            Verdict::Allow => self.count_statements(count),
            other => other,
        };
        if verdict == Verdict::Allow {
            return Judged {
                step: Step::Forward,
                verdict: Some(record),
                request: None,
            };
        }
        let denial = self.denial_for(&verdict);
        record.reason = denial.message.clone();
        self.refuse(sql, record, denial, extended)
    }

    /// A decision already made on this statement: `Some(approved)`, with
    /// the approval recorded in `record`.
    fn resolve_hold(&mut self, sql: &str, record: &mut event::Verdict) -> Option<bool> {
        if let Some((id, decision)) = self.decided.take() {
            record.approval = id;
            record.approver = decision.approver;
            record.reason = decision.reason;
            return Some(decision.approved);
        }
        if self.policy.hold == HoldMode::Reject {
            let approvals = self.policy.approvals.as_ref()?;
            let id = approvals.take_approved(&self.policy.jti, sql)?;
            record.approval = id;
            record.reason = "approved earlier (reject-and-retry)".into();
            return Some(true);
        }
        None
    }

    /// Holds the statement (wait mode) or refuses it with a request for
    /// approval (reject mode).
    fn hold(
        &mut self,
        sql: &str,
        needs: Vec<Access>,
        mut record: event::Verdict,
        extended: bool,
    ) -> Judged {
        let needs: Vec<String> = needs.iter().map(ToString::to_string).collect();
        let request = ApprovalRequest {
            id: self.next_approval_id(),
            statement: sql.to_owned(),
            needs: needs.clone(),
        };
        record.decision = Decision::Hold;
        record.text = sql.to_owned();
        record.approval = request.id.clone();
        record.reason = format!("needs approval: {}", needs.join(", "));
        if self.policy.hold == HoldMode::Wait {
            return Judged {
                step: Step::Hold(request),
                verdict: Some(record),
                request: None,
            };
        }
        let denial = Denial {
            sqlstate: "42501",
            message: format!(
                "gatehouse: the plan of grant {} needs a human's approval for {}; requested as approval {}",
                self.policy.jti,
                needs.join(", "),
                request.id
            ),
            hint: format!(
                "Retry the identical statement once approval {} is approved (gatehouse approvals approve {}).",
                request.id, request.id
            ),
        };
        let mut judged = self.refuse(sql, record, denial, extended);
        judged.request = Some(request);
        judged
    }

    /// Refuses the statement: the target raises `denial` in its place.
    fn refuse(
        &mut self,
        sql: &str,
        mut record: event::Verdict,
        denial: Denial,
        extended: bool,
    ) -> Judged {
        if record.decision == Decision::Allow {
            record.decision = Decision::Deny;
        }
        if record.reason.is_empty() {
            record.reason = denial.message.clone();
        }
        if record.text.is_empty() {
            record.text = sql.to_owned();
        }
        let step = if extended {
            Step::Replace(deny_extended(&denial))
        } else {
            Step::Replace(deny_query(&denial))
        };
        Judged {
            step,
            verdict: Some(record),
            request: None,
        }
    }

    /// Takes `n` statements from the grant's rate: `None`, or the denial
    /// when the grant is over it.
    fn over_rate(&self, n: u64, now_us: i64) -> Option<Denial> {
        let rate = self.rate.as_ref()?;
        let per_second = rate.take(&self.policy.jti, n.max(1), now_us).err()?;
        Some(Denial {
            sqlstate: "53400",
            message: format!(
                "gatehouse: grant {} is over its limit of {per_second} statements per second \
                 (statements_per_second_per_grant, shared by all its sessions), so this \
                 statement did not run",
                self.policy.jti
            ),
            hint: "Slow down and retry in a moment; the session goes on.".into(),
        })
    }

    /// Counts `n` statements against the limit: `Allow`, or the denial of
    /// one past it.
    fn count_statements(&mut self, n: u64) -> Verdict {
        let next = self.statements.saturating_add(n);
        match self.policy.scope.limits.statements {
            Some(max) if next > max => Verdict::Deny {
                access: Access::Command {
                    name: format!("statement {next} (the plan allows {max} per session)"),
                    relation: None,
                },
            },
            _ => {
                self.statements = next;
                Verdict::Allow
            }
        }
    }

    fn denial_for(&self, verdict: &Verdict) -> Denial {
        let jti = &self.policy.jti;
        match verdict {
            Verdict::Allow => Denial {
                sqlstate: "42501",
                message: String::new(),
                hint: String::new(),
            },
            Verdict::Deny {
                access: Access::Command { name, .. },
            } if name.starts_with("statement ") => Denial {
                sqlstate: "54000",
                message: format!(
                    "gatehouse: the plan of grant {jti} limits statements per session, and {name} is past it"
                ),
                hint: "Open a new session, or ask for a grant with a higher statement limit."
                    .into(),
            },
            Verdict::Deny { access } => Denial {
                sqlstate: "42501",
                message: format!("gatehouse: the plan of grant {jti} does not allow {access}"),
                hint: format!(
                    "Ask the planner for a grant whose plan allows {access}, or lets a human approve it."
                ),
            },
            Verdict::Hold { needs } => {
                let list: Vec<String> = needs.iter().map(ToString::to_string).collect();
                let list = list.join(", ");
                Denial {
                    sqlstate: "42501",
                    message: format!(
                        "gatehouse: the plan of grant {jti} allows {list} only with a human's approval, and this gateway has no approver"
                    ),
                    hint: "Ask for a grant whose plan allows it outright.".into(),
                }
            }
            Verdict::Unclassifiable(ClassifyError::Syntax(why)) => Denial {
                sqlstate: "42601",
                message: format!("gatehouse cannot parse this statement, so it is denied: {why}"),
                hint: "Gatehouse reads SQL with PostgreSQL's own parser; fix the statement.".into(),
            },
            Verdict::Unclassifiable(e) => Denial {
                sqlstate: "42501",
                message: format!("gatehouse cannot classify this statement, so it is denied: {e}"),
                hint: "Simplify the statement.".into(),
            },
        }
    }

    /// Whether a target message is the answer to a request of the
    /// gateway's own, to be dropped. Keeps the ledger in step.
    pub(super) fn server(&mut self, tag: u8) -> bool {
        match tag {
            b'1' | b'2' => {
                let front = self.in_flight.front().copied();
                let ours = match (tag, front) {
                    (b'1', Some(InFlight::Parse { ours }))
                    | (b'2', Some(InFlight::Bind { ours })) => ours,
                    // Out of step (the target answered something not in the
                    // ledger): start over rather than guess.
                    _ => {
                        self.in_flight.clear();
                        return false;
                    }
                };
                self.in_flight.pop_front();
                ours
            }
            // In an extended batch the target skips everything up to the
            // Sync after an error: those requests get no answer.
            b'E' => {
                while let Some(InFlight::Parse { .. } | InFlight::Bind { .. }) =
                    self.in_flight.front()
                {
                    self.in_flight.pop_front();
                }
                false
            }
            b'Z' => {
                while let Some(f) = self.in_flight.pop_front() {
                    if matches!(f, InFlight::Sync | InFlight::Query) {
                        break;
                    }
                }
                false
            }
            _ => false,
        }
    }

    /// Counts a row for the client: false once it is past the limit.
    pub(super) fn row(&mut self) -> bool {
        self.rows = self.rows.saturating_add(1);
        self.policy
            .scope
            .limits
            .rows
            .is_none_or(|max| self.rows <= max)
    }

    /// The row limit, for messages.
    pub(super) fn row_limit(&self) -> u64 {
        self.policy.scope.limits.rows.unwrap_or(u64::MAX)
    }
}

/// Whether statements of these kinds only end a transaction block (or roll
/// back to a savepoint): never refused for the rate, since refusing them
/// would only keep the block, and its locks on the target, open longer.
fn ends_block(kinds: &[String]) -> bool {
    !kinds.is_empty()
        && kinds
            .iter()
            .all(|k| matches!(k.as_str(), "commit" | "rollback" | "rollback_to"))
}

fn forward() -> Judged {
    Judged {
        step: Step::Forward,
        verdict: None,
        request: None,
    }
}

/// The `DO` block that makes the target raise `denial`.
fn raise_sql(denial: &Denial) -> String {
    format!(
        "DO $gatehouse$BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = {}, HINT = {}; END$gatehouse$",
        denial.sqlstate,
        literal(&denial.message),
        literal(&denial.hint)
    )
}

/// `text` as an `E''` literal, whose meaning does not depend on
/// `standard_conforming_strings`. `$` is escaped so that the dollar-quoted
/// body cannot end early; characters outside printable ASCII become `?`
/// (`\u` escapes fail on servers not in UTF-8). Capped at 2000 characters.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for c in text.chars().take(2000) {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '$' => out.push_str("\\x24"),
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('\'');
    out
}

fn deny_query(denial: &Denial) -> Bytes {
    encode::frame(b'Q', |b| put_cstr(b, raise_sql(denial).as_bytes())).into_bytes()
}

/// Parse, Bind and Execute of the `DO` block, on the unnamed statement and
/// portal. `literal` leaves no NUL in the SQL.
fn deny_extended(denial: &Denial) -> Bytes {
    let sql = raise_sql(denial);
    let frames = [
        // Parse: no parameter types.
        encode::frame(b'P', |b| {
            put_cstr(b, b"");
            put_cstr(b, sql.as_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
        }),
        // Bind: no parameter formats, no parameters, no result formats.
        encode::frame(b'B', |b| {
            put_cstr(b, b"");
            put_cstr(b, b"");
            b.extend_from_slice(&[0; 6]);
        }),
        // Execute: all rows.
        encode::frame(b'E', |b| {
            put_cstr(b, b"");
            b.extend_from_slice(&0i32.to_be_bytes());
        }),
    ];
    let mut out = BytesMut::new();
    for f in &frames {
        out.extend_from_slice(f.bytes());
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_escapes_what_could_end_it() {
        assert_eq!(literal("it's $x$ \\ é"), "E'it\\'s \\x24x\\x24 \\\\ ?'");
    }

    #[test]
    fn ledger_drops_only_our_completions() {
        let mut e = Enforcer::new(
            Policy {
                scope: Arc::new(TargetScope::default()),
                classifier: Arc::new(ClassifierCache::default()),
                jti: "j".into(),
                hold: HoldMode::Wait,
                approvals: None,
            },
            None,
            "a".into(),
        );
        // Client: Parse(ok) Bind Sync, then (pretend) our Parse/Bind.
        e.in_flight.extend([
            InFlight::Parse { ours: false },
            InFlight::Bind { ours: false },
            InFlight::Sync,
            InFlight::Parse { ours: true },
            InFlight::Bind { ours: true },
            InFlight::Sync,
        ]);
        assert!(!e.server(b'1'));
        assert!(!e.server(b'2'));
        assert!(!e.server(b'Z'));
        assert!(e.server(b'1'));
        assert!(e.server(b'2'));
        assert!(!e.server(b'E'));
        assert!(!e.server(b'Z'));
        assert!(e.in_flight.is_empty());
        // An error before our Parse: the target skips it; nothing dropped.
        e.in_flight.extend([
            InFlight::Parse { ours: false },
            InFlight::Parse { ours: true },
            InFlight::Bind { ours: true },
            InFlight::Sync,
            InFlight::Parse { ours: false },
        ]);
        assert!(!e.server(b'E'));
        assert!(!e.server(b'Z'));
        assert!(!e.server(b'1'));
        assert!(e.in_flight.is_empty());
    }
}
