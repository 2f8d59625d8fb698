//! Per-direction output queues.
//!
//! Each direction of a session has its own writer task, so a slow reader on
//! one side never stops the other direction (a pipelining client and a
//! target streaming results cannot deadlock through the gateway). The
//! session task stops *reading* a side while the queue towards the other
//! side holds more than [`HIGH_WATER`] bytes: backpressure, with memory
//! bounded per session.
//!
//! Bytes bound for the target may carry a store acknowledgement; the writer
//! waits for it before writing (audit before forward) without blocking the
//! session task.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use gatehouse_store::Ack;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Bytes queued towards one side above which the other side is not read.
pub const HIGH_WATER: usize = 256 * 1024;

/// How a writer task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Everything queued was written and the stream shut down.
    Done,
    /// Writing failed.
    Io,
    /// The store did not acknowledge what had to be recorded first; nothing
    /// after it was written.
    Store,
}

struct Item {
    bytes: Bytes,
    ack: Option<Ack>,
}

#[derive(Default)]
struct State {
    pending: AtomicUsize,
    failed: AtomicBool,
    store_failed: AtomicBool,
    changed: Notify,
}

/// The sending side of one direction, writing to a `W`.
pub struct OutQueue<W> {
    tx: Option<mpsc::UnboundedSender<Item>>,
    state: Arc<State>,
    /// Set before the channel closes to get the stream back instead of
    /// shutting it down.
    keep: Arc<AtomicBool>,
    task: JoinHandle<(Ended, Option<W>)>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> OutQueue<W> {
    /// Spawns the writer task for `w`.
    pub fn spawn(w: W) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State::default());
        let keep = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write_loop(w, rx, state.clone(), keep.clone()));
        OutQueue {
            tx: Some(tx),
            state,
            keep,
            task,
        }
    }

    /// Queues bytes; with `ack`, they are written only once it succeeds.
    pub fn push(&self, bytes: Bytes, ack: Option<Ack>) {
        self.state.pending.fetch_add(bytes.len(), Ordering::AcqRel);
        if let Some(tx) = &self.tx {
            // A closed channel means the writer ended; `failed` says so.
            let _ = tx.send(Item { bytes, ack });
        }
    }

    /// Whether the queue is below its high-water mark.
    pub fn has_room(&self) -> bool {
        self.state.pending.load(Ordering::Acquire) < HIGH_WATER
    }

    /// Whether the writer stopped early.
    pub fn failed(&self) -> bool {
        self.state.failed.load(Ordering::Acquire)
    }

    /// Whether the writer stopped because the store did not acknowledge
    /// what had to be recorded before the bytes it held.
    pub fn store_failed(&self) -> bool {
        self.state.store_failed.load(Ordering::Acquire)
    }

    /// Resolves when the writer made progress or failed.
    pub async fn changed(&self) {
        self.state.changed.notified().await
    }

    /// Stops taking bytes, waits until everything queued is written (or the
    /// writer fails) and shuts the stream down — for at most `limit`: a peer
    /// that stopped reading must not keep a finished session (and its
    /// socket) alive. What was not written by then is dropped with the
    /// connection.
    pub async fn finish_within(mut self, limit: std::time::Duration) -> Ended {
        self.tx = None;
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(ended) => ended.map_or(Ended::Io, |(e, _)| e),
            Err(_) => {
                self.task.abort();
                Ended::Io
            }
        }
    }

    /// Like [`finish_within`](Self::finish_within), but hands the stream
    /// back open once everything queued is written (for a pool); `None`
    /// if writing failed or took too long.
    pub async fn release_within(mut self, limit: std::time::Duration) -> Option<W> {
        self.keep.store(true, Ordering::Release);
        self.tx = None;
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok((Ended::Done, w))) => w,
            Ok(_) => None,
            Err(_) => {
                self.task.abort();
                None
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Item>,
    state: Arc<State>,
    keep: Arc<AtomicBool>,
) -> (Ended, Option<W>) {
    let ended = loop {
        let Some(item) = rx.recv().await else {
            if keep.load(Ordering::Acquire) {
                return (Ended::Done, Some(w));
            }
            let _ = w.shutdown().await;
            break Ended::Done;
        };
        if let Some(ack) = item.ack
            && ack.await.is_err()
        {
            break Ended::Store;
        }
        if let Err(e) = write_all(&mut w, &item.bytes).await {
            tracing::debug!("write failed: {e}");
            break Ended::Io;
        }
        state.pending.fetch_sub(item.bytes.len(), Ordering::AcqRel);
        state.changed.notify_one();
    };
    if ended == Ended::Store {
        state.store_failed.store(true, Ordering::Release);
    }
    if ended != Ended::Done {
        state.failed.store(true, Ordering::Release);
        state.changed.notify_one();
    }
    (ended, None)
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}
