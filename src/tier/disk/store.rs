//! [`DiskStore`]: put, get, remove and flush over the log and its index.

use super::builder::DiskStoreBuilder;
use super::log::{Geometry, Loc, Log, Reclaimed, read_record, write_record};
use super::record::{self, Header, Kind};
use super::recover::Recovered;
use super::{DiskEntry, DiskStats, Index};
use crate::bufpool::{BufferPool, StorageError};
use parking_lot::{Mutex, RwLock};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// L3: a persistent, log-structured store of encoded results over the buffer pool.
///
/// Keys are 128-bit cache keys; values, generations and expiry are stored as given and
/// returned byte-exact or not at all. See the [module docs](super) for the format,
/// recovery and the freshness rule across restarts.
///
/// `DiskStore` is `Send + Sync`; share it with an `Arc`. Dropping it does not flush:
/// entries not yet written back (at most the write-back interval's worth, 200 ms by
/// default) are lost, as in a crash. Call [`close`](Self::close) to keep them.
///
/// # Concurrent calls on the same key
/// A `get` racing a `put` of the same key returns the old entry or the new one, whole.
/// A `get` racing the reclamation of the entry's segment returns `None`.
pub struct DiskStore {
    pool: BufferPool,
    geometry: Geometry,
    compress_at: usize,
    session: u64,
    // Invariants (checked by `validate`):
    // 1. Every index entry points at a record of its key whose pages carry the entry's
    //    epoch, inside its segment's written bytes, and the key is in the segment's
    //    key list.
    // 2. The log's own invariants (see `Log`).
    // 3. An index entry is inserted only after its record's bytes are in the pool and
    //    is removed before its segment's pages are reused.
    //
    // Lock order: `log` → `index` → buffer-pool latches. `get` takes only `index`
    // (shared, for the lookup) and then page latches, never `log`.
    log: Mutex<Log>,
    index: RwLock<Index>,
    counters: Counters,
    recovered_entries: u64,
    recovery_dropped: u64,
    /// Holds the directory's `flock` for the store's lifetime.
    _lock: File,
}

