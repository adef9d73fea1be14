//! Shared helpers for integration tests that need real services.
//!
//! Tests read `DATABASE_URL` / `REDIS_URL`. Without them a test prints a loud `SKIP`
//! line and returns, unless `QUERYCACHE_REQUIRE_SERVICES=1` (set by `scripts/test` and
//! CI), in which case a missing service is a failure.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;

fn services_required() -> bool {
    std::env::var("QUERYCACHE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn missing(service: &str, var: &str) -> Option<String> {
    if services_required() {
        panic!("{var} is not set and QUERYCACHE_REQUIRE_SERVICES=1: {service} is required");
    }
    eprintln!("SKIP: {var} is not set; this test needs {service} (run scripts/test)");
    None
}

/// The Postgres URL, or `None` (after a loud SKIP line) when it is not configured.
///
/// # Panics
/// When `DATABASE_URL` is missing and `QUERYCACHE_REQUIRE_SERVICES=1`.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => missing("PostgreSQL", "DATABASE_URL"),
    }
}

/// The Redis URL, or `None` (after a loud SKIP line) when it is not configured.
///
/// # Panics
/// When `REDIS_URL` is missing and `QUERYCACHE_REQUIRE_SERVICES=1`.
pub fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => missing("Redis", "REDIS_URL"),
    }
}

/// A pool on a fresh, empty database named `name` (dropped and re-created), so tests
/// that run in parallel do not see each other's tables. Use a name unique to the test.
///
/// Returns `None` when Postgres is not configured (see [`database_url`]).
pub async fn scratch_database(name: &str) -> Option<PgPool> {
    let url = database_url()?;
    let mut admin = PgConnection::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    recreate_database(&mut admin, name, None).await;
    admin.close().await.expect("close the admin connection");
    Some(pool_on(&url, name).await)
}

/// The template every [`pagila_database`] is copied from.
pub const PAGILA_TEMPLATE: &str = "qc_pagila_template";

/// Advisory-lock key that serializes building [`PAGILA_TEMPLATE`] across test processes
/// (the bytes of `"qcpagila"`).
const PAGILA_LOCK_KEY: i64 = 0x7163_7061_6769_6c61;

/// The Pagila directory: `QUERYCACHE_PAGILA_DIR`, else `../shared/datasets/pagila` beside
/// the crate (CI's clone) or beside its parent directory (a worktree under `wt/`).
/// `None` (after a loud SKIP line) when no candidate holds the dump files.
///
/// # Panics
/// When the dataset is missing and `QUERYCACHE_REQUIRE_SERVICES=1`.
pub fn pagila_dir() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("QUERYCACHE_PAGILA_DIR") {
        Some(dir) if !dir.is_empty() => vec![PathBuf::from(dir)],
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            vec![
                manifest.join("../shared/datasets/pagila"),
                manifest.join("../../shared/datasets/pagila"),
            ]
        }
    };
    let found = candidates.iter().find(|dir| {
        dir.join(querycache::datasets::pagila::SCHEMA_FILE)
            .is_file()
    });
    match found {
        Some(dir) => Some(dir.clone()),
        None if services_required() => panic!(
            "the Pagila dataset is missing (looked in {candidates:?}; set QUERYCACHE_PAGILA_DIR) \
             and QUERYCACHE_REQUIRE_SERVICES=1"
        ),
        None => {
            eprintln!(
                "SKIP: the Pagila dataset is missing (looked in {candidates:?}); set QUERYCACHE_PAGILA_DIR"
            );
            None
        }
    }
}

/// A pool (max 8 connections) on a fresh copy of Pagila named `name`: dropped, then
/// created with `CREATE DATABASE name TEMPLATE qc_pagila_template`. Use a name unique
/// to the test.
///
/// The template is built once per server: under a Postgres advisory lock (so parallel
/// test processes build it once), Pagila is loaded into `qc_pagila_template_loading`,
/// checked with `pagila::is_loaded`, and only then renamed to the template name, so a
/// half-loaded template is never copied. Delete the template by hand
/// (`DROP DATABASE qc_pagila_template`) after changing the loader.
///
/// Returns `None` when Postgres or the dataset is not available (see [`database_url`],
/// [`pagila_dir`]).
pub async fn pagila_database(name: &str) -> Option<PgPool> {
    let url = database_url()?;
    let dir = pagila_dir()?;
    // The advisory lock is held by this session until unlocked (or the session ends).
    let mut lock = PgConnection::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PAGILA_LOCK_KEY)
        .execute(&mut lock)
        .await
        .expect("take the Pagila template lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(PAGILA_TEMPLATE)
            .fetch_one(&mut lock)
            .await
            .expect("look up the Pagila template");
    if !exists {
        let loading = format!("{PAGILA_TEMPLATE}_loading");
        recreate_database(&mut lock, &loading, None).await;
        let pool = pool_on(&url, &loading).await;
        let report = querycache::datasets::pagila::load(&pool, &dir)
            .await
            .expect("load Pagila into the template");
        assert!(
            querycache::datasets::pagila::is_loaded(&pool)
                .await
                .expect("check the Pagila template"),
            "Pagila loaded but is_loaded() is false: {report:?}"
        );
        pool.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{loading}\" RENAME TO \"{PAGILA_TEMPLATE}\""
        )))
        .execute(&mut lock)
        .await
        .expect("rename the loaded Pagila template");
    }
    recreate_database(&mut lock, name, Some(PAGILA_TEMPLATE)).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PAGILA_LOCK_KEY)
        .execute(&mut lock)
        .await
        .expect("release the Pagila template lock");
    lock.close().await.expect("close the admin connection");
    Some(pool_on(&url, name).await)
}

/// Drops database `name` (forcing other sessions off) and creates it again, empty or as
/// a copy of `template`.
async fn recreate_database(admin: &mut PgConnection, name: &str, template: Option<&str>) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await
    .expect("drop scratch database");
    let template = template
        .map(|t| format!(" TEMPLATE \"{t}\""))
        .unwrap_or_default();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\"{template}"
    )))
    .execute(&mut *admin)
    .await
    .expect("create scratch database");
}

async fn pool_on(url: &str, name: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("parse DATABASE_URL")
        .database(name);
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("connect to scratch database")
}

/// Runs `sql` (one or more statements, simple protocol) on `pool`.
///
/// # Panics
/// When the database returns an error; the message names the statement.
pub async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `"schema.name"` as a schema-qualified `RelationName`.
///
/// # Panics
/// When `qualified` has no `.`.
pub fn rel(qualified: &str) -> querycache::sql::RelationName {
    let (schema, name) = qualified.split_once('.').expect("schema-qualified name");
    querycache::sql::RelationName::new(Some(schema), name)
}

/// The rows of `sql` (one text column) read through the cache.
///
/// # Panics
/// When the query fails; the message names it.
pub async fn cached_column(
    cache: &querycache::QueryCache<sqlx::Postgres>,
    sql: &str,
) -> Vec<String> {
    use querycache::CachedQuery;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all_cached(cache)
        .await
        .expect(sql)
}

/// The rows of `sql` (one text column) read straight from the pool: the oracle a
/// cached read is compared with.
///
/// # Panics
/// When the query fails; the message names it.
pub async fn plain_column(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .expect(sql)
}
