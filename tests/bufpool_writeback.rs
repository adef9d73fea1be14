//! Write-back batches: the background writer wakes once `writeback_batch` pages are
//! dirty and writes them sorted by page id (contiguous runs in one `pwrite`) with one
//! `fdatasync` per batch; `flush` also covers pages written by dirty evictions.

use parking_lot::Mutex;
use querycache::bufpool::{BufferPool, FsPageFile, PageFile, PoolConfig};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Write { offset: u64, len: usize },
    Sync,
}

/// A real file that records the order of writes and syncs.
struct Recording {
    inner: FsPageFile,
    log: Arc<Mutex<Vec<Event>>>,
}

impl PageFile for Recording {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.log.lock().push(Event::Write {
            offset,
            len: buf.len(),
        });
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.log.lock().push(Event::Sync);
        self.inner.sync_data()
    }
}

const PAGE: usize = 4096;

fn recording_pool(
    dir: &tempfile::TempDir,
    frames: usize,
    interval: Option<Duration>,
) -> (BufferPool, Arc<Mutex<Vec<Event>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let file = Recording {
        inner: FsPageFile::open(&dir.path().join("pages"), false).expect("file"),
        log: Arc::clone(&log),
    };
    let config = PoolConfig::new(4096)
        .with_page_size(PAGE)
        .with_frames(frames)
        .with_writeback_batch(64)
        .with_writeback_interval(interval);
    (BufferPool::new(file, config).expect("pool"), log)
}

/// Page ids of each write, grouped into the batches ended by a sync.
fn batches(log: &[Event]) -> Vec<Vec<u64>> {
    let mut batches = vec![Vec::new()];
    for event in log {
        match event {
            Event::Write { offset, len } => {
                let first = offset / PAGE as u64;
                batches
                    .last_mut()
                    .expect("never empty")
                    .extend(first..first + (*len / PAGE) as u64);
            }
            Event::Sync => batches.push(Vec::new()),
        }
    }
    batches.pop();
    batches
}

#[test]
fn background_writer_flushes_a_full_batch_sorted_with_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An interval far longer than the test: only the batch threshold can wake it.
    let (pool, log) = recording_pool(&dir, 256, Some(Duration::from_secs(3600)));
    // 64 pages in a scrambled order, with gaps (so there are several runs).
    let pages: Vec<u64> = (0..64u64).map(|i| (i * 37) % 64 * 3).collect();
    for &page in &pages {
        pool.fetch_new(page).expect("write").fill(page as u8);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.stats().flush_batches == 0 {
        assert!(
            Instant::now() < deadline,
            "writer never woke: {:?}",
            pool.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.flushed_pages, stats.syncs, stats.dirty_pages),
        (64, 1, 0)
    );
    let batches = batches(&log.lock());
    assert_eq!(batches.len(), 1);
    let mut sorted = pages.clone();
    sorted.sort_unstable();
    assert_eq!(batches[0], sorted, "one batch, in page-id order");
}

#[test]
fn contiguous_pages_go_out_in_one_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, log) = recording_pool(&dir, 128, None);
    for page in (0..100).rev() {
        pool.fetch_new(page).expect("write").fill(1);
    }
    pool.flush().expect("flush");
    let log = log.lock();
    let writes: Vec<_> = log
        .iter()
        .filter(|e| matches!(e, Event::Write { .. }))
        .collect();
    // The staging buffer holds 64 pages: two runs, 64 + 36 pages.
    assert_eq!(
        writes,
        [
            &Event::Write {
                offset: 0,
                len: 64 * PAGE
            },
            &Event::Write {
                offset: 64 * PAGE as u64,
                len: 36 * PAGE
            },
        ]
    );
    assert_eq!(log.last(), Some(&Event::Sync));
}

#[test]
fn flush_syncs_pages_that_were_written_by_evictions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, log) = recording_pool(&dir, 4, None);
    for page in 0..5 {
        pool.fetch_new(page).expect("write").fill(2);
    }
    assert_eq!(pool.stats().dirty_evictions, 1);
    pool.evict_all()
        .expect("write the other four and empty the pool");
    log.lock().clear();
    pool.flush().expect("flush with nothing dirty");
    assert!(log.lock().is_empty(), "nothing written since the last sync");

    pool.fetch_new(9).expect("write").fill(3);
    for page in 0..4 {
        drop(pool.fetch(page).expect("read"));
    }
    assert_eq!(pool.stats().dirty_pages, 0, "page 9 went out by eviction");
    pool.flush().expect("flush");
    assert_eq!(
        log.lock().last(),
        Some(&Event::Sync),
        "the eviction write was synced"
    );
}
