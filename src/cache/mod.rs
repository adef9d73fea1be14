//! [`QueryCache`]: the cache over a sqlx pool.
//!
//! - [`builder`]: configuration ([`QueryCacheBuilder`]).
//! - [`executor`]: `&QueryCache` as a sqlx `Executor` — statements run unchanged on
//!   the pool, writes invalidate what they change, reads run uncached.
//! - [`fetch`]: cached reads through the [`CachedQuery`] extension trait on sqlx's
//!   `query_as` / `query_scalar` builders.
//! - `byte_tiers`: the read path's lookups in and fills of a byte tier (L3 disk).
//! - `admission`: adaptive admission (shapes invalidated before any hit stop filling).
//! - [`transaction`]: [`CachedTransaction`], whose writes invalidate at COMMIT.
//! - `plan`: per-statement plans (analysis + resolved read and write sets).
//! - [`driver`]: what each sqlx database must provide ([`Driver`]).

mod admission;
mod binds;
pub mod builder;
mod byte_tiers;
pub mod driver;
pub mod executor;
pub mod fetch;
mod plan;
mod redis_tier;
mod row_plan;
pub mod transaction;

pub use builder::{Granularity, QueryCacheBuilder, TransactionReads};
pub use driver::Driver;
pub use fetch::{CacheTarget, CacheValue, CachedQuery, WithOptions};
pub use transaction::CachedTransaction;

use crate::freshness::generations::{Generations, RelationSet};
use crate::freshness::shared::SharedGenerations;
use crate::inflight::SingleFlight;
use crate::key::{CacheKey, KeyContext};
use crate::metrics::{Metrics, Stats};
use crate::sql::RelationName;
use crate::tier::memory::MemoryTier;
use builder::Config;
use plan::Resolver;
use plan::{Plan, Planner};
use sqlx::{Database, Pool};
use std::any::Any;
use std::sync::Arc;

/// A query-result cache over a sqlx pool. A cheap-to-clone handle (`Arc` inside):
/// clone it into every task that needs it.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use querycache::{CachedQuery, QueryCache};
/// let cache = QueryCache::builder(pool).memory_capacity(256 << 20).build().await?;
/// // Reads: one method changes.
/// let titles: Vec<(String,)> = sqlx::query_as("SELECT title FROM film WHERE rating = $1::mpaa_rating")
///     .bind("PG")
///     .fetch_all_cached(&cache)
///     .await?;
/// // Writes: the executor argument changes; cached reads of `film` are invalidated
/// // before this call returns.
/// sqlx::query("UPDATE film SET rental_rate = rental_rate + 1 WHERE film_id = $1")
///     .bind(1)
///     .execute(&cache)
///     .await?;
/// # Ok(()) }
/// ```
pub struct QueryCache<DB: Database>(Arc<Inner<DB>>);

impl<DB: Database> Clone for QueryCache<DB> {
    fn clone(&self) -> Self {
        QueryCache(Arc::clone(&self.0))
    }
}

impl<DB: Database> std::fmt::Debug for QueryCache<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache")
            .field("memory", &self.0.memory)
            .field("context", &self.0.context)
            .finish_non_exhaustive()
    }
}

/// The shared state behind a [`QueryCache`] handle.
///
/// Invariants:
/// 1. An entry in `memory` is served only if its plan version equals the current
///    plan's and its stamp equals the current stamp of the plan's read set.
/// 2. A write's generations are bumped before the write's call returns to its caller
///    (autocommit), or before `commit()` returns (transaction): the local counters at
///    once, the shared ones (Redis) awaited before the return.
/// 3. No lock is held across an `.await` (the planner's and the generations' locks are
///    taken and released inside synchronous calls).
pub(crate) struct Inner<DB: Database> {
    pool: Pool<DB>,
    context: KeyContext,
    memory: MemoryTier,
    generations: Arc<Generations>,
    /// The shared generations when a Redis tier is configured.
    shared: Option<Arc<SharedGenerations>>,
    planner: Planner,
    inflight: SingleFlight<FlightKey, Arc<dyn Any + Send + Sync>>,
    metrics: Metrics,
    config: Config,
    catalog: parking_lot::Mutex<CatalogState>,
    /// The external-write listener's state, with
    /// [`QueryCacheBuilder::watch_tables`](builder::QueryCacheBuilder::watch_tables).
    watch: Option<Arc<crate::freshness::watch::WatchState>>,
}

/// A handle that does not keep the cache alive (the watch listener holds one).
pub(crate) struct WeakQueryCache<DB: Database>(std::sync::Weak<Inner<DB>>);

impl<DB: Database> WeakQueryCache<DB> {
    /// The cache, unless every strong handle was dropped.
    pub(crate) fn upgrade(&self) -> Option<QueryCache<DB>> {
        self.0.upgrade().map(QueryCache)
    }
}

