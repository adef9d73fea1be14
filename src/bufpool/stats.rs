//! Counters of the buffer pool and their snapshot, [`PoolStats`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

/// One counter shard on its own cache line pair (128 B: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Shard(AtomicU64);

/// A counter striped over [`SHARDS`] cache lines so that two cores counting hits do not
/// bounce one line between them (DESIGN §8: a hit writes at most one counter shard).
#[derive(Default)]
pub(crate) struct Counter([Shard; SHARDS]);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|cell| {
        let mut index = cell.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            cell.set(index);
        }
        index
    })
}

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0[shard_index()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The pool's live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) dirty_evictions: AtomicU64,
    pub(crate) flush_batches: AtomicU64,
    pub(crate) flushed_pages: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Gauge: frames whose dirty bit is set.
    pub(crate) dirty: AtomicUsize,
}

/// A snapshot of the pool's counters (monotonic since the pool was created) and
/// gauges (current values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Pins that found the page resident.
    pub hits: u64,
    /// Pins that had to bring the page in (read it, or create it with `fetch_new`).
    pub misses: u64,
    /// Pages read from the file.
    pub reads: u64,
    /// Pages written to the file (write-back and dirty evictions).
    pub writes: u64,
    /// Frames taken from one page for another.
    pub evictions: u64,
    /// Evictions that had to write a dirty page first (the background writer's job
    /// is to keep this near zero).
    pub dirty_evictions: u64,
    /// Write-back batches that ended in an `fdatasync`.
    pub flush_batches: u64,
    /// Pages written by those batches; `flushed_pages / flush_batches` is the number
    /// of pages per `fdatasync`.
    pub flushed_pages: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Gauge: frames holding a page modified since it was last written.
    pub dirty_pages: u64,
    /// Gauge: frames pinned by at least one guard right now.
    pub pinned_frames: u64,
    /// Frames in the pool.
    pub frames: u64,
}

impl PoolStats {
    /// `hits / (hits + misses)`, or 0 before the first pin.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

impl Counters {
    pub(crate) fn snapshot(&self, pinned_frames: u64, frames: u64) -> PoolStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            reads: load(&self.reads),
            writes: load(&self.writes),
            evictions: load(&self.evictions),
            dirty_evictions: load(&self.dirty_evictions),
            flush_batches: load(&self.flush_batches),
            flushed_pages: load(&self.flushed_pages),
            syncs: load(&self.syncs),
            dirty_pages: self.dirty.load(Ordering::Relaxed) as u64,
            pinned_frames,
            frames,
        }
    }
}
