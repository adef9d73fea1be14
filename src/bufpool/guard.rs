//! RAII page guards: [`PageRef`] (pin + shared latch) and [`PageMut`] (pin + exclusive
//! latch + dirty bit). Dropping a guard releases the latch, then the pin.

use super::frame::DIRTY;
use super::page::{self, HEADER_LEN};
use super::pool::Inner;
use parking_lot::lock_api::RawRwLock as _;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

/// A page pinned for reading. Derefs to the payload (the page minus its 32-byte
/// header). Several `PageRef`s to one page may live at once, on any threads.
///
/// Not `Send`: a latch is released on the thread that took it, and a guard can't be
/// held across an `.await` in a `Send` future (no latch is held across `.await`).
pub struct PageRef<'a>(Held<'a>);

/// A page pinned for writing; its frame is marked dirty when the guard is taken.
/// Derefs (mutably) to the payload. At most one `PageMut` per page exists at a time,
/// and no `PageRef` while it does.
///
/// Not `Send`, for the reasons given on [`PageRef`].
pub struct PageMut<'a>(Held<'a>);

/// A pinned, latched frame: what both guards hold. Releasing is the guards' job.
struct Held<'a> {
    pool: &'a Inner,
    frame: u32,
    _not_send: PhantomData<*const ()>,
}

impl<'a> Held<'a> {
    fn new(pool: &'a Inner, frame: u32) -> Self {
        Self {
            pool,
            frame,
            _not_send: PhantomData,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the guard holding this holds a pin and the frame's latch (shared or
        // exclusive), and hands out `&mut` only through `bytes_mut(&mut self)`.
        unsafe { self.pool.arena.page(self.frame) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: only `PageMut` calls this, holding a pin and the exclusive latch, and
        // `&mut self` makes this the only reference derived from it.
        unsafe { self.pool.arena.page_mut(self.frame) }
    }
}

impl<'a> PageRef<'a> {
    /// Wraps a frame the caller has pinned and latched shared.
    pub(crate) fn new(pool: &'a Inner, frame: u32) -> Self {
        Self(Held::new(pool, frame))
    }

    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The page's id.
    pub fn page_id(&self) -> u64 {
        page::page_id(self.bytes())
    }

    /// The lsn / epoch the owner stored in the header.
    pub fn lsn(&self) -> u64 {
        page::lsn(self.bytes())
    }

    /// The kind tag the owner stored in the header.
    pub fn kind(&self) -> u8 {
        page::kind(self.bytes())
    }
}

impl Deref for PageRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }
}

impl Drop for PageRef<'_> {
    fn drop(&mut self) {
        let Held { pool, frame, .. } = self.0;
        // SAFETY: this guard took the shared latch in `BufferPool::fetch`.
        unsafe { pool.frames[frame as usize].latch.unlock_shared() };
        pool.unpin(frame);
    }
}

impl<'a> PageMut<'a> {
    /// Takes the exclusive latch on a frame the caller has pinned, then sets its dirty
    /// bit (in this order: pool invariant 5).
    pub(crate) fn new(pool: &'a Inner, frame: u32) -> Self {
        let slot = &pool.frames[frame as usize];
        slot.latch.lock_exclusive();
        let before = slot.state.fetch_or(DIRTY, Ordering::AcqRel);
        if before & DIRTY == 0 {
            let dirty = pool.counters.dirty.fetch_add(1, Ordering::Relaxed) + 1;
            if dirty == pool.config.writeback_batch {
                pool.signal.wake();
            }
        }
        Self(Held::new(pool, frame))
    }

    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }

    /// Zeroes the page and writes a fresh header for `page` (`fetch_new` on a resident
    /// page).
    pub(crate) fn reset(&mut self, page: u64) {
        page::init(self.bytes_mut(), page);
    }

    /// The page's id.
    pub fn page_id(&self) -> u64 {
        page::page_id(self.bytes())
    }

    /// The lsn / epoch stored in the header.
    pub fn lsn(&self) -> u64 {
        page::lsn(self.bytes())
    }

    /// Stores the owner's lsn / epoch in the header (the disk tier: the segment epoch).
    pub fn set_lsn(&mut self, lsn: u64) {
        page::set_lsn(self.bytes_mut(), lsn);
    }

    /// The kind tag stored in the header.
    pub fn kind(&self) -> u8 {
        page::kind(self.bytes())
    }

    /// Stores the owner's kind tag in the header.
    pub fn set_kind(&mut self, kind: u8) {
        page::set_kind(self.bytes_mut(), kind);
    }
}

impl Deref for PageMut<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }
}

impl DerefMut for PageMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[HEADER_LEN..]
    }
}

impl Drop for PageMut<'_> {
    fn drop(&mut self) {
        let Held { pool, frame, .. } = self.0;
        // SAFETY: this guard took the exclusive latch in `PageMut::new`.
        unsafe { pool.frames[frame as usize].latch.unlock_exclusive() };
        pool.unpin(frame);
    }
}
