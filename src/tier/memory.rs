//! L1: typed results in process memory, bounded by bytes.
//!
//! Built on `quick_cache::sync::Cache` with a weigher: a sharded, concurrent cache
//! whose eviction is S3-FIFO-class (a small probationary FIFO, a main CLOCK queue and a
//! ghost queue of recently evicted keys; Yang et al., SOSP 2023). One-hit wonders — a
//! scan — pass through the probationary queue without displacing the hot set.
//! `benches/memory_tier.rs` measures hit ratio and latency beside moka (W-TinyLFU).
//!
//! Entries hold the typed rows (`Arc<[T]>`) type-erased as `dyn Any`, so a hit decodes
//! nothing: it checks the header and clones an `Arc` (or copies the rows out).

use crate::freshness::generations::Stamp;
use crate::key::CacheKey;
use crate::tier::Lookup;
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use std::any::Any;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bytes charged per entry on top of its rows: the `Entry` header and its `Arc`
/// (≈ 64 B), the rows' `Arc<[T]>` header (16 B), and quick_cache's slot for the key and
/// value pointer (≈ 48 B, from `quick_cache::sync::Cache::memory_used` at 100 000 entries).
pub const ENTRY_OVERHEAD: u64 = 128;

/// One cached result with what the cache needs to judge it.
///
/// `V` is `Arc<[T]>` when built and `dyn Any + Send + Sync` once stored
/// ([`ErasedEntry`]); `Arc<Entry<Arc<[T]>>>` coerces to `Arc<ErasedEntry>`.
#[derive(Debug)]
pub struct Entry<V: ?Sized> {
    /// The read set's stamp taken before the query ran.
    pub stamp: Stamp,
    /// Identity of the statement plan whose read set `stamp` sums over.
    pub plan: u64,
    /// When the TTL runs out.
    pub expires_at: Instant,
    /// Estimated bytes held (see [`weigh`]); what the byte budget counts.
    pub weight: u64,
    /// The key bucket of a row-level key read (`freshness::row_keys`): a hit finds
    /// its read set by it without decoding the binds again.
    pub key_bucket: Option<u32>,
    /// Set by the entry's first hit (adaptive admission counts entries invalidated
    /// before any hit). Written once, so later hits only read its cache line.
    pub was_hit: std::sync::atomic::AtomicBool,
    /// The rows.
    pub value: V,
}

/// An [`Entry`] with its rows' type erased.
pub type ErasedEntry = Entry<dyn Any + Send + Sync>;

/// Rows encoded one by one to estimate a large result's payload.
const WEIGH_SAMPLE: usize = 32;

/// Estimated memory held by `rows` in bytes: their inline size (`size_of::<T>()` each),
/// plus their MessagePack length as the estimate of heap payload (string and byte
/// contents, nested collections, JSON values), plus [`ENTRY_OVERHEAD`].
///
/// MessagePack length tracks heap size closely for text and bytes and undercounts
/// pointer-rich values (a `serde_json::Value` map costs more in memory than encoded);
/// it is an estimate, chosen because it needs only the `Serialize` bound cached types
/// already have. Results of more than 64 rows are estimated from 32 rows spread evenly
/// over the result, scaled to its length, so weighing stays a small part of a fill.
///
/// # Errors
/// When `T`'s `Serialize` impl fails.
pub fn weigh<T: serde::Serialize>(rows: &[T]) -> Result<u64, rmp_serde::encode::Error> {
    let heap = if rows.len() <= 2 * WEIGH_SAMPLE {
        crate::codec::encoded_len(rows)?
    } else {
        let mut sampled = 0;
        for row in rows
            .iter()
            .step_by(rows.len() / WEIGH_SAMPLE)
            .take(WEIGH_SAMPLE)
        {
            sampled += crate::codec::encoded_len(row)?;
        }
        sampled * rows.len() / WEIGH_SAMPLE
    };
    Ok((std::mem::size_of_val(rows) + heap) as u64 + ENTRY_OVERHEAD)
}

