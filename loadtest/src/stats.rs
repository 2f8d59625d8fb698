//! What the agents record as they go: latency histograms (HDR, in
//! microseconds), counts and errors, per leg and window.
//!
//! Agents record each finished task under a short lock of its leg and
//! window's [`Cell`]; the progress line reads the same cells once a second.
//! Latency is recorded for successful tasks; failed ones are counted by
//! kind (SQLSTATE, `connect`, `closed`, `io`, `timeout`), with the first
//! message of each kind kept as an example. A denied-workload task the
//! gateway denied (SQLSTATE 42501) succeeded: it is counted as *denied as
//! planned*; one it let through, or failed otherwise, is an error of kind
//! [`NOT_DENIED`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::schedule::{Leg, Window};
use crate::workload::{DENIED_SQLSTATE, TABLE, Workload};

/// The error kind of a denied-workload task the gateway did not deny.
pub const NOT_DENIED: &str = "denied workload not denied";

/// The largest latency a histogram holds exactly: one hour, in µs. Longer
/// ones are recorded as this.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_US, 3) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds: {e}"),
    }
}

/// How a task went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Statements answered (successfully or with an SQL error).
    pub statements: u32,
    /// `None` on success; else the error's kind and message.
    pub error: Option<Failure>,
    /// A denied-workload task the gateway denied, as planned (a success).
    pub denied: bool,
}

impl Outcome {
    /// A task that failed before any statement was answered.
    pub fn failed(error: Failure) -> Outcome {
        Outcome {
            statements: 0,
            error: Some(error),
            denied: false,
        }
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// SQLSTATE, or `connect`, `closed`, `io`, `timeout`.
    pub kind: String,
    /// The error as the client library put it.
    pub message: String,
}

/// One kind of error: how often, and the first message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCount {
    /// How many tasks failed so.
    pub count: u64,
    /// The first one's message.
    pub example: String,
}

/// Counts and latencies of one workload.
#[derive(Debug, Clone)]
pub struct WorkloadCell {
    /// Successful tasks' latencies.
    pub latency: Histogram<u64>,
    /// Tasks that failed.
    pub errors: u64,
}

/// Everything recorded for one leg in one window.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Successful tasks' latencies.
    pub latency: Histogram<u64>,
    /// Tasks that failed.
    pub errors: u64,
    /// Statements answered.
    pub statements: u64,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, ErrorCount>,
    /// Per workload, indexed by [`Workload::index`].
    pub workloads: [WorkloadCell; Workload::ALL.len()],
    /// Denied-workload tasks the gateway denied, as planned.
    pub denied_as_planned: u64,
    /// Connections that opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Open loop: intended sends that never went out before the run ended
    /// (the agents could not keep up with the rate).
    pub not_sent: u64,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            latency: histogram(),
            errors: 0,
            statements: 0,
            error_kinds: BTreeMap::new(),
            workloads: std::array::from_fn(|_| WorkloadCell {
                latency: histogram(),
                errors: 0,
            }),
            denied_as_planned: 0,
            connections_opened: 0,
            connect_failures: 0,
            not_sent: 0,
        }
    }
}

impl Cell {
    /// Successful tasks.
    pub fn ok(&self) -> u64 {
        self.latency.len()
    }

    fn record(&mut self, workload: Workload, latency: Duration, outcome: Outcome) {
        self.statements += u64::from(outcome.statements);
        self.denied_as_planned += u64::from(outcome.denied && outcome.error.is_none());
        let w = &mut self.workloads[workload.index()];
        match outcome.error {
            None => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(us.max(1));
                w.latency.saturating_record(us.max(1));
            }
            Some(failure) => {
                self.errors += 1;
                w.errors += 1;
                let entry = self.error_kinds.entry(failure.kind).or_default();
                if entry.count == 0 {
                    entry.example = failure.message;
                }
                entry.count += 1;
            }
        }
    }
}

/// The shared recording of a run.
#[derive(Debug, Default)]
pub struct Stats {
    /// `[leg][window]`.
    cells: [[Mutex<Cell>; 2]; 2],
    /// Tasks finished per leg, every window: for per-second rates.
    finished: [AtomicU64; 2],
    /// Tasks failed per leg, every window.
    failed: [AtomicU64; 2],
}

impl Stats {
    /// Records a finished task that started (or was meant to) in `window`.
    pub fn record(
        &self,
        leg: Leg,
        window: Window,
        workload: Workload,
        latency: Duration,
        outcome: Outcome,
    ) {
        self.finished[leg.index()].fetch_add(1, Ordering::Relaxed);
        if outcome.error.is_some() {
            self.failed[leg.index()].fetch_add(1, Ordering::Relaxed);
        }
        self.with(leg, window, |c| c.record(workload, latency, outcome));
    }

    /// Records a connection attempt.
    pub fn connected(&self, leg: Leg, window: Window, ok: bool) {
        self.with(leg, window, |c| {
            if ok {
                c.connections_opened += 1;
            } else {
                c.connect_failures += 1;
            }
        });
    }

