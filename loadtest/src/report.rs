//! The results: built from the measured cells, printed as a table, written
//! as JSON.
//!
//! Throughput counts successful tasks per second of the leg's measured
//! time (with `--compare-direct`, each leg's time is the sum of its
//! slices). Latency percentiles come from the HDR histograms of successful
//! tasks, in microseconds. Ratios are gateway ÷ direct: a throughput ratio
//! of 0.8 means the gateway leg did 80 % of the direct leg's tasks per
//! second, a p99 ratio of 1.5 that its p99 was 1.5 times as long.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::CheckReport;
use crate::process::ProcessReport;
use crate::stats::Cell;
use crate::workload::Workload;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `h`; all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            min: h.min(),
            mean: h.mean(),
        }
    }
}

/// One error kind.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorKind {
    /// Tasks that failed so.
    pub count: u64,
    /// The first one's message.
    pub example: String,
}

/// One workload on one leg.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    /// Successful tasks.
    pub ok: u64,
    /// Failed tasks.
    pub errors: u64,
    /// Successful tasks' latency.
    pub latency_us: Latency,
}

/// One leg's results over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct LegReport {
    /// The leg's measured time.
    pub measured_seconds: f64,
    /// Tasks finished (`ok + errors`).
    pub requests: u64,
    /// Successful tasks.
    pub ok: u64,
    /// Failed tasks.
    pub errors: u64,
    /// Successful tasks per second.
    pub throughput_rps: f64,
    /// Statements answered.
    pub statements: u64,
    /// Statements answered per second.
    pub statements_per_second: f64,
    /// Successful tasks' latency.
    pub latency_us: Latency,
    /// Failed tasks by kind: SQLSTATE, `connect`, `closed`, `io`,
    /// `timeout`.
    pub errors_by_kind: BTreeMap<String, ErrorKind>,
    /// Connections opened (each connect-per-task task opens one; the
    /// others reuse the agent's).
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Open loop: intended sends that never went out (the agents were
    /// still waiting for earlier answers when the run ended).
    pub not_sent: u64,
    /// Denied-workload tasks the gateway denied with SQLSTATE 42501, as
    /// planned (counted in `ok`; on the direct leg always 0).
    pub denied_as_planned: u64,
    /// Per workload that ran.
    pub workloads: BTreeMap<String, WorkloadReport>,
}

impl LegReport {
    /// The report of `cell` over `seconds` of measured time.
    pub fn new(cell: &Cell, seconds: f64) -> LegReport {
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let workloads = Workload::ALL
            .iter()
            .zip(&cell.workloads)
            .filter(|(_, w)| w.latency.len() + w.errors > 0)
            .map(|(name, w)| {
                (
                    name.name().to_owned(),
                    WorkloadReport {
                        ok: w.latency.len(),
                        errors: w.errors,
                        latency_us: Latency::of(&w.latency),
                    },
                )
            })
            .collect();
        LegReport {
            measured_seconds: seconds,
            requests: cell.ok() + cell.errors,
            ok: cell.ok(),
            errors: cell.errors,
            throughput_rps: per_s(cell.ok()),
            statements: cell.statements,
            statements_per_second: per_s(cell.statements),
            latency_us: Latency::of(&cell.latency),
            errors_by_kind: cell
                .error_kinds
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        ErrorKind {
                            count: e.count,
                            example: e.example.clone(),
                        },
                    )
                })
                .collect(),
            connections_opened: cell.connections_opened,
            connect_failures: cell.connect_failures,
            not_sent: cell.not_sent,
            denied_as_planned: cell.denied_as_planned,
            workloads,
        }
    }
}

/// Gateway ÷ direct.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Throughput ratio (below 1: the gateway leg did fewer tasks/s).
    pub throughput: Option<f64>,
    /// p50 latency ratio (above 1: the gateway leg was slower).
    pub p50: Option<f64>,
    /// p99 latency ratio.
    pub p99: Option<f64>,
    /// p50 and p99 ratios per workload.
    pub workloads: BTreeMap<String, WorkloadRatios>,
}

/// Latency ratios of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadRatios {
    /// p50 ratio.
    pub p50: Option<f64>,
    /// p99 ratio.
    pub p99: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}

impl Ratios {
    /// Gateway ÷ direct for every figure both legs have.
    pub fn of(gateway: &LegReport, direct: &LegReport) -> Ratios {
        let workloads = gateway
            .workloads
            .iter()
            .filter_map(|(name, g)| {
                let d = direct.workloads.get(name)?;
                Some((
                    name.clone(),
                    WorkloadRatios {
                        p50: ratio(g.latency_us.p50 as f64, d.latency_us.p50 as f64),
                        p99: ratio(g.latency_us.p99 as f64, d.latency_us.p99 as f64),
                    },
                ))
            })
            .collect();
        Ratios {
            throughput: ratio(gateway.throughput_rps, direct.throughput_rps),
            p50: ratio(gateway.latency_us.p50 as f64, direct.latency_us.p50 as f64),
            p99: ratio(gateway.latency_us.p99 as f64, direct.latency_us.p99 as f64),
            workloads,
        }
    }
}

