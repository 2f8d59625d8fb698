//! Malformed input from a client: garbage instead of a startup packet,
//! impossible lengths, frames over the listener's `max_frame_bytes`,
//! truncated messages. The client gets a FATAL ErrorResponse (SQLSTATE
//! 08P01, or 0A000 for an unsupported protocol version) and is
//! disconnected; the gateway keeps serving everyone else.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::net::TcpStream;
use std::time::Duration;

use gatehouse_core::pg::encode;
use gatehouse_tests::wire::{self, RawConn};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

struct Setup {
    gw: Gateway,
    _pg: PgCluster,
    token: String,
}

fn start() -> Setup {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            allow_plaintext: true,
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    Setup { gw, _pg: pg, token }
}

impl Setup {
    /// A raw plaintext connection, logged in.
    fn logged_in(&self) -> RawConn<TcpStream> {
        let mut c = RawConn::plain(self.gw.port());
        c.login_ok("agent-7", "orders", &self.token);
        c
    }

    /// Sends `bytes` on `c` and asserts the answer is one FATAL error with
    /// `code`, then the end of the connection. Returns the message.
    fn expect_fatal(&self, c: &mut RawConn<TcpStream>, bytes: &[u8], code: &str) -> String {
        // The gateway may close before reading all of a large input.
        let _ = c.try_send(bytes);
        let frames = c.until_ready();
        assert_eq!(wire::tags(&frames), "E", "{}", wire::describe(&frames));
        let (got, message) = wire::error(&frames).unwrap();
        assert_eq!(got, code, "{message}");
        assert!(c.closes(), "the connection stays open after: {message}");
        message
    }

    /// The gateway still runs and serves a normal client.
    fn assert_serving(&mut self) {
        assert!(self.gw.is_running(), "the gateway exited");
        let out = Psql::new(self.gw.conn_string(&self.token))
            .command("select 'still serving'")
            .run();
        assert_eq!(out.assert_success(), "still serving");
        let mut c = self.logged_in();
        let rows = wire::rows(&c.simple_query("select 2"));
        assert_eq!(rows, [[Some("2".to_owned())]]);
    }
}

/// A tagged frame header announcing `len` (which counts itself).
fn header(tag: u8, len: i32) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend_from_slice(&len.to_be_bytes());
    b
}

/// A StartupMessage asking for protocol 2.0.
fn protocol_2_startup() -> Vec<u8> {
    let mut body = 0x0002_0000i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0agent-7\0database\0orders\0\0");
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

#[test]
fn garbage_before_startup() {
    let mut s = start();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: gatehouse\r\n\r\n".to_vec(),
            "08P01",
        ),
        ("a length below 8", b"\0\0\0\x04".to_vec(), "08P01"),
        (
            "a negative length",
            b"\xff\xff\xff\xf0\0\x03\0\0".to_vec(),
            "08P01",
        ),
        (
            "a length over the startup cap",
            b"\0\x01\0\0\0\x03\0\0user\0".to_vec(),
            "08P01",
        ),
        (
            "an unterminated parameter",
            b"\0\0\0\x11\0\x03\0\0user\0agent".to_vec(),
            "08P01",
        ),
        ("protocol 2.0", protocol_2_startup(), "0A000"),
    ];
    for (what, bytes, code) in cases {
        let mut c = RawConn::plain(s.gw.port());
        let message = s.expect_fatal(&mut c, &bytes, code);
        eprintln!("{what}: {message}");
    }

    // A client that sends half a startup packet and hangs up.
    let mut c = RawConn::plain(s.gw.port());
    c.send(b"\0\0\0\x40\0\x03\0\0us");
    drop(c);

    // In place of the password: some other message.
    let mut c = RawConn::plain(s.gw.port());
    c.send(&encode::startup_message([
        ("user", "agent-7"),
        ("database", "orders"),
    ]));
    assert_eq!(c.frame().tag(), b'R');
    let message = s.expect_fatal(&mut c, wire::query("select 1").bytes(), "08P01");
    assert!(message.contains("password"), "{message}");

    s.assert_serving();
}

