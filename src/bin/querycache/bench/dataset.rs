//! The benchmark databases: one per dataset (and pgbench scale), created and loaded on
//! first use, reused afterwards, rebuilt with `--reload` or when an earlier load did not
//! finish (its loader's marker is missing).

use super::error::{Error, Result};
use super::progress::Progress;
use querycache::datasets::{pagila, pgbench};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use std::path::{Path, PathBuf};

/// Which dataset to benchmark, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetKind {
    /// The pgbench tables, generated at `--scale`.
    Pgbench,
    /// The pagila sample database, loaded from `--data-dir`.
    Pagila,
}

impl DatasetKind {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pgbench => "pgbench",
            Self::Pagila => "pagila",
        }
    }
}

/// What to load and whether to force it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The dataset.
    pub kind: DatasetKind,
    /// pgbench scale (`pgbench -i -s`); ignored for pagila.
    pub scale: u32,
    /// Directory holding `pagila-schema.sql` and `pagila-data.sql`.
    pub data_dir: PathBuf,
    /// Drop and load again even when a complete copy is there.
    pub reload: bool,
}

impl Source {
    /// The database the dataset lives in.
    pub fn database_name(&self) -> String {
        match self.kind {
            DatasetKind::Pgbench => format!("querycache_bench_pgbench_s{}", self.scale),
            DatasetKind::Pagila => "querycache_bench_pagila".to_owned(),
        }
    }
}

/// A loaded dataset and the key ranges workloads draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// pgbench at `scale`: accounts `1..=100 000·scale`.
    Pgbench {
        /// The scale factor.
        scale: u32,
    },
    /// pagila: films `1..=films`, customers `1..=customers`.
    Pagila {
        /// Number of films (ids are dense from 1).
        films: u64,
        /// Number of customers (ids are dense from 1).
        customers: u64,
    },
}

impl Dataset {
    /// Which dataset this is.
    pub fn kind(&self) -> DatasetKind {
        match self {
            Self::Pgbench { .. } => DatasetKind::Pgbench,
            Self::Pagila { .. } => DatasetKind::Pagila,
        }
    }

    /// The name in the output: `pgbench-s10`, `pagila`.
    pub fn label(&self) -> String {
        match self {
            Self::Pgbench { scale } => format!("pgbench-s{scale}"),
            Self::Pagila { .. } => "pagila".to_owned(),
        }
    }
}

