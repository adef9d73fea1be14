//! Writes made outside the cache (another service, psql, cron jobs, migrations), seen
//! through Postgres itself: statement-level triggers bump a per-table version row and
//! `pg_notify` it at commit ([`sql`]), and a listener task per cache (`listener.rs`)
//! passes each notification to the cache's generations.
//!
//! Turn it on with
//! [`QueryCacheBuilder::watch_tables`](crate::QueryCacheBuilder::watch_tables), which
//! installs what is missing ([`install`]); or install ahead of time with `querycache
//! watch install --database-url …` when the application's role may not create
//! triggers.
//!
//! # What is guaranteed
//!
//! For a watched table `t` (it has the trigger; [`WatchStatus::watched`]) and a write
//! to `t` committed by any client:
//!
//! 1. **After the listener has applied the notification**, no read through the cache
//!    that starts afterwards returns a result older than the write, from any tier (the
//!    generations of `t` and of everything its write closure reaches, views,
//!    partitions, cascades, trigger-written tables, have been bumped; a fill whose
//!    query may predate the write is refused by its stamp). The delay from the
//!    writer's commit returning to that point is the *invalidation window*;
//!    `querycache bench --external-writers N` measures it (README).
//! 2. **Fence**: after [`QueryCache::sync_external_writes`] returns, every write that
//!    committed before the call started is covered by 1. Postgres delivers
//!    notifications in commit order, so the fence's own notification arrives after
//!    those of every earlier commit; if the listener goes down meanwhile, 3 applies.
//! 3. **No silent gap**: while the listener's connection is down, and from a reconnect
//!    until the version rows have been re-read and every table whose version moved has
//!    been bumped, reads that depend on a watched table bypass every tier (counted as
//!    [`BypassReason::WatchUnavailable`](crate::BypassReason::WatchUnavailable)). The
//!    re-read is the reconnect's last query (the slow coverage reload comes before
//!    it): a write committed before the re-read is bumped before reads are served
//!    again, one committed after it is heard as a notification (1). A connection that
//!    dies loudly (`pg_terminate_backend`, a server restart, a reset) is noticed as
//!    soon as the listener task next runs (3–70 ms from the kill in
//!    `tests/watch_freshness.rs` on a loaded 2-core machine; writes whose notification
//!    the dead connection lost may be served stale until then); one that goes silent (a network partition) after at most
//!    about 2 s of silence (a ping after 1 s idle, 1 s timeout): writes committed in
//!    that span may be served stale until it is noticed.
//!
//! DDL made anywhere fires the event trigger: everything is invalidated and the catalog
//! reloaded. Tables without the trigger (created after the install, or left out of
//! [`WatchTables::Only`]) behave as without watching: only writes through the cache and
//! the TTL reach their entries; `Stats::unwatched_reads` counts the reads that depend
//! on them. Under [`WatchTables::All`] the listener installs triggers on tables created
//! later when it hears their DDL (if its role may).
//!
//! # Writes through the cache
//!
//! They bump their generations before returning (as without watching) and are heard
//! again from the listener about a millisecond later: the second bump makes entries
//! filled in between miss once more. `querycache bench` reports what that costs.

pub(crate) mod listener;
pub mod sql;
mod state;

pub use sql::{InstallReport, WatchStatus, WatchTables, install, status, uninstall};
pub(crate) use state::WatchHook;
pub(crate) use state::read_bypass;
pub use state::{WatchPhase, WatchState};

use crate::cache::QueryCache;
use sqlx::Postgres;
use std::time::Duration;

impl QueryCache<Postgres> {
    /// `true` while the external-write listener is up and caught up: reads of watched
    /// tables may be served. `false` without [`watch_tables`](crate::QueryCacheBuilder::watch_tables).
    pub fn watching(&self) -> bool {
        self.watch_state().is_some_and(|s| s.live())
    }

    /// The backend pid of the listener's connection while it is live (for tests that
    /// kill it with `pg_terminate_backend`).
    #[doc(hidden)]
    pub fn watch_listener_pid(&self) -> Option<u32> {
        self.watch_state().and_then(|s| s.listener_pid())
    }

    /// Wait until every write committed before this call is applied to the cache's
    /// generations (guarantee 2 in [`crate::freshness::watch`]): sends a fence
    /// notification and waits for the listener to receive it, at most `timeout`. Costs
    /// one round trip plus the invalidation window. Returns at once without watching.
    ///
    /// # Errors
    /// The database error, unchanged, if the fence cannot be sent;
    /// [`Error::Watch`](crate::Error::Watch) when it is not received within `timeout`
    /// while the listener stays up.
    pub async fn sync_external_writes(&self, timeout: Duration) -> crate::Result<()> {
        let Some(state) = self.watch_state() else {
            return Ok(());
        };
        let downs = state.fence_mark();
        if !state.live() {
            // Down or catching up: reads of watched tables bypass until the reconnect
            // has re-read every version, which sees every write committed before now.
            return Ok(());
        }
        let n = state.next_fence();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(sql::CHANNEL)
            .bind(format!("{n} *fence {}", state.token))
            .execute(self.pool())
            .await?;
        tokio::time::timeout(timeout, state.wait_fence(n, downs))
            .await
            .map_err(|_| crate::Error::Watch(format!("fence not received within {timeout:?}")))
    }
}
