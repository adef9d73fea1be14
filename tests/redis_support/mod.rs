//! The randomized monotonic-counter workload shared by the Redis tier's tests, and a
//! private `redis-server` for fault tests.
//!
//! Counters only grow. A writer bumps a counter through a cache (`UPDATE … RETURNING`)
//! and, once the write has returned, raises the counter's *floor* to the value it
//! wrote. A reader takes the floor before it issues its read and counts a stale read if
//! the value it gets is lower: a write that returned before the read began is missing.
//! Floors live in a memory-mapped file of `AtomicU64`, so OS processes share them.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use memmap2::MmapMut;
use querycache::{CachedQuery, QueryCache};
use rand::Rng;
use sqlx::PgPool;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counter keys per table.
pub const KEYS: usize = 12;

/// What the workload reads: point reads of a table, reads through a view, point reads
/// of a partitioned table's parent.
const READS: [(&str, usize); 3] = [
    ("SELECT v FROM counter WHERE k = $1", 0),
    ("SELECT v FROM counter_view WHERE k = $1", 0),
    ("SELECT v FROM pcounter WHERE k = $1", KEYS),
];
const WRITES: [(&str, usize); 2] = [
    ("UPDATE counter SET v = v + 1 WHERE k = $1 RETURNING v", 0),
    (
        "UPDATE pcounter SET v = v + 1 WHERE k = $1 RETURNING v",
        KEYS,
    ),
];

/// Create the tables: `counter` (with a view over it) and `pcounter`, partitioned in two.
pub async fn create_schema(pool: &PgPool) {
    let mut sql = String::from(
        "CREATE TABLE counter (k int PRIMARY KEY, v bigint NOT NULL);
         CREATE VIEW counter_view AS SELECT k, v FROM counter;
         CREATE TABLE pcounter (k int NOT NULL, v bigint NOT NULL, PRIMARY KEY (k)) PARTITION BY RANGE (k);
         CREATE TABLE pcounter_low PARTITION OF pcounter FOR VALUES FROM (0) TO (6);
         CREATE TABLE pcounter_high PARTITION OF pcounter FOR VALUES FROM (6) TO (1000);",
    );
    for k in 0..KEYS {
        sql.push_str(&format!(
            "INSERT INTO counter VALUES ({k}, 0); INSERT INTO pcounter VALUES ({k}, 0);"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .expect("create schema");
}

/// Floors shared through a file (one `u64` slot per counter of each table).
pub struct Floors {
    map: MmapMut,
}

impl Floors {
    /// Map `path` (created, zero-filled when new).
    pub fn open(path: &Path) -> Floors {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("floors file");
        file.set_len((2 * KEYS * 8) as u64).expect("size floors");
        // SAFETY: the file is ours for the test's lifetime; other processes only
        // access it through the same atomics.
        let map = unsafe { MmapMut::map_mut(&file) }.expect("map floors");
        Floors { map }
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < 2 * KEYS);
        // SAFETY: the mapping is page-aligned and 2*KEYS*8 bytes long; AtomicU64 has
        // the size and alignment of u64.
        unsafe { &*(self.map.as_ptr().add(i * 8) as *const AtomicU64) }
    }
}

/// What one worker saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub reads: u64,
    pub writes: u64,
    pub stale: u64,
    pub errors: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.stale += other.stale;
        self.errors += other.errors;
    }
}

/// Run reads and writes through `caches` (picked at random per operation) for
/// `duration`, with `write_percent` writes. Query errors are counted, not panicked on,
/// so fault tests can assert there were none.
pub async fn worker(
    caches: Vec<QueryCache<sqlx::Postgres>>,
    floors: Arc<Floors>,
    duration: Duration,
    write_percent: u32,
    seed: u64,
) -> Tally {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let cache = &caches[rng.random_range(0..caches.len())];
        let k = rng.random_range(0..KEYS);
        if rng.random_range(0..100) < write_percent {
            let (sql, base) = WRITES[rng.random_range(0..WRITES.len())];
            match sqlx::query_scalar::<_, i64>(sql)
                .bind(k as i32)
                .fetch_one(cache)
                .await
            {
                Ok(v) => {
                    floors.slot(base + k).fetch_max(v as u64, Ordering::SeqCst);
                    tally.writes += 1;
                }
                Err(e) => {
                    eprintln!("write error: {e}");
                    tally.errors += 1;
                }
            }
        } else {
            let (sql, base) = READS[rng.random_range(0..READS.len())];
            let floor = floors.slot(base + k).load(Ordering::SeqCst);
            let before = cache.stats();
            match sqlx::query_scalar::<_, i64>(sql)
                .bind(k as i32)
                .fetch_one_cached(cache)
                .await
            {
                Ok(v) => {
                    tally.reads += 1;
                    if (v as u64) < floor {
                        tally.stale += 1;
                        let after = cache.stats();
                        eprintln!(
                            "STALE: {sql} k={k}: got {v}, floor {floor}; hits +{}, redis hits +{}, misses +{}, coalesced +{}",
                            after.hits - before.hits,
                            after.redis_hits - before.redis_hits,
                            after.misses - before.misses,
                            after.coalesced - before.coalesced
                        );
                    }
                }
                Err(e) => {
                    eprintln!("read error: {e}");
                    tally.errors += 1;
                }
            }
        }
    }
    tally
}

/// `tasks` concurrent workers over `caches`.
pub async fn run_workers(
    caches: &[QueryCache<sqlx::Postgres>],
    floors: &Arc<Floors>,
    tasks: usize,
    duration: Duration,
    write_percent: u32,
    seed: u64,
) -> Tally {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            tokio::spawn(worker(
                caches.to_vec(),
                Arc::clone(floors),
                duration,
                write_percent,
                seed.wrapping_mul(31).wrapping_add(i as u64),
            ))
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        total.add(h.await.expect("worker"));
    }
    total
}

/// A unique key prefix for one test's Redis keys.
pub fn prefix(test: &str) -> String {
    format!("qc_test_{test}_{:x}", rand::random::<u32>())
}

/// Seconds of a randomized freshness run: `QUERYCACHE_FRESHNESS_SECS`, default 20.
pub fn freshness_secs() -> u64 {
    std::env::var("QUERYCACHE_FRESHNESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// A private `redis-server` on its own port (nothing kept on disk), killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Start one on a free port.
    ///
    /// # Panics
    /// When `redis-server` cannot be started.
    pub fn start() -> PrivateRedis {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("addr").port()
        };
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL): its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)start the server on the same port, empty, and wait until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? scripts/services installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server on port {} did not come up", self.port);
    }

    /// Run one command on it (sync client), e.g. `CLIENT PAUSE`.
    pub fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