/// How the run was set up, as the report repeats it.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The gateway address.
    pub gateway: String,
    /// The target name.
    pub dbname: String,
    /// Agents.
    pub agents: u32,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: tasks per second asked for.
    pub rate: Option<f64>,
    /// The workloads and weights.
    pub mix: BTreeMap<String, u32>,
    /// Measured duration asked for, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Ramp-up, seconds.
    pub ramp_up_s: f64,
    /// `--max-requests`.
    pub max_requests: Option<u64>,
    /// Per-task timeout, seconds.
    pub timeout_s: f64,
    /// Whether the direct leg ran.
    pub compare_direct: bool,
    /// Slice length, seconds, with `compare_direct`.
    pub slice_s: Option<f64>,
    /// Rows in the table.
    pub rows: u32,
    /// Rows per range read.
    pub range_rows: u32,
    /// The random seed (to repeat the same choices).
    pub seed: u64,
    /// `verify-ca`, `insecure-skip-verify` or `plaintext`.
    pub tls: &'static str,
    /// `minted` (one grant per agent) or `shared`.
    pub grants: &'static str,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `gatehouse-loadtest`.
    pub tool: &'static str,
    /// Its version.
    pub version: &'static str,
    /// The run id in tags and application names.
    pub run_id: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The setup.
    pub settings: Settings,
    /// `duration`, `max_requests` or `interrupted`.
    pub stopped_by: &'static str,
    /// The measured window's length.
    pub measured_seconds: f64,
    /// Through the gateway.
    pub gateway: LegReport,
    /// Straight to the target, with `--compare-direct`.
    pub direct: Option<LegReport>,
    /// Gateway ÷ direct, with `--compare-direct`.
    pub ratios: Option<Ratios>,
    /// The gateway process over the measured window, when its pid is known.
    pub gateway_process: Option<ProcessReport>,
    /// This harness over the measured window: on one machine it competes
    /// with the gateway and the database for the same cores.
    pub harness_process: Option<ProcessReport>,
    /// The recording check, when it ran.
    pub check: Option<CheckReport>,
    /// Things the harness left out or noticed.
    pub warnings: Vec<String>,
}

