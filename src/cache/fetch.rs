//! Cached reads: the [`CachedQuery`] extension trait and the read path behind it.
//!
//! ```text
//! plan (memo) ─► bypass? ─► key ─► stamp ─► memory hit? ─► byte tier hit? ─► single-flight ─► query ─► fill if stamp unchanged
//! ```
//!
//! Results are returned exactly as plain sqlx returns them: rows are decoded with the
//! same `FromRow` impl, in order, stopping at the first error; `fetch_one` and
//! `fetch_optional` decode only the first row (keyed apart from `fetch_all`, whose
//! decode of a later row may fail); errors are sqlx's own.

use super::driver::{Conn, Driver};
use super::plan::Plan;
use super::transaction::CachedTransaction;
use super::{FlightKey, QueryCache, WriteGuard};
use crate::inflight::{Join, Outcome};
use crate::key::FetchShape;
use crate::metrics::BypassReason;
use crate::tier::Lookup;
use crate::tier::memory::{Entry, weigh};
use futures_util::TryStreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::error::BoxDynError;
use sqlx::query::{QueryAs, QueryScalar};
use sqlx::{Either, Execute, FromRow, IntoArguments, SqlStr};
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a cached result's row type must be: stored in memory as `Arc<[T]>` (shared
/// across threads), weighed through `Serialize`, and decodable from the byte tiers.
pub trait CacheValue: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> CacheValue for T {}

/// Per-query options, set through [`CachedQuery::cache_ttl`] and
/// [`CachedQuery::cache_bypass`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    ttl: Option<Duration>,
    bypass: bool,
}

/// One cached read taken apart: what the read path needs from a query builder.
#[doc(hidden)]
pub struct Request<DB: Driver, T> {
    sql: SqlStr,
    arguments: Result<Option<DB::Arguments>, BoxDynError>,
    decode: fn(&DB::Row) -> Result<T, sqlx::Error>,
    options: QueryOptions,
}

/// Where a cached read runs: the cache (pool) or a transaction.
#[doc(hidden)]
pub enum Target<'c, DB: Driver> {
    /// Reads may hit, misses run on the pool and fill.
    Cache(&'c QueryCache<DB>),
    /// Reads may hit per the transaction's policy; misses run in the transaction and
    /// never fill.
    Transaction(&'c mut CachedTransaction<DB>),
}

mod sealed {
    pub trait Sealed {}
}

/// What a cached read can run against: `&QueryCache` or `&mut CachedTransaction`.
/// Sealed.
pub trait CacheTarget<'c, DB: Driver>: Send + sealed::Sealed {
    #[doc(hidden)]
    fn into_target(self) -> Target<'c, DB>;
}

impl<DB: Driver> sealed::Sealed for &QueryCache<DB> {}
impl<'c, DB: Driver> CacheTarget<'c, DB> for &'c QueryCache<DB> {
    fn into_target(self) -> Target<'c, DB> {
        Target::Cache(self)
    }
}

impl<DB: Driver> sealed::Sealed for &mut CachedTransaction<DB> {}
impl<'c, DB: Driver> CacheTarget<'c, DB> for &'c mut CachedTransaction<DB> {
    fn into_target(self) -> Target<'c, DB> {
        Target::Transaction(self)
    }
}

/// Cached fetches on sqlx's query builders: change `fetch_all(&pool)` to
/// `fetch_all_cached(&cache)`.
///
/// Implemented for `sqlx::query_as` (also `QueryBuilder::build_query_as`),
/// `sqlx::query_scalar` (also `build_query_scalar`), and [`WithOptions`]. The row type
/// must be a [`CacheValue`] (`Serialize + DeserializeOwned + Send + Sync + 'static`).
///
/// # Errors
/// Every fetch returns exactly what the same plain sqlx fetch would: database errors,
/// decode errors, `RowNotFound` from `fetch_one_cached` on no rows. A failure inside the
/// cache is never returned; the read falls back to the database and is counted in
/// [`Stats::fallbacks`](crate::Stats::fallbacks).
///
/// # Cancellation
/// Dropping a fetch's future is safe at any point: a miss that was leading a
/// single-flight hands the flight to a waiting caller, and nothing is filled.
///
/// # Concurrent calls on the same key
/// Concurrent misses on one key (same statement, arguments, row type and read-set
/// generations) run one query; the others wait for its rows. If it fails, each waiter
/// runs its own query so that it gets the database's own error.
pub trait CachedQuery<DB: Driver>: Sized + Send {
    /// The row type.
    type Output: CacheValue;