/// Catalog reloads after DDL. Guarded by one mutex that is also held while the
/// planner's resolver is replaced, so a reload that started before a newer DDL never
/// installs its older catalog.
#[derive(Debug, Default)]
pub(crate) struct CatalogState {
    /// Reload requests so far; a reload installs its catalog only if none came in
    /// while it loaded.
    requests: u64,
    /// A reload task is running.
    reloading: bool,
}

/// Misses join one flight only if they took the same stamp under the same plan
/// version: a caller that started after a write returned never takes a result whose
/// query may have started before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    key: CacheKey,
    stamp: crate::freshness::generations::Stamp,
    version: u64,
}

impl<DB: Driver> QueryCache<DB> {
    /// Configure a cache over `pool`; finish with [`QueryCacheBuilder::build`].
    pub fn builder(pool: Pool<DB>) -> QueryCacheBuilder<DB> {
        QueryCacheBuilder::new(pool)
    }

    /// The pool statements run on.
    pub fn pool(&self) -> &Pool<DB> {
        &self.0.pool
    }

    /// A handle that does not keep the cache alive.
    pub(crate) fn downgrade(&self) -> WeakQueryCache<DB> {
        WeakQueryCache(Arc::downgrade(&self.0))
    }

    /// The watch listener's state, if the cache watches external writes.
    pub(crate) fn watch_state(&self) -> Option<&Arc<crate::freshness::watch::WatchState>> {
        self.0.watch.as_ref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.0.metrics.snapshot(
            self.0.memory.len(),
            self.0.memory.bytes(),
            self.0.memory.evictions(),
        )
    }

    /// Invalidate every cached result that reads `relation` (and, like a write, the
    /// relations that depend on it). `relation` is `name` or `schema.name`, folded as
    /// Postgres stores it (unquoted identifiers lower case). For writes made outside
    /// the cache. With a Redis tier, every process sharing it is invalidated before
    /// this returns (a Redis failure is counted and makes this process fail closed, see
    /// [`freshness::shared`](crate::freshness::shared)).
    pub async fn invalidate_table(&self, relation: &str) {
        let (set, unknown) = self.relation_write_set(relation);
        self.bump(&set, unknown).await;
    }

    /// Writes made outside the cache, heard from Postgres (the NOTIFY listener):
    /// `changes` are `(schema-qualified relation, version)` pairs, the version being
    /// the relation's row in the watch triggers' version table after the write. Bumps
    /// each relation's generations (closed over the catalog, like a write through the
    /// cache) before returning. With a shared generation store the bump is made once
    /// across processes for one version, not once per listening process.
    pub(crate) async fn apply_external_writes(&self, changes: &[(&str, i64)]) {
        for &(relation, version) in changes {
            let (set, unknown) = self.relation_write_set(relation);
            self.bump_with(&set, unknown, Some((relation, version)))
                .await;
        }
    }

    /// `relation` (`name` or `schema.name`) closed like a write, and whether the
    /// closure is unknown.
    fn relation_write_set(&self, relation: &str) -> (RelationSet, bool) {
        let name = match relation.split_once('.') {
            Some((schema, name)) => RelationName::new(Some(schema), name),
            None => RelationName::new(None, relation),
        };
        self.0.planner.write_set(&[name], &self.0.generations)
    }

    /// Invalidate every cached result (bumps the global epoch, shared with every
    /// process when a Redis tier is configured) and free the memory tier.
    pub async fn invalidate_all(&self) {
        self.bump(&RelationSet::default(), true).await;
        self.0.memory.clear();
    }

    /// The plan for `sql`.
    fn plan(&self, sql: &str) -> Arc<Plan> {
        self.0.planner.plan(sql, &self.0.generations)
    }

    /// The plan one execution of `sql` with `arguments` runs under: its key bucket's
    /// when it is a row-keyed key read or write (`row_plan.rs`).
    fn plan_for(&self, sql: &str, arguments: Option<&DB::Arguments>) -> Arc<Plan> {
        self.plan_with_arguments(&self.plan(sql), arguments)
    }

    /// [`Self::plan_for`] of an already found plan.
    fn plan_with_arguments(
        &self,
        plan: &Arc<Plan>,
        arguments: Option<&DB::Arguments>,
    ) -> Arc<Plan> {
        plan.for_arguments(
            || DB::bind_values(arguments),
            &self.0.generations,
            &self.0.planner.bucket_plans,
        )
    }

    /// Apply a statement's writes: bump its write set, the epoch when the write set is
    /// unknown, and drop all plans after DDL. Unless invalidation is disabled for
    /// testing.
    async fn apply_writes(&self, plan: &Plan) {
        if self.0.config.invalidation_disabled {
            return;
        }
        if plan.changes_catalog() {
            self.reload_catalog();
        }
        self.bump(
            &plan.writes,
            plan.writes_unknown || plan.ddl || plan.catalog_stale,
        )
        .await;
    }

