//! The io_uring engine: one ring per worker thread, under the worker's
//! current-thread tokio runtime.
//!
//! The data path runs on the ring: a multishot accept per worker (each
//! worker has its own `SO_REUSEPORT` listener), multishot receives into a
//! ring of provided buffers, sends of owned bytes, connects with a linked
//! ring timeout, and the startup deadline as a ring timeout ([`sleep`]).
//! The runtime stays for what is not IO on a socket (the store's
//! acknowledgements, approvals, other timers, the occasional cancel
//! request), and sleeps in epoll on the ring's fd. Sessions are the same
//! sans-IO sessions from `core` that the tokio engine drives: the socket
//! type ([`Stream`]) is all that differs, and TLS is rustls over it.
//!
//! This is the only place with `unsafe` code in the workspace; each block
//! says why it is sound.

mod accept;
mod bufring;
mod driver;
mod send;
mod stream;
mod timer;

#[cfg(test)]
mod tests;

pub use accept::Acceptor;
pub use driver::{RingConfig, install};
pub use stream::Stream;
pub use timer::sleep;

use io_uring::{IoUring, opcode};

/// Whether this thread runs a ring.
pub fn on_this_thread() -> bool {
    driver::current().is_some()
}

/// Why the io_uring engine cannot run here, if it cannot: `io_uring_setup`
/// refused (a seccomp profile, `kernel.io_uring_disabled`), an opcode the
/// engine needs missing, or no provided-buffer rings (before Linux 5.19),
/// or no multishot receive (before 6.0).
pub fn unavailable() -> Option<String> {
    let ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            return Some(match (e.raw_os_error(), disabled.as_str()) {
                (Some(libc::EPERM), "1" | "2") => format!(
                    "io_uring_setup was refused ({e}): kernel.io_uring_disabled = {disabled}"
                ),
                (Some(libc::EPERM), _) => format!(
                    "io_uring_setup was refused ({e}): most likely a seccomp profile (Docker's \
                     and containerd's default ones block it)"
                ),
                (Some(libc::ENOSYS), _) => format!("this kernel has no io_uring ({e})"),
                _ => format!("io_uring_setup failed: {e}"),
            });
        }
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Some(format!("probing io_uring opcodes failed: {e}"));
    }
    let needed = [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Some(format!("io_uring lacks opcodes: {}", missing.join(", ")));
    }
    if let Err(e) = bufring::BufRing::register(&ring, 2, 64) {
        return Some(format!(
            "io_uring provided-buffer rings are not available ({e}; Linux 5.19+ has them)"
        ));
    }
    if kernel_version() < (6, 0) {
        return Some("multishot receive needs Linux 6.0 or later".to_owned());
    }
    None
}

/// The running kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Pins the calling thread to CPU `n` (modulo the CPUs it may run on).
pub fn pin_to_cpu(n: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read
    // and write the set we own.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[n % cpus.len()], &mut one);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) != 0 {
            tracing::debug!(
                "pinning a worker to a CPU failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
