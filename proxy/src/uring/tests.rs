//! The io_uring engine's sockets against real loopback connections.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Acceptor, RingConfig, Stream, install, unavailable};

/// Runs `test` on a current-thread runtime with a ring installed, as a
/// worker does; skips (with a line saying so) where io_uring cannot run.
fn on_ring<F: Future<Output = ()>>(config: RingConfig, test: impl FnOnce() -> F + Send + 'static) {
    if let Some(why) = unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let pump = install(config).expect("a ring");
            tokio::spawn(pump.run());
            tokio::time::timeout(Duration::from_secs(30), test())
                .await
                .expect("the test finished in time");
        });
    })
    .join()
    .unwrap();
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_megabyte_goes_through_and_comes_back() {
    on_ring(RingConfig::default(), || async {
        let (l, addr) = listener();
        let mut acceptor = Acceptor::new(l).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, peer) = acceptor.accept().await.unwrap();
            assert!(peer.ip().is_loopback());
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.shutdown().await.unwrap();
        });
        let mut c = Stream::connect(addr, Duration::from_secs(5)).await.unwrap();
        let data = pattern(1 << 20);
        let (mut r, mut w) = tokio::io::split(c);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        c = r.unsplit(writer.await.unwrap());
        drop(c);
        server.await.unwrap();
        assert!(back == data, "the bytes came back changed");
    });
}

#[test]
fn a_refused_connect_is_an_error() {
    on_ring(RingConfig::default(), || async {
        let (l, addr) = listener();
        drop(l);
        let err = Stream::connect(addr, Duration::from_secs(5))
            .await
            .expect_err("nothing listens there");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn a_connect_that_hangs_times_out_on_the_ring() {
    on_ring(RingConfig::default(), || async {
        // A listener that never accepts, with its backlog full: further
        // SYNs go unanswered and a connect hangs.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut filling = Vec::new();
        let err = loop {
            match Stream::connect(addr, Duration::from_millis(300)).await {
                Ok(s) => filling.push(s),
                Err(e) => break e,
            }
            assert!(filling.len() < 64, "the backlog never filled");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    });
}

#[test]
fn bytes_written_before_a_drop_still_arrive() {
    on_ring(RingConfig::default(), || async {
        let (l, addr) = listener();
        let mut acceptor = Acceptor::new(l).unwrap();
        let data = pattern(4 << 20);
        let sent = data.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = acceptor.accept().await.unwrap();
            // Written (queued), never flushed: dropping the stream hands
            // what is unsent to a lingering task.
            for chunk in sent.chunks(100_000) {
                s.write_all(chunk).await.unwrap();
            }
        });
        let mut c = Stream::connect(addr, Duration::from_secs(5)).await.unwrap();
        server.await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "the bytes arrived changed");
    });
}

#[test]
fn a_reader_that_stops_does_not_starve_the_others() {
    // Four small buffers: one connection that is not read takes what it
    // may hold, and another still gets its bytes once buffers come back.
    let config = RingConfig {
        buffers: 4,
        buffer_size: 4096,
        ..RingConfig::default()
    };
    on_ring(config, || async {
        let (l, addr) = listener();
        let mut acceptor = Acceptor::new(l).unwrap();
        let mut a_out = Stream::connect(addr, Duration::from_secs(5)).await.unwrap();
        let (mut a_in, _) = acceptor.accept().await.unwrap();
        let mut b_out = Stream::connect(addr, Duration::from_secs(5)).await.unwrap();
        let (mut b_in, _) = acceptor.accept().await.unwrap();
        let a_data = pattern(256 * 1024);
        let writer = tokio::spawn(async move {
            a_out.write_all(&a_data).await.unwrap();
            a_out.shutdown().await.unwrap();
            a_out
        });
        // Arm A's receive, then leave it unread for a while.
        let mut first = [0u8; 1];
        a_in.read_exact(&mut first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        b_out.write_all(b"hello").await.unwrap();
        b_out.shutdown().await.unwrap();
        let read_b = async {
            let mut got = Vec::new();
            b_in.read_to_end(&mut got).await.unwrap();
            got
        };
        let read_a = async {
            let mut got = Vec::new();
            a_in.read_to_end(&mut got).await.unwrap();
            got
        };
        let (b, a) = tokio::join!(read_b, read_a);
        assert_eq!(b, b"hello");
        assert_eq!(a.len() + 1, 256 * 1024);
        drop(writer.await.unwrap());
    });
}

#[test]
fn a_ring_sleep_ends_and_a_dropped_one_is_cancelled() {
    on_ring(RingConfig::default(), || async {
        let before = super::driver::slots_in_use();
        let started = std::time::Instant::now();
        super::sleep(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A sleep is an operation on the ring while it runs ...
        let mut long = Box::pin(super::sleep(Duration::from_secs(3600)));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut long)
                .await
                .is_err()
        );
        assert_eq!(super::driver::slots_in_use(), before + 1);
        // ... and dropped long before it fires, it is cancelled: its slot
        // goes once the cancellation completes.
        drop(long);
        let mut waited = 0;
        while super::driver::slots_in_use() > before {
            assert!(waited < 1000, "the dropped sleep was not cancelled");
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
    });
}
