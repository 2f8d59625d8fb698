//! The live progress display, once a second: on a terminal one line that
//! updates in place, otherwise (a pipe, a CI log) one plain line per
//! second.
//!
//! Each line shows where the run is (ramp-up/warm-up or measuring), each
//! leg's tasks per second over the last second, the errors so far, and the
//! p99 latency so far of the current window (warm-up figures while warming
//! up, measured ones after).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::report::human_us;
use crate::schedule::{Leg, Schedule, Window};
use crate::stats::Stats;

/// Starts the display; it ends with the run (or at `stop`) and clears its
/// line on a terminal.
pub fn spawn(
    stats: Arc<Stats>,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let terminal = std::io::stdout().is_terminal();
    tokio::spawn(async move {
        let mut last = [(0u64, 0u64); 2];
        let mut last_at = schedule.start();
        let mut tick = schedule.start();
        loop {
            tick += Duration::from_secs(1);
            if tick > schedule.end() {
                break;
            }
            tokio::select! {
                () = sleep_until(tick) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let now = Instant::now();
            let secs = (now - last_at).as_secs_f64().max(1e-3);
            last_at = now;
            let mut now_totals = [(0, 0); 2];
            for leg in Leg::BOTH {
                now_totals[leg.index()] = stats.totals(leg);
            }
            let line = line(&stats, &schedule, now, secs, last, now_totals);
            last = now_totals;
            let mut out = std::io::stdout().lock();
            if terminal {
                let _ = write!(out, "\r\x1b[2K{line}");
            } else {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        if terminal {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    })
}

fn line(
    stats: &Stats,
    schedule: &Schedule,
    now: Instant,
    secs: f64,
    last: [(u64, u64); 2],
    totals: [(u64, u64); 2],
) -> String {
    let window = schedule.window_at(now);
    let phase = match window {
        Window::Unmeasured => "warm-up",
        Window::Measured => "measure",
    };
    let elapsed = (now - schedule.start()).as_secs();
    let total = (schedule.end() - schedule.start()).as_secs();
    let mut line = format!("[{elapsed:>4}s/{total}s {phase}]");
    let legs: &[Leg] = if schedule.compares() {
        &Leg::BOTH
    } else {
        &[Leg::Gateway]
    };
    let active = schedule.leg_at(now);
    let mut errors = 0;
    for &leg in legs {
        let (done, failed) = totals[leg.index()];
        errors += failed;
        let rate = done.saturating_sub(last[leg.index()].0) as f64 / secs;
        let p99 = stats.with(leg, window, |c| {
            (!c.latency.is_empty()).then(|| c.latency.value_at_quantile(0.99))
        });
        let marker = if schedule.compares() && leg == active {
            "*"
        } else {
            ""
        };
        line.push_str(&format!(
            " {}{marker} {rate:>8.1} tasks/s p99 {}",
            leg.name(),
            p99.map_or_else(|| "-".to_owned(), human_us)
        ));
        line.push_str(" |");
    }
    line.push_str(&format!(" errors {errors}"));
    line
}
