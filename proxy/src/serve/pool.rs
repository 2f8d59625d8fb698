//! Logged-in target connections kept for the next session.
//!
//! High-frequency agents open a connection per task; with a pool, a new
//! session costs a grant check and a reset connection instead of a TCP and
//! SCRAM handshake. A connection is pooled only when its session ended
//! cleanly (the client said Terminate, the target was idle outside a
//! transaction block and owed no answer), and only after a reset that
//! leaves nothing of the previous agent behind (`pg_advisory_unlock_all()`
//! and `DISCARD ALL`; the protocol side is [`gatehouse_core::pg::reset`]).
//! A reset that fails in any way closes the connection instead.
//!
//! One pool per worker thread: each worker runs its own runtime, and a
//! socket stays with the runtime that registered it. Connections serve
//! only sessions of the same target that asked for the same startup
//! parameters (`application_name`, `client_encoding`, …), which were sent
//! to the target at login. Idle connections are dropped after
//! [`IDLE_LIMIT`], and checked for a close by the target before reuse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use gatehouse_core::pg::LoggedIn;
use gatehouse_core::pg::reset::{self, Reset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Socket;

/// How long a connection may wait in the pool.
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a reset may take.
const RESET_LIMIT: Duration = Duration::from_secs(2);

/// Which sessions a connection can serve: the target and the startup
/// parameters it was logged in with.
type Key = (String, Vec<(String, String)>);

/// A logged-in, reset connection.
pub struct Idle {
    /// The connection.
    pub stream: Socket,
    /// What the target said at login (parameters updated by the reset).
    pub login: LoggedIn,
    /// The target's address, for cancel requests.
    pub addr: SocketAddr,
    since: Instant,
}

thread_local! {
    static POOL: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A pooled connection for `target` and `params`, if one is alive.
pub fn take(target: &str, params: &[(String, String)]) -> Option<Idle> {
    let key: Key = (target.to_owned(), params.to_vec());
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&key)?;
        while let Some(c) = idle.pop() {
            if c.since.elapsed() < IDLE_LIMIT && alive(&c.stream) {
                return Some(c);
            }
        }
        None
    })
}

/// Keeps `conn` for the next session of `target` with `params`, unless
/// `size` are already kept.
pub fn put(
    target: &str,
    params: &[(String, String)],
    stream: Socket,
    login: LoggedIn,
    addr: SocketAddr,
    size: usize,
) {
    let key: Key = (target.to_owned(), params.to_vec());
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(key).or_default();
        idle.retain(|c| c.since.elapsed() < IDLE_LIMIT);
        if idle.len() < size {
            idle.push(Idle {
                stream,
                login,
                addr,
                since: Instant::now(),
            });
        }
    });
}

/// Whether the target has not closed the connection (nor sent anything
/// unasked, which would make it unusable).
fn alive(stream: &Socket) -> bool {
    stream.is_quiet()
}

/// Resets a connection for the next session (see
/// [`gatehouse_core::pg::reset`]); the greeting the next client gets, or
/// `None` if the connection must be closed.
pub async fn reset(stream: &mut Socket, login: LoggedIn) -> Option<LoggedIn> {
    let run = async {
        stream.write_all(&reset::request()).await?;
        let mut reading = Reset::new(login);
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if let Some(done) = reading.feed(&mut buf) {
                return std::io::Result::Ok(done.ok());
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(None);
            }
        }
    };
    tokio::time::timeout(RESET_LIMIT, run).await.ok()?.ok()?
}
