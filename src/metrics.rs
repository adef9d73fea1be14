//! Counters the cache keeps, and the [`Stats`] snapshot it reports.
//!
//! Hot counters (hits, misses) are striped over cache-line-padded cells chosen per
//! thread, so that two cores serving hits do not bounce one cache line between them
//! (DESIGN §8: a hit writes no shared line beyond one counter shard). Cold counters
//! (invalidations by table) sit behind a mutex on the write path only.

use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of stripes per counter; a power of two ≥ the core counts we target.
const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Cell128(AtomicU64);

/// A counter whose increments from different threads land on different cache lines.
#[derive(Debug, Default)]
pub struct StripedCounter {
    cells: [Cell128; STRIPES],
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        s.get()
    })
}

impl StripedCounter {
    /// Add one.
    pub fn incr(&self) {
        self.cells[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum over all stripes (a relaxed read: exact once writers are quiet).
    pub fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// Why a read went to the database without consulting the cache. Counted separately in
/// [`Stats::bypasses_by_reason`] under [`BypassReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BypassReason {
    /// The statement is not a read (a write, DDL, `RETURNING` through a cached fetch, …).
    NotARead,
    /// Calls a volatile or session-dependent function: a known builtin (`now`,
    /// `random`, …) or a user function that is not `IMMUTABLE` in `pg_proc`, in the
    /// text or inside a view it reads (`Catalog::reads_volatile`).
    VolatileFunction,
    /// Uses `'now'`, `'today'`, `'tomorrow'` or `'yesterday'`.
    TimeLiteral,
    /// `FOR UPDATE` / `FOR SHARE` row locks.
    RowLock,
    /// A data-modifying CTE.
    DataModifyingCte,
    /// `SELECT … INTO`.
    SelectInto,
    /// `TABLESAMPLE`.
    TableSample,
    /// Reads a temporary table.
    TempTable,
    /// Reads a system catalog, directly or through a view.
    SystemCatalog,
    /// `EXPLAIN ANALYZE`.
    ExplainAnalyze,
    /// Plain `EXPLAIN`: plans change with statistics, without a write.
    Explain,
    /// `SHOW`: a session setting.
    Show,
    /// A construct sqlparser reads differently from Postgres.
    Misread,
    /// More than one statement in the text.
    MultipleStatements,
    /// `FROM ONLY`, which sqlparser misreads.
    FromOnly,
    /// Text longer than the normalizer's cap.
    TooLarge,
    /// Text the normalizer could not parse.
    Unparseable,
    /// A read issued through the plain `Executor` (`.fetch_all(&cache)`): never cached.
    PlainExecutor,
    /// The caller asked for it (`.cache_bypass()`).
    PerQuery,
    /// Inside a transaction, the read touches a relation the transaction wrote (or the
    /// transaction's policy says so).
    Transaction,
    /// The relation catalog is being reloaded after DDL (or could not be loaded), so
    /// read sets may resolve to the wrong relations.
    CatalogUnavailable,
    /// The read depends on a watched table and the external-write listener is down or
    /// has not yet re-read the version rows since it reconnected
    /// ([`crate::freshness::watch`]): a write made outside the cache could be unseen.
    WatchUnavailable,
}

impl BypassReason {
    /// Every reason, in a fixed order.
    pub const ALL: [BypassReason; 22] = [
        BypassReason::NotARead,
        BypassReason::VolatileFunction,
        BypassReason::TimeLiteral,
        BypassReason::RowLock,
        BypassReason::DataModifyingCte,
        BypassReason::SelectInto,
        BypassReason::TableSample,
        BypassReason::TempTable,
        BypassReason::SystemCatalog,
        BypassReason::ExplainAnalyze,
        BypassReason::Explain,
        BypassReason::Show,
        BypassReason::Misread,
        BypassReason::MultipleStatements,
        BypassReason::FromOnly,
        BypassReason::TooLarge,
        BypassReason::Unparseable,
        BypassReason::PlainExecutor,
        BypassReason::PerQuery,
        BypassReason::Transaction,
        BypassReason::CatalogUnavailable,
        BypassReason::WatchUnavailable,
    ];

    /// A short snake_case label: the key in [`Stats::bypasses_by_reason`].
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::NotARead => "not_a_read",
            BypassReason::VolatileFunction => "volatile_function",
            BypassReason::TimeLiteral => "time_literal",
            BypassReason::RowLock => "row_lock",
            BypassReason::DataModifyingCte => "data_modifying_cte",
            BypassReason::SelectInto => "select_into",
            BypassReason::TableSample => "tablesample",
            BypassReason::TempTable => "temp_table",
            BypassReason::SystemCatalog => "system_catalog",
            BypassReason::ExplainAnalyze => "explain_analyze",
            BypassReason::Explain => "explain",
            BypassReason::Show => "show",
            BypassReason::Misread => "misread",
            BypassReason::MultipleStatements => "multiple_statements",
            BypassReason::FromOnly => "from_only",
            BypassReason::TooLarge => "too_large",
            BypassReason::Unparseable => "unparseable",
            BypassReason::PlainExecutor => "plain_executor",
            BypassReason::PerQuery => "per_query",
            BypassReason::Transaction => "transaction",
            BypassReason::CatalogUnavailable => "catalog_unavailable",
            BypassReason::WatchUnavailable => "watch_unavailable",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("ALL lists every reason")
    }
}

/// The live counters of one cache. Internal; read them through [`Stats`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reads served from the cache (memory or a byte tier).
    pub hits: StripedCounter,
    /// Of `hits`, those served from a byte tier (and promoted to memory).
    pub byte_tier_hits: AtomicU64,
    /// Cacheable reads that found no current entry.
    pub misses: StripedCounter,
    /// Misses answered by another caller's in-flight query (single-flight).
    pub coalesced: AtomicU64,
    /// Entries stored.
    pub fills: AtomicU64,
    /// Fills refused because a write moved the read set's generations meanwhile.
    pub stale_fills_refused: AtomicU64,
    /// Failures inside the cache that fell back to the database.
    pub fallbacks: AtomicU64,
    /// Of `hits`, those served from the Redis tier (L2).
    pub redis_hits: AtomicU64,
    /// Results stored in the Redis tier.
    pub redis_fills: AtomicU64,
    /// Results the Redis tier's cost-based admission did not store.
    pub redis_admission_rejected: AtomicU64,
    fallbacks_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    /// Fills skipped because their shape was not admitted (`cache/admission.rs`).
    pub fills_not_admitted: AtomicU64,
    /// Times a shape was rejected by admission.
    pub shapes_rejected: AtomicU64,
    /// Times a rejected shape was admitted again.
    pub shapes_readmitted: AtomicU64,
    /// Cached reads whose read set depends on a table without watch triggers.
    pub unwatched_reads: StripedCounter,
    bypasses: [AtomicU64; BypassReason::ALL.len()],
    invalidations_global: AtomicU64,
    invalidations_by_table: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Count one bypass.
    pub fn bypass(&self, reason: BypassReason) {
        self.bypasses[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one bump of each named relation. Allocates a name only the first time a
    /// relation is counted (this runs on every write).
    pub fn invalidated<'a>(&self, relations: impl IntoIterator<Item = &'a str>) {
        let mut relations = relations.into_iter().peekable();
        if relations.peek().is_none() {
            return;
        }
        let mut map = self.invalidations_by_table.lock();
        for r in relations {
            // Row-level counters (`freshness::row_keys`): a key bucket counts as
            // `table#keys`; the key-writes counter bumped with it is not counted.
            let r: std::borrow::Cow<'_, str> = match r.rsplit_once('#') {
                Some((_, "k")) => continue,
                Some((table, bucket))
                    if bucket.len() > 1
                        && bucket.starts_with('b')
                        && bucket[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!("{table}#keys").into()
                }
                _ => r.into(),
            };
            let r = &*r;
            match map.get_mut(r) {
                Some(n) => *n += 1,
                None => {
                    map.insert(r.to_owned(), 1);
                }
            }
        }
    }

