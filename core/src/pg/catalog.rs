//! Which table columns fall under a column masking rule, looked up once per
//! session in the target's catalog.
//!
//! A RowDescription names each result column as the query spelled it, so
//! `select ssn as x` would slip past a rule on `ssn` if rules matched names
//! only. It also carries, for a plain column reference, the table's OID and
//! the column's number, whatever the alias. Right after login, before the
//! client is greeted, the session asks the target for every user column
//! (the query below, sent by the gateway itself, neither relayed nor
//! recorded) and keeps the ones a column rule matches as `table.column`.
//! Rows then match rules by (table OID, column number) first, by name
//! second. Expressions (`ssn || ''`) carry no origin: detectors are the
//! backstop there, and a plan that denies such queries is the real answer.
//! A view's columns have the view as their origin, so a view that renames
//! a masked column needs a rule of its own (`my_view.hidden`). Tables and
//! views created after the session started are matched by name only.

use std::collections::HashMap;

use bytes::Bytes;

use super::encode;
use super::wire::Reader;
use crate::mask::{Masker, RuleId, Strategy};

/// The catalog query: user tables, views and their columns.
pub const QUERY: &str = "SELECT c.oid, c.relname, a.attnum, a.attname \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE a.attnum > 0 AND NOT a.attisdropped \
     AND c.relkind IN ('r', 'v', 'm', 'p', 'f') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%'";

/// The Query message that asks for it.
pub fn query() -> Bytes {
    encode::frame(b'Q', |b| {
        b.extend_from_slice(QUERY.as_bytes());
        b.push(0);
    })
    .into_bytes()
}

/// Column rules resolved to (table OID, column number).
#[derive(Debug, Default, Clone)]
pub struct ColumnOrigins {
    rules: HashMap<(u32, i16), (RuleId, Strategy)>,
}

impl ColumnOrigins {
    /// The rule for the column with this origin.
    pub fn get(&self, table_oid: u32, column: i16) -> Option<(RuleId, Strategy)> {
        self.rules.get(&(table_oid, column)).copied()
    }

    /// Notes one DataRow of the catalog query's answer (text format).
    pub fn row(&mut self, masker: &Masker, body: &[u8]) {
        let mut r = Reader::new(body);
        if r.i16() != Some(4) {
            return;
        }
        let (Some(oid), Some(table), Some(num), Some(column)) = (
            text(r.value()),
            text(r.value()),
            text(r.value()),
            text(r.value()),
        ) else {
            return;
        };
        let (Ok(oid), Ok(num)) = (oid.parse::<u32>(), num.parse::<i16>()) else {
            return;
        };
        if let Some(rule) = masker.column_strategy(Some(table), column) {
            self.rules.insert((oid, num), rule);
        }
    }

    /// How many columns fall under a rule.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn text(v: Option<Option<&[u8]>>) -> Option<&str> {
    v.flatten().and_then(|b| std::str::from_utf8(b).ok())
}
