//! Timers on the ring: an `IORING_OP_TIMEOUT` per sleep, so a worker's
//! startup deadlines fire from the same completion queue as its sockets.

use std::time::Duration;

use io_uring::{opcode, types};

use super::driver::{self, Keep};
use super::stream::Op;

/// Sleeps for `duration` on this thread's ring (on tokio's timer where the
/// thread has no ring, or the ring refuses the timeout).
pub async fn sleep(duration: Duration) {
    let Some(id) = driver::current() else {
        return tokio::time::sleep(duration).await;
    };
    let timespec = Box::new(
        types::Timespec::new()
            .sec(duration.as_secs())
            .nsec(duration.subsec_nanos()),
    );
    let started = driver::with(id, |d| {
        let entry = opcode::Timeout::new(&*timespec).build();
        d.start(entry, Keep::Timespec(timespec))
    });
    match started {
        // -ETIME when it fires; an early end (cancelled) ends the sleep too.
        Ok(Ok(op)) => drop(Op::new(op).await),
        _ => tokio::time::sleep(duration).await,
    }
}