    /// Count one fallback to the database, by a short snake_case reason
    /// (`redis_timeout`, `redis_error`, `redis_decode`, …).
    pub fn fallback(&self, reason: &'static str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        *self.fallbacks_by_reason.lock().entry(reason).or_default() += 1;
    }

    /// Count one bump of the global epoch.
    pub fn invalidated_all(&self) {
        self.invalidations_global.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot; `entries`, `bytes` and `evictions` come from the memory tier.
    pub fn snapshot(&self, entries: u64, bytes: u64, evictions: u64) -> Stats {
        let bypasses_by_reason: BTreeMap<&'static str, u64> = BypassReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.bypasses[r.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let invalidations_by_table = self.invalidations_by_table.lock().clone();
        let invalidations_global = self.invalidations_global.load(Ordering::Relaxed);
        Stats {
            hits: self.hits.get(),
            byte_tier_hits: self.byte_tier_hits.load(Ordering::Relaxed),
            misses: self.misses.get(),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            fills: self.fills.load(Ordering::Relaxed),
            stale_fills_refused: self.stale_fills_refused.load(Ordering::Relaxed),
            bypasses: bypasses_by_reason.values().sum(),
            bypasses_by_reason,
            invalidations: invalidations_by_table.values().sum::<u64>() + invalidations_global,
            invalidations_global,
            invalidations_by_table,
            evictions,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            fallbacks_by_reason: self.fallbacks_by_reason.lock().clone(),
            redis_hits: self.redis_hits.load(Ordering::Relaxed),
            redis_fills: self.redis_fills.load(Ordering::Relaxed),
            redis_admission_rejected: self.redis_admission_rejected.load(Ordering::Relaxed),
            fills_not_admitted: self.fills_not_admitted.load(Ordering::Relaxed),
            shapes_rejected: self.shapes_rejected.load(Ordering::Relaxed),
            shapes_readmitted: self.shapes_readmitted.load(Ordering::Relaxed),
            unwatched_reads: self.unwatched_reads.get(),
            entries,
            bytes,
        }
    }
}

/// A point-in-time copy of a cache's counters (`QueryCache::stats`). Counts are since
/// the cache was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Cached reads served from the cache (memory, or a byte tier such as the disk
    /// tier), with no database round trip.
    pub hits: u64,
    /// Of `hits`, those served from a byte tier (then promoted to memory).
    pub byte_tier_hits: u64,
    /// Cached reads that found no current entry (each ran the query or joined one
    /// in flight).
    pub misses: u64,
    /// Of `misses`, those answered by another caller's in-flight query
    /// (single-flight) instead of their own.
    pub coalesced: u64,
    /// Results stored in the memory tier.
    pub fills: u64,
    /// Results not stored because a write to their read set returned while their query
    /// ran (the stale fill the generations exist to catch).
    pub stale_fills_refused: u64,
    /// Reads that went to the database without consulting the cache, all reasons.
    pub bypasses: u64,
    /// `bypasses` by [`BypassReason::as_str`]; reasons with a zero count are absent.
    pub bypasses_by_reason: BTreeMap<&'static str, u64>,
    /// Generation bumps: one per relation per write, plus one per global bump.
    pub invalidations: u64,
    /// Global bumps (`invalidate_all`, writes the cache could not analyse, DDL).
    pub invalidations_global: u64,
    /// Relation bumps by schema-qualified relation name; key writes invalidated row
    /// by row ([`Granularity::Row`](crate::Granularity)) count one bump of
    /// `table#keys` per key bucket instead.
    pub invalidations_by_table: BTreeMap<String, u64>,
    /// Entries the memory tier evicted to stay within its byte budget.
    pub evictions: u64,
    /// Failures inside the cache (an entry that could not be weighed, a tier error)
    /// that fell back to the database; the query itself did not fail.
    pub fallbacks: u64,
    /// Of `fallbacks`, those counted by reason (Redis tier and shared generations:
    /// `redis_timeout`, `redis_error`, `redis_decode`, `redis_bump_failed`); other
    /// fallbacks are counted in the total only.
    pub fallbacks_by_reason: BTreeMap<&'static str, u64>,
    /// Of `hits`, those served from the Redis tier (L2; then promoted to memory).
    pub redis_hits: u64,
    /// Results stored in the Redis tier.
    pub redis_fills: u64,
    /// Results not stored in the Redis tier by its admission rule (cheap to recompute:
    /// see [`RedisOptions::admit_min_miss_cost`](crate::tier::redis::RedisOptions::admit_min_miss_cost)).
    pub redis_admission_rejected: u64,
    /// Misses whose result was not stored because adaptive admission had rejected
    /// their statement shape: its results were being invalidated before any hit.
    pub fills_not_admitted: u64,
    /// Times a statement shape was rejected by adaptive admission (fewer than 1 in 32
    /// of its last 64 results hit before a write invalidated them).
    pub shapes_rejected: u64,
    /// Times a rejected shape was admitted again (its probe fills were hit).
    pub shapes_readmitted: u64,
    /// Cached reads (not otherwise bypassed) whose read set depends on a table without
    /// watch triggers ([`crate::freshness::watch`]): a write to it made outside the
    /// cache is not seen until the entry's TTL. Without
    /// [`watch_tables`](crate::QueryCacheBuilder::watch_tables), every cached read of a
    /// table counts.
    pub unwatched_reads: u64,
    /// Entries held in the memory tier now.
    pub entries: u64,
    /// Estimated bytes held by the memory tier now (its weigher's sum).
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counter_sums_increments_from_many_threads() {
        let c = StripedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| c.incr()));
            }
        });
        assert_eq!(c.get(), 4000);
    }

    #[test]
    fn snapshot_totals_are_the_sums_of_their_parts() {
        let m = Metrics::default();
        m.bypass(BypassReason::RowLock);
        m.bypass(BypassReason::RowLock);
        m.bypass(BypassReason::PerQuery);
        m.invalidated(["public.film", "public.actor"]);
        m.invalidated(["public.film"]);
        m.invalidated_all();
        let s = m.snapshot(0, 0, 0);
        assert_eq!(s.bypasses, 3);
        assert_eq!(s.bypasses_by_reason.get("row_lock"), Some(&2));
        assert_eq!(s.invalidations_by_table.get("public.film"), Some(&2));
        assert_eq!(s.invalidations, 4);
    }

    #[test]
    fn every_reason_has_a_distinct_label() {
        let mut labels: Vec<_> = BypassReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), BypassReason::ALL.len());
    }
}
