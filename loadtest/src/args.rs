//! The command line, and the checks that need more than one flag.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

/// The longest run the harness accepts (ramp-up + warm-up + duration): it
/// always stops by itself.
pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);

/// The most agents one harness process drives.
pub const MAX_AGENTS: u32 = 100_000;

const AFTER_HELP: &str = "\
Workloads (--mix NAME=WEIGHT,...):
  point    SELECT one row of gatehouse_lt_items by primary key (extended protocol)
  range    SELECT --range-rows rows in key order (extended protocol)
  write    BEGIN; UPDATE one row; COMMIT (simple, extended, simple)
  connect  a new connection, --connect-statements point reads, disconnect:
           the high-frequency agent pattern
  masked   the statement given with --masked-sql (a select of a column the
           gateway masks); skipped unless --masked-sql is given
  script   the statements of --script FILE, one per line, in order, per task
  denied   DELETE FROM gatehouse_lt_items WHERE id = $1 AND false (extended
           protocol): a statement the minted grants' plan denies, as an agent
           overstepping its plan sends it. Through the gateway it must fail
           with SQLSTATE 42501 (counted as denied as planned) and be
           recorded as a denial; direct, it deletes nothing. With denied in
           the mix, minted plans allow no DELETE at all (a --script cannot
           delete either)

Every statement sent through the gateway starts with a comment
/* lt:RUN:g:AGENT:CONN:N */ so that the recording check can find it in the
store. The point/range/write workloads read gatehouse_lt_items(id int primary
key, name text, email text, amount numeric); --setup creates it over --direct.

Exit status: 0 when the run completed and the recording check (if any)
passed; 1 when the check found differences or nothing succeeded; 2 when the
harness could not run (bad flags, no connection, gateway did not start).";

