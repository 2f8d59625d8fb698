//! Masking applied to the target's frames before they leave the gateway.
//!
//! Where values are masked:
//! - **DataRow** values, matched to their columns by the [`ShapeTracker`](super::shape::ShapeTracker).
//!   A column rule replaces the whole value; otherwise the content
//!   detectors and dictionaries run over it. Text-format values are masked
//!   as text. Binary-format values of text-like types (`text`, `varchar`,
//!   `bpchar`, `name`, `json`, `xml`, `unknown`, and `jsonb` after its
//!   version byte) are masked in place the same way; a binary value of any
//!   other type under a column rule becomes NULL (its binary form cannot
//!   carry `****`), and is left alone by the content detectors.
//! - **COPY TO STDOUT** rows, field by field, in text, CSV and binary
//!   format ([`super::copy_out`]): the statement says which columns the
//!   rows have (its column list, or the table's columns from the catalog),
//!   so column rules apply as to query results; other fields get the
//!   detectors and dictionaries. A COPY whose columns are not known (`COPY
//!   (SELECT …)`, a table created after login) has every field masked as a
//!   column of unknown origin when column rules exist. In binary COPY a
//!   field under a column rule becomes NULL (its type is not on the wire).
//!   A data message that is not one whole row (PostgreSQL sends one per
//!   row) gets the detectors over its bytes.
//! - **NotificationResponse** payloads (field index 2 in the cell list).
//! - **ErrorResponse / NoticeResponse**: the message, detail, hint and
//!   context fields (PostgreSQL quotes values there:
//!   `Key (email)=(…) already exists`).
//!
//! Fail closed: rows whose columns are unknown (which the tracker should
//! never allow) are masked as if every column matched a column rule when
//! the rule set has column rules, and by content otherwise.
//!
//! A rewritten frame gets correct field and message lengths. What is
//! recorded is the rewritten frame; a [`Masked`] event says which rule hit
//! which column how often, and which cells — never the values.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::event::{MaskHit, Masked, MaskedCell};
use crate::mask::{Applied, Masker, Outcome, RowScratch, Strategy};

use super::catalog::{ColumnOrigins, ColumnRule, TableColumns};
use super::copy_out::{self, CopyFormat, CopySource};
use super::encode;
use super::shape::{Column, Shape};
use super::wire::Reader;

/// Appends a DataRow field: its length (-1 for NULL) and bytes.
fn write_value(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v);
        }
        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// The binary COPY format's signature, at the start of its header.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The length of the binary COPY header `message` starts with: the
/// signature, the flags and the header extension.
fn binary_header_len(message: &[u8]) -> Option<usize> {
    let rest = message.strip_prefix(BINARY_SIGNATURE)?;
    let mut r = Reader::new(rest);
    let _flags = r.i32()?;
    let extension = usize::try_from(r.i32()?).ok()?;
    r.bytes(extension)?;
    Some(message.len() - r.remaining().len())
}

/// A COPY TO STDOUT in progress.
#[derive(Debug)]
struct CopyOut {
    format: CopyFormat,
    columns: CopyColumns,
    /// A text or CSV header row is still to come.
    header: bool,
    /// The binary format's header is still to come.
    binary_header: bool,
}

/// The columns of a COPY's rows, as far as masking is concerned.
#[derive(Debug)]
enum CopyColumns {
    /// Known, by name, with their rules.
    Named(Vec<(String, ColumnRule)>),
    /// No column rule applies (none are configured, or none matches the
    /// table's columns).
    Unmasked,
    /// Not known while column rules exist: every field is masked.
    Unknown,
}

/// Type OIDs whose binary form is their text.
const TEXT_LIKE: &[u32] = &[25, 1043, 1042, 19, 114, 142, 705];
/// jsonb: binary form is a version byte (1) then the text.
const JSONB: u32 = 3802;

