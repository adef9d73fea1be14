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
mod processes;
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
#[derive(Debug, Clone, clap::Args)]
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

    /// Warm-up seconds per mode before its first measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// Measured windows per mode: `--duration` is split into this many windows and
    /// the modes alternate (uncached, cached, cached, uncached, …), so that both see
    /// the same machine and database state (other processes' load, table bloat from
    /// the writes so far) instead of one running after the other.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,

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

    /// Run the cached side with the shared Redis tier (L2) at this URL (Strict
    /// consistency unless --bounded-ms; admission as the library's defaults).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// With --redis: `Consistency::Bounded` with this window in ms instead of Strict.
    #[arg(long, value_name = "MS", requires = "redis")]
    bounded_ms: Option<u64>,

    /// Run the cached side in this many OS processes at once (this one and N − 1 child
    /// processes of the same binary), sharing one Redis (`--redis` required) and one
    /// database; the freshness audit's floors are shared through a mapped file, so it
    /// covers reads in one process of writes returned in another. Throughput and
    /// counters are summed over the processes; latencies are this process's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    processes: u32,

    /// Internal: run as a child of `--processes` (the cached side of one workload with
    /// the floors in this file), printing its figures as one JSON line.
    #[arg(long, hide = true, value_name = "FILE")]
    worker_floors: Option<PathBuf>,

    /// Internal: the Redis key prefix a `--processes` run shares.
    #[arg(long, hide = true)]
    redis_prefix: Option<String>,

    /// Testing only: serve memory hits without checking them against the shared
    /// generations, to show that with `--processes` the audit catches reads in one
    /// process of writes made in another.
    #[arg(long, hide = true)]
    unsafe_skip_cross_process_check: bool,

    /// Build the cache without adaptive admission (to compare with it).
    #[arg(long)]
    no_admission: bool,
    /// How finely writes invalidate the cached side: `row` (key reads and key writes
    /// per key, the library's default) or `table` (to compare with it).
    #[arg(long, value_enum, default_value_t = Invalidation::Row)]
    invalidation: Invalidation,
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
    /// Checks of options that depend on each other.
    fn validate(&self) -> Result<()> {
        if self.processes > 1 && self.redis.is_none() {
            return Err(Error::Usage(
                "--processes needs --redis: processes share invalidations through Redis".into(),
            ));
        }
        Ok(())
    }

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
    args.validate()?;
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
    if let Some(floors) = &args.worker_floors {
        // A child of `--processes`: the cached side of its one workload only.
        let workload = *workloads
            .first()
            .ok_or_else(|| Error::Usage("a worker runs one workload".into()))?;
        let cache = Cached(build_cache(pool.clone(), args).await?);
        let plan = Arc::new(Plan::new(workload, &dataset, Some(floors))?);
        let measured = runner::run(&cache, plan, timing, &progress.stage("worker", 0, "s")).await?;
        println!("{}", processes::report(&measured)?);
        pool.close().await;
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(workloads.len());
    for workload in workloads {
        let plain = Plain(pool.clone());
        // A fresh cache per workload: its counters and hit ratio are that workload's
        // (and, with Redis, a fresh key prefix).
        let prefix = format!(
            "querycache_bench_{}_{}_{:x}",
            std::process::id(),
            workload.name(),
            rand::random::<u32>()
        );
        let args = &Args {
            redis_prefix: Some(prefix),
            ..args.clone()
        };
        let cache = Cached(build_cache(pool.clone(), args).await?);
        if args.processes > 1 {
            let row = across_processes(args, workload, &dataset, &plain, &cache, timing, &progress)
                .await?;
            rows.push(row);
            continue;
        }
        let plans = [
            Arc::new(Plan::new(workload, &dataset, None)?),
            Arc::new(Plan::new(workload, &dataset, None)?),
        ];
        let warmup = Timing {
            measure: Duration::ZERO,
            ..timing
        };
        if !timing.warmup.is_zero() {
            measure(
                &plain,
                workload,
                &plans[0],
                warmup,
                &progress,
                "uncached warm-up",
            )
            .await?;
            measure(
                &cache,
                workload,
                &plans[1],
                warmup,
                &progress,
                "cached warm-up",
            )
            .await?;
        }
        let window = Timing {
            warmup: Duration::ZERO,
            measure: timing.measure / args.rounds,
            ..timing
        };
        let (mut uncached, mut cached) = (Measured::empty(), Measured::empty());
        for round in 0..args.rounds {
            let label = |mode: &str| format!("{mode} {}/{}", round + 1, args.rounds);
            // ABBA order: a drift in machine load or table state hits both modes alike.
            let plain_first = round % 2 == 0;
            for second in [false, true] {
                if plain_first != second {
                    let label = label("uncached");
                    let m = measure(&plain, workload, &plans[0], window, &progress, &label);
                    uncached.absorb(m.await?)?;
                } else {
                    let label = label("cached");
                    let m = measure(&cache, workload, &plans[1], window, &progress, &label);
                    cached.absorb(m.await?)?;
                }
            }
        }
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

/// `--processes`: the uncached side in this process, then the cached side here and in
/// `args.processes − 1` children at once, over one floors file; one row.
async fn across_processes(
    args: &Args,
    workload: Workload,
    dataset: &Dataset,
    plain: &Plain,
    cache: &Cached,
    timing: Timing,
    progress: &Progress,
) -> Result<Row> {
    let plan = Arc::new(Plan::new(workload, dataset, None)?);
    let uncached = measure(plain, workload, &plan, timing, progress, "uncached").await?;
    let floors = processes::floors_path(workload.name());
    let children = processes::spawn(args, workload, &floors)?;
    let cached = match Plan::new(workload, dataset, Some(&floors)) {
        Ok(plan) => measure(cache, workload, &Arc::new(plan), timing, progress, "cached").await,
        Err(e) => Err(e),
    };
    let others = processes::collect(children).await;
    let _ = std::fs::remove_file(&floors);
    let mut cached = cached?;
    for other in others? {
        cached.add(&other);
    }
    let mut row = Row::new(
        workload.name(),
        dataset.label(),
        timing.clients,
        &uncached,
        &cached,
    );
    row.processes = args.processes as usize;
    Ok(row)
}

/// `--invalidation`: the cache's [`querycache::Granularity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Invalidation {
    /// Key reads and key writes per key.
    Row,
    /// Every write invalidates its tables.
    Table,
}

/// A cache over `pool` with the memory budget of `--cache-memory`, the Redis tier of
/// `--redis` (and invalidation disabled under the hidden testing flag).
async fn build_cache(pool: PgPool, args: &Args) -> Result<QueryCache<Postgres>> {
    let mut builder = QueryCache::builder(pool)
        .memory_capacity(args.cache_memory << 20)
        .adaptive_admission(!args.no_admission)
        .invalidation(match args.invalidation {
            Invalidation::Row => querycache::Granularity::Row,
            Invalidation::Table => querycache::Granularity::Table,
        });
    if let Some(url) = &args.redis {
        let prefix = args
            .redis_prefix
            .clone()
            .unwrap_or_else(|| format!("querycache_bench_{}", std::process::id()));
        let consistency = match args.bounded_ms {
            Some(ms) => querycache::Consistency::Bounded(Duration::from_millis(ms)),
            None => querycache::Consistency::Strict,
        };
        builder = builder.redis(
            querycache::RedisOptions::new(url)
                .prefix(prefix)
                .consistency(consistency),
        );
    }
    if args.unsafe_disable_invalidation {
        builder = builder.disable_invalidation_for_testing();
    }
    if args.unsafe_skip_cross_process_check {
        builder = builder.skip_cross_process_check_for_testing();
    }
    Ok(builder.build().await?)
}

/// One window of `workload` against `target` (audited against `plan`'s floors), with a
/// progress bar.
async fn measure<T: Target>(
    target: &T,
    workload: Workload,
    plan: &Arc<Plan>,
    timing: Timing,
    progress: &Progress,
    mode: &str,
) -> Result<Measured> {
    let plan = Arc::clone(plan);
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
