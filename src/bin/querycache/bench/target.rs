//! What a workload runs against: plain sqlx on a pool, or the same pool behind a
//! `QueryCache`. Workloads are written once against [`Target`], so both modes run the
//! same client code and differ only in where a read or write goes.

use super::error::Result;
use querycache::{CachedQuery, CachedTransaction, QueryCache};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs};
use sqlx::{FromRow, PgPool, Postgres};
use std::future::Future;

/// A row type a workload reads: decodable by sqlx (`FromRow`) and storable by the cache
/// (`querycache::CacheValue`), cloneable for the owned-rows fetch forms.
pub trait BenchRow:
    for<'r> FromRow<'r, PgRow> + Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static
{
}
impl<T> BenchRow for T where
    T: for<'r> FromRow<'r, PgRow>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + Unpin
        + 'static
{
}

/// A statement with its binds, as workloads build them (`&'static str` SQL: no per-op
/// allocation of the text).
pub type Statement = Query<'static, Postgres, PgArguments>;
/// A typed read (or a write with `RETURNING`) with its binds.
pub type TypedStatement<R> = QueryAs<'static, Postgres, R, PgArguments>;

/// Cache counters a run reports; all zero for the plain target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CacheCounters {
    /// Reads served from the cache.
    pub hits: u64,
    /// Of `hits`, those served from the Redis tier (L2).
    pub redis_hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
    /// Fills the cache refused because a write raced them.
    pub stale_fills_refused: u64,
    /// Generation bumps caused by writes.
    pub invalidations: u64,
}

impl CacheCounters {
    /// The counts accumulated between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            hits: self.hits.saturating_sub(earlier.hits),
            redis_hits: self.redis_hits.saturating_sub(earlier.redis_hits),
            misses: self.misses.saturating_sub(earlier.misses),
            stale_fills_refused: self
                .stale_fills_refused
                .saturating_sub(earlier.stale_fills_refused),
            invalidations: self.invalidations.saturating_sub(earlier.invalidations),
        }
    }

    /// Hits over lookups (0 when there were none).
    pub fn hit_ratio(self) -> f64 {
        self.ratio(self.hits)
    }

    /// Hits served from Redis (L2) over lookups.
    pub fn redis_hit_ratio(self) -> f64 {
        self.ratio(self.redis_hits)
    }

    fn ratio(self, count: u64) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            count as f64 / lookups as f64
        }
    }

    /// The sum of two runs' counters (two windows of one run, or processes of one
    /// `--processes` run).
    pub fn plus(self, other: Self) -> Self {
        Self {
            hits: self.hits + other.hits,
            redis_hits: self.redis_hits + other.redis_hits,
            misses: self.misses + other.misses,
            stale_fills_refused: self.stale_fills_refused + other.stale_fills_refused,
            invalidations: self.invalidations + other.invalidations,
        }
    }
}

/// Where a workload's statements go.
pub trait Target: Clone + Send + Sync + 'static {
    /// An open transaction on this target.
    type Tx: TargetTx;

    /// A read expected to return exactly one row (cached in cached mode).
    fn read_one<R: BenchRow>(&self, q: TypedStatement<R>)
    -> impl Future<Output = Result<R>> + Send;

    /// A read of any number of rows (cached in cached mode).
    fn read_all<R: BenchRow>(
        &self,
        q: TypedStatement<R>,
    ) -> impl Future<Output = Result<Vec<R>>> + Send;

    /// A write that returns one row (`UPDATE … RETURNING`), through the write path: in
    /// cached mode it invalidates what it changed before it returns.
    fn write_one<R: BenchRow>(
        &self,
        q: TypedStatement<R>,
    ) -> impl Future<Output = Result<R>> + Send;

    /// Starts a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx>> + Send;

    /// The cache's counters now (zero for the plain target).
    fn counters(&self) -> CacheCounters;
}

/// A transaction opened by [`Target::begin`]; dropping it without `commit` rolls back.
pub trait TargetTx: Send + 'static {
    /// Runs a statement inside the transaction.
    fn execute(&mut self, q: Statement) -> impl Future<Output = Result<()>> + Send;
    /// Runs a statement that returns one row inside the transaction (never cached).
    fn fetch_one<R: BenchRow>(
        &mut self,
        q: TypedStatement<R>,
    ) -> impl Future<Output = Result<R>> + Send;
    /// Commits.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// Plain sqlx on the pool: the baseline.
#[derive(Debug, Clone)]
pub struct Plain(pub PgPool);

impl Target for Plain {
    type Tx = sqlx::Transaction<'static, Postgres>;

    async fn read_one<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one(&self.0).await?)
    }

    async fn read_all<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<Vec<R>> {
        Ok(q.fetch_all(&self.0).await?)
    }

    async fn write_one<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one(&self.0).await?)
    }

    async fn begin(&self) -> Result<Self::Tx> {
        Ok(self.0.begin().await?)
    }

    fn counters(&self) -> CacheCounters {
        CacheCounters::default()
    }
}

impl TargetTx for sqlx::Transaction<'static, Postgres> {
    async fn execute(&mut self, q: Statement) -> Result<()> {
        q.execute(&mut **self).await?;
        Ok(())
    }

    async fn fetch_one<R: BenchRow>(&mut self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one(&mut **self).await?)
    }

    async fn commit(self) -> Result<()> {
        Ok(sqlx::Transaction::commit(self).await?)
    }
}

/// The same pool behind a `QueryCache`: reads through `fetch_*_cached`, writes through
/// the cache's pass-through executor (which invalidates before it returns).
#[derive(Debug, Clone)]
pub struct Cached(pub QueryCache<Postgres>);

impl Target for Cached {
    type Tx = CachedTransaction<Postgres>;

    async fn read_one<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one_cached(&self.0).await?)
    }

    async fn read_all<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<Vec<R>> {
        Ok(q.fetch_all_cached(&self.0).await?)
    }

    async fn write_one<R: BenchRow>(&self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one(&self.0).await?)
    }

    async fn begin(&self) -> Result<Self::Tx> {
        Ok(self.0.begin().await?)
    }

    fn counters(&self) -> CacheCounters {
        let stats = self.0.stats();
        CacheCounters {
            hits: stats.hits,
            redis_hits: stats.redis_hits,
            misses: stats.misses,
            stale_fills_refused: stats.stale_fills_refused,
            invalidations: stats.invalidations,
        }
    }
}

impl TargetTx for CachedTransaction<Postgres> {
    async fn execute(&mut self, q: Statement) -> Result<()> {
        q.execute(&mut *self).await?;
        Ok(())
    }

    async fn fetch_one<R: BenchRow>(&mut self, q: TypedStatement<R>) -> Result<R> {
        Ok(q.fetch_one(&mut *self).await?)
    }

    async fn commit(self) -> Result<()> {
        Ok(CachedTransaction::commit(self).await?)
    }
}
