//! The log: where segments sit in the page file, which segment is written next, FIFO
//! reclamation of whole segments, and moving record bytes in and out of pages.

use crate::bufpool::page::HEADER_LEN as PAGE_HEADER_LEN;
use crate::bufpool::{BufferPool, StorageError};
use std::collections::VecDeque;

/// Page kind of a segment page.
pub(crate) const SEGMENT_PAGE: u8 = 1;
/// Page kind of the superblock (page 0).
pub(crate) const SUPERBLOCK_PAGE: u8 = 2;

/// Where the log lives in the page file: page 0 is the superblock, then `segments`
/// segments of `segment_pages` pages each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) page_size: usize,
    pub(crate) segment_pages: u64,
    pub(crate) segments: u32,
}

impl Geometry {
    /// Payload bytes per page.
    pub(crate) fn payload(&self) -> usize {
        self.page_size - PAGE_HEADER_LEN
    }

    /// Record bytes a segment holds: the largest record.
    pub(crate) fn segment_capacity(&self) -> usize {
        self.segment_pages as usize * self.payload()
    }

    /// Pages in the file.
    pub(crate) fn total_pages(&self) -> u64 {
        1 + u64::from(self.segments) * self.segment_pages
    }

    /// The page holding byte `offset` of `segment`'s stream, and the offset in its payload.
    pub(crate) fn locate(&self, segment: u32, offset: usize) -> (u64, usize) {
        let first = 1 + u64::from(segment) * self.segment_pages;
        (
            first + (offset / self.payload()) as u64,
            offset % self.payload(),
        )
    }
}

/// Where a live record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) segment: u32,
    /// Byte offset in the segment's stream.
    pub(crate) offset: u32,
    /// Record bytes.
    pub(crate) len: u32,
    /// The segment's epoch when the record was written; every page of the record
    /// carries it as its lsn.
    pub(crate) epoch: u64,
    pub(crate) expires_at_ms: u64,
}

/// One segment's bookkeeping.
#[derive(Clone, Debug, Default)]
pub(crate) struct Segment {
    /// Epoch of its current contents; 0 while free.
    pub(crate) epoch: u64,
    /// Keys of the value records written in this epoch (some may have been replaced or
    /// removed since; eviction checks the index's `Loc`).
    pub(crate) keys: Vec<u128>,
    /// Bytes of records written in this epoch.
    pub(crate) end: usize,
}

/// The segment ring.
///
/// Invariants (checked by `DiskStore::validate`):
/// 1. `fifo` holds exactly the segments with `epoch != 0`, in increasing epoch order;
///    `active`, if any, is its last element.
/// 2. Every epoch is unique and below `next_epoch`, so a page's lsn names one
///    incarnation of its segment.
/// 3. A record never spans segments: `end <= Geometry::segment_capacity()`.
pub(crate) struct Log {
    pub(crate) geometry: Geometry,
    pub(crate) segments: Vec<Segment>,
    pub(crate) fifo: VecDeque<u32>,
    /// The segment appended to; `None` until the first put of a session (each session
    /// starts a fresh segment, so it never appends after bytes a crash may have torn).
    pub(crate) active: Option<u32>,
    pub(crate) next_epoch: u64,
}

/// A segment reclaimed to make room: its old epoch and the keys it held.
pub(crate) struct Reclaimed {
    pub(crate) segment: u32,
    pub(crate) epoch: u64,
    pub(crate) keys: Vec<u128>,
}

impl Log {
    pub(crate) fn new(geometry: Geometry) -> Self {
        Self {
            geometry,
            segments: vec![Segment::default(); geometry.segments as usize],
            fifo: VecDeque::new(),
            active: None,
            next_epoch: 1,
        }
    }

