//! What the two binaries share: where the recorded sessions come from,
//! opening them for reading, and resolving a session id typed by a person,
//! with errors that say what to do.
//!
//! fjall lets one process open a store, so the tools read one of three
//! sources, and every command works the same on each ([`open_source`]):
//!
//! - `--store DIR`: a store directory no gateway holds (a stopped
//!   gateway's);
//! - `--store FILE`: a sealed archive (`gatehouse store export`), told
//!   from a directory by its magic bytes;
//! - `--gateway URL`: a running gateway's admin API, from which an archive
//!   of `--since`/`--until` (default: everything) is fetched
//!   (`GET /store/archive`, with an admin token).
//!
//! An archive is checked as it is read (every length, then the BLAKE3
//! hash over all of it) and imported into a temporary store directory,
//! deleted when the tool exits; a damaged or altered one is refused with
//! what is wrong and where. Its signature is checked with `--pubkey`, the
//! gateway's seal public key; without it the tools say it was not.

use std::fs::File;
use std::io::{BufReader, Read as _};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use gatehouse_core::event::archive::{self, MAGIC};
use gatehouse_core::event::{SealPublicKey, SessionId};
use gatehouse_store::archive::{Imported, import_archive};
use gatehouse_store::{Reader, StoreError};

/// How long connecting to a gateway and waiting for its answer's head may
/// take (the archive itself streams for as long as it takes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the recorded sessions are read from (the same for every command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceArgs {
    /// A store directory no gateway holds (a stopped gateway's), or a
    /// sealed archive file (`gatehouse store export`).
    #[arg(
        long,
        env = "GATEHOUSE_STORE",
        value_name = "PATH",
        required_unless_present = "gateway"
    )]
    pub store: Option<PathBuf>,
    /// A running gateway's admin API (http://HOST:PORT, its `[admin]
    /// listen`): read an archive fetched from it (--since/--until bound it).
    /// Takes precedence over --store and GATEHOUSE_STORE.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// With --gateway: a file holding an admin token (one of
    /// `[[admin.tokens]]`); otherwise the token is read from
    /// GATEHOUSE_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE", requires = "gateway")]
    pub token_file: Option<PathBuf>,
    /// The gateway's seal public key (SPKI PEM, `gatehouse keygen --name
    /// seal` writes seal.pub): checks an archive's signature (and, in
    /// `gatehouse-audit verify`, every session's seal).
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
}

/// With `--gateway`, the time range of the archive fetched.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct RangeArgs {
    /// With --gateway: fetch the sessions that started or had events at or
    /// after this: RFC 3339 (2026-11-18T00:00:00Z) or a time ago (7d).
    /// Default: the beginning.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "gateway")]
    pub since: Option<i64>,
    /// With --gateway: … and that started before this (same forms).
    /// Default: no end.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "gateway")]
    pub until: Option<i64>,
}

/// RFC 3339, or a duration ago; microseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).map_err(|_| {
                format!("{s:?} is neither a time (2026-11-18T00:00:00Z) nor a duration ago (7d)")
            })?;
            SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| format!("{s:?} reaches before 1970"))?
        }
    };
    let us = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_micros();
    i64::try_from(us).map_err(|_| format!("{s:?} is too far in the future"))
}

/// Reads the seal public key `--pubkey` names.
pub fn load_pubkey(path: &Path) -> Result<SealPublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    SealPublicKey::from_spki_pem(&pem).with_context(|| format!("--pubkey {}", path.display()))
}

/// An open source of recorded sessions: a [`Reader`] (it derefs to one),
/// and, for an archive, the temporary directory it was imported into,
/// deleted when this is dropped.
pub struct OpenStore {
    reader: Reader,
    /// For an archive: what was checked.
    pub archive: Option<ArchiveCheck>,
    // Dropped after `reader`, which holds the database open.
    _imported: Option<tempfile::TempDir>,
}

impl Deref for OpenStore {
    type Target = Reader;

    fn deref(&self) -> &Reader {
        &self.reader
    }
}

/// What was checked of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCheck {
    /// The file or URL it came from.
    pub origin: String,
    /// Its BLAKE3 hash (hex), which matched its content.
    pub hash: String,
    /// The key id it is signed with, if signed.
    pub kid: Option<String>,
    /// Whether the signature was verified (with `--pubkey`).
    pub signature_checked: bool,
}

impl std::fmt::Display for ArchiveCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "archive {}: content matches its hash", self.origin)?;
        match (&self.kid, self.signature_checked) {
            (Some(kid), true) => write!(f, ", signature verified with key {kid}"),
            (Some(kid), false) => write!(
                f,
                "; its signature (key {kid}) was not checked (give --pubkey)"
            ),
            (None, _) => write!(f, "; it is not signed"),
        }
    }
}

/// Opens `path` for reading: a store directory or an archive file (its
/// signature unchecked). [`open_source`] with only `--store PATH`.
pub fn open_store(path: &Path) -> Result<OpenStore> {
    open_source(
        &SourceArgs {
            store: Some(path.to_path_buf()),
            ..SourceArgs::default()
        },
        RangeArgs::default(),
    )
}

