//! Pins from several threads at once: latches keep every page consistent while pages
//! are evicted and brought back, and a pool whose frames are all pinned fails a new pin
//! after the bounded wait instead of hanging (or succeeds if a frame is released
//! during the wait).

use querycache::bufpool::{BufferPool, PoolConfig, StorageError};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

const HANG: Duration = Duration::from_secs(30);

fn pool(dir: &tempfile::TempDir, frames: usize, pin_wait: Duration) -> BufferPool {
    let config = PoolConfig::new(1024)
        .with_page_size(4096)
        .with_frames(frames)
        .with_pin_wait(pin_wait)
        .with_writeback_batch(8)
        .with_writeback_interval(Some(Duration::from_millis(5)));
    BufferPool::open(&dir.path().join("pages"), config).expect("pool")
}

fn counter(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn concurrent_readers_and_writers_never_see_a_half_written_page() {
    readers_and_writers(16, 48);
}

#[test]
fn a_pool_barely_larger_than_the_thread_count_still_keeps_every_write() {
    readers_and_writers(5, 40);
}

/// Four threads read and increment counters on `pages` pages through `frames` frames;
/// the sum of the counters must equal the increments made, before and after a reopen.
fn readers_and_writers(frames: usize, pages: u64) {
    const THREADS: u64 = 4;
    const OPS: u64 = 4000;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool(&dir, frames, Duration::from_secs(10));
    for page in 0..pages {
        drop(pool.fetch_new(page).expect("create"));
    }
    let writes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = &pool;
                scope.spawn(move || {
                    let mut x = t + 1;
                    let mut writes = 0;
                    for _ in 0..OPS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let page = x % pages;
                        if x % 3 == 0 {
                            let mut guard = pool.fetch_mut(page).expect("fetch_mut");
                            let end = guard.len() - 8;
                            let next = counter(&guard, 0) + 1;
                            guard[..8].copy_from_slice(&next.to_le_bytes());
                            guard[end..].copy_from_slice(&next.to_le_bytes());
                            writes += 1;
                        } else {
                            let guard = pool.fetch(page).expect("fetch");
                            let end = guard.len() - 8;
                            assert_eq!(
                                counter(&guard, 0),
                                counter(&guard, end),
                                "page {page} torn"
                            );
                        }
                    }
                    writes
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let total = |pool: &BufferPool| -> u64 {
        (0..pages)
            .map(|page| counter(&pool.fetch(page).expect("fetch"), 0))
            .sum()
    };
    assert_eq!(
        total(&pool),
        writes,
        "no increment was lost across evictions"
    );
    let stats = pool.stats();
    assert!(stats.evictions > 0 && stats.flush_batches > 0, "{stats:?}");
    pool.validate().expect("invariants");
    pool.close().expect("close");
    let pool = self::pool(&dir, frames, Duration::from_secs(1));
    assert_eq!(total(&pool), writes, "and none across a reopen");
}

#[test]
fn a_pool_full_of_pinned_pages_fails_after_the_bounded_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wait = Duration::from_millis(100);
    let pool = Arc::new(pool(&dir, 4, wait));
    let held: Vec<_> = (0..4)
        .map(|page| pool.fetch_new(page).expect("pin"))
        .collect();
    let (tx, rx) = mpsc::channel();
    let other = Arc::clone(&pool);
    std::thread::spawn(move || {
        let result = other.fetch_new(10).map(|_| ());
        let _ = tx.send(result);
    });
    match rx
        .recv_timeout(HANG)
        .expect("the pin returned instead of hanging")
    {
        Err(StorageError::PoolExhausted { frames: 4, waited }) => assert!(waited >= wait),
        other => panic!("expected PoolExhausted, got {other:?}"),
    }
    assert_eq!(pool.stats().pinned_frames, 4);
    drop(held);
    drop(pool.fetch_new(10).expect("a frame is free again"));
}

#[test]
fn a_waiting_pin_gets_the_frame_released_during_its_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Arc::new(pool(&dir, 4, Duration::from_secs(20)));
    let mut held: Vec<_> = (0..4)
        .map(|page| pool.fetch_new(page).expect("pin"))
        .collect();
    let (tx, rx) = mpsc::channel();
    let other = Arc::clone(&pool);
    std::thread::spawn(move || {
        let result = other.fetch_new(10).map(|guard| guard.page_id());
        let _ = tx.send(result);
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "the pin is still waiting");
    held.pop();
    assert_eq!(
        rx.recv_timeout(HANG).expect("returned").expect("pinned"),
        10
    );
}
