//! `--external-writers N`: the external-writes workload. Its writes go around the
//! cache, on a plain pool of their own, and the cache sees them only through the watch
//! triggers (`querycache::freshness::watch`).
//!
//! Setup: table `querycache_bench_external (id int PRIMARY KEY, n bigint)` with
//! [`ROWS`] rows in the dataset's database, watched alone (`WatchTables::Only`), so the
//! dataset's own tables get no trigger; everything is uninstalled at the end.
//!
//! Phase 1 (window): `clients` readers do cached point reads of random rows; each of the
//! N writers loops: read its row through the cache twice (so an entry is cached), `UPDATE
//! … SET n = n + 1 … RETURNING n` on the plain pool, take the time the commit returned,
//! then read through the cache (yielding between tries) until a read returns the new
//! value. The *invalidation window* is that span: commit returned → the cache refused
//! the old entry. It is an upper bound, as it includes the one read that then went to
//! the database.
//!
//! Phase 2 (double bump): the same readers, writers writing *through* the cache, once
//! with watching and once without: a write through a watching cache is bumped at once
//! and again when its own notification arrives, so entries filled in between miss
//! once more; the two hit ratios show what that costs. Generations are per table, so
//! every write invalidates every cached row of the table; the writers pause 20–60 ms
//! so that entries live between writes.

use super::error::Result;
use super::progress::Progress;
use hdrhistogram::Histogram;
use querycache::freshness::watch::{self, WatchTables};
use querycache::{CachedQuery, QueryCache};
use rand::Rng;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows of the bench table.
pub const ROWS: i32 = 1000;

const SETUP: &str = "
DROP TABLE IF EXISTS querycache_bench_external;
CREATE TABLE querycache_bench_external (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO querycache_bench_external SELECT g, 0 FROM generate_series(1, 1000) g;
";
/// Rows phase 2 reads and writes: few enough that readers refill them between writes.
const HOT: i32 = 20;
/// Pause between writes through the cache in phase 2, ms: slow enough that entries
/// live between two writes (each write invalidates the whole table), so the second
/// bump of a watching cache is visible in the hit ratio.
const THROUGH_PAUSE_MS: std::ops::Range<u64> = 20..60;
const READ: &str = "SELECT n FROM querycache_bench_external WHERE id = $1";
const WRITE: &str = "UPDATE querycache_bench_external SET n = n + 1 WHERE id = $1 RETURNING n";

/// What the workload measured; the JSON object has exactly these fields.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalRow {
    /// Always `external-writes`.
    pub workload: &'static str,
    /// Dataset label (the table lives in its database).
    pub dataset: String,
    /// Concurrent cached readers.
    pub clients: usize,
    /// Writers around the cache (`--external-writers`).
    pub external_writers: usize,
    /// Measured seconds per phase.
    pub duration_s: f64,
    /// External writes whose window was measured.
    pub writes: u64,
    /// Invalidation window, commit returned → first read returning the new value: median, µs.
    pub invalidation_p50_us: f64,
    /// 99th percentile, µs.
    pub invalidation_p99_us: f64,
    /// Maximum, µs.
    pub invalidation_max_us: f64,
    /// Cached reads per second during phase 1 (readers and writers' probes).
    pub reads_per_s: f64,
    /// Hit ratio of phase 1.
    pub hit_ratio: f64,
    /// Phase 2: hit ratio with writes through a watching cache (double bump).
    pub through_cache_hit_ratio_watching: f64,
    /// Phase 2: hit ratio with writes through a cache that does not watch.
    pub through_cache_hit_ratio_not_watching: f64,
}

/// Run both phases on the database of `options`.
pub async fn run(
    options: PgConnectOptions,
    dataset: String,
    clients: usize,
    writers: usize,
    duration: Duration,
    progress: &Progress,
) -> Result<ExternalRow> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(clients + 1).unwrap_or(u32::MAX))
        .connect_with(options.clone())
        .await?;
    let writer_pool = PgPoolOptions::new()
        .max_connections(u32::try_from(writers.max(1)).unwrap_or(u32::MAX))
        .connect_with(options)
        .await?;
    sqlx::raw_sql(SETUP).execute(&pool).await?;
    let watched = WatchTables::only(["querycache_bench_external"]);

    let stage = progress.stage("external-writes window", duration.as_secs(), "s");
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(watched.clone())
        .build()
        .await?;
    let (windows, reads, hit_ratio) =
        window_phase(&cache, &writer_pool, clients, writers, duration).await?;
    stage.finish(&format!(
        "{} writes, window p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        windows.len(),
        windows.value_at_quantile(0.5) as f64 / 1000.0,
        windows.value_at_quantile(0.99) as f64 / 1000.0,
        windows.max() as f64 / 1000.0
    ));

    let stage = progress.stage("external-writes double bump", 2 * duration.as_secs(), "s");
    let watching = through_phase(&cache, clients, writers, duration).await?;
    drop(cache);
    let plain_cache = QueryCache::builder(pool.clone()).build().await?;
    let not_watching = through_phase(&plain_cache, clients, writers, duration).await?;
    stage.finish(&format!(
        "hit ratio through the cache: watching {:.1} %, not watching {:.1} %",
        watching * 100.0,
        not_watching * 100.0
    ));
    drop(plain_cache);

    watch::uninstall(&pool).await?;
    sqlx::raw_sql("DROP TABLE querycache_bench_external")
        .execute(&pool)
        .await?;
    pool.close().await;
    writer_pool.close().await;
    let us = |q: f64| (windows.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    Ok(ExternalRow {
        workload: "external-writes",
        dataset,
        clients,
        external_writers: writers,
        duration_s: duration.as_secs_f64(),
        writes: windows.len(),
        invalidation_p50_us: us(0.5),
        invalidation_p99_us: us(0.99),
        invalidation_max_us: (windows.max() as f64 / 100.0).round() / 10.0,
        reads_per_s: (reads as f64 / duration.as_secs_f64()).round(),
        hit_ratio: (hit_ratio * 10_000.0).round() / 10_000.0,
        through_cache_hit_ratio_watching: (watching * 10_000.0).round() / 10_000.0,
        through_cache_hit_ratio_not_watching: (not_watching * 10_000.0).round() / 10_000.0,
    })
}

