//! Target → client: rows, completions, errors, notices, notifications,
//! COPY data and the answers of the extended protocol.

use gatehouse_core::event::Direction;
use gatehouse_core::pg::backend::{self, Fields};
use gatehouse_core::pg::frame::Frame;

use super::copy::{copy_data, copy_flush};
use super::{Op, TranscriptBuilder, close_open_block, describe_frame, open_block};
use crate::transcript::{Column, Copy, Diagnostic, ItemKind, Notification, Request, Value};

impl TranscriptBuilder {
    /// A target frame; `masked` are the fields of it the gateway masked
    /// (column indexes of a DataRow, field codes of an ErrorResponse or
    /// NoticeResponse; any entry for CopyData).
    pub(super) fn server(&mut self, f: &Frame, at: i64, masked: &[u16]) {
        if f.tag() == b't' {
            return self.parameter_description(f, at);
        }
        let msg = match backend::Message::parse(f) {
            Ok(msg) => msg,
            Err(e) => {
                // An error or notice in a client encoding other than UTF-8
                // (LATIN1, …) is still shown, its text decoded lossily.
                if matches!(f.tag(), b'E' | b'N')
                    && let Some(fields) = lossy_fields(f.body())
                {
                    let d = diagnostic(&fields, masked);
                    return match f.tag() {
                        b'E' => self.error(d, at),
                        _ => self.notice(d, at),
                    };
                }
                let detail = format!("{e} ({})", describe_frame(f));
                return self.malformed(Direction::ToClient, detail, at);
            }
        };
        match msg {
            backend::Message::ParameterStatus { name, value } => {
                let pair = (name.to_owned(), value.to_owned());
                if !self.greeted {
                    self.header.parameters.push(pair);
                } else if let Some((_, entry)) = self.peek_statement().and_then(|i| self.entry(i)) {
                    entry.parameters.push(pair);
                } else {
                    let (name, value) = pair;
                    self.push_item(at, ItemKind::Parameter { name, value });
                }
            }
            backend::Message::ReadyForQuery(_) => self.ready(at),
            backend::Message::RowDescription(fields) => {
                let columns: Vec<Column> = fields
                    .iter()
                    .map(|f| Column {
                        name: f.name.to_owned(),
                        type_oid: f.type_oid,
                        format: f.format,
                    })
                    .collect();
                self.row_description(columns);
            }
            backend::Message::DataRow(values) => self.data_row(&values, at, masked),
            backend::Message::CommandComplete(tag) => {
                let tag = tag.to_owned();
                self.complete(at, |block| {
                    block.rows_affected = backend::tag_rows(&tag);
                    block.tag = Some(tag);
                });
            }
            backend::Message::ErrorResponse(fields) => {
                self.error(diagnostic(&owned(&fields), masked), at)
            }
            backend::Message::NoticeResponse(fields) => {
                self.notice(diagnostic(&owned(&fields), masked), at)
            }
            backend::Message::Notification {
                pid,
                channel,
                payload,
            } => {
                let n = Notification {
                    channel: channel.to_owned(),
                    payload: payload.to_owned(),
                    pid,
                };
                match self.peek_statement().and_then(|i| self.entry(i)) {
                    Some((_, entry)) => entry.last_block().notifications.push(n),
                    None => {
                        self.push_item(at, ItemKind::Notification(n));
                    }
                }
            }
            backend::Message::CopyResponse { tag, format } => {
                if let Some((_, entry)) = self.current_statement().and_then(|i| self.entry(i)) {
                    let block = open_block(entry);
                    block.copy = Some(Copy {
                        direction: match tag {
                            b'G' => "in",
                            b'H' => "out",
                            _ => "both",
                        },
                        format: if format == 0 { "text" } else { "binary" },
                        lines: Vec::new(),
                        lines_received: 0,
                        masked_lines: Vec::new(),
                        lines_masked: 0,
                        bytes: 0,
                        failed: None,
                        partial: Vec::new(),
                        partial_masked: false,
                    });
                }
            }
            backend::Message::CopyData(data) => {
                let cap = self.opts.max_rows;
                let was_masked = !masked.is_empty();
                if let Some(copy) = self.server_copy() {
                    copy_data(copy, data, cap, was_masked);
                }
            }
            backend::Message::CopyDone => {
                let cap = self.opts.max_rows;
                if let Some(copy) = self.server_copy() {
                    copy_flush(copy, cap);
                }
            }
            backend::Message::Other(tag) => self.other(tag, at),
            backend::Message::Authentication { .. } | backend::Message::BackendKeyData { .. } => {}
        }
    }

