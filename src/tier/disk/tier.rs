//! [`DiskTier`]: the disk store behind the cache's [`ByteTier`] seam, applying the
//! freshness-across-restarts rule of the [module docs](super).
//!
//! What it stores per entry, besides the codec frame: the in-process generations the
//! cache gave (`(relation, generation)` plus `("*", epoch)`), and the persistent stamps
//! derived from them ([`TableVersions::stamps`]). What it returns:
//!
//! - an entry written in this session: the generations as stored, which the cache
//!   compares with its current ones like a memory-tier entry;
//! - an entry of an earlier session (kept at open only if its stamps were all still
//!   current, [`TableVersions::still_fresh`]): every generation as 0, the value each
//!   counter had when this process started, so the same comparison serves it only if
//!   the process has seen no write to its read set since.

use super::restart::{Stamp, TableVersions};
use super::{DiskStore, DiskStoreBuilder, StorageError};
use crate::key::CacheKey;
use crate::tier::{ByteTier, EncodedEntry, Lookup};
use futures_core::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// The blob stored as the entry's generations.
type Blob = (Vec<(String, u64)>, Vec<Stamp>);

/// L3 for [`QueryCache`](crate::QueryCache): a [`DiskStore`] as a [`ByteTier`].
///
/// Its I/O runs inline on the calling task: a hit copies a few pages (microseconds when
/// the pool or the OS page cache holds them, `benches/disk_tier.rs`), a put copies into
/// the pool and leaves the `fdatasync` to the background writer. Dropping it flushes
/// (best effort, one `fdatasync`), so the next process starts warm.
pub struct DiskTier {
    store: DiskStore,
    versions: Option<TableVersions>,
}

impl DiskTier {
    /// Opens a store of at most `capacity_bytes` in `dir` with default settings; see
    /// [`DiskTier::with_builder`].
    ///
    /// # Errors
    /// As [`DiskStoreBuilder::open`].
    pub fn open(
        dir: &Path,
        capacity_bytes: u64,
        versions: Option<TableVersions>,
    ) -> Result<Self, StorageError> {
        Self::with_builder(DiskStore::builder(capacity_bytes), dir, versions)
    }

    /// Opens `builder` in `dir`. `versions` are the persistent table versions read at
    /// startup ([`TableVersions::load`], with the invalidation listener already up):
    /// with them, entries of earlier sessions whose stamps are all still current are
    /// kept; with `None` (nothing installed in the database), no entry outlives its
    /// session. Compression is left to the codec (its frames are already lz4'd).
    ///
    /// # Errors
    /// As [`DiskStoreBuilder::open`].
    pub fn with_builder(
        builder: DiskStoreBuilder,
        dir: &Path,
        versions: Option<TableVersions>,
    ) -> Result<Self, StorageError> {
        let at_open = versions.clone();
        let store = builder
            .with_compress_threshold(usize::MAX)
            .with_recovery_filter(move |entry| {
                let stamps = rmp_serde::from_slice::<Blob>(entry.generations).map(|(_, s)| s);
                match (&at_open, stamps) {
                    (Some(now), Ok(stamps)) => now.still_fresh(&stamps),
                    _ => false,
                }
            })
            .open(dir)?;
        Ok(Self { store, versions })
    }

    /// The store underneath (stats, flush, close).
    pub fn store(&self) -> &DiskStore {
        &self.store
    }

    fn lookup(&self, key: CacheKey) -> crate::Result<Lookup<EncodedEntry>> {
        let Some(entry) = self.store.get(key.0)? else {
            return Ok(Lookup::Miss);
        };
        let Ok((mut generations, _)) = rmp_serde::from_slice::<Blob>(&entry.generations) else {
            return Ok(Lookup::Miss); // not written by a DiskTier
        };
        if entry.session != self.store.session() {
            for (_, generation) in &mut generations {
                *generation = 0;
            }
        }
        Ok(Lookup::Hit(EncodedEntry {
            frame: entry.value,
            generations,
            expires_at: entry.expires_at.unwrap_or(UNIX_EPOCH),
        }))
    }

