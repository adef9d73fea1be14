//! Storage faults under the disk tier: errors surface, a corrupt read is a miss and
//! never wrong bytes, and after a failed write or fsync the store stays failed until
//! it is reopened, with everything flushed before the failure intact.

mod disk_support;

use disk_support::{open_faulty, verify};
use querycache::bufpool::{Fault, FaultHandle};
use querycache::tier::disk::{DiskStore, StorageError};
use std::path::Path;

fn open(dir: &Path, pool_bytes: usize) -> (DiskStore, FaultHandle) {
    let builder = DiskStore::builder(8 << 20)
        .with_page_size(4096)
        .with_segment_bytes(512 << 10)
        .with_pool_bytes(pool_bytes)
        .with_writeback_interval(None);
    open_faulty(builder, dir)
}

fn put(store: &DiskStore, key: u128, len: usize) -> Result<(), StorageError> {
    disk_support::put(store, key, 1, len, false)
}

#[test]
fn a_failed_fsync_fails_the_store_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open(dir.path(), 4 << 20);
    for key in 0..20 {
        put(&store, key, 3000).expect("put");
    }
    store.flush().expect("flush");
    for key in 20..40 {
        put(&store, key, 3000).expect("put");
    }
    faults.arm(Fault::FailSync, 0);
    assert!(matches!(store.flush(), Err(StorageError::Io(_))));
    assert!(matches!(
        put(&store, 99, 100),
        Err(StorageError::PreviousIo)
    ));
    assert!(matches!(store.remove(1), Err(StorageError::PreviousIo)));
    assert_eq!(
        store.get(1).expect("get"),
        None,
        "unindexed although its tombstone failed"
    );
    assert!(matches!(store.flush(), Err(StorageError::PreviousIo)));
    for key in 2..40 {
        // Resident pages are still served, and correctly.
        verify(key, &store.get(key).expect("resident").expect("present"));
    }
    drop(store);

    let (store, _) = open(dir.path(), 4 << 20);
    for key in 0..20 {
        verify(
            key,
            &store
                .get(key)
                .expect("get")
                .expect("flushed before the failure"),
        );
    }
    for key in 20..40 {
        if let Some(entry) = store.get(key).expect("get") {
            verify(key, &entry);
        }
    }
    put(&store, 99, 100).expect("a reopened store works");
    store.validate().expect("invariants");
}

#[test]
fn a_short_read_is_a_counted_miss_never_wrong_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = open(dir.path(), 4 << 20);
    put(&store, 1, 20_000).expect("put");
    put(&store, 2, 20_000).expect("put");
    store.evict_pages().expect("write back and empty the pool");
    faults.arm(Fault::ShortRead, 2);
    assert_eq!(
        store
            .get(1)
            .expect("a corrupt page is a miss, not an error"),
        None
    );
    let stats = store.stats();
    assert_eq!((stats.corrupt, stats.misses), (1, 1));
    verify(
        2,
        &store.get(2).expect("get").expect("the other entry is fine"),
    );
    assert_eq!(store.get(1).expect("get"), None, "dropped from the index");
    store.close().expect("close");

    let (store, _) = open(dir.path(), 4 << 20);
    verify(
        1,
        &store
            .get(1)
            .expect("get")
            .expect("intact on disk, recovered"),
    );
}

#[test]
fn a_failed_eviction_write_fails_the_put_and_leaves_no_half_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A pool of 8 pages: the put of a 40 KiB value must evict dirty pages.
    let (store, faults) = open(dir.path(), 8 * 4096);
    put(&store, 1, 20_000).expect("put");
    faults.arm(Fault::FailWrite, 0);
    assert!(put(&store, 2, 40_000).is_err());
    assert_eq!(
        store.get(2).expect("get"),
        None,
        "the failed put is not indexed"
    );
    assert!(matches!(put(&store, 3, 100), Err(StorageError::PreviousIo)));
    drop(store);

    let (store, _) = open(dir.path(), 8 * 4096);
    assert_eq!(store.get(2).expect("get"), None);
    if let Some(entry) = store.get(1).expect("get") {
        verify(1, &entry);
    }
    store.validate().expect("invariants");
}
