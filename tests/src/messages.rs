//! A tokio-postgres connection whose asynchronous messages (notices and
//! LISTEN/NOTIFY notifications) the test receives, instead of the default
//! connection task that logs and drops them.

use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::tls::TlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Socket};

use crate::gateway::Gateway;

/// What a [`Messages`] task saw: an asynchronous message, or the end of the
/// connection (`Err` when it ended with an error).
pub type Received = Result<AsyncMessage, tokio_postgres::Error>;

/// The asynchronous messages of one connection, in arrival order.
pub struct Messages {
    rx: mpsc::UnboundedReceiver<Received>,
    task: JoinHandle<()>,
}

impl Messages {
    /// Drives `connection` on a spawned task, passing on every message.
    pub fn spawn<S, T>(mut connection: Connection<S, T>) -> Messages
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: TlsStream + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Messages { rx, task }
    }

    /// The next message, waiting at most `timeout`; `None` when nothing
    /// arrived in time or the connection ended cleanly.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every message that has already arrived, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }
}

impl Drop for Messages {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects through `gw` with `token` (TLS verified against the test CA
/// when the gateway has TLS) and returns the client with its messages.
pub async fn connect_gateway(gw: &Gateway, token: &str) -> (Client, Messages) {
    let config = gw.pg_config(token);
    match gw.certs() {
        Some(certs) => connect(&config, certs.make_tls_connect()).await,
        None => connect(&config, tokio_postgres::NoTls).await,
    }
}

/// Connects with `config` and `tls`; panics if it cannot.
pub async fn connect<T>(config: &Config, tls: T) -> (Client, Messages)
where
    T: tokio_postgres::tls::MakeTlsConnect<Socket>,
    T::Stream: Unpin + Send + 'static,
{
    let (client, connection) = config
        .connect(tls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    (client, Messages::spawn(connection))
}