/// Opens what `source` names for reading: a store directory, an archive
/// file, or a running gateway (an archive of `range` fetched from it).
/// For an archive, a line on stderr says what of it was checked. Every
/// command of both binaries opens its sessions here.
///
/// fjall allows one process per store, so a directory cannot be opened
/// while a gateway runs on it; the message says so and what to do instead.
pub fn open_source(source: &SourceArgs, range: RangeArgs) -> Result<OpenStore> {
    let pubkey = source.pubkey.as_deref().map(load_pubkey).transpose()?;
    let opened = match (&source.gateway, &source.store) {
        (Some(url), _) => {
            let token = admin_token(source.token_file.as_deref())?;
            let (origin, body) = fetch(url, &token, range)?;
            open_archive(origin, body, pubkey.as_ref())?
        }
        (None, Some(path)) if path.is_file() => {
            let mut file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut magic = [0u8; MAGIC.len()];
            let n = file.read(&mut magic).unwrap_or(0);
            if magic.get(..n) != Some(MAGIC.as_slice()) {
                bail!(
                    "{} is neither a store directory nor a Gatehouse archive \
                     (`gatehouse store export` writes those)",
                    path.display()
                );
            }
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            open_archive(
                path.display().to_string(),
                Box::new(BufReader::new(file)),
                pubkey.as_ref(),
            )?
        }
        (None, Some(dir)) => OpenStore {
            reader: open_dir(dir)?,
            archive: None,
            _imported: None,
        },
        (None, None) => {
            bail!("give --store PATH (a store directory or an archive) or --gateway URL")
        }
    };
    if let Some(check) = &opened.archive {
        eprintln!("{check}");
    }
    Ok(opened)
}

/// Opens the store directory `dir`.
fn open_dir(dir: &Path) -> Result<Reader> {
    if !dir.exists() {
        bail!("store directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Reader::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow!(
            "the store at {} is in use by a running gateway; stop it, read the gateway with \
             --gateway URL, or point at an archive (`gatehouse store export`)",
            dir.display()
        ),
        StoreError::NotFound { .. } => anyhow!(
            "{} holds no Gatehouse store (expected the directory the gateway's [store] dir names)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store at {}", dir.display())),
    })
}

/// Imports the archive `body` into a temporary directory and checks its
/// signature if a key is given.
fn open_archive(
    origin: String,
    body: Box<dyn std::io::Read + '_>,
    pubkey: Option<&SealPublicKey>,
) -> Result<OpenStore> {
    let dir = tempfile::Builder::new()
        .prefix("gatehouse-archive-")
        .tempdir()
        .context("cannot make a temporary directory to read the archive into")?;
    let Imported {
        reader,
        hash,
        signature,
        ..
    } = import_archive(body, &dir.path().join("store"))
        .with_context(|| format!("cannot read the archive {origin}"))?;
    if let Some(key) = pubkey {
        archive::verify(key, &hash, signature.as_ref())
            .with_context(|| format!("the archive {origin} is refused"))?;
    }
    Ok(OpenStore {
        reader,
        archive: Some(ArchiveCheck {
            origin,
            hash: blake3_hex(&hash),
            kid: signature.map(|s| s.kid),
            signature_checked: pubkey.is_some(),
        }),
        _imported: Some(dir),
    })
}

fn blake3_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The admin token: from `--token-file`, or `GATEHOUSE_ADMIN_TOKEN`.
fn admin_token(file: Option<&Path>) -> Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--token-file: cannot read {}", path.display()))?,
        None => std::env::var("GATEHOUSE_ADMIN_TOKEN").map_err(|_| {
            anyhow!(
                "no admin token: give --token-file FILE, or set GATEHOUSE_ADMIN_TOKEN, with a \
                 token from the gateway's [[admin.tokens]]"
            )
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

/// Asks the gateway at `base` for an archive of `range`; returns where it
/// came from and the body, streaming.
fn fetch(
    base: &str,
    token: &str,
    range: RangeArgs,
) -> Result<(String, Box<dyn std::io::Read + 'static>)> {
    let rfc3339 = |us: i64| {
        let at = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
        humantime::format_rfc3339_micros(at).to_string()
    };
    let mut url = format!(
        "{}/store/archive?since={}",
        base.trim_end_matches('/'),
        rfc3339(range.since.unwrap_or(0))
    );
    if let Some(until) = range.until {
        url.push_str(&format!("&until={}", rfc3339(until)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(CONNECT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header(
            "User-Agent",
            concat!("gatehouse-replay/", env!("CARGO_PKG_VERSION")),
        )
        .call()
        .map_err(|e| anyhow!("cannot reach the gateway's admin API at {base}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        match status.as_u16() {
            401 => bail!(
                "the gateway at {base} refused the token ({message}); use one of its [[admin.tokens]]"
            ),
            404 => bail!(
                "the gateway at {base} has no /store/archive ({message}); is it a Gatehouse \
                 admin API of this version?"
            ),
            _ => bail!("the gateway at {base} answered {status}: {message}"),
        }
    }
    let body = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    Ok((url, Box::new(body)))
}

/// The one session whose id starts with `prefix` (hex digits, hyphens
/// ignored, any case).
pub fn resolve_session(reader: &Reader, prefix: &str) -> Result<SessionId> {
    let matches = reader
        .find_session_prefix(prefix)
        .with_context(|| format!("cannot look up session {prefix:?}"))?;
    match matches.as_slice() {
        [] => bail!("no session id starts with {prefix:?}"),
        [one] => Ok(*one),
        many => {
            const SHOWN: usize = 5;
            let mut list: Vec<String> = many.iter().take(SHOWN).map(|id| id.to_string()).collect();
            if many.len() > SHOWN {
                list.push(format!("… {} more", many.len() - SHOWN));
            }
            bail!(
                "session prefix {prefix:?} is ambiguous: it matches {} sessions ({}); type more of the id",
                many.len(),
                list.join(", ")
            )
        }
    }
}
