//! The Redis tier across caches and OS processes: shared fills, shared invalidation,
//! and the randomized monotonic-counter check (`redis_support`) with 0 stale reads in
//! Strict mode — and stale reads when the cross-process check is skipped, so the
//! checker can fail.

mod common;
mod redis_support;

use querycache::{CachedQuery, Consistency, QueryCache, RedisOptions};
use redis_support::{Floors, Tally};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

async fn cache(
    pool: PgPool,
    redis_url: &str,
    prefix: &str,
    consistency: Consistency,
) -> QueryCache<sqlx::Postgres> {
    QueryCache::builder(pool)
        .redis(
            RedisOptions::new(redis_url)
                .prefix(prefix)
                .consistency(consistency)
                .admit_min_miss_cost(Duration::ZERO),
        )
        .build()
        .await
        .expect("build cache")
}

async fn second_pool(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("second pool")
}

#[tokio::test]
async fn a_fill_in_one_cache_is_a_hit_in_another_and_a_write_in_either_invalidates_both() {
    let Some(pool) = common::scratch_database("qc_test_redis_share").await else {
        return;
    };
    let Some(url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    let prefix = redis_support::prefix("share");
    let a = cache(pool.clone(), &url, &prefix, Consistency::Strict).await;
    let b = cache(second_pool(&pool).await, &url, &prefix, Consistency::Strict).await;
    async fn read(c: &QueryCache<sqlx::Postgres>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT v FROM counter WHERE k = $1")
            .bind(3)
            .fetch_one_cached(c)
            .await
    }
    assert_eq!(read(&a).await.expect("a"), 0);
    assert_eq!(a.stats().redis_fills, 1, "a's miss filled Redis");
    assert_eq!(read(&b).await.expect("b"), 0);
    assert_eq!(b.stats().redis_hits, 1, "b was served a's fill from Redis");
    assert_eq!(read(&b).await.expect("b"), 0);
    assert_eq!(b.stats().hits, 2, "then from its own memory");

    // A write through a: b's memory entry must not be served again.
    sqlx::query("UPDATE counter SET v = v + 1 WHERE k = $1")
        .bind(3)
        .execute(&a)
        .await
        .expect("write through a");
    assert_eq!(read(&b).await.expect("b after a's write"), 1);
    assert_eq!(read(&a).await.expect("a after its write"), 1);

    // And the other way round, through a view of the table.
    async fn view(c: &QueryCache<sqlx::Postgres>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar::<_, i64>("SELECT v FROM counter_view WHERE k = $1")
            .bind(3)
            .fetch_one_cached(c)
            .await
    }
    assert_eq!(view(&a).await.expect("a view"), 1);
    assert_eq!(view(&a).await.expect("a view"), 1);
    sqlx::query("UPDATE counter SET v = v + 1 WHERE k = $1")
        .bind(3)
        .execute(&b)
        .await
        .expect("write through b");
    assert_eq!(view(&a).await.expect("a view after b's write"), 2);
    assert_eq!(a.stats().fallbacks, 0);
    assert_eq!(b.stats().fallbacks, 0);
}

async fn randomized(skip_check: bool, secs: u64, name: &str) -> Option<(Tally, u64)> {
    randomized_with(skip_check, secs, name, Duration::ZERO).await
}

/// The randomized check with `admit_min_miss_cost` as given (`ZERO` stores every
/// result in Redis; the default 1 ms stores none of these point reads, so their Redis
/// lookups are mostly skipped).
async fn randomized_with(
    skip_check: bool,
    secs: u64,
    name: &str,
    admit_min_miss_cost: Duration,
) -> Option<(Tally, u64)> {
    let pool = common::scratch_database(name).await?;
    let url = common::redis_url()?;
    redis_support::create_schema(&pool).await;
    let prefix = redis_support::prefix(name);
    let mut caches = Vec::new();
    for p in [pool.clone(), second_pool(&pool).await] {
        let mut builder = QueryCache::builder(p).redis(
            RedisOptions::new(&url)
                .prefix(&prefix)
                .admit_min_miss_cost(admit_min_miss_cost),
        );
        if skip_check {
            builder = builder.skip_cross_process_check_for_testing();
        }
        caches.push(builder.build().await.expect("cache"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let floors = Arc::new(Floors::open(&dir.path().join("floors")));
    let tally =
        redis_support::run_workers(&caches, &floors, 6, Duration::from_secs(secs), 10, 0x5eed)
            .await;
    let hits = caches.iter().map(|c| c.stats().hits).sum();
    for c in &caches {
        let s = c.stats();
        eprintln!(
            "cache: hits {} redis hits {} misses {} fallbacks {:?}",
            s.hits, s.redis_hits, s.misses, s.fallbacks_by_reason
        );
    }
    Some((tally, hits))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_serves_no_stale_read_across_two_caches() {
    let secs = redis_support::freshness_secs();
    let Some((tally, hits)) = randomized(false, secs, "qc_test_redis_strict").await else {
        return;
    };
    eprintln!("strict, {secs} s: {tally:?}, hits {hits}");
    assert_eq!(tally.errors, 0);
    assert!(tally.writes > 100 && tally.reads > 1000, "{tally:?}");
    assert!(hits > 0, "the run must exercise hits");
    assert_eq!(tally.stale, 0, "stale reads in Strict mode: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_with_skipped_redis_lookups_serves_no_stale_read() {
    let secs = redis_support::freshness_secs() / 2;
    let Some((tally, hits)) = randomized_with(
        false,
        secs,
        "qc_test_redis_strict_idle",
        Duration::from_secs(3600),
    )
    .await
    else {
        return;
    };
    eprintln!("strict, Redis admits nothing, {secs} s: {tally:?}, hits {hits}");
    assert_eq!(tally.errors, 0);
    assert!(hits > 0, "the run must exercise hits");
    assert_eq!(tally.stale, 0, "stale reads in Strict mode: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cross_process_check_the_same_run_reads_stale() {
    let Some((tally, _)) = randomized(true, 5, "qc_test_redis_unchecked").await else {
        return;
    };
    eprintln!("unchecked: {tally:?}");
    assert!(
        tally.stale > 0,
        "the checker must see stale reads: {tally:?}"
    );
}

/// The child side of `two_os_processes_share_one_redis_and_never_read_stale`: does
/// nothing unless the parent set `QC_REDIS_CHILD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_worker() {
    let Ok(spec) = std::env::var("QC_REDIS_CHILD") else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [db_url, redis_url, prefix, floors, secs, seed] = parts[..] else {
        panic!("bad QC_REDIS_CHILD {spec}");
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(6)
        .connect(db_url)
        .await
        .expect("child pool");
    let cache = cache(pool, redis_url, prefix, Consistency::Strict).await;
    let floors = Arc::new(Floors::open(std::path::Path::new(floors)));
    let tally = redis_support::run_workers(
        std::slice::from_ref(&cache),
        &floors,
        4,
        Duration::from_secs(secs.parse().expect("secs")),
        10,
        seed.parse().expect("seed"),
    )
    .await;
    let stats = cache.stats();
    println!(
        "QC_RESULT {} {} {} {} {} {}",
        tally.reads, tally.writes, tally.stale, tally.errors, stats.hits, stats.redis_hits
    );
}

#[tokio::test]
async fn two_os_processes_share_one_redis_and_never_read_stale() {
    let Some(pool) = common::scratch_database("qc_test_redis_procs").await else {
        return;
    };
    let Some(redis_url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    let db_url = {
        let base = common::database_url().expect("database url");
        let (root, _) = base.rsplit_once('/').expect("url has a path");
        format!("{root}/qc_test_redis_procs")
    };
    let prefix = redis_support::prefix("procs");
    let dir = tempfile::tempdir().expect("tempdir");
    let floors = dir.path().join("floors");
    Floors::open(&floors);
    let secs = redis_support::freshness_secs();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_worker",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(
                    "QC_REDIS_CHILD",
                    format!(
                        "{db_url}|{redis_url}|{prefix}|{}|{secs}|{}",
                        floors.display(),
                        1000 + i
                    ),
                )
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut total = Tally::default();
    for child in children {
        let out = child.wait_with_output().expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("QC_RESULT ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no result from child: {stdout}"));
        let n: Vec<u64> = line
            .split(' ')
            .map(|x| x.parse().expect("number"))
            .collect();
        eprintln!(
            "child: reads {} writes {} stale {} errors {} hits {} redis hits {}",
            n[0], n[1], n[2], n[3], n[4], n[5]
        );
        assert!(n[4] > 0, "each process must serve hits");
        total.add(Tally {
            reads: n[0],
            writes: n[1],
            stale: n[2],
            errors: n[3],
        });
    }
    assert_eq!(total.errors, 0);
    assert!(total.writes > 50, "{total:?}");
    assert_eq!(total.stale, 0, "stale reads across processes: {total:?}");
    drop(pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mode_serves_memory_hits_alone_and_is_fresh_once_the_window_has_passed() {
    let Some(pool) = common::scratch_database("qc_test_redis_bounded").await else {
        return;
    };
    let Some(url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    let prefix = redis_support::prefix("bounded");
    let window = Duration::from_millis(200);
    let a = cache(pool.clone(), &url, &prefix, Consistency::Bounded(window)).await;
    let b = cache(
        second_pool(&pool).await,
        &url,
        &prefix,
        Consistency::Bounded(window),
    )
    .await;
    async fn read(c: &QueryCache<sqlx::Postgres>, k: i32) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT v FROM counter WHERE k = $1")
            .bind(k)
            .fetch_one_cached(c)
            .await
            .expect("read")
    }
    // Let the subscribers connect and the first heartbeats arrive.
    tokio::time::sleep(window).await;
    for round in 1..=20 {
        assert_eq!(read(&b, 5).await, round - 1);
        sqlx::query("UPDATE counter SET v = v + 1 WHERE k = $1")
            .bind(5)
            .execute(&a)
            .await
            .expect("write through a");
        // The promise: a read that starts `window` after the write returned is fresh.
        tokio::time::sleep(window).await;
        assert_eq!(
            read(&b, 5).await,
            round,
            "round {round}: stale after the window"
        );
    }
    // Memory hits are served while the heartbeat trusts the view: many hits, few
    // Redis reads (a strict cache would sync on every one).
    let before = b.stats();
    for _ in 0..200 {
        assert_eq!(read(&b, 7).await, 0);
    }
    let after = b.stats();
    assert!(after.hits - before.hits >= 199, "{after:?}");
    assert_eq!(after.fallbacks, 0, "{:?}", after.fallbacks_by_reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_write_heard_by_two_caches_bumps_the_shared_generation_once() {
    let Some(pool) = common::scratch_database("qc_test_redis_external").await else {
        return;
    };
    let Some(url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    let prefix = redis_support::prefix("external");
    let mut caches = Vec::new();
    for p in [pool.clone(), second_pool(&pool).await] {
        caches.push(
            QueryCache::builder(p)
                .redis(RedisOptions::new(&url).prefix(&prefix))
                .watch_tables(querycache::WatchTables::All)
                .build()
                .await
                .expect("cache"),
        );
    }
    let generation = || {
        let mut c = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*:gen"))
            .query(&mut c)
            .expect("keys");
        let v: Option<u64> = redis::cmd("HGET")
            .arg(&keys[0])
            .arg("public.counter")
            .query(&mut c)
            .expect("hget");
        v.unwrap_or(0)
    };
    for c in &caches {
        assert_eq!(
            sqlx::query_scalar::<_, i64>("SELECT v FROM counter WHERE k = 2")
                .fetch_one_cached(c)
                .await
                .expect("read"),
            0
        );
    }
    let before = generation();
    for round in 1..=5 {
        // A write around both caches: each one's listener hears it.
        sqlx::query("UPDATE counter SET v = v + 1 WHERE k = 2")
            .execute(&pool)
            .await
            .expect("external write");
        for c in &caches {
            c.sync_external_writes(Duration::from_secs(5))
                .await
                .expect("fence");
            assert_eq!(
                sqlx::query_scalar::<_, i64>("SELECT v FROM counter WHERE k = 2")
                    .fetch_one_cached(c)
                    .await
                    .expect("read"),
                round,
                "fresh in every cache after the fence"
            );
        }
    }
    assert_eq!(
        generation() - before,
        5,
        "one shared bump per external write, not one per listening process"
    );
}

/// Deterministic form of a race the randomized check once caught: in Strict mode a
/// miss whose Redis lookup is skipped (the statement's results are never admitted to
/// Redis) has not synced its stamp, so it must not join a single-flight that started
/// before another process's write returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsynced_miss_does_not_join_a_flight_older_than_a_remote_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Notify;

    const READ: &str = "SELECT v FROM counter_view WHERE k = $1";
    const WRITE: &str = "UPDATE counter SET v = v + 1 WHERE k = $1 RETURNING v";
    let Some(pool) = common::scratch_database("qc_test_redis_unsynced_flight").await else {
        return;
    };
    let Some(url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    let prefix = redis_support::prefix("unsynced_flight");
    let options = || {
        RedisOptions::new(&url)
            .prefix(&prefix)
            .admit_min_miss_cost(Duration::from_secs(3600))
    };
    let (hold, parked, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let a = {
        let (hold, parked, release) = (hold.clone(), parked.clone(), release.clone());
        QueryCache::builder(pool.clone())
            .redis(options())
            .before_fill_for_testing(move |_| {
                let (hold, parked, release) = (hold.clone(), parked.clone(), release.clone());
                Box::pin(async move {
                    if hold.swap(false, Ordering::SeqCst) {
                        parked.notify_one();
                        release.notified().await;
                    }
                })
            })
            .build()
            .await
            .expect("cache a")
    };
    let b = QueryCache::builder(second_pool(&pool).await)
        .redis(options())
        .build()
        .await
        .expect("cache b");
    let read = |cache: QueryCache<sqlx::Postgres>| async move {
        sqlx::query_scalar::<_, i64>(READ)
            .bind(1)
            .fetch_one_cached(&cache)
            .await
            .expect("read")
    };
    let write = |cache: &QueryCache<sqlx::Postgres>| {
        let cache = cache.clone();
        async move {
            sqlx::query_scalar::<_, i64>(WRITE)
                .bind(1)
                .fetch_one(&cache)
                .await
                .expect("write")
        }
    };
    // Misses whose results Redis does not admit make later lookups of the statement
    // skip Redis (`cache/redis_tier.rs`).
    for _ in 0..9 {
        write(&a).await;
        read(a.clone()).await;
    }
    write(&a).await;

    hold.store(true, Ordering::SeqCst);
    let leader = tokio::spawn(read(a.clone()));
    parked.notified().await; // the leader's query ran; its fill waits
    let written = write(&b).await; // returned in the other cache
    let follower = tokio::spawn(read(a.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    let old = leader.await.expect("leader");
    let got = follower.await.expect("follower");
    assert!(
        old < written,
        "the leader read before the write: {old} < {written}"
    );
    assert!(
        got >= written,
        "a read that began after the write returned got {got} < {written}"
    );
}
