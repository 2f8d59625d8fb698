//! Logged-in target connections kept for the next session.
//!
//! High-frequency agents open a connection per task; with a pool, a new
//! session costs a grant check and a reset connection instead of a TCP and
//! SCRAM handshake. A connection is pooled only when its session ended
//! cleanly (the client said Terminate, the target was idle outside a
//! transaction block and owed no answer), and only after a reset that
//! leaves nothing of the previous agent behind: `SELECT
//! pg_advisory_unlock_all()` (session advisory locks survive `DISCARD`),
//! then `DISCARD ALL` (temporary tables, prepared statements, `SET`s,
//! `LISTEN`s, cursors, plans, sequences' state). A reset that fails in any
//! way closes the connection instead.
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
use gatehouse_core::pg::{LoggedIn, encode, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a connection may wait in the pool.
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a reset may take.
const RESET_LIMIT: Duration = Duration::from_secs(2);
/// The largest frame a reset reads.
const MAX_FRAME: usize = 1 << 20;

/// Which sessions a connection can serve: the target and the startup
/// parameters it was logged in with.
type Key = (String, Vec<(String, String)>);

/// A logged-in, reset connection.
pub struct Idle {
    /// The connection.
    pub stream: TcpStream,
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
    stream: TcpStream,
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
fn alive(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Resets a connection for the next session: releases advisory locks and
/// discards all session state. On success, `login`'s parameters reflect
/// what the target reported during the reset.
pub async fn reset(stream: &mut TcpStream, login: &mut LoggedIn) -> bool {
    matches!(
        tokio::time::timeout(RESET_LIMIT, reset_inner(stream, login)).await,
        Ok(Ok(true))
    )
}

async fn reset_inner(stream: &mut TcpStream, login: &mut LoggedIn) -> std::io::Result<bool> {
    let mut out = BytesMut::new();
    for sql in ["SELECT pg_advisory_unlock_all()", "DISCARD ALL"] {
        out.extend_from_slice(
            encode::frame(b'Q', |b| {
                b.extend_from_slice(sql.as_bytes());
                b.push(0);
            })
            .bytes(),
        );
    }
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut ready = 0;
    loop {
        let f = loop {
            match frame::decode(&mut buf, MAX_FRAME) {
                Ok(Some(f)) => break f,
                Ok(None) => {
                    if stream.read_buf(&mut buf).await? == 0 {
                        return Ok(false);
                    }
                }
                Err(_) => return Ok(false),
            }
        };
        match f.tag() {
            b'E' => return Ok(false),
            b'S' => update_parameter(login, f),
            b'Z' => {
                ready += 1;
                if ready == 2 {
                    // Idle, and nothing more in flight.
                    return Ok(f.body().first() == Some(&b'I') && buf.is_empty());
                }
            }
            _ => {}
        }
    }
}

/// Replaces (or adds) the ParameterStatus frame with `f`'s name.
fn update_parameter(login: &mut LoggedIn, f: frame::Frame) {
    let name = |fr: &frame::Frame| -> Vec<u8> {
        fr.body()
            .split(|b| *b == 0)
            .next()
            .unwrap_or_default()
            .to_vec()
    };
    let new = name(&f);
    match login.parameters.iter_mut().find(|p| name(p) == new) {
        Some(slot) => *slot = f,
        None => login.parameters.push(f),
    }
}
