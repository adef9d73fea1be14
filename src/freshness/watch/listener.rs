//! The listener task: one per cache, on its own connection (a one-connection pool with
//! the cache pool's options, so it never takes a connection from the application).
//!
//! ```text
//! connect ─► LISTEN querycache ─► coverage ─► re-read version rows ─► apply moved ─► live
//!    ▲                                                                                │
//!    └──────── down (reads of watched tables bypass) ◄── error / silence > 1 s ◄──────┘
//! ```
//!
//! The re-read comes last, followed only by the bumps (see [`connect`]): a write that
//! commits during the slow coverage reload is then seen by the re-read instead of
//! waiting, unbumped, behind a state that is already live.
//!
//! Each notification `'<version> <relation>'` newer than the last version seen for the
//! relation is passed to `QueryCache::apply_external_writes`; `'<version> *ddl'`
//! invalidates everything and reloads the catalog and the coverage; `'<n> *fence
//! <token>'` marks fence `n` of this cache as passed.

use super::sql::{self, CHANNEL, DDL_VERSION, INSTALL_ID, WatchTables};
use super::state::{Coverage, WatchPhase, WatchState};
use crate::cache::{QueryCache, WeakQueryCache};
use crate::freshness::Catalog;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Without any message for this long, the listener pings its connection.
const IDLE_PING: Duration = Duration::from_secs(1);
/// A ping that takes longer than this marks the connection down.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// A reconnect that hears of DDL (or a reinstall) this many times in a row, each time
/// invalidating everything and reading the versions again, gives up and retries later
/// (the state stays down meanwhile).
const MAX_DDL_ROUNDS: u32 = 3;
/// Reconnect backoff: first and longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// The last version seen of every row of `querycache.table_version`.
#[derive(Debug, Default)]
struct Seen {
    versions: HashMap<String, i64>,
    initialized: bool,
}

/// Install what `tables` needs, connect the listener and wait until it is live, then
/// leave it running in a background task that holds the cache only weakly (it ends
/// within about a second of the cache's last handle being dropped).
///
/// # Errors
/// [`Error::Watch`](crate::Error::Watch) when the triggers cannot be installed (see
/// [`sql::install`]) or the first connection fails; without a Tokio runtime.
pub(crate) async fn start(cache: QueryCache<Postgres>, tables: WatchTables) -> crate::Result<()> {
    let Some(state) = cache.watch_state().cloned() else {
        return Err(crate::Error::Watch(
            "the cache was built without watch state".into(),
        ));
    };
    sql::install(cache.pool(), &tables).await?;
    let options = (*cache.pool().connect_options())
        .clone()
        .application_name("querycache watch listener");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect_lazy_with(options);
    let mut seen = Seen::default();
    let listener = connect(&pool, &cache, &state, &tables, &mut seen)
        .await
        .map_err(|e| crate::Error::Watch(format!("the listener could not start: {e}")))?;
    let weak = cache.downgrade();
    drop(cache);
    tokio::spawn(run(weak, pool, state, tables, seen, listener));
    Ok(())
}

