//! Cleans up after test processes that died without running destructors
//! (killed by a timeout, aborted by a panic inside a panic).
//!
//! Every temp dir this crate makes holds `owner.pid`, the id of the test
//! process that made it. Once per process, before the first cluster or
//! gateway starts, dirs whose owner is gone are swept: their server or
//! gateway is stopped (only after `/proc/<pid>/cmdline` confirms the process
//! is the one that dir started, so a reused pid is never signalled) and the
//! dir is removed. A dir without `owner.pid` (being set up, or kept with
//! `GATEHOUSE_TEST_KEEP`) is left alone.

use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use crate::command::{postgres_command, run};

const OWNER_FILE: &str = "owner.pid";
/// Where a gateway dir records its `gatehouse serve` process.
pub(crate) const GATEWAY_PID_FILE: &str = "gatehouse.pid";

/// Prefixes of the temp dirs that are swept (the template is not).
const SWEPT: [&str; 3] = [
    "gatehouse-pg-template-build-",
    "gatehouse-pg-",
    "gatehouse-gw-",
];
const TEMPLATE_PREFIX: &str = "gatehouse-pg-template-u";

/// Marks `dir` as owned by this process.
pub(crate) fn claim(dir: &Path) {
    let _ = std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string());
}

/// Unmarks `dir`, so that it is never swept.
pub(crate) fn release(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(OWNER_FILE));
}

/// Sweeps the temp dirs once per process.
pub(crate) fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep);
}

fn sweep() {
    let mut bases = vec![std::env::temp_dir(), crate::pg_template::base_dir()];
    bases.dedup();
    for base in bases {
        sweep_dir(&base);
    }
}

fn sweep_dir(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMPLATE_PREFIX) || !SWEPT.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = entry.path();
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        eprintln!(
            "gatehouse-tests: removing {} left by dead test process {owner}",
            dir.display()
        );
        stop_leftovers(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn stop_leftovers(dir: &Path) {
    let data = dir.join("data");
    if let Some(pid) = read_pid(&data.join("postmaster.pid"))
        && runs_from(pid, &data)
    {
        let _ = run(
            postgres_command("pg_ctl").arg("-D").arg(&data).args([
                "-w",
                "-t",
                "30",
                "-m",
                "immediate",
                "stop",
            ]),
            Duration::from_secs(40),
        );
    }
    if let Some(pid) = read_pid(&dir.join(GATEWAY_PID_FILE))
        && runs_from(pid, dir)
    {
        let _ = run(
            Command::new("kill").arg("-9").arg(pid.to_string()),
            Duration::from_secs(10),
        );
    }
}

/// The number on the first line of `path`.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid`'s command line mentions `dir`.
fn runs_from(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(&*dir.to_string_lossy())
}
