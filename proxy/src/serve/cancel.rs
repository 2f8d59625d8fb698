//! Query cancellation across connections.
//!
//! Each client is handed a cancel key minted by the gateway, never the
//! target's. A CancelRequest arrives on a new connection (often on another
//! worker), so the map from gateway keys to target keys is shared.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use gatehouse_core::pg::encode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where and how to cancel a session's running query.
#[derive(Debug, Clone, Copy)]
pub struct CancelTarget {
    /// The target's address.
    pub addr: SocketAddr,
    /// The target's backend pid.
    pub pid: i32,
    /// The target's secret.
    pub secret: i32,
}

/// Gateway-issued keys of live sessions.
#[derive(Debug, Default)]
pub struct CancelMap {
    keys: Mutex<HashMap<(i32, i32), Option<CancelTarget>>>,
}

impl CancelMap {
    /// Mints a fresh key, unique among live sessions.
    pub fn issue(&self) -> (i32, i32) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let key = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
            if let std::collections::hash_map::Entry::Vacant(v) = keys.entry(key) {
                v.insert(None);
                return key;
            }
        }
    }

    /// Binds a key to the target session it cancels.
    pub fn register(&self, key: (i32, i32), target: CancelTarget) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(key, Some(target));
    }

    /// Forgets a key when its session ends.
    pub fn release(&self, key: (i32, i32)) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(&key);
    }

    /// Sends a CancelRequest to the target of `key`, if it names a live
    /// session. Unknown keys are ignored, as PostgreSQL does.
    pub async fn cancel(&self, key: (i32, i32)) {
        let target = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.get(&key).copied().flatten()
        };
        let Some(t) = target else {
            tracing::debug!("cancel request with an unknown key");
            return;
        };
        let send = async {
            let mut s = TcpStream::connect(t.addr).await?;
            s.write_all(&encode::cancel_request(t.pid, t.secret))
                .await?;
            s.shutdown().await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), send).await {
            Ok(Ok(())) => tracing::info!(upstream = %t.addr, "forwarded a cancel request"),
            Ok(Err(e)) => tracing::warn!(upstream = %t.addr, "cancel request failed: {e}"),
            Err(_) => tracing::warn!(upstream = %t.addr, "cancel request timed out"),
        }
    }
}
