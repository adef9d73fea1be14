//! `querycache bench`: benchmarks a Postgres database with and without the cache.
//!
//! For each workload it runs the same client code twice — plain sqlx on a pool, then the
//! same pool behind a fresh `QueryCache` — and reports throughput, latency, the cache's
//! counters and the freshness audit ([`audit`]). The process exits with
//! [`EXIT_STALE_READS`] when any stale read was seen, so CI can gate on it.

mod audit;
mod dataset;
mod error;
mod external;
mod progress;
mod report;
mod runner;
mod target;
mod workloads;

use dataset::{Dataset, DatasetKind, Source};
use error::{Error, Result};
use progress::Progress;
use querycache::QueryCache;
use report::Row;
use runner::{Measured, Timing};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use target::{Cached, Plain, Target};
use workloads::{Plan, Workload};

/// Exit status when the freshness audit saw at least one stale read.
pub const EXIT_STALE_READS: u8 = 3;

/// Options of `querycache bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Postgres server to benchmark; each dataset goes into a database of its own there
    /// (`querycache_bench_pgbench_s{N}`, `querycache_bench_pagila`).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,

    /// Dataset to load (once; later runs reuse it) and run against.
    #[arg(long, value_enum, default_value_t = DatasetKind::Pgbench)]
    dataset: DatasetKind,

    /// pgbench scale factor: 100 000 accounts per unit, as `pgbench -i -s`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    scale: u32,

    /// Directory with `pagila-schema.sql` and `pagila-data.sql` [default:
    /// ../shared/datasets/pagila, relative to the current directory if it exists there,
    /// else to this repository].
    #[arg(long, env = "QUERYCACHE_PAGILA_DIR")]
    data_dir: Option<PathBuf>,

    /// Drop and reload the dataset even if a complete copy is already there.
    #[arg(long)]
    reload: bool,

    /// Measured seconds per workload per mode.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// Warm-up seconds before each measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// Concurrent clients (tokio tasks); the pool has one connection per client.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,

    /// Workloads to run, comma-separated [default: every workload defined on the dataset].
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,

    /// Also write the results to FILE as a JSON list (one object per workload).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Memory budget of the cache's memory tier, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    cache_memory: u64,

    /// Seed of the clients' random streams.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Also run the external-writes workload with N writers whose writes go around the
    /// cache (seen through the watch triggers), and report the invalidation window
    /// p50/p99/max. Without --workloads, only that workload runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    external_writers: usize,

    /// Testing only: build the cache with invalidation disabled, to show that the
    /// freshness audit catches the stale reads that follow.
    #[arg(long, hide = true)]
    unsafe_disable_invalidation: bool,
}

/// Runs the benchmark; the exit status is 0, 1 on an error, or [`EXIT_STALE_READS`].
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("querycache bench: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(&args)) {
        Ok(rows) => {
            let stale: u64 = rows.iter().map(|row| row.stale_reads).sum();
            if stale == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("querycache bench: FAIL: the freshness audit saw {stale} stale reads");
                ExitCode::from(EXIT_STALE_READS)
            }
        }
        Err(e) => {
            eprintln!("querycache bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Args {
    /// The workloads to run: the ones asked for (each must be defined on the dataset),
    /// or all defined on it, in suite order.
    fn workloads(&self) -> Result<Vec<Workload>> {
        let dataset = self.dataset;
        if self.workloads.is_empty() && self.external_writers > 0 {
            return Ok(Vec::new());
        }
        if self.workloads.is_empty() {
            return Ok(Workload::ALL
                .into_iter()
                .filter(|w| w.runs_on(dataset))
                .collect());
        }
        if let Some(w) = self.workloads.iter().find(|w| !w.runs_on(dataset)) {
            return Err(Error::Usage(format!(
                "workload {} is not defined on dataset {}",
                w.name(),
                dataset.name()
            )));
        }
        Ok(self.workloads.clone())
    }
}

async fn bench(args: &Args) -> Result<Vec<Row>> {
    let progress = Progress::detect();
    let server = PgConnectOptions::from_str(&args.database_url)?;
    let source = Source {
        kind: args.dataset,
        scale: args.scale,
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(dataset::default_pagila_dir),
        reload: args.reload,
    };
    let workloads = args.workloads()?;
    let (dataset, options) = dataset::prepare(&server, &source, &progress).await?;
    let pool = PgPoolOptions::new()
        .max_connections(args.clients)
        .min_connections(args.clients)
        .connect_with(options.clone())
        .await?;
    let timing = Timing {
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.duration),
        clients: args.clients as usize,
        seed: args.seed,
    };
    let mut rows = Vec::with_capacity(workloads.len());
    for workload in workloads {
        let uncached = measure(
            &Plain(pool.clone()),
            workload,
            &dataset,
            timing,
            &progress,
            "uncached",
        )
        .await?;
        // A fresh cache per workload: its counters and hit ratio are that workload's.
        let cache = Cached(build_cache(pool.clone(), args).await?);
        let cached = measure(&cache, workload, &dataset, timing, &progress, "cached").await?;
        rows.push(Row::new(
            workload.name(),
            dataset.label(),
            timing.clients,
            &uncached,
            &cached,
        ));
    }
    pool.close().await;
    let mut json: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if !rows.is_empty() {
        print!("{}", report::table(&rows));
    }
    if args.external_writers > 0 {
        let row = external::run(
            options,
            dataset.label(),
            timing.clients,
            args.external_writers,
            timing.measure,
            &progress,
        )
        .await?;
        print!("{}", external::table(&row));
        json.push(serde_json::to_value(&row)?);
    }
    if let Some(path) = &args.json {
        report::write_json(&json, path)?;
    }
    Ok(rows)
}

/// A cache over `pool` with the memory budget of `--cache-memory` (and invalidation
/// disabled under the hidden testing flag).
async fn build_cache(pool: PgPool, args: &Args) -> Result<QueryCache<Postgres>> {
    let mut builder = QueryCache::builder(pool).memory_capacity(args.cache_memory << 20);
    if args.unsafe_disable_invalidation {
        builder = builder.disable_invalidation_for_testing();
    }
    Ok(builder.build().await?)
}

/// One run of `workload` against `target`, with fresh audit floors and a progress bar.
async fn measure<T: Target>(
    target: &T,
    workload: Workload,
    dataset: &Dataset,
    timing: Timing,
    progress: &Progress,
    mode: &str,
) -> Result<Measured> {
    let plan = Arc::new(Plan::new(workload, dataset)?);
    let seconds = (timing.warmup + timing.measure).as_secs();
    let stage = progress.stage(format!("{} {mode}", workload.name()), seconds, "s");
    let measured = runner::run(target, plan, timing, &stage).await?;
    stage.finish(&format!(
        "{:.0} ops/s, p50 {:.1} µs, p99 {:.1} µs, stale reads {}",
        measured.ops_per_s(),
        measured.latency_us(0.5),
        measured.latency_us(0.99),
        measured.stale_reads
    ));
    Ok(measured)
}
