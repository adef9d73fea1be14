//! Page 0: the superblock. It names the format and geometry and carries the session
//! counter, bumped and fsync'ed at every open.
//!
//! ```text
//! payload offset  size  field
//!              0     8  b"QCDISK01"  disk-tier format magic + version
//!              8     4  page size, bytes
//!             12     4  pages per segment
//!             16     4  segments
//!             20     8  session: 1 for a new store, +1 at every open
//! ```

use super::log::{Geometry, SUPERBLOCK_PAGE};
use crate::bufpool::page::{self, PAGE_MAGIC};
use crate::bufpool::{BufferPool, StorageError};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const FORMAT: [u8; 8] = *b"QCDISK01";

fn encode(geometry: &Geometry, session: u64, payload: &mut [u8]) {
    payload[0..8].copy_from_slice(&FORMAT);
    let page_size = u32::try_from(geometry.page_size).expect("page size ≤ 64 KiB");
    let segment_pages = u32::try_from(geometry.segment_pages).expect("checked by the builder");
    payload[8..12].copy_from_slice(&page_size.to_le_bytes());
    payload[12..16].copy_from_slice(&segment_pages.to_le_bytes());
    payload[16..20].copy_from_slice(&geometry.segments.to_le_bytes());
    payload[20..28].copy_from_slice(&session.to_le_bytes());
}

/// The session recorded in the file at `path` if it is a disk-tier file of the same
/// geometry. A missing or empty file, and a querycache file that cannot be reused (torn
/// superblock, other geometry or version), give `None`; the latter is truncated, so
/// none of its pages can be recovered later under the wrong geometry.
///
/// # Errors
/// [`StorageError::Config`] if the file exists and is not a querycache page file (we
/// refuse to overwrite it); [`StorageError::Io`] from reading or truncating.
pub(crate) fn previous_session(
    path: &Path,
    geometry: &Geometry,
) -> Result<Option<u64>, StorageError> {
    let file = match File::options().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let mut first = vec![0; geometry.page_size];
    let read = read_prefix(&file, &mut first)?;
    if read == 0 {
        return Ok(None);
    }
    let blank = first[..read].iter().all(|&b| b == 0);
    if first[0..4] != PAGE_MAGIC && !blank {
        return Err(StorageError::Config(format!(
            "{} exists and is not a querycache disk-tier file",
            path.display()
        )));
    }
    let mut expected = vec![0; geometry.page_size - page::HEADER_LEN];
    encode(geometry, 0, &mut expected);
    let payload = &first[page::HEADER_LEN..];
    let usable = read == first.len()
        && page::verify(&first, 0).is_ok()
        && page::kind(&first) == SUPERBLOCK_PAGE
        && payload[..20] == expected[..20];
    if usable {
        let session = u64::from_le_bytes(payload[20..28].try_into().expect("8 bytes"));
        return Ok(Some(session));
    }
    tracing::warn!(path = %path.display(), "disk tier: unusable superblock or other geometry; starting empty");
    file.set_len(0)?;
    file.sync_all()?;
    Ok(None)
}

/// Reads up to `buf.len()` bytes from the start of `file`; returns how many.
fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

/// Writes the superblock for `session` through the pool and makes it durable.
///
/// # Errors
/// From the pool's write or fsync.
pub(crate) fn write(
    pool: &BufferPool,
    geometry: &Geometry,
    session: u64,
) -> Result<(), StorageError> {
    {
        let mut guard = pool.fetch_new(0)?;
        guard.set_kind(SUPERBLOCK_PAGE);
        guard.set_lsn(session);
        encode(geometry, session, &mut guard);
    }
    pool.flush()
}
