//! Single-flight: concurrent misses on one key run one query. Executions are counted in
//! Postgres itself: `tick(x)` is declared IMMUTABLE (so reads calling it are cacheable)
//! but bumps a sequence and sleeps, so it both counts and holds the query open.

mod common;

use querycache::{CachedQuery, QueryCache};
use sqlx::{PgPool, Postgres};
use std::time::Duration;

const TICK: &str = "SELECT tick(id) FROM t";

async fn setup(name: &str) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::scratch_database(name).await?;
    sqlx::raw_sql(
        "CREATE SEQUENCE calls;
         CREATE TABLE t (id int); INSERT INTO t VALUES (7);
         CREATE FUNCTION tick(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
           $$ BEGIN PERFORM nextval('calls'); PERFORM pg_sleep(0.3); RETURN x; END $$;",
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

async fn executions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM calls")
        .fetch_one(pool)
        .await
        .expect("sequence")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_one_query() {
    let Some((pool, cache)) = setup("qc_test_sf_one").await else {
        return;
    };
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                sqlx::query_scalar::<_, i32>(TICK)
                    .fetch_all_cached(&cache)
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("read"), [7]);
    }
    assert_eq!(executions(&pool).await, 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.misses, stats.coalesced, stats.fills),
        (16, 15, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_query_gives_every_waiter_the_database_error() {
    let Some((pool, cache)) = setup("qc_test_sf_error").await else {
        return;
    };
    let sql = "SELECT tick(id) / 0 FROM t";
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                sqlx::query_scalar::<_, i32>(sql)
                    .fetch_all_cached(&cache)
                    .await
            })
        })
        .collect();
    for t in tasks {
        let err = t.await.expect("join").expect_err("division by zero");
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("22012"), "{err}");
    }
    assert!(executions(&pool).await >= 1);
    assert_eq!(cache.stats().fills, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_strand_its_followers() {
    let Some((pool, cache)) = setup("qc_test_sf_cancel").await else {
        return;
    };
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            sqlx::query_scalar::<_, i32>(TICK)
                .fetch_all_cached(&cache)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let followers: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                sqlx::query_scalar::<_, i32>(TICK)
                    .fetch_all_cached(&cache)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    for f in followers {
        let rows = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("follower finished")
            .expect("join")
            .expect("read");
        assert_eq!(rows, [7]);
    }
    // The aborted leader's query and one new leader's query.
    assert!(
        executions(&pool).await <= 2,
        "followers re-ran their own queries"
    );
}