    #[doc(hidden)]
    fn into_request(self) -> Request<DB, Self::Output>;

    /// All rows, as `fetch_all`.
    fn fetch_all_cached<'c>(
        self,
        target: impl CacheTarget<'c, DB>,
    ) -> impl Future<Output = Result<Vec<Self::Output>, sqlx::Error>> + Send + 'c
    where
        Self::Output: Clone,
    {
        let fut = read(target.into_target(), self.into_request(), FetchShape::All);
        async move { Ok(fut.await?.to_vec()) }
    }

    /// All rows as the shared `Arc<[T]>` the cache holds: a hit clones no row.
    fn fetch_all_shared<'c>(
        self,
        target: impl CacheTarget<'c, DB>,
    ) -> impl Future<Output = Result<Arc<[Self::Output]>, sqlx::Error>> + Send + 'c {
        read(target.into_target(), self.into_request(), FetchShape::All)
    }

    /// The first row, or `sqlx::Error::RowNotFound`, as `fetch_one`.
    fn fetch_one_cached<'c>(
        self,
        target: impl CacheTarget<'c, DB>,
    ) -> impl Future<Output = Result<Self::Output, sqlx::Error>> + Send + 'c
    where
        Self::Output: Clone,
    {
        let fut = read(target.into_target(), self.into_request(), FetchShape::First);
        async move { fut.await?.first().cloned().ok_or(sqlx::Error::RowNotFound) }
    }

    /// The first row if there is one, as `fetch_optional`.
    fn fetch_optional_cached<'c>(
        self,
        target: impl CacheTarget<'c, DB>,
    ) -> impl Future<Output = Result<Option<Self::Output>, sqlx::Error>> + Send + 'c
    where
        Self::Output: Clone,
    {
        let fut = read(target.into_target(), self.into_request(), FetchShape::First);
        async move { Ok(fut.await?.first().cloned()) }
    }

    /// Keep this query's result for `ttl` instead of the cache's default TTL.
    fn cache_ttl(self, ttl: Duration) -> WithOptions<Self> {
        WithOptions::new(
            self,
            QueryOptions {
                ttl: Some(ttl),
                bypass: false,
            },
        )
    }

    /// Run this query on the database without consulting or filling the cache
    /// (counted as a bypass, reason `per_query`).
    fn cache_bypass(self) -> WithOptions<Self> {
        WithOptions::new(
            self,
            QueryOptions {
                ttl: None,
                bypass: true,
            },
        )
    }
}

/// A query with per-query cache options; from [`CachedQuery::cache_ttl`] or
/// [`CachedQuery::cache_bypass`].
#[derive(Debug)]
pub struct WithOptions<Q> {
    query: Q,
    options: QueryOptions,
}

impl<Q> WithOptions<Q> {
    fn new(query: Q, options: QueryOptions) -> Self {
        WithOptions { query, options }
    }
}

impl<DB: Driver, Q: CachedQuery<DB>> CachedQuery<DB> for WithOptions<Q> {
    type Output = Q::Output;

    fn into_request(self) -> Request<DB, Self::Output> {
        // Options set last (outermost) win.
        let mut request = self.query.into_request();
        request.options.ttl = self.options.ttl.or(request.options.ttl);
        request.options.bypass |= self.options.bypass;
        request
    }
}

fn decode_as<DB: Driver, O: for<'r> FromRow<'r, DB::Row>>(row: &DB::Row) -> Result<O, sqlx::Error> {
    O::from_row(row)
}

fn decode_scalar<DB: Driver, O>(row: &DB::Row) -> Result<O, sqlx::Error>
where
    (O,): for<'r> FromRow<'r, DB::Row>,
{
    <(O,)>::from_row(row).map(|(o,)| o)
}

