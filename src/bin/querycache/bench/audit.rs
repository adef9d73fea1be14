//! The freshness audit: counts reads that return a value older than a write which had
//! already returned before the read began.
//!
//! The audited workloads write `counter = counter + 1 … RETURNING counter` on one key
//! at a time, so per key the counter only grows. [`Floors`] keeps, per key, the highest
//! counter value whose write has *returned*. A reader loads the floor **before** it
//! issues its read; a value below that floor was overwritten by a write that finished
//! before the read started, so serving it is a stale read. The check is exact: no
//! clock, no tolerance window, no false positives (a write still in flight when the
//! read starts never raises the floor the reader saw).

use memmap2::MmapMut;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-key floors for keys `1..=len`, shared by all clients of one run — and, with
/// `--processes`, by every process of the run, through a memory-mapped file.
///
/// A floor is stored in offset binary (`value ^ 1 << 63` as `u64`), so the zero-filled
/// memory of a new mapping means `i64::MIN` (no write has returned) and `fetch_max` on
/// the stored `u64` orders like the `i64` values.
#[derive(Debug)]
pub struct Floors {
    map: MmapMut,
    len: usize,
}

const OFFSET: u64 = 1 << 63;

impl Floors {
    /// Floors for keys `1..=keys` in this process's memory, all at `i64::MIN`.
    ///
    /// # Panics
    /// When the anonymous mapping cannot be made.
    pub fn new(keys: u64) -> Self {
        let len = usize::try_from(keys).expect("key space fits in memory");
        let map = MmapMut::map_anon((len * 8).max(8)).expect("map floors");
        Self { map, len }
    }

    /// Floors for keys `1..=keys` in `path`, shared with other processes mapping the
    /// same file; created (all at `i64::MIN`) when it does not exist yet.
    ///
    /// # Errors
    /// When the file cannot be created, sized or mapped.
    pub fn shared(keys: u64, path: &Path) -> std::io::Result<Self> {
        let len = usize::try_from(keys).expect("key space fits in memory");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len((len * 8).max(8) as u64)?;
        // SAFETY: the file is this run's own; every process accesses it only through
        // the atomics below.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(Self { map, len })
    }

    fn slot(&self, key: i32) -> &AtomicU64 {
        let index = usize::try_from(key - 1).expect("keys start at 1");
        assert!(index < self.len, "key {key} outside the audited key space");
        // SAFETY: the mapping is page-aligned and `len * 8` bytes long, `index < len`,
        // and AtomicU64 has the size and alignment of u64.
        unsafe { &*(self.map.as_ptr().add(index * 8) as *const AtomicU64) }
    }

    /// The floor a read of `key` must reach; load it before the read is issued.
    ///
    /// # Panics
    /// When `key` is outside `1..=keys`.
    pub fn before_read(&self, key: i32) -> i64 {
        // Acquire pairs with the AcqRel in `after_write`: a floor seen here comes from a
        // write whose database call had completed.
        (self.slot(key).load(Ordering::Acquire) ^ OFFSET) as i64
    }

    /// Records that a write of `key` returned the counter value `value`; call it after
    /// the write's call has returned.
    ///
    /// # Panics
    /// When `key` is outside `1..=keys`.
    pub fn after_write(&self, key: i32, value: i64) {
        self.slot(key)
            .fetch_max(value as u64 ^ OFFSET, Ordering::AcqRel);
    }
}

/// Whether a read that returned `value` after seeing `floor` was stale.
pub fn is_stale(floor: i64, value: i64) -> bool {
    value < floor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_below_a_returned_write_is_stale_and_at_or_above_is_not() {
        let floors = Floors::new(3);
        assert_eq!(floors.before_read(2), i64::MIN, "no write has returned yet");
        floors.after_write(2, 7);
        floors.after_write(2, 5); // a slower write that returned later with an older value
        let floor = floors.before_read(2);
        assert_eq!(floor, 7);
        assert!(is_stale(floor, 6));
        assert!(!is_stale(floor, 7));
        assert!(!is_stale(floor, 8));
        assert_eq!(floors.before_read(1), i64::MIN, "keys are independent");
        floors.after_write(1, -3);
        assert_eq!(floors.before_read(1), -3, "negative values order too");
    }

    #[test]
    fn shared_floors_are_seen_through_another_mapping_of_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("floors");
        let a = Floors::shared(4, &path).expect("map a");
        let b = Floors::shared(4, &path).expect("map b");
        assert_eq!(b.before_read(3), i64::MIN);
        a.after_write(3, 11);
        assert_eq!(b.before_read(3), 11);
    }
}