    /// Records open-loop sends that never went out.
    pub fn not_sent(&self, leg: Leg, n: u64) {
        self.with(leg, Window::Measured, |c| c.not_sent += n);
    }

    /// Tasks finished and failed on `leg` so far, every window.
    pub fn totals(&self, leg: Leg) -> (u64, u64) {
        (
            self.finished[leg.index()].load(Ordering::Relaxed),
            self.failed[leg.index()].load(Ordering::Relaxed),
        )
    }

    /// Runs `f` on a cell under its lock.
    pub fn with<T>(&self, leg: Leg, window: Window, f: impl FnOnce(&mut Cell) -> T) -> T {
        let mut cell = self.cells[leg.index()][window.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut cell)
    }

    /// A copy of a cell.
    pub fn snapshot(&self, leg: Leg, window: Window) -> Cell {
        self.with(leg, window, |c| c.clone())
    }
}

/// Classifies a tokio-postgres error: its SQLSTATE if the server (or
/// gateway) sent one, else `connect` while connecting, `closed` if the
/// connection is gone, `io` otherwise.
pub fn classify(e: &tokio_postgres::Error, connecting: bool) -> Failure {
    let kind = if let Some(db) = e.as_db_error() {
        db.code().code().to_owned()
    } else if connecting {
        "connect".to_owned()
    } else if e.is_closed() {
        "closed".to_owned()
    } else {
        "io".to_owned()
    };
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => gatehouse_core::errors::chain(e),
    };
    Failure { kind, message }
}

/// Judges the answer to a denied-workload statement sent through the
/// gateway: `(None, true)` when it was denied with SQLSTATE 42501, as
/// planned; else the failure — of kind [`NOT_DENIED`] when it ran or failed
/// with another SQLSTATE, as [`classify`] says when no answer came.
pub fn judge_denied<T>(result: &Result<T, tokio_postgres::Error>) -> (Option<Failure>, bool) {
    match result {
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == DENIED_SQLSTATE => (None, true),
            Some(db) => (
                Some(Failure {
                    kind: NOT_DENIED.to_owned(),
                    message: format!(
                        "failed with {} instead of {DENIED_SQLSTATE}: {}: {}",
                        db.code().code(),
                        db.severity(),
                        db.message()
                    ),
                }),
                false,
            ),
            None => (Some(classify(e, false)), false),
        },
        Ok(_) => (
            Some(Failure {
                kind: NOT_DENIED.to_owned(),
                message: format!("the gateway ran it: the grant's plan allows delete on {TABLE}"),
            }),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_latency_for_successes_and_kinds_for_errors() {
        let stats = Stats::default();
        let ok = Outcome {
            statements: 3,
            error: None,
            denied: false,
        };
        stats.record(
            Leg::Gateway,
            Window::Measured,
            Workload::Write,
            Duration::from_micros(1500),
            ok.clone(),
        );
        stats.record(
            Leg::Gateway,
            Window::Measured,
            Workload::Point,
            Duration::from_nanos(10),
            ok,
        );
        for msg in ["first", "second"] {
            stats.record(
                Leg::Gateway,
                Window::Measured,
                Workload::Point,
                Duration::from_secs(1),
                Outcome {
                    statements: 1,
                    error: Some(Failure {
                        kind: "57014".into(),
                        message: msg.into(),
                    }),
                    denied: false,
                },
            );
        }
        let cell = stats.snapshot(Leg::Gateway, Window::Measured);
        assert_eq!((cell.ok(), cell.errors, cell.statements), (2, 2, 8));
        assert_eq!(cell.latency.min(), 1, "sub-microsecond counts as 1 µs");
        assert!(cell.latency.max() >= 1500);
        assert_eq!(
            cell.error_kinds["57014"],
            ErrorCount {
                count: 2,
                example: "first".into()
            }
        );
        assert_eq!(cell.workloads[Workload::Point.index()].errors, 2);
        assert_eq!(stats.totals(Leg::Gateway), (4, 2));
        assert_eq!(stats.snapshot(Leg::Direct, Window::Measured).ok(), 0);
        assert_eq!(cell.denied_as_planned, 0);
    }

    #[test]
    fn a_denial_as_planned_is_a_success_of_its_own() {
        let stats = Stats::default();
        stats.record(
            Leg::Gateway,
            Window::Measured,
            Workload::Denied,
            Duration::from_micros(300),
            Outcome {
                statements: 1,
                error: None,
                denied: true,
            },
        );
        stats.record(
            Leg::Gateway,
            Window::Measured,
            Workload::Denied,
            Duration::from_micros(300),
            Outcome {
                statements: 1,
                error: judge_denied(&Ok::<usize, tokio_postgres::Error>(0)).0,
                denied: false,
            },
        );
        let cell = stats.snapshot(Leg::Gateway, Window::Measured);
        assert_eq!((cell.ok(), cell.errors, cell.denied_as_planned), (1, 1, 1));
        assert_eq!(cell.workloads[Workload::Denied.index()].errors, 1);
        assert!(
            cell.error_kinds[NOT_DENIED].example.contains("ran it"),
            "{:?}",
            cell.error_kinds
        );
    }
}
