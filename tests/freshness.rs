//! Freshness: after a write through the cache returns, no cached read returns the old
//! result. Each test first proves the read was a hit (so the cache really held the old
//! rows), then writes, then reads again.

mod common;

use querycache::{CachedQuery, QueryCache};
use sqlx::PgPool;

async fn cache_on(pool: PgPool) -> QueryCache<sqlx::Postgres> {
    QueryCache::builder(pool)
        .build()
        .await
        .expect("build cache")
}

async fn run(pool: &PgPool, sql: &'static str) {
    sqlx::raw_sql(sql).execute(pool).await.expect(sql);
}

#[tokio::test]
async fn direct_write_invalidates_a_cached_read() {
    let Some(pool) = common::scratch_database("qc_test_fresh_direct").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'old')",
    )
    .await;
    let cache = cache_on(pool).await;
    let read = || {
        sqlx::query_scalar::<_, String>("SELECT name FROM item WHERE id = $1")
            .bind(1)
            .fetch_one_cached(&cache)
    };
    assert_eq!(read().await.expect("read"), "old");
    assert_eq!(read().await.expect("read"), "old");
    assert_eq!(
        cache.stats().hits,
        1,
        "the second read was served from memory"
    );

    sqlx::query("UPDATE item SET name = $1 WHERE id = $2")
        .bind("new")
        .bind(1)
        .execute(&cache)
        .await
        .expect("update");
    assert_eq!(read().await.expect("read"), "new");
    let stats = cache.stats();
    assert_eq!(stats.hits, 1);
    assert!(stats.invalidations >= 1);
}

#[tokio::test]
async fn raw_sql_and_fetch_optional_writes_invalidate_too() {
    let Some(pool) = common::scratch_database("qc_test_fresh_raw").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'a')",
    )
    .await;
    let cache = cache_on(pool).await;
    let ids =
        || sqlx::query_scalar::<_, i32>("SELECT id FROM item ORDER BY id").fetch_all_cached(&cache);
    assert_eq!(ids().await.expect("ids"), [1]);
    assert_eq!(ids().await.expect("ids"), [1]);
    assert_eq!(cache.stats().hits, 1);

    sqlx::raw_sql("INSERT INTO item VALUES (2, 'b')")
        .execute(&cache)
        .await
        .expect("insert");
    assert_eq!(ids().await.expect("ids"), [1, 2]);

    let returned: Option<(i32,)> = sqlx::query_as("INSERT INTO item VALUES (3, 'c') RETURNING id")
        .fetch_optional(&cache)
        .await
        .expect("insert returning");
    assert_eq!(returned, Some((3,)));
    assert_eq!(ids().await.expect("ids"), [1, 2, 3]);
}

#[tokio::test]
async fn unrelated_writes_keep_entries() {
    let Some(pool) = common::scratch_database("qc_test_fresh_unrelated").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE a (id int); CREATE TABLE b (id int); INSERT INTO a VALUES (1)",
    )
    .await;
    let cache = cache_on(pool).await;
    let read = || sqlx::query_scalar::<_, i32>("SELECT id FROM a").fetch_all_cached(&cache);
    assert_eq!(read().await.expect("read"), [1]);
    sqlx::query("INSERT INTO b VALUES (1)")
        .execute(&cache)
        .await
        .expect("insert");
    assert_eq!(read().await.expect("read"), [1]);
    assert_eq!(
        cache.stats().hits,
        1,
        "a write to b does not invalidate reads of a"
    );
}
