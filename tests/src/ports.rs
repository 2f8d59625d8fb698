//! Free loopback ports, and waiting until something listens on one.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0, read
/// back, released. Another process may still take it before the caller binds
/// it, so callers that can retry (the Postgres cluster does) should. Within
/// this process a port is never handed out twice.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"))
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 in 100 tries");
}

/// Polls until a TCP connection to 127.0.0.1:`port` succeeds; `false` when
/// `timeout` passes first.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || port_accepts(port))
}

/// Whether a TCP connection to 127.0.0.1:`port` succeeds right now.
///
/// A connection to itself does not count: with nothing listening yet, the
/// kernel can pick the very port as the probe's source port, and TCP's
/// simultaneous open then connects the probe to itself.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(s) => s.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

/// Polls `ready` every 20 ms until it returns `true` (then `true`) or
/// `timeout` passes (then `false`).
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
