//! The cache-aside race: a reader misses and runs its query, a writer commits and
//! invalidates, then the reader stores the rows it read before the write. Generations
//! snapshotted before the query make that fill detectable; it must be refused, and no
//! later read may return the old rows.

mod common;

use futures_util::FutureExt;
use querycache::{CachedQuery, QueryCache};
use sqlx::{PgPool, Postgres};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

const READ: &str = "SELECT v FROM counter WHERE id = $1";

async fn counters(name: &str, keys: i32) -> Option<PgPool> {
    let pool = common::scratch_database(name).await?;
    sqlx::raw_sql("CREATE TABLE counter (id int PRIMARY KEY, v bigint NOT NULL)")
        .execute(&pool)
        .await
        .expect("schema");
    sqlx::query("INSERT INTO counter SELECT g, 0 FROM generate_series(1, $1) g")
        .bind(keys)
        .execute(&pool)
        .await
        .expect("rows");
    Some(pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_held_across_a_committed_write_is_refused() {
    let Some(pool) = counters("qc_test_race_held", 1).await else {
        return;
    };

    // The hook parks the first miss between its query and its fill.
    let armed = Arc::new(AtomicBool::new(true));
    let (reached_tx, mut reached) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Semaphore::new(0));
    let cache = {
        let (armed, release) = (Arc::clone(&armed), Arc::clone(&release));
        QueryCache::builder(pool)
            .before_fill_for_testing(move |_key| {
                let park = armed.swap(false, Ordering::SeqCst);
                let (reached_tx, release) = (reached_tx.clone(), Arc::clone(&release));
                async move {
                    if park {
                        reached_tx.send(()).expect("test alive");
                        release.acquire().await.expect("open").forget();
                    }
                }
                .boxed()
            })
            .build()
            .await
            .expect("build")
    };

    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            sqlx::query_scalar::<_, i64>(READ)
                .bind(1)
                .fetch_one_cached(&cache)
                .await
        })
    };
    reached
        .recv()
        .await
        .expect("the reader's query returned and is parked");

    sqlx::query("UPDATE counter SET v = v + 1 WHERE id = $1")
        .bind(1)
        .execute(&cache)
        .await
        .expect("write");
    release.add_permits(1);

    // The reader began before the write returned: the old value is a correct answer
    // for it. Storing it is not.
    assert_eq!(reader.await.expect("join").expect("read"), 0);
    assert_eq!(cache.stats().stale_fills_refused, 1);
    assert_eq!(cache.stats().fills, 0);

    let after: i64 = sqlx::query_scalar(READ)
        .bind(1)
        .fetch_one_cached(&cache)
        .await
        .expect("read");
    assert_eq!(
        after, 1,
        "a read that began after the write returned sees it"
    );
    let again: i64 = sqlx::query_scalar(READ)
        .bind(1)
        .fetch_one_cached(&cache)
        .await
        .expect("read");
    assert_eq!(again, 1);
    assert_eq!(cache.stats().hits, 1, "the fresh result was cached");
}

/// Readers and writers hammer a few counters through one cache. Every read must return
/// at least the value of every increment that had returned before the read began.
/// Returns (reads, violations).
async fn hammer(cache: QueryCache<Postgres>, keys: i32, run_for: Duration) -> (u64, u64) {
    let floor: Arc<Vec<AtomicI64>> = Arc::new((0..=keys).map(|_| AtomicI64::new(0)).collect());
    let reads = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let (cache, floor) = (cache.clone(), Arc::clone(&floor));
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = 1 + (n >> 33) as i32 % keys;
                let v: i64 =
                    sqlx::query_scalar("UPDATE counter SET v = v + 1 WHERE id = $1 RETURNING v")
                        .bind(key)
                        .fetch_one(&cache)
                        .await
                        .expect("increment");
                floor[key as usize].fetch_max(v, Ordering::SeqCst);
            }
        }));
    }
    for r in 0..8u64 {
        let (cache, floor) = (cache.clone(), Arc::clone(&floor));
        let (reads, violations) = (Arc::clone(&reads), Arc::clone(&violations));
        tasks.push(tokio::spawn(async move {
            let mut n = 100 + r;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = 1 + (n >> 33) as i32 % keys;
                let at_least = floor[key as usize].load(Ordering::SeqCst);
                let v: i64 = sqlx::query_scalar(READ)
                    .bind(key)
                    .fetch_one_cached(&cache)
                    .await
                    .expect("read");
                reads.fetch_add(1, Ordering::Relaxed);
                if v < at_least {
                    violations.fetch_add(1, Ordering::Relaxed);
                }
                // A hit completes without awaiting anything; yield so writers run.
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    (
        reads.load(Ordering::Relaxed),
        violations.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_never_miss_a_returned_write() {
    let Some(pool) = counters("qc_test_race_random", 8).await else {
        return;
    };
    let cache = QueryCache::builder(pool).build().await.expect("build");
    let (reads, violations) = hammer(cache.clone(), 8, Duration::from_secs(20)).await;
    let stats = cache.stats();
    eprintln!("reads {reads}, violations {violations}, {stats:?}");
    assert_eq!(violations, 0, "stale reads");
    assert!(stats.hits > 0, "the cache served hits: {stats:?}");
}

/// The checker above is only worth something if it catches stale reads: with
/// invalidation switched off it must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_stale_reads_without_invalidation() {
    let Some(pool) = counters("qc_test_race_checker", 8).await else {
        return;
    };
    let cache = QueryCache::builder(pool)
        .disable_invalidation_for_testing()
        .build()
        .await
        .expect("build");
    let (_, violations) = hammer(cache, 8, Duration::from_secs(3)).await;
    assert!(
        violations > 0,
        "no stale read detected with invalidation off"
    );
}
