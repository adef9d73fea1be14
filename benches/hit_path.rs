//! The full cached-read path against real Postgres: hit latency for a one-row and a
//! 1 000-row result, and miss+fill beside plain sqlx running the same query.
//!
//! "Full path" means what a caller pays: building the sqlx query and binding its
//! argument, the plan lookup (xxh3 of the text), key hashing (arguments via `Debug`),
//! the generation stamp, the memory-tier lookup, and returning the rows. DESIGN §5
//! targets ≤ 1 µs for a one-row hit.
//!
//! Criterion reports means; the table printed first gives p50/p99 from hdrhistogram
//! over a timed loop (each call timed alone, so each figure includes one `Instant`
//! pair, ≈ 0.03 µs here).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   flock /work/wt/bench.lock cargo bench --bench hit_path -- --warm-up-time 1 --measurement-time 3
//! ```
//! Without `DATABASE_URL` it prints a SKIP line and measures nothing.

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use querycache::{CachedQuery, QueryCache};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::future::Future;
use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
struct Row {
    id: i32,
    name: String,
    score: f64,
    created: DateTime<Utc>,
    tags: Vec<String>,
}

const ONE: &str = "SELECT id, name, score, created, tags FROM bench_row WHERE id = $1";
const ALL: &str = "SELECT id, name, score, created, tags FROM bench_row ORDER BY id";

async fn database(url: &str) -> PgPool {
    let admin = PgPool::connect(url).await.expect("connect to DATABASE_URL");
    for sql in [
        "DROP DATABASE IF EXISTS qc_bench_hit_path WITH (FORCE)",
        "CREATE DATABASE qc_bench_hit_path",
    ] {
        sqlx::raw_sql(sql).execute(&admin).await.expect(sql);
    }
    admin.close().await;
    let options = PgConnectOptions::from_str(url)
        .expect("parse DATABASE_URL")
        .database("qc_bench_hit_path");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE bench_row (id int PRIMARY KEY, name text NOT NULL, score float8 NOT NULL,
                                 created timestamptz NOT NULL, tags text[] NOT NULL);
         INSERT INTO bench_row
         SELECT g, 'name ' || g, g * 1.5, '2024-01-01'::timestamptz + g * interval '1 minute',
                ARRAY['tag-a', 'tag-' || (g % 7)]
         FROM generate_series(1, 1000) g;",
    )
    .execute(&pool)
    .await
    .expect("bench table");
    pool
}

/// p50 and p99 in µs of `f` over `n` calls.
fn percentiles<F, Fut>(rt: &Runtime, n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut h = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    rt.block_on(async {
        for _ in 0..n {
            let start = Instant::now();
            f().await;
            h.record(start.elapsed().as_nanos() as u64)
                .expect("in range");
        }
    });
    (
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
    )
}