#[test]
fn malformed_frames_after_login() {
    let mut s = start();

    // Over the default 64 MiB cap: refused from the header alone, before
    // anything is buffered for it.
    let mut c = s.logged_in();
    let message = s.expect_fatal(&mut c, &header(b'Q', 0x7fff_0000), "08P01");
    assert!(message.contains("exceeds the limit"), "{message}");

    let mut c = s.logged_in();
    s.expect_fatal(&mut c, &header(b'Q', 2), "08P01");
    let mut c = s.logged_in();
    s.expect_fatal(&mut c, &header(b'Q', -5), "08P01");

    // A Bind cut short, after a good Parse in the same packet.
    let mut c = s.logged_in();
    let mut bytes = wire::parse("select 1").bytes().to_vec();
    bytes.extend_from_slice(&header(b'B', 4 + 3));
    bytes.extend_from_slice(b"\0\0\x01");
    s.expect_fatal(&mut c, &bytes, "08P01");

    // A Query whose text has no terminator.
    let mut c = s.logged_in();
    let mut bytes = header(b'Q', 4 + 8);
    bytes.extend_from_slice(b"select 1");
    s.expect_fatal(&mut c, &bytes, "08P01");

    s.assert_serving();
}

#[test]
fn frames_over_a_configured_max_frame_bytes() {
    let mut s = start();
    // `[listener] max_frame_bytes` lowered to 1 MiB: rewrite the config
    // and restart on the same port.
    let path = s.gw.config_path();
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config.replacen(
        "allow_plaintext = true\n",
        "allow_plaintext = true\nmax_frame_bytes = \"1MiB\"\n",
        1,
    );
    assert!(config.contains("max_frame_bytes"));
    std::fs::write(&path, config).unwrap();
    s.gw.restart();

    // Just under the cap: fine.
    let mut c = s.logged_in();
    let literal = "y".repeat(1_000_000);
    let rows = wire::rows(&c.simple_query(&format!("select length('{literal}')")));
    assert_eq!(rows, [[Some("1000000".to_owned())]]);

    // Over it: refused.
    let big = format!("select length('{}')", "z".repeat(1 << 20));
    let message = s.expect_fatal(&mut c, &wire::query(&big).bytes()[..4096], "08P01");
    assert!(message.contains("1048576"), "{message}");

    // Over it, through a real driver: the same error, and the gateway goes
    // on.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, _conn) = s.gw.connect(&s.token).await;
        let err = client
            .query_one("select length($1::text)", &[&"w".repeat(2 << 20)])
            .await
            .expect_err("a 2 MiB Bind passed a 1 MiB cap");
        let db = err.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(db.as_deref(), Some("08P01"), "{err}");
    });
    s.assert_serving();
}

/// A small deterministic generator (xorshift), so that failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_do_not_take_the_gateway_down() {
    let mut s = start();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..60 {
        let len = 1 + (rng.next() % 200) as usize;
        let mut noise = rng.bytes(len);
        let logged_in = round % 2 == 1;
        let mut c = if logged_in {
            s.logged_in()
        } else {
            RawConn::plain(s.gw.port())
        };
        if !logged_in && noise.first() == Some(&0x16) {
            // That is a TLS handshake, which is not what this is about.
            noise[0] = 0x17;
        }
        // Noise can announce a frame longer than itself: the gateway then
        // waits for the rest, and so would the reader, for long.
        c.set_read_timeout(Duration::from_millis(300));
        let _ = c.try_send(&noise);
        // Whatever the answer (an error, rows of a lucky query, silence
        // while the gateway waits for the rest of a frame), the connection
        // must not take the gateway with it.
        let _ = c.try_frame();
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(100));
    s.assert_serving();
}