/// The pagila directory when `--data-dir` is not given: `../shared/datasets/pagila`
/// relative to the current directory when it exists, else relative to this repository.
pub fn default_pagila_dir() -> PathBuf {
    let relative = Path::new("../shared/datasets/pagila");
    if relative.is_dir() {
        return relative.to_owned();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Makes sure the dataset is loaded (loading it if needed, under a Postgres advisory
/// lock so concurrent runs do not load it twice) and returns it with the connect
/// options of its database.
///
/// # Errors
/// Connection, DDL or load failures; a pagila directory without the dump files.
pub async fn prepare(
    server: &PgConnectOptions,
    source: &Source,
    progress: &Progress,
) -> Result<(Dataset, PgConnectOptions)> {
    let name = source.database_name();
    let options = server.clone().database(&name);
    let mut admin = PgConnection::connect_with(server).await?;
    // A session-level lock: released when `admin` closes, even if we fail in between.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&name)
        .execute(&mut admin)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    let complete = exists && !source.reload && {
        let pool = loader_pool(&options).await?;
        let complete = is_complete(&pool, source).await;
        pool.close().await;
        complete?
    };
    if !complete {
        // The name comes from our own constants and a number: safe to splice.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        let pool = loader_pool(&options).await?;
        let loaded = load(&pool, source, &name, progress).await;
        pool.close().await;
        loaded?;
    }
    let mut conn = PgConnection::connect_with(&options).await?;
    let dataset = match source.kind {
        DatasetKind::Pgbench => Dataset::Pgbench {
            scale: source.scale,
        },
        DatasetKind::Pagila => prepare_pagila(&mut conn).await?,
    };
    conn.close().await?;
    admin.close().await?;
    Ok((dataset, options))
}

/// A small pool on the dataset's database for the loaders.
async fn loader_pool(options: &PgConnectOptions) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await?)
}

/// Whether the database holds a complete load: our marker (written after the loader
/// returned) is there, and the loader agrees.
async fn is_complete(pool: &PgPool, source: &Source) -> Result<bool> {
    let marked: bool =
        sqlx::query_scalar("SELECT to_regclass('querycache_bench_loaded') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !marked {
        return Ok(false);
    }
    Ok(match source.kind {
        DatasetKind::Pgbench => {
            pgbench::is_loaded(&mut *pool.acquire().await?, source.scale).await?
        }
        DatasetKind::Pagila => pagila::is_loaded(pool).await?,
    })
}

/// Loads the dataset into the (new, empty) database behind `pool`, then writes the
/// marker `querycache_bench_loaded` last.
async fn load(pool: &PgPool, source: &Source, name: &str, progress: &Progress) -> Result<()> {
    match source.kind {
        DatasetKind::Pgbench => {
            let rows = pgbench::row_count(source.scale);
            let stage = progress.stage(
                format!("loading pgbench scale {} into {name}", source.scale),
                rows,
                "rows",
            );
            let mut conn = pool.acquire().await?;
            pgbench::load(&mut conn, source.scale, &mut |done| {
                stage.set_position(done)
            })
            .await?;
            stage.finish(&format!("{rows} rows"));
        }
        DatasetKind::Pagila => {
            let dir = &source.data_dir;
            let stage = progress.stage(
                format!("loading pagila from {} into {name}", dir.display()),
                1,
                "steps",
            );
            let report = pagila::load(pool, dir).await?;
            let rows: u64 = report.rows_copied.iter().map(|(_, rows)| rows).sum();
            let skipped: Vec<&str> = report.skipped.iter().map(|s| s.object.as_str()).collect();
            stage.finish(&format!(
                "{} objects, {rows} rows; skipped (need a newer server): {}",
                report.objects_loaded,
                if skipped.is_empty() {
                    "none".to_owned()
                } else {
                    skipped.join(", ")
                }
            ));
        }
    }
    sqlx::query("CREATE TABLE querycache_bench_loaded AS SELECT now() AS loaded_at")
        .execute(pool)
        .await?;
    Ok(())
}

/// The audit table of the pagila read/write mixes: one visit counter per customer
/// (`qc_audit(k, v)`), then the dense id ranges the workloads draw from.
async fn prepare_pagila(conn: &mut PgConnection) -> Result<Dataset> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS qc_audit (k int PRIMARY KEY, v bigint NOT NULL DEFAULT 0); \
         INSERT INTO qc_audit (k) SELECT customer_id FROM customer ON CONFLICT (k) DO NOTHING",
    )
    .execute(&mut *conn)
    .await?;
    let films = dense_ids(
        conn,
        "SELECT count(*), coalesce(max(film_id), 0)::int8 FROM film",
        "film",
    )
    .await?;
    let customers = dense_ids(
        conn,
        "SELECT count(*), coalesce(max(customer_id), 0)::int8 FROM customer",
        "customer",
    )
    .await?;
    Ok(Dataset::Pagila { films, customers })
}

/// The row count of a table whose ids must run densely from 1 (the workloads draw ids).
async fn dense_ids(conn: &mut PgConnection, sql: &'static str, table: &str) -> Result<u64> {
    let (count, max): (i64, i64) = sqlx::query_as(sql).fetch_one(&mut *conn).await?;
    if count == 0 || count != max {
        return Err(Error::Usage(format!(
            "pagila table {table} has {count} rows with ids up to {max}; the workloads need ids 1..=n"
        )));
    }
    Ok(count.unsigned_abs())
}