/// A latency in µs, readably: `850 µs`, `12.30 ms`, `1.50 s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 10_000_000 {
        format!("{:.2} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

impl Report {
    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let mix: Vec<String> = s.mix.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mode = match s.rate {
            Some(rate) => format!("open loop at {rate} tasks/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "gatehouse-loadtest run {}: {mode}, {} agents, mix {}, target {} via {}",
            self.run_id,
            s.agents,
            mix.join(","),
            s.dbname,
            s.gateway
        );
        let _ = writeln!(
            out,
            "measured {:.1} s (stopped by {}){}",
            self.measured_seconds,
            self.stopped_by,
            match s.slice_s {
                Some(slice) => format!(", gateway and direct alternating every {slice} s"),
                None => String::new(),
            }
        );
        let _ = writeln!(out);
        let legs: Vec<(&str, &LegReport)> = std::iter::once(("gateway", &self.gateway))
            .chain(self.direct.as_ref().map(|d| ("direct", d)))
            .collect();
        let _ = write!(out, "{:<22}", "");
        for (name, _) in &legs {
            let _ = write!(out, "{name:>14}");
        }
        if self.ratios.is_some() {
            let _ = write!(out, "{:>17}", "gateway/direct");
        }
        let _ = writeln!(out);
        let ratios = self.ratios.as_ref();
        let mut row = |label: &str, cell: &dyn Fn(&LegReport) -> String, r: Option<Option<f64>>| {
            let _ = write!(out, "{label:<22}");
            for (_, leg) in &legs {
                let _ = write!(out, "{:>14}", cell(leg));
            }
            if let Some(r) = r {
                let _ = write!(out, "{:>17}", opt_ratio(r));
            }
            let _ = writeln!(out);
        };
        row(
            "throughput (tasks/s)",
            &|l| format!("{:.1}", l.throughput_rps),
            ratios.map(|r| r.throughput),
        );
        row(
            "statements/s",
            &|l| format!("{:.1}", l.statements_per_second),
            None,
        );
        row(
            "latency p50",
            &|l| human_us(l.latency_us.p50),
            ratios.map(|r| r.p50),
        );
        row("latency p90", &|l| human_us(l.latency_us.p90), None);
        row(
            "latency p99",
            &|l| human_us(l.latency_us.p99),
            ratios.map(|r| r.p99),
        );
        row("latency p99.9", &|l| human_us(l.latency_us.p999), None);
        row("latency max", &|l| human_us(l.latency_us.max), None);
        row("tasks ok", &|l| l.ok.to_string(), None);
        if s.mix.contains_key(Workload::Denied.name()) {
            row(
                "denied as planned",
                &|l| l.denied_as_planned.to_string(),
                None,
            );
        }
        row("errors", &|l| l.errors.to_string(), None);
        row(
            "connections opened",
            &|l| l.connections_opened.to_string(),
            None,
        );
        if legs.iter().any(|(_, l)| l.not_sent > 0) {
            row("not sent (behind)", &|l| l.not_sent.to_string(), None);
        }

        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10}{:>7}{:>10}{:>8}{:>12}{:>12}{}",
            "workload",
            "leg",
            "ok",
            "errors",
            "p50",
            "p99",
            if ratios.is_some() {
                "   p50 ratio  p99 ratio"
            } else {
                ""
            }
        );
        for workload in Workload::ALL {
            for (i, (name, leg)) in legs.iter().enumerate() {
                let Some(w) = leg.workloads.get(workload.name()) else {
                    continue;
                };
                let _ = write!(
                    out,
                    "{:<10}{:>7}{:>10}{:>8}{:>12}{:>12}",
                    if i == 0 { workload.name() } else { "" },
                    name,
                    w.ok,
                    w.errors,
                    human_us(w.latency_us.p50),
                    human_us(w.latency_us.p99)
                );
                if i == 0
                    && let Some(r) = ratios.and_then(|r| r.workloads.get(workload.name()))
                {
                    let _ = write!(out, "{:>12}{:>11}", opt_ratio(r.p50), opt_ratio(r.p99));
                }
                let _ = writeln!(out);
            }
        }

        for (name, leg) in &legs {
            if leg.errors_by_kind.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\nerrors ({name}):");
            for (kind, e) in &leg.errors_by_kind {
                let _ = writeln!(out, "  {kind:<10} {:>8}  e.g. {}", e.count, e.example);
            }
        }

        let _ = writeln!(out);
        for (name, p) in [
            ("gateway process", &self.gateway_process),
            ("harness process", &self.harness_process),
        ] {
            let Some(p) = p else { continue };
            let per_task = p
                .cpu_us_per_task
                .map(|us| format!(", {us:.1} µs CPU per gateway task"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{name} {}: CPU {:.1}% of one core ({:.1} s{per_task}), RSS avg {}, max {}{}",
                p.pid,
                p.cpu_percent,
                p.cpu_seconds,
                mib(p.rss_avg_bytes),
                mib(p.rss_max_bytes),
                p.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }

        if let Some(c) = &self.check {
            let _ = writeln!(
                out,
                "recording check of {}: {}",
                c.store,
                if c.passed { "PASSED" } else { "FAILED" }
            );
            let _ = writeln!(
                out,
                "  statements: {} answered + {} unanswered sent, {} recorded; sessions: {} \
                 recorded for {} connections opened ({} attempted), {} refused",
                c.statements_answered,
                c.statements_uncertain,
                c.statements_recorded,
                c.sessions,
                c.connections_opened,
                c.connections_attempted,
                c.sessions_refused
            );
            let _ = writeln!(
                out,
                "  hash chains: {} events, {} breaks; masked: {} answered, {} Masked events",
                c.chain_events, c.chain_breaks, c.masked_answered, c.masked_events
            );
            let _ = writeln!(
                out,
                "  denials: {} denied + {} unanswered sent, {} recorded",
                c.denied_answered, c.denied_uncertain, c.denials_recorded
            );
            if !c.differences.is_empty() {
                let kinds: Vec<String> = c
                    .differences
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                let _ = writeln!(out, "  differences: {}", kinds.join(", "));
                for e in &c.examples {
                    let _ = writeln!(out, "    {e}");
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    fn leg(rps: f64, p50: u64, p99: u64) -> LegReport {
        let mut h = histogram();
        for _ in 0..98 {
            h.saturating_record(p50);
        }
        for _ in 0..2 {
            h.saturating_record(p99);
        }
        let mut cell = Cell {
            latency: h.clone(),
            ..Cell::default()
        };
        cell.workloads[0].latency = h;
        let mut r = LegReport::new(&cell, 100.0 / rps);
        r.throughput_rps = rps;
        r
    }

    #[test]
    fn ratios_are_gateway_over_direct() {
        let g = leg(800.0, 2_000, 10_000);
        let d = leg(1000.0, 1_000, 4_000);
        assert_eq!(g.latency_us.p50, 2_000);
        assert!((9_990..=10_010).contains(&g.latency_us.p99));
        let r = Ratios::of(&g, &d);
        assert!((r.throughput.expect("both") - 0.8).abs() < 1e-9);
        assert!((r.p50.expect("both") - 2.0).abs() < 0.01);
        assert!((r.p99.expect("both") - 2.5).abs() < 0.01);
        assert!(r.workloads.contains_key("point"));
        assert_eq!(ratio(1.0, 0.0), None);
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_300), "12.30 ms");
        assert_eq!(human_us(15_000_000), "15.00 s");
    }
}
