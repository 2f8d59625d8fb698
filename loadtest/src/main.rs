//! `gatehouse-loadtest`, the SRE harness: how many agent sessions a
//! Gatehouse node carries, at what latency, and whether it recorded
//! everything on the way.
//!
//! It drives N concurrent simulated agents through a gateway to a real
//! PostgreSQL target — closed loop, or open loop at a fixed arrival rate
//! with latency measured from the intended send time — with a weighted mix
//! of workloads (point reads, range reads, writes in transactions,
//! connect-per-task, masked selects, custom SQL scripts, statements the
//! plan denies). With
//! `--compare-direct` the identical workload runs straight against the
//! target in alternating slices of the same run and the report gives
//! gateway ÷ direct ratios. Results (throughput, HDR-histogram latency
//! percentiles, errors by kind, connections, the gateway's CPU and RSS)
//! go to stdout as a table and to `--json FILE`. Afterwards it can check
//! the gateway's store: every statement it sent recorded exactly once (a
//! denied one as a denial), every session's hash chain intact.
//!
//! The run is laid out in [`schedule`], agents live in [`driver`], what
//! they record in [`stats`] and [`ledger`], the store check in [`check`].
//!
//! What it is not: a benchmark of the gateway's internals (those are the
//! criterion benches in `bench/`), and not a tool to point at other
//! people's servers — every run is bounded in time and count and stops by
//! itself.
#![forbid(unsafe_code)]

mod args;
mod check;
mod driver;
mod grant;
mod ledger;
mod process;
mod progress;
mod report;
mod schedule;
mod send;
mod setup;
mod spawn;
mod stats;
mod tls;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use tokio::time::Instant;
use tokio_postgres::config::SslMode;

use crate::args::Args;
use crate::driver::{Control, Endpoint, Plan, StopReason};
use crate::grant::{Grants, MintOptions};
use crate::ledger::Ledger;
use crate::report::{LegReport, Ratios, Report, Settings};
use crate::schedule::{Leg, Schedule, Window};
use crate::spawn::{GatewayConfig, Spawned};
use crate::stats::Stats;
use crate::tls::Trust;
use crate::workload::Mix;

