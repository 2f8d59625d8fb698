//! SQL classification with PostgreSQL's own grammar.
//!
//! [`classify`] parses with `pg_query` (the PostgreSQL parser itself),
//! turns the protobuf tree into JSON and walks every field of it
//! ([`walk`]), so no node type is skipped. What it reports is what a plan
//! must allow; when a shape is unclear it reports more, never less.

mod builtins;
mod names;
mod walk;

use std::fmt;

/// An operation on a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Rows are read (`SELECT`, `FROM`/`USING`/`JOIN`, subqueries,
    /// `RETURNING`, `COPY … TO`).
    Select,
    /// Rows are inserted (`INSERT`, `COPY … FROM`, `MERGE … INSERT`).
    Insert,
    /// Rows are updated (`UPDATE`, `ON CONFLICT DO UPDATE`, `MERGE … UPDATE`).
    Update,
    /// Rows are deleted (`DELETE`, `MERGE … DELETE`).
    Delete,
    /// The relation is emptied (`TRUNCATE`).
    Truncate,
    /// The relation is locked explicitly (`LOCK`).
    Lock,
}

impl Op {
    /// The name plans use for it: `select`, `insert`, ….
    pub fn name(self) -> &'static str {
        match self {
            Op::Select => "select",
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Lock => "lock",
        }
    }

    /// The op named `name` (lower case), if it is one.
    pub fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "select" => Op::Select,
            "insert" => Op::Insert,
            "update" => Op::Update,
            "delete" => Op::Delete,
            "truncate" => Op::Truncate,
            "lock" => Op::Lock,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing a statement does that a plan must allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// `op` on `relation`, always schema-qualified (`public.invoices`):
    /// an unqualified name is taken to be in `public`, or in `pg_catalog`
    /// when it starts with `pg_` (plans cannot change the search path).
    Relation {
        /// What is done.
        op: Op,
        /// `schema.name`, as PostgreSQL folds it (unquoted names lower case).
        relation: String,
    },
    /// A call of a function that is not a known side-effect-free built-in:
    /// its name as written (`public.refresh_totals`, `nextval`).
    Function(String),
    /// A statement that must be allowed by name: `do`, `set_role`,
    /// `copy_program`, `create_table`, …; with the relation it acts on, if
    /// any.
    Command {
        /// The command's name.
        name: String,
        /// The relation it acts on, schema-qualified as for
        /// [`Access::Relation`].
        relation: Option<String>,
    },
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Relation { op, relation } => write!(f, "{op} on {relation}"),
            Access::Function(name) => write!(f, "calling function {name}"),
            Access::Command {
                name,
                relation: None,
            } => write!(f, "{name}"),
            Access::Command {
                name,
                relation: Some(rel),
            } => write!(f, "{name} on {rel}"),
        }
    }
}

/// What one statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementClass {
    /// Its kind, for the record: `select`, `update`, `begin`, `create_table`,
    /// `set`, ….
    pub kind: String,
    /// Everything it does that a plan must allow, sorted, without
    /// duplicates. Empty for statements every plan allows (transaction
    /// control, `SHOW`, harmless `SET`s, `DISCARD`, …).
    pub accesses: Vec<Access>,
}

/// What a query string does, statement by statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    /// The statements, in order. Empty for an empty query.
    pub statements: Vec<StatementClass>,
}

/// Why SQL could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// PostgreSQL's parser rejected it; its message.
    #[error("{0}")]
    Syntax(String),
    /// It parsed, but its tree could not be read (too deep, or a shape this
    /// version does not know).
    #[error("cannot classify: {0}")]
    Unreadable(String),
}

/// Classifies `sql`, a query string with one or more statements.
///
/// PostgreSQL's own parser splits and reads it; its tree is walked
/// generically (every field of every node), so a node type no rule names
/// still has its relations and function calls reported. A statement of a
/// kind no rule names is a command that must be allowed by its kind.
pub fn classify(sql: &str) -> Result<Classification, ClassifyError> {
    let parsed = pg_query::parse(sql, 0).map_err(|e| match e {
        pg_query::Error::Parse(message) => ClassifyError::Syntax(message),
        pg_query::Error::Conversion(e) => ClassifyError::Syntax(e.to_string()),
        // A tree deeper than the protobuf decoder allows, mostly; its
        // message spells out the whole path, so only its start is kept.
        other => ClassifyError::Unreadable(other.to_string().chars().take(120).collect()),
    })?;
    let tree = serde_json::to_value(&parsed.protobuf)
        .map_err(|e| ClassifyError::Unreadable(e.to_string()))?;
    let stmts = tree
        .get("stmts")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| ClassifyError::Unreadable("parse tree without statements".into()))?;
    let statements = stmts
        .iter()
        .map(walk::statement)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Classification { statements })
}
