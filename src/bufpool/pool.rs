//! [`BufferPool`]: the page table, pinning, and bringing pages in.

use super::config::PoolConfig;
use super::file::{CheckedFile, FsPageFile, PageFile};
use super::frame::{Arena, DIRTY, Frame, LOCKED, PIN_MASK, PIN_ONE, State, VALID};
use super::guard::{PageMut, PageRef};
use super::replacer::Replacer;
use super::stats::{Counters, PoolStats};
use super::writer::{Staging, Writer, WriterSignal};
use super::{StorageError, page};
use parking_lot::lock_api::RawRwLock as _;
use parking_lot::{Mutex, RwLock};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

/// Page-table value of a page that is not resident.
const NO_FRAME: u32 = u32::MAX;

/// A fixed set of page frames over a [`PageFile`], with clock-sweep replacement and
/// dirty-page write-back.
///
/// A page is read through a [`PageRef`] (pin + shared latch) or written through a
/// [`PageMut`] (pin + exclusive latch, sets the dirty bit); both release on drop.
/// Dirty pages reach the file through the background writer (batches sorted by page
/// id, one `fdatasync` each), [`flush`](Self::flush), or eviction (written before the
/// frame is reused). Dropping the pool stops the writer **without** writing dirty pages,
/// exactly like a crash; call [`close`](Self::close) to keep them.
///
/// # Concurrency
/// All methods take `&self` and may be called from any thread. A thread must not ask
/// for a page it already holds a [`PageMut`] on (self-deadlock on the latch), and must
/// not call [`flush`](Self::flush), [`evict_all`](Self::evict_all) or
/// [`close`](Self::close) while holding a [`PageMut`].
pub struct BufferPool {
    inner: Arc<Inner>,
    writer: Option<Writer>,
}

/// The pool's shared state.
///
/// Invariants (checked by [`BufferPool::validate`] when no guard is held):
/// 1. `page_table[p] == f` ⇔ frame `f`'s tag is `p` and it is `VALID` or `LOCKED`; a
///    frame whose state is 0 is empty and in no page-table entry.
/// 2. A frame's bytes are accessed only by a holder of a pin *and* its latch, or by the
///    one thread that set its `LOCKED` bit while its pin count was 0 (see `Arena`).
/// 3. `LOCKED` is set only on a frame with pin count 0, and pins are only taken on a
///    frame that is `VALID` and not `LOCKED` (both checked in one CAS on the state
///    word), so eviction never pulls a page out from under a guard.
/// 4. A dirty page is written to the file before its page-table entry is cleared, so a
///    reader that misses after an eviction reads the newest bytes.
/// 5. The dirty bit is set only while holding the exclusive latch, and cleared only
///    while holding the shared latch (write-back) or `LOCKED` (eviction), right after
///    the bytes were copied; a modification after the copy sets it again. (A write-back
///    whose write fails sets it again on the frames it still pins.)
/// 6. `counters.dirty` equals the number of frames with `DIRTY` set.
///
/// Lock order: `staging` (one write-back at a time) → a frame latch (write-back takes
/// one at a time, shared) → `eviction_writes` (exclusive, around the `fdatasync`). A
/// dirty eviction takes `eviction_writes` shared while it holds no frame's `LOCKED`
/// bit yet and may run under any latch the evicting caller holds; write-back takes it
/// exclusively only after releasing every latch, so the two never wait on each other
/// in a cycle. The replacer's queue mutex is a leaf: nothing is taken while holding it.
pub(crate) struct Inner {
    pub(crate) config: PoolConfig,
    pub(crate) frames: Box<[Frame]>,
    pub(crate) arena: Arena,
    /// Page id → frame index, `NO_FRAME` when not resident.
    page_table: Box<[AtomicU32]>,
    /// Victim selection: probationary FIFO + clock sweep.
    pub(crate) replacer: Replacer,
    pub(crate) file: CheckedFile,
    pub(crate) counters: Counters,
    /// The staging buffer write-back copies pages into; its mutex serializes write-backs.
    pub(crate) staging: Mutex<Staging>,
    /// Dirty evictions hold it shared while they write; write-back holds it
    /// exclusively around its `fdatasync`, so a flush covers every eviction write that
    /// was under way when it started.
    pub(crate) eviction_writes: RwLock<()>,
    /// Set when an eviction wrote a page that no `fdatasync` has covered yet.
    pub(crate) unsynced: AtomicBool,
    pub(crate) signal: WriterSignal,
}

