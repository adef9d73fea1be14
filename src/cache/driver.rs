//! [`Driver`]: what the cache needs from one database driver, implemented per concrete
//! sqlx database.
//!
//! Why a trait per driver instead of bounds like `for<'c> &'c mut DB::Connection:
//! Executor<'c>` on every impl: such a generic bound on the transaction's `Executor`
//! impl makes type inference of unrelated calls (`sqlx::query(..).execute(&cache)`)
//! overflow with E0275, the same problem sqlx documents in `pool/executor.rs`
//! (research §2.2). Here the bounds are discharged once, inside a concrete impl.

use crate::freshness::{Catalog, parse_search_path};
use crate::key::KeyContext;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Database, Describe, Either, Executor, Pool, SqlStr};

/// The stream `Executor::fetch_many` returns for database `DB`.
#[doc(hidden)]
pub type ResultStream<'e, DB> = BoxStream<
    'e,
    Result<Either<<DB as Database>::QueryResult, <DB as Database>::Row>, sqlx::Error>,
>;

/// Where a statement runs: the pool (autocommit) or one transaction's connection.
#[doc(hidden)]
#[derive(Debug)]
pub enum Conn<'e, DB: Database> {
    /// Any connection of the pool.
    Pool(&'e Pool<DB>),
    /// The connection of an open transaction.
    Transaction(&'e mut DB::Connection),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::Postgres {}
}

/// A sqlx database the cache supports: today `sqlx::Postgres`; SQLite and MySQL follow
/// (each needs its dialect in the normalizer and an impl of this trait). Sealed.
pub trait Driver: Database + sealed::Sealed {
    /// The normalizer's dialect for this database.
    #[doc(hidden)]
    const DIALECT: crate::sql::Dialect;

    /// Hash bind arguments for the cache key (see [`crate::key::hash_arguments`]).
    #[doc(hidden)]
    fn hash_arguments(arguments: Option<&Self::Arguments>) -> u128;

    /// The bind arguments one by one, for row-level invalidation; `None` when they
    /// cannot be read.
    #[doc(hidden)]
    fn bind_values(
        arguments: Option<&Self::Arguments>,
    ) -> Option<Vec<crate::freshness::row_keys::BindValue>>;

    /// Run a statement and stream its results, as `Executor::fetch_many`.
    #[doc(hidden)]
    fn fetch_many<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        arguments: Option<Self::Arguments>,
    ) -> ResultStream<'e, Self>;

    /// Run a statement and return its first row, as `Executor::fetch_optional`.
    #[doc(hidden)]
    fn fetch_optional<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        arguments: Option<Self::Arguments>,
    ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>>;

    /// As `Executor::prepare_with`.
    #[doc(hidden)]
    fn prepare_with<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        parameters: &'e [Self::TypeInfo],
    ) -> BoxFuture<'e, Result<Self::Statement, sqlx::Error>>;

    /// As `Executor::describe`.
    #[doc(hidden)]
    fn describe<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<Describe<Self>, sqlx::Error>>;

    /// The session context that keys results: database, role, search path.
    #[doc(hidden)]
    fn session_context(pool: &Pool<Self>) -> BoxFuture<'_, Result<KeyContext, sqlx::Error>>;

    /// The relation catalog, for databases that have one.
    #[doc(hidden)]
    fn load_catalog(pool: &Pool<Self>) -> BoxFuture<'_, crate::Result<Option<Catalog>>>;
}

impl Driver for sqlx::Postgres {
    const DIALECT: crate::sql::Dialect = crate::sql::Dialect::Postgres;

    fn hash_arguments(arguments: Option<&Self::Arguments>) -> u128 {
        crate::key::hash_arguments(arguments)
    }

    fn bind_values(
        arguments: Option<&Self::Arguments>,
    ) -> Option<Vec<crate::freshness::row_keys::BindValue>> {
        super::binds::postgres(arguments)
    }

    fn fetch_many<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        arguments: Option<Self::Arguments>,
    ) -> ResultStream<'e, Self> {
        match conn {
            Conn::Pool(pool) => pool.fetch_many((sql, arguments)),
            Conn::Transaction(c) => c.fetch_many((sql, arguments)),
        }
    }

    fn fetch_optional<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        arguments: Option<Self::Arguments>,
    ) -> BoxFuture<'e, Result<Option<Self::Row>, sqlx::Error>> {
        match conn {
            Conn::Pool(pool) => pool.fetch_optional((sql, arguments)),
            Conn::Transaction(c) => c.fetch_optional((sql, arguments)),
        }
    }

    fn prepare_with<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
        parameters: &'e [Self::TypeInfo],
    ) -> BoxFuture<'e, Result<Self::Statement, sqlx::Error>> {
        match conn {
            Conn::Pool(pool) => pool.prepare_with(sql, parameters),
            Conn::Transaction(c) => c.prepare_with(sql, parameters),
        }
    }

    fn describe<'e>(
        conn: Conn<'e, Self>,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<Describe<Self>, sqlx::Error>> {
        match conn {
            Conn::Pool(pool) => pool.describe(sql),
            Conn::Transaction(c) => c.describe(sql),
        }
    }

    fn session_context(pool: &Pool<Self>) -> BoxFuture<'_, Result<KeyContext, sqlx::Error>> {
        Box::pin(async move {
            let (database, role, search_path): (String, String, String) = sqlx::query_as(
                "SELECT current_database()::text, current_user::text, \
                 current_setting('search_path')",
            )
            .fetch_one(pool)
            .await?;
            Ok(KeyContext::new(
                database,
                role,
                parse_search_path(&search_path),
            ))
        })
    }

    fn load_catalog(pool: &Pool<Self>) -> BoxFuture<'_, crate::Result<Option<Catalog>>> {
        Box::pin(async move { Ok(Some(Catalog::load(pool).await?)) })
    }
}
