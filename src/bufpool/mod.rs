//! A page buffer pool with clock-sweep replacement and dirty-page write-back.
//!
//! The disk tier ([`crate::tier::disk`]) stores its pages through it, but it is usable
//! on its own: any fixed-size-page file can sit under it.
//!
//! # Architecture
//!
//! ```text
//!   fetch(page) ──► page table ──► frame state word ──► latch ──► PageRef / PageMut
//!                 (flat array,     (pin, usage, dirty,   (parking_lot
//!                  page id → frame) valid, locked, tag)   RawRwLock)
//!        miss ──► clock sweep picks a victim ──► dirty? write it ──► read + verify page
//!   writer thread / flush() ──► dirty pages sorted by id ──► pwrite runs ──► fdatasync
//! ```
//!
//! - **Frames** live in one page-aligned anonymous `memmap2` arena
//!   (`frames × page_size` bytes); pages are 4–64 KiB (default 8 KiB).
//! - **Page table**: a flat array indexed by page id (vmcache-style direct translation:
//!   a hit is one load and one CAS, no hash lookup and no pool-wide lock). Measured on
//!   the development box: 39–48 ns per hit this way vs ~200 ns through a locked hash map
//!   (anchors-performance.md M5).
//! - **Replacement**: a small probationary FIFO in front of a clock sweep (the shape of
//!   S3-FIFO's small queue; PostgreSQL's clock sweep with usage counts capped at 5 as
//!   the main policy). A page enters on probation with usage 0; a page that is pinned
//!   again while on probation is promoted to the clock, one that is not (a scan) is the
//!   next victim without the clock hand moving, so a scan cannot age the hot set
//!   (`benches/bufpool.rs` measures the hot-set hit ratio against plain LRU while a scan
//!   passes).
//! - **Pins and latches**: a guard pins its frame (no eviction while pinned) and holds
//!   the frame's latch, shared for [`PageRef`], exclusive for [`PageMut`] (which sets
//!   the dirty bit). When every frame is pinned, a pin waits at most
//!   [`PoolConfig::with_pin_wait`] and then fails with [`StorageError::PoolExhausted`].
//! - **Write-back**: the background writer wakes when `writeback_batch` pages (64) are
//!   dirty or after `writeback_interval`, writes all dirty pages sorted by page id and
//!   issues one `fdatasync`; [`BufferPool::flush`] does the same on demand; evicting a
//!   dirty page writes it first.
//! - **I/O** is `pread`/`pwrite` (optionally `O_DIRECT`) through the [`PageFile`]
//!   trait, never a file-backed mmap. [`FaultyFile`] wraps any `PageFile` to fail a
//!   chosen write, fsync or read, for tests.
//! - **Failure is sticky**: after a failed write or fsync every file operation fails
//!   with [`StorageError::PreviousIo`] until the pool is reopened (redb's rule: after a
//!   failed fsync the kernel may have dropped the dirty data, so nothing written since
//!   the last good fsync can be trusted to be on disk).
//! - **Page format** ([`page`]): magic, format version, kind, xxh3 checksum, page id,
//!   lsn; verified on every read, so a torn, misplaced, foreign or never-written page is
//!   an error ([`StorageError::Corrupt`]), never data.
//!
//! The invariants and lock order are written on the pool's internal state (`pool.rs`).
//!
//! # Example
//!
//! ```
//! use querycache::bufpool::{BufferPool, PoolConfig};
//!
//! # fn main() -> Result<(), querycache::bufpool::StorageError> {
//! let dir = tempfile::tempdir()?;
//! let pool = BufferPool::open(&dir.path().join("pages"), PoolConfig::new(1024).with_frames(16))?;
//! {
//!     let mut page = pool.fetch_new(7)?; // pinned, exclusively latched, dirty
//!     page[..5].copy_from_slice(b"hello");
//! }
//! pool.flush()?; // written and fdatasync'ed
//! assert_eq!(&pool.fetch(7)?[..5], b"hello");
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod fault;
mod file;
mod frame;
mod guard;
pub mod page;
mod pool;
mod replacer;
mod stats;
mod writer;

pub use config::PoolConfig;
pub use error::StorageError;
pub use fault::{Fault, FaultHandle, FaultyFile};
pub use file::{FsPageFile, PageFile};
pub use guard::{PageMut, PageRef};
pub use pool::BufferPool;
pub use stats::PoolStats;
