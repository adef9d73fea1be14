//! Rebuilding the index at open by scanning every segment's pages.
//!
//! A segment's epoch is the lsn of its first page. Its records are read in order until
//! the first of: the end marker, a page that fails its checks (torn, foreign, never
//! written), a page of another epoch (left from an earlier incarnation of the segment),
//! or a record whose checksum fails. Everything before that point is kept, everything
//! after it is skipped (record boundaries cannot be trusted past a bad byte). Segments
//! are then replayed oldest epoch first, so a later put or remove of a key wins.

use super::log::{Geometry, Loc, Log, SEGMENT_PAGE, Segment};
use super::record::{self, HEADER_LEN, Header, Kind, NotARecord};
use super::{Index, RecoveredEntry};
use crate::bufpool::{BufferPool, StorageError};
use memmap2::MmapMut;

/// What the scan found.
pub(crate) struct Recovered {
    pub(crate) log: Log,
    pub(crate) index: Index,
    /// Value records dropped because they had expired or the filter refused them.
    pub(crate) dropped: u64,
}

/// One segment's records, in log order.
struct Scanned {
    segment: u32,
    epoch: u64,
    end: usize,
    records: Vec<(Header, Loc, Vec<u8>)>,
}

/// Reads a segment's byte stream page by page through `read_uncached` (a one-pass scan
/// that must not displace the pool's frames).
struct Cursor<'a> {
    pool: &'a BufferPool,
    geometry: Geometry,
    segment: u32,
    epoch: u64,
    /// Page-aligned (for `O_DIRECT`) buffer holding `page`.
    buf: MmapMut,
    page: Option<u64>,
}

impl Cursor<'_> {
    /// `len` bytes of the stream from `offset`, or `None` where the stream ends: past
    /// the segment, or at a page that fails its checks or belongs to another epoch.
    fn read(&mut self, offset: usize, len: usize) -> Result<Option<Vec<u8>>, StorageError> {
        if offset + len > self.geometry.segment_capacity() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let (page, at) = self.geometry.locate(self.segment, offset + out.len());
            if self.page != Some(page) {
                self.page = None;
                match self.pool.read_uncached(page, &mut self.buf) {
                    Ok(()) => {}
                    Err(StorageError::Corrupt { .. }) => return Ok(None),
                    Err(err) => return Err(err),
                }
                let lsn = crate::bufpool::page::lsn(&self.buf);
                let kind = crate::bufpool::page::kind(&self.buf);
                if lsn != self.epoch || kind != SEGMENT_PAGE {
                    return Ok(None);
                }
                self.page = Some(page);
            }
            let payload = &self.buf[crate::bufpool::page::HEADER_LEN..];
            let n = (payload.len() - at).min(len - out.len());
            out.extend_from_slice(&payload[at..at + n]);
        }
        Ok(Some(out))
    }
}

fn scan_segment(
    pool: &BufferPool,
    geometry: Geometry,
    segment: u32,
) -> Result<Option<Scanned>, StorageError> {
    let mut buf = MmapMut::map_anon(geometry.page_size)?;
    let (first, _) = geometry.locate(segment, 0);
    match pool.read_uncached(first, &mut buf) {
        Ok(()) => {}
        Err(StorageError::Corrupt { .. }) => return Ok(None),
        Err(err) => return Err(err),
    }
    let epoch = crate::bufpool::page::lsn(&buf);
    if crate::bufpool::page::kind(&buf) != SEGMENT_PAGE || epoch == 0 {
        return Ok(None);
    }
    let mut cursor = Cursor {
        pool,
        geometry,
        segment,
        epoch,
        buf,
        page: None,
    };
    let mut scanned = Scanned {
        segment,
        epoch,
        end: 0,
        records: Vec::new(),
    };
    loop {
        let offset = scanned.end;
        let Some(head) = cursor.read(offset, HEADER_LEN)? else {
            break;
        };
        let header = match Header::decode(&head) {
            Ok(header) => header,
            Err(NotARecord::End | NotARecord::Invalid(_)) => break,
        };
        let Some(bytes) = cursor.read(offset, header.len())? else {
            break;
        };
        if header.verify(&bytes).is_err() {
            break;
        }
        let generations = bytes[HEADER_LEN..HEADER_LEN + header.generations_len].to_vec();
        let loc = Loc {
            segment,
            offset: u32::try_from(offset).expect("segment capacity fits u32"),
            len: u32::try_from(header.len()).expect("bounded by the segment capacity"),
            epoch,
            expires_at_ms: header.expires_at_ms,
        };
        scanned.records.push((header, loc, generations));
        scanned.end += header.len();
    }
    Ok(Some(scanned))
}

/// Scans every segment and replays them oldest first into an index. `keep` sees each
/// unexpired value record (the cache's freshness check at open) and may refuse it.
///
/// # Errors
/// I/O errors from reading the file (corrupt pages are skipped, not errors).
pub(crate) fn recover(
    pool: &BufferPool,
    geometry: Geometry,
    keep: &mut dyn FnMut(&RecoveredEntry<'_>) -> bool,
) -> Result<Recovered, StorageError> {
    let mut scanned = Vec::new();
    for segment in 0..geometry.segments {
        scanned.extend(scan_segment(pool, geometry, segment)?);
    }
    scanned.sort_by_key(|s| s.epoch);
    let mut log = Log::new(geometry);
    let mut index = Index::default();
    let mut dropped = 0;
    let now = record::now_ms();
    for s in scanned {
        let mut keys = Vec::new();
        for (header, loc, generations) in s.records {
            index.remove(&header.key);
            if header.kind == Kind::Tombstone {
                continue;
            }
            let entry = RecoveredEntry {
                key: header.key,
                generations: &generations,
                session: header.session,
                expires_at: header.expires_at(),
            };
            if record::expired(header.expires_at_ms, now) || !keep(&entry) {
                dropped += 1;
                continue;
            }
            index.insert(header.key, loc);
            keys.push(header.key);
        }
        log.segments[s.segment as usize] = Segment {
            epoch: s.epoch,
            keys,
            end: s.end,
        };
        log.fifo.push_back(s.segment);
        log.next_epoch = s.epoch + 1;
    }
    Ok(Recovered {
        log,
        index,
        dropped,
    })
}
