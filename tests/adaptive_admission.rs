//! Adaptive admission (issue 10, "never slower than no cache"): a statement shape
//! whose results are invalidated before they are ever hit stops being filled, is
//! re-admitted once its results are hit again, and no read is ever stale meanwhile.

mod common;

use querycache::{CachedQuery, QueryCache};

const KEYS: i32 = 4;

#[tokio::test]
async fn an_always_invalidated_shape_stops_filling_and_is_readmitted_when_writes_stop() {
    let Some(pool) = common::scratch_database("qc_rowkey_admission").await else {
        return;
    };
    common::exec(
        &pool,
        "CREATE TABLE counter (k int PRIMARY KEY, v int NOT NULL);
         INSERT INTO counter SELECT k, 0 FROM generate_series(1, 4) k",
    )
    .await;
    let cache = QueryCache::builder(pool)
        .build()
        .await
        .expect("build cache");
    let read = |k: i32| {
        sqlx::query_scalar::<_, i32>("SELECT v FROM counter WHERE k = $1")
            .bind(k)
            .fetch_one_cached(&cache)
    };
    let mut model = [0; KEYS as usize];

    // Phase 1: every read is followed by a write to its key, so every filled result is
    // invalidated before any read could hit it.
    const WRITE_HEAVY: i32 = 256;
    for i in 0..WRITE_HEAVY {
        let k = i % KEYS + 1;
        let slot = (k - 1) as usize;
        assert_eq!(
            read(k).await.expect("read"),
            model[slot],
            "stale read of {k}"
        );
        sqlx::query("UPDATE counter SET v = v + 1 WHERE k = $1")
            .bind(k)
            .execute(&cache)
            .await
            .expect("write");
        model[slot] += 1;
    }
    let after_writes = cache.stats();
    assert_eq!(after_writes.hits, 0, "{after_writes:?}");
    assert!(
        after_writes.shapes_rejected >= 1,
        "the shape was rejected: {after_writes:?}"
    );
    // One window of 64 outcomes before rejecting, then one probe in 16 attempts.
    assert!(
        after_writes.fills < 64 + 2 + (WRITE_HEAVY as u64 - 64) / 8,
        "fills stopped: {after_writes:?}"
    );
    assert!(after_writes.fills_not_admitted > 100, "{after_writes:?}");

    // Phase 2: writes stop. Probes fill, their entries are hit, the shape is admitted
    // again, and reads become hits.
    for i in 0..200 {
        let k = i % KEYS + 1;
        assert_eq!(read(k).await.expect("read"), model[(k - 1) as usize]);
    }
    let readmitted = cache.stats();
    assert!(
        readmitted.shapes_readmitted >= 1,
        "re-admitted: {readmitted:?}"
    );
    for k in 1..=KEYS {
        assert_eq!(read(k).await.expect("read"), model[(k - 1) as usize]);
    }
    let hits = cache.stats().hits;
    assert!(
        hits >= readmitted.hits + KEYS as u64,
        "every key is cached again"
    );

    // Phase 3: a write after re-admission invalidates as always.
    sqlx::query("UPDATE counter SET v = v + 1 WHERE k = $1")
        .bind(1)
        .execute(&cache)
        .await
        .expect("write");
    model[0] += 1;
    assert_eq!(
        read(1).await.expect("read"),
        model[0],
        "stale after re-admission"
    );
}
