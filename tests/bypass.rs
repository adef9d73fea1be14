//! What is never cached, and per-query options: each bypass is counted by reason and
//! runs on the database every time.

mod common;

use querycache::{CachedQuery, QueryCache};
use sqlx::{PgPool, Postgres};
use std::time::Duration;

async fn setup(name: &str) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::scratch_database(name).await?;
    sqlx::raw_sql(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 10), (2, 20);
         CREATE SEQUENCE s;
         CREATE FUNCTION next_v() RETURNS bigint LANGUAGE sql VOLATILE AS $$ SELECT nextval('s') $$;
         CREATE FUNCTION stable_v() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM t $$;
         CREATE FUNCTION double(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;",
    )
    .execute(&pool)
    .await
    .expect("schema");
    let cache = QueryCache::builder(pool.clone())
        .build()
        .await
        .expect("build");
    Some((pool, cache))
}

async fn twice(cache: &QueryCache<Postgres>, sql: &'static str) -> (Vec<String>, Vec<String>) {
    let read = || sqlx::query_scalar::<_, String>(sql).fetch_all_cached(cache);
    (read().await.expect(sql), read().await.expect(sql))
}

#[tokio::test]
async fn volatile_and_stable_functions_bypass_immutable_ones_cache() {
    let Some((_pool, cache)) = setup("qc_test_bypass_functions").await else {
        return;
    };
    let (a, b) = twice(&cache, "SELECT next_v()::text").await;
    assert_ne!(a, b, "a volatile function runs every time");
    twice(&cache, "SELECT stable_v()::text").await;
    twice(&cache, "SELECT random()::text").await;
    let stats = cache.stats();
    assert_eq!(
        stats.bypasses_by_reason.get("volatile_function"),
        Some(&6),
        "{stats:?}"
    );
    assert_eq!(stats.hits, 0);

    let (a, b) = twice(&cache, "SELECT double(v)::text FROM t ORDER BY id").await;
    assert_eq!(
        (a, b),
        (
            vec!["20".to_owned(), "40".to_owned()],
            vec!["20".to_owned(), "40".to_owned()]
        )
    );
    assert_eq!(
        cache.stats().hits,
        1,
        "an IMMUTABLE user function is cacheable"
    );
}

#[tokio::test]
async fn row_locks_plain_executor_reads_and_per_query_bypass() {
    let Some((_pool, cache)) = setup("qc_test_bypass_misc").await else {
        return;
    };
    twice(&cache, "SELECT v::text FROM t WHERE id = 1 FOR UPDATE").await;
    let _: Vec<(i32,)> = sqlx::query_as("SELECT id FROM t")
        .fetch_all(&cache)
        .await
        .expect("plain");
    for _ in 0..2 {
        let _: Vec<i32> = sqlx::query_scalar("SELECT id FROM t")
            .cache_bypass()
            .fetch_all_cached(&cache)
            .await
            .expect("bypass");
    }
    let stats = cache.stats();
    assert_eq!(stats.bypasses_by_reason.get("row_lock"), Some(&2));
    assert_eq!(stats.bypasses_by_reason.get("plain_executor"), Some(&1));
    assert_eq!(stats.bypasses_by_reason.get("per_query"), Some(&2));
    assert_eq!((stats.hits, stats.fills), (0, 0));
}

#[tokio::test]
async fn ttl_expires_entries() {
    let Some((_pool, cache)) = setup("qc_test_bypass_ttl").await else {
        return;
    };
    let read = || {
        sqlx::query_scalar::<_, i32>("SELECT v FROM t WHERE id = 2")
            .cache_ttl(Duration::from_millis(200))
            .fetch_one_cached(&cache)
    };
    assert_eq!(read().await.expect("read"), 20);
    assert_eq!(read().await.expect("read"), 20);
    assert_eq!(cache.stats().hits, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read().await.expect("read"), 20);
    assert_eq!(
        (cache.stats().hits, cache.stats().misses),
        (1, 2),
        "expired"
    );
}

#[tokio::test]
async fn manual_invalidation_for_writes_made_elsewhere() {
    let Some((pool, cache)) = setup("qc_test_bypass_manual").await else {
        return;
    };
    let read =
        || sqlx::query_scalar::<_, i32>("SELECT v FROM t WHERE id = 1").fetch_one_cached(&cache);
    assert_eq!(read().await.expect("read"), 10);
    sqlx::query("UPDATE t SET v = 11 WHERE id = 1")
        .execute(&pool)
        .await
        .expect("write elsewhere");
    assert_eq!(
        read().await.expect("read"),
        10,
        "a write the cache did not see"
    );
    cache.invalidate_table("t").await;
    assert_eq!(read().await.expect("read"), 11);
    sqlx::query("UPDATE t SET v = 12 WHERE id = 1")
        .execute(&pool)
        .await
        .expect("write elsewhere");
    cache.invalidate_all().await;
    assert_eq!(read().await.expect("read"), 12);
    assert_eq!(cache.stats().entries, 1);
}
