//! [`QueryCacheBuilder`]: configuration of a [`QueryCache`].

use super::driver::Driver;
use super::plan::{Planner, RowLevel};
use super::{Inner, QueryCache};
use crate::freshness::generations::Generations;
use crate::freshness::shared::SharedGenerations;
use crate::inflight::SingleFlight;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::tier::ByteTier;
use crate::tier::memory::MemoryTier;
use crate::tier::redis::RedisOptions;
use crate::tier::redis::link::Link;
use futures_core::future::BoxFuture;
use sqlx::Pool;
use std::sync::Arc;
use std::time::Duration;

/// Whether cached reads inside a [`CachedTransaction`](super::CachedTransaction) may be
/// served from the cache.
///
/// Reads inside a transaction never *fill* the cache, whatever the policy: under
/// REPEATABLE READ or SERIALIZABLE their snapshot may predate writes other callers have
/// already seen return, and their result may include the transaction's own uncommitted
/// writes. Serving *hits* assumes READ COMMITTED (Postgres' default): a hit is as fresh
/// as a new statement would be. Use [`TransactionReads::Never`] for stricter isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TransactionReads {
    /// Serve hits unless the read touches a relation this transaction wrote (or the
    /// transaction made a write the cache could not analyse, or DDL). Default.
    #[default]
    BypassWritten,
    /// Never serve hits inside a transaction.
    Never,
    /// Serve hits until the transaction's first write, then never.
    UntilWrite,
    /// Always serve hits, even for relations this transaction wrote: the transaction
    /// may not see its own writes through cached reads. For callers that know better.
    Always,
}

/// How finely writes invalidate cached reads.
///
/// With [`Granularity::Row`], a *key read* (a single-table SELECT pinning every column
/// of the table's primary key to one value) and a *key write* (UPDATE / DELETE pinning
/// the key, INSERT giving it) of a table with a row key are invalidated per key
/// bucket: a write to one row leaves the table's other key reads cached. Everything
/// else — ranges, joins, aggregates, writes the cache cannot pin to keys, writes
/// inside transactions, writes outside the cache — stays table level. Which statements
/// and tables qualify, and why the scheme is never stale, is in
/// [`freshness::row_keys`](crate::freshness::row_keys); `querycache normalize --json`
/// shows the key columns a statement pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Granularity {
    /// Every write invalidates every cached read of the tables it changes.
    Table,
    /// Key reads and key writes are invalidated per key (see above). Default.
    #[default]
    Row,
}

/// A hook run by a miss between its query and its fill (tests only).
pub(crate) type FillHook = Arc<dyn Fn(CacheKey) -> BoxFuture<'static, ()> + Send + Sync>;

/// Starts the external-write listener of a built cache (set by
/// [`QueryCacheBuilder::watch_tables`], which exists for Postgres only).
type WatchStart<DB> =
    Box<dyn FnOnce(QueryCache<DB>) -> BoxFuture<'static, crate::Result<()>> + Send>;

/// Everything the builder sets.
pub(crate) struct Config {
    pub default_ttl: Duration,
    pub ttl_jitter: f64,
    pub transaction_reads: TransactionReads,
    pub invalidation_disabled: bool,
    pub adaptive_admission: bool,
    pub before_fill: Option<FillHook>,
    pub byte_tier: Option<Arc<dyn ByteTier>>,
    pub redis: Option<RedisOptions>,
    pub cross_process_check_disabled: bool,
    pub granularity: Granularity,
    /// Key writes bump no key bucket (tests only: proves the row-level audit can fail).
    pub key_bumps_disabled: bool,
}

/// Builds a [`QueryCache`]; from [`QueryCache::builder`]. Every setter documents its
/// default.
#[must_use = "call .build().await to get the cache"]
pub struct QueryCacheBuilder<DB: Driver> {
    pool: Pool<DB>,
    memory_capacity: u64,
    statement_memo_capacity: usize,
    config: Config,
    watch: Option<WatchStart<DB>>,
    watch_hook: Option<crate::freshness::watch::WatchHook>,
}

