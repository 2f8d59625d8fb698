//! A provided-buffer ring: receive buffers the kernel picks from when a
//! recv completes, so an idle connection pins no buffer of its own.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The buffer group id of the worker's receive buffers.
pub const GROUP: u16 = 0;

/// `entries` buffers of `size` bytes each, registered with one ring.
pub struct BufRing {
    /// The ring of entries shared with the kernel (page-aligned).
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    /// The buffers themselves, `count * size` bytes.
    memory: *mut u8,
    memory_layout: Layout,
    count: u16,
    size: usize,
    /// Our copy of the tail; published to the kernel after each push.
    tail: u16,
    /// Buffers completions handed to us and not recycled yet.
    out: usize,
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes and
    /// registers them with `ring` as group [`GROUP`].
    pub fn register(ring: &IoUring, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && size > 0);
        let entries_layout =
            Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        let memory_layout =
            Layout::from_size_align(usize::from(count) * size, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size.
        let (entries, memory) = unsafe {
            (
                alloc_zeroed(entries_layout).cast::<BufRingEntry>(),
                alloc_zeroed(memory_layout),
            )
        };
        if entries.is_null() || memory.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut bufs = BufRing {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
            out: 0,
        };
        // SAFETY: `entries` is page-aligned, zeroed and `count` entries
        // long; it lives until `Drop`, which the driver runs only after the
        // group is unregistered (or leaks it when it cannot be sure).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, GROUP, 0)?;
        }
        for bid in 0..count {
            bufs.push(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// The first `len` bytes of buffer `bid`, which the kernel filled.
    pub fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.count);
        let len = len.min(self.size);
        // SAFETY: the range lies inside `memory`; the kernel does not write
        // buffer `bid` until it is handed back with `recycle`.
        unsafe { std::slice::from_raw_parts(self.memory.add(bid * self.size), len) }
    }

    /// Counts buffer `bid` as taken by a completion.
    pub fn taken(&mut self, _bid: u16) {
        self.out += 1;
    }

    /// Hands buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.out = self.out.saturating_sub(1);
        self.push(bid % self.count);
        self.publish();
    }

    /// Whether the kernel has a buffer to fill.
    pub fn has_free(&self) -> bool {
        self.out < usize::from(self.count)
    }

    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`; the kernel reads entries only up to the
        // published tail, and this one is past it until `publish`.
        let entry = unsafe { &mut *self.entries.add(index) };
        // SAFETY: `bid < count`, so the address lies inside `memory`.
        entry.set_addr(unsafe { self.memory.add(usize::from(bid) * self.size) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the first entry, which lives as long as
        // `entries`; the kernel reads it, so it is written atomically.
        let tail = unsafe { &*BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with these layouts; the driver
        // drops a `BufRing` only once the kernel can no longer use it.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}
