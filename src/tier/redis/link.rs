//! The connection to Redis shared by the L2 tier and the shared generations: one
//! multiplexed, self-reconnecting `redis::aio::ConnectionManager`, a deadline on every
//! call, and the key names under one namespace.
//!
//! Keys (all under `{prefix}:v{KEY_FORMAT_VERSION}:`, so a new key format never reads an
//! old one's entries):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `…:gen` | hash | generation per counter name (`public.film`, `*` for the epoch) and the incarnation under `#incarnation` |
//! | `…:e:{key}` | string | one L2 entry ([`super::entry`]) under its 128-bit cache key in hex |
//! | `…:inv` | pub/sub channel | the bumps of each write and the processes' heartbeats |
//!
//! The generations hash is one key, so a bump of several relations and the generation
//! read of an L2 hit each stay one round trip (on Redis Cluster the hash lives on one
//! slot).

use crate::key::{CacheKey, KEY_FORMAT_VERSION};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a Redis call did not answer. The cache counts it as a fallback and goes on
/// without Redis; it never reaches a caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The call did not complete within the configured timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// The server or the connection returned an error (refused, reset, OOM, …).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Not sent: a call failed less than [`BREAKER_OPEN`] ago.
    #[error("redis skipped after a recent failure")]
    BreakerOpen,
}

/// How long Redis is not called after a failed call: a paused or dead Redis then costs
/// one deadline per 250 ms instead of one per read.
pub const BREAKER_OPEN: Duration = Duration::from_millis(250);

impl LinkError {
    /// A short label for [`Stats::fallbacks_by_reason`](crate::Stats::fallbacks_by_reason).
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::Timeout(_) => "redis_timeout",
            LinkError::Redis(_) => "redis_error",
            LinkError::BreakerOpen => "redis_unavailable",
        }
    }
}

/// One connection (multiplexed: concurrent calls share it, pipelined) plus the namespace.
#[derive(Clone)]
pub struct Link {
    client: redis::Client,
    connection: ConnectionManager,
    timeout: Duration,
    namespace: String,
    breaker: Arc<Breaker>,
}

/// The breaker: calls are skipped until `open_until` (ns since `base`).
#[derive(Debug)]
struct Breaker {
    base: Instant,
    open_until: AtomicU64,
}

impl Breaker {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A lazy link to `url`: nothing is sent until the first call, and a lost
    /// connection is re-established in the background by the connection manager, so a
    /// Redis that is down at startup or restarts later never needs the process
    /// restarted.
    ///
    /// # Errors
    /// When `url` is not a valid Redis URL.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> Result<Link, LinkError> {
        let client = redis::Client::open(url)?;
        // Reconnect attempts are bounded per failure: the manager retries on the next
        // call after that. Every call has its own deadline on top (`call`).
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Link {
            client,
            connection,
            timeout,
            namespace: format!("{prefix}:v{KEY_FORMAT_VERSION}"),
            breaker: Arc::new(Breaker {
                base: Instant::now(),
                open_until: AtomicU64::new(0),
            }),
        })
    }

    /// The client, for connections of their own (the pub/sub subscriber).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The hash of generations.
    pub fn generations_key(&self) -> String {
        format!("{}:gen", self.namespace)
    }

    /// The string key of one L2 entry.
    pub fn entry_key(&self, key: CacheKey) -> String {
        format!("{}:e:{key}", self.namespace)
    }

    /// The pub/sub channel of bumps and heartbeats.
    pub fn channel(&self) -> String {
        format!("{}:inv", self.namespace)
    }

    /// Run one call on the shared connection: skipped while the breaker is open,
    /// bounded by the deadline, and opening the breaker when it fails.
    ///
    /// # Errors
    /// [`LinkError::BreakerOpen`], [`LinkError::Timeout`] past the deadline, or
    /// [`LinkError::Redis`] for any error the connection or server returned.
    pub async fn call<'a, T, F>(
        &self,
        call: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, LinkError>
    where
        F: Future<Output = redis::RedisResult<T>> + 'a,
    {
        if self.breaker.now() < self.breaker.open_until.load(Ordering::Acquire) {
            return Err(LinkError::BreakerOpen);
        }
        self.call_unguarded(call).await
    }

    /// [`Link::call`] without the breaker's skip (it still opens the breaker on a
    /// failure): for the write path's bump, which retries instead.
    ///
    /// # Errors
    /// As [`Link::call`], never [`LinkError::BreakerOpen`].
    pub async fn call_unguarded<'a, T, F>(
        &self,
        call: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, LinkError>
    where
        F: Future<Output = redis::RedisResult<T>> + 'a,
    {
        let result = match tokio::time::timeout(self.timeout, call(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(LinkError::Redis(err)),
            Err(_) => Err(LinkError::Timeout(self.timeout)),
        };
        if result.is_err() {
            let until = self.breaker.now() + BREAKER_OPEN.as_nanos() as u64;
            self.breaker.open_until.fetch_max(until, Ordering::AcqRel);
        }
        result
    }

    /// Run one command (see [`Link::call`]).
    ///
    /// # Errors
    /// As [`Link::call`].
    pub async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, LinkError> {
        self.call(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Run one pipeline, one round trip (see [`Link::call`]).
    ///
    /// # Errors
    /// As [`Link::call`].
    pub async fn pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, LinkError> {
        self.call(|mut c| async move { pipe.query_async(&mut c).await })
            .await
    }

    /// Run a Lua script (`EVALSHA`, loading it on first use), not skipped by the
    /// breaker (see [`Link::call_unguarded`]).
    ///
    /// # Errors
    /// As [`Link::call`].
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        self.call_unguarded(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }
}