fn hit_path(c: &mut Criterion) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIP hit_path: DATABASE_URL is not set; this benchmark needs PostgreSQL");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pool = rt.block_on(database(&url));
    let cache: QueryCache<Postgres> = rt
        .block_on(QueryCache::builder(pool.clone()).build())
        .expect("build cache");

    // The same cache at table granularity: the difference of the two one-row hits is
    // what row-level invalidation adds to a key read's hit (bind decoding, key
    // normalization, the bucket plan lookup).
    let cache_table: QueryCache<Postgres> = rt
        .block_on(
            QueryCache::builder(pool.clone())
                .invalidation(querycache::Granularity::Table)
                .build(),
        )
        .expect("build cache");
    let hit_one_table = || async {
        let r: Row = sqlx::query_as(ONE)
            .bind(42)
            .fetch_one_cached(&cache_table)
            .await
            .expect("hit");
        black_box(r);
    };
    let write_row = || async {
        sqlx::query("UPDATE bench_row SET score = score + 1 WHERE id = $1")
            .bind(7)
            .execute(&cache)
            .await
            .expect("write");
    };
    let write_table = || async {
        sqlx::query("UPDATE bench_row SET score = score + 1 WHERE id = $1")
            .bind(7)
            .execute(&cache_table)
            .await
            .expect("write");
    };
    let hit_one = || async {
        let r: Row = sqlx::query_as(ONE)
            .bind(42)
            .fetch_one_cached(&cache)
            .await
            .expect("hit");
        black_box(r);
    };
    let hit_all_shared = || async {
        let r = sqlx::query_as::<_, Row>(ALL)
            .fetch_all_shared(&cache)
            .await
            .expect("hit");
        black_box(r);
    };
    let hit_all_vec = || async {
        let r: Vec<Row> = sqlx::query_as(ALL)
            .fetch_all_cached(&cache)
            .await
            .expect("hit");
        black_box(r);
    };
    let plain_one = || async {
        let r: Row = sqlx::query_as(ONE)
            .bind(42)
            .fetch_one(&pool)
            .await
            .expect("plain");
        black_box(r);
    };
    let plain_all = || async {
        let r: Vec<Row> = sqlx::query_as(ALL).fetch_all(&pool).await.expect("plain");
        black_box(r);
    };
    // A write elsewhere, then the read: bump, miss, query, fill (replacing the entry).
    let miss_one = || async {
        cache.invalidate_table("public.bench_row").await;
        let r: Row = sqlx::query_as(ONE)
            .bind(42)
            .fetch_one_cached(&cache)
            .await
            .expect("miss");
        black_box(r);
    };
    let miss_all = || async {
        cache.invalidate_table("public.bench_row").await;
        let r: Vec<Row> = sqlx::query_as(ALL)
            .fetch_all_cached(&cache)
            .await
            .expect("miss");
        black_box(r);
    };
    // Warm: plans parsed, entries filled, sqlx statement caches primed.
    percentiles(&rt, 200, plain_one);
    percentiles(&rt, 20, plain_all);
    percentiles(&rt, 2, hit_one);
    percentiles(&rt, 2, hit_one_table);
    percentiles(&rt, 2, hit_all_shared);
    percentiles(&rt, 50, write_row);
    percentiles(&rt, 50, write_table);

    let rows = [
        (
            "hit, 1 row (fetch_one_cached)",
            percentiles(&rt, 200_000, hit_one),
        ),
        (
            "hit, 1000 rows (fetch_all_shared: Arc)",
            percentiles(&rt, 50_000, hit_all_shared),
        ),
        (
            "hit, 1000 rows (fetch_all_cached: Vec)",
            percentiles(&rt, 5_000, hit_all_vec),
        ),
        (
            "plain sqlx, 1 row (fetch_one)",
            percentiles(&rt, 5_000, plain_one),
        ),
        ("miss+fill, 1 row", percentiles(&rt, 5_000, miss_one)),
        (
            "plain sqlx, 1000 rows (fetch_all)",
            percentiles(&rt, 500, plain_all),
        ),
        ("miss+fill, 1000 rows", percentiles(&rt, 500, miss_all)),
    ];
    println!();
    println!("hit_path: p50 / p99 in µs, local PostgreSQL, current-thread tokio runtime");
    println!("{:<42} {:>10} {:>10}", "", "p50", "p99");
    for (name, (p50, p99)) in &rows {
        println!("{name:<42} {p50:>10.3} {p99:>10.3}");
    }
    let overhead = |miss: usize, plain: usize| rows[miss].1.0 - rows[plain].1.0;
    println!(
        "miss+fill overhead over plain sqlx (p50): 1 row {:+.1} µs, 1000 rows {:+.1} µs",
        overhead(4, 3),
        overhead(6, 5)
    );
    // Interleaved rounds, so drift on a shared machine hits both sides alike.
    let mut row_level = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..5 {
        row_level[0].push(percentiles(&rt, 100_000, hit_one).0);
        row_level[1].push(percentiles(&rt, 100_000, hit_one_table).0);
        row_level[2].push(percentiles(&rt, 1_000, write_row).0);
        row_level[3].push(percentiles(&rt, 1_000, write_table).0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [hit_row, hit_table, w_row, w_table] = row_level.each_mut().map(median);
    println!(
        "key read hit p50: row granularity {hit_row:.3} µs, table {hit_table:.3} µs \
         (row-level recognition {:+.0} ns); key write p50: row {w_row:.1} µs, table \
         {w_table:.1} µs ({:+.1} µs); medians of 5 interleaved rounds",
        (hit_row - hit_table) * 1000.0,
        w_row - w_table
    );
    println!();
    if let Ok(redis_url) = std::env::var("REDIS_URL") {
        redis_figures(&rt, &pool, &redis_url, rows[3].1);
    } else {
        eprintln!("SKIP hit_path redis figures: REDIS_URL is not set");
    }

    let mut group = c.benchmark_group("hit_path");
    macro_rules! timed {
        ($name:expr, $f:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            $f().await;
                        }
                        start.elapsed()
                    })
                })
            });
        };
    }
    timed!("hit 1 row", hit_one);
    timed!("hit 1000 rows shared", hit_all_shared);
    timed!("plain sqlx 1 row", plain_one);
    timed!("miss+fill 1 row", miss_one);
    group.finish();
}