/// Minted grants outlive the run by this much by default.
const GRANT_MARGIN: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.validate().and_then(|()| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.threads {
            builder.worker_threads(n as usize);
        }
        let runtime = builder
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        runtime.block_on(run(args))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let run_id = {
        let id = uuid::Uuid::now_v7().simple().to_string();
        id[id.len() - 8..].to_owned()
    };
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let (mix, mut warnings) = Mix::from_args(&args)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let script = args
        .script
        .as_deref()
        .map(workload::load_script)
        .transpose()?
        .unwrap_or_default();
    let direct_config = args.direct_config()?;
    let spawn_config = args
        .spawn_gateway
        .as_deref()
        .map(GatewayConfig::read)
        .transpose()?;

    let address = match (&spawn_config, &args.gateway) {
        (Some(c), _) => c.address.to_string(),
        (None, Some(g)) => g.clone(),
        (None, None) => bail!("give --gateway HOST:PORT or --spawn-gateway CONFIG"),
    };
    let (host, port) = split_host_port(&address)?;
    let gateway_tls = !args.plaintext && spawn_config.as_ref().is_none_or(|c| c.tls);
    let trust = match (&args.ca, args.insecure_skip_verify) {
        (Some(ca), _) => Trust::Ca(ca),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::Nothing,
    };
    if gateway_tls && matches!(trust, Trust::Nothing) {
        bail!(
            "the gateway speaks TLS: give --ca FILE (the CA of its certificate) or \
             --insecure-skip-verify (encrypted, unverified: for loopback), or --plaintext if \
             its config allows plaintext"
        );
    }
    let tls = tls::connector(trust)?;

    let ttl = args.ttl.unwrap_or(args.total_run() + GRANT_MARGIN);
    let grants = match (&args.grant, &args.signing_key) {
        (Some(token), _) => Grants::shared(token, args.user.as_deref())?,
        (None, Some(key)) => {
            if ttl < args.total_run() + args.timeout {
                warnings.push(format!(
                    "--ttl {} is shorter than the run: connections after it expires are refused",
                    humantime::format_duration(ttl)
                ));
            }
            let targets = if args.targets.is_empty() {
                vec![args.dbname.clone()]
            } else {
                args.targets.clone()
            };
            let iss = args
                .iss
                .clone()
                .or_else(|| spawn_config.as_ref().map(|c| c.issuer.clone()))
                .unwrap_or_else(|| "gatehouse".to_owned());
            let aud = args
                .aud
                .clone()
                .or_else(|| spawn_config.as_ref().map(|c| c.audience.clone()))
                .unwrap_or_else(|| "gatehouse".to_owned());
            let opts = MintOptions {
                sub: &args.sub,
                targets: &targets,
                ttl,
                uses: args.uses,
                purpose: &args.purpose,
                iss: &iss,
                aud: &aud,
                kid: args.kid.as_deref(),
                deny_delete: mix.has_denied(),
            };
            Grants::mint(key, &opts, args.agents, args.user.as_deref())?
        }
        (None, None) => bail!("give --grant TOKEN or --signing-key FILE"),
    };

    let mut gateway_config = tokio_postgres::Config::new();
    gateway_config
        .host(&host)
        .port(port)
        .dbname(&args.dbname)
        .user(grants.user())
        .connect_timeout(args.timeout)
        .ssl_mode(if gateway_tls {
            SslMode::Require
        } else {
            SslMode::Disable
        });
    let direct = direct_config.map(|mut config| {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(args.timeout);
        }
        Endpoint {
            config,
            tls: tls.clone(),
        }
    });

    if args.setup
        && let Some(direct) = &direct
    {
        let (client, connection) = direct
            .config
            .connect(direct.tls.clone())
            .await
            .context("--setup: cannot connect to --direct")?;
        let task = tokio::spawn(connection);
        let refilled = setup::prepare(&client, args.rows).await?;
        drop(client);
        let _ = task.await;
        eprintln!(
            "setup: {} holds ids 1..={}{}",
            workload::TABLE,
            args.rows,
            if refilled { " (refilled)" } else { "" }
        );
    }

    let spawned = match (&args.spawn_gateway, &spawn_config) {
        (Some(path), Some(config)) => {
            let log = args.gateway_log.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("gatehouse-loadtest-{run_id}-gateway.log"))
            });
            let binary = Spawned::binary(args.gatehouse_bin.as_deref());
            let spawned = Spawned::start(&binary, path, config.address, log).await?;
            eprintln!(
                "started {} serve (pid {}), log {}",
                binary.display(),
                spawned.pid().unwrap_or(0),
                spawned.log.display()
            );
            Some(spawned)
        }
        _ => None,
    };

    let gateway = Endpoint {
        config: gateway_config,
        tls,
    };
    let started_us = unix_us();
    if let Err((leg, e)) = driver::preflight(
        &run_id,
        &gateway,
        direct.as_ref().filter(|_| args.compare_direct),
        grants.token(0),
    )
    .await
    {
        let tail = spawned.as_ref().map(Spawned::log_tail).unwrap_or_default();
        let e = gatehouse_core::errors::chain(&e);
        match leg {
            Leg::Gateway => bail!("cannot connect through the gateway at {address}: {e}\n{tail}"),
            Leg::Direct => bail!("cannot connect to --direct: {e}"),
        }
    }

    let control = Arc::new(Control::default());
    watch_signals(control.clone(), spawned.as_ref().and_then(Spawned::pid));
    let schedule = Schedule::new(
        Instant::now(),
        args.ramp_up,
        args.warmup,
        args.duration,
        args.compare_direct.then_some(args.slice),
    );
    let seed = args.seed();
    let plan = Arc::new(Plan {
        run: run_id.clone(),
        agents: args.agents,
        schedule,
        rate: args.rate,
        max_requests: args.max_requests,
        timeout: args.timeout,
        mix: mix.clone(),
        rows: args.rows,
        range_rows: args.range_rows,
        connect_statements: args.connect_statements,
        script,
        masked_sql: args.masked_sql.clone(),
        seed,
        gateway,
        direct: direct.filter(|_| args.compare_direct),
        grants: grants.clone(),
    });
    let stats = Arc::new(Stats::default());
    let progress =
        (!args.quiet).then(|| progress::spawn(stats.clone(), schedule, control.subscribe()));
    let gateway_pid = args.gateway_pid.or(spawned.as_ref().and_then(Spawned::pid));
    let sample = |pid: u32| {
        tokio::spawn(process::watch(
            pid,
            schedule.measure_start(),
            schedule.end(),
            control.subscribe(),
        ))
    };
    let gateway_sampler = gateway_pid.map(sample);
    let harness_sampler = sample(std::process::id());

    let finished = driver::run(plan, stats.clone(), control.clone()).await;
    let early = control.early_stop();
    control.finish();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    if finished.aborted > 0 {
        warnings.push(format!(
            "{} agents were still busy past the deadline and were aborted",
            finished.aborted
        ));
    }

    let measure_start = schedule.measure_start();
    let measure_end = match early {
        Some((_, at)) => at.clamp(measure_start, schedule.end()),
        None => schedule.end(),
    };
    let stopped_by = early.map_or(StopReason::Duration, |(r, _)| r);
    let leg_report = |leg: Leg| {
        LegReport::new(
            &stats.snapshot(leg, Window::Measured),
            schedule
                .leg_time(leg, measure_start, measure_end)
                .as_secs_f64(),
        )
    };
    let gateway_report = leg_report(Leg::Gateway);
    let direct_report = args.compare_direct.then(|| leg_report(Leg::Direct));
    for (name, leg) in [
        ("gateway", Some(&gateway_report)),
        ("direct", direct_report.as_ref()),
    ] {
        if let Some(leg) = leg.filter(|l| l.not_sent > 0) {
            warnings.push(format!(
                "the agents fell behind --rate on the {name} leg: {} sends due in the measured \
                 window never went out, and the latency figures cover only those that did; use \
                 more --agents or a lower --rate",
                leg.not_sent
            ));
        }
    }
    let ratios = direct_report
        .as_ref()
        .map(|d| Ratios::of(&gateway_report, d));
    let mut gateway_process = match gateway_sampler {
        Some(h) => h.await.ok(),
        None => None,
    };
    if let Some(p) = &mut gateway_process
        && gateway_report.ok > 0
    {
        p.cpu_us_per_task = Some(p.cpu_seconds * 1e6 / gateway_report.ok as f64);
    }
    let harness_process = harness_sampler.await.ok();

    if let Some(spawned) = spawned {
        match spawned.stop().await {
            Ok(status) if status.success() => {}
            Ok(status) => warnings.push(format!("the spawned gateway exited with {status}")),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }

    let check_dir: Option<PathBuf> = match (&spawn_config, &args.check_store) {
        (_, Some(dir)) => Some(dir.clone()),
        (Some(config), None) if !args.no_check => Some(config.store_dir.clone()),
        _ => None,
    };
    let check = match check_dir {
        Some(dir) => {
            let wait = args.check_wait;
            let reader = check::open_store(&dir, wait, || {
                eprintln!(
                    "waiting up to {} for the gateway to stop and release {} \
                     (fjall allows one process per store)",
                    humantime::format_duration(wait),
                    dir.display()
                );
            })
            .await?;
            let ledger = Ledger {
                run: run_id.clone(),
                agents: finished.ledgers,
                preflight: true,
                jtis: grants.jtis().to_vec(),
                started_us,
                masked_answered: finished.masked_answered,
            };
            let report = tokio::task::spawn_blocking(move || check::check(&reader, &ledger))
                .await
                .context("the recording check panicked")??;
            Some(report)
        }
        None => None,
    };

    let report = Report {
        tool: "gatehouse-loadtest",
        version: env!("CARGO_PKG_VERSION"),
        run_id,
        started_at,
        settings: Settings {
            gateway: address,
            dbname: args.dbname.clone(),
            agents: args.agents,
            mode: if args.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: args.rate,
            mix: mix
                .entries()
                .iter()
                .map(|(w, n)| (w.name().to_owned(), *n))
                .collect(),
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            ramp_up_s: args.ramp_up.as_secs_f64(),
            max_requests: args.max_requests,
            timeout_s: args.timeout.as_secs_f64(),
            compare_direct: args.compare_direct,
            slice_s: args.compare_direct.then_some(args.slice.as_secs_f64()),
            rows: args.rows,
            range_rows: args.range_rows,
            seed,
            tls: match (gateway_tls, trust) {
                (false, _) => "plaintext",
                (true, Trust::Ca(_)) => "verify-ca",
                (true, _) => "insecure-skip-verify",
            },
            grants: if args.grant.is_some() {
                "shared"
            } else {
                "minted"
            },
        },
        stopped_by: stopped_by.name(),
        measured_seconds: (measure_end - measure_start).as_secs_f64(),
        gateway: gateway_report,
        direct: direct_report,
        ratios,
        gateway_process,
        harness_process,
        check,
        warnings,
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("--json: cannot write {}", path.display()))?;
    }
    let check_failed = report.check.as_ref().is_some_and(|c| !c.passed);
    if check_failed || report.gateway.ok == 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `host:port` or `[v6]:port`.
fn split_host_port(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("--gateway {address:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--gateway {address:?}: {port:?} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--gateway {address:?} has no host");
    }
    Ok((host.to_owned(), port))
}

/// Now, µs since the Unix epoch.
fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// SIGINT or SIGTERM stops the run early; the results so far are still
/// reported and checked. A second one exits at once (status 130), after
/// sending SIGTERM to a gateway the harness started.
fn watch_signals(control: Arc<Control>, spawned_pid: Option<u32>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for first in [true, false] {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if first {
                eprintln!(
                    "\ninterrupted: finishing the tasks in flight, then reporting \
                     (again to quit at once)"
                );
                control.stop(StopReason::Interrupted);
            }
        }
        if let Some(pid) = spawned_pid {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status();
        }
        std::process::exit(130);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:15432").expect("ok"),
            ("127.0.0.1".to_owned(), 15432)
        );
        assert_eq!(
            split_host_port("[::1]:5432").expect("ok"),
            ("::1".to_owned(), 5432)
        );
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port(":5432").is_err());
    }
}
