//! Shared helpers for integration tests that need real services.
//!
//! Tests read `DATABASE_URL` / `REDIS_URL`. Without them a test prints a loud `SKIP`
//! line and returns, unless `QUERYCACHE_REQUIRE_SERVICES=1` (set by `scripts/test` and
//! CI), in which case a missing service is a failure.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
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
    let admin = PgPool::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop scratch database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .expect("create scratch database");
    admin.close().await;
    let options = PgConnectOptions::from_str(&url)
        .expect("parse DATABASE_URL")
        .database(name);
    Some(
        PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connect to scratch database"),
    )
}
