//! Which columns each DataRow has.
//!
//! A DataRow carries only values. Its column names, types and formats come
//! from a RowDescription that may have arrived long before (the extended
//! protocol describes a prepared statement once and then executes it many
//! times, with result formats chosen at Bind). The [`ShapeTracker`] follows
//! the client's requests and the target's answers, which come back in
//! request order, so that every row can be matched to its columns even when
//! the client pipelines.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::backend::Field;
use super::copy_out::{CopySource, copy_sources};
use super::frontend::Message;

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// OID of the table it comes from, or 0.
    pub table_oid: u32,
    /// Its column number in that table, or 0.
    pub column: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// The columns of the rows being returned.
pub type Shape = Arc<Vec<Column>>;

/// A client request the target has yet to answer. Definitions take effect
/// when the target confirms them, so that pipelined requests are seen in
/// the target's order.
#[derive(Debug, Clone)]
enum Pending {
    /// A statement prepared under this name, and what it copies out if it
    /// is a `COPY … TO STDOUT` (`Err`: it could not be parsed).
    Parse(String, Copies),
    Bind {
        portal: String,
        statement: String,
        formats: Vec<i16>,
    },
    DescribeStatement(String),
    DescribePortal(String),
    Execute(String),
    Close(u8, String),
    Sync,
    /// A simple query, with the `COPY … TO STDOUT` statements still to
    /// answer.
    Query(Copies),
    FunctionCall,
}

/// The `COPY … TO STDOUT` statements of a query string, in order; `Err`
/// when it could not be parsed (each CopyOutResponse is then of unknown
/// columns).
type Copies = Result<VecDeque<CopySource>, ()>;

fn copies(sql: &str) -> Copies {
    copy_sources(sql).map(VecDeque::from).ok_or(())
}

/// Follows requests and answers to know the shape of each row.
#[derive(Debug, Default)]
pub struct ShapeTracker {
    /// Columns of described prepared statements (formats not yet chosen).
    statements: HashMap<String, Vec<Column>>,
    /// Columns of bound portals, with their result formats.
    portals: HashMap<String, Shape>,
    /// Portals bound from a statement not yet described (a client may send
    /// Parse, Bind, Describe S, Execute in one batch): the statement and
    /// the Bind's result formats, resolved when its description arrives.
    unresolved: HashMap<String, (String, Vec<i16>)>,
    pending: VecDeque<Pending>,
    /// The shape of the rows of a simple query's current statement.
    current: Option<Shape>,
    /// What prepared statements copy out, for those that are COPYs (`None`:
    /// a COPY that could not be parsed).
    statement_copies: HashMap<String, Option<CopySource>>,
    /// The same for bound portals.
    portal_copies: HashMap<String, Option<CopySource>>,
}

impl ShapeTracker {
    /// Notes a client message.
    pub fn client(&mut self, msg: &Message<'_>) {
        let p = match msg {
            Message::Query(sql) => Pending::Query(copies(sql)),
            Message::Parse { name, sql, .. } => Pending::Parse((*name).to_owned(), copies(sql)),
            Message::Bind(bind) => Pending::Bind {
                portal: bind.portal.to_owned(),
                statement: bind.statement.to_owned(),
                formats: bind.result_formats.clone(),
            },
            Message::Describe { kind: b'S', name } => {
                Pending::DescribeStatement((*name).to_owned())
            }
            Message::Describe { name, .. } => Pending::DescribePortal((*name).to_owned()),
            Message::Execute { portal, .. } => Pending::Execute((*portal).to_owned()),
            Message::Close { kind, name } => Pending::Close(*kind, (*name).to_owned()),
            Message::Sync => Pending::Sync,
            Message::FunctionCall => Pending::FunctionCall,
            _ => return,
        };
        self.pending.push_back(p);
    }