impl<'q, DB, O, A> CachedQuery<DB> for QueryAs<'q, DB, O, A>
where
    DB: Driver,
    O: CacheValue + for<'r> FromRow<'r, DB::Row> + Unpin,
    A: 'q + IntoArguments<DB> + Send,
{
    type Output = O;

    fn into_request(mut self) -> Request<DB, O> {
        Request {
            arguments: self.take_arguments(),
            sql: self.sql(),
            decode: decode_as::<DB, O>,
            options: QueryOptions::default(),
        }
    }
}

impl<'q, DB, O, A> CachedQuery<DB> for QueryScalar<'q, DB, O, A>
where
    DB: Driver,
    O: CacheValue + Unpin,
    (O,): for<'r> FromRow<'r, DB::Row>,
    A: 'q + IntoArguments<DB> + Send,
{
    type Output = O;

    fn into_request(mut self) -> Request<DB, O> {
        Request {
            arguments: self.take_arguments(),
            sql: self.sql(),
            decode: decode_scalar::<DB, O>,
            options: QueryOptions::default(),
        }
    }
}

/// The read path.
async fn read<DB: Driver, T: CacheValue>(
    target: Target<'_, DB>,
    request: Request<DB, T>,
    shape: FetchShape,
) -> Result<Arc<[T]>, sqlx::Error> {
    let Request {
        sql,
        arguments,
        decode,
        options,
    } = request;
    let arguments = arguments.map_err(sqlx::Error::Encode)?;
    // Borrow the cache on the hot path: cloning the handle would bump the shared
    // `Arc`'s count, a cache line every core's hits would then contend on.
    let owned;
    let (cache, mut tx) = match target {
        Target::Cache(cache) => (cache, None),
        Target::Transaction(tx) => {
            owned = tx.cache().clone();
            (&owned, Some(tx))
        }
    };
    // The statement's plan; a row-keyed key read or write runs under its key bucket's
    // plan, found below (bypass reasons are the same for both).
    let plan = cache.plan(sql.as_str());

    let bypass = if options.bypass {
        Some(BypassReason::PerQuery)
    } else if let Some(reason) = plan.bypass {
        Some(reason)
    } else if let Some(reason) = crate::freshness::watch::read_bypass(
        cache.0.watch.as_deref(),
        &cache.0.metrics,
        &plan.reads,
    ) {
        Some(reason)
    } else {
        tx.as_deref().and_then(|tx| tx.bypass_reason(&plan))
    };
    if let Some(reason) = bypass {
        cache.0.metrics.bypass(reason);
        return match tx {
            Some(tx) => {
                tx.record_writes(&plan);
                run::<DB, T>(
                    Conn::Transaction(tx.connection()),
                    sql,
                    arguments,
                    decode,
                    shape,
                )
                .await
            }
            None => {
                let plan = cache.plan_with_arguments(&plan, arguments.as_ref());
                let _writes = WriteGuard::new(cache, &plan);
                run(Conn::Pool(&cache.0.pool), sql, arguments, decode, shape).await
            }
        };
    }

    let inner = &*cache.0;
    let key = inner.context.key(
        plan.fingerprint,
        DB::hash_arguments(arguments.as_ref()),
        std::any::type_name::<T>(),
        shape,
    );
    let plan = read_plan(cache, &plan, key, arguments.as_ref());
    // The snapshot that makes the fill safe: taken before the query runs.
    let mut stamp = inner.generations.stamp(&plan.reads);
    if let Some(rows) = memory_hit::<DB, T>(cache, key, &plan, stamp)
        && current_across_processes(cache, &plan, stamp).await
    {
        inner.metrics.hits.incr();
        return Ok(rows);
    }
    // With a Redis tier, its lookup also syncs the read set's generations: then the
    // lower tier and the fill are judged against current ones.
    let mut remote = None;
    let synced = match inner.shared.as_ref() {
        None => true,
        Some(shared) => match super::redis_tier::lookup::<DB, T>(cache, key, &plan).await {
            super::redis_tier::Lookup::Hit(rows) => {
                inner.metrics.hits.incr();
                return Ok(rows);
            }
            super::redis_tier::Lookup::Synced(snapshot, synced_stamp) => {
                stamp = synced_stamp;
                remote = Some(snapshot);
                true
            }
            super::redis_tier::Lookup::Failed | super::redis_tier::Lookup::Skipped => {
                shared.trusted()
            }
        },
    };
    if synced && let Some(rows) = super::byte_tiers::hit::<DB, T>(cache, key, &plan, stamp).await {
        inner.metrics.hits.incr();
        return Ok(rows);
    }
    inner.metrics.misses.incr();

    if let Some(tx) = tx.as_mut() {
        return run::<DB, T>(
            Conn::Transaction(tx.connection()),
            sql,
            arguments,
            decode,
            shape,
        )
        .await;
    }

    if !synced {
        // Strict mode, and this miss could not sync the shared generations (its Redis
        // lookup was skipped or failed): its stamp may predate a write another process
        // returned before this read began, so a flight in progress under the same stamp
        // may have read the rows from before that write. Run alone; the fill is judged
        // by the local stamp as always, and a later hit syncs before it is served.
        let rows: Arc<[T]> = run(Conn::Pool(&inner.pool), sql, arguments, decode, shape).await?;
        if let Some(hook) = &inner.config.before_fill {
            hook(key).await;
        }
        fill(cache, key, &plan, stamp, &rows, options.ttl);
        return Ok(rows);
    }

    let flight = FlightKey {
        key,
        stamp,
        version: plan.version,
    };
    let leader = loop {
        match inner.inflight.join(flight.clone()) {
            Join::Leader(leader) => break leader,
            Join::Follower(follower) => match follower.wait().await {
                Outcome::Value(shared) => {
                    if let Some(rows) = shared.downcast_ref::<Arc<[T]>>() {
                        inner.metrics.coalesced.fetch_add(1, Ordering::Relaxed);
                        return Ok(Arc::clone(rows));
                    }
                    // Same key, other type: cannot happen (the type is in the key);
                    // fall back rather than trust it.
                    inner.metrics.fallbacks.fetch_add(1, Ordering::Relaxed);
                    return run(Conn::Pool(&inner.pool), sql, arguments, decode, shape).await;
                }
                Outcome::Failed => {
                    return run(Conn::Pool(&inner.pool), sql, arguments, decode, shape).await;
                }
                Outcome::Abandoned => continue,
            },
        }
    };

    let started = Instant::now();
    let rows: Arc<[T]> = match run(Conn::Pool(&inner.pool), sql, arguments, decode, shape).await {
        Ok(rows) => rows,
        Err(e) => {
            leader.fail();
            return Err(e);
        }
    };
    if let Some(hook) = &inner.config.before_fill {
        hook(key).await;
    }
    let filled = fill(cache, key, &plan, stamp, &rows, options.ttl);
    let shared: Arc<dyn Any + Send + Sync> = Arc::new(Arc::clone(&rows));
    leader.complete(shared);
    if filled {
        let cost = started.elapsed();
        let ttl = options.ttl.unwrap_or(inner.config.default_ttl);
        if let Some(snapshot) = &remote {
            super::redis_tier::fill(cache, key, &plan, snapshot, &rows, cost, ttl).await;
        }
        super::byte_tiers::fill(cache, key, &plan, stamp, &rows, ttl).await;
    }
    Ok(rows)
}