    fn notice(&mut self, notice: Diagnostic, at: i64) {
        match self.peek_statement() {
            Some(item) => {
                if let Some((_, entry)) = self.entry(item) {
                    open_block(entry).notices.push(notice);
                }
            }
            None => {
                self.push_item(at, ItemKind::Notice(notice));
            }
        }
    }

    /// The COPY OUT the target's data belongs to.
    pub(super) fn server_copy(&mut self) -> Option<&mut Copy> {
        let item = self.peek_statement()?;
        let (_, entry) = self.entry(item)?;
        let block = entry.results.last_mut().filter(|b| b.open)?;
        block.copy.as_mut().filter(|c| c.direction != "in")
    }

    /// Messages without fields of interest: ParseComplete, BindComplete,
    /// CloseComplete, NoData, EmptyQueryResponse, PortalSuspended, …
    pub(super) fn other(&mut self, tag: u8, at: i64) {
        match tag {
            b'1' => {
                self.take_op(|op| matches!(op, Op::Parse { .. }));
            }
            b'2' => {
                if let Some(op) = self.take_op(|op| matches!(op, Op::Bind { .. })) {
                    self.settle(op);
                }
            }
            b'3' => {
                self.take_op(|op| matches!(op, Op::Close));
            }
            b'n' => {
                self.take_op(|op| matches!(op, Op::Describe { .. }));
            }
            b'I' => self.complete(at, |block| block.empty_query = true),
            b's' => {
                self.current_statement();
                if let Some(Op::Execute { portal, .. }) = self.pending.front()
                    && let Some(p) = self.portals.get_mut(portal)
                {
                    p.suspended = true;
                }
                self.complete(at, |block| block.suspended = true);
            }
            b'V' => {
                // FunctionCallResponse: the call is done; ReadyForQuery follows.
                if let Some((start, entry)) = self.current_statement().and_then(|i| self.entry(i)) {
                    let block = open_block(entry);
                    block.done_us = Some(at);
                    block.open = false;
                    entry.duration_us = Some(at - start);
                }
            }
            // ParameterDescription precedes the RowDescription or NoData
            // that answers a Describe; the rest needs no action.
            _ => {}
        }
    }

    /// ParameterDescription: the parameter types of a described statement.
    /// Binds of it already read (the same pipeline) learn them too.
    pub(super) fn parameter_description(&mut self, f: &Frame, at: i64) {
        let Some(oids) = parameter_types(f.body()) else {
            let detail = format!(
                "malformed ParameterDescription message ({})",
                describe_frame(f)
            );
            return self.malformed(Direction::ToClient, detail, at);
        };
        let described = self
            .pending
            .iter()
            .take_while(|op| op.is_preparatory())
            .find_map(|op| match op {
                Op::Describe { kind: b'S', name } => Some(name.clone()),
                _ => None,
            });
        let Some(name) = described else {
            return;
        };
        for p in self.portals.values_mut().filter(|p| p.statement == name) {
            for (param, oid) in p.params.iter_mut().zip(&oids) {
                param.set_type(*oid);
            }
        }
        let executes: Vec<usize> = self
            .pending
            .iter()
            .filter_map(|op| match op {
                Op::Execute { item, .. } => Some(*item),
                _ => None,
            })
            .collect();
        for item in executes {
            if let Some((_, entry)) = self.entry(item)
                && let Request::Extended {
                    statement, params, ..
                } = &mut entry.request
                && *statement == name
            {
                for (param, oid) in params.iter_mut().zip(&oids) {
                    param.set_type(*oid);
                }
            }
        }
        self.statement_params.insert(name, oids);
    }

    pub(super) fn row_description(&mut self, columns: Vec<Column>) {
        if let Some(Op::Describe { kind, name }) =
            self.take_op(|op| matches!(op, Op::Describe { .. }))
        {
            if kind == b'S' {
                self.statement_columns.insert(name, columns);
            } else if let Some(p) = self.bound.get_mut(&name) {
                p.columns = Some(columns);
            }
            return;
        }
        if let Some((_, entry)) = self.current_statement().and_then(|i| self.entry(i)) {
            let reuse = entry
                .results
                .last()
                .is_some_and(|b| b.open && b.columns.is_empty() && b.rows_received == 0);
            if !reuse {
                close_open_block(entry);
            }
            open_block(entry).columns = columns;
        }
    }