async fn read(cache: &QueryCache<Postgres>, id: i32) -> Result<i64> {
    Ok(sqlx::query_scalar(READ)
        .bind(id)
        .fetch_one_cached(cache)
        .await?)
}

/// `clients` tasks reading random rows of `1..=keys` through `cache` until `stop`,
/// counting into `reads`.
fn readers(
    cache: &QueryCache<Postgres>,
    keys: i32,
    clients: usize,
    stop: &Arc<AtomicBool>,
    reads: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..clients)
        .map(|_| {
            let (cache, stop, reads) = (cache.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let id = rand::rng().random_range(1..=keys);
                    read(&cache, id).await?;
                    reads.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        })
        .collect()
}

async fn window_phase(
    cache: &QueryCache<Postgres>,
    writer_pool: &PgPool,
    clients: usize,
    writers: usize,
    duration: Duration,
) -> Result<(Histogram<u64>, u64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let before = cache.stats();
    let mut readers = readers(cache, ROWS, clients, &stop, &reads);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (cache, pool, stop, reads) = (
            cache.clone(),
            writer_pool.clone(),
            stop.clone(),
            reads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut windows = histogram();
            let mut id = 1 + i32::try_from(w).unwrap_or(0) % ROWS;
            while !stop.load(Ordering::Relaxed) {
                id = 1 + (id + i32::try_from(writers).unwrap_or(1)) % ROWS;
                read(&cache, id).await?;
                read(&cache, id).await?;
                let n: i64 = sqlx::query_scalar(WRITE).bind(id).fetch_one(&pool).await?;
                let committed = Instant::now();
                loop {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if read(&cache, id).await? >= n {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let ns = u64::try_from(committed.elapsed().as_nanos()).unwrap_or(u64::MAX);
                windows.saturating_record(ns.max(1));
                let pause = rand::rng().random_range(1..5);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Ok::<_, super::error::Error>(windows)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = histogram();
    for t in tasks {
        let h = t.await??;
        all.add(&h).expect("same bounds");
    }
    for r in readers.drain(..) {
        r.await??;
    }
    let after = cache.stats();
    Ok((all, reads.load(Ordering::Relaxed), ratio(&before, &after)))
}

/// Readers plus `writers` tasks writing through `cache`; returns the hit ratio.
async fn through_phase(
    cache: &QueryCache<Postgres>,
    clients: usize,
    writers: usize,
    duration: Duration,
) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let before = cache.stats();
    let readers = readers(cache, HOT, clients, &stop, &reads);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (cache, stop) = (cache.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = rand::rng().random_range(1..=HOT);
                let _: i64 = sqlx::query_scalar(WRITE).bind(id).fetch_one(&cache).await?;
                let pause = rand::rng().random_range(THROUGH_PAUSE_MS);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Ok::<_, super::error::Error>(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks.into_iter().chain(readers) {
        t.await??;
    }
    Ok(ratio(&before, &cache.stats()))
}

/// Windows in ns, 1 ns to 60 s, three significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn ratio(before: &querycache::Stats, after: &querycache::Stats) -> f64 {
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

/// The row as a small text table.
pub fn table(row: &ExternalRow) -> String {
    format!(
        "external-writes  writers {}  writes {}  invalidation window p50 / p99 / max {:.0} / {:.0} / {:.0} µs  \
         reads/s {:.0}  hit ratio {:.1} %  writes through the cache, hit ratio watching / not {:.1} % / {:.1} %  {}\n",
        row.external_writers,
        row.writes,
        row.invalidation_p50_us,
        row.invalidation_p99_us,
        row.invalidation_max_us,
        row.reads_per_s,
        row.hit_ratio * 100.0,
        row.through_cache_hit_ratio_watching * 100.0,
        row.through_cache_hit_ratio_not_watching * 100.0,
        row.dataset
    )
}