/// How a frame is filled when its page is not resident.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Read it from the file and verify it.
    Read,
    /// A new page: zeroed with a fresh header, nothing read.
    New,
}

/// Result of one attempt to pin a frame for a page.
#[derive(PartialEq, Eq)]
pub(crate) enum Pin {
    Pinned,
    /// The frame holds the page but is being filled or evicted, or its pin count is
    /// saturated: try again shortly.
    Busy,
    /// The frame no longer holds the page: look the page up again.
    Moved,
}

impl BufferPool {
    /// Opens (creating if missing) the page file at `path` with [`FsPageFile`]
    /// (`O_DIRECT` if the config asks for it) and builds a pool over it.
    ///
    /// # Errors
    /// [`StorageError::Config`] for an invalid config, [`StorageError::Io`] if the file
    /// cannot be opened or the arena cannot be mapped.
    pub fn open(path: &Path, config: PoolConfig) -> Result<Self, StorageError> {
        config.validate()?;
        let file = FsPageFile::open(path, config.direct_io)?;
        Self::new(file, config)
    }

    /// Builds a pool of `config.frames()` frames over `file`; nothing is read yet.
    ///
    /// # Errors
    /// [`StorageError::Config`] for an invalid config, [`StorageError::Io`] if the
    /// anonymous arena cannot be mapped.
    pub fn new(file: impl PageFile, config: PoolConfig) -> Result<Self, StorageError> {
        config.validate()?;
        let max_pages = usize::try_from(config.max_pages)
            .map_err(|_| StorageError::Config("max_pages exceeds the address space".into()))?;
        let inner = Arc::new(Inner {
            frames: (0..config.frames).map(|_| Frame::new()).collect(),
            arena: Arena::new(config.frames, config.page_size)?,
            page_table: (0..max_pages).map(|_| AtomicU32::new(NO_FRAME)).collect(),
            replacer: Replacer::new(config.frames),
            file: CheckedFile::new(Box::new(file)),
            counters: Counters::default(),
            staging: Mutex::new(Staging::new(&config)?),
            eviction_writes: RwLock::new(()),
            unsynced: AtomicBool::new(false),
            signal: WriterSignal::default(),
            config,
        });
        let writer = inner
            .config
            .writeback_interval
            .map(|interval| Writer::spawn(Arc::clone(&inner), interval))
            .transpose()?;
        Ok(Self { inner, writer })
    }

