//! Client → target: what the client sent, queued as the answers it is owed.

use gatehouse_core::event::Direction;
use gatehouse_core::pg::frame::Frame;
use gatehouse_core::pg::frontend;

use super::copy::{copy_data, copy_flush};
use super::{Op, Portal, TranscriptBuilder, describe_frame, describe_tag};
use crate::transcript::{Copy, Param, Request};

impl TranscriptBuilder {
    pub(super) fn client(&mut self, f: &Frame, at: i64) {
        self.greeted = true;
        let msg = match frontend::Message::parse(f) {
            Ok(msg) => msg,
            Err(e) => {
                let detail = format!("{e} ({})", describe_frame(f));
                return self.malformed(Direction::ToUpstream, detail, at);
            }
        };
        match msg {
            frontend::Message::Query(sql) => {
                let item = self.new_entry(
                    Request::Simple {
                        text: sql.to_owned(),
                    },
                    at,
                );
                self.pending.push_back(Op::Query { item });
            }
            frontend::Message::Parse {
                name,
                sql,
                param_types,
            } => {
                self.statements.insert(name.to_owned(), sql.to_owned());
                self.statement_columns.remove(name);
                self.statement_params.insert(name.to_owned(), param_types);
                self.pending.push_back(Op::Parse {
                    order: self.order,
                    at_us: at,
                    name: name.to_owned(),
                    text: sql.to_owned(),
                });
            }
            frontend::Message::Bind(bind) => {
                let text = self.statements.get(bind.statement).cloned();
                let types = self.statement_params.get(bind.statement);
                let params = bind
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let oid = types.and_then(|t| t.get(i)).copied().unwrap_or(0);
                        Param::decode(*v, bind.param_format(i), oid)
                    })
                    .collect();
                self.portals.insert(
                    bind.portal.to_owned(),
                    Portal {
                        statement: bind.statement.to_owned(),
                        text: text.clone(),
                        params,
                        suspended: false,
                    },
                );
                self.pending.push_back(Op::Bind {
                    order: self.order,
                    at_us: at,
                    statement: bind.statement.to_owned(),
                    text,
                    portal: bind.portal.to_owned(),
                    result_formats: bind.result_formats.clone(),
                });
            }
            frontend::Message::Describe { kind, name } => {
                self.pending.push_back(Op::Describe {
                    kind,
                    name: name.to_owned(),
                });
            }
            frontend::Message::Execute { portal, max_rows } => {
                let request = match self.portals.get(portal) {
                    Some(p) => Request::Extended {
                        text: p.text.clone(),
                        statement: p.statement.clone(),
                        portal: portal.to_owned(),
                        params: p.params.clone(),
                        max_rows,
                        continued: p.suspended,
                    },
                    None => Request::Extended {
                        text: None,
                        statement: String::new(),
                        portal: portal.to_owned(),
                        params: Vec::new(),
                        max_rows,
                        continued: false,
                    },
                };
                let item = self.new_entry(request, at);
                self.pending.push_back(Op::Execute {
                    item,
                    portal: portal.to_owned(),
                });
            }
            frontend::Message::Close { kind, name } => {
                if kind == b'S' {
                    self.statements.remove(name);
                    self.statement_columns.remove(name);
                    self.statement_params.remove(name);
                } else {
                    self.portals.remove(name);
                }
                self.pending.push_back(Op::Close);
            }
            frontend::Message::Sync => self.pending.push_back(Op::Sync),
            frontend::Message::FunctionCall => {
                let item = self.new_entry(Request::FunctionCall, at);
                self.pending.push_back(Op::FunctionCall { item });
            }
            frontend::Message::CopyData(data) => {
                let cap = self.opts.max_rows;
                if let Some(copy) = self.client_copy() {
                    copy_data(copy, data, cap, false);
                }
            }
            frontend::Message::CopyDone => {
                let cap = self.opts.max_rows;
                if let Some(copy) = self.client_copy() {
                    copy_flush(copy, cap);
                }
            }
            frontend::Message::CopyFail(msg) => {
                let cap = self.opts.max_rows;
                if let Some(copy) = self.client_copy() {
                    copy_flush(copy, cap);
                    copy.failed = Some(msg.to_owned());
                }
            }
            frontend::Message::Unknown(tag) => {
                let detail = format!("unknown client message ({})", describe_tag(tag));
                self.malformed(Direction::ToUpstream, detail, at);
            }
            // Flush and Terminate have no answer; password frames are
            // never recorded.
            frontend::Message::Flush
            | frontend::Message::Terminate
            | frontend::Message::Password(_) => {}
        }
    }

    /// The COPY IN the client's data belongs to.
    pub(super) fn client_copy(&mut self) -> Option<&mut Copy> {
        let item = self.peek_statement()?;
        let (_, entry) = self.entry(item)?;
        let block = entry.results.last_mut().filter(|b| b.open)?;
        block.copy.as_mut().filter(|c| c.direction != "out")
    }
}