/// The plan a read of `base` runs under: for a row-keyed key read, the plan of its
/// key bucket — taken from the memory entry of `key` when there is one (a hit needs
/// no bind decoding: the same key has the same binds, so the same bucket), else
/// computed from the binds.
fn read_plan<DB: Driver>(
    cache: &QueryCache<DB>,
    base: &Arc<Plan>,
    key: crate::key::CacheKey,
    arguments: Option<&DB::Arguments>,
) -> Arc<Plan> {
    let Some(row) = &base.row_keyed else {
        return Arc::clone(base);
    };
    if let Lookup::Hit(entry) = cache.0.memory.get(&key, Instant::now())
        && entry.plan == base.version
        && let Some(bucket) = entry.key_bucket
    {
        return row.plan_of_bucket(
            base,
            bucket as usize,
            &cache.0.generations,
            &cache.0.planner.bucket_plans,
        );
    }
    cache.plan_with_arguments(base, arguments)
}

/// The current entry for `key`, if it is fresh for `plan` at `stamp`.
fn memory_hit<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: crate::key::CacheKey,
    plan: &Plan,
    stamp: crate::freshness::generations::Stamp,
) -> Option<Arc<[T]>> {
    let Lookup::Hit(entry) = cache.0.memory.get(&key, Instant::now()) else {
        return None;
    };
    if entry.plan != plan.version {
        return None;
    }
    if entry.stamp != stamp {
        if !entry.was_hit.load(Ordering::Relaxed) {
            super::admission::wasted(cache, plan);
        }
        return None;
    }
    let rows = entry.value.downcast_ref::<Arc<[T]>>().cloned();
    if rows.is_some() && !entry.was_hit.swap(true, Ordering::Relaxed) {
        super::admission::useful(cache, plan);
    }
    rows
}