    /// Reserves `len` bytes (≤ the segment capacity) at the end of the log and returns
    /// where they go, opening a new segment when the active one is full: a free one if
    /// any, else the oldest (FIFO, as CacheLib's and foyer's region eviction; FIFO keeps
    /// writes sequential and makes a reclaimed segment's records the oldest ones).
    pub(crate) fn allocate(&mut self, len: usize) -> (Loc, Option<Reclaimed>) {
        let capacity = self.geometry.segment_capacity();
        debug_assert!(len <= capacity, "checked by the caller");
        let fits = |log: &Self, segment: u32| log.segments[segment as usize].end + len <= capacity;
        let mut reclaimed = None;
        let segment = match self.active {
            Some(segment) if fits(self, segment) => segment,
            _ => {
                let segment = match self.segments.iter().position(|s| s.epoch == 0) {
                    Some(free) => free as u32,
                    None => {
                        let oldest = self
                            .fifo
                            .pop_front()
                            .expect("no free segment: the FIFO holds all");
                        let old = std::mem::take(&mut self.segments[oldest as usize]);
                        reclaimed = Some(Reclaimed {
                            segment: oldest,
                            epoch: old.epoch,
                            keys: old.keys,
                        });
                        oldest
                    }
                };
                self.segments[segment as usize] = Segment {
                    epoch: self.next_epoch,
                    keys: Vec::new(),
                    end: 0,
                };
                self.next_epoch += 1;
                self.fifo.push_back(segment);
                self.active = Some(segment);
                segment
            }
        };
        let seg = &mut self.segments[segment as usize];
        let loc = Loc {
            segment,
            offset: u32::try_from(seg.end).expect("segment capacity fits u32"),
            len: u32::try_from(len).expect("record length fits u32"),
            epoch: seg.epoch,
            expires_at_ms: 0,
        };
        seg.end += len;
        (loc, reclaimed)
    }

    /// Gives back the bytes of the last allocation, whose write failed (the next record
    /// overwrites whatever part of it reached the pages).
    pub(crate) fn abandon(&mut self, loc: &Loc) {
        let seg = &mut self.segments[loc.segment as usize];
        if seg.epoch == loc.epoch && seg.end == (loc.offset + loc.len) as usize {
            seg.end = loc.offset as usize;
        }
    }
}

/// Writes `bytes` at `loc` (from [`Log::allocate`]). A page is started with
/// `fetch_new` when the record reaches its first byte, stamped with the segment epoch.
///
/// # Errors
/// From the buffer pool (I/O while evicting, pool exhausted).
pub(crate) fn write_record(
    pool: &BufferPool,
    geometry: &Geometry,
    loc: &Loc,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let mut done = 0;
    while done < bytes.len() {
        let (page, at) = geometry.locate(loc.segment, loc.offset as usize + done);
        let n = (geometry.payload() - at).min(bytes.len() - done);
        let mut guard = if at == 0 {
            let mut fresh = pool.fetch_new(page)?;
            fresh.set_kind(SEGMENT_PAGE);
            fresh.set_lsn(loc.epoch);
            fresh
        } else {
            pool.fetch_mut(page)?
        };
        guard[at..at + n].copy_from_slice(&bytes[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Reads the record at `loc`. `Ok(None)` if one of its pages now belongs to another
/// epoch of the segment (reclaimed under the reader).
///
/// # Errors
/// From the buffer pool, including [`StorageError::Corrupt`] for a page that fails
/// its checks.
pub(crate) fn read_record(
    pool: &BufferPool,
    geometry: &Geometry,
    loc: &Loc,
) -> Result<Option<Vec<u8>>, StorageError> {
    let len = loc.len as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let (page, at) = geometry.locate(loc.segment, loc.offset as usize + out.len());
        let guard = pool.fetch(page)?;
        if guard.lsn() != loc.epoch || guard.kind() != SEGMENT_PAGE {
            return Ok(None);
        }
        let n = (geometry.payload() - at).min(len - out.len());
        out.extend_from_slice(&guard[at..at + n]);
    }
    Ok(Some(out))
}