/// Drives many concurrent agent sessions through a Gatehouse gateway to a
/// real PostgreSQL target, optionally side by side with direct connections,
/// and checks afterwards that the gateway recorded every statement.
#[derive(Debug, Clone, Parser)]
#[command(name = "gatehouse-loadtest", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The gateway's listener, HOST:PORT. Not needed with --spawn-gateway,
    /// which reads [listener] address from the config.
    #[arg(long, value_name = "HOST:PORT", help_heading = "Target")]
    pub gateway: Option<String>,
    /// The target name agents connect to (the database name they ask the
    /// gateway for).
    #[arg(long, value_name = "TARGET", help_heading = "Target")]
    pub dbname: String,
    /// The user name sent to the gateway (informational: the grant
    /// decides). Default: the grant's `sub`.
    #[arg(long, value_name = "NAME", help_heading = "Target")]
    pub user: Option<String>,
    /// A libpq-style connection string straight to the target, for
    /// --setup and --compare-direct:
    /// "host=… port=… user=… password=… dbname=… [sslmode=disable]".
    #[arg(long, value_name = "CONNINFO", help_heading = "Target")]
    pub direct: Option<String>,
    /// Trust this CA (PEM) for the gateway's certificate (and the direct
    /// target's, if it speaks TLS).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub ca: Option<PathBuf>,
    /// Encrypt without verifying the server's certificate: for self-signed
    /// gateways on loopback.
    #[arg(long, help_heading = "TLS", conflicts_with = "ca")]
    pub insecure_skip_verify: bool,
    /// Connect to the gateway without TLS (only if its config has
    /// `allow_plaintext = true`).
    #[arg(long, help_heading = "TLS", conflicts_with_all = ["ca", "insecure_skip_verify"])]
    pub plaintext: bool,

    /// A grant to present as the password, shared by every agent.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "GATEHOUSE_GRANT",
        hide_env_values = true,
        help_heading = "Grants",
        conflicts_with = "signing_key"
    )]
    pub grant: Option<String>,
    /// Mint grants with this Ed25519 signing key (PKCS#8 PEM, as written by
    /// `gatehouse keygen`): one grant per agent.
    #[arg(long, value_name = "FILE", help_heading = "Grants")]
    pub signing_key: Option<PathBuf>,
    /// The `sub` of minted grants.
    #[arg(
        long,
        value_name = "AGENT",
        default_value = "gatehouse-loadtest",
        help_heading = "Grants"
    )]
    pub sub: String,
    /// A target minted grants allow; repeat for several. Default: --dbname.
    #[arg(long = "target", value_name = "NAME", help_heading = "Grants")]
    pub targets: Vec<String>,
    /// How long minted grants are valid. Default: the whole run plus 10
    /// minutes.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Grants")]
    pub ttl: Option<Duration>,
    /// Sessions each minted grant may open. Default: unlimited until it
    /// expires, which connect-per-task workloads need.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Grants")]
    pub uses: Option<u32>,
    /// The `purpose` of minted grants; recorded with every session.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "gatehouse-loadtest",
        help_heading = "Grants"
    )]
    pub purpose: String,
    /// The `iss` of minted grants (default: [grants] issuer of
    /// --spawn-gateway's config, else `gatehouse`).
    #[arg(long, value_name = "ISSUER", help_heading = "Grants")]
    pub iss: Option<String>,
    /// The `aud` of minted grants (default: [grants] audience of
    /// --spawn-gateway's config, else `gatehouse`).
    #[arg(long, value_name = "AUDIENCE", help_heading = "Grants")]
    pub aud: Option<String>,
    /// The `kid` header of minted grants, when the gateway's config
    /// overrides it; derived from the key otherwise.
    #[arg(long, value_name = "KID", help_heading = "Grants")]
    pub kid: Option<String>,

    /// Concurrent agents, each with its own connection(s).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_AGENTS)), help_heading = "Load")]
    pub agents: u32,
    /// How long results are measured.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Load")]
    pub duration: Duration,
    /// How long all agents run before measuring starts (after --ramp-up);
    /// excluded from the results.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration, help_heading = "Load")]
    pub warmup: Duration,
    /// Start the agents evenly over this long, before the warm-up;
    /// excluded from the results.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration, help_heading = "Load")]
    pub ramp_up: Duration,
    /// Open loop: tasks per second in all, at fixed intended send times,
    /// latency measured from the intended time (no coordinated omission).
    /// Without it: closed loop, each agent sends its next task when the
    /// last one is answered.
    #[arg(long, value_name = "PER_SECOND", help_heading = "Load")]
    pub rate: Option<f64>,
    /// Stop after this many measured tasks (the duration still applies).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Load")]
    pub max_requests: Option<u64>,
    /// A task that takes longer fails with `timeout` and its connection is
    /// dropped.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Load")]
    pub timeout: Duration,
    /// Seed of the agents' random choices (workload, row ids). Default:
    /// random.
    #[arg(long, value_name = "N", help_heading = "Load")]
    pub seed: Option<u64>,
    /// Runtime worker threads. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Load")]
    pub threads: Option<u32>,

    /// Workloads and their weights, e.g. point=70,range=10,write=10,connect=10
    /// (see below). Default: that mix; script=1 when only --script is given.
    #[arg(long, value_name = "NAME=WEIGHT,...", help_heading = "Workloads")]
    pub mix: Option<String>,
    /// Rows in gatehouse_lt_items (what --setup creates; ids 1..=N are
    /// read and written).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000), help_heading = "Workloads")]
    pub rows: u32,
    /// Rows a range read returns.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Workloads")]
    pub range_rows: u32,
    /// Point reads per connect-per-task task.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000), help_heading = "Workloads")]
    pub connect_statements: u32,
    /// Custom SQL: one statement per line (blank lines and lines starting
    /// with `--` are skipped), all run in order per `script` task, each as
    /// a simple-protocol query.
    #[arg(long, value_name = "FILE", help_heading = "Workloads")]
    pub script: Option<PathBuf>,
    /// The `masked` workload's statement: a select of a column the
    /// gateway's config masks. `$1`, if present, is bound to a random row
    /// id (int4).
    #[arg(long, value_name = "SQL", help_heading = "Workloads")]
    pub masked_sql: Option<String>,
    /// Create (or refill) gatehouse_lt_items with --rows rows over
    /// --direct before the run.
    #[arg(long, help_heading = "Workloads", requires = "direct")]
    pub setup: bool,

    /// Run the identical workload against --direct in the same run, in
    /// alternating time slices, and report gateway/direct ratios.
    #[arg(long, help_heading = "Comparison", requires = "direct")]
    pub compare_direct: bool,
    /// The length of each slice with --compare-direct.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration, help_heading = "Comparison")]
    pub slice: Duration,

    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub json: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, help_heading = "Output")]
    pub quiet: bool,

    /// Sample this gateway process's CPU and RSS (/proc) over the
    /// measured window.
    #[arg(long, value_name = "PID", help_heading = "Gateway process")]
    pub gateway_pid: Option<u32>,
    /// Start `gatehouse serve --config CONFIG` first, wait for its port,
    /// run, stop it with SIGTERM, then check its store (unless
    /// --no-check). Its CPU and RSS are sampled.
    #[arg(long, value_name = "CONFIG", help_heading = "Gateway process", conflicts_with_all = ["gateway", "gateway_pid"])]
    pub spawn_gateway: Option<PathBuf>,
    /// The `gatehouse` binary for --spawn-gateway. Default: `gatehouse`
    /// next to this binary, else on PATH.
    #[arg(long, value_name = "FILE", help_heading = "Gateway process")]
    pub gatehouse_bin: Option<PathBuf>,
    /// Where the spawned gateway's output goes. Default: a file in the temp
    /// dir, named at start.
    #[arg(long, value_name = "FILE", help_heading = "Gateway process")]
    pub gateway_log: Option<PathBuf>,

    /// After the run, check the gateway's store directory: every
    /// statement sent through the gateway recorded exactly once, every
    /// session's hash chain intact. The gateway must have stopped (fjall
    /// allows one process per store): the harness waits up to
    /// --check-wait for it.
    #[arg(long, value_name = "DIR", help_heading = "Recording check")]
    pub check_store: Option<PathBuf>,
    /// How long to wait for the store to be released.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, help_heading = "Recording check")]
    pub check_wait: Duration,
    /// With --spawn-gateway: do not check its store.
    #[arg(long, help_heading = "Recording check", conflicts_with = "check_store")]
    pub no_check: bool,
}