impl<DB: Driver> std::fmt::Debug for QueryCacheBuilder<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCacheBuilder")
            .field("memory_capacity", &self.memory_capacity)
            .field("statement_memo_capacity", &self.statement_memo_capacity)
            .field("default_ttl", &self.config.default_ttl)
            .field("ttl_jitter", &self.config.ttl_jitter)
            .field("transaction_reads", &self.config.transaction_reads)
            .field("watch", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl<DB: Driver> QueryCacheBuilder<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        QueryCacheBuilder {
            pool,
            memory_capacity: 64 << 20,
            statement_memo_capacity: 10_000,
            config: Config {
                default_ttl: Duration::from_secs(300),
                ttl_jitter: 0.1,
                transaction_reads: TransactionReads::default(),
                invalidation_disabled: false,
                adaptive_admission: true,
                before_fill: None,
                byte_tier: None,
                redis: None,
                cross_process_check_disabled: false,
                granularity: Granularity::default(),
                key_bumps_disabled: false,
            },
            watch: None,
            watch_hook: None,
        }
    }

    /// Byte budget of the memory tier, as estimated by its weigher (rows' inline size
    /// plus their encoded payload plus ~128 B per entry; see
    /// [`tier::memory::weigh`](crate::tier::memory::weigh)). Default: 64 MiB.
    pub fn memory_capacity(mut self, bytes: u64) -> Self {
        self.memory_capacity = bytes;
        self
    }

    /// A byte tier below memory, such as the persistent disk tier
    /// ([`DiskTier`](crate::tier::disk::DiskTier)): consulted after a memory miss (a hit
    /// whose generations are current is promoted to memory) and filled after a memory
    /// fill. Its failures are misses, counted in [`Stats::fallbacks`](crate::Stats::fallbacks).
    /// Default: none.
    pub fn byte_tier(mut self, tier: impl ByteTier) -> Self {
        self.config.byte_tier = Some(Arc::new(tier));
        self
    }

    /// The shared Redis tier (L2) and shared generations: several processes over one
    /// database share fills and invalidations, with the cross-process promise chosen by
    /// [`RedisOptions::consistency`] (see [`freshness::shared`](crate::freshness::shared)).
    /// Redis is connected lazily and reconnected in the background; while it is
    /// unreachable reads go to the database (counted in
    /// [`Stats::fallbacks_by_reason`](crate::Stats::fallbacks_by_reason)) and writes still
    /// succeed. Default: none (generations are process-local).
    pub fn redis(mut self, options: RedisOptions) -> Self {
        self.config.redis = Some(options);
        self
    }

    /// Time to live of an entry unless a query sets its own
    /// ([`CachedQuery::cache_ttl`](super::CachedQuery::cache_ttl)). TTL is a backstop,
    /// not the freshness mechanism: writes through the cache invalidate at once.
    /// Default: 300 s.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// Random shortening of each entry's TTL, as a fraction in `[0, 1)`: an entry
    /// lives `ttl × (1 − jitter × u)` for a uniform `u`, so entries filled together do
    /// not expire together. Default: 0.1.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.config.ttl_jitter = fraction;
        self
    }

    /// Policy for cached reads inside transactions. Default:
    /// [`TransactionReads::BypassWritten`].
    pub fn transaction_reads(mut self, policy: TransactionReads) -> Self {
        self.config.transaction_reads = policy;
        self
    }

    /// Adaptive admission: stop filling a statement shape whose results are
    /// invalidated before any hit, re-admitting it once its results are hit again
    /// (rule and thresholds in `cache/admission.rs`; counted in
    /// [`Stats::fills_not_admitted`](crate::Stats::fills_not_admitted)). It only
    /// decides what to store, never what to serve. Default: on.
    pub fn adaptive_admission(mut self, on: bool) -> Self {
        self.config.adaptive_admission = on;
        self
    }

    /// How finely writes invalidate: per row for key reads and key writes, or per
    /// table (see [`Granularity`]). Default: [`Granularity::Row`].
    pub fn invalidation(mut self, granularity: Granularity) -> Self {
        self.config.granularity = granularity;
        self
    }

    /// Make key writes bump no key bucket, so key reads of written rows are served
    /// stale: only for proving that the row-level freshness audit detects stale reads
    /// (`tests/row_level_freshness.rs`); never in production.
    #[doc(hidden)]
    pub fn skip_key_bumps_for_testing(mut self) -> Self {
        self.config.key_bumps_disabled = true;
        self
    }

    /// How many statement plans (parsed and resolved SQL texts) to memoize. Parsing
    /// costs 30–600 µs (research §3.6), so this should exceed the number of distinct
    /// statement texts the application issues. Default: 10 000.
    pub fn statement_memo_capacity(mut self, plans: usize) -> Self {
        self.statement_memo_capacity = plans;
        self
    }

    /// Make writes bump no generation, so the cache serves stale results after writes.
    /// Only for proving that a freshness audit detects stale reads; never in production.
    /// Manual [`QueryCache::invalidate_table`] / [`QueryCache::invalidate_all`] still
    /// work.
    #[doc(hidden)]
    pub fn disable_invalidation_for_testing(mut self) -> Self {
        self.config.invalidation_disabled = true;
        self
    }

    /// Serve memory-tier hits without checking that they are current across processes
    /// (no sync with the shared generations): only for proving that the cross-process
    /// freshness check is what prevents stale reads (`tests/redis_freshness.rs`).
    #[doc(hidden)]
    pub fn skip_cross_process_check_for_testing(mut self) -> Self {
        self.config.cross_process_check_disabled = true;
        self
    }

    /// Run `hook` in every miss after its query returned and before its fill is
    /// checked against the current generations: lets a test hold a fill while a write
    /// commits (`tests/stale_fill_race.rs`).
    #[doc(hidden)]
    pub fn before_fill_for_testing(
        mut self,
        hook: impl Fn(CacheKey) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.config.before_fill = Some(Arc::new(hook));
        self
    }

    /// Build the cache: reads the pool's session context (database, role, search
    /// path), which keys every entry, and loads the relation catalog (write closures,
    /// name resolution, function volatility; a few ms to tens of ms).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `ttl_jitter` is outside `[0, 1)` or
    /// the memory capacity is zero or the Redis URL is invalid; [`Error::Watch`](crate::Error::Watch) when
    /// [`watch_tables`](Self::watch_tables) cannot install or listen; [`Error::Database`](crate::Error::Database) when the
    /// session context or the catalog cannot be read.
    pub async fn build(self) -> crate::Result<QueryCache<DB>> {
        if !(0.0..1.0).contains(&self.config.ttl_jitter) {
            return Err(crate::Error::Config(format!(
                "ttl_jitter must be in [0, 1), got {}",
                self.config.ttl_jitter
            )));
        }
        if self.memory_capacity == 0 {
            return Err(crate::Error::Config("memory_capacity must be > 0".into()));
        }
        let shared = match &self.config.redis {
            Some(options) => {
                let link = Link::open(&options.url, &options.prefix, options.timeout)
                    .map_err(|e| crate::Error::Config(format!("redis: {e}")))?;
                Some(Arc::new(SharedGenerations::new(link, options.consistency)))
            }
            None => None,
        };
        let context = DB::session_context(&self.pool).await?;
        let catalog = DB::load_catalog(&self.pool).await?;
        let resolver = super::resolver(catalog, &context);
        let estimated_entries = usize::try_from(self.memory_capacity / 2048).unwrap_or(usize::MAX);
        let generations = Arc::new(Generations::new());
        if let Some(shared) = &shared {
            shared.spawn_bounded_tasks(&generations);
        }
        let watch = self.watch.is_some().then(|| {
            Arc::new(crate::freshness::watch::WatchState::with_hook(
                self.watch_hook,
            ))
        });
        let cache = QueryCache(Arc::new(Inner {
            pool: self.pool,
            context,
            memory: MemoryTier::new(self.memory_capacity, estimated_entries),
            generations,
            shared,
            planner: Planner::new(
                self.statement_memo_capacity,
                DB::DIALECT,
                resolver,
                RowLevel {
                    on: self.config.granularity == Granularity::Row,
                    skip_key_bumps: self.config.key_bumps_disabled,
                },
            ),
            inflight: SingleFlight::new(),
            metrics: Metrics::default(),
            config: self.config,
            catalog: Default::default(),
            watch,
        }));
        if let Some(start) = self.watch {
            start(cache.clone()).await?;
        }
        Ok(cache)
    }
}

