//! Storage failures under the buffer pool surface as errors, never as wrong data, and
//! a failed write or fsync keeps the file failed until it is reopened (the fault
//! wrapper's faults are one-shot, so the stickiness observed here is the pool's).

use querycache::bufpool::{
    BufferPool, Fault, FaultHandle, FaultyFile, FsPageFile, PoolConfig, StorageError,
};
use std::path::Path;

const FRAMES: usize = 8;

fn open(path: &Path) -> (BufferPool, FaultHandle) {
    let file = FsPageFile::open(path, false).expect("open file");
    let (file, faults) = FaultyFile::new(file);
    let config = PoolConfig::new(128)
        .with_page_size(4096)
        .with_frames(FRAMES)
        .with_writeback_interval(None);
    (BufferPool::new(file, config).expect("pool"), faults)
}

fn fill(pool: &BufferPool, page: u64, byte: u8) -> Result<(), StorageError> {
    pool.fetch_new(page)?.fill(byte);
    Ok(())
}

fn byte_of(pool: &BufferPool, page: u64) -> Result<u8, StorageError> {
    let guard = pool.fetch(page)?;
    assert!(
        guard.iter().all(|&b| b == guard[0]),
        "page {page} is uniform"
    );
    Ok(guard[0])
}

fn assert_previous_io<T>(result: Result<T, StorageError>) {
    assert!(
        matches!(result, Err(StorageError::PreviousIo)),
        "expected PreviousIo"
    );
}

#[test]
fn failed_fsync_keeps_the_file_failed_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let (pool, faults) = open(&path);
    fill(&pool, 0, 1).expect("fill");
    faults.arm(Fault::FailSync, 0);
    assert!(
        matches!(pool.flush(), Err(StorageError::Io(_))),
        "the fsync error surfaces"
    );
    assert!(pool.has_failed());
    assert_previous_io(pool.flush());
    assert_previous_io(pool.check_io());
    // A page that must come from the file cannot, even though the fault is spent.
    assert_previous_io(pool.fetch(50));
    assert_eq!(
        byte_of(&pool, 0).expect("a resident page is still served"),
        1
    );
    let syncs = faults.syncs();
    assert_previous_io(pool.flush());
    assert_eq!(
        faults.syncs(),
        syncs,
        "no fsync is even attempted once failed"
    );
    drop(pool);

    let (pool, _) = open(&path);
    fill(&pool, 5, 5).expect("a reopened file works again");
    pool.flush().expect("flush after reopen");
    assert_eq!(byte_of(&pool, 5).expect("read"), 5);
}

#[test]
fn failed_write_back_surfaces_and_keeps_the_page_dirty_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, faults) = open(&dir.path().join("pages"));
    fill(&pool, 3, 7).expect("fill");
    faults.arm(Fault::FailWrite, 0);
    assert!(matches!(pool.flush(), Err(StorageError::Io(_))));
    assert_eq!(pool.stats().dirty_pages, 1, "nothing is silently dropped");
    assert_eq!(byte_of(&pool, 3).expect("resident page still readable"), 7);
    assert_previous_io(pool.flush());
    pool.validate().expect("invariants hold after the failure");
}

#[test]
fn failed_dirty_eviction_fails_the_fetch_and_keeps_the_victim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, faults) = open(&dir.path().join("pages"));
    for page in 0..FRAMES as u64 {
        fill(&pool, page, page as u8 + 1).expect("fill");
    }
    faults.arm(Fault::FailWrite, 0);
    assert!(matches!(fill(&pool, 100, 0), Err(StorageError::Io(_))));
    assert_previous_io(fill(&pool, 101, 0));
    for page in 0..FRAMES as u64 {
        assert_eq!(
            byte_of(&pool, page).expect("still resident"),
            page as u8 + 1
        );
    }
    assert_eq!(pool.stats().dirty_pages, FRAMES as u64);
    pool.validate().expect("invariants hold after the failure");
}

#[test]
fn torn_write_is_never_served_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let (pool, faults) = open(&path);
    fill(&pool, 2, 0x11).expect("fill");
    pool.flush().expect("first version is durable");
    fill(&pool, 2, 0x22).expect("refill");
    faults.arm(Fault::TornWrite, 0);
    assert!(pool.flush().is_err());
    drop(pool);

    let (pool, _) = open(&path);
    match pool.fetch(2) {
        Err(StorageError::Corrupt { page: 2, reason }) => assert!(reason.contains("checksum")),
        Err(other) => panic!("expected a checksum error, got {other}"),
        Ok(guard) => panic!("torn page served: first byte {:#x}", guard[0]),
    }
}

#[test]
fn short_read_is_caught_by_the_checksum_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let (pool, _) = open(&path);
    fill(&pool, 1, 0xAB).expect("fill");
    fill(&pool, 2, 0xCD).expect("fill");
    pool.close().expect("close");

    let (pool, faults) = open(&path);
    assert_eq!(byte_of(&pool, 1).expect("read page 1"), 0xAB);
    pool.evict_all().expect("evict");
    // The next read fills half of the frame that held page 1 with page 2's first half.
    faults.arm(Fault::ShortRead, 0);
    match pool.fetch(2) {
        Err(StorageError::Corrupt { page: 2, .. }) => {}
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(guard) => panic!(
            "half-read page served: {:#x}..{:#x}",
            guard[0],
            guard[guard.len() - 1]
        ),
    }
    assert!(!pool.has_failed(), "a failed read latches nothing");
    assert_eq!(
        byte_of(&pool, 2).expect("the retry reads the whole page"),
        0xCD
    );
    pool.validate().expect("invariants");
}
