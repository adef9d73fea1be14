//! Randomized freshness check of row-level invalidation against real Postgres: key
//! reads (int4, int8 and literal keys), range reads and aggregates race with key
//! updates, deletes, inserts, key-changing updates, range updates and transactions,
//! all through one cache, for 20 s.
//!
//! Every row's `v` only grows per key (a re-inserted or moved-in key gets a larger
//! value than any it had), and writes of a key are serialized by a per-key lock in the
//! test, which records each key's state history as writes return. A key read must
//! return a state at least as new as the one current when it started (checked after
//! taking the key's write lock, so every write visible to the read is recorded).
//! Every 250 ms the writers pause and every read form — keys, ranges, aggregates —
//! is compared with the database. The same check with key-bucket bumps skipped must
//! report stale reads.

mod common;

use querycache::{CachedQuery, QueryCache};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::{AssertSqlSafe, PgPool, Postgres};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys `1..=KEYS`; rows start at `1..=PRESENT`.
const KEYS: i32 = 64;
const PRESENT: i32 = 48;
const GROUPS: i32 = 4;

const KEY_READ: &str = "SELECT v FROM acc WHERE id = $1";
const KEY_READ_INT8: &str = "SELECT v FROM acc WHERE id = $1 -- int8";
const GROUP_READ: &str = "SELECT count(*)::int8, coalesce(sum(v), 0)::int8 FROM acc WHERE grp = $1";
const RANGE_READ: &str = "SELECT id, v FROM acc WHERE id BETWEEN $1 AND $2 ORDER BY id";

/// One key's write lock and the states its writes left, in order.
struct Slot {
    write: tokio::sync::Mutex<i64>,
    history: parking_lot::Mutex<Vec<Option<i64>>>,
}

struct World {
    pool: PgPool,
    cache: QueryCache<Postgres>,
    slots: Vec<Slot>,
    /// Held shared by every operation, exclusively by the quiescent check.
    gate: tokio::sync::RwLock<()>,
    stale: AtomicU64,
    key_reads: AtomicU64,
    stop: AtomicBool,
}

impl World {
    fn slot(&self, key: i32) -> &Slot {
        &self.slots[(key - 1) as usize]
    }

    fn current(&self, key: i32) -> Option<i64> {
        *self.slot(key).history.lock().last().expect("initial state")
    }

    fn record(&self, key: i32, state: Option<i64>) {
        self.slot(key).history.lock().push(state);
    }
}

async fn setup(db: &str, skip_key_bumps: bool) -> Option<Arc<World>> {
    let pool = common::scratch_database(db).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE acc (id int PRIMARY KEY, grp int NOT NULL, v int8 NOT NULL);
         INSERT INTO acc SELECT g, g % {GROUPS}, 1 FROM generate_series(1, {PRESENT}) g;"
    )))
    .execute(&pool)
    .await
    .expect("schema");
    let mut builder = QueryCache::builder(pool.clone()).adaptive_admission(false);
    if skip_key_bumps {
        builder = builder.skip_key_bumps_for_testing();
    }
    let cache = builder.build().await.expect("build");
    let slots = (1..=KEYS)
        .map(|k| Slot {
            write: tokio::sync::Mutex::new(1),
            history: parking_lot::Mutex::new(vec![(k <= PRESENT).then_some(1)]),
        })
        .collect();
    Some(Arc::new(World {
        pool,
        cache,
        slots,
        gate: tokio::sync::RwLock::new(()),
        stale: AtomicU64::new(0),
        key_reads: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    }))
}

/// A key read through the cache in one of three spellings.
async fn key_read(cache: &QueryCache<Postgres>, key: i32, form: u8) -> Option<i64> {
    let rows: Vec<i64> = match form {
        0 => {
            sqlx::query_scalar(KEY_READ)
                .bind(key)
                .fetch_all_cached(cache)
                .await
        }
        1 => {
            sqlx::query_scalar(KEY_READ_INT8)
                .bind(i64::from(key))
                .fetch_all_cached(cache)
                .await
        }
        _ => {
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT v FROM acc WHERE id = {key}")))
                .fetch_all_cached(cache)
                .await
        }
    }
    .expect("key read");
    rows.first().copied()
}

