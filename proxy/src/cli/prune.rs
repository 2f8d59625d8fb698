//! `gatehouse store prune`: removes old sessions from a store no gateway
//! holds, after storing a signed prune record that names each one.
//!
//! What goes: every session whose last event is before `--before` (closed,
//! or cut — a stopped store has no running sessions), whole (summary and
//! every event). What stays: every session with an event at or after the
//! cut-off, every checkpoint, grant use count and revocation.
//!
//! The record ([`gatehouse_core::event::PruneRecord`]) is signed here with
//! the seal key (the store does not sign), numbered after the store's
//! last one, and stored before anything is deleted; `gatehouse-audit
//! verify --pubkey` then accepts the absence of exactly the sessions it
//! names. With `[store.retention] require_export = true` — in the config
//! given, or the one the gateway last opened the store with, which the
//! store remembers — nothing is removed unless every session to go lies in
//! a range a recorded `gatehouse store export` wrote from this store.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use gatehouse_core::event::{MAX_PRUNED, SealKey, sign_prune};
use gatehouse_store::{ExportRecord, Retention, SessionSummary, StoreError};

use crate::admin::parse_time;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The store directory (a stopped gateway's [store] dir). Default: the
    /// one --config names.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Remove the sessions whose last event is before this time: RFC 3339
    /// (2026-11-18T00:00:00Z) or a time ago (90d).
    #[arg(long, value_name = "TIME")]
    before: String,
    /// The seal key that signs the prune record (PKCS#8 PEM). Default: the
    /// [store] seal_key of --config. Without one the record is unsigned,
    /// and `gatehouse-audit verify --pubkey` reports it.
    #[arg(long, value_name = "FILE")]
    seal_key: Option<PathBuf>,
    /// The gateway's config: its [store] dir, seal_key and
    /// [store.retention] (require_export).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `gatehouse store prune`.
pub fn run(args: &PruneArgs) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let before = parse_time(&args.before, now).map_err(|e| anyhow::anyhow!("--before: {e}"))?;
    // The whole config is validated, but prune connects to no target: a
    // target password's variable need not be set.
    let config = args
        .config
        .as_deref()
        .map(|path| {
            Config::load_with_env(path, &|name| {
                std::env::var_os(name).or_else(|| Some("not needed to prune".into()))
            })
        })
        .transpose()?;
    let dir = match (&args.store, &config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => config.store.dir.clone(),
        (None, None) => bail!("give --store DIR (or --config FILE, for its [store] dir)"),
    };
    let key = match (&args.seal_key, &config) {
        (Some(path), _) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("--seal-key: cannot read {}", path.display()))?;
            Some(
                SealKey::from_pkcs8_pem(&pem)
                    .with_context(|| format!("--seal-key {}", path.display()))?,
            )
        }
        (None, Some(config)) => config.store.load_seal_key()?,
        (None, None) => None,
    };
    let retention = open(&dir)?;
    // The config's policy, or the one the gateway last ran this store with.
    let require_export = config.as_ref().is_some_and(|c| c.store.require_export)
        || retention
            .require_export()
            .context("cannot read the store's retention policy")?;
    let candidates = retention
        .candidates(before)
        .context("cannot read the store's sessions")?;
    let cutoff = rfc3339(before);
    if candidates.is_empty() {
        println!("nothing to prune: no session's last event is before {cutoff}");
        return Ok(());
    }
    let refusal = if require_export {
        let exports = retention
            .exports()
            .context("cannot read the store's export records")?;
        first_unexported(&candidates, &exports).map(|first| {
            format!(
                "[store.retention] require_export = true, and session {} (started {}, last \
                 event {}) is in no archive exported from this store ({} export records); run \
                 `gatehouse store export --store {} --until {cutoff} --seal-key KEY --out FILE` \
                 first, then prune again",
                first.id,
                rfc3339(first.started_us),
                rfc3339(first.last_event_us),
                exports.len(),
                dir.display(),
            )
        })
    } else {
        None
    };
    let events: u64 = candidates.iter().map(|s| s.events).sum();
    if args.dry_run {
        for s in &candidates {
            println!(
                "{}  started {}  last event {}  {} events",
                s.id,
                rfc3339(s.started_us),
                rfc3339(s.last_event_us),
                s.events
            );
        }
        println!(
            "would prune {} sessions ({events} events) whose last event is before {cutoff}{}",
            candidates.len(),
            match &refusal {
                Some(why) => format!(", but would refuse: {why}"),
                None => String::new(),
            }
        );
        return Ok(());
    }
    if let Some(why) = refusal {
        bail!("refusing to prune: {why}");
    }
    if key.is_none() {
        eprintln!(
            "gatehouse: no seal key: the prune record is unsigned, and `gatehouse-audit verify \
             --pubkey` reports it and the sessions it removed as deleted"
        );
    }

    let ids: Vec<_> = candidates.iter().map(|s| s.id).collect();
    let first = retention.next_prune_number()?;
    let at = micros(now);
    let records: Vec<(u64, Vec<u8>)> = ids
        .chunks(MAX_PRUNED)
        .zip(first..)
        .map(|(chunk, number)| {
            (
                number,
                sign_prune(key.as_ref(), number, at, before, chunk.to_vec()),
            )
        })
        .collect();
    let last = first + records.len() as u64 - 1;
    let done = retention
        .prune(&records, &ids)
        .with_context(|| format!("pruning the store at {} failed", dir.display()))?;
    println!(
        "pruned {} sessions ({} events, {} batches) whose last event is before {cutoff}; \
         prune record {} ({})",
        done.sessions,
        done.events,
        done.batches,
        if first == last {
            format!("#{first}")
        } else {
            format!("#{first}..#{last}")
        },
        match &key {
            Some(key) => format!("signed with seal key {}", key.kid()),
            None => "unsigned".to_owned(),
        }
    );
    Ok(())
}

/// Opens the store, saying what to do when a gateway holds it.
pub(super) fn open(dir: &std::path::Path) -> anyhow::Result<Retention> {
    Retention::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow::anyhow!(
            "the store at {} is in use by a running gateway: stop the gateway (fjall lets one \
             process open a store) and run this again",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store at {}", dir.display())),
    })
}

/// The first session (oldest first) no export record covers.
fn first_unexported<'s>(
    candidates: &'s [SessionSummary],
    exports: &[ExportRecord],
) -> Option<&'s SessionSummary> {
    candidates
        .iter()
        .find(|s| !exports.iter().any(|e| e.covers(s)))
}

/// µs since the Unix epoch.
pub(super) fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// RFC 3339 with microseconds.
fn rfc3339(us: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(at).to_string()
}
