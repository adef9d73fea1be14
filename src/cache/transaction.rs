//! [`CachedTransaction`]: a sqlx transaction whose writes invalidate at COMMIT.
//!
//! sqlx 0.9 removed `impl Executor for &mut Transaction`; `&mut CachedTransaction` is an
//! `Executor` again (per driver, see [`Driver`]). Writes through it are recorded and
//! bumped after COMMIT returns; a rollback (explicit, or by dropping the transaction)
//! bumps nothing. Cached reads through it follow the cache's
//! [`TransactionReads`] policy and never fill the cache.

use super::QueryCache;
use super::builder::TransactionReads;
use super::driver::{Conn, Driver};
use super::executor::take;
use super::plan::Plan;
use crate::metrics::BypassReason;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::{Describe, Either, Error, Executor, SqlStr, Transaction};
use std::collections::BTreeSet;
use std::sync::Arc;

/// An open transaction on one pooled connection, from [`QueryCache::begin`].
///
/// Use `&mut tx` wherever sqlx takes an executor (`sqlx::query(…).execute(&mut tx)`), and
/// as the target of cached reads (`.fetch_all_cached(&mut tx)`). Finish with
/// [`commit`](Self::commit) or [`rollback`](Self::rollback); dropping it rolls back.
pub struct CachedTransaction<DB: Driver> {
    cache: QueryCache<DB>,
    tx: Transaction<'static, DB>,
    /// Schema-qualified relations written so far (write sets, closed).
    written: BTreeSet<Arc<str>>,
    /// A write whose write set is unknown, or DDL: commit bumps the global epoch.
    unknown: bool,
    /// DDL ran (or a write to a relation the catalog lacks): commit reloads the
    /// catalog.
    reload: bool,
}

impl<DB: Driver> std::fmt::Debug for CachedTransaction<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTransaction")
            .field("written", &self.written)
            .field("unknown", &self.unknown)
            .field("reload", &self.reload)
            .finish_non_exhaustive()
    }
}

impl<DB: Driver> QueryCache<DB> {
    /// Begin a transaction on a connection from the pool.
    ///
    /// # Errors
    /// As `Pool::begin`: acquiring a connection or running `BEGIN` failed.
    pub async fn begin(&self) -> Result<CachedTransaction<DB>, Error> {
        Ok(CachedTransaction {
            cache: self.clone(),
            tx: self.0.pool.begin().await?,
            written: BTreeSet::new(),
            unknown: false,
            reload: false,
        })
    }
}

impl<DB: Driver> CachedTransaction<DB> {
    /// Commit, then invalidate everything the transaction wrote. The bump happens
    /// even when COMMIT fails: its outcome may be unknown (a lost connection), and an
    /// extra invalidation is never wrong.
    ///
    /// # Errors
    /// As `Transaction::commit`.
    pub async fn commit(self) -> Result<(), Error> {
        let CachedTransaction {
            cache,
            tx,
            written,
            unknown,
            reload,
        } = self;
        let result = tx.commit().await;
        if !cache.0.config.invalidation_disabled {
            let set = cache
                .0
                .generations
                .relation_set(written.iter().map(|n| &**n));
            if reload {
                cache.reload_catalog();
            }
            cache.bump(&set, unknown).await;
        }
        result
    }

    /// Roll back; nothing is invalidated.
    ///
    /// # Errors
    /// As `Transaction::rollback`.
    pub async fn rollback(self) -> Result<(), Error> {
        self.tx.rollback().await
    }

    pub(crate) fn cache(&self) -> &QueryCache<DB> {
        &self.cache
    }

    pub(crate) fn connection(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }

    /// Remember what `plan` writes, for the bump at commit and the read policy.
    pub(crate) fn record_writes(&mut self, plan: &Plan) {
        self.written.extend(plan.writes.names().iter().cloned());
        self.unknown |= plan.writes_unknown || plan.changes_catalog();
        self.reload |= plan.changes_catalog();
    }

    fn has_written(&self) -> bool {
        !self.written.is_empty() || self.unknown
    }

    /// Why a cached read of `plan` inside this transaction must bypass the cache.
    pub(crate) fn bypass_reason(&self, plan: &Plan) -> Option<BypassReason> {
        let bypass = match self.cache.0.config.transaction_reads {
            TransactionReads::Always => false,
            TransactionReads::Never => true,
            TransactionReads::UntilWrite => self.has_written(),
            TransactionReads::BypassWritten => {
                self.unknown || plan.reads.names().iter().any(|r| self.written.contains(r))
            }
        };
        bypass.then_some(BypassReason::Transaction)
    }

    fn prepare_write(&mut self, sql: &str) {
        let plan = self.cache.plan(sql);
        self.record_writes(&plan);
    }
}

/// `&mut CachedTransaction<$db>` as an `Executor`, per driver (a generic impl trips
/// E0275 in callers' type inference; see [`Driver`]).
macro_rules! impl_transaction_executor {
    ($db:ty) => {
        impl<'c> Executor<'c> for &'c mut CachedTransaction<$db> {
            type Database = $db;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<
                'e,
                Result<
                    Either<<$db as sqlx::Database>::QueryResult, <$db as sqlx::Database>::Row>,
                    Error,
                >,
            >
            where
                'c: 'e,
                E: 'q + sqlx::Execute<'q, $db>,
            {
                let (sql, arguments) = take(query);
                let arguments = match arguments {
                    Ok(a) => a,
                    Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
                };
                self.prepare_write(sql.as_str());
                <$db as Driver>::fetch_many(Conn::Transaction(&mut *self.tx), sql, arguments)
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<<$db as sqlx::Database>::Row>, Error>>
            where
                'c: 'e,
                E: 'q + sqlx::Execute<'q, $db>,
            {
                let (sql, arguments) = take(query);
                async move {
                    let arguments = arguments?;
                    self.prepare_write(sql.as_str());
                    <$db as Driver>::fetch_optional(
                        Conn::Transaction(&mut *self.tx),
                        sql,
                        arguments,
                    )
                    .await
                }
                .boxed()
            }

            fn prepare_with<'e>(
                self,
                sql: SqlStr,
                parameters: &'e [<$db as sqlx::Database>::TypeInfo],
            ) -> BoxFuture<'e, Result<<$db as sqlx::Database>::Statement, Error>>
            where
                'c: 'e,
            {
                <$db as Driver>::prepare_with(Conn::Transaction(&mut *self.tx), sql, parameters)
            }

            fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<$db>, Error>>
            where
                'c: 'e,
            {
                <$db as Driver>::describe(Conn::Transaction(&mut *self.tx), sql)
            }
        }
    };
}

impl_transaction_executor!(sqlx::Postgres);
