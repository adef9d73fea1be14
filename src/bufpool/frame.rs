//! Frames: the state word that packs pin count, usage count, flags and page tag into
//! one `AtomicU64` (PostgreSQL's `BufferDesc.state` layout idea), the per-frame latch,
//! and the page-aligned arena that holds the frames' bytes.

use memmap2::{MmapMut, MmapRaw};
use parking_lot::RawRwLock;
use parking_lot::lock_api::RawRwLock as _;
use std::sync::atomic::{AtomicU64, Ordering};

// State word layout, low to high bits:
//   0..16  pin count
//  16..19  usage count (clock sweep), capped at MAX_USAGE
//  19      DIRTY: modified since last written
//  20      VALID: the frame holds the page named by the tag
//  21      LOCKED: the frame is being evicted or filled; nobody may pin it
//  24..64  tag: page id + 1 (0: the frame holds no page)
pub(crate) const PIN_ONE: u64 = 1;
pub(crate) const PIN_MASK: u64 = 0xFFFF;
const USAGE_SHIFT: u32 = 16;
const USAGE_ONE: u64 = 1 << USAGE_SHIFT;
const USAGE_MASK: u64 = 0x7 << USAGE_SHIFT;
/// Usage count cap: PostgreSQL's `BM_MAX_USAGE_COUNT` (buf_internals.h). A page must
/// go unused for this many passes of the clock hand before it is evicted, while a
/// page touched once (a scan) is evicted on the next pass.
pub(crate) const MAX_USAGE: u64 = 5;
pub(crate) const DIRTY: u64 = 1 << 19;
pub(crate) const VALID: u64 = 1 << 20;
pub(crate) const LOCKED: u64 = 1 << 21;
const TAG_SHIFT: u32 = 24;
/// Largest page id the 40-bit tag can name.
pub(crate) const MAX_PAGE_ID: u64 = (1 << (64 - TAG_SHIFT)) - 2;

/// Decoding helpers for a state word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct State(pub(crate) u64);

impl State {
    pub(crate) fn pins(self) -> u64 {
        self.0 & PIN_MASK
    }
    pub(crate) fn usage(self) -> u64 {
        (self.0 & USAGE_MASK) >> USAGE_SHIFT
    }
    pub(crate) fn is(self, flag: u64) -> bool {
        self.0 & flag != 0
    }
    /// The page id in the tag, if any.
    pub(crate) fn page(self) -> Option<u64> {
        (self.0 >> TAG_SHIFT).checked_sub(1)
    }
    pub(crate) fn tagged(page: u64) -> u64 {
        (page + 1) << TAG_SHIFT
    }
    /// One more pin and one more use (capped), as on a hit.
    pub(crate) fn pinned_and_used(self) -> u64 {
        let usage = if self.usage() < MAX_USAGE {
            USAGE_ONE
        } else {
            0
        };
        self.0 + PIN_ONE + usage
    }
    /// One use less (the clock hand passing).
    pub(crate) fn cooled(self) -> u64 {
        self.0 - USAGE_ONE
    }
    /// A valid, unlocked frame holding `page` with one pin and a usage count of 0: the
    /// page is on probation until a second pin uses it.
    pub(crate) fn loaded(page: u64) -> u64 {
        Self::tagged(page) | VALID | PIN_ONE
    }
}

/// One frame's metadata: 16 bytes, four per cache line.
pub(crate) struct Frame {
    pub(crate) state: AtomicU64,
    /// Shared/exclusive latch over the frame's bytes; only taken while pinned.
    pub(crate) latch: RawRwLock,
}

impl Frame {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            latch: RawRwLock::INIT,
        }
    }

    pub(crate) fn load(&self) -> State {
        State(self.state.load(Ordering::Acquire))
    }
}

/// `frames × page_size` bytes of one anonymous, page-aligned mapping.
///
/// Invariant: the bytes of frame `i` are only accessed by (a) a holder of its latch
/// (shared: read, exclusive: write) who also holds a pin, or (b) the one thread that
/// set its `LOCKED` bit while the pin count was 0 (eviction and fill), which therefore
/// excludes every latch holder.
pub(crate) struct Arena {
    map: MmapRaw,
    page_size: usize,
}

impl Arena {
    pub(crate) fn new(frames: usize, page_size: usize) -> std::io::Result<Self> {
        let map = MmapRaw::from(MmapMut::map_anon(frames * page_size)?);
        Ok(Self { map, page_size })
    }

    /// Frame `frame`'s bytes, shared.
    ///
    /// # Safety
    /// The caller holds the frame's latch (shared or exclusive) and a pin, or its
    /// `LOCKED` bit, for the lifetime of the slice, and no `&mut` to the same bytes
    /// exists.
    pub(crate) unsafe fn page(&self, frame: u32) -> &[u8] {
        let start = frame as usize * self.page_size;
        // SAFETY: `start + page_size <= map.len()` because `frame < frames`; aliasing
        // is the caller's obligation above.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), self.page_size) }
    }

    /// Frame `frame`'s bytes, exclusive.
    ///
    /// # Safety
    /// The caller holds the frame's exclusive latch and a pin, or its `LOCKED` bit, for
    /// the lifetime of the slice.
    #[expect(
        clippy::mut_from_ref,
        reason = "exclusivity comes from the frame latch"
    )]
    pub(crate) unsafe fn page_mut(&self, frame: u32) -> &mut [u8] {
        let start = frame as usize * self.page_size;
        // SAFETY: in bounds as above; the mapping is writable and the latch / LOCKED
        // bit makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(start), self.page_size) }
    }
}