async fn run(
    weak: WeakQueryCache<Postgres>,
    pool: PgPool,
    state: Arc<WatchState>,
    tables: WatchTables,
    mut seen: Seen,
    first: PgListener,
) {
    let mut listener = Some(first);
    let mut backoff = BACKOFF.0;
    loop {
        let mut l = match listener.take() {
            Some(l) => l,
            None => {
                let Some(cache) = weak.upgrade() else { return };
                match connect(&pool, &cache, &state, &tables, &mut seen).await {
                    Ok(l) => {
                        tracing::info!("querycache: watch listener reconnected");
                        backoff = BACKOFF.0;
                        l
                    }
                    Err(e) => {
                        drop(cache);
                        tracing::warn!("querycache: watch listener cannot connect: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                }
            }
        };
        // Serve notifications until the connection fails.
        loop {
            match tokio::time::timeout(IDLE_PING, l.try_recv()).await {
                Ok(Ok(Some(first))) => {
                    let Some(cache) = weak.upgrade() else { return };
                    let mut batch = vec![first];
                    while let Some(more) = l.next_buffered() {
                        batch.push(more);
                    }
                    let payloads: Vec<&str> = batch.iter().map(|n| n.payload()).collect();
                    handle(&cache, &state, &tables, &mut seen, &payloads).await;
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_idle) => {
                    if weak.upgrade().is_none() {
                        return;
                    }
                    let ping = sqlx::query("SELECT 1").execute(&mut l);
                    if !matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        state.set_down();
        tracing::warn!(
            "querycache: watch listener lost its connection; reads of watched tables bypass the cache until it is back"
        );
    }
}

/// Connect, `LISTEN`, reload the coverage, then re-read the version rows, bump every
/// relation whose version moved since `seen`, and only then mark the state live.
///
/// The re-read is the last query before going live (invariant 2 of [`WatchState`]):
/// from `LISTEN` on, notifications of new commits wait unhandled on the connection
/// until the state is live, so a write committed between the re-read and going live is
/// bumped only when its notification is handled, after reads are served again. The
/// slow steps, the coverage reload (`sql::status` and `Catalog::load` over the cache's
/// pool: tens to hundreds of ms on a loaded machine) and, after DDL or a reinstall
/// while down, [`everything`], therefore come before a re-read: after `everything` the
/// versions are read again.
async fn connect(
    pool: &PgPool,
    cache: &QueryCache<Postgres>,
    state: &WatchState,
    tables: &WatchTables,
    seen: &mut Seen,
) -> crate::Result<PgListener> {
    state.set_down();
    let mut l = PgListener::connect_with(pool).await?;
    l.eager_reconnect(false);
    l.ignore_pool_close_event(true);
    l.listen(CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut l)
        .await?;
    state.set_coverage(coverage(cache.pool()).await?);
    state.phase(WatchPhase::Preparing).await;
    let mut rounds = 0;
    let now = loop {
        let now = versions(&mut l).await?;
        let global = |name: &str| now.get(name) != seen.versions.get(name);
        if !seen.initialized || !(global(INSTALL_ID) || global(DDL_VERSION)) {
            break now;
        }
        rounds += 1;
        if rounds > MAX_DDL_ROUNDS {
            return Err(crate::Error::Watch(format!(
                "DDL or reinstalls kept coming while the listener reconnected ({MAX_DDL_ROUNDS} rounds)"
            )));
        }
        everything(cache, state, tables).await;
        for name in [INSTALL_ID, DDL_VERSION] {
            match now.get(name) {
                Some(v) => seen.versions.insert(name.to_owned(), *v),
                None => seen.versions.remove(name),
            };
        }
    };
    if seen.initialized {
        let moved: Vec<(&str, i64)> = now
            .iter()
            .filter(|(name, v)| !name.starts_with('*') && seen.versions.get(*name) != Some(*v))
            .map(|(name, v)| (name.as_str(), *v))
            .collect();
        if !moved.is_empty() {
            cache.apply_external_writes(&moved).await;
        }
    }
    seen.versions = now;
    seen.initialized = true;
    state.set_live(u32::try_from(pid).unwrap_or(0));
    state.phase(WatchPhase::Live).await;
    Ok(l)
}

/// Every row of `querycache.table_version`, read on the listener's connection.
async fn versions(l: &mut PgListener) -> crate::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT table_name, version FROM querycache.table_version")
            .fetch_all(l)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The coverage of the tables watched now.
async fn coverage(pool: &PgPool) -> crate::Result<Coverage> {
    let status = sql::status(pool).await?;
    let catalog = Catalog::load(pool).await?;
    let split = |names: &[String]| -> Vec<(String, String)> {
        names
            .iter()
            .filter_map(|n| n.split_once('.'))
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect()
    };
    Ok(Coverage::new(
        &catalog,
        &split(&status.watched),
        &split(&status.unwatched),
    ))
}

/// DDL or a reinstall: every entry may be stale and names may resolve differently.
/// Under [`WatchTables::All`] new tables get their trigger (when the role may).
async fn everything(cache: &QueryCache<Postgres>, state: &WatchState, tables: &WatchTables) {
    cache.invalidate_all().await;
    cache.reload_catalog();
    if *tables == WatchTables::All
        && let Err(e) = sql::install(cache.pool(), tables).await
    {
        tracing::warn!("querycache: cannot watch tables created since: {e}");
    }
    match coverage(cache.pool()).await {
        Ok(c) => state.set_coverage(c),
        Err(e) => {
            // Keep the old coverage: a relation it does not know counts as watched
            // while down and as unwatched while live, which is safe either way.
            tracing::warn!("querycache: watch coverage reload failed: {e}");
        }
    }
}

/// Apply one batch of notifications, in order. DDL in the batch is handled once
/// (everything is invalidated anyway), before any later fence is reported and at the
/// end, so a migration of many statements reloads the catalog once per batch.
async fn handle(
    cache: &QueryCache<Postgres>,
    state: &WatchState,
    tables: &WatchTables,
    seen: &mut Seen,
    payloads: &[&str],
) {
    let mut pending = Pending::default();
    for payload in payloads {
        state.notifications.fetch_add(1, Ordering::Relaxed);
        let Some((version, rest)) = payload.split_once(' ') else {
            continue;
        };
        let Ok(version) = version.parse::<i64>() else {
            continue;
        };
        if let Some(token) = rest.strip_prefix("*fence ") {
            if token.parse::<u64>() == Ok(state.token) {
                // Everything before the fence is applied first.
                pending.apply(cache, state, tables).await;
                if let Ok(n) = u64::try_from(version) {
                    state.fence_seen(n);
                }
            }
            continue;
        }
        if seen.versions.get(rest).is_some_and(|last| *last >= version) {
            continue;
        }
        seen.versions.insert(rest.to_owned(), version);
        if rest == DDL_VERSION {
            pending.ddl = true;
        } else if !rest.starts_with('*') {
            pending.changes.push((rest, version));
        }
    }
    pending.apply(cache, state, tables).await;
}

/// Notifications of a batch not yet applied.
#[derive(Default)]
struct Pending<'a> {
    changes: Vec<(&'a str, i64)>,
    ddl: bool,
}

impl Pending<'_> {
    async fn apply(
        &mut self,
        cache: &QueryCache<Postgres>,
        state: &WatchState,
        tables: &WatchTables,
    ) {
        if !self.changes.is_empty() {
            cache.apply_external_writes(&self.changes).await;
            self.changes.clear();
        }
        if std::mem::take(&mut self.ddl) {
            everything(cache, state, tables).await;
        }
    }
}