#[derive(Clone, Copy, Debug, Default)]
struct EntryWeighter;

impl Weighter<CacheKey, Arc<ErasedEntry>> for EntryWeighter {
    fn weight(&self, _key: &CacheKey, entry: &Arc<ErasedEntry>) -> u64 {
        entry.weight.max(1)
    }
}

/// Collects the entries an operation displaced, so that they are dropped after the
/// shard lock is released (dropping rows can be a large deallocation) and so that
/// [`MemoryTier::insert`] can tell evictions from replacements of the same key:
/// quick_cache reports both through `on_evict`.
#[derive(Clone, Debug, Default)]
struct Displaced;

impl Lifecycle<CacheKey, Arc<ErasedEntry>> for Displaced {
    type RequestState = Vec<(CacheKey, Arc<ErasedEntry>)>;

    fn on_evict(&self, state: &mut Self::RequestState, key: CacheKey, entry: Arc<ErasedEntry>) {
        state.push((key, entry));
    }
}

/// Keys are already xxh3-128 digests: fold and multiply (Fibonacci hashing) instead of
/// hashing them again, which keeps even non-random test keys spread over the shards.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = ((v as u64) ^ ((v >> 64) as u64) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The memory tier. Cheap to share behind the cache's `Arc`; all methods take `&self`.
pub struct MemoryTier {
    entries:
        Cache<CacheKey, Arc<ErasedEntry>, EntryWeighter, BuildHasherDefault<KeyHasher>, Displaced>,
    evictions: AtomicU64,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
            .field("capacity", &self.entries.capacity())
            .finish()
    }
}

