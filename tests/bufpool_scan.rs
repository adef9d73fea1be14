//! A one-pass scan does not evict the hot set: scan pages go through the probationary
//! FIFO and leave from it, so pages in use stay resident. (Plain LRU would lose every
//! hot page here: between two uses of a hot page come 64 scan pages and 31 other hot
//! pages, more than the 64 frames. `benches/bufpool.rs` measures both side by side.)

use querycache::bufpool::{BufferPool, PoolConfig};

const FRAMES: usize = 64;
const HOT: u64 = 32;
const SCAN: u64 = 4000;

fn config() -> PoolConfig {
    PoolConfig::new(HOT + SCAN)
        .with_page_size(4096)
        .with_frames(FRAMES)
        .with_writeback_interval(None)
}

#[test]
fn a_scan_passing_through_does_not_evict_the_hot_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pages");
    let pool = BufferPool::open(&path, config()).expect("pool");
    for page in 0..HOT + SCAN {
        pool.fetch_new(page).expect("create").fill(page as u8);
    }
    pool.close().expect("close");

    let pool = BufferPool::open(&path, config()).expect("reopen");
    for _ in 0..2 {
        for page in 0..HOT {
            drop(pool.fetch(page).expect("warm the hot set"));
        }
    }
    let before = pool.stats();
    assert_eq!(before.misses, HOT);
    for (i, page) in (HOT..HOT + SCAN).enumerate() {
        drop(pool.fetch(page).expect("scan"));
        if i % 2 == 0 {
            let hot = (i as u64 / 2) % HOT;
            assert_eq!(pool.fetch(hot).expect("hot page")[0], hot as u8);
        }
    }
    let after = pool.stats();
    assert_eq!(
        after.misses - before.misses,
        SCAN,
        "only the scan pages missed"
    );
    assert_eq!(after.hits - before.hits, SCAN / 2, "every hot access hit");
    pool.validate().expect("invariants");
}
