//! Revoked grants: refused at login, and their open sessions ended.
//!
//! A revocation is recorded before it takes effect, as a session of its own
//! in the store (a `Revoked` event, then a sealed `Closed`), so it holds
//! across restarts and is in the tamper-evident record like everything
//! else. Connections subscribe before their grant is checked, so none can
//! slip between the check and the broadcast.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use gatehouse_core::event::{Body, CloseReason, Closed, Recorder, Revoked, SealKey, SessionId};
use gatehouse_store::{StoreError, Writer};
use tokio::sync::broadcast;

use crate::checkpoints::SessionRegistry;

/// A revocation, as the open sessions hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The grant's `jti`.
    pub jti: String,
    /// Who revoked it.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// The revoked grants of this gateway.
pub struct Revocations {
    revoked: RwLock<HashSet<String>>,
    announce: broadcast::Sender<Arc<Revocation>>,
    writer: Writer,
    seal_key: Option<Arc<SealKey>>,
    /// Where the next checkpoint learns of the revocation's session.
    sessions: Option<Arc<SessionRegistry>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field(
                "revoked",
                &self.revoked.read().map(|r| r.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// The revocations recorded in the store, and the writer that records
    /// new ones (sealed with `seal_key`, noted in `sessions` for the next
    /// checkpoint).
    pub fn new(
        recorded: impl IntoIterator<Item = String>,
        writer: Writer,
        seal_key: Option<Arc<SealKey>>,
        sessions: Option<Arc<SessionRegistry>>,
    ) -> Self {
        let (announce, _) = broadcast::channel(1024);
        Revocations {
            revoked: RwLock::new(recorded.into_iter().collect()),
            announce,
            writer,
            seal_key,
            sessions,
        }
    }

    /// Whether grant `jti` is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(jti)
    }

    /// Revocations from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Revocation>> {
        self.announce.subscribe()
    }

    /// Revokes grant `jti`: recorded durably first, then new sessions are
    /// refused and open ones told. `Ok(false)` if it was already revoked.
    pub async fn revoke(&self, jti: &str, by: &str, reason: &str) -> Result<bool, StoreError> {
        if self.is_revoked(jti) {
            return Ok(false);
        }
        let id = SessionId(*uuid::Uuid::now_v7().as_bytes());
        let mut recorder = Recorder::sealed_with(id, self.seal_key.clone());
        let now = now_us();
        let revoked = recorder.record(
            now,
            Body::Revoked(Revoked {
                jti: jti.to_owned(),
                by: by.to_owned(),
                reason: reason.to_owned(),
            }),
        );
        let closed = recorder.record(
            now,
            Body::Closed(Closed {
                reason: CloseReason::Revoked,
                bytes_to_upstream: 0,
                bytes_to_client: 0,
                statements: 0,
                duration_us: 0,
                seal: None,
            }),
        );
        let events = vec![revoked, closed];
        if let Some(sessions) = &self.sessions {
            sessions.observe(&events);
        }
        self.writer.append(events).await?;
        let fresh = self
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.to_owned());
        if fresh {
            tracing::warn!(jti, by, reason, "grant revoked");
            let _ = self.announce.send(Arc::new(Revocation {
                jti: jti.to_owned(),
                by: by.to_owned(),
                reason: reason.to_owned(),
            }));
        }
        Ok(fresh)
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
