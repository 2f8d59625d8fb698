//! CPU and memory of a process over the measured window, from `/proc`:
//! `utime + stime` of `/proc/PID/stat` at the window's start and end, and
//! `VmRSS` of `/proc/PID/status` once a second in between.
//!
//! CPU times in `/proc/PID/stat` are in clock ticks of `USER_HZ`, which
//! the kernel fixes at 100 per second for user space on every architecture
//! Linux supports today; the harness assumes that rather than calling
//! `sysconf`.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Clock ticks per second in `/proc/PID/stat`.
const USER_HZ: f64 = 100.0;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Reads `pid`'s CPU time and RSS now.
pub fn sample(pid: u32) -> std::io::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&stat, &status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat or status"),
        )
    })
}

/// Parses the two files: fields 14 and 15 (`utime`, `stime`) of `stat`,
/// counted after the parenthesised command name (which may hold spaces),
/// and the `VmRSS:` line of `status` (kB).
fn parse(stat: &str, status: &str) -> Option<Sample> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After `comm` come field 3 (state) … ; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Sample {
        cpu_ticks: utime + stime,
        rss_bytes: rss_kb * 1024,
    })
}

/// A process's use over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    /// The process id.
    pub pid: u32,
    /// CPU seconds (user + system) used in the window.
    pub cpu_seconds: f64,
    /// Average CPU over the window, 100 = one core busy.
    pub cpu_percent: f64,
    /// CPU microseconds per successful task in the window; filled in by
    /// the report.
    pub cpu_us_per_task: Option<f64>,
    /// Average RSS over the samples, bytes.
    pub rss_avg_bytes: u64,
    /// Largest RSS sampled, bytes.
    pub rss_max_bytes: u64,
    /// Samples taken.
    pub samples: u32,
    /// Why sampling stopped early (the process exited), if it did.
    pub error: Option<String>,
}

/// Samples `pid` once a second from `from` until `until` or until `stop`
/// turns true, whichever is first.
pub async fn watch(
    pid: u32,
    from: Instant,
    until: Instant,
    mut stop: watch::Receiver<bool>,
) -> ProcessReport {
    let mut report = ProcessReport {
        pid,
        cpu_seconds: 0.0,
        cpu_percent: 0.0,
        cpu_us_per_task: None,
        rss_avg_bytes: 0,
        rss_max_bytes: 0,
        samples: 0,
        error: None,
    };
    tokio::select! {
        () = sleep_until(from) => {}
        _ = stop.wait_for(|s| *s) => return report,
    }
    let first = match sample(pid) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(format!("cannot read /proc/{pid}: {e}"));
            return report;
        }
    };
    let started = Instant::now();
    let mut last = first;
    let mut rss_sum: u128 = 0;
    let mut note = |s: Sample, report: &mut ProcessReport| {
        report.samples += 1;
        rss_sum += u128::from(s.rss_bytes);
        report.rss_max_bytes = report.rss_max_bytes.max(s.rss_bytes);
    };
    note(first, &mut report);
    let mut tick = started;
    loop {
        tick += Duration::from_secs(1);
        let at = tick.min(until);
        let done = tokio::select! {
            () = sleep_until(at) => at >= until,
            _ = stop.wait_for(|s| *s) => true,
        };
        match sample(pid) {
            Ok(s) => {
                last = s;
                note(s, &mut report);
            }
            Err(e) => {
                report.error = Some(format!("process {pid} exited during the window ({e})"));
                break;
            }
        }
        if done {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.cpu_seconds = last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64 / USER_HZ;
    if elapsed > 0.0 {
        report.cpu_percent = 100.0 * report.cpu_seconds / elapsed;
    }
    if report.samples > 0 {
        report.rss_avg_bytes =
            u64::try_from(rss_sum / u128::from(report.samples)).unwrap_or(u64::MAX);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "4242 (gate house) S 1 4242 4242 0 -1 4194304 1000 0 0 0 250 75 0 0 20 0 4 0 \
                    100 123456789 2000 18446744073709551615";
        let status = "Name:\tgatehouse\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(
            parse(stat, status),
            Some(Sample {
                cpu_ticks: 325,
                rss_bytes: 2048 * 1024
            })
        );
        assert_eq!(parse("garbage", status), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_bytes > 0);
    }
}