    pub(super) fn data_row(&mut self, values: &[Option<&[u8]>], _at: i64, masked: &[u16]) {
        let Some(item) = self.current_statement() else {
            return;
        };
        let portal_columns = match self.pending.front() {
            Some(Op::Execute { portal, .. }) => self.portal_columns(portal),
            _ => None,
        };
        let cap = self.opts.max_rows;
        let Some((_, entry)) = self.entry(item) else {
            return;
        };
        let block = open_block(entry);
        if block.columns.is_empty()
            && let Some(columns) = portal_columns
        {
            block.columns = columns;
        }
        block.rows_received += 1;
        let is_masked = |i: usize| masked.contains(&u16::try_from(i).unwrap_or(u16::MAX));
        block.masked_cells += (0..values.len()).filter(|i| is_masked(*i)).count() as u64;
        if cap.is_some_and(|cap| block.rows.len() >= cap) {
            return;
        }
        let row = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (format, oid) = block
                    .columns
                    .get(i)
                    .map_or((0, 0), |c| (c.format, c.type_oid));
                let value = Value::decode(*v, format, oid);
                if is_masked(i) {
                    value.into_masked()
                } else {
                    value
                }
            })
            .collect();
        block.rows.push(row);
    }

    /// The columns an Execute of `portal` returns: from a Describe of the
    /// portal, else of its statement with the Bind's result formats.
    pub(super) fn portal_columns(&self, portal: &str) -> Option<Vec<Column>> {
        let p = self.bound.get(portal)?;
        if let Some(columns) = &p.columns {
            return Some(columns.clone());
        }
        let mut columns = self.statement_columns.get(&p.statement)?.clone();
        for (i, c) in columns.iter_mut().enumerate() {
            c.format = match p.result_formats.as_slice() {
                [] => 0,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(0),
            };
        }
        Some(columns)
    }
}

fn owned(fields: &Fields<'_>) -> Vec<(u8, String)> {
    fields
        .0
        .iter()
        .map(|(c, v)| (*c, (*v).to_owned()))
        .collect()
}

/// The fields of an ErrorResponse or NoticeResponse body in any encoding,
/// decoded lossily; `None` if the list is not NUL-terminated.
fn lossy_fields(body: &[u8]) -> Option<Vec<(u8, String)>> {
    let mut fields = Vec::new();
    let mut rest = body;
    loop {
        let (&code, tail) = rest.split_first()?;
        if code == 0 {
            return Some(fields);
        }
        let end = tail.iter().position(|b| *b == 0)?;
        let (value, tail) = tail.split_at(end);
        fields.push((code, String::from_utf8_lossy(value).into_owned()));
        rest = tail.get(1..)?;
    }
}

/// The fields of an ErrorResponse or NoticeResponse; `masked` are the
/// field codes the gateway masked.
fn diagnostic(fields: &[(u8, String)], masked: &[u16]) -> Diagnostic {
    let get = |code: u8| {
        fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.clone())
    };
    let masked = [
        (b'M', "message"),
        (b'D', "detail"),
        (b'H', "hint"),
        (b'W', "context"),
    ]
    .into_iter()
    .filter(|(code, _)| masked.contains(&u16::from(*code)))
    .map(|(_, name)| name)
    .collect();
    Diagnostic {
        // The non-localized severity, as `Fields::severity`.
        severity: get(b'V')
            .or_else(|| get(b'S'))
            .unwrap_or_else(|| "ERROR".to_owned()),
        code: get(b'C').unwrap_or_default(),
        message: get(b'M').unwrap_or_default(),
        detail: get(b'D'),
        hint: get(b'H'),
        position: get(b'P'),
        context: get(b'W'),
        masked,
    }
}

/// The type OIDs of a ParameterDescription body.
fn parameter_types(body: &[u8]) -> Option<Vec<u32>> {
    let (count, rest) = body.split_first_chunk::<2>()?;
    let n = usize::try_from(i16::from_be_bytes(*count)).ok()?;
    if rest.len() != 4 * n {
        return None;
    }
    rest.chunks_exact(4)
        .map(|c| c.try_into().ok().map(u32::from_be_bytes))
        .collect()
}
