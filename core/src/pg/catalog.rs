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
//! second. The same answer gives, for each table with a column under a
//! rule, all its columns in order: what `COPY table TO STDOUT` sends
//! ([`super::copy_out`]). Expressions (`ssn || ''`) carry no origin: detectors are the
//! backstop there, and a plan that denies such queries is the real answer.
//! A view's columns have the view as their origin, so a view that renames
//! a masked column needs a rule of its own (`my_view.hidden`). Tables and
//! views created after the session started are matched by name only.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;

use super::encode;
use super::wire::Reader;
use crate::mask::{Masker, RuleId, Strategy};

/// The catalog query: user tables, views and their columns.
pub const QUERY: &str = "SELECT c.oid, c.relname, a.attnum, a.attname, n.nspname \
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

/// A column's rule, if one matches it.
pub type ColumnRule = Option<(RuleId, Strategy)>;

/// A table's columns in order, by name, with their rules.
pub type NamedColumns = Vec<(String, ColumnRule)>;

/// A table's columns as the catalog lists them: (number, name, rule).
type NumberedColumns = Vec<(i16, String, ColumnRule)>;

/// Column rules resolved to (table OID, column number).
#[derive(Debug, Default, Clone)]
pub struct ColumnOrigins {
    rules: HashMap<(u32, i16), (RuleId, Strategy)>,
    /// Tables with a column under a rule, by name: each schema's table
    /// of that name with its columns' rules in column order.
    tables: HashMap<String, Vec<(String, NamedColumns)>>,
    /// Hashes of every table's name at login, to tell a table without
    /// masked columns from one created since (unknown: fail closed).
    known: HashSet<u64>,
    /// While the answer arrives: every table's columns, by OID.
    building: HashMap<u32, (String, String, NumberedColumns)>,
}

fn name_hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// The columns a `COPY table TO STDOUT` sends, each with its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableColumns {
    /// The table has columns under a rule: all its columns in order, by
    /// name, with their rules.
    Known(NamedColumns),
    /// The table was there at login and no rule matches its columns.
    Unmasked,
    /// The table is not in the catalog as of login, or its name is
    /// ambiguous across schemas: fail closed.
    Unknown,
}

impl ColumnOrigins {
    /// The rule for the column with this origin.
    pub fn get(&self, table_oid: u32, column: i16) -> Option<(RuleId, Strategy)> {
        self.rules.get(&(table_oid, column)).copied()
    }

    /// Notes one DataRow of the catalog query's answer (text format).
    pub fn row(&mut self, masker: &Masker, body: &[u8]) {
        let mut r = Reader::new(body);
        if r.i16() != Some(5) {
            return;
        }
        let (Some(oid), Some(table), Some(num), Some(column), Some(schema)) = (
            text(r.value()),
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
        let rule = masker.column_strategy(Some(table), column);
        if let Some(rule) = rule {
            self.rules.insert((oid, num), rule);
        }
        let entry = self
            .building
            .entry(oid)
            .or_insert_with(|| (schema.to_owned(), table.to_owned(), Vec::new()));
        entry.2.push((num, column.to_owned(), rule));
    }

    /// The answer is complete: keeps the column lists of the tables a rule
    /// touches.
    pub fn finish(&mut self) {
        for (_, (schema, table, mut columns)) in self.building.drain() {
            self.known.insert(name_hash(&table));
            if columns.iter().all(|(.., rule)| rule.is_none()) {
                continue;
            }
            columns.sort_by_key(|(num, ..)| *num);
            let rules = columns
                .into_iter()
                .map(|(_, name, rule)| (name, rule))
                .collect();
            self.tables.entry(table).or_default().push((schema, rules));
        }
    }

    /// What `COPY schema.table TO STDOUT` (schema empty: unqualified)
    /// sends, by the catalog as of login.
    pub fn table_columns(&self, schema: &str, table: &str) -> TableColumns {
        let Some(candidates) = self.tables.get(table) else {
            return if self.known.contains(&name_hash(table)) {
                TableColumns::Unmasked
            } else {
                TableColumns::Unknown
            };
        };
        let mut matching = candidates
            .iter()
            .filter(|(s, _)| schema.is_empty() || s == schema);
        match (matching.next(), matching.next()) {
            // One table of that name has masked columns; an unqualified
            // name could still mean another schema's table of the same
            // name, which would then have masked columns too (fail closed).
            (Some((_, rules)), None) if !schema.is_empty() || candidates.len() == 1 => {
                TableColumns::Known(rules.clone())
            }
            (None, _) => TableColumns::Unmasked,
            _ => TableColumns::Unknown,
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