impl MemoryTier {
    /// A tier holding at most `capacity` bytes as estimated by [`weigh`].
    ///
    /// `estimated_entries` sizes the hash tables up front (quick_cache grows them
    /// anyway); `capacity / 2 KiB` is a fair guess for typical results.
    ///
    /// # Panics
    /// Never for `capacity ≥ 1`; quick_cache only rejects a zero item estimate, which is
    /// clamped to 1.
    pub fn new(capacity: u64, estimated_entries: usize) -> Self {
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated_entries.max(1))
            .weight_capacity(capacity)
            .build()
            .expect("weight capacity and item estimate are set");
        MemoryTier {
            entries: Cache::with_options(
                options,
                EntryWeighter,
                BuildHasherDefault::default(),
                Displaced,
            ),
            evictions: AtomicU64::new(0),
        }
    }

    /// The entry under `key`, unless it has expired by `now` (then it is removed).
    pub fn get(&self, key: &CacheKey, now: Instant) -> Lookup<Arc<ErasedEntry>> {
        match self.entries.get(key) {
            None => Lookup::Miss,
            Some(entry) if entry.expires_at <= now => {
                self.entries.remove_if(key, |e| Arc::ptr_eq(e, &entry));
                Lookup::Expired
            }
            Some(entry) => Lookup::Hit(entry),
        }
    }

    /// Store `entry` under `key`, replacing any previous one; may evict others.
    pub fn insert(&self, key: CacheKey, entry: Arc<ErasedEntry>) {
        let mut displaced = Vec::new();
        self.entries
            .insert_with_lifecycle(key, entry, &mut displaced);
        let evicted = displaced.iter().filter(|(k, _)| *k != key).count();
        if evicted > 0 {
            self.evictions.fetch_add(evicted as u64, Ordering::Relaxed);
        }
    }

    /// Drop every entry.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Entries held.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// `true` when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated bytes held (sum of entry weights).
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// The byte budget.
    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }

    /// Entries evicted since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(rows: Vec<String>, expires_at: Instant) -> Arc<ErasedEntry> {
        let weight = weigh(&rows).expect("weigh");
        let value: Arc<[String]> = rows.into();
        Arc::new(Entry {
            stamp: crate::freshness::generations::Generations::new().stamp(&Default::default()),
            plan: 1,
            expires_at,
            weight,
            key_bucket: None,
            was_hit: Default::default(),
            value,
        })
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn hit_returns_the_typed_rows() {
        let tier = MemoryTier::new(1 << 20, 16);
        tier.insert(CacheKey(7), entry(vec!["a".into(), "b".into()], far()));
        let Lookup::Hit(e) = tier.get(&CacheKey(7), Instant::now()) else {
            panic!("expected a hit");
        };
        let rows = e.value.downcast_ref::<Arc<[String]>>().expect("type");
        assert_eq!(&rows[..], ["a", "b"]);
        assert!(matches!(
            tier.get(&CacheKey(8), Instant::now()),
            Lookup::Miss
        ));
    }

    #[test]
    fn weight_counts_heap_payload_not_just_the_struct() {
        let small = weigh(&[String::from("x")]).expect("weigh");
        let large = weigh(&[String::from("x").repeat(10_000)]).expect("weigh");
        assert!(large >= small + 9_999, "{small} {large}");
    }

    #[test]
    fn sampled_weight_of_a_large_result_is_close_to_the_exact_one() {
        let rows: Vec<String> = (0..1000).map(|i| "x".repeat(50 + i % 100)).collect();
        let exact = (std::mem::size_of_val(&rows[..])
            + crate::codec::encoded_len(&rows).expect("len")) as u64
            + ENTRY_OVERHEAD;
        let sampled = weigh(&rows).expect("weigh");
        let error = sampled.abs_diff(exact) as f64 / exact as f64;
        assert!(error < 0.05, "sampled {sampled} vs exact {exact}");
    }

    #[test]
    fn stays_within_its_byte_budget_and_counts_evictions() {
        let capacity = 256 * 1024;
        let tier = MemoryTier::new(capacity, 64);
        for i in 0..2_000u128 {
            tier.insert(CacheKey(i), entry(vec!["v".repeat(1000)], far()));
        }
        assert!(tier.bytes() <= capacity, "{} > {capacity}", tier.bytes());
        assert!(tier.len() < 2_000);
        assert!(tier.evictions() >= 2_000 - tier.len());
    }

    #[test]
    fn replacing_an_entry_is_not_an_eviction() {
        let tier = MemoryTier::new(1 << 20, 16);
        for _ in 0..10 {
            tier.insert(CacheKey(3), entry(vec!["x".into()], far()));
        }
        assert_eq!((tier.len(), tier.evictions()), (1, 0));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let tier = MemoryTier::new(1 << 20, 16);
        let now = Instant::now();
        tier.insert(CacheKey(1), entry(vec![], now + Duration::from_secs(10)));
        assert!(matches!(tier.get(&CacheKey(1), now), Lookup::Hit(_)));
        let later = now + Duration::from_secs(10);
        assert!(matches!(tier.get(&CacheKey(1), later), Lookup::Expired));
        assert!(matches!(tier.get(&CacheKey(1), now), Lookup::Miss));
    }

    #[test]
    fn a_scan_does_not_flush_the_hot_set() {
        // 100 hot entries of ~1.1 KiB in a ~440 KiB budget, each read several times;
        // then a scan of 2 000 one-time entries (5× the budget).
        let tier = MemoryTier::new(440 * 1024, 400);
        let value = || entry(vec!["h".repeat(1000)], far());
        for round in 0..4 {
            for k in 0..100u128 {
                if round == 0 {
                    tier.insert(CacheKey(k), value());
                } else {
                    let _ = tier.get(&CacheKey(k), Instant::now());
                }
            }
        }
        for k in 1_000..3_000u128 {
            tier.insert(CacheKey(k), value());
        }
        let kept = (0..100u128)
            .filter(|k| matches!(tier.get(&CacheKey(*k), Instant::now()), Lookup::Hit(_)))
            .count();
        assert!(kept >= 80, "only {kept}/100 hot entries survived the scan");
    }
}