/// The masking state of one session.
#[derive(Debug)]
pub struct FrameMasker {
    masker: Arc<Masker>,
    /// Inside COPY TO STDOUT.
    copy: Option<CopyOut>,
    /// Hits in the batch being built: (rule, column) → count.
    hits: BTreeMap<(String, String), u32>,
    cells: Vec<MaskedCell>,
    /// Column rules resolved to table columns (see [`super::catalog`]).
    origins: ColumnOrigins,
    /// Reused by the row screen ([`Masker::row_may_match`]).
    scratch: RowScratch,
}

impl FrameMasker {
    /// Masking with `masker`'s rules.
    pub fn new(masker: Arc<Masker>) -> Self {
        FrameMasker {
            masker,
            copy: None,
            hits: BTreeMap::new(),
            cells: Vec::new(),
            origins: ColumnOrigins::default(),
            scratch: RowScratch::default(),
        }
    }

    /// The masker.
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Column rules resolved from the target's catalog.
    pub fn set_origins(&mut self, origins: ColumnOrigins) {
        self.origins = origins;
    }

    /// The summary of what was masked since the last call, if anything.
    pub fn take_summary(&mut self) -> Option<Masked> {
        if self.hits.is_empty() {
            return None;
        }
        let hits = std::mem::take(&mut self.hits)
            .into_iter()
            .map(|((rule, column), count)| MaskHit {
                rule,
                column,
                count,
            })
            .collect();
        Some(Masked {
            hits,
            cells: std::mem::take(&mut self.cells),
        })
    }

    /// A CopyOutResponse (`body`) starts a COPY of `source` (`None`: not
    /// known which).
    pub fn copy_out(&mut self, body: &[u8], source: Option<CopySource>) {
        let mut r = Reader::new(body);
        let (Some(overall), Some(count)) = (r.u8(), r.i16()) else {
            self.copy = None;
            return;
        };
        let count = usize::try_from(count).unwrap_or(0);
        // The statement's format must agree with what the target says.
        let source = source.filter(|s| (s.format == CopyFormat::Binary) == (overall == 1));
        let (format, header) = match &source {
            Some(s) => (s.format.clone(), s.header),
            None if overall == 1 => (CopyFormat::Binary, false),
            None => (
                CopyFormat::Text {
                    delimiter: b'\t',
                    null: b"\\N".to_vec(),
                },
                false,
            ),
        };
        let columns = if self.masker.has_column_rules() {
            self.copy_columns(source.as_ref(), count)
        } else {
            CopyColumns::Unmasked
        };
        self.copy = Some(CopyOut {
            format,
            columns,
            header,
            binary_header: overall == 1,
        });
    }

    /// Which columns a COPY's rows have, and their rules.
    fn copy_columns(&self, source: Option<&CopySource>, count: usize) -> CopyColumns {
        let Some((schema, table)) = source.and_then(|s| s.relation.as_ref()) else {
            return CopyColumns::Unknown;
        };
        let named = match source.and_then(|s| s.columns.as_ref()) {
            Some(names) => names
                .iter()
                .map(|n| (n.clone(), self.masker.column_strategy(Some(table), n)))
                .collect(),
            None => match self.origins.table_columns(schema, table) {
                TableColumns::Known(columns) => columns,
                TableColumns::Unmasked => return CopyColumns::Unmasked,
                TableColumns::Unknown => return CopyColumns::Unknown,
            },
        };
        if named.len() == count {
            CopyColumns::Named(named)
        } else {
            CopyColumns::Unknown
        }
    }

    /// Masks one target frame (`tag`, `body`) that is frame number `index`
    /// of its batch. Returns the rewritten frame, or `None` to forward the
    /// original.
    pub fn frame(
        &mut self,
        tag: u8,
        body: &[u8],
        shape: Option<&Shape>,
        index: u32,
    ) -> Option<Bytes> {
        match tag {
            b'D' => self.data_row(body, shape, index),
            b'c' | b'C' | b'Z' => {
                self.copy = None;
                None
            }
            b'd' => {
                let mut copy = self.copy.take()?;
                let out = self.copy_data(&mut copy, body, index);
                self.copy = Some(copy);
                out
            }
            b'E' | b'N' => {
                self.copy = None;
                self.notice(tag, body, index)
            }
            b'A' => self.notification(body, index),
            _ => None,
        }
    }

