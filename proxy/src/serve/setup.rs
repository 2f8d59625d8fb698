//! From a validated [`Config`] to a running [`Server`].

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use gatehouse_core::pg::{SessionConfig, UpstreamLogin};
use gatehouse_store::{Durability, Store, StoreOptions};

use crate::checkpoints::{Checkpointer, SessionRegistry};
use crate::revocations::Revocations;

use super::{ApprovalRegistry, Authorizer, GrantLedger, Server, Target, TargetAddr};
use crate::config::{self, Config};

/// Cap on one frame from a target. Targets are trusted more than clients,
/// but a single value larger than this is refused rather than buffered.
const MAX_UPSTREAM_FRAME: usize = 1 << 30;

/// Opens the store and builds everything a server needs.
pub fn server(config: Config) -> Result<Server> {
    let durability = match config.store.durability {
        config::Durability::Fsync => Durability::Fsync,
        config::Durability::Os => Durability::Os {
            sync_interval: config.store.os_sync_interval,
        },
    };
    let options = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    let store = Store::open(&config.store.dir, options)
        .with_context(|| format!("opening the store at {}", config.store.dir.display()))?;
    // `gatehouse store prune` holds to this even without the config.
    store
        .set_require_export(config.store.require_export)
        .context("recording the store's retention policy")?;
    let recorded = store
        .reader()
        .and_then(|r| r.grant_uses())
        .context("loading grant use counts from the store")?;
    let tls = match &config.tls {
        Some(files) => {
            let (cert, key) = files.read()?;
            Some(super::tls::acceptor(&cert, &key)?)
        }
        None => None,
    };
    let targets = targets(&config)?;
    let authorizer = Authorizer::new(
        crate::jwks::LiveVerifier::start(&config.grants)?,
        targets,
        GrantLedger::from_recorded(recorded),
        super::limits::GrantLimits::new(config.limits),
    );
    let seal_key = config.store.load_seal_key()?.map(Arc::new);
    // With a seal key, checkpoints: the sessions they cover are noted as
    // their events are handed to the store.
    let checkpoints = match &seal_key {
        Some(key) => {
            let sessions = Arc::new(SessionRegistry::default());
            let reader = store
                .reader()
                .context("reading the last checkpoint from the store")?;
            let checkpointer = Checkpointer::resume(&reader, key.clone(), sessions.clone())
                .context("reading the last checkpoint from the store")?;
            tracing::debug!(next = checkpointer.next_number(), "checkpoints continue");
            Some((checkpointer, config.store.checkpoint_interval))
        }
        None => None,
    };
    let sessions = checkpoints.as_ref().map(|(c, _)| c.sessions().clone());
    let revoked = store
        .reader()
        .and_then(|r| r.revocations())
        .context("loading revoked grants from the store")?;
    let revocations = Arc::new(Revocations::new(
        revoked.into_iter().map(|(jti, _)| jti),
        store.writer(),
        seal_key.clone(),
        sessions.clone(),
    ));
    // Without a key, validation's warning has been logged; this says what
    // it costs once more, at startup.
    match &seal_key {
        Some(key) => tracing::info!(
            kid = key.kid(),
            checkpoint_interval = ?config.store.checkpoint_interval,
            "sealing sessions and writing signed checkpoints"
        ),
        None => tracing::warn!(
            "no [store] seal_key: sessions are not sealed and no checkpoints are written, so a \
             session deleted from the store will not be detectable"
        ),
    }
    let session = SessionConfig {
        tls_available: tls.is_some(),
        plaintext_allowed: config.listener.allow_plaintext,
        max_client_frame: config.listener.max_frame_bytes,
        max_upstream_frame: MAX_UPSTREAM_FRAME,
        backend_key: (0, 0),
        seal_key,
    };
    Ok(Server {
        address: config.listener.address,
        workers: config.gateway.workers.get(),
        store,
        session,
        tls,
        authorizer,
        approvals: Arc::new(ApprovalRegistry::new(config.approvals.clone())),
        admin: config.admin.clone(),
        revocations,
        config_path: config.source.clone(),
        max_connections: config.listener.max_connections,
        startup_timeout: config.listener.startup_timeout,
        message_timeout: config.listener.message_timeout,
        io: config.gateway.io,
        checkpoints,
        sessions,
        http: match &config.http {
            Some(settings) => {
                let tls = match &config.tls {
                    Some(files) => {
                        let (cert, key) = files.read()?;
                        Some(crate::http::acceptor(&cert, &key)?)
                    }
                    None => None,
                };
                let shared = crate::http::HttpShared {
                    settings: settings.clone(),
                    tls,
                };
                Some((settings.address, Arc::new(shared)))
            }
            None => None,
        },
    })
}

/// The configured targets, their masking rules compiled.
pub fn targets(config: &Config) -> Result<BTreeMap<String, Target>> {
    let mut targets = BTreeMap::new();
    for t in config.targets.values() {
        let masker = match &t.masking {
            Some(m) => Some(Arc::new(m.compile().with_context(|| {
                format!("compiling the masking rules of target {}", t.name)
            })?)),
            None => None,
        };
        let target = Target {
            addr: TargetAddr {
                host: t.host.clone(),
                port: t.port,
                connect_timeout: t.connect_timeout,
                pool_size: t.pool_size,
            },
            login: UpstreamLogin {
                database: t.database.clone(),
                user: t.user.clone(),
                password: t.password.as_ref().map(|s| s.expose().to_owned()),
            },
            masker,
            masking: t.masking.clone(),
            http: match &t.http {
                Some(h) => Some(Arc::new(
                    crate::http::HttpUpstream::new(h.clone(), t.masking.as_ref())
                        .with_context(|| format!("setting up the upstream of target {}", t.name))?,
                )),
                None => None,
            },
        };
        targets.insert(t.name.clone(), target);
    }
    Ok(targets)
}

/// Re-reads the config at `path` and hands its keys and targets to
/// `authorizer`, with the per-grant limits. What a reload does not change
/// (listener, TLS, store, admin API, approvals) needs a restart; a config
/// with mistakes changes nothing.
pub fn reload(path: &std::path::Path, authorizer: &Authorizer) -> Result<()> {
    let config = Config::load(path)?;
    let targets = targets(&config)?;
    let verifier = crate::jwks::LiveVerifier::start(&config.grants)?;
    authorizer.reload(verifier, targets);
    authorizer.limits.set(config.limits);
    Ok(())
}
