//! `&QueryCache` as a sqlx [`Executor`]: unchanged statements, invalidating writes.
//!
//! Every statement runs on the pool exactly as given (`sqlx::query(…).execute(&cache)`,
//! `sqlx::raw_sql(…).execute(&cache)`, `query_as(…).fetch_all(&cache)`). When it may
//! write, its write set is bumped once it has finished — before the call returns — so
//! read-your-writes holds for every caller of the cache. Reads through this executor run
//! uncached (counted as bypass `plain_executor`): sqlx rows (`PgRow`) cannot be built
//! from cached data (research §2.2); use [`CachedQuery`](super::CachedQuery) to cache.
//!
//! Two things sqlx's own pool executor keeps are lost on the way through: a query's
//! `persistent(false)` flag (statements are always prepared and cached by sqlx), and a
//! prepared `Statement` passed via `query_statement` (reduced to its SQL text).

use super::driver::{Conn, Driver};
use super::{QueryCache, WriteGuard};
use crate::metrics::BypassReason;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::{Describe, Either, Error, Execute, Executor, SqlStr};

/// `inner`, then the statement's bump, awaited before the stream reports its end (so
/// `execute` returns only after every process sharing the cache was invalidated). A
/// stream dropped early (error, cancellation) drops the guard, which bumps anyway.
fn bump_at_end<'e, DB: Driver, T: Send + 'e>(
    inner: BoxStream<'e, T>,
    guard: Option<WriteGuard<DB>>,
) -> BoxStream<'e, T> {
    let bump = futures_util::stream::once(async move {
        if let Some(guard) = guard {
            guard.finish().await;
        }
        None
    })
    .filter_map(futures_util::future::ready);
    inner.chain(bump).boxed()
}

/// Split a query into its SQL text and arguments, as sqlx's own executors do.
pub(crate) fn take<'q, DB: Driver, E: Execute<'q, DB>>(
    mut query: E,
) -> (SqlStr, Result<Option<DB::Arguments>, Error>) {
    let arguments = query.take_arguments().map_err(Error::Encode);
    (query.sql(), arguments)
}

impl<'c, DB: Driver> Executor<'c> for &'c QueryCache<DB> {
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let (sql, arguments) = take(query);
        let arguments = match arguments {
            Ok(a) => a,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        let plan = self.plan_for(sql.as_str(), arguments.as_ref());
        let guard = WriteGuard::new(self, &plan);
        if guard.is_none() {
            self.0.metrics.bypass(BypassReason::PlainExecutor);
        }
        bump_at_end(
            DB::fetch_many(Conn::Pool(&self.0.pool), sql, arguments),
            guard,
        )
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let (sql, arguments) = take(query);
        async move {
            let arguments = arguments?;
            let plan = self.plan_for(sql.as_str(), arguments.as_ref());
            let guard = WriteGuard::new(self, &plan);
            if guard.is_none() {
                self.0.metrics.bypass(BypassReason::PlainExecutor);
            }
            let row = DB::fetch_optional(Conn::Pool(&self.0.pool), sql, arguments).await;
            if let Some(guard) = guard {
                guard.finish().await;
            }
            row
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement, Error>>
    where
        'c: 'e,
    {
        DB::prepare_with(Conn::Pool(&self.0.pool), sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<DB>, Error>>
    where
        'c: 'e,
    {
        DB::describe(Conn::Pool(&self.0.pool), sql)
    }
}