    /// After DDL: until a fresh catalog is installed, plans resolve through
    /// [`Resolver::Reloading`] (reads bypass, writes bump the epoch); a background task
    /// loads the catalog, retrying every second while loading fails.
    pub(crate) fn reload_catalog(&self) {
        let spawn = {
            let mut state = self.0.catalog.lock();
            state.requests += 1;
            self.0.planner.replan(Resolver::Reloading);
            !std::mem::replace(&mut state.reloading, true)
        };
        if !spawn {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(reload_task(Arc::downgrade(&self.0)));
            }
            Err(_) => {
                // No runtime to reload on: stay in Reloading (safe), let the next DDL
                // try again.
                self.0.catalog.lock().reloading = false;
            }
        }
    }

    /// Bump `set` (and the epoch when `everything`): the local counters now, then the
    /// shared ones, awaited.
    async fn bump(&self, set: &RelationSet, everything: bool) {
        self.bump_with(set, everything, None).await;
    }

    /// [`Self::bump`]; for a write made outside the cache, `external` is the relation
    /// and its watch version, so that of all processes hearing it only one bumps the
    /// shared generations.
    async fn bump_with(&self, set: &RelationSet, everything: bool, external: Option<(&str, i64)>) {
        self.bump_local(set, everything);
        if let Some(shared) = &self.0.shared {
            let result = shared
                .bump(&self.0.generations, set.names(), everything, external)
                .await;
            if let Err(err) = result {
                tracing::warn!(
                    "querycache: shared invalidation failed (failing closed until Redis is back): {err}"
                );
                self.0.metrics.fallback("redis_bump_failed");
            }
        }
    }

    fn bump_local(&self, set: &RelationSet, everything: bool) {
        let g = &self.0.generations;
        g.bump(set);
        self.0.metrics.invalidated(set.names().iter().map(|n| &**n));
        if everything {
            g.bump_epoch();
            self.0.metrics.invalidated_all();
        }
    }
}

/// Load the catalog until one loads with no newer reload request, then install it.
/// Holds the cache only weakly while waiting, so a dropped cache ends the task.
async fn reload_task<DB: Driver>(inner: std::sync::Weak<Inner<DB>>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let want = strong.catalog.lock().requests;
        let loaded = DB::load_catalog(&strong.pool).await;
        {
            let mut state = strong.catalog.lock();
            match loaded {
                Ok(catalog) if state.requests == want => {
                    strong.planner.replan(resolver(catalog, &strong.context));
                    state.reloading = false;
                    return;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("querycache: catalog reload failed, retrying in 1 s: {e}");
                    strong
                        .metrics
                        .fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        drop(strong);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The resolver for a loaded catalog (or its absence).
pub(crate) fn resolver(
    catalog: Option<crate::freshness::Catalog>,
    context: &KeyContext,
) -> Resolver {
    match catalog {
        Some(catalog) => Resolver::Catalog {
            catalog: Arc::new(catalog),
            search_path: context.search_path.clone(),
        },
        None => Resolver::Bare,
    }
}

/// Bumps a statement's writes once it has finished: [`WriteGuard::finish`] awaits the
/// bump (local and shared) before the caller returns; a guard dropped unfinished (the
/// caller's future was cancelled) bumps the local counters at once and the shared ones
/// on a spawned task. A failed autocommit statement changed nothing, but a cancelled
/// one may have committed; bumping either way is never wrong, only a few extra misses.
pub(crate) struct WriteGuard<DB: Driver> {
    cache: QueryCache<DB>,
    plan: Arc<Plan>,
    done: bool,
}

impl<DB: Driver> WriteGuard<DB> {
    /// A guard when `plan` writes anything, else `None`.
    pub(crate) fn new(cache: &QueryCache<DB>, plan: &Arc<Plan>) -> Option<Self> {
        plan.writes_anything().then(|| WriteGuard {
            cache: cache.clone(),
            plan: Arc::clone(plan),
            done: false,
        })
    }

    /// Bump the statement's writes, awaiting the shared bump.
    pub(crate) async fn finish(mut self) {
        self.done = true;
        self.cache.apply_writes(&self.plan).await;
    }
}

impl<DB: Driver> Drop for WriteGuard<DB> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let cache = self.cache.clone();
        let plan = Arc::clone(&self.plan);
        // Poll once: the local bump happens now; the shared bump, if it must wait for
        // Redis, goes on on a spawned task (with no runtime it is lost, which the next
        // failed or repaired bump covers as for any unreachable Redis).
        let mut bump = Box::pin(async move { cache.apply_writes(&plan).await });
        if futures_util::FutureExt::now_or_never(&mut bump).is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(bump);
        }
    }
}
