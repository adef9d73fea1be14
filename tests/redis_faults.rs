//! The Redis tier when Redis misbehaves: killed and restarted (losing its data),
//! paused (`CLIENT PAUSE`), full (`maxmemory` with `noeviction`), and bad bytes under
//! our keys. In every case: no query error, no stale read, the failures counted as
//! fallbacks, and the tier used again once Redis is back.

mod common;
mod redis_support;

use querycache::codec;
use querycache::tier::redis::entry;
use querycache::{CachedQuery, QueryCache, RedisOptions};
use redis_support::{Floors, PrivateRedis};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

async fn caches(pool: &PgPool, url: &str, prefix: &str) -> Vec<QueryCache<sqlx::Postgres>> {
    let mut out = Vec::new();
    for _ in 0..2 {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect_with((*pool.connect_options()).clone())
            .await
            .expect("pool");
        out.push(
            QueryCache::builder(p)
                .redis(
                    RedisOptions::new(url)
                        .prefix(prefix)
                        .timeout(Duration::from_millis(50))
                        .admit_min_miss_cost(Duration::ZERO),
                )
                .build()
                .await
                .expect("cache"),
        );
    }
    out
}

fn used(caches: &[QueryCache<sqlx::Postgres>]) -> (u64, u64, u64) {
    caches.iter().fold((0, 0, 0), |(h, f, b), c| {
        let s = c.stats();
        (h + s.redis_hits, f + s.redis_fills, b + s.fallbacks)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_restarted_paused_and_full_redis_cost_no_error_and_no_stale_read() {
    let Some(pool) = common::scratch_database("qc_test_redis_faults").await else {
        return;
    };
    if common::redis_url().is_none() {
        return;
    }
    redis_support::create_schema(&pool).await;
    let mut redis = PrivateRedis::start();
    let caches = caches(&pool, &redis.url(), "qc_test_faults").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let floors = Arc::new(Floors::open(&dir.path().join("floors")));
    let phase = Duration::from_millis(1500);
    let workers = {
        let (caches, floors) = (caches.clone(), Arc::clone(&floors));
        tokio::spawn(async move {
            redis_support::run_workers(&caches, &floors, 6, phase * 12, 10, 0xfa17).await
        })
    };
    let step = || tokio::time::sleep(phase);
    step().await;
    let (_, fills_before, _) = used(&caches);
    assert!(fills_before > 0, "the tier was in use before the faults");

    // Killed: the connection drops, its data (generations included) is gone.
    redis.kill();
    step().await;
    let (_, _, fallbacks_down) = used(&caches);
    assert!(
        fallbacks_down > 0,
        "reads and writes while Redis was down are counted"
    );
    redis.restart();
    step().await;
    step().await;
    let (_, fills_after_restart, _) = used(&caches);
    assert!(
        fills_after_restart > fills_before,
        "the tier is used again after the restart, without restarting the process"
    );

    // Paused: every call stalls past its deadline.
    redis
        .command(&["CLIENT", "PAUSE", "1500", "ALL"])
        .expect("pause");
    step().await;
    step().await;

    // Full: writes (fills, bumps) are refused with OOM.
    redis
        .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .expect("policy");
    redis
        .command(&["CONFIG", "SET", "maxmemory", "1"])
        .expect("maxmemory");
    step().await;
    step().await;
    redis
        .command(&["CONFIG", "SET", "maxmemory", "0"])
        .expect("unlimited");
    step().await;
    let (hits_recovered, fills_recovered, _) = used(&caches);

    let tally = workers.await.expect("workers");
    let (hits_end, fills_end, fallbacks_end) = used(&caches);
    for c in &caches {
        eprintln!("{:?}", c.stats().fallbacks_by_reason);
    }
    eprintln!("{tally:?}; redis hits {hits_end}, fills {fills_end}, fallbacks {fallbacks_end}");
    assert_eq!(tally.errors, 0, "no query failed because of Redis");
    assert_eq!(
        tally.stale, 0,
        "no stale read through the faults: {tally:?}"
    );
    assert!(tally.writes > 50 && tally.reads > 500, "{tally:?}");
    assert!(
        fills_end > fills_recovered || hits_end > hits_recovered,
        "the tier is used again after the pause and the OOM"
    );
}

/// Replace the one entry under `prefix` with `bytes`; returns its key.
fn overwrite_entry(url: &str, prefix: &str, bytes: impl FnOnce(&[u8]) -> Vec<u8>) {
    let mut c = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:e:*"))
        .query(&mut c)
        .expect("keys");
    assert_eq!(keys.len(), 1, "one entry: {keys:?}");
    let old: Vec<u8> = redis::cmd("GET").arg(&keys[0]).query(&mut c).expect("get");
    let new = bytes(&old);
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(new)
        .query(&mut c)
        .expect("set");
}

#[tokio::test]
async fn bad_bytes_under_our_key_are_a_counted_miss_never_a_wrong_row() {
    let Some(pool) = common::scratch_database("qc_test_redis_bad_bytes").await else {
        return;
    };
    let Some(url) = common::redis_url() else {
        return;
    };
    redis_support::create_schema(&pool).await;
    sqlx::query("UPDATE counter SET v = 41 WHERE k = 1")
        .execute(&pool)
        .await
        .expect("seed");
    let prefix = redis_support::prefix("bad_bytes");
    let read = |c: QueryCache<sqlx::Postgres>| async move {
        let v = sqlx::query_scalar::<_, i64>("SELECT v FROM counter WHERE k = $1")
            .bind(1)
            .fetch_one_cached(&c)
            .await
            .expect("read");
        (v, c.stats())
    };
    let fresh = || async { caches(&pool, &url, &prefix).await.remove(0) };
    let (v, stats) = read(fresh().await).await;
    assert_eq!((v, stats.redis_fills), (41, 1));
    let (v, stats) = read(fresh().await).await;
    assert_eq!((v, stats.redis_hits), (41, 1), "an intact entry is a hit");

    type Corruption = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let corruptions: Vec<(&str, Corruption)> = vec![
        (
            "a flipped byte (entry checksum)",
            Box::new(|b: &[u8]| {
                let mut b = b.to_vec();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            }),
        ),
        (
            "a foreign type tag behind intact generations",
            Box::new(|b: &[u8]| {
                let parsed = entry::decode(b).expect("intact");
                let foreign = codec::encode(&["forty-one".to_string()], 1024).expect("encode");
                entry::encode(parsed.incarnation, &parsed.values, &foreign)
            }),
        ),
        (
            "a frame whose own checksum fails",
            Box::new(|b: &[u8]| {
                let parsed = entry::decode(b).expect("intact");
                let mut frame = parsed.frame.to_vec();
                let last = frame.len() - 1;
                frame[last] ^= 0x10;
                entry::encode(parsed.incarnation, &parsed.values, &frame)
            }),
        ),
        (
            "garbage bytes",
            Box::new(|_: &[u8]| b"not an entry at all".to_vec()),
        ),
        ("an empty value", Box::new(|_: &[u8]| Vec::new())),
    ];
    for (what, corrupt) in corruptions {
        // Put an intact entry back first (a miss refills it), then corrupt it.
        let (v, _) = read(fresh().await).await;
        assert_eq!(v, 41);
        overwrite_entry(&url, &prefix, |b| {
            if entry::decode(b).is_ok() {
                corrupt(b)
            } else {
                panic!("expected an intact entry before corrupting it with {what}")
            }
        });
        let (v, stats) = read(fresh().await).await;
        assert_eq!(v, 41, "{what}: the database's value");
        assert_eq!(stats.redis_hits, 0, "{what}: not served");
        assert_eq!(
            stats.fallbacks_by_reason.get("redis_decode"),
            Some(&1),
            "{what}: counted"
        );
    }
}