    fn store_entry(&self, key: CacheKey, entry: EncodedEntry) -> crate::Result<()> {
        let stamps = self
            .versions
            .as_ref()
            .map(|v| v.stamps(&entry.generations))
            .unwrap_or_default();
        let blob = rmp_serde::to_vec(&(entry.generations, stamps))
            .map_err(|e| crate::Error::Corrupt(format!("encoding generations: {e}")))?;
        match self
            .store
            .put(key.0, &entry.frame, &blob, Some(entry.expires_at))
        {
            // Too large for a segment: not admitted, not a failure.
            Err(StorageError::TooLarge { .. }) => Ok(()),
            other => Ok(other?),
        }
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        if let Err(err) = self.store.flush() {
            tracing::warn!(%err, "disk tier: flush at drop failed; recent entries are lost");
        }
    }
}

impl ByteTier for DiskTier {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn get(&self, key: CacheKey) -> BoxFuture<'_, crate::Result<Lookup<EncodedEntry>>> {
        Box::pin(std::future::ready(self.lookup(key)))
    }

    fn put(&self, key: CacheKey, entry: EncodedEntry) -> BoxFuture<'_, crate::Result<()>> {
        Box::pin(std::future::ready(self.store_entry(key, entry)))
    }
}

/// A shared tier: the cache holds one handle, the application keeps another for
/// [`DiskTier::store`] (stats, flush).
impl ByteTier for Arc<DiskTier> {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn get(&self, key: CacheKey) -> BoxFuture<'_, crate::Result<Lookup<EncodedEntry>>> {
        (**self).get(key)
    }

    fn put(&self, key: CacheKey, entry: EncodedEntry) -> BoxFuture<'_, crate::Result<()>> {
        (**self).put(key, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::disk::restart::{DDL_VERSION, INSTALL_ID};
    use std::time::{Duration, SystemTime};

    fn versions(film: i64) -> TableVersions {
        TableVersions::from_pairs([
            (INSTALL_ID.to_owned(), 1),
            (DDL_VERSION.to_owned(), 0),
            ("public.film".to_owned(), film),
        ])
    }

    fn entry(generation: u64) -> EncodedEntry {
        EncodedEntry {
            frame: b"frame bytes".to_vec(),
            generations: vec![("public.film".to_owned(), generation), ("*".to_owned(), 0)],
            expires_at: SystemTime::now() + Duration::from_secs(60),
        }
    }

    fn get(tier: &DiskTier, key: u128) -> Option<EncodedEntry> {
        match tier.lookup(CacheKey(key)).expect("lookup") {
            Lookup::Hit(entry) => Some(entry),
            _ => None,
        }
    }

    #[test]
    fn this_sessions_entries_keep_their_generations_and_older_ones_are_reset_or_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tier = DiskTier::open(dir.path(), 4 << 20, Some(versions(5))).expect("open");
        tier.store_entry(CacheKey(1), entry(0))
            .expect("put untouched");
        tier.store_entry(CacheKey(2), entry(3))
            .expect("put after writes");
        let got = get(&tier, 2).expect("hit");
        assert_eq!(
            (got.frame, got.generations),
            (entry(3).frame, entry(3).generations)
        );
        drop(tier); // flushes

        // Same versions: entry 1 survives with generations reset to the startup 0s;
        // entry 2 was stamped "unknown" (written after writes) and is gone.
        let tier = DiskTier::open(dir.path(), 4 << 20, Some(versions(5))).expect("reopen");
        assert_eq!(
            get(&tier, 1).expect("kept").generations,
            entry(0).generations
        );
        assert!(get(&tier, 2).is_none());
        drop(tier);

        let tier = DiskTier::open(dir.path(), 4 << 20, Some(versions(6))).expect("reopen");
        assert!(get(&tier, 1).is_none(), "film written while down");
        drop(tier);
        let tier = DiskTier::open(dir.path(), 4 << 20, None).expect("reopen");
        assert!(
            get(&tier, 1).is_none(),
            "no versions: nothing outlives its session"
        );
    }
}