/// Everything `DiskStoreBuilder::open` hands over.
pub(crate) struct Opened {
    pub(crate) pool: BufferPool,
    pub(crate) geometry: Geometry,
    pub(crate) session: u64,
    pub(crate) compress_at: usize,
    pub(crate) recovered: Recovered,
    pub(crate) lock: File,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    puts: AtomicU64,
    removes: AtomicU64,
    expired: AtomicU64,
    corrupt: AtomicU64,
    reclaimed_segments: AtomicU64,
    reclaimed_entries: AtomicU64,
    bytes_written: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl DiskStore {
    /// Opens (creating if needed) a store of at most `capacity_bytes` in directory `dir`
    /// with default settings; see [`DiskStoreBuilder`] for the others.
    ///
    /// # Errors
    /// As [`DiskStoreBuilder::open`].
    pub fn open(dir: &Path, capacity_bytes: u64) -> Result<Self, StorageError> {
        DiskStoreBuilder::new(capacity_bytes).open(dir)
    }

    /// A builder for a store of at most `capacity_bytes`.
    pub fn builder(capacity_bytes: u64) -> DiskStoreBuilder {
        DiskStoreBuilder::new(capacity_bytes)
    }

    pub(crate) fn from_parts(opened: Opened) -> Self {
        let recovered_entries = opened.recovered.index.len() as u64;
        Self {
            pool: opened.pool,
            geometry: opened.geometry,
            compress_at: opened.compress_at,
            session: opened.session,
            log: Mutex::new(opened.recovered.log),
            index: RwLock::new(opened.recovered.index),
            counters: Counters::default(),
            recovered_entries,
            recovery_dropped: opened.recovered.dropped,
            _lock: opened.lock,
        }
    }

    /// This open's session number: 1 for a new store, one more at every open. Entries
    /// carry the session that wrote them ([`DiskEntry::session`]).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The largest record, bytes: a value (after compression) plus its generations plus
    /// a 56-byte header must fit in one segment.
    pub fn max_record_bytes(&self) -> usize {
        self.geometry.segment_capacity()
    }

    /// Stores `value` under `key`, replacing any earlier entry. `generations` is opaque
    /// to the store and returned with the value; `expires_at` (ms precision, rounded
    /// down) makes later gets miss. Values of at least the compression threshold are
    /// lz4-compressed. The entry is readable at once and durable after the next
    /// write-back (background writer, [`flush`](Self::flush) or eviction).
    ///
    /// # Errors
    /// [`StorageError::TooLarge`] if the record exceeds [`max_record_bytes`](Self::max_record_bytes);
    /// [`StorageError::PreviousIo`] once the file has failed; I/O and pool errors from
    /// writing the pages (the entry is then not stored).
    pub fn put(
        &self,
        key: u128,
        value: &[u8],
        generations: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<(), StorageError> {
        let expires_at_ms = record::to_ms(expires_at);
        let record = record::encode_value(
            key,
            value,
            generations,
            expires_at_ms,
            self.session,
            self.compress_at,
        )?;
        self.check_record(&record)?;
        let mut log = self.log.lock();
        let loc = self.append(&mut log, &record)?;
        log.segments[loc.segment as usize].keys.push(key);
        self.index.write().insert(
            key,
            Loc {
                expires_at_ms,
                ..loc
            },
        );
        bump(&self.counters.puts);
        Ok(())
    }

    fn check_record(&self, record: &[u8]) -> Result<(), StorageError> {
        if record.len() > self.max_record_bytes() {
            return Err(StorageError::TooLarge {
                bytes: record.len(),
                max: self.max_record_bytes(),
            });
        }
        self.pool.check_io()
    }

    /// Appends a record; the caller holds the log lock (so the index changes it makes
    /// afterwards happen in log order). Returns where the record went.
    fn append(&self, log: &mut Log, record: &[u8]) -> Result<Loc, StorageError> {
        let (loc, reclaimed) = log.allocate(record.len());
        if let Some(reclaimed) = reclaimed {
            self.drop_reclaimed(reclaimed);
        }
        if let Err(err) = write_record(&self.pool, &self.geometry, &loc, record) {
            log.abandon(&loc);
            return Err(err);
        }
        self.counters
            .bytes_written
            .fetch_add(record.len() as u64, Ordering::Relaxed);
        Ok(loc)
    }

    /// Unindexes the entries of a segment about to be reused (invariant 3).
    fn drop_reclaimed(&self, reclaimed: Reclaimed) {
        let mut index = self.index.write();
        let mut dropped = 0;
        for key in reclaimed.keys {
            let here = index.get(&key).is_some_and(|loc| {
                loc.segment == reclaimed.segment && loc.epoch == reclaimed.epoch
            });
            if here {
                index.remove(&key);
                dropped += 1;
            }
        }
        bump(&self.counters.reclaimed_segments);
        self.counters
            .reclaimed_entries
            .fetch_add(dropped, Ordering::Relaxed);
    }

    /// The entry under `key`, or `None` if there is none, it expired, its segment was
    /// reclaimed, or its bytes fail a checksum (counted in [`DiskStats::corrupt`]; the
    /// entry is dropped). Never returns bytes other than those put.
    ///
    /// # Errors
    /// I/O and pool errors from reading pages ([`StorageError::Io`],
    /// [`StorageError::PreviousIo`], [`StorageError::PoolExhausted`]); the cache
    /// counts these as misses.
    pub fn get(&self, key: u128) -> Result<Option<DiskEntry>, StorageError> {
        let found = self.lookup(key)?;
        bump(if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        });
        Ok(found)
    }

    fn lookup(&self, key: u128) -> Result<Option<DiskEntry>, StorageError> {
        let Some(loc) = self.index.read().get(&key).copied() else {
            return Ok(None);
        };
        if record::expired(loc.expires_at_ms, record::now_ms()) {
            self.forget(key, &loc);
            bump(&self.counters.expired);
            return Ok(None);
        }
        let bytes = match read_record(&self.pool, &self.geometry, &loc) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None), // reclaimed under us
            Err(StorageError::Corrupt { .. }) => return Ok(self.corrupt(key, &loc)),
            Err(err) => return Err(err),
        };
        let decoded = Header::decode(&bytes)
            .ok()
            .filter(|h| h.key == key && h.kind == Kind::Value && h.len() == bytes.len());
        let Some(header) = decoded else {
            return Ok(self.corrupt(key, &loc));
        };
        match record::decode_value(&header, &bytes) {
            Ok((generations, value)) => Ok(Some(DiskEntry {
                value,
                generations,
                expires_at: header.expires_at(),
                session: header.session,
            })),
            Err(_) => Ok(self.corrupt(key, &loc)),
        }
    }

    fn corrupt(&self, key: u128, loc: &Loc) -> Option<DiskEntry> {
        tracing::warn!(key = %format_args!("{key:032x}"), segment = loc.segment, "disk tier: corrupt entry dropped");
        bump(&self.counters.corrupt);
        self.forget(key, loc);
        None
    }

    /// Unindexes `key` if it still points at `loc`.
    fn forget(&self, key: u128, loc: &Loc) {
        let mut index = self.index.write();
        if index.get(&key) == Some(loc) {
            index.remove(&key);
        }
    }

    /// Removes `key`; returns whether it was present. A tombstone is appended so the
    /// removal survives a restart once it is written back; until then a crash can bring
    /// the entry back (removal is not a freshness mechanism: generations are).
    ///
    /// # Errors
    /// As [`put`](Self::put); the key is unindexed even if the tombstone write fails.
    pub fn remove(&self, key: u128) -> Result<bool, StorageError> {
        let tombstone = record::encode_tombstone(key, self.session);
        let mut log = self.log.lock();
        if self.index.write().remove(&key).is_none() {
            return Ok(false);
        }
        bump(&self.counters.removes);
        self.check_record(&tombstone)?;
        self.append(&mut log, &tombstone)?;
        Ok(true)
    }

    /// Writes every dirty page and fsyncs: every put and remove that returned before the
    /// call is durable when it returns `Ok`.
    ///
    /// # Errors
    /// As [`BufferPool::flush`]: a failed write or fsync leaves the store failed
    /// (every later put, flush and uncached get returns [`StorageError::PreviousIo`])
    /// until it is reopened.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.pool.flush()
    }

    /// Flushes and closes the store (releasing the directory lock).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn close(self) -> Result<(), StorageError> {
        self.pool.close()
    }

    /// Evicts every unpinned page from the buffer pool (dirty ones are written first),
    /// so the next gets read from the file: for cold-read benchmarks and tests.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn evict_pages(&self) -> Result<(), StorageError> {
        self.pool.evict_all().map(|_| ())
    }

    /// A snapshot of the counters, with the buffer pool's.
    pub fn stats(&self) -> DiskStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        DiskStats {
            entries: self.index.read().len() as u64,
            hits: load(&c.hits),
            misses: load(&c.misses),
            puts: load(&c.puts),
            removes: load(&c.removes),
            expired: load(&c.expired),
            corrupt: load(&c.corrupt),
            reclaimed_segments: load(&c.reclaimed_segments),
            reclaimed_entries: load(&c.reclaimed_entries),
            bytes_written: load(&c.bytes_written),
            recovered_entries: self.recovered_entries,
            recovery_dropped: self.recovery_dropped,
            session: self.session,
            pool: self.pool.stats(),
        }
    }

    /// Checks the invariants on the store, its log and its buffer pool, and reads back
    /// every indexed record (O(bytes stored)). For tests: call it while no other thread
    /// uses the store.
    ///
    /// # Errors
    /// A description of the first violated invariant, or of an I/O error while reading.
    pub fn validate(&self) -> Result<(), String> {
        self.pool.validate()?;
        let log = self.log.lock();
        let index = self.index.read();
        let capacity = self.geometry.segment_capacity();
        let mut previous = 0;
        for &segment in &log.fifo {
            let seg = &log.segments[segment as usize];
            if seg.epoch <= previous || seg.epoch >= log.next_epoch || seg.end > capacity {
                return Err(format!(
                    "segment {segment}: epoch {} after {previous}, next {}, end {}",
                    seg.epoch, log.next_epoch, seg.end
                ));
            }
            previous = seg.epoch;
        }
        let used = log.segments.iter().filter(|s| s.epoch != 0).count();
        if used != log.fifo.len() || log.active.is_some_and(|a| log.fifo.back() != Some(&a)) {
            return Err(format!(
                "{used} used segments, FIFO {:?}, active {:?}",
                log.fifo, log.active
            ));
        }
        for (&key, loc) in index.iter() {
            let seg = &log.segments[loc.segment as usize];
            if seg.epoch != loc.epoch
                || (loc.offset + loc.len) as usize > seg.end
                || !seg.keys.contains(&key)
            {
                return Err(format!(
                    "key {key:x}: {loc:?} not within segment epoch {} end {}",
                    seg.epoch, seg.end
                ));
            }
            let bytes = read_record(&self.pool, &self.geometry, loc)
                .map_err(|e| format!("key {key:x}: {e}"))?
                .ok_or_else(|| format!("key {key:x}: pages of another epoch"))?;
            let header = Header::decode(&bytes).map_err(|e| format!("key {key:x}: {e:?}"))?;
            if header.key != key || header.kind != Kind::Value {
                return Err(format!("key {key:x}: record of key {:x}", header.key));
            }
            record::decode_value(&header, &bytes).map_err(|e| format!("key {key:x}: {e:?}"))?;
        }
        Ok(())
    }
}

// The cache shares one store between tasks and threads.
const _: fn() = || {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<DiskStore>();
};