/// The Redis tier's figures beside a raw `GET` of the same bytes and plain sqlx, all
/// one-row, measured in this run: an L2 hit (a cache whose memory tier keeps nothing),
/// a Strict memory hit (one sync round trip), a Bounded memory hit (none).
fn redis_figures(rt: &Runtime, pool: &PgPool, redis_url: &str, plain: (f64, f64)) {
    use querycache::{Consistency, RedisOptions};
    let prefix = format!("qc_bench_hit_path_{:x}", std::process::id());
    let options = |c: Consistency| {
        RedisOptions::new(redis_url)
            .prefix(&prefix)
            .consistency(c)
            .admit_min_miss_cost(Duration::ZERO)
    };
    let build = |memory: u64, c: Consistency| {
        rt.block_on(
            QueryCache::builder(pool.clone())
                .memory_capacity(memory)
                .redis(options(c))
                .build(),
        )
        .expect("build cache")
    };
    let strict = build(64 << 20, Consistency::Strict);
    let l2_only = build(1, Consistency::Strict);
    let bounded = build(64 << 20, Consistency::Bounded(Duration::from_millis(100)));
    let read = |cache: &QueryCache<Postgres>| {
        let cache = cache.clone();
        async move {
            let r: Row = sqlx::query_as(ONE)
                .bind(42)
                .fetch_one_cached(&cache)
                .await
                .expect("read");
            black_box(r);
        }
    };
    // Fill Redis and the memory tiers; let the bounded cache's heartbeat arrive.
    for cache in [&strict, &l2_only, &bounded] {
        percentiles(rt, 3, || read(cache));
    }
    std::thread::sleep(Duration::from_millis(200));
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut raw = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("redis connection");
    let key: String = rt
        .block_on(
            redis::cmd("KEYS")
                .arg(format!("{prefix}:*:e:*"))
                .query_async::<Vec<String>>(&mut raw),
        )
        .expect("keys")
        .into_iter()
        .next()
        .expect("the entry was filled");
    let bytes: Vec<u8> = rt
        .block_on(redis::cmd("GET").arg(&key).query_async(&mut raw))
        .expect("get");
    let raw_get = || {
        let mut raw = raw.clone();
        let key = key.clone();
        async move {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .expect("get");
            black_box(v);
        }
    };
    let rows = [
        (
            "L2 (Redis) hit, 1 row",
            percentiles(rt, 20_000, || read(&l2_only)),
        ),
        (
            "raw redis GET of the same bytes",
            percentiles(rt, 20_000, raw_get),
        ),
        (
            "Strict memory hit, 1 row",
            percentiles(rt, 20_000, || read(&strict)),
        ),
        (
            "Bounded(100 ms) memory hit, 1 row",
            percentiles(rt, 200_000, || read(&bounded)),
        ),
        ("plain sqlx, 1 row (above)", plain),
    ];
    let stats = l2_only.stats();
    assert!(
        stats.redis_hits > 0,
        "the L2 figure measured L2 hits: {stats:?}"
    );
    let window = rt.block_on(invalidation_window(&strict, &bounded, 300));
    println!(
        "hit_path, Redis tier ({} B entry): p50 / p99 in µs, local Redis, same run",
        bytes.len()
    );
    println!("{:<42} {:>10} {:>10}", "", "p50", "p99");
    for (name, (p50, p99)) in &rows {
        println!("{name:<42} {p50:>10.3} {p99:>10.3}");
    }
    println!(
        "Bounded(100 ms) invalidation window (write returned in A → B's memory refuses the entry), {} writes: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        window.len(),
        window.value_at_quantile(0.5) as f64 / 1e3,
        window.value_at_quantile(0.99) as f64 / 1e3,
        window.max() as f64 / 1e3,
    );
    println!();
}

/// `writes` times: `reader` (Bounded) holds a row in memory, `writer` updates it, and the
/// time from the update's return until `reader` first returns the new row is recorded
/// (ns). Reads poll the memory tier, so this is the pub/sub delivery of the bump.
async fn invalidation_window(
    writer: &QueryCache<Postgres>,
    reader: &QueryCache<Postgres>,
    writes: usize,
) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    let read = || async {
        sqlx::query_scalar::<_, f64>("SELECT score FROM bench_row WHERE id = $1")
            .bind(7)
            .fetch_one_cached(reader)
            .await
            .expect("read")
    };
    for _ in 0..writes {
        let before = read().await;
        read().await;
        sqlx::query("UPDATE bench_row SET score = score + 1 WHERE id = $1")
            .bind(7)
            .execute(writer)
            .await
            .expect("write");
        let returned = Instant::now();
        while read().await == before {
            tokio::task::yield_now().await;
        }
        h.record(returned.elapsed().as_nanos() as u64)
            .expect("in range");
    }
    h
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = hit_path
}
criterion_main!(benches);
