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

#[tokio::test]
async fn on_delete_cascade_invalidates_the_child() {
    let Some(pool) = common::scratch_database("qc_test_fresh_cascade").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
         INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (20, 2);",
    )
    .await;
    let cache = cache_on(pool).await;
    let children = || {
        sqlx::query_scalar::<_, i32>("SELECT id FROM child ORDER BY id").fetch_all_cached(&cache)
    };
    assert_eq!(children().await.expect("read"), [10, 20]);
    assert_eq!(children().await.expect("read"), [10, 20]);
    assert_eq!(cache.stats().hits, 1);
    sqlx::query("DELETE FROM parent WHERE id = $1")
        .bind(1)
        .execute(&cache)
        .await
        .expect("delete");
    assert_eq!(children().await.expect("read"), [20]);
}

/// Read through the cache until a read is a hit again (after DDL the catalog reloads in
/// the background and reads bypass meanwhile). Returns the rows.
async fn read_until_hit(cache: &QueryCache<sqlx::Postgres>, sql: &'static str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hits = cache.stats().hits;
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all_cached(cache)
            .await
            .expect(sql);
        if cache.stats().hits > hits {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql} never hit: {:?}",
            cache.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ddl_through_the_cache_replaces_what_names_resolve_to() {
    let Some(pool) = common::scratch_database("qc_test_fresh_ddl").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE item (id int, name text); INSERT INTO item VALUES (1, 'old')",
    )
    .await;
    let cache = cache_on(pool).await;
    const NAMES: &str = "SELECT name FROM item ORDER BY id";
    assert_eq!(read_until_hit(&cache, NAMES).await, ["old"]);

    for ddl in [
        "ALTER TABLE item RENAME TO item_before",
        "CREATE TABLE item (id int, name text)",
        "INSERT INTO item VALUES (1, 'replacement')",
    ] {
        sqlx::raw_sql(ddl).execute(&cache).await.expect(ddl);
    }
    let rows: Vec<String> = sqlx::query_scalar(NAMES)
        .fetch_all_cached(&cache)
        .await
        .expect("read");
    assert_eq!(rows, ["replacement"]);
    assert_eq!(read_until_hit(&cache, NAMES).await, ["replacement"]);
}

#[tokio::test]
async fn a_view_created_through_the_cache_is_invalidated_by_its_base_table() {
    let Some(pool) = common::scratch_database("qc_test_fresh_new_view").await else {
        return;
    };
    run(
        &pool,
        "CREATE TABLE item (id int, name text); INSERT INTO item VALUES (1, 'old')",
    )
    .await;
    let cache = cache_on(pool).await;
    sqlx::raw_sql("CREATE VIEW item_names AS SELECT name FROM item")
        .execute(&cache)
        .await
        .expect("create view");
    // A hit means the reloaded catalog (which knows the view reads `item`) is in use.
    const VIEW: &str = "SELECT name FROM item_names ORDER BY name";
    assert_eq!(read_until_hit(&cache, VIEW).await, ["old"]);
    sqlx::query("UPDATE item SET name = 'new'")
        .execute(&cache)
        .await
        .expect("update");
    let rows: Vec<String> = sqlx::query_scalar(VIEW)
        .fetch_all_cached(&cache)
        .await
        .expect("read");
    assert_eq!(rows, ["new"]);
}
