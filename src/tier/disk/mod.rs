//! L3, the disk tier: a persistent, log-structured store of encoded results over the
//! [buffer pool](crate::bufpool).
//!
//! # Architecture
//!
//! ```text
//!  put(key, value, generations, expires_at)
//!    ──► record (header + generations + value, lz4 above 4 KiB, xxh3 checksum)
//!    ──► appended to the active segment's pages through the buffer pool
//!    ──► index: key → (segment, offset, length, epoch, expiry)
//!  get(key) ──► index ──► pin the record's pages ──► verify ──► DiskEntry
//! ```
//!
//! - **File**: `querycache.pages` in the store's directory. Page 0 is the superblock
//!   (format, geometry, session counter); then `segments` segments of equal size
//!   (default `min(4 MiB, capacity / 4)`). The directory is `flock`ed while open.
//! - **Segments** are written append-only and reclaimed whole, oldest first (FIFO, as
//!   CacheLib's large-object cache and foyer's block engine, which keeps writes
//!   sequential). A segment gets a new, never reused **epoch** each time it is (re)started;
//!   every page written in it carries the epoch as its lsn, so a page left over from
//!   an earlier incarnation is recognised and ignored.
//! - **Records** may span pages (a 256 KiB result spans 33 pages of 8 KiB) but not
//!   segments. Format in `record.rs`.
//! - **Index**: a hash map in memory, about 50 bytes per entry; generations are not
//!   kept in memory but read with the value.
//! - **Cache seam**: [`DiskTier`] is the store as the cache's
//!   [`ByteTier`](crate::tier::ByteTier) (L3), applying the restart rule below; it
//!   leaves compression to the codec, whose frames are already lz4'd.
//! - **Durability**: a put is readable at once and durable after the next write-back:
//!   the pool's background writer (≥ 64 dirty pages, or 200 ms), [`DiskStore::flush`],
//!   or eviction. A crash loses at most the puts of that window. A removal writes a
//!   tombstone, with the same window.
//!
//! # Recovery
//!
//! At open every segment is scanned: its first page gives its epoch; records are read
//! in order until the end marker, a page that fails its checksum or header checks (torn,
//! foreign, never written), a page of another epoch, or a record that fails its own
//! checksum. Segments are replayed oldest epoch first, so the last put or remove of a
//! key wins. Nothing that fails a check is ever indexed, and a get re-verifies the
//! page and record checksums, so the store returns the bytes that were put or nothing.
//! Each open starts a fresh segment rather than appending after bytes a crash may have
//! torn.
//!
//! # Failures
//!
//! A corrupt page or record found by a get is a miss (counted in
//! [`DiskStats::corrupt`]) and the entry is dropped. I/O errors are returned; after a
//! failed write or fsync the store stays failed ([`StorageError::PreviousIo`]) until
//! it is reopened. The cache turns every error into a counted miss.
//!
//! # Freshness across restarts
//!
//! In-process generation counters restart at 0 with the process, so a generation
//! stored by an earlier process says nothing to the next one. The rule, proposed here
//! for the cache layer, which owns freshness:
//!
//! > An entry written in an earlier session is served only if, for every table in its
//! > read set, the table's **persistent version** recorded at fill time equals the
//! > version the current session read at startup, and the current session has not
//! > seen a write to the table since.
//!
//! The **persistent version** is a per-table counter kept *in Postgres* and bumped *in
//! the writing transaction* by a statement-level trigger on INSERT, UPDATE, DELETE and
//! TRUNCATE ([`restart::INSTALL_SQL`], [`restart::watch_table_sql`]):
//!
//! ```sql
//! CREATE TABLE querycache.table_version (table_name text PRIMARY KEY, version bigint NOT NULL);
//! -- per watched table: a row at 0, and
//! CREATE TRIGGER querycache_version BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON <table>
//!   FOR EACH STATEMENT EXECUTE FUNCTION querycache.bump_version();  -- version + 1
//! ```
//!
//! Why this counter: it commits with the write and disappears with a rollback, so every
//! committed write changes it, including writes from psql, other services, cascades and
//! triggers (each written table fires its own trigger), and writes made while no cache
//! process runs. `pg_stat_user_tables.n_tup_ins + n_tup_upd + n_tup_del` is not usable:
//! statistics reach it asynchronously after commit (up to about a second in
//! PostgreSQL 15), and `pg_stat_reset()` or crash recovery reset it, so a committed
//! write can be invisible there — a stale serve. One database-wide epoch would be
//! simpler but would drop every entry on any write. The cost is one row update per
//! writing statement per table, whose row lock serializes concurrent writers of the
//! same table until they commit. DDL changes results without writing a row (a
//! redefined view), so an event trigger on `ddl_command_end` bumps one more version,
//! `*ddl`, that every entry is stamped with.
//!
//! Step by step ([`restart`] has the pieces):
//!
//! 1. At startup, with the `LISTEN` connection already up (so no write slips between),
//!    read the versions: [`restart::TableVersions::load`]. A table without a version
//!    row is not watched, and entries that read it never outlive their session.
//! 2. On a fill, [`restart::TableVersions::stamps`] stamps each read-set table with its
//!    startup version if the session has seen no write to it yet (its in-process
//!    generation and the global epoch are still 0), else with "unknown", plus the DDL
//!    version and the installation id, so that a dropped and re-created version table (versions
//!    restarting at 0) cannot match old stamps. The stamps go into the entry's opaque
//!    `generations` blob next to whatever the memory-tier check needs.
//! 3. Open the store with [`DiskStoreBuilder::with_recovery_filter`] keeping an entry
//!    only if [`restart::TableVersions::still_fresh`]: every stamp known and equal to
//!    the startup version. This costs no I/O (the recovery scan reads the blob anyway).
//! 4. On a disk hit, [`DiskEntry::session`] tells the two cases apart: an entry of the
//!    current session ([`DiskStore::session`]) passes the same generation check as the
//!    memory tier; an entry of an earlier session (it passed step 3) is served only if
//!    the session has seen no write to its read set. A tier failure is a miss.
//!
//! Why it is sound: a stamp `v` is only ever the version read at startup, before the
//! fill ran, while no write had been seen; the fill's statement therefore saw every
//! write up to version `v`. A later write, whether seen by this process or made while it
//! was down, raises the version above `v`, so the entry fails step 3 at the next
//! start. A write whose notification had not yet arrived when the fill was stamped makes
//! the stamp too *low*, which only drops the entry. Tables without the trigger must be
//! stamped "unknown". `tests/disk_restart_freshness.rs` runs this rule against a real
//! Postgres: a write made while the store is closed drops exactly the entries that read
//! the written table.