/// With a Redis tier, whether an L1 entry found current at `stamp` is current in every
/// process: in Bounded mode while the heartbeat trusts this process's view, otherwise
/// after a sync of the read set sent after the read began (Strict; see
/// [`freshness::shared`](crate::freshness::shared)). Without one, always.
async fn current_across_processes<DB: Driver>(
    cache: &QueryCache<DB>,
    plan: &Plan,
    stamp: crate::freshness::generations::Stamp,
) -> bool {
    let inner = &*cache.0;
    let Some(shared) = inner.shared.as_ref() else {
        return true;
    };
    if shared.trusted() || inner.config.cross_process_check_disabled {
        return true;
    }
    match shared.sync(&inner.generations, &plan.reads).await {
        Ok(()) => inner.generations.stamp(&plan.reads) == stamp,
        Err(err) => {
            inner.metrics.fallback(err.reason());
            false
        }
    }
}

/// Store `rows` unless a write moved the read set's generations since `stamp` or the
/// statement's shape is not admitted; `true` when stored.
fn fill<DB: Driver, T: CacheValue>(
    cache: &QueryCache<DB>,
    key: crate::key::CacheKey,
    plan: &Plan,
    stamp: crate::freshness::generations::Stamp,
    rows: &Arc<[T]>,
    ttl: Option<Duration>,
) -> bool {
    let inner = &*cache.0;
    if inner.generations.stamp(&plan.reads) != stamp {
        inner
            .metrics
            .stale_fills_refused
            .fetch_add(1, Ordering::Relaxed);
        super::admission::wasted(cache, plan);
        return false;
    }
    if !super::admission::admit(cache, plan) {
        return false;
    }
    let Ok(weight) = weigh(rows) else {
        inner.metrics.fallbacks.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let ttl = ttl.unwrap_or(inner.config.default_ttl);
    let jitter = inner.config.ttl_jitter * rand::random::<f64>();
    let entry: Arc<Entry<dyn Any + Send + Sync>> = Arc::new(Entry {
        stamp,
        plan: plan.version,
        expires_at: Instant::now() + ttl.mul_f64(1.0 - jitter),
        weight,
        key_bucket: plan.key_bucket,
        was_hit: Default::default(),
        value: Arc::clone(rows),
    });
    inner.memory.insert(key, entry);
    inner.metrics.fills.fetch_add(1, Ordering::Relaxed);
    true
}

/// Run the statement and decode its rows as plain sqlx would.
async fn run<DB: Driver, T>(
    conn: Conn<'_, DB>,
    sql: SqlStr,
    arguments: Option<DB::Arguments>,
    decode: fn(&DB::Row) -> Result<T, sqlx::Error>,
    shape: FetchShape,
) -> Result<Arc<[T]>, sqlx::Error> {
    match shape {
        FetchShape::All => {
            let mut stream = DB::fetch_many(conn, sql, arguments);
            let mut rows = Vec::new();
            while let Some(step) = stream.try_next().await? {
                if let Either::Right(row) = step {
                    rows.push(decode(&row)?);
                }
            }
            Ok(rows.into())
        }
        FetchShape::First => {
            let row = DB::fetch_optional(conn, sql, arguments).await?;
            Ok(row.map(|r| decode(&r)).transpose()?.into_iter().collect())
        }
    }
}