/// A key read checked against the key's history.
async fn audited_key_read(world: &World, key: i32, form: u8) {
    let slot = world.slot(key);
    let floor = slot.history.lock().len() - 1;
    let got = key_read(&world.cache, key, form).await;
    let _writes = slot.write.lock().await;
    let history = slot.history.lock();
    if !history[floor..].contains(&got) {
        world.stale.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "stale: key {key} form {form} read {got:?}, states since start {:?}",
            &history[floor..]
        );
    }
    world.key_reads.fetch_add(1, Ordering::Relaxed);
}

async fn update_key(world: &World, key: i32, rng: &mut SmallRng) {
    let mut max = world.slot(key).write.lock().await;
    let new = *max + 1;
    let cache = &world.cache;
    let returned: Option<i64> = match rng.random_range(0..3) {
        0 => {
            sqlx::query_scalar("UPDATE acc SET v = $2 WHERE id = $1 RETURNING v")
                .bind(key)
                .bind(new)
                .fetch_optional(cache)
                .await
        }
        1 => {
            sqlx::query_scalar("UPDATE acc SET v = $2 WHERE id = $1 RETURNING v -- int8")
                .bind(i64::from(key))
                .bind(new)
                .fetch_optional(cache)
                .await
        }
        _ => {
            sqlx::query_scalar(AssertSqlSafe(format!(
                "UPDATE acc SET v = {new} WHERE id = '{key}' RETURNING v"
            )))
            .fetch_optional(cache)
            .await
        }
    }
    .expect("update");
    if returned.is_some() {
        *max = new;
        world.record(key, returned);
    }
}

async fn delete_or_insert(world: &World, key: i32) {
    let mut max = world.slot(key).write.lock().await;
    if world.current(key).is_some() {
        sqlx::query("DELETE FROM acc WHERE id = $1")
            .bind(key)
            .execute(&world.cache)
            .await
            .expect("delete");
        world.record(key, None);
    } else {
        let new = *max + 1;
        sqlx::query(
            "INSERT INTO acc (id, grp, v) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET v = excluded.v",
        )
        .bind(key)
        .bind(key % GROUPS)
        .bind(new)
        .execute(&world.cache)
        .await
        .expect("insert");
        *max = new;
        world.record(key, Some(new));
    }
}

/// Moves the row of `from` to the absent key `to` (an UPDATE of the key column).
async fn move_key(world: &World, a: i32, b: i32) {
    let (low, high) = (a.min(b), a.max(b));
    if low == high {
        return;
    }
    let mut low_max = world.slot(low).write.lock().await;
    let mut high_max = world.slot(high).write.lock().await;
    let (from, to) = match (world.current(low), world.current(high)) {
        (Some(_), None) => (low, high),
        (None, Some(_)) => (high, low),
        _ => return,
    };
    let new = (*low_max).max(*high_max) + 1;
    sqlx::query("UPDATE acc SET id = $2, v = $3 WHERE id = $1")
        .bind(from)
        .bind(to)
        .bind(new)
        .execute(&world.cache)
        .await
        .expect("move");
    *low_max = new;
    *high_max = new;
    world.record(from, None);
    world.record(to, Some(new));
}

/// `v += 1000` for one group, holding every key's lock (a moved row keeps its group).
async fn update_group(world: &World, group: i32) {
    let mut guards = Vec::with_capacity(KEYS as usize);
    for key in 1..=KEYS {
        guards.push(world.slot(key).write.lock().await);
    }
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("UPDATE acc SET v = v + 1000 WHERE grp = $1 RETURNING id, v")
            .bind(group)
            .fetch_all(&world.cache)
            .await
            .expect("group update");
    for (key, v) in rows {
        *guards[(key - 1) as usize] = v;
        world.record(key, Some(v));
    }
}

/// Two key updates in one transaction, recorded once it committed.
async fn transaction(world: &World, a: i32, b: i32) {
    let (low, high) = (a.min(b), a.max(b));
    if low == high {
        return;
    }
    let mut low_max = world.slot(low).write.lock().await;
    let mut high_max = world.slot(high).write.lock().await;
    let mut tx = world.cache.begin().await.expect("begin");
    let mut done = Vec::new();
    for (key, max) in [(low, &mut *low_max), (high, &mut *high_max)] {
        let new = *max + 1;
        let returned: Option<i64> =
            sqlx::query_scalar("UPDATE acc SET v = $2 WHERE id = $1 RETURNING v")
                .bind(key)
                .bind(new)
                .fetch_optional(&mut tx)
                .await
                .expect("update in transaction");
        if returned.is_some() {
            *max = new;
            done.push((key, new));
        }
    }
    tx.commit().await.expect("commit");
    for (key, new) in done {
        world.record(key, Some(new));
    }
}

