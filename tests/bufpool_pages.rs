//! Pages written through the buffer pool come back byte-exact: from memory, after
//! eviction (dirty pages are written before their frame is reused), and after the
//! pool is closed and reopened. Dropping a pool without closing it loses what was not
//! written back yet, like a crash, and a page that never reached the file reads as an
//! error, never as data.

use querycache::bufpool::{BufferPool, PoolConfig, StorageError};
use std::path::Path;

fn config(frames: usize) -> PoolConfig {
    PoolConfig::new(256)
        .with_page_size(4096)
        .with_frames(frames)
        .with_writeback_interval(None)
}

/// A page's payload, derived from its id and a version so every write is distinct.
fn payload(page: u64, version: u64, len: usize) -> Vec<u8> {
    let mut state =
        page.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn write(pool: &BufferPool, page: u64, version: u64) -> Result<(), StorageError> {
    let mut guard = pool.fetch_new(page)?;
    let len = guard.len();
    guard.copy_from_slice(&payload(page, version, len));
    guard.set_lsn(version);
    Ok(())
}

fn assert_page(pool: &BufferPool, page: u64, version: u64) {
    let guard = pool.fetch(page).expect("page readable");
    assert_eq!(guard.page_id(), page);
    assert_eq!(guard.lsn(), version, "page {page} lsn");
    assert!(
        guard[..] == payload(page, version, guard.len())[..],
        "page {page} bytes"
    );
}

fn open(path: &Path, frames: usize) -> BufferPool {
    BufferPool::open(path, config(frames)).expect("open pool")
}

#[test]
fn pages_survive_eviction_in_a_pool_smaller_than_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = open(&dir.path().join("pages"), 8);
    for page in 0..100 {
        write(&pool, page, 1).expect("write");
    }
    let stats = pool.stats();
    assert!(
        stats.dirty_evictions >= 92,
        "dirty pages were written on eviction: {stats:?}"
    );
    for page in (0..100).rev() {
        assert_page(&pool, page, 1);
    }
    pool.validate().expect("invariants");
}

#[test]
fn closed_pool_reopens_with_every_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let pool = open(&path, 16);
    for page in 0..40 {
        write(&pool, page, 1).expect("write");
    }
    for page in (0..40).step_by(3) {
        write(&pool, page, 2).expect("rewrite");
    }
    pool.close().expect("close");
    let pool = open(&path, 16);
    for page in 0..40 {
        assert_page(&pool, page, if page % 3 == 0 { 2 } else { 1 });
    }
    assert_eq!(pool.stats().reads, 40, "every page came from the file");
}

#[test]
fn dropping_without_close_loses_unwritten_pages_and_they_read_as_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let pool = open(&path, 16);
    write(&pool, 1, 1).expect("write");
    pool.flush().expect("flush");
    write(&pool, 1, 2).expect("rewrite after the flush");
    write(&pool, 2, 1).expect("write after the flush");
    drop(pool);

    let pool = open(&path, 16);
    assert_page(&pool, 1, 1);
    match pool.fetch(2) {
        Err(StorageError::Corrupt { page: 2, .. }) => {}
        Err(other) => panic!("expected Corrupt for a never-written page, got {other}"),
        Ok(_) => panic!("a never-written page was served as data"),
    }
    assert!(matches!(
        pool.fetch(256),
        Err(StorageError::PageOutOfRange {
            page: 256,
            pages: 256
        })
    ));
    pool.validate()
        .expect("a failed read leaves no frame behind");
}

#[test]
fn fetch_new_on_a_resident_page_starts_from_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = open(&dir.path().join("pages"), 4);
    write(&pool, 3, 9).expect("write");
    let fresh = pool.fetch_new(3).expect("fetch_new");
    assert_eq!((fresh.lsn(), fresh.kind()), (0, 0));
    assert!(fresh.iter().all(|&b| b == 0));
}

#[test]
fn evict_all_empties_the_pool_and_pages_come_back_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = open(&dir.path().join("pages"), 16);
    for page in 0..10 {
        write(&pool, page, 4).expect("write");
    }
    assert_eq!(pool.evict_all().expect("evict"), 10);
    assert_eq!(pool.stats().dirty_pages, 0);
    let reads = pool.stats().reads;
    for page in 0..10 {
        assert_page(&pool, page, 4);
    }
    assert_eq!(pool.stats().reads - reads, 10);
    pool.validate().expect("invariants");
}

#[test]
fn invalid_configurations_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    for bad in [
        config(16).with_page_size(3000),
        config(16).with_page_size(128 << 10),
        config(1),
        PoolConfig::new(0),
        config(16).with_writeback_batch(0),
    ] {
        assert!(matches!(
            BufferPool::open(&path, bad),
            Err(StorageError::Config(_))
        ));
    }
}

#[test]
fn direct_io_reads_and_writes_through_the_aligned_arena() {
    let dir =
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on the target disk");
    let path = dir.path().join("pages");
    let pool = match BufferPool::open(&path, config(8).with_direct_io(true)) {
        Ok(pool) => pool,
        Err(StorageError::Io(err)) if err.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("SKIP: this filesystem refuses O_DIRECT");
            return;
        }
        Err(err) => panic!("open with O_DIRECT: {err}"),
    };
    for page in 0..20 {
        write(&pool, page, 3).expect("write");
    }
    pool.close().expect("close");
    let pool = BufferPool::open(&path, config(8).with_direct_io(true)).expect("reopen");
    for page in 0..20 {
        assert_page(&pool, page, 3);
    }
}