impl QueryCacheBuilder<sqlx::Postgres> {
    /// See writes made outside the cache (other services, psql, cron jobs): at
    /// [`build`](Self::build), install the watch triggers `tables` lack
    /// ([`freshness::watch::install`](crate::freshness::watch::install): statement-level
    /// triggers that bump a version row and `NOTIFY` at commit, and a DDL event
    /// trigger), then start one listener task on its own connection (not from the
    /// pool) and wait until it is live. A watched table's write made anywhere
    /// invalidates within the measured window (README); while the listener is down,
    /// reads of watched tables bypass the cache. The guarantees are in
    /// [`freshness::watch`](crate::freshness::watch). Default: off.
    ///
    /// Installing needs the tables' ownership and a superuser for the event trigger;
    /// when everything is already installed (`querycache watch install`), nothing is
    /// created and no privilege beyond reading `querycache.table_version` is needed.
    /// `build` then fails with [`Error::Watch`](crate::Error::Watch) if the role may
    /// not create what is missing.
    pub fn watch_tables(mut self, tables: crate::freshness::watch::WatchTables) -> Self {
        self.watch = Some(Box::new(move |cache| {
            Box::pin(crate::freshness::watch::listener::start(cache, tables))
        }));
        self
    }

    /// Have the watch listener await `hook` at each
    /// [`WatchPhase`](crate::freshness::watch::WatchPhase) of every connect (the first
    /// one in [`build`](Self::build) included): lets a test commit a write while a
    /// reconnect prepares, or read the moment the state goes live
    /// (`tests/watch_freshness.rs`).
    #[doc(hidden)]
    pub fn watch_hook_for_testing(
        mut self,
        hook: impl Fn(crate::freshness::watch::WatchPhase) -> BoxFuture<'static, ()>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.watch_hook = Some(Arc::new(hook));
        self
    }
}
