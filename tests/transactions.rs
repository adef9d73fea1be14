//! Transactions through the cache: writes invalidate at COMMIT (not before, not on
//! rollback), and cached reads inside a transaction follow its policy.

mod common;

use querycache::{CachedQuery, QueryCache, TransactionReads};
use sqlx::{PgPool, Postgres};

const NAME: &str = "SELECT name FROM item WHERE id = 1";
const OTHER: &str = "SELECT id FROM other ORDER BY id";

async fn setup(db: &str, policy: TransactionReads) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::scratch_database(db).await?;
    sqlx::raw_sql(
        "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'old');
         CREATE TABLE other (id int); INSERT INTO other VALUES (7);",
    )
    .execute(&pool)
    .await
    .expect("schema");
    let cache = QueryCache::builder(pool.clone())
        .transaction_reads(policy)
        .build()
        .await
        .expect("build");
    Some((pool, cache))
}

async fn name(cache: &QueryCache<Postgres>) -> String {
    sqlx::query_scalar(NAME)
        .fetch_one_cached(cache)
        .await
        .expect("read")
}

async fn rename(tx: &mut querycache::CachedTransaction<Postgres>, to: &str) {
    sqlx::query("UPDATE item SET name = $1 WHERE id = 1")
        .bind(to.to_owned())
        .execute(&mut *tx)
        .await
        .expect("update");
}

#[tokio::test]
async fn commit_invalidates_and_not_before() {
    let Some((_pool, cache)) = setup("qc_test_tx_commit", TransactionReads::default()).await else {
        return;
    };
    assert_eq!(name(&cache).await, "old");
    let mut tx = cache.begin().await.expect("begin");
    rename(&mut tx, "new").await;
    assert_eq!(
        name(&cache).await,
        "old",
        "uncommitted: others still see the old row"
    );
    let hits = cache.stats().hits;
    assert_eq!(hits, 1, "and the cache may keep serving it");
    tx.commit().await.expect("commit");
    assert_eq!(name(&cache).await, "new");
    assert_eq!(cache.stats().hits, hits, "the read after COMMIT was a miss");
    assert_eq!(
        cache.stats().invalidations_by_table.get("public.item"),
        Some(&1)
    );
}

#[tokio::test]
async fn rollback_and_drop_invalidate_nothing() {
    let Some((_pool, cache)) = setup("qc_test_tx_rollback", TransactionReads::default()).await
    else {
        return;
    };
    assert_eq!(name(&cache).await, "old");
    let mut tx = cache.begin().await.expect("begin");
    rename(&mut tx, "never").await;
    tx.rollback().await.expect("rollback");
    let mut tx = cache.begin().await.expect("begin");
    rename(&mut tx, "never either").await;
    drop(tx);
    assert_eq!(name(&cache).await, "old");
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.invalidations),
        (1, 0),
        "no spurious loss: {stats:?}"
    );
}

#[tokio::test]
async fn default_policy_bypasses_only_what_the_transaction_wrote() {
    let Some((_pool, cache)) = setup("qc_test_tx_default", TransactionReads::default()).await
    else {
        return;
    };
    assert_eq!(name(&cache).await, "old");
    let other: Vec<i32> = sqlx::query_scalar(OTHER)
        .fetch_all_cached(&cache)
        .await
        .expect("other");
    let mut tx = cache.begin().await.expect("begin");
    rename(&mut tx, "mine").await;
    let inside: String = sqlx::query_scalar(NAME)
        .fetch_one_cached(&mut tx)
        .await
        .expect("read");
    assert_eq!(inside, "mine", "the transaction sees its own write");
    let other_inside: Vec<i32> = sqlx::query_scalar(OTHER)
        .fetch_all_cached(&mut tx)
        .await
        .expect("other");
    assert_eq!(other_inside, other);
    let stats = cache.stats();
    assert_eq!(stats.bypasses_by_reason.get("transaction"), Some(&1));
    assert_eq!(stats.hits, 1, "the untouched table was served from memory");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn reads_inside_a_transaction_never_fill() {
    let Some((_pool, cache)) = setup("qc_test_tx_nofill", TransactionReads::default()).await else {
        return;
    };
    let mut tx = cache.begin().await.expect("begin");
    let inside: Vec<i32> = sqlx::query_scalar(OTHER)
        .fetch_all_cached(&mut tx)
        .await
        .expect("read");
    assert_eq!(inside, [7]);
    tx.commit().await.expect("commit");
    assert_eq!(cache.stats().fills, 0);
    let _ = name(&cache).await;
    assert_eq!(cache.stats().fills, 1);
}

#[tokio::test]
async fn never_until_write_and_always_policies() {
    for (db, policy, hits_before_write, hits_after_write, sees_own_write) in [
        ("qc_test_tx_never", TransactionReads::Never, 0, 0, true),
        ("qc_test_tx_until", TransactionReads::UntilWrite, 1, 0, true),
        ("qc_test_tx_always", TransactionReads::Always, 1, 1, false),
    ] {
        let Some((_pool, cache)) = setup(db, policy).await else {
            return;
        };
        assert_eq!(name(&cache).await, "old");
        let _: Vec<i32> = sqlx::query_scalar(OTHER)
            .fetch_all_cached(&cache)
            .await
            .expect("fill");
        let base = cache.stats().hits;
        let mut tx = cache.begin().await.expect("begin");
        let _: Vec<i32> = sqlx::query_scalar(OTHER)
            .fetch_all_cached(&mut tx)
            .await
            .expect("read");
        assert_eq!(
            cache.stats().hits - base,
            hits_before_write,
            "{policy:?} before write"
        );
        rename(&mut tx, "mine").await;
        let _: Vec<i32> = sqlx::query_scalar(OTHER)
            .fetch_all_cached(&mut tx)
            .await
            .expect("read");
        assert_eq!(
            cache.stats().hits - base,
            hits_before_write + hits_after_write,
            "{policy:?} after write"
        );
        let inside: String = sqlx::query_scalar(NAME)
            .fetch_one_cached(&mut tx)
            .await
            .expect("read");
        assert_eq!(inside == "mine", sees_own_write, "{policy:?}");
        tx.commit().await.expect("commit");
        assert_eq!(name(&cache).await, "mine", "{policy:?}: commit invalidates");
    }
}
