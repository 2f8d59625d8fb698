//! `gatehouse store export`: a sealed archive of a time range, written to a
//! file an auditor can take away, from a store directory no gateway holds
//! or from a running gateway through its admin API.

use std::fs::File;
use std::io::{BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use gatehouse_core::event::SealKey;
use gatehouse_core::event::archive::{Decoder, Item, encode_signature, sign};
use gatehouse_store::{ExportRecord, Retention, StoreError};
use http_body_util::BodyExt as _;
use hyper::Method;

use super::approvals::{Api, token};
use crate::admin::parse_time;

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Write a sealed archive: the sessions that started or had events in
    /// [--since, --until), each with all its events, and every grant use
    /// count, revocation and checkpoint; a BLAKE3 hash over it all, signed
    /// with the gateway's seal key. `gatehouse-replay` and
    /// `gatehouse-audit` read the file with --store FILE (--pubkey checks
    /// the signature).
    ///
    /// From a store directory no gateway holds (--store DIR, signed with
    /// --seal-key), or from a running gateway (--gateway URL, signed with
    /// its own seal key): fjall lets one process open a store, so a live
    /// gateway's store is read through the gateway.
    ///
    /// The export (range, time, hash) is recorded in the store — by this
    /// command for --store, by the gateway for --gateway — for `gatehouse
    /// store prune` with [store.retention] require_export.
    Export(ExportArgs),
    /// Remove the sessions whose last event is before --before from a
    /// store no gateway holds, whole (summary and every event), after
    /// storing a prune record signed with the seal key that names each
    /// one: `gatehouse-audit verify` accepts their absence, and still
    /// reports any other missing session. Checkpoints are kept. With
    /// [store.retention] require_export = true (--config), refuses unless
    /// `gatehouse store export --store DIR` has written every such session
    /// to an archive.
    Prune(super::prune::PruneArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("source").required(true).args(["store", "gateway"])
))]
struct ExportArgs {
    /// A store directory no gateway holds (a stopped gateway's [store] dir).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The seal key that signs the archive (PKCS#8 PEM: the gateway's
    /// [store] seal_key); without it the archive is unsigned.
    #[arg(long, value_name = "FILE", requires = "store")]
    seal_key: Option<PathBuf>,
    /// A running gateway's admin API (http://HOST:PORT, [admin] listen).
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// A file holding an admin token (one of [[admin.tokens]]); otherwise
    /// the token is read from GATEHOUSE_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE", requires = "gateway")]
    token_file: Option<PathBuf>,
    /// The range's start: RFC 3339 (2026-11-18T00:00:00Z) or a time ago
    /// (7d, 12h). Default: the beginning.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// The range's end, exclusive (same forms). Default: none (sessions
    /// running now are included as far as they are recorded).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// The archive file to write (replaced if it exists; written beside it
    /// first and renamed when complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `gatehouse store …`.
pub fn run(args: &StoreArgs) -> anyhow::Result<()> {
    match &args.command {
        StoreCommand::Export(export) => run_export(export),
        StoreCommand::Prune(prune) => super::prune::run(prune),
    }
}

fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let time = |flag: &str, value: &Option<String>, default: i64| match value {
        Some(v) => parse_time(v, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}")),
        None => Ok(default),
    };
    let since = time("since", &args.since, 0)?;
    let until = time("until", &args.until, i64::MAX)?;
    if since >= until {
        bail!("--since must be before --until");
    }
    let partial = partial_path(&args.out);
    let result = match (&args.store, &args.gateway) {
        (Some(dir), _) => {
            from_store(dir, args.seal_key.as_deref(), since, until, &partial).map(Some)
        }
        (None, Some(url)) => {
            from_gateway(url, args.token_file.as_deref(), since, until, &partial).map(|()| None)
        }
        (None, None) => bail!("give --store DIR or --gateway URL"),
    };
    let checked = result.and_then(|recorded| Ok((recorded, check(&partial)?)));
    match checked {
        Ok((recorded, summary)) => {
            std::fs::rename(&partial, &args.out).with_context(|| {
                format!(
                    "cannot rename {} to {}",
                    partial.display(),
                    args.out.display()
                )
            })?;
            println!("wrote {}: {summary}", args.out.display());
            // What `gatehouse store prune` checks with [store.retention]
            // require_export: recorded once the archive is complete.
            if let Some((retention, record)) = recorded {
                let n = retention.record_export(&record).context(
                    "the archive is written, but recording the export in the store failed",
                )?;
                println!(
                    "recorded export #{n} in the store ({} sessions)",
                    record.sessions
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `FILE.partial`, beside `FILE`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn from_store(
    dir: &Path,
    seal_key: Option<&Path>,
    since: i64,
    until: i64,
    partial: &Path,
) -> anyhow::Result<(Retention, ExportRecord)> {
    let at_us = super::prune::micros(SystemTime::now());
    let key = match seal_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("--seal-key: cannot read {}", path.display()))?;
            Some(
                SealKey::from_pkcs8_pem(&pem)
                    .with_context(|| format!("--seal-key {}", path.display()))?,
            )
        }
        None => {
            eprintln!(
                "gatehouse: no --seal-key: the archive is unsigned (its hash still catches damage, \
                 but nothing proves which gateway wrote it)"
            );
            None
        }
    };
    let retention = Retention::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow::anyhow!(
            "the store at {} is in use by a running gateway; export through it with \
             --gateway URL (its admin API) instead",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store at {}", dir.display())),
    })?;
    let file =
        File::create(partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let exported = retention
        .reader()
        .export_archive(since, until, &mut out)
        .context("cannot export the store")?;
    let mut block = Vec::new();
    encode_signature(&mut block, key.map(|k| sign(&k, &exported.hash)).as_ref());
    out.write_all(&block)
        .and_then(|()| out.flush())
        .and_then(|()| out.get_ref().sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let record = ExportRecord {
        at_us,
        since_us: since,
        until_us: until,
        hash: exported.hash,
        sessions: exported.sessions,
    };
    Ok((retention, record))
}

fn from_gateway(
    url: &str,
    token_file: Option<&Path>,
    since: i64,
    until: i64,
    partial: &Path,
) -> anyhow::Result<()> {
    let token = token(token_file)?;
    let rfc3339 = |us: i64| {
        let at = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
        humantime::format_rfc3339_micros(at).to_string()
    };
    // record=1: the gateway records the export for `gatehouse store prune`.
    let mut path = format!("/store/archive?record=1&since={}", rfc3339(since));
    if until != i64::MAX {
        path.push_str(&format!("&until={}", rfc3339(until)));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    rt.block_on(async {
        let api = Api {
            base: url,
            token: &token,
        };
        let response = api.call(Method::GET, &path, None).await?;
        let file = File::create(partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut out = BufWriter::new(file);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the archive from the gateway")?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .with_context(|| format!("cannot write {}", partial.display()))?;
            }
        }
        out.flush()
            .and_then(|()| out.get_ref().sync_all())
            .with_context(|| format!("cannot write {}", partial.display()))
    })
}

/// Reads the written archive through once: complete, hash matching.
/// Returns a line about it.
fn check(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 256 << 10];
    let (mut entries, mut hash, mut kid) = (0u64, None, None);
    loop {
        while let Some(item) = decoder
            .decode(&mut buf)
            .context("the archive written is not valid")?
        {
            match item {
                Item::Entry(_) => entries += 1,
                Item::Verified(h) => hash = Some(h),
                Item::Signature(s) => kid = s.map(|s| s.kid),
                Item::Header(_) => {}
            }
        }
        let n = file
            .read(&mut chunk)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    decoder
        .finish(&buf)
        .context("the archive written is not complete")?;
    let hash = hash
        .map(|h| blake3::Hash::from_bytes(h).to_hex().to_string())
        .unwrap_or_default();
    Ok(format!(
        "{} bytes, {entries} entries, BLAKE3 {hash}, {}",
        decoder.offset(),
        match kid {
            Some(kid) => format!("signed with seal key {kid}"),
            None => "unsigned".to_owned(),
        }
    ))
}
