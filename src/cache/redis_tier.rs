//! The read path's use of the Redis tier (L2): one pipelined round trip that fetches
//! the entry and the read set's current shared generations, and the fill after a miss.
//! See [`tier::redis`](crate::tier::redis) for the tier and
//! [`freshness::shared`](crate::freshness::shared) for why it is never stale.

use super::QueryCache;
use super::driver::Driver;
use super::fetch::CacheValue;
use super::plan::Plan;
use crate::codec;
use crate::freshness::generations::Stamp;
use crate::freshness::shared::RemoteSnapshot;
use crate::key::CacheKey;
use crate::tier::memory::{Entry, weigh};
use crate::tier::redis::entry;
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What an L2 lookup found.
pub(super) enum Lookup<T> {
    /// A current entry: serve it (already promoted to memory).
    Hit(Arc<[T]>),
    /// No current entry, but the read set's shared generations were read (and applied
    /// to this process's detectors) after the read began: lower tiers and the fill's
    /// stamp may be judged against the local counters.
    Synced(RemoteSnapshot, Stamp),
    /// Redis did not answer: nothing whose freshness depends on it may be served.
    Failed,
    /// Not looked up: this statement's results are not admitted to Redis, so a lookup
    /// would find nothing (as for `Failed`, nothing was synced).
    Skipped,
}

/// After this many consecutive misses whose results Redis did not admit, a statement's
/// Redis lookups are skipped, but for one probe in [`REDIS_PROBE_EVERY`]: a miss then
/// costs no Redis round trip. Its memory hits are still checked (Strict) and its writes
/// still bumped, so this changes cost, never freshness.
pub(crate) const REDIS_IDLE_LIMIT: u32 = 8;
/// One lookup in this many is still sent for an idle statement, so a result that
/// becomes worth storing (slower, or larger) is noticed.
pub(crate) const REDIS_PROBE_EVERY: u32 = 16;

/// Look `key` up in Redis together with `plan`'s read-set generations.
pub(super) async fn lookup<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: CacheKey,
    plan: &Plan,
) -> Lookup<T> {
    let inner = &*cache.0;
    let Some(shared) = inner.shared.as_ref() else {
        return Lookup::Failed;
    };
    let idle = plan.redis_idle.load(Ordering::Relaxed);
    if idle >= REDIS_IDLE_LIMIT && !idle.is_multiple_of(REDIS_PROBE_EVERY) {
        plan.redis_idle.fetch_add(1, Ordering::Relaxed);
        return Lookup::Skipped;
    }
    let entry_key = shared.link().entry_key(key);
    let (bytes, snapshot, stamp) = match shared
        .read(&inner.generations, &plan.reads, Some(&entry_key))
        .await
    {
        Ok(reply) => reply,
        Err(err) => {
            tracing::debug!("querycache: redis lookup failed, treated as a miss: {err}");
            inner.metrics.fallback(err.reason());
            return Lookup::Failed;
        }
    };
    let Some(bytes) = bytes else {
        return Lookup::Synced(snapshot, stamp);
    };
    let parsed = match entry::decode(&bytes) {
        Ok(parsed) => parsed,
        Err(err) => {
            tracing::debug!("querycache: undecodable redis entry {key}: {err}");
            inner.metrics.fallback("redis_decode");
            return Lookup::Synced(snapshot, stamp);
        }
    };
    if Some(parsed.incarnation) != snapshot.incarnation || parsed.values != snapshot.values {
        return Lookup::Synced(snapshot, stamp);
    }
    let rows: Arc<[T]> = match codec::decode::<T>(parsed.frame) {
        Ok(rows) => rows.into(),
        Err(err) => {
            tracing::debug!("querycache: undecodable redis frame {key}: {err}");
            inner.metrics.fallback("redis_decode");
            return Lookup::Synced(snapshot, stamp);
        }
    };
    // Serving the rows is right: the reply reflects every bump that returned before
    // this read began. Promoting them is right only under a stamp that stands for
    // exactly the generations they were checked against (`exact`): a stamp that
    // already includes a newer change would let the older rows pass as current.
    if snapshot.exact {
        promote(cache, key, plan, stamp, &rows);
    }
    plan.redis_idle.store(0, Ordering::Relaxed);
    inner.metrics.redis_hits.fetch_add(1, Ordering::Relaxed);
    Lookup::Hit(rows)
}

fn promote<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: CacheKey,
    plan: &Plan,
    stamp: Stamp,
    rows: &Arc<[T]>,
) {
    let inner = &*cache.0;
    let Ok(weight) = weigh(rows) else {
        return;
    };
    let entry: Arc<Entry<dyn Any + Send + Sync>> = Arc::new(Entry {
        stamp,
        plan: plan.version,
        expires_at: Instant::now() + inner.config.default_ttl,
        weight,
        key_bucket: plan.key_bucket,
        was_hit: Default::default(),
        value: Arc::clone(rows),
    });
    inner.memory.insert(key, entry);
}

/// After a miss whose lookup read `snapshot` before the query ran: store `rows` in
/// Redis stamped with it, if the admission rule takes them. `cost` is how long the
/// query took.
pub(super) async fn fill<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: CacheKey,
    plan: &Plan,
    snapshot: &RemoteSnapshot,
    rows: &[T],
    cost: Duration,
    ttl: Duration,
) {
    let inner = &*cache.0;
    let (Some(shared), Some(options)) = (inner.shared.as_ref(), inner.config.redis.as_ref()) else {
        return;
    };
    let Some(incarnation) = snapshot.incarnation else {
        return;
    };
    if !options.admits(cost, rows.len()) {
        plan.redis_idle.fetch_add(1, Ordering::Relaxed);
        inner
            .metrics
            .redis_admission_rejected
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    let frame = match codec::encode(rows, codec::DEFAULT_COMPRESS_THRESHOLD) {
        Ok(frame) => frame,
        Err(_) => return inner.metrics.fallback("redis_encode"),
    };
    plan.redis_idle.store(0, Ordering::Relaxed);
    let bytes = entry::encode(incarnation, &snapshot.values, &frame);
    if bytes.len() > options.max_entry_bytes {
        inner
            .metrics
            .redis_admission_rejected
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut cmd = redis::cmd("SET");
    cmd.arg(shared.link().entry_key(key))
        .arg(bytes)
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
    match shared.link().command::<()>(&cmd).await {
        Ok(()) => {
            inner.metrics.redis_fills.fetch_add(1, Ordering::Relaxed);
        }
        Err(err) => {
            tracing::debug!("querycache: redis fill failed: {err}");
            inner.metrics.fallback(err.reason());
        }
    }
}
