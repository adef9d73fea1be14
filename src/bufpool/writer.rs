//! Write-back: copying dirty pages into a staging buffer and writing them sorted by
//! page id with one `fdatasync` per batch, and the background writer thread that does
//! so when enough pages are dirty or a dirty page has waited long enough.

use super::config::PoolConfig;
use super::frame::{DIRTY, LOCKED, VALID};
use super::pool::{Inner, Pin};
use super::{StorageError, page};
use memmap2::MmapMut;
use parking_lot::lock_api::RawRwLock as _;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

/// Page-aligned scratch space for one write-back chunk (aligned so that `O_DIRECT`
/// writes work). A chunk holds at least 64 pages.
pub(crate) struct Staging {
    buf: MmapMut,
    page_size: usize,
}

impl Staging {
    pub(crate) fn new(config: &PoolConfig) -> std::io::Result<Self> {
        let pages = config.writeback_batch.max(64);
        Ok(Self {
            buf: MmapMut::map_anon(pages * config.page_size)?,
            page_size: config.page_size,
        })
    }

    fn pages(&self) -> usize {
        self.buf.len() / self.page_size
    }

    fn slot(&mut self, index: usize) -> &mut [u8] {
        &mut self.buf[index * self.page_size..(index + 1) * self.page_size]
    }

    fn run(&self, first: usize, len: usize) -> &[u8] {
        &self.buf[first * self.page_size..(first + len) * self.page_size]
    }
}

/// Wakes the background writer early (batch size reached) or tells it to stop.
#[derive(Default)]
pub(crate) struct WriterSignal {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl WriterSignal {
    /// Wakes the writer without waiting for its interval. A wake-up that races with the
    /// writer going to sleep is lost; the writer then runs at its interval instead.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Handle to the background writer thread; [`Writer::stop`] ends it.
pub(crate) struct Writer {
    thread: JoinHandle<()>,
}

impl Writer {
    pub(crate) fn spawn(pool: Arc<Inner>, interval: Duration) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("querycache-bufpool-writer".into())
            .spawn(move || run(&pool, interval))?;
        Ok(Self { thread })
    }

    /// Stops the thread and waits for it; a write-back under way finishes first, no new
    /// one starts (so dropping the pool behaves like a crash).
    pub(crate) fn stop(self, pool: &Inner) {
        *pool.signal.stop.lock() = true;
        pool.signal.wake.notify_all();
        if self.thread.join().is_err() {
            tracing::error!("buffer pool writer thread panicked");
        }
    }
}

fn run(pool: &Inner, interval: Duration) {
    loop {
        {
            let mut stop = pool.signal.stop.lock();
            if *stop {
                return;
            }
            if pool.counters.dirty.load(Ordering::Relaxed) < pool.config.writeback_batch {
                pool.signal.wake.wait_for(&mut stop, interval);
            }
            if *stop {
                return;
            }
        }
        if pool.file.has_failed() {
            // Nothing can be written until the pool is reopened (a new pool, with a new
            // writer); the error was returned to whoever hit it and logged.
            return;
        }
        if let Err(err) = pool.write_back(true) {
            tracing::warn!(%err, "background write-back failed");
        }
    }
}

impl Inner {
    /// Writes every dirty page, sorted by page id, in chunks of the staging size
    /// (contiguous ids in one `pwrite`); then, if `sync`, one `fdatasync` covering them
    /// and every eviction write since the last one. Returns the pages written.
    pub(crate) fn write_back(&self, sync: bool) -> Result<usize, StorageError> {
        let mut staging = self.staging.lock();
        self.file.check()?;
        let mut dirty: Vec<(u64, u32)> = self
            .frames
            .iter()
            .enumerate()
            .filter_map(|(index, frame)| {
                let s = frame.load();
                let candidate = s.is(DIRTY) && s.is(VALID) && !s.is(LOCKED);
                candidate.then_some((s.page()?, index as u32))
            })
            .collect();
        dirty.sort_unstable();
        let mut written = 0;
        for chunk in dirty.chunks(staging.pages()) {
            written += self.write_chunk(&mut staging, chunk)?;
        }
        if sync {
            let _no_eviction_writes_in_flight = self.eviction_writes.write();
            let evictions_pending = self.unsynced.swap(false, Ordering::AcqRel);
            if written > 0 || evictions_pending {
                self.file.sync()?;
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                if written > 0 {
                    self.counters.flush_batches.fetch_add(1, Ordering::Relaxed);
                    let pages = written as u64;
                    self.counters
                        .flushed_pages
                        .fetch_add(pages, Ordering::Relaxed);
                }
            }
        }
        Ok(written)
    }

    /// Copies the still-dirty pages of `chunk` (sorted by page id) into `staging` and
    /// writes them; returns how many were written. The frames stay pinned until their
    /// write is done, so none is evicted (and re-read stale) meanwhile.
    fn write_chunk(
        &self,
        staging: &mut Staging,
        chunk: &[(u64, u32)],
    ) -> Result<usize, StorageError> {
        let mut staged: Vec<(u64, u32)> = Vec::with_capacity(chunk.len());
        for &(page_id, frame) in chunk {
            if self.try_pin(frame, page_id) != Pin::Pinned {
                continue; // evicted meanwhile: the evictor wrote it
            }
            let slot = &self.frames[frame as usize];
            slot.latch.lock_shared();
            if slot.load().is(DIRTY) {
                let bytes = staging.slot(staged.len());
                // SAFETY: pinned and latched shared (arena invariant).
                bytes.copy_from_slice(unsafe { self.arena.page(frame) });
                slot.state.fetch_and(!DIRTY, Ordering::AcqRel);
                self.counters.dirty.fetch_sub(1, Ordering::Relaxed);
                page::seal(bytes);
                staged.push((page_id, frame));
            } else {
                self.unpin(frame);
            }
            // SAFETY: taken just above.
            unsafe { slot.latch.unlock_shared() };
        }
        let result = self.write_runs(staging, &staged);
        for &(_, frame) in &staged {
            if result.is_err() {
                // Pool invariant 5 in reverse: the copy never reached the file.
                let before = self.frames[frame as usize]
                    .state
                    .fetch_or(DIRTY, Ordering::AcqRel);
                if before & DIRTY == 0 {
                    self.counters.dirty.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.unpin(frame);
        }
        result.map(|()| staged.len())
    }

    /// One `pwrite` per run of consecutive page ids in `staged`.
    fn write_runs(&self, staging: &Staging, staged: &[(u64, u32)]) -> Result<(), StorageError> {
        let page_size = self.config.page_size as u64;
        let mut first = 0;
        while first < staged.len() {
            let mut len = 1;
            while first + len < staged.len()
                && staged[first + len].0 == staged[first].0 + len as u64
            {
                len += 1;
            }
            self.file
                .write(staging.run(first, len), staged[first].0 * page_size)?;
            self.counters
                .writes
                .fetch_add(len as u64, Ordering::Relaxed);
            first += len;
        }
        Ok(())
    }
}
