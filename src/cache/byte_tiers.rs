//! The read path's use of a byte tier (L3 disk): look up after a memory miss, fill
//! after a memory fill.
//!
//! A byte-tier entry carries the individual generations of its read set (plus the
//! epoch under `"*"`) as they were before its query ran. It is served only if they
//! equal the current ones, the same check the memory tier makes with its stamp; then it
//! is promoted to memory. A tier error or an undecodable entry is a miss, counted in
//! [`Stats::fallbacks`](crate::Stats::fallbacks).

use super::QueryCache;
use super::driver::Driver;
use super::fetch::CacheValue;
use super::plan::Plan;
use crate::codec;
use crate::freshness::generations::Stamp;
use crate::key::CacheKey;
use crate::tier::memory::{Entry, weigh};
use crate::tier::{EncodedEntry, Lookup};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// The generations of `plan`'s read set now, sorted by relation, then the epoch.
fn generations<DB: Driver>(cache: &QueryCache<DB>, plan: &Plan) -> Vec<(String, u64)> {
    let g = &cache.0.generations;
    let mut out: Vec<(String, u64)> = plan
        .reads
        .names()
        .iter()
        .map(|name| (name.to_string(), g.generation(name)))
        .collect();
    out.push(("*".to_owned(), g.epoch()));
    out
}

fn fallback<DB: Driver>(cache: &QueryCache<DB>, what: &str, err: &dyn std::fmt::Display) {
    tracing::debug!("querycache: byte tier {what} failed, treated as a miss: {err}");
    cache.0.metrics.fallbacks.fetch_add(1, Ordering::Relaxed);
}

/// After a memory miss: the byte tier's entry for `key`, if its generations are current.
/// `stamp` is the read set's stamp taken before the lookup; the entry is promoted to
/// memory under it only if no write moved it meanwhile.
pub(super) async fn hit<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: CacheKey,
    plan: &Plan,
    stamp: Stamp,
) -> Option<Arc<[T]>> {
    let inner = &*cache.0;
    let tier = inner.config.byte_tier.as_ref()?;
    let entry = match tier.get(key).await {
        Ok(Lookup::Hit(entry)) => entry,
        Ok(Lookup::Miss | Lookup::Expired) => return None,
        Err(err) => {
            fallback(cache, "get", &err);
            return None;
        }
    };
    if entry.generations != generations(cache, plan) {
        return None;
    }
    let rows: Arc<[T]> = match codec::decode::<T>(&entry.frame) {
        Ok(rows) => rows.into(),
        Err(err) => {
            fallback(cache, "decode", &err);
            return None;
        }
    };
    let remaining = entry
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    if let Ok(weight) = weigh(&rows)
        && inner.generations.stamp(&plan.reads) == stamp
    {
        let promoted: Arc<Entry<dyn Any + Send + Sync>> = Arc::new(Entry {
            stamp,
            plan: plan.version,
            expires_at: Instant::now() + remaining,
            weight,
            key_bucket: plan.key_bucket,
            was_hit: Default::default(),
            value: Arc::clone(&rows),
        });
        inner.memory.insert(key, promoted);
    }
    inner.metrics.byte_tier_hits.fetch_add(1, Ordering::Relaxed);
    Some(rows)
}

/// After a memory fill at `stamp`: store `rows` in the byte tier with the read set's
/// generations, unless a write moved them since `stamp` (then the generations read now
/// could be newer than the rows).
pub(super) async fn fill<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: CacheKey,
    plan: &Plan,
    stamp: Stamp,
    rows: &[T],
    ttl: Duration,
) {
    let inner = &*cache.0;
    let Some(tier) = inner.config.byte_tier.as_ref() else {
        return;
    };
    let generations = generations(cache, plan);
    if inner.generations.stamp(&plan.reads) != stamp {
        return;
    }
    let frame = match codec::encode(rows, codec::DEFAULT_COMPRESS_THRESHOLD) {
        Ok(frame) => frame,
        Err(err) => return fallback(cache, "encode", &err),
    };
    let entry = EncodedEntry {
        frame,
        generations,
        expires_at: SystemTime::now() + ttl,
    };
    if let Err(err) = tier.put(key, entry).await {
        fallback(cache, "put", &err);
    }
}
