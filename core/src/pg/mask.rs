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
//! - **COPY TO STDOUT** data in text or CSV format: detectors and
//!   dictionaries over each data message (column rules cannot apply: COPY
//!   names no columns on the wire). Binary COPY is not inspected.
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
use crate::mask::{Applied, Masker, Outcome, Strategy};

use super::catalog::ColumnOrigins;
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

/// Type OIDs whose binary form is their text.
const TEXT_LIKE: &[u32] = &[25, 1043, 1042, 19, 114, 142, 705];
/// jsonb: binary form is a version byte (1) then the text.
const JSONB: u32 = 3802;

/// The masking state of one session.
#[derive(Debug)]
pub struct FrameMasker {
    masker: Arc<Masker>,
    /// Inside COPY TO STDOUT with text or CSV data.
    copy_text: bool,
    /// Hits in the batch being built: (rule, column) → count.
    hits: BTreeMap<(String, String), u32>,
    cells: Vec<MaskedCell>,
    /// Column rules resolved to table columns (see [`super::catalog`]).
    origins: ColumnOrigins,
}

impl FrameMasker {
    /// Masking with `masker`'s rules.
    pub fn new(masker: Arc<Masker>) -> Self {
        FrameMasker {
            masker,
            copy_text: false,
            hits: BTreeMap::new(),
            cells: Vec::new(),
            origins: ColumnOrigins::default(),
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
            b'H' => {
                self.copy_text = body.first() == Some(&0);
                None
            }
            b'c' | b'C' | b'Z' => {
                self.copy_text = false;
                None
            }
            b'd' if self.copy_text => {
                let mut out = Vec::new();
                let outcome = self.masker.mask_value(body, &mut out)?;
                self.count(&outcome, "copy", index, 0);
                Some(encode::frame(b'd', |b| b.extend_from_slice(&out)).into_bytes())
            }
            b'E' | b'N' => {
                self.copy_text = false;
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
                && let Some(masked) = self.value(v, column, i, index)
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
    fn value(
        &mut self,
        v: &[u8],
        column: Option<&Column>,
        field: usize,
        frame: u32,
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
        let (prefix, text) = match (binary, type_oid) {
            (false, _) => (&[][..], v),
            (true, JSONB) => v.split_at_checked(1)?,
            (true, t) if TEXT_LIKE.contains(&t) => (&[][..], v),
            (true, _) => return None,
        };
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
