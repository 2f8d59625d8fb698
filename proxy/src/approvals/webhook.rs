//! `[approvals] webhook_url`: each new request is POSTed there as JSON (a
//! [`PendingApproval`]) from a thread of its own, so that
//! [`ApprovalRegistry::request`](super::ApprovalRegistry::request) never
//! waits on the network. Posts are queued (at most [`QUEUE`]; beyond that
//! they are dropped with a warning), run at most [`CONCURRENT`] at a time,
//! each bounded by [`TIMEOUT`]. A failed post is logged, never retried: the
//! request is still listed by the admin API.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Uri};
use tokio::sync::{Semaphore, mpsc};

use super::PendingApproval;
use crate::admin::client;

/// Posts waiting to be sent.
const QUEUE: usize = 1024;
/// Posts in flight at once.
const CONCURRENT: usize = 8;
/// Bounds one post: connect, send, and the response's head.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// The handle the registry keeps; dropping it ends the thread once the
/// queue is drained.
pub(super) struct Webhook {
    queue: mpsc::Sender<PendingApproval>,
}

impl Webhook {
    /// Starts the posting thread.
    pub(super) fn start(url: Uri) -> anyhow::Result<Webhook> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("gatehouse-webhook".to_owned())
            .spawn(move || rt.block_on(run(url, rx)))?;
        Ok(Webhook { queue })
    }

    /// Queues `request` for posting; never waits.
    pub(super) fn post(&self, request: &PendingApproval) {
        if let Err(e) = self.queue.try_send(request.clone()) {
            tracing::warn!(approval = %request.id, "approval webhook: not posted ({e})");
        }
    }
}

async fn run(url: Uri, mut rx: mpsc::Receiver<PendingApproval>) {
    let url = Arc::new(url);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(request) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let url = url.clone();
        tasks.spawn(async move {
            if let Err(e) = post(&url, &request).await {
                tracing::warn!(approval = %request.id, "approval webhook {url}: {e:#}");
            }
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// POSTs one request; an error unless the answer is 2xx.
pub(super) async fn post(url: &Uri, request: &PendingApproval) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::to_vec(request)?);
    let response = client::send(url, Method::POST, None, Some(body), TIMEOUT).await?;
    let status = response.status();
    // Drain (a little of) the body so the server sees a clean exchange.
    let _ = tokio::time::timeout(TIMEOUT, client::read_body(response.into_body(), 64 << 10)).await;
    anyhow::ensure!(status.is_success(), "answered {status}");
    Ok(())
}
