//! The monotonic-counter freshness checker for external writes: counters that only
//! grow, written around the cache (a plain sqlx pool and `psql` subprocesses), read
//! through the cache by point reads, a view, a partitioned table and a
//! trigger-maintained table. A read is *stale* when it returns a value below the
//! newest one whose write's commit had returned at least `window` before the read
//! started.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use querycache::freshness::watch::WatchTables;
use querycache::{CachedQuery, QueryCache};
use rand::Rng;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows per counter table.
pub const IDS: i32 = 8;

pub const SCHEMA: &str = r#"
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter SELECT g, 0 FROM generate_series(1, 8) g;
CREATE VIEW counter_view AS SELECT id, n FROM counter;
CREATE TABLE part (id int PRIMARY KEY, n bigint NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE part_lo PARTITION OF part FOR VALUES FROM (1) TO (5);
CREATE TABLE part_hi PARTITION OF part FOR VALUES FROM (5) TO (9);
INSERT INTO part SELECT g, 0 FROM generate_series(1, 8) g;
CREATE TABLE source (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE mirror (id int PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION mirror_source() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO mirror VALUES (NEW.id, NEW.n) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n;
  RETURN NULL;
END $$;
CREATE TRIGGER mirror AFTER INSERT OR UPDATE ON source FOR EACH ROW EXECUTE FUNCTION mirror_source();
INSERT INTO source SELECT g, 0 FROM generate_series(1, 8) g;
"#;

/// A counter family: the table writes go to, and the reads that see it.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// `UPDATE … RETURNING n` with `$1` the id.
    pub write: &'static str,
    /// Reads (`$1` the id) that return the counter.
    pub reads: &'static [&'static str],
}

pub const FAMILIES: [Family; 4] = [
    Family {
        write: "UPDATE counter SET n = n + 1 WHERE id = $1 RETURNING n",
        reads: &[
            "SELECT n FROM counter WHERE id = $1",
            "SELECT n FROM counter_view WHERE id = $1",
        ],
    },
    // Through the partitioned parent.
    Family {
        write: "UPDATE part SET n = n + 1 WHERE id = $1 RETURNING n",
        reads: &["SELECT n FROM part WHERE id = $1"],
    },
    // Straight into a partition, read through the parent (ids 1..=4 live in part_lo).
    Family {
        write: "UPDATE part_lo SET n = n + 1 WHERE id = $1 RETURNING n",
        reads: &["SELECT n FROM part WHERE id = $1"],
    },
    // `mirror` is written only by the trigger on `source`.
    Family {
        write: "UPDATE source SET n = n + 1 WHERE id = $1 RETURNING n",
        reads: &["SELECT n FROM mirror WHERE id = $1"],
    },
];

/// Which counter a family writes: part and part_lo share one.
fn counter_of(family: usize) -> usize {
    match family {
        2 => 1,
        f => f,
    }
}

/// Ids a family may write (part_lo holds 1..=4).
fn id_range(family: usize) -> std::ops::RangeInclusive<i32> {
    if family == 2 { 1..=4 } else { 1..=IDS }
}

/// `(commit returned, value)` pairs of one counter row, values increasing.
type Commits = Vec<(Instant, i64)>;

/// Committed values per (counter, id).
#[derive(Default)]
pub struct Log {
    commits: parking_lot::Mutex<HashMap<(usize, i32), Commits>>,
}

impl Log {
    fn record(&self, counter: usize, id: i32, at: Instant, n: i64) {
        let mut map = self.commits.lock();
        let v = map.entry((counter, id)).or_default();
        v.push((at, n));
        v.sort_by_key(|(_, n)| *n);
    }

    /// The newest value whose commit returned at least `window` before `start`.
    fn required(&self, counter: usize, id: i32, start: Instant, window: Duration) -> i64 {
        let map = self.commits.lock();
        map.get(&(counter, id))
            .and_then(|v| {
                v.iter()
                    .filter(|(at, _)| *at + window <= start)
                    .map(|(_, n)| *n)
                    .max()
            })
            .unwrap_or(0)
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reads: u64,
    pub stale: u64,
    pub pool_writes: u64,
    pub psql_writes: u64,
    pub first_stale: Option<String>,
    /// The listener pid killed last (the killer's last kill may come just before the
    /// run ends, and be noticed after it).
    pub last_killed: Option<u32>,
}

/// The checker's knobs.
#[derive(Debug, Clone)]
pub struct Run {
    pub duration: Duration,
    pub window: Duration,
    pub readers: usize,
    /// Terminate the listener's backend this often (`None`: never).
    pub kill_every: Option<Duration>,
    /// Run `psql` writers too.
    pub psql: bool,
}

/// A cache over `pool`, watching every table, or not watching (the disabled mechanism).
pub async fn cache(pool: &PgPool, watch: bool) -> QueryCache<sqlx::Postgres> {
    let builder = QueryCache::builder(pool.clone());
    let builder = if watch {
        builder.watch_tables(WatchTables::All)
    } else {
        builder
    };
    builder.build().await.expect("build cache")
}

/// The cached read of `sql` (no binds), returning one bigint.
pub async fn read_n(cache: &QueryCache<sqlx::Postgres>, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one_cached(cache)
        .await
        .expect("cached read")
}

/// Terminate the listener's backend (`pg_terminate_backend`) through `conn`, if it is
/// live; its pid when it was.
pub async fn kill_listener<'c, E>(cache: &QueryCache<sqlx::Postgres>, conn: E) -> Option<u32>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let pid = cache.watch_listener_pid()?;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(i32::try_from(pid).expect("pid"))
        .execute(conn)
        .await
        .expect("terminate the listener");
    Some(pid)
}

/// `psql` arguments that reach the pool's database.
pub fn psql_args(pool: &PgPool) -> Vec<String> {
    let o = pool.connect_options();
    vec![
        "-h".into(),
        o.get_host().to_owned(),
        "-p".into(),
        o.get_port().to_string(),
        "-U".into(),
        o.get_username().to_owned(),
        "-d".into(),
        o.get_database().unwrap_or("postgres").to_owned(),
        "-qAtX".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
    ]
}

/// Run the checker: writers and readers for `run.duration`.
pub async fn check(pool: &PgPool, cache: &QueryCache<sqlx::Postgres>, run: &Run) -> Outcome {
    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pool_writes = Arc::new(AtomicU64::new(0));
    let psql_writes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();

    // Plain sqlx writer: single statements and multi-table transactions.
    {
        let (pool, log, stop, count) =
            (pool.clone(), log.clone(), stop.clone(), pool_writes.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (multi, picks) = {
                    let mut rng = rand::rng();
                    let multi = rng.random_bool(0.25);
                    let n = if multi { 3 } else { 1 };
                    let picks: Vec<(usize, i32)> = (0..n)
                        .map(|_| {
                            let f = rng.random_range(0..FAMILIES.len());
                            (f, rng.random_range(id_range(f)))
                        })
                        .collect();
                    (multi, picks)
                };
                let mut tx = pool.begin().await.expect("begin");
                let mut done = Vec::new();
                for (f, id) in &picks {
                    let n: i64 = sqlx::query_scalar(FAMILIES[*f].write)
                        .bind(*id)
                        .fetch_one(&mut *tx)
                        .await
                        .expect("write");
                    done.push((counter_of(*f), *id, n));
                }
                tx.commit().await.expect("commit");
                let at = Instant::now();
                for (c, id, n) in done {
                    log.record(c, id, at, n);
                }
                count.fetch_add(u64::from(multi) + 1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    // psql writer: one subprocess per write.
    if run.psql {
        let (args, log, stop, count) = (
            psql_args(pool),
            log.clone(),
            stop.clone(),
            psql_writes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (f, id) = {
                    let mut rng = rand::rng();
                    let f = rng.random_range(0..FAMILIES.len());
                    (f, rng.random_range(id_range(f)))
                };
                let sql = FAMILIES[f].write.replace("$1", &id.to_string());
                let args = args.clone();
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new("psql")
                        .args(&args)
                        .arg("-c")
                        .arg(&sql)
                        .output()
                })
                .await
                .expect("psql task")
                .expect("run psql");
                assert!(
                    out.status.success(),
                    "psql: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let at = Instant::now();
                let n: i64 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("psql prints the new value");
                log.record(counter_of(f), id, at, n);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Listener killer.
    let last_killed = Arc::new(AtomicU32::new(0));
    if let Some(every) = run.kill_every {
        let (pool, cache, stop, last) = (
            pool.clone(),
            cache.clone(),
            stop.clone(),
            last_killed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(pid) = kill_listener(&cache, &pool).await {
                    last.store(pid, Ordering::SeqCst);
                }
            }
        }));
    }
    // Readers.
    let mut readers = Vec::new();
    for _ in 0..run.readers {
        let (cache, log, stop, window) = (cache.clone(), log.clone(), stop.clone(), run.window);
        readers.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while !stop.load(Ordering::Relaxed) {
                let (f, id, sql) = {
                    let mut rng = rand::rng();
                    let f = rng.random_range(0..FAMILIES.len());
                    let reads = FAMILIES[f].reads;
                    (f, rng.random_range(1..=IDS), reads[rng.random_range(0..reads.len())])
                };
                let start = Instant::now();
                let required = log.required(counter_of(f), id, start, window);
                let got: i64 = sqlx::query_scalar(sql)
                    .bind(id)
                    .fetch_one_cached(&cache)
                    .await
                    .expect("cached read");
                out.reads += 1;
                if got < required {
                    out.stale += 1;
                    out.first_stale.get_or_insert_with(|| {
                        format!("{sql} [{id}] returned {got}, committed ≥ {window:?} earlier: {required}")
                    });
                }
                tokio::task::yield_now().await;
            }
            out
        }));
    }
    tokio::time::sleep(run.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Outcome::default();
    for r in readers {
        let o = r.await.expect("reader");
        total.reads += o.reads;
        total.stale += o.stale;
        if total.first_stale.is_none() {
            total.first_stale = o.first_stale;
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    total.pool_writes = pool_writes.load(Ordering::Relaxed);
    total.psql_writes = psql_writes.load(Ordering::Relaxed);
    total.last_killed = match last_killed.load(Ordering::SeqCst) {
        0 => None,
        pid => Some(pid),
    };
    total
}