    /// NOTIFY payloads carry whatever the notifier put there.
    fn notification(&mut self, body: &[u8], index: u32) -> Option<Bytes> {
        let mut r = Reader::new(body);
        let pid = r.i32()?;
        let channel = r.cstr_bytes()?;
        let payload = r.cstr_bytes()?;
        let mut out = Vec::new();
        let outcome = self.masker.mask_value(payload, &mut out)?;
        self.count(&outcome, "notify:payload", index, 2);
        if outcome.nulled() {
            out = b"****".to_vec();
        }
        Some(
            encode::frame(b'A', |b| {
                b.extend_from_slice(&pid.to_be_bytes());
                b.extend_from_slice(channel);
                b.push(0);
                b.extend(out.iter().copied().filter(|c| *c != 0));
                b.push(0);
            })
            .into_bytes(),
        )
    }

    /// One CopyData message of a COPY TO STDOUT: a row, a header, or the
    /// binary format's header or trailer.
    fn copy_data(&mut self, copy: &mut CopyOut, message: &[u8], index: u32) -> Option<Bytes> {
        // PostgreSQL sends the binary format's header in one message with
        // the first row.
        let mut header: &[u8] = &[];
        let mut body = message;
        if std::mem::take(&mut copy.binary_header)
            && let Some(len) = binary_header_len(message)
        {
            (header, body) = message.split_at_checked(len)?;
            if body.is_empty() {
                return None;
            }
        }
        if std::mem::take(&mut copy.header) {
            return None;
        }
        if copy.format == CopyFormat::Binary && body == [0xff, 0xff] {
            return None;
        }
        let Some(fields) = copy_out::split(body, &copy.format) else {
            // Not one whole row: the detectors over its bytes.
            let mut out = Vec::new();
            let outcome = self.masker.mask_value(message, &mut out)?;
            self.count(&outcome, "copy", index, 0);
            return Some(encode::frame(b'd', |b| b.extend_from_slice(&out)).into_bytes());
        };
        let binary = copy.format == CopyFormat::Binary;
        let mut changes: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            let Some(value) = &field.value else { continue };
            let (name, rule): (&str, ColumnRule) = match &copy.columns {
                CopyColumns::Named(named) => named
                    .get(i)
                    .map_or(("copy", None), |(n, r)| (n.as_str(), *r)),
                CopyColumns::Unknown => ("copy", Some(self.masker.unknown_column_rule())),
                CopyColumns::Unmasked => ("copy", None),
            };
            let field_u16 = u16::try_from(i).unwrap_or(u16::MAX);
            if let Some((rule, strategy)) = rule {
                *self
                    .hits
                    .entry((self.masker.rule_name(rule).to_owned(), name.to_owned()))
                    .or_insert(0) += 1;
                self.cells.push(MaskedCell {
                    frame: index,
                    column: field_u16,
                });
                let mut out = Vec::new();
                let masked = match strategy {
                    _ if binary => None,
                    Strategy::Null => None,
                    _ => match self.masker.apply(strategy, value, &mut out) {
                        Applied::Written => Some(out),
                        Applied::Null => None,
                    },
                };
                changes.push((i, masked));
                continue;
            }
            let mut out = Vec::new();
            if let Some(outcome) = self.masker.mask_value(value, &mut out) {
                self.count(&outcome, name, index, field_u16);
                changes.push((i, (!outcome.nulled()).then_some(out)));
            }
        }
        if changes.is_empty() {
            return None;
        }
        let mut changes = changes.into_iter().peekable();
        Some(
            encode::frame(b'd', |b| {
                b.extend_from_slice(header);
                if binary {
                    b.extend_from_slice(&(fields.len() as i16).to_be_bytes());
                }
                for (i, field) in fields.iter().enumerate() {
                    if !binary && i > 0 {
                        b.push(copy.format.delimiter());
                    }
                    match changes.next_if(|(at, _)| *at == i) {
                        Some((_, masked)) => {
                            copy_out::encode_field(b, masked.as_deref(), &copy.format)
                        }
                        None => b.extend_from_slice(body.get(field.raw.clone()).unwrap_or(&[])),
                    }
                }
                b.extend_from_slice(copy_out::line_end(body));
            })
            .into_bytes(),
        )
    }

    fn count(&mut self, outcome: &Outcome, column: &str, frame: u32, field: u16) {
        for (rule, n) in outcome.hits().iter() {
            let key = (self.masker.rule_name(rule).to_owned(), column.to_owned());
            *self.hits.entry(key).or_insert(0) += n;
        }
        self.cells.push(MaskedCell {
            frame,
            column: field,
        });
    }

    fn data_row(&mut self, body: &[u8], shape: Option<&Shape>, index: u32) -> Option<Bytes> {
        let mut r = Reader::new(body);
        let n = usize::try_from(r.i16()?).ok()?;
        // One screen of the whole row first: most rows hold nothing the
        // content rules match, and then only column rules can change them.
        let texts = (0..n)
            .map_while({
                let mut r = r.clone();
                move |i| {
                    let value = r.value()?;
                    let end = body.len() - r.remaining().len();
                    Some(value.and_then(|v| {
                        let (prefix, text) = content_text(v, shape.and_then(|s| s.get(i)))?;
                        let start = end - v.len() + prefix.len();
                        Some(start..start + text.len())
                    }))
                }
            })
            .flatten();
        let content = self.masker.row_may_match(body, texts, &mut self.scratch);
        if !content && !self.masker.has_column_rules() {
            return None;
        }
        let mut values = Vec::with_capacity(n.min(body.len() / 4));
        for _ in 0..n {
            values.push(r.value()?);
        }
        // Only the values masking changes are copied; a row with none is
        // forwarded as it came.
        let mut changes: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let column = shape.and_then(|s| s.get(i));
            if let Some(v) = value
                && let Some(masked) = self.value(v, column, i, index, content)
            {
                changes.push((i, masked));
            }
        }
        if changes.is_empty() {
            return None;
        }
        let mut changes = changes.into_iter().peekable();
        Some(
            encode::frame(b'D', |b| {
                b.extend_from_slice(&(values.len() as i16).to_be_bytes());
                for (i, original) in values.iter().enumerate() {
                    match changes.next_if(|(at, _)| *at == i) {
                        Some((_, masked)) => write_value(b, masked.as_deref()),
                        None => write_value(b, *original),
                    }
                }
            })
            .into_bytes(),
        )
    }

    /// The masked form of one non-NULL value: `Some(None)` is NULL,
    /// `Some(Some(bytes))` a new value, `None` unchanged.
    /// `content`: whether the content rules may match it (else only column
    /// rules apply).
    fn value(
        &mut self,
        v: &[u8],
        column: Option<&Column>,
        field: usize,
        frame: u32,
        content: bool,
    ) -> Option<Option<Vec<u8>>> {
        let field_u16 = u16::try_from(field).unwrap_or(u16::MAX);
        let name = column.map_or("?", |c| c.name.as_str());
        let binary = column.is_some_and(|c| c.format == 1);
        let type_oid = column.map_or(0, |c| c.type_oid);
        let rule = match column {
            Some(c) => self
                .origins
                .get(c.table_oid, c.column)
                .filter(|_| c.table_oid != 0)
                .or_else(|| self.masker.column_strategy(None, &c.name)),
            None if self.masker.has_column_rules() => Some(self.masker.unknown_column_rule()),
            None => None,
        };
        if let Some((rule, strategy)) = rule {
            *self
                .hits
                .entry((self.masker.rule_name(rule).to_owned(), name.to_owned()))
                .or_insert(0) += 1;
            self.cells.push(MaskedCell {
                frame,
                column: field_u16,
            });
            if strategy == Strategy::Null
                || (binary && !TEXT_LIKE.contains(&type_oid))
                || column.is_none()
            {
                return Some(None);
            }
            let mut out = Vec::new();
            return match self.masker.apply(strategy, v, &mut out) {
                Applied::Written => Some(Some(out)),
                Applied::Null => Some(None),
            };
        }
        if !content {
            return None;
        }
        let (prefix, text) = content_text(v, column)?;
        let mut out = prefix.to_vec();
        let outcome = self.masker.mask_value(text, &mut out)?;
        self.count(&outcome, name, frame, field_u16);
        if outcome.nulled() {
            return Some(None);
        }
        Some(Some(out))
    }

    fn notice(&mut self, tag: u8, body: &[u8], index: u32) -> Option<Bytes> {
        // Fields as bytes, not UTF-8: a message in a client encoding such
        // as LATIN1 is masked like any other.
        let Some(fields) = notice_fields(body) else {
            // Not a field list (no terminator): fail closed, mask the bytes.
            let mut out = Vec::new();
            let outcome = self.masker.mask_value(body, &mut out)?;
            self.count(&outcome, "error:malformed", index, 0);
            if outcome.nulled() {
                out = b"****".to_vec();
            }
            return Some(encode::frame(tag, |b| b.extend_from_slice(&out)).into_bytes());
        };
        let mut changed = false;
        let mut rewritten: Vec<(u8, Vec<u8>)> = Vec::with_capacity(fields.len());
        for &(code, value) in &fields {
            let mut out = Vec::new();
            let masked = if matches!(code, b'M' | b'D' | b'H' | b'W') {
                self.masker.mask_value(value, &mut out)
            } else {
                None
            };
            match masked {
                Some(outcome) => {
                    let column = match code {
                        b'M' => "error:message",
                        b'D' => "error:detail",
                        b'H' => "error:hint",
                        _ => "error:context",
                    };
                    self.count(&outcome, column, index, u16::from(code));
                    changed = true;
                    if outcome.nulled() {
                        out = b"****".to_vec();
                    }
                    rewritten.push((code, out));
                }
                None => rewritten.push((code, value.to_vec())),
            }
        }
        if !changed {
            return None;
        }
        Some(
            encode::frame(tag, |b| {
                for (code, value) in &rewritten {
                    b.push(*code);
                    // A NUL inside a masked value would end the field early.
                    b.extend(value.iter().copied().filter(|c| *c != 0));
                    b.push(0);
                }
                b.push(0);
            })
            .into_bytes(),
        )
    }
}

/// What the content rules see of a non-NULL value of `column`: the text,
/// after a prefix to keep (jsonb's version byte); `None` for a binary value
/// of a type whose binary form is not its text.
fn content_text<'a>(v: &'a [u8], column: Option<&Column>) -> Option<(&'a [u8], &'a [u8])> {
    let binary = column.is_some_and(|c| c.format == 1);
    let type_oid = column.map_or(0, |c| c.type_oid);
    match (binary, type_oid) {
        (false, _) => Some((&[][..], v)),
        (true, JSONB) => v.split_at_checked(1),
        (true, t) if TEXT_LIKE.contains(&t) => Some((&[][..], v)),
        (true, _) => None,
    }
}

/// The (code, value) fields of an ErrorResponse or NoticeResponse body, in
/// any encoding; `None` if the list is not NUL-terminated.
fn notice_fields(body: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut r = Reader::new(body);
    let mut fields = Vec::new();
    loop {
        match r.u8()? {
            0 => return Some(fields),
            code => fields.push((code, r.cstr_bytes()?)),
        }
    }
}