    /// Pins page `page` for reading, reading it from the file if it is not resident.
    ///
    /// A hit costs one CAS on the frame's state word plus the shared latch; it takes no
    /// pool-wide lock.
    ///
    /// # Errors
    /// [`StorageError::PageOutOfRange`]; [`StorageError::Corrupt`] if the page read from
    /// the file fails its checks (including a page that was never written);
    /// [`StorageError::Io`] / [`StorageError::PreviousIo`] from the file (also from
    /// writing a dirty victim); [`StorageError::PoolExhausted`] if every frame stayed
    /// pinned for the configured wait.
    pub fn fetch(&self, page: u64) -> Result<PageRef<'_>, StorageError> {
        let frame = self.inner.pin(page, Fill::Read)?;
        self.inner.frames[frame as usize].latch.lock_shared();
        Ok(PageRef::new(&self.inner, frame))
    }

    /// Pins page `page` for writing (exclusive latch) and marks it dirty, reading it
    /// from the file if it is not resident.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub fn fetch_mut(&self, page: u64) -> Result<PageMut<'_>, StorageError> {
        let frame = self.inner.pin(page, Fill::Read)?;
        Ok(PageMut::new(&self.inner, frame))
    }

    /// Pins page `page` for writing as a new page: its payload is zeroed and its header
    /// reset (kind 0, lsn 0) whether or not it was resident or on file; nothing is read.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch), except that nothing is read, so no
    /// [`StorageError::Corrupt`].
    pub fn fetch_new(&self, page: u64) -> Result<PageMut<'_>, StorageError> {
        let (frame, fresh) = self.inner.pin_new(page)?;
        let mut guard = PageMut::new(&self.inner, frame);
        if !fresh {
            guard.reset(page);
        }
        Ok(guard)
    }

    /// Reads page `page` straight from the file into `buf` (one page long) and verifies
    /// it, bypassing the frames: for one-pass scans (recovery) that should not displace
    /// the working set. It sees only what has been written to the file, not dirty
    /// pages in the pool. With direct I/O, `buf` must be 4 KiB-aligned.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch), except [`StorageError::PoolExhausted`].
    ///
    /// # Panics
    /// If `buf.len()` is not the page size.
    pub fn read_uncached(&self, page: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        assert_eq!(buf.len(), self.inner.config.page_size, "buffer of one page");
        self.inner.check_range(page)?;
        self.inner.read_page(page, buf)
    }

    /// Writes every dirty page (sorted by page id, contiguous runs in one `pwrite`),
    /// then issues one `fdatasync`. When it returns `Ok`, every modification made
    /// through a [`PageMut`] dropped before the call is durable.
    ///
    /// # Errors
    /// [`StorageError::Io`] if a write or the fsync fails; the file then stays failed
    /// ([`StorageError::PreviousIo`]) until the pool is reopened, and pages whose write
    /// failed stay dirty in memory.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.write_back(true).map(|_| ())
    }

    /// Writes dirty pages and evicts every page that is not pinned, leaving those frames
    /// empty; returns how many frames were emptied. Subsequent fetches read from the
    /// file (cold-cache benchmarks and tests use this).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn evict_all(&self) -> Result<usize, StorageError> {
        self.inner.write_back(true)?;
        let mut emptied = 0;
        for (index, frame) in self.inner.frames.iter().enumerate() {
            let state = frame.load();
            if state.0 == 0 || state.pins() > 0 || state.is(LOCKED) {
                continue;
            }
            let gate = state.is(DIRTY).then(|| self.inner.eviction_writes.read());
            if frame
                .state
                .compare_exchange(
                    state.0,
                    state.0 | LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            self.inner.evict(index as u32, state)?;
            drop(gate);
            frame.state.store(0, Ordering::Release);
            self.inner.replacer.release(index as u32);
            emptied += 1;
        }
        self.inner.replacer.clear_probation();
        Ok(emptied)
    }

    /// A snapshot of the counters. Counting pinned frames scans the frame table
    /// (O(frames)).
    pub fn stats(&self) -> PoolStats {
        let frames = &self.inner.frames;
        let pinned = frames.iter().filter(|f| f.load().pins() > 0).count();
        self.inner
            .counters
            .snapshot(pinned as u64, frames.len() as u64)
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// `true` once a write or fsync has failed: every later file operation fails with
    /// [`StorageError::PreviousIo`] until the pool is reopened.
    pub fn has_failed(&self) -> bool {
        self.inner.file.has_failed()
    }

    /// `Err(PreviousIo)` once a write or fsync has failed.
    ///
    /// # Errors
    /// [`StorageError::PreviousIo`].
    pub fn check_io(&self) -> Result<(), StorageError> {
        self.inner.file.check()
    }

    /// Flushes, then stops the background writer.
    ///
    /// # Errors
    /// As [`flush`](Self::flush); the writer is stopped either way.
    pub fn close(self) -> Result<(), StorageError> {
        self.flush()
    }

    /// Checks the invariants written on the pool's internals (page table ⇔ frame tags,
    /// dirty-page gauge, no frame locked or pinned); O(frames + max_pages). It waits for
    /// a background write-back under way; call it only while no guard is held and no
    /// other thread uses the pool: tests call it after
    /// every step of a random operation sequence (quick-cache's `validate`).
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn validate(&self) -> Result<(), String> {
        self.inner.validate()
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.stop(&self.inner);
        }
    }
}