    /// Notes a RowDescription from the target.
    pub fn row_description(&mut self, fields: &[Field<'_>]) {
        let cols: Vec<Column> = fields
            .iter()
            .map(|f| Column {
                name: f.name.to_owned(),
                table_oid: f.table_oid,
                column: f.column,
                type_oid: f.type_oid,
                format: f.format,
            })
            .collect();
        match self.pending.front() {
            Some(Pending::DescribeStatement(name)) => {
                let name = name.clone();
                self.pending.pop_front();
                let waiting: Vec<String> = self
                    .unresolved
                    .iter()
                    .filter(|(_, (statement, _))| *statement == name)
                    .map(|(portal, _)| portal.clone())
                    .collect();
                for portal in waiting {
                    if let Some((_, formats)) = self.unresolved.remove(&portal) {
                        let shape = Arc::new(with_formats(&cols, &formats));
                        self.portals.insert(portal, shape);
                    }
                }
                self.statements.insert(name, cols);
            }
            Some(Pending::DescribePortal(name)) => {
                let name = name.clone();
                self.pending.pop_front();
                self.unresolved.remove(&name);
                self.portals.insert(name, Arc::new(cols));
            }
            _ => self.current = Some(Arc::new(cols)),
        }
    }

    /// The shape of a DataRow arriving now, if known.
    pub fn data_row(&self) -> Option<Shape> {
        match self.pending.front() {
            Some(Pending::Execute(portal)) => self.portals.get(portal).cloned(),
            _ => self.current.clone(),
        }
    }

    /// Notes any other message from the target, by type byte.
    pub fn server(&mut self, tag: u8) {
        match tag {
            // ParseComplete: a new statement under this name, not described.
            b'1' => {
                if let Some(Pending::Parse(name, copies)) = self.pending.pop_front() {
                    self.statements.remove(&name);
                    match copies {
                        Ok(mut c) if c.is_empty() => {
                            self.statement_copies.remove(&name);
                            c.clear();
                        }
                        Ok(mut c) => {
                            self.statement_copies.insert(name, c.pop_front());
                        }
                        Err(()) => {
                            self.statement_copies.insert(name, None);
                        }
                    }
                }
            }
            // BindComplete: the portal takes its statement's columns with
            // the formats chosen at Bind.
            b'2' => {
                if let Some(Pending::Bind {
                    portal,
                    statement,
                    formats,
                }) = self.pending.pop_front()
                {
                    match self.statement_copies.get(&statement) {
                        Some(copy) => self.portal_copies.insert(portal.clone(), copy.clone()),
                        None => self.portal_copies.remove(&portal),
                    };
                    match self.statements.get(&statement) {
                        Some(cols) => {
                            let shape = Arc::new(with_formats(cols, &formats));
                            self.unresolved.remove(&portal);
                            self.portals.insert(portal, shape);
                        }
                        None => {
                            self.portals.remove(&portal);
                            self.unresolved.insert(portal, (statement, formats));
                        }
                    }
                }
            }
            // CloseComplete.
            b'3' => {
                if let Some(Pending::Close(kind, name)) = self.pending.pop_front() {
                    if kind == b'S' {
                        self.statements.remove(&name);
                        self.statement_copies.remove(&name);
                    } else {
                        self.portals.remove(&name);
                        self.unresolved.remove(&name);
                        self.portal_copies.remove(&name);
                    }
                }
            }
            // NoData answers a Describe.
            b'n' => {
                self.pending.pop_front();
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended.
            b'C' | b'I' | b's' => {
                if matches!(self.pending.front(), Some(Pending::Execute(_))) {
                    self.pending.pop_front();
                }
                self.current = None;
            }
            // FunctionCallResponse.
            b'V' => {
                if matches!(self.pending.front(), Some(Pending::FunctionCall)) {
                    self.pending.pop_front();
                }
            }
            b'E' => {
                self.current = None;
                // The target skips everything up to the next Sync; a simple
                // query stays pending until its ReadyForQuery.
                while let Some(p) = self.pending.front_mut() {
                    if let Pending::Query(copies) = p {
                        // The rest of the query string does not run.
                        *copies = Ok(VecDeque::new());
                        break;
                    }
                    if matches!(p, Pending::Sync) {
                        break;
                    }
                    self.pending.pop_front();
                }
            }
            b'Z' => {
                self.current = None;
                while let Some(p) = self.pending.pop_front() {
                    if matches!(p, Pending::Sync | Pending::Query(_) | Pending::FunctionCall) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
}

impl ShapeTracker {
    /// What the COPY whose CopyOutResponse arrives now copies; `None` when
    /// that is not known (the caller fails closed).
    pub fn copy_out(&mut self) -> Option<CopySource> {
        match self.pending.front_mut()? {
            Pending::Execute(portal) => self.portal_copies.get(portal.as_str()).cloned()?,
            Pending::Query(Ok(copies)) => copies.pop_front(),
            _ => None,
        }
    }
}

/// Applies Bind's result format codes to described columns.
fn with_formats(cols: &[Column], formats: &[i16]) -> Vec<Column> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| Column {
            format: match formats {
                [] => 0,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(0),
            },
            ..c.clone()
        })
        .collect()
}

/// Whether a client message is one the tracker follows (saves parsing the
/// rest).
pub fn tracked(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'F')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::frontend::Bind;

    fn field(name: &str) -> Field<'_> {
        Field {
            name,
            table_oid: 1,
            column: 1,
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }
    }

    #[test]
    fn pipelined_prepares_and_executes_keep_their_shapes() {
        let mut t = ShapeTracker::default();
        // Prepare a and b (Parse, Describe S, Sync) pipelined, then run b, then a.
        for name in ["a", "b"] {
            t.client(&Message::Parse {
                name,
                sql: "",
                param_types: vec![],
            });
            t.client(&Message::Describe { kind: b'S', name });
            t.client(&Message::Sync);
        }
        for (stmt, portal) in [("b", ""), ("a", "")] {
            t.client(&Message::Bind(Bind {
                portal,
                statement: stmt,
                param_formats: vec![],
                params: vec![],
                result_formats: vec![1],
            }));
            t.client(&Message::Execute {
                portal,
                max_rows: 0,
            });
            t.client(&Message::Sync);
        }
        for cols in [["a_col"], ["b_col"]] {
            t.server(b'1');
            t.server(b't');
            t.row_description(&[field(cols[0])]);
            t.server(b'Z');
        }
        for expect in ["b_col", "a_col"] {
            t.server(b'2');
            let shape = t.data_row().unwrap();
            assert_eq!(shape[0].name, expect);
            assert_eq!(shape[0].format, 1);
            t.server(b'C');
            t.server(b'Z');
        }
    }

    #[test]
    fn describe_after_bind_in_one_batch_still_shapes_the_rows() {
        // tokio-postgres query_typed: Parse, Bind, Describe S, Execute, Sync.
        let mut t = ShapeTracker::default();
        t.client(&Message::Parse {
            name: "",
            sql: "",
            param_types: vec![],
        });
        t.client(&Message::Bind(Bind {
            portal: "",
            statement: "",
            param_formats: vec![],
            params: vec![],
            result_formats: vec![1],
        }));
        t.client(&Message::Describe {
            kind: b'S',
            name: "",
        });
        t.client(&Message::Execute {
            portal: "",
            max_rows: 0,
        });
        t.client(&Message::Sync);
        t.server(b'1');
        t.server(b'2');
        t.server(b't');
        t.row_description(&[field("c")]);
        let shape = t.data_row().unwrap();
        assert_eq!((shape[0].name.as_str(), shape[0].format), ("c", 1));
    }

    #[test]
    fn simple_queries_use_their_own_row_descriptions() {
        let mut t = ShapeTracker::default();
        t.client(&Message::Query("select 1 as x; select 2 as y"));
        t.row_description(&[field("x")]);
        assert_eq!(t.data_row().unwrap()[0].name, "x");
        t.server(b'C');
        assert!(t.data_row().is_none());
        t.row_description(&[field("y")]);
        assert_eq!(t.data_row().unwrap()[0].name, "y");
        t.server(b'C');
        t.server(b'Z');
    }

    #[test]
    fn an_error_skips_to_sync() {
        let mut t = ShapeTracker::default();
        t.client(&Message::Parse {
            name: "",
            sql: "",
            param_types: vec![],
        });
        t.client(&Message::Bind(Bind {
            portal: "",
            statement: "",
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }));
        t.client(&Message::Execute {
            portal: "",
            max_rows: 0,
        });
        t.client(&Message::Sync);
        t.client(&Message::Query("select 1 as z"));
        t.server(b'E');
        t.server(b'Z');
        t.row_description(&[field("z")]);
        assert_eq!(t.data_row().unwrap()[0].name, "z");
    }
}
