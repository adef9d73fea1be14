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

use std::sync::atomic::{AtomicI64, Ordering};

/// Per-key floors for keys `1..=len`, shared by all clients of one run.
#[derive(Debug)]
pub struct Floors {
    floors: Box<[AtomicI64]>,
}

impl Floors {
    /// Floors for keys `1..=keys`, all at `i64::MIN` (no write has returned yet).
    pub fn new(keys: u64) -> Self {
        let len = usize::try_from(keys).expect("key space fits in memory");
        Self {
            floors: (0..len).map(|_| AtomicI64::new(i64::MIN)).collect(),
        }
    }

    fn slot(&self, key: i32) -> &AtomicI64 {
        let index = usize::try_from(key - 1).expect("keys start at 1");
        &self.floors[index]
    }

    /// The floor a read of `key` must reach; load it before the read is issued.
    ///
    /// # Panics
    /// When `key` is outside `1..=keys`.
    pub fn before_read(&self, key: i32) -> i64 {
        // Acquire pairs with the Release in `after_write`: a floor seen here comes from a
        // write whose database call had completed.
        self.slot(key).load(Ordering::Acquire)
    }

    /// Records that a write of `key` returned the counter value `value`; call it after
    /// the write's call has returned.
    ///
    /// # Panics
    /// When `key` is outside `1..=keys`.
    pub fn after_write(&self, key: i32, value: i64) {
        self.slot(key).fetch_max(value, Ordering::AcqRel);
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
    }
}