impl Args {
    /// Checks what clap cannot: combinations and ranges of values.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.gateway.is_none() && self.spawn_gateway.is_none() {
            bail!("give --gateway HOST:PORT, or --spawn-gateway CONFIG to start one");
        }
        if self.grant.is_none() && self.signing_key.is_none() {
            bail!(
                "give --grant TOKEN (shared by every agent) or --signing-key FILE \
                 (the gateway's grant signing key: one grant is minted per agent)"
            );
        }
        if self.duration.is_zero() {
            bail!("--duration must be longer than 0s");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be longer than 0s");
        }
        if self.total_run() > MAX_RUN {
            bail!(
                "--ramp-up + --warmup + --duration is {}, longer than the {} the harness runs at most",
                humantime::format_duration(self.total_run()),
                humantime::format_duration(MAX_RUN)
            );
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0)
        {
            bail!("--rate must be a number of tasks per second between 0 and 10000000, not {rate}");
        }
        if self.compare_direct && self.slice < Duration::from_millis(100) {
            bail!("--slice must be at least 100ms");
        }
        if self.dbname.is_empty() {
            bail!("--dbname cannot be empty");
        }
        if let Some(sql) = &self.masked_sql
            && sql.trim().is_empty()
        {
            bail!("--masked-sql cannot be empty");
        }
        Ok(())
    }

    /// Ramp-up, warm-up and measured duration together.
    pub fn total_run(&self) -> Duration {
        self.ramp_up
            .saturating_add(self.warmup)
            .saturating_add(self.duration)
    }

    /// The seed: `--seed` or a random one.
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }

    /// The direct connection string parsed, if given.
    pub fn direct_config(&self) -> anyhow::Result<Option<tokio_postgres::Config>> {
        self.direct
            .as_deref()
            .map(|s| {
                s.parse::<tokio_postgres::Config>()
                    .context("--direct is not a valid connection string")
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec![
            "gatehouse-loadtest",
            "--gateway",
            "127.0.0.1:15432",
            "--dbname",
            "orders",
            "--grant",
            "t",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn defaults_are_a_short_closed_loop_run() {
        let args = parse(&[]);
        args.validate().expect("valid");
        assert_eq!(args.agents, 16);
        assert_eq!(args.total_run(), Duration::from_secs(35));
        assert!(args.rate.is_none());
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(parse(&["--duration", "0s"]).validate().is_err());
        assert!(parse(&["--duration", "25h"]).validate().is_err());
        assert!(parse(&["--rate", "0"]).validate().is_err());
        assert!(
            Args::try_parse_from([
                "gatehouse-loadtest",
                "--dbname",
                "x",
                "--grant",
                "t",
                "--agents",
                "0"
            ])
            .is_err()
        );
        let no_grant =
            Args::try_parse_from(["gatehouse-loadtest", "--dbname", "x", "--gateway", "h:1"])
                .expect("parses");
        if std::env::var_os("GATEHOUSE_GRANT").is_none() {
            assert!(no_grant.validate().is_err());
        }
    }

    #[test]
    fn compare_and_setup_need_a_direct_target() {
        assert!(
            Args::try_parse_from([
                "gatehouse-loadtest",
                "--gateway",
                "h:1",
                "--dbname",
                "x",
                "--grant",
                "t",
                "--compare-direct"
            ])
            .is_err()
        );
        let args = parse(&[
            "--direct",
            "host=127.0.0.1 user=app dbname=orders",
            "--setup",
        ]);
        assert!(args.direct_config().expect("parses").is_some());
    }
}
