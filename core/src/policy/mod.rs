//! Policy: what a grant's plan allows, checked statement by statement.
//!
//! - [`classify`] reads SQL with PostgreSQL's own parser (`pg_query`) and
//!   says what each statement does: its kind and its [`Access`]es — every
//!   relation it reads or writes (through CTEs, subqueries, joins,
//!   data-modifying CTEs, `INSERT … SELECT`, `COPY`), every function it
//!   calls that is not a known side-effect-free built-in, and every command
//!   that must be allowed by name (`do`, `set_role`, `copy_program`, DDL).
//!   [`ClassifierCache`] keeps the results by normalized statement text.
//! - [`check`] holds a classification against a grant's
//!   [`TargetScope`](crate::grant::TargetScope): allow, hold for approval,
//!   or deny naming what the plan lacks.
//!
//! Fail closed: a statement that cannot be parsed, or an access no rule
//! covers, is denied.
//!
//! What this module is not: it forwards nothing and keeps no session
//! state; the protocol layer ([`crate::pg`]) asks it and acts on the
//! answer.

mod cache;
mod classify;
mod verdict;

#[cfg(test)]
mod tests;

pub use cache::ClassifierCache;
pub use classify::{Access, Classification, ClassifyError, Op, StatementClass, classify};
pub use verdict::{Verdict, check, covers};
