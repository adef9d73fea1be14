//! Cache tiers: where results are kept, apart from what is kept and when it is fresh.
//!
//! - [`memory`] (L1): typed results in process memory, no decode on a hit.
//! - [`redis`] (L2): encoded results shared by every process on one Redis, checked
//!   against the shared generations in the same round trip.
//! - A byte tier (L3 disk) keeps results encoded by [`crate::codec`] and
//!   plugs in through [`ByteTier`]. [`disk`] (L3) is the persistent one, over the
//!   [buffer pool](crate::bufpool).
//!
//! A tier answers with a [`Lookup`]; whether a present entry is still *fresh* (its
//! generations are current) is decided by the cache, not the tier, because freshness
//! depends on the statement plan that reads it.

pub mod disk;
pub mod memory;
pub mod redis;

use crate::key::CacheKey;
use futures_core::future::BoxFuture;
use std::time::SystemTime;

/// The outcome of a tier lookup. A miss is a value, not an error.
#[derive(Debug)]
pub enum Lookup<V> {
    /// The tier holds an entry for the key; the caller still checks its freshness.
    Hit(V),
    /// The tier holds nothing for the key.
    Miss,
    /// The tier held an entry whose TTL had run out; it was dropped.
    Expired,
}

/// One encoded result as a byte tier stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEntry {
    /// A frame from [`crate::codec::encode`].
    pub frame: Vec<u8>,
    /// The generations the result depends on, as `(schema-qualified relation,
    /// generation)` pairs taken before its query ran, plus the global epoch under the
    /// name `"*"`. A byte tier outlives one process's counters, so it stores the
    /// individual generations rather than the in-process [`Stamp`] sum.
    ///
    /// In-process counters restart at zero, so generations only compare within one
    /// counter *incarnation*: a tier that survives a restart needs the counters
    /// persisted beside it (or an incarnation id in the key) before its entries may be
    /// served by the next process; otherwise a write made while the process was down,
    /// or before it crashed, goes unseen. [`disk::DiskTier`] persists per-table versions
    /// kept by Postgres itself and serves earlier incarnations' entries only through them.
    ///
    /// [`Stamp`]: crate::freshness::generations::Stamp
    pub generations: Vec<(String, u64)>,
    /// Wall-clock expiry (a byte tier may be read by another process or after a
    /// restart, so `Instant` would not do).
    pub expires_at: SystemTime,
}

/// A tier that stores encoded bytes by 128-bit key: the seam for L2 (Redis) and L3
/// (disk, over the buffer pool).
///
/// Contract:
/// - `get` and `put` never fail a query: the cache counts an `Err` as a fallback and
///   carries on as on a miss.
/// - A tier may drop any entry at any time (eviction), and must never return bytes
///   other than those `put` under the same key (a checksum failure is a `Miss`).
pub trait ByteTier: Send + Sync + 'static {
    /// A short name for logs and metrics (`"disk"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Look `key` up.
    ///
    /// # Errors
    /// I/O or protocol failures of the tier's backing store.
    fn get(&self, key: CacheKey) -> BoxFuture<'_, crate::Result<Lookup<EncodedEntry>>>;

    /// Store `entry` under `key`, replacing any previous entry.
    ///
    /// # Errors
    /// I/O or protocol failures of the tier's backing store.
    fn put(&self, key: CacheKey, entry: EncodedEntry) -> BoxFuture<'_, crate::Result<()>>;
}
