//! [`StorageError`]: what the buffer pool and the disk tier can fail with.

use std::time::Duration;

/// A failure of the buffer pool, its page file, or the disk tier built on them.
///
/// Outcomes that are not failures (a key that is absent, an expired entry) are values
/// (`Option`), never errors. The disk tier turns [`StorageError::Corrupt`] into a miss
/// itself; the cache layer turns every other variant into a counted miss.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The page file failed a read, write or fsync.
    #[error("page file i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// An earlier write or fsync failed; every later operation that touches the file
    /// fails with this until the file is reopened, because after a failed fsync the
    /// kernel may have dropped the dirty data (redb's `PreviousIo` rule).
    #[error("an earlier write or fsync failed; close and reopen the page file")]
    PreviousIo,

    /// A page failed its checksum or header check when it was read.
    #[error("corrupt page {page}: {reason}")]
    Corrupt {
        /// The page id that was read.
        page: u64,
        /// Which check failed.
        reason: &'static str,
    },

    /// Every frame stayed pinned for the whole bounded wait, so no page could be
    /// brought in.
    #[error("buffer pool exhausted: all {frames} frames stayed pinned for {waited:?}")]
    PoolExhausted {
        /// Frames in the pool.
        frames: usize,
        /// How long the caller waited for a frame to be unpinned.
        waited: Duration,
    },

    /// A page id at or past the end of the page file.
    #[error("page {page} is outside the page file ({pages} pages)")]
    PageOutOfRange {
        /// The page id asked for.
        page: u64,
        /// Pages the file holds.
        pages: u64,
    },

    /// A value (with its record header and generations) does not fit in one segment.
    #[error("record of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bytes the record would need.
        bytes: usize,
        /// The largest record a segment can hold, bytes.
        max: usize,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<StorageError> for crate::Error {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Io(io) => crate::Error::Io(io),
            StorageError::Corrupt { .. } => crate::Error::Corrupt(err.to_string()),
            StorageError::Config(msg) => crate::Error::Config(msg),
            other => crate::Error::Io(std::io::Error::other(other)),
        }
    }
}
