//! Matching answers to the ops that asked for them: completions, errors
//! and the extended protocol's skip-until-Sync, ReadyForQuery.

use super::{Bound, Op, TranscriptBuilder, close_open_block, open_block};
use crate::transcript::{Diagnostic, ItemKind, Request, ResultBlock};

impl TranscriptBuilder {
    /// A statement's result is complete: `finish` fills in how.
    pub(super) fn complete(&mut self, at: i64, finish: impl FnOnce(&mut ResultBlock)) {
        let Some(item) = self.current_statement() else {
            return;
        };
        let portal_columns = match self.pending.front() {
            Some(Op::Execute { portal, .. }) => self.portal_columns(portal),
            _ => None,
        };
        let is_execute = matches!(self.pending.front(), Some(Op::Execute { .. }));
        if let Some((start, entry)) = self.entry(item) {
            let block = open_block(entry);
            if block.columns.is_empty()
                && let Some(columns) = portal_columns
            {
                block.columns = columns;
            }
            finish(block);
            block.done_us = Some(at);
            block.open = false;
            if is_execute {
                entry.duration_us = Some(at - start);
            }
        }
        if is_execute {
            self.pending.pop_front();
        }
    }

    pub(super) fn error(&mut self, d: Diagnostic, at: i64) {
        match self.pending.front() {
            None | Some(Op::Sync) => {
                self.push_item(at, ItemKind::Error(d));
            }
            // A simple query (or function call) ends at its ReadyForQuery;
            // the statements after the failed one in its string never run.
            Some(Op::Query { item } | Op::FunctionCall { item }) => {
                let item = *item;
                if let Some((_, entry)) = self.entry(item) {
                    let block = open_block(entry);
                    block.error = Some(d);
                    block.done_us = Some(at);
                    block.open = false;
                }
            }
            Some(Op::Execute { .. }) => {
                self.complete(at, |block| block.error = Some(d));
                self.skip_until_sync();
            }
            Some(Op::Parse { .. } | Op::Bind { .. } | Op::Describe { .. } | Op::Close) => {
                let failed = self.pending.pop_front();
                self.preparatory_error(failed, d, at);
                self.skip_until_sync();
            }
        }
    }

    /// An error answering a Parse, Bind, Describe or Close: it belongs to
    /// the statement the client was about to run, the next Execute before
    /// the Sync. Without one (a bare prepare), the error gets an entry of
    /// its own where the failed message was.
    pub(super) fn preparatory_error(&mut self, failed: Option<Op>, d: Diagnostic, at: i64) {
        let next_execute = self
            .pending
            .iter()
            .take_while(|op| !matches!(op, Op::Sync | Op::Query { .. }))
            .find_map(|op| match op {
                Op::Execute { item, .. } => Some(*item),
                _ => None,
            });
        if let Some(item) = next_execute {
            if let Some((start, entry)) = self.entry(item) {
                let block = open_block(entry);
                block.error = Some(d);
                block.done_us = Some(at);
                block.open = false;
                entry.duration_us = Some(at - start);
            }
            // Not skipped: it is the statement that failed.
            self.pending
                .retain(|op| !matches!(op, Op::Execute { item: i, .. } if *i == item));
            return;
        }
        let (order, start, request) = match failed {
            Some(Op::Parse {
                order,
                at_us,
                name,
                text,
            }) => (
                order,
                at_us,
                Request::Prepare {
                    text: Some(text),
                    statement: name,
                },
            ),
            Some(Op::Bind {
                order,
                at_us,
                statement,
                text,
                ..
            }) => (order, at_us, Request::Prepare { text, statement }),
            _ => {
                self.push_item(at, ItemKind::Error(d));
                return;
            }
        };
        let saved = std::mem::replace(&mut self.order, order);
        let item = self.new_entry(request, start);
        self.order = saved;
        if let Some((_, entry)) = self.entry(item) {
            let block = open_block(entry);
            block.error = Some(d);
            block.done_us = Some(at);
            block.open = false;
            entry.duration_us = Some(at - start);
        }
    }

    /// After an error in an extended-protocol batch the target ignores
    /// everything up to the Sync.
    pub(super) fn skip_until_sync(&mut self) {
        while let Some(op) = self.pending.front() {
            if matches!(op, Op::Sync | Op::Query { .. }) {
                break;
            }
            if let Some(Op::Execute { item, .. } | Op::FunctionCall { item }) =
                self.pending.pop_front()
                && let Some((_, entry)) = self.entry(item)
            {
                entry.skipped = true;
            }
        }
    }

    /// ReadyForQuery: the query or batch up to the Sync is over.
    pub(super) fn ready(&mut self, at: i64) {
        if self.pending.is_empty() {
            // The greeting's ReadyForQuery, or one nothing asked for.
            self.greeted = true;
            return;
        }
        while let Some(op) = self.pending.pop_front() {
            match op {
                Op::Query { item } | Op::FunctionCall { item } => {
                    if let Some((start, entry)) = self.entry(item) {
                        close_open_block(entry);
                        entry.duration_us = Some(at - start);
                    }
                    break;
                }
                Op::Sync => break,
                // An Execute still waiting got no answer at all.
                Op::Execute { item, .. } => {
                    if let Some((_, entry)) = self.entry(item) {
                        entry.skipped = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// Pops the op that a `want`-answer answers. Preparatory ops in front
    /// of it were answered by messages the recording did not show; a
    /// statement or Sync in front means the answer is unexpected, and
    /// nothing is popped.
    pub(super) fn take_op(&mut self, want: impl Fn(&Op) -> bool) -> Option<Op> {
        let pos = self
            .pending
            .iter()
            .take_while(|op| op.is_preparatory() || want(op))
            .position(&want)?;
        let answered: Vec<Op> = self.pending.drain(..pos).collect();
        for op in answered {
            self.settle(op);
        }
        self.pending.pop_front()
    }

    /// A preparatory op the target has answered (or, when the answer was
    /// not recorded, must have): a Bind's portal now exists on the target.
    pub(super) fn settle(&mut self, op: Op) {
        if let Op::Bind {
            statement,
            portal,
            result_formats,
            ..
        } = op
        {
            self.bound.insert(
                portal,
                Bound {
                    statement,
                    result_formats,
                    columns: None,
                },
            );
        }
    }

    /// The statement whose results are arriving. Preparatory ops still in
    /// front of it have been answered (the target answers in order).
    pub(super) fn current_statement(&mut self) -> Option<usize> {
        while let Some(op) = self.pending.front() {
            if let Some(item) = op.statement_item() {
                return Some(item);
            }
            if !op.is_preparatory() {
                return None;
            }
            if let Some(op) = self.pending.pop_front() {
                self.settle(op);
            }
        }
        None
    }

    /// The statement that is running, without consuming anything: for
    /// asynchronous messages (notices, notifications, parameter changes).
    pub(super) fn peek_statement(&self) -> Option<usize> {
        self.pending
            .iter()
            .take_while(|op| !matches!(op, Op::Sync))
            .find_map(Op::statement_item)
    }
}
