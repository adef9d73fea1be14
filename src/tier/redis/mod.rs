//! L2: the shared Redis tier, between memory (L1) and disk (L3).
//!
//! Several processes (replicas of one service) share one Redis: fills made by one are
//! hits in the others, and a write through any of them invalidates everywhere, because
//! the generations themselves live in Redis
//! ([`freshness::shared`](crate::freshness::shared), which also argues why
//! [`Consistency::Strict`] is never stale).
//!
//! - An L2 lookup is **one round trip**: a pipeline of `GET` of the entry and `HMGET`
//!   of the read set's current generations. The entry ([`entry`]) carries the
//!   generations it was stamped with; it is served only if they equal the current ones
//!   (same incarnation), then promoted to memory. The same reply brings this process's
//!   change detectors up to date, so everything below it (L3, the fill's stamp) is
//!   judged against current generations.
//! - **Admission by cost.** A Redis hit costs about a Postgres primary-key lookup
//!   (research/anchors-performance.md T5: Redis GET p50 23 µs, PG point select 27 µs on
//!   this machine), so an entry is stored only if its query took at least
//!   [`RedisOptions::admit_min_miss_cost`] (default 1 ms) or returned at least
//!   [`RedisOptions::admit_min_rows`] rows (default 32), and its bytes are at most
//!   [`RedisOptions::max_entry_bytes`] (default 1 MiB). Rejections are counted
//!   (`Stats::redis_admission_rejected`).
//! - **Failures are misses.** Every call has a deadline ([`RedisOptions::timeout`],
//!   default 50 ms); after a failure Redis is not called for 250 ms (a breaker), so a
//!   paused or dead Redis costs reads one deadline, not one per read. Failures are
//!   counted in `Stats::fallbacks_by_reason`; undecodable bytes under our key (wrong
//!   checksum, foreign type, garbage) are a miss counted as `redis_decode`.

pub mod entry;
pub mod link;

pub use crate::freshness::shared::Consistency;
use std::time::Duration;

/// How the cache uses Redis; give it to
/// [`QueryCacheBuilder::redis`](crate::QueryCacheBuilder::redis).
///
/// ```
/// use querycache::tier::redis::{Consistency, RedisOptions};
/// use std::time::Duration;
/// let options = RedisOptions::new("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .consistency(Consistency::Bounded(Duration::from_millis(100)))
///     .timeout(Duration::from_millis(20));
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) consistency: Consistency,
    pub(crate) timeout: Duration,
    pub(crate) admit_min_miss_cost: Duration,
    pub(crate) admit_min_rows: usize,
    pub(crate) max_entry_bytes: usize,
}

impl RedisOptions {
    /// Redis at `url` (`redis://host:port/db`), with the defaults below.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            prefix: "querycache".into(),
            consistency: Consistency::Strict,
            timeout: Duration::from_millis(50),
            admit_min_miss_cost: Duration::from_millis(1),
            admit_min_rows: 32,
            max_entry_bytes: 1 << 20,
        }
    }

    /// Namespace of every key and channel (`{prefix}:v{key format}:…`). Processes that
    /// share entries and invalidations use the same prefix; unrelated applications on
    /// one Redis use different ones. Default `"querycache"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What a memory-tier hit must prove across processes. Default
    /// [`Consistency::Strict`].
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Deadline of every Redis call; past it the call counts as failed and the read goes
    /// to the database. Default 50 ms (Redis answers in 20–60 µs here; the deadline only
    /// bounds what a paused or unreachable Redis costs).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Admit a result into Redis when its query took at least this long. Default 1 ms.
    /// `Duration::ZERO` admits every result.
    pub fn admit_min_miss_cost(mut self, cost: Duration) -> Self {
        self.admit_min_miss_cost = cost;
        self
    }

    /// Admit a result into Redis when it has at least this many rows, however fast its
    /// query was. Default 32.
    pub fn admit_min_rows(mut self, rows: usize) -> Self {
        self.admit_min_rows = rows;
        self
    }

    /// Never store an entry larger than this many bytes (encoded, compressed). Default
    /// 1 MiB.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// The admission rule: is a result of `rows` rows whose query took `cost` worth a
    /// Redis entry?
    pub(crate) fn admits(&self, cost: Duration, rows: usize) -> bool {
        cost >= self.admit_min_miss_cost || rows >= self.admit_min_rows
    }
}