mod builder;
mod log;
mod record;
mod recover;
pub mod restart;
mod store;
mod superblock;
mod tier;

pub use crate::bufpool::StorageError;
pub use builder::{DiskStoreBuilder, LOCK_FILE, PAGE_FILE};
pub use store::DiskStore;
pub use tier::DiskTier;

use crate::bufpool::PoolStats;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::SystemTime;

/// An entry read from the store, byte-exact as it was put.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskEntry {
    /// The value, decompressed.
    pub value: Vec<u8>,
    /// The opaque generations blob given to [`DiskStore::put`].
    pub generations: Vec<u8>,
    /// The expiry given to `put`, truncated to milliseconds.
    pub expires_at: Option<SystemTime>,
    /// The session that wrote the entry; less than [`DiskStore::session`] for an entry
    /// from an earlier process (see *Freshness across restarts*).
    pub session: u64,
}

/// An entry found by the recovery scan at open, shown to the recovery filter.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RecoveredEntry<'a> {
    /// The cache key.
    pub key: u128,
    /// The opaque generations blob stored with it.
    pub generations: &'a [u8],
    /// The session that wrote it.
    pub session: u64,
    /// Its expiry (entries already expired are dropped before the filter sees them).
    pub expires_at: Option<SystemTime>,
}

/// Counters of a [`DiskStore`] since it was opened, and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskStats {
    /// Gauge: entries in the index.
    pub entries: u64,
    /// Gets that returned an entry.
    pub hits: u64,
    /// Gets that returned `None` (absent, expired, reclaimed, corrupt).
    pub misses: u64,
    /// Successful puts.
    pub puts: u64,
    /// Removes that found the key.
    pub removes: u64,
    /// Gets that found an expired entry (and dropped it).
    pub expired: u64,
    /// Gets that found a page or record failing its checksum (and dropped the entry).
    pub corrupt: u64,
    /// Segments reclaimed (FIFO) to make room.
    pub reclaimed_segments: u64,
    /// Live entries dropped with those segments.
    pub reclaimed_entries: u64,
    /// Record bytes appended (after compression, with headers).
    pub bytes_written: u64,
    /// Entries indexed by the recovery scan at open.
    pub recovered_entries: u64,
    /// Entries the recovery scan dropped: expired, or refused by the recovery filter.
    pub recovery_dropped: u64,
    /// This open's session number.
    pub session: u64,
    /// The buffer pool's counters.
    pub pool: PoolStats,
}

/// Cache keys are already xxh3-128 hashes: the index folds them to 64 bits instead of
/// hashing them again.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u128(&mut self, key: u128) {
        self.0 ^= (key as u64) ^ ((key >> 64) as u64);
    }
}

/// Key → location of its live record.
pub(crate) type Index = HashMap<u128, log::Loc, BuildHasherDefault<KeyHasher>>;