impl Inner {
    fn check_range(&self, page: u64) -> Result<(), StorageError> {
        if page >= self.config.max_pages {
            return Err(StorageError::PageOutOfRange {
                page,
                pages: self.config.max_pages,
            });
        }
        Ok(())
    }

    fn entry(&self, page: u64) -> Result<&AtomicU32, StorageError> {
        self.check_range(page)?;
        Ok(&self.page_table[page as usize])
    }

    /// One attempt to pin `frame` for `page`.
    pub(crate) fn try_pin(&self, frame: u32, page: u64) -> Pin {
        let state = &self.frames[frame as usize].state;
        let mut current = state.load(Ordering::Relaxed);
        loop {
            let s = State(current);
            if s.page() != Some(page) {
                return Pin::Moved;
            }
            if s.is(LOCKED) || !s.is(VALID) || s.pins() == PIN_MASK {
                return Pin::Busy;
            }
            match state.compare_exchange_weak(
                current,
                s.pinned_and_used(),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Pin::Pinned,
                Err(now) => current = now,
            }
        }
    }

    pub(crate) fn unpin(&self, frame: u32) {
        self.frames[frame as usize]
            .state
            .fetch_sub(PIN_ONE, Ordering::Release);
    }

    /// Pins `page`, bringing it in with `fill` if it is not resident; returns the frame
    /// and whether it was brought in (a miss).
    fn pin_or_fill(&self, page: u64, fill: Fill) -> Result<(u32, bool), StorageError> {
        let entry = self.entry(page)?;
        let mut busy_since: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            let frame = entry.load(Ordering::Acquire);
            if frame != NO_FRAME {
                match self.try_pin(frame, page) {
                    Pin::Pinned => {
                        self.counters.hits.add(1);
                        return Ok((frame, false));
                    }
                    Pin::Moved => continue,
                    Pin::Busy => {
                        self.wait_busy(&mut busy_since, &mut spins)?;
                        continue;
                    }
                }
            }
            if let Some(frame) = self.bring_in(page, fill, entry)? {
                self.counters.misses.add(1);
                return Ok((frame, true));
            }
        }
    }

    fn pin(&self, page: u64, fill: Fill) -> Result<u32, StorageError> {
        self.pin_or_fill(page, fill).map(|(frame, _)| frame)
    }

    fn pin_new(&self, page: u64) -> Result<(u32, bool), StorageError> {
        self.pin_or_fill(page, Fill::New)
    }

    /// Backs off while a frame is being filled or evicted (an I/O at most), giving up
    /// after the configured pin wait.
    fn wait_busy(&self, since: &mut Option<Instant>, spins: &mut u32) -> Result<(), StorageError> {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
            return Ok(());
        }
        let started = *since.get_or_insert_with(Instant::now);
        if started.elapsed() >= self.config.pin_wait {
            return Err(self.exhausted(started));
        }
        std::thread::yield_now();
        Ok(())
    }

    pub(crate) fn exhausted(&self, since: Instant) -> StorageError {
        StorageError::PoolExhausted {
            frames: self.frames.len(),
            waited: since.elapsed(),
        }
    }

    /// Takes a victim frame, publishes it as `page`'s frame and fills it. Returns
    /// `None` if another thread published a frame for `page` first.
    fn bring_in(
        &self,
        page: u64,
        fill: Fill,
        entry: &AtomicU32,
    ) -> Result<Option<u32>, StorageError> {
        let frame = self.claim_victim()?;
        let state = &self.frames[frame as usize].state;
        state.store(State::tagged(page) | LOCKED, Ordering::Release);
        if entry
            .compare_exchange(NO_FRAME, frame, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            state.store(0, Ordering::Release);
            self.replacer.release(frame);
            return Ok(None);
        }
        // SAFETY: we set LOCKED on a frame with no pins (invariant 2).
        let bytes = unsafe { self.arena.page_mut(frame) };
        let filled = match fill {
            Fill::Read => self.read_page(page, bytes),
            Fill::New => {
                page::init(bytes, page);
                Ok(())
            }
        };
        if let Err(err) = filled {
            entry.store(NO_FRAME, Ordering::Release);
            state.store(0, Ordering::Release);
            self.replacer.release(frame);
            return Err(err);
        }
        state.store(State::loaded(page), Ordering::Release);
        self.replacer.admit(frame, page);
        Ok(Some(frame))
    }

    /// Reads and verifies `page` into `buf`.
    pub(crate) fn read_page(&self, page: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let offset = page * self.config.page_size as u64;
        match self.file.read(buf, offset) {
            Err(StorageError::Io(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(StorageError::Corrupt {
                    page,
                    reason: "past the end of the file (never written)",
                });
            }
            other => other?,
        }
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        page::verify(buf, page).map_err(|reason| StorageError::Corrupt { page, reason })
    }

    /// Empties `frame`, which the caller has just `LOCKED` from state `s` (pin count
    /// 0): a dirty page is written first (invariant 4), then unmapped. On a write error
    /// the frame is unlocked unchanged (still dirty) and the error returned.
    pub(crate) fn evict(&self, frame: u32, s: State) -> Result<(), StorageError> {
        let Some(old) = s.page() else {
            return Ok(());
        };
        if s.is(DIRTY) {
            // SAFETY: LOCKED with no pins (invariant 2).
            let bytes = unsafe { self.arena.page_mut(frame) };
            page::seal(bytes);
            let offset = old * self.config.page_size as u64;
            if let Err(err) = self.file.write(bytes, offset) {
                self.frames[frame as usize]
                    .state
                    .store(s.0, Ordering::Release);
                return Err(err);
            }
            self.unsynced.store(true, Ordering::Release);
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            self.counters
                .dirty_evictions
                .fetch_add(1, Ordering::Relaxed);
            self.counters.dirty.fetch_sub(1, Ordering::Relaxed);
        }
        let unmapped = self.page_table[old as usize].compare_exchange(
            frame,
            NO_FRAME,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        debug_assert!(
            unmapped.is_ok(),
            "invariant 1: page {old} mapped to frame {frame}"
        );
        self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        // Excludes the background writer, which pins frames while it writes them.
        let _no_write_back = self.staging.lock();
        let mut dirty = 0;
        for (index, frame) in self.frames.iter().enumerate() {
            let s = frame.load();
            if s.is(LOCKED) || s.pins() > 0 {
                return Err(format!("frame {index} is locked or pinned: {s:?}"));
            }
            match s.page() {
                None if s.0 != 0 => return Err(format!("untagged frame {index} in state {s:?}")),
                None => {}
                Some(page) => {
                    if !s.is(VALID) {
                        return Err(format!("frame {index} tagged {page} but not valid"));
                    }
                    let mapped = self
                        .page_table
                        .get(page as usize)
                        .map(|e| e.load(Ordering::Acquire));
                    if mapped != Some(index as u32) {
                        return Err(format!(
                            "frame {index} holds page {page}, page table says {mapped:?}"
                        ));
                    }
                    // SAFETY: no guard is held and no other thread uses the pool
                    // (this method's contract), so nothing writes the bytes.
                    let bytes = unsafe { self.arena.page(index as u32) };
                    if page::page_id(bytes) != page {
                        return Err(format!(
                            "frame {index} header names page {}",
                            page::page_id(bytes)
                        ));
                    }
                }
            }
            dirty += usize::from(s.is(DIRTY));
        }
        for (page, entry) in self.page_table.iter().enumerate() {
            let frame = entry.load(Ordering::Acquire);
            if frame != NO_FRAME && self.frames[frame as usize].load().page() != Some(page as u64) {
                return Err(format!(
                    "page {page} maps to frame {frame}, which holds another page"
                ));
            }
        }
        let counted = self.counters.dirty.load(Ordering::Relaxed);
        if counted != dirty {
            return Err(format!(
                "dirty gauge {counted}, but {dirty} frames are dirty"
            ));
        }
        Ok(())
    }
}
