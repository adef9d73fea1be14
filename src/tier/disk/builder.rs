//! [`DiskStoreBuilder`]: sizes, thresholds and the recovery filter of a [`DiskStore`].

use super::log::{Geometry, Log};
use super::recover::{self, Recovered};
use super::store::{DiskStore, Opened};
use super::{Index, RecoveredEntry, superblock};
use crate::bufpool::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use crate::bufpool::{BufferPool, FsPageFile, PageFile, PoolConfig, StorageError};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// File holding the pages, inside the store's directory.
pub const PAGE_FILE: &str = "querycache.pages";
/// File locked (`flock`) while a process has the store open.
pub const LOCK_FILE: &str = "querycache.lock";

type Filter = Box<dyn FnMut(&RecoveredEntry<'_>) -> bool + Send>;
type FileWrapper = Box<dyn FnOnce(FsPageFile) -> Box<dyn PageFile>>;

/// Builds a [`DiskStore`]; each setter documents its default.
pub struct DiskStoreBuilder {
    capacity_bytes: u64,
    page_size: usize,
    segment_bytes: Option<u64>,
    pool_bytes: usize,
    compress_at: usize,
    direct_io: bool,
    writeback_interval: Option<Duration>,
    keep: Option<Filter>,
    wrap_file: Option<FileWrapper>,
}

impl DiskStoreBuilder {
    /// A store whose page file holds at most `capacity_bytes` (superblock and
    /// segments; unused tail space is not counted).
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            page_size: 8 << 10,
            segment_bytes: None,
            pool_bytes: 32 << 20,
            compress_at: 4 << 10,
            direct_io: false,
            writeback_interval: Some(Duration::from_millis(200)),
            keep: None,
            wrap_file: None,
        }
    }

    /// Page size, bytes (power of two, 4–64 KiB).
    ///
    /// Default: 8 KiB.
    pub fn with_page_size(mut self, bytes: usize) -> Self {
        self.page_size = bytes;
        self
    }

    /// Segment size, bytes (rounded down to whole pages): the unit of reclamation and
    /// the largest record. At least two segments must fit in the capacity.
    ///
    /// Default: `min(4 MiB, capacity / 4)`. 4 MiB keeps the space a 256 KiB result can
    /// leave unused at the end of a segment under 1/16 of it.
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    /// Memory of the buffer pool's frames, bytes (capped at the file size).
    ///
    /// Default: 32 MiB.
    pub fn with_pool_bytes(mut self, bytes: usize) -> Self {
        self.pool_bytes = bytes;
        self
    }

    /// Values of at least this many bytes are lz4-compressed (kept raw if that does not
    /// shrink them). lz4_flex compresses at ~0.7 GB/s and decompresses at ~3.3 GB/s on
    /// the development box, so below a few KiB it costs more than it saves
    /// (anchors-performance.md T14).
    ///
    /// Default: 4 KiB.
    pub fn with_compress_threshold(mut self, bytes: usize) -> Self {
        self.compress_at = bytes;
        self
    }

    /// Open the page file with `O_DIRECT`.
    ///
    /// Default: `false`.
    pub fn with_direct_io(mut self, direct: bool) -> Self {
        self.direct_io = direct;
        self
    }

    /// Longest time a put waits in memory before the background writer makes it
    /// durable (it goes earlier once 64 pages are dirty); `None`: only on
    /// [`DiskStore::flush`] and eviction.
    ///
    /// Default: 200 ms.
    pub fn with_writeback_interval(mut self, interval: Option<Duration>) -> Self {
        self.writeback_interval = interval;
        self
    }

    /// Called at open for every unexpired entry found in the file; entries it refuses are
    /// not indexed (they stay on disk until their segment is reclaimed). This is where
    /// the cache revalidates entries of earlier sessions (see the module docs,
    /// *Freshness across restarts*), at no extra I/O.
    ///
    /// Default: keep every entry.
    pub fn with_recovery_filter(
        mut self,
        keep: impl FnMut(&RecoveredEntry<'_>) -> bool + Send + 'static,
    ) -> Self {
        self.keep = Some(Box::new(keep));
        self
    }

    /// Wraps the page file before the buffer pool uses it: to inject faults
    /// ([`FaultyFile`](crate::bufpool::FaultyFile)) or instrument I/O.
    ///
    /// Default: the plain [`FsPageFile`].
    pub fn with_page_file_wrapper(
        mut self,
        wrap: impl FnOnce(FsPageFile) -> Box<dyn PageFile> + 'static,
    ) -> Self {
        self.wrap_file = Some(Box::new(wrap));
        self
    }

    fn geometry(&self) -> Result<Geometry, StorageError> {
        let page = self.page_size as u64;
        if !self.page_size.is_power_of_two()
            || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size)
        {
            return Err(StorageError::Config(format!(
                "page size {}",
                self.page_size
            )));
        }
        let segment_bytes = self
            .segment_bytes
            .unwrap_or_else(|| (4 << 20).min(self.capacity_bytes / 4));
        let segment_pages = segment_bytes / page;
        let segments = self.capacity_bytes.saturating_sub(page) / (segment_pages.max(1) * page);
        if segment_pages == 0 || segment_pages > u64::from(u32::MAX) || segments < 2 {
            return Err(StorageError::Config(format!(
                "capacity {} B with {segment_bytes} B segments of {page} B pages: need at least two segments of one page",
                self.capacity_bytes
            )));
        }
        Ok(Geometry {
            page_size: self.page_size,
            segment_pages,
            segments: u32::try_from(segments)
                .map_err(|_| StorageError::Config("more than 2^32 segments".into()))?,
        })
    }

    /// Opens (creating if needed) the store in directory `dir`: locks it, checks the
    /// superblock, scans the segments to rebuild the index, and durably bumps the
    /// session counter. Open time grows with the bytes stored (every used page is read
    /// once).
    ///
    /// # Errors
    /// [`StorageError::Config`] for an invalid size, a page file that is not ours, or a
    /// directory another process has open; [`StorageError::Io`] from the file system.
    pub fn open(mut self, dir: &Path) -> Result<DiskStore, StorageError> {
        let geometry = self.geometry()?;
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(PAGE_FILE);
        let previous = superblock::previous_session(&path, &geometry)?;
        let frames = (self.pool_bytes / self.page_size)
            .min(usize::try_from(geometry.total_pages()).unwrap_or(usize::MAX))
            .max(2);
        let config = PoolConfig::new(geometry.total_pages())
            .with_page_size(self.page_size)
            .with_frames(frames)
            .with_writeback_interval(self.writeback_interval);
        let file = FsPageFile::open(&path, self.direct_io)?;
        let pool = match self.wrap_file.take() {
            Some(wrap) => BufferPool::new(wrap(file), config)?,
            None => BufferPool::new(file, config)?,
        };
        let recovered = match previous {
            Some(_) => {
                let mut keep_all = |_: &RecoveredEntry<'_>| true;
                let keep: &mut dyn FnMut(&RecoveredEntry<'_>) -> bool = match self.keep.as_mut() {
                    Some(keep) => keep,
                    None => &mut keep_all,
                };
                recover::recover(&pool, geometry, keep)?
            }
            None => Recovered {
                log: Log::new(geometry),
                index: Index::default(),
                dropped: 0,
            },
        };
        let session = previous.unwrap_or(0) + 1;
        superblock::write(&pool, &geometry, session)?;
        Ok(DiskStore::from_parts(Opened {
            pool,
            geometry,
            session,
            compress_at: self.compress_at,
            recovered,
            lock,
        }))
    }
}

/// Takes an exclusive `flock` on the directory's lock file, so two processes never
/// append to one log. The kernel drops it when the process dies (`kill -9` included).
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    // SAFETY: flock on a file descriptor we own; it does not touch memory.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        return Err(StorageError::Config(format!(
            "{} is open in another process",
            dir.display()
        )));
    }
    Ok(file)
}
