//! The storage seam under the buffer pool: [`PageFile`], the real [`FsPageFile`], and
//! the sticky-failure wrapper every pool puts around its file.

use super::StorageError;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Positional, synchronous byte storage for pages (redb's `StorageBackend` shape).
///
/// The buffer pool only ever reads and writes whole pages at page-aligned offsets, from
/// page-aligned buffers, so an implementation may use `O_DIRECT`.
pub trait PageFile: Send + Sync + 'static {
    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// Any I/O error; [`io::ErrorKind::UnexpectedEof`] when the file ends before `buf`
    /// is full (a page that was never written).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, extending the file if needed.
    ///
    /// # Errors
    /// Any I/O error. After an error the bytes at `offset` are unknown (possibly torn).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every completed write durable (`fdatasync`).
    ///
    /// # Errors
    /// Any I/O error. After an error, earlier writes may be lost even though they
    /// returned `Ok` (Linux may mark the failed dirty pages clean).
    fn sync_data(&self) -> io::Result<()>;
}

/// A [`PageFile`] on a real file: `pread`/`pwrite` through
/// [`std::os::unix::fs::FileExt`], `fdatasync` through [`File::sync_data`]. Never a
/// file-backed mmap (Crotty, Leis, Pavlo, CIDR 2022: no control over write-back, no
/// error handling, and 2× slower random reads once memory is full).
#[derive(Debug)]
pub struct FsPageFile {
    file: File,
}

impl FsPageFile {
    /// Opens (creating if missing) the file at `path` for reading and writing.
    ///
    /// With `direct_io`, the file is opened with `O_DIRECT`: reads and writes bypass the
    /// OS page cache, so the buffer pool is the only cache. Buffers and offsets must then
    /// be aligned to the device's logical block size, which the pool guarantees for
    /// page sizes ≥ 4 KiB. Some filesystems (tmpfs) refuse `O_DIRECT`.
    ///
    /// # Errors
    /// The error from `open(2)`.
    pub fn open(path: &Path, direct_io: bool) -> io::Result<Self> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        if direct_io {
            options.custom_flags(libc::O_DIRECT);
        }
        Ok(Self {
            file: options.open(path)?,
        })
    }
}

impl PageFile for FsPageFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl<F: PageFile + ?Sized> PageFile for Box<F> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }
}

/// The pool's view of its file: once a write or fsync fails, every later operation
/// fails with [`StorageError::PreviousIo`] until the file is reopened (redb's
/// `CheckedBackend`). Reads latch nothing: a failed read loses no data.
pub(crate) struct CheckedFile {
    inner: Box<dyn PageFile>,
    failed: AtomicBool,
}

impl CheckedFile {
    pub(crate) fn new(inner: Box<dyn PageFile>) -> Self {
        Self {
            inner,
            failed: AtomicBool::new(false),
        }
    }

    /// `Err(PreviousIo)` once a write or fsync has failed.
    pub(crate) fn check(&self) -> Result<(), StorageError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StorageError::PreviousIo);
        }
        Ok(())
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn latch<T>(&self, result: io::Result<T>) -> Result<T, StorageError> {
        result.map_err(|err| {
            self.failed.store(true, Ordering::Release);
            tracing::error!(%err, "page file write or fsync failed; the file stays failed until reopened");
            StorageError::Io(err)
        })
    }

    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        self.check()?;
        Ok(self.inner.read_exact_at(buf, offset)?)
    }

    pub(crate) fn write(&self, buf: &[u8], offset: u64) -> Result<(), StorageError> {
        self.check()?;
        self.latch(self.inner.write_all_at(buf, offset))
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.check()?;
        self.latch(self.inner.sync_data())
    }
}
