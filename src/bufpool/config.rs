//! [`PoolConfig`]: the buffer pool's sizes and timings.

use super::StorageError;
use super::frame::MAX_PAGE_ID;
use super::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use std::time::Duration;

/// Sizes and timings of a [`BufferPool`](super::BufferPool). Build with
/// [`PoolConfig::new`] and the `with_*` setters; each setter documents its default.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub(crate) page_size: usize,
    pub(crate) frames: usize,
    pub(crate) max_pages: u64,
    pub(crate) pin_wait: Duration,
    pub(crate) writeback_batch: usize,
    pub(crate) writeback_interval: Option<Duration>,
    pub(crate) direct_io: bool,
}

impl PoolConfig {
    /// A configuration for a page file of at most `max_pages` pages.
    ///
    /// `max_pages` sizes the page table: a flat array indexed by page id, 4 bytes per
    /// page of file (so a 1 GiB file of 8 KiB pages costs 512 KiB). A flat array instead
    /// of a hash map because it makes a page hit one load instead of a locked lookup:
    /// 39–48 ns vs ~200 ns per hit on the development box (anchors-performance.md M5).
    pub fn new(max_pages: u64) -> Self {
        Self {
            page_size: 8 << 10,
            frames: 4096,
            max_pages,
            pin_wait: Duration::from_secs(1),
            writeback_batch: 64,
            writeback_interval: Some(Duration::from_millis(200)),
            direct_io: false,
        }
    }

    /// Page size, bytes: a power of two from 4 KiB to 64 KiB.
    ///
    /// Default: 8 KiB (PostgreSQL's page size; anchors-performance.md §4).
    pub fn with_page_size(mut self, bytes: usize) -> Self {
        self.page_size = bytes;
        self
    }

    /// Frames in the pool; the arena is `frames × page_size` bytes of anonymous memory.
    ///
    /// Default: 4096 (32 MiB of 8 KiB pages).
    pub fn with_frames(mut self, frames: usize) -> Self {
        self.frames = frames;
        self
    }

    /// How long a pin waits for a frame when every frame is pinned before it fails
    /// with [`StorageError::PoolExhausted`].
    ///
    /// Default: 1 s.
    pub fn with_pin_wait(mut self, wait: Duration) -> Self {
        self.pin_wait = wait;
        self
    }

    /// Dirty pages that wake the background writer, which then writes every dirty page
    /// sorted by page id and issues one `fdatasync`. One `fdatasync` costs ≈ 2.6 ms on
    /// the development box (M11), so single-page write-back would cap at ~390 pages/s;
    /// vmcache also batches 64 pages.
    ///
    /// Default: 64.
    pub fn with_writeback_batch(mut self, pages: usize) -> Self {
        self.writeback_batch = pages;
        self
    }

    /// Longest time a dirty page waits for the background writer when fewer than the
    /// batch size are dirty: the window of writes a crash can lose. `None` disables the
    /// background writer (pages are then written only by [`flush`](super::BufferPool::flush)
    /// and by dirty evictions).
    ///
    /// Default: 200 ms.
    pub fn with_writeback_interval(mut self, interval: Option<Duration>) -> Self {
        self.writeback_interval = interval;
        self
    }

    /// Open the file with `O_DIRECT` (only used by [`BufferPool::open`](super::BufferPool::open)).
    ///
    /// Default: `false` (reads that miss the pool may still hit the OS page cache).
    pub fn with_direct_io(mut self, direct: bool) -> Self {
        self.direct_io = direct;
        self
    }

    /// Page size, bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Frames in the pool.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Pages the page file may hold.
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        let fail = |msg: String| Err(StorageError::Config(msg));
        if !self.page_size.is_power_of_two()
            || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size)
        {
            return fail(format!(
                "page size {} is not a power of two in {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}",
                self.page_size
            ));
        }
        if self.frames < 2 || self.frames >= u32::MAX as usize {
            return fail(format!("{} frames (need 2..2^32-1)", self.frames));
        }
        if self.max_pages == 0 || self.max_pages > MAX_PAGE_ID {
            return fail(format!(
                "max_pages {} (need 1..={MAX_PAGE_ID})",
                self.max_pages
            ));
        }
        if self.writeback_batch == 0 {
            return fail("write-back batch of 0 pages".into());
        }
        Ok(())
    }
}