async fn worker(world: Arc<World>, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while !world.stop.load(Ordering::Relaxed) {
        let _gate = world.gate.read().await;
        let key = rng.random_range(1..=KEYS);
        match rng.random_range(0..100) {
            0..60 => audited_key_read(&world, key, rng.random_range(0..3)).await,
            60..70 => {
                let _: Vec<(i64, i64)> = sqlx::query_as(GROUP_READ)
                    .bind(key % GROUPS)
                    .fetch_all_cached(&world.cache)
                    .await
                    .expect("group read");
                let _: Vec<(i32, i64)> = sqlx::query_as(RANGE_READ)
                    .bind(key)
                    .bind(key + 8)
                    .fetch_all_cached(&world.cache)
                    .await
                    .expect("range read");
            }
            70..85 => update_key(&world, key, &mut rng).await,
            85..91 => delete_or_insert(&world, key).await,
            91..95 => move_key(&world, key, rng.random_range(1..=KEYS)).await,
            95..97 => update_group(&world, key % GROUPS).await,
            _ => transaction(&world, key, rng.random_range(1..=KEYS)).await,
        }
    }
}

/// With writers paused: every read form through the cache equals the database.
async fn quiescent_check(world: &World) {
    let _gate = world.gate.write().await;
    let (cache, pool) = (&world.cache, &world.pool);
    for key in 1..=KEYS {
        let want: Option<i64> = sqlx::query_scalar(KEY_READ)
            .bind(key)
            .fetch_optional(pool)
            .await
            .expect("direct read");
        for form in 0..3 {
            if key_read(cache, key, form).await != want {
                world.stale.fetch_add(1, Ordering::Relaxed);
                eprintln!("stale at rest: key {key} form {form}");
            }
        }
    }
    for group in 0..GROUPS {
        let query = || sqlx::query_as::<_, (i64, i64)>(GROUP_READ).bind(group);
        let cached = query().fetch_all_cached(cache).await.expect("group read");
        if *cached != *query().fetch_all(pool).await.expect("direct group read") {
            world.stale.fetch_add(1, Ordering::Relaxed);
            eprintln!("stale at rest: group {group}");
        }
    }
    for low in (1..=KEYS).step_by(8) {
        let query = || {
            sqlx::query_as::<_, (i32, i64)>(RANGE_READ)
                .bind(low)
                .bind(low + 8)
        };
        let cached = query().fetch_all_cached(cache).await.expect("range read");
        if *cached != *query().fetch_all(pool).await.expect("direct range read") {
            world.stale.fetch_add(1, Ordering::Relaxed);
            eprintln!("stale at rest: range from {low}");
        }
    }
}

/// Runs 4 workers for `duration` with a quiescent check every 250 ms.
async fn run(world: &Arc<World>, duration: Duration) {
    let workers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(worker(Arc::clone(world), 0x5eed + i)))
        .collect();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        quiescent_check(world).await;
    }
    world.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    quiescent_check(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_reads_ranges_and_aggregates_are_never_stale_under_row_level_invalidation() {
    let Some(world) = setup("qc_test_row_level_freshness", false).await else {
        return;
    };
    run(&world, Duration::from_secs(20)).await;
    let stats = world.cache.stats();
    let key_reads = world.key_reads.load(Ordering::Relaxed);
    eprintln!(
        "{key_reads} audited key reads, hits {}, misses {}, invalidations {:?}",
        stats.hits, stats.misses, stats.invalidations_by_table
    );
    assert_eq!(world.stale.load(Ordering::Relaxed), 0, "stale reads");
    assert!(key_reads > 1_000, "the check ran: {key_reads} key reads");
    assert!(stats.hits > 0, "reads were served from the cache");
    assert!(
        stats.invalidations_by_table.contains_key("public.acc#keys"),
        "key writes were invalidated per key: {:?}",
        stats.invalidations_by_table
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_check_reports_stale_reads_when_key_bumps_are_skipped() {
    let Some(world) = setup("qc_test_row_level_freshness_broken", true).await else {
        return;
    };
    run(&world, Duration::from_secs(5)).await;
    assert!(
        world.stale.load(Ordering::Relaxed) > 0,
        "without key-bucket bumps key reads must be served stale"
    );
}
