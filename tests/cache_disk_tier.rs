//! The disk tier under `QueryCache`: a memory miss is served from disk when the entry's
//! generations are current (and promoted to memory), a restarted process serves entries
//! of the previous one without touching Postgres — but never one whose table was
//! written while it was down, or through the cache since — and a failing disk tier is
//! a counted miss that falls back to the database.

mod common;

use querycache::bufpool::{Fault, FaultyFile};
use querycache::tier::disk::restart::{self, TableVersions};
use querycache::tier::disk::{DiskStore, DiskTier};
use querycache::{CachedQuery, QueryCache};
use sqlx::PgPool;
use std::path::Path;
use std::sync::Arc;

async fn run(pool: &PgPool, sql: &'static str) {
    sqlx::raw_sql(sql).execute(pool).await.expect(sql);
}

async fn setup(name: &str) -> Option<PgPool> {
    let pool = common::scratch_database(name).await?;
    run(
        &pool,
        "CREATE TABLE film (id int PRIMARY KEY, title text NOT NULL);
         CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR');
         INSERT INTO actor VALUES (1, 'PENELOPE GUINESS');",
    )
    .await;
    run(&pool, restart::INSTALL_SQL).await;
    for table in ["film", "actor"] {
        let sql = restart::watch_table_sql("public", table);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("watch");
    }
    Some(pool)
}

/// A cache whose memory tier admits nothing (1 byte), so every read reaches the disk
/// tier, or a normal one.
async fn cache(pool: &PgPool, dir: &Path, memory: u64) -> QueryCache<sqlx::Postgres> {
    let versions = TableVersions::load(pool).await.expect("versions");
    let tier = DiskTier::open(dir, 64 << 20, Some(versions)).expect("disk tier");
    QueryCache::builder(pool.clone())
        .memory_capacity(memory)
        .byte_tier(tier)
        .build()
        .await
        .expect("cache")
}

async fn film(cache: &QueryCache<sqlx::Postgres>) -> String {
    sqlx::query_scalar::<_, String>("SELECT title FROM film WHERE id = $1")
        .bind(1)
        .fetch_one_cached(cache)
        .await
        .expect("read film")
}

async fn actor(cache: &QueryCache<sqlx::Postgres>) -> String {
    sqlx::query_scalar::<_, String>("SELECT name FROM actor WHERE id = $1")
        .bind(1)
        .fetch_one_cached(cache)
        .await
        .expect("read actor")
}

#[tokio::test]
async fn a_memory_miss_is_served_from_disk_until_a_write_through_the_cache() {
    let Some(pool) = setup("qc_cache_disk_in_session").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache(&pool, dir.path(), 1).await;
    assert_eq!(film(&cache).await, "ACADEMY DINOSAUR");
    assert_eq!(film(&cache).await, "ACADEMY DINOSAUR");
    let stats = cache.stats();
    assert_eq!((stats.byte_tier_hits, stats.hits, stats.misses), (1, 1, 1));

    sqlx::query("UPDATE film SET title = 'ACE GOLDFINGER' WHERE id = 1")
        .execute(&cache)
        .await
        .expect("write through the cache");
    assert_eq!(
        film(&cache).await,
        "ACE GOLDFINGER",
        "the disk entry is stale"
    );
    assert_eq!(cache.stats().byte_tier_hits, 1);
    assert_eq!(film(&cache).await, "ACE GOLDFINGER");
    assert_eq!(
        cache.stats().byte_tier_hits,
        2,
        "the new fill is served from disk"
    );
}

#[tokio::test]
async fn a_restarted_cache_serves_the_previous_process_entries_but_never_stale_ones() {
    let Some(pool) = setup("qc_cache_disk_restart").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = cache(&pool, dir.path(), 64 << 20).await;
    assert_eq!(film(&first).await, "ACADEMY DINOSAUR");
    assert_eq!(actor(&first).await, "PENELOPE GUINESS");
    drop(first); // the disk tier flushes on drop

    // While no process runs, another client writes film.
    run(
        &pool,
        "UPDATE film SET title = 'ACE GOLDFINGER' WHERE id = 1",
    )
    .await;

    let second = cache(&pool, dir.path(), 64 << 20).await;
    assert_eq!(actor(&second).await, "PENELOPE GUINESS");
    let stats = second.stats();
    assert_eq!(
        (stats.byte_tier_hits, stats.misses),
        (1, 0),
        "served from disk, no query ran"
    );
    assert_eq!(film(&second).await, "ACE GOLDFINGER", "written while down");
    assert_eq!(second.stats().byte_tier_hits, 1);
    assert_eq!(actor(&second).await, "PENELOPE GUINESS");
    assert_eq!(second.stats().hits, 2, "promoted to memory");

    sqlx::query("UPDATE actor SET name = 'NICK WAHLBERG' WHERE id = 1")
        .execute(&second)
        .await
        .expect("write through the cache");
    assert_eq!(actor(&second).await, "NICK WAHLBERG");
    assert_eq!(second.stats().byte_tier_hits, 1);
}

#[tokio::test]
async fn a_failing_disk_tier_is_a_counted_miss_and_the_database_answers() {
    let Some(pool) = setup("qc_cache_disk_failing").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = std::sync::mpsc::channel();
    let builder = DiskStore::builder(64 << 20).with_page_file_wrapper(move |file| {
        let (faulty, faults) = FaultyFile::new(file);
        tx.send(faults).expect("send the fault handle");
        Box::new(faulty)
    });
    let versions = TableVersions::load(&pool).await.expect("versions");
    let tier = Arc::new(DiskTier::with_builder(builder, dir.path(), Some(versions)).expect("tier"));
    let faults = rx.recv().expect("fault handle");
    let cache = QueryCache::builder(pool.clone())
        .memory_capacity(1)
        .byte_tier(Arc::clone(&tier))
        .build()
        .await
        .expect("cache");

    assert_eq!(film(&cache).await, "ACADEMY DINOSAUR");
    tier.store()
        .evict_pages()
        .expect("the entry leaves the pool");
    faults.arm(Fault::FailRead, 0);
    assert_eq!(film(&cache).await, "ACADEMY DINOSAUR", "from the database");
    let stats = cache.stats();
    assert_eq!(stats.byte_tier_hits, 0);
    assert!(
        stats.fallbacks >= 1,
        "the tier error was counted: {stats:?}"
    );
}
