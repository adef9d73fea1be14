//! What the read path knows about the listener: whether it is live, which relations
//! depend on watched and on unwatched tables, and the fences it has passed. Shared
//! between the listener task (the only writer) and every read (`read_bypass`).

use crate::freshness::Catalog;
use crate::freshness::generations::RelationSet;
use crate::metrics::{BypassReason, Metrics};
use crate::sql::RelationName;
use arc_swap::ArcSwap;
use futures_core::future::BoxFuture;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Which relations a write to a watched table, or to an unwatched one, can change:
/// the union of the tables' write closures over the catalog (so a view over a watched
/// table is watched, a view over both kinds is in both sets).
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    /// Relations (`schema.name` as [`RelationName`] prints it) some watched table's
    /// writes can change.
    watched: HashSet<String>,
    /// Relations some unwatched table's writes can change.
    unwatched: HashSet<String>,
    /// A watched table's closure is unknown (a trigger the catalog cannot read): every
    /// relation may depend on it.
    watched_everywhere: bool,
    /// Same for an unwatched table.
    unwatched_everywhere: bool,
}

impl Coverage {
    /// Coverage of `watched` and `unwatched` tables (`(schema, table)`) over `catalog`.
    pub(crate) fn new(
        catalog: &Catalog,
        watched: &[(String, String)],
        unwatched: &[(String, String)],
    ) -> Self {
        let mut out = Coverage::default();
        let close = |tables: &[(String, String)], set: &mut HashSet<String>| {
            let mut everywhere = false;
            for (schema, table) in tables {
                let name = RelationName::new(Some(schema), table);
                set.insert(name.to_string());
                let closure = catalog.write_closure(std::slice::from_ref(&name));
                everywhere |= closure.unknown;
                set.extend(closure.relations.iter().map(ToString::to_string));
            }
            everywhere
        };
        out.watched_everywhere = close(watched, &mut out.watched);
        out.unwatched_everywhere = close(unwatched, &mut out.unwatched);
        out
    }

    /// `true` when a write to a watched table can change `name`, or `name` is unknown
    /// (not in the catalog the coverage was built from).
    fn watched(&self, name: &str) -> bool {
        self.watched_everywhere || self.watched.contains(name) || !self.unwatched.contains(name)
    }

    /// `true` when a write to an unwatched table can change `name`, or `name` is
    /// unknown.
    fn unwatched(&self, name: &str) -> bool {
        self.unwatched_everywhere || self.unwatched.contains(name) || !self.watched.contains(name)
    }

    /// Nothing depends on an unwatched table: live reads need no lookup.
    fn complete(&self) -> bool {
        !self.unwatched_everywhere && self.unwatched.is_empty()
    }
}

/// Where a connecting listener is, for [`WatchHook`] (tests only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchPhase {
    /// Connected and `LISTEN`ing, the coverage reloaded, the version rows not yet
    /// re-read: the state is down. A write committed now must be bumped before live.
    Preparing,
    /// The state was just set live; the listener handles no notification until the
    /// hook returns.
    Live,
}

/// A hook the listener awaits at each [`WatchPhase`] of every connect (tests only:
/// `QueryCacheBuilder::watch_hook_for_testing`).
pub(crate) type WatchHook = Arc<dyn Fn(WatchPhase) -> BoxFuture<'static, ()> + Send + Sync>;

/// The listener's state as reads see it.
///
/// Invariants:
/// 1. `live` is `true` only while the listener's connection is `LISTEN`ing and, since
///    it connected, the version rows have been re-read and every relation whose
///    version moved has been passed to `apply_external_writes`.
/// 2. Between that re-read and setting `live` the listener runs nothing but those
///    bumps: notifications of writes committed after the re-read wait unhandled on the
///    connection until `live` is set, so any slow step there (a catalog or coverage
///    reload) would let reads be served while such writes are not yet bumped.
/// 3. `coverage` is replaced only by the listener task.
#[derive(Debug)]
pub struct WatchState {
    live: AtomicBool,
    complete: AtomicBool,
    coverage: ArcSwap<Coverage>,
    pid: AtomicU32,
    /// Fences: the highest fence number this cache's listener has received, and the
    /// number of times the listener went down (a fence waiter also returns then).
    fences: tokio::sync::watch::Sender<(u64, u64)>,
    next_fence: AtomicU64,
    /// Identifies this cache's fences among those of other processes.
    pub(crate) token: u64,
    /// Notifications handled, and the relations passed to `apply_external_writes`.
    pub(crate) notifications: AtomicU64,
    /// Awaited by the listener at each [`WatchPhase`] (tests only).
    hook: HookSlot,
}

/// The optional [`WatchHook`], printable.
#[derive(Default)]
struct HookSlot(Option<WatchHook>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(hook)"
        } else {
            "None"
        })
    }
}

impl Default for WatchState {
    fn default() -> Self {
        WatchState {
            live: AtomicBool::new(false),
            complete: AtomicBool::new(false),
            coverage: ArcSwap::from_pointee(Coverage::default()),
            pid: AtomicU32::new(0),
            fences: tokio::sync::watch::channel((0, 0)).0,
            next_fence: AtomicU64::new(1),
            token: rand::random(),
            notifications: AtomicU64::new(0),
            hook: HookSlot::default(),
        }
    }
}

impl WatchState {
    /// A state whose listener awaits `hook` at each [`WatchPhase`] (tests only).
    pub(crate) fn with_hook(hook: Option<WatchHook>) -> Self {
        WatchState {
            hook: HookSlot(hook),
            ..WatchState::default()
        }
    }

    /// Await the hook, if any, at `phase`.
    pub(crate) async fn phase(&self, phase: WatchPhase) {
        if let Some(hook) = &self.hook.0 {
            hook(phase).await;
        }
    }

    /// `true` while the listener is up and caught up (invariant 1).
    pub fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// The listener connection's backend pid while live, else `None` (tests terminate
    /// it with `pg_terminate_backend`).
    pub fn listener_pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub(crate) fn set_coverage(&self, coverage: Coverage) {
        self.complete.store(coverage.complete(), Ordering::SeqCst);
        self.coverage.store(Arc::new(coverage));
    }

    pub(crate) fn set_live(&self, pid: u32) {
        self.pid.store(pid, Ordering::SeqCst);
        self.live.store(true, Ordering::SeqCst);
    }

    /// The listener lost (or is replacing) its connection: reads of watched relations
    /// bypass from now on, and fence waiters return.
    pub(crate) fn set_down(&self) {
        if self.live.swap(false, Ordering::SeqCst) {
            self.pid.store(0, Ordering::SeqCst);
            self.fences.send_modify(|(_, downs)| *downs += 1);
        }
    }

    /// The next fence number of this cache.
    pub(crate) fn next_fence(&self) -> u64 {
        self.next_fence.fetch_add(1, Ordering::SeqCst)
    }

    /// The listener received fence `n` (every notification committed before it has
    /// been applied).
    pub(crate) fn fence_seen(&self, n: u64) {
        self.fences.send_modify(|(seen, _)| *seen = (*seen).max(n));
    }

    /// Wait until fence `n` was seen or the listener went down since `downs` (from
    /// [`fence_mark`](Self::fence_mark)).
    pub(crate) async fn wait_fence(&self, n: u64, downs: u64) {
        let mut rx = self.fences.subscribe();
        // `wait_for` only fails when the sender is dropped, and `self` owns it.
        let _ = rx.wait_for(|(seen, d)| *seen >= n || *d != downs).await;
    }

    /// How many times the listener has gone down so far.
    pub(crate) fn fence_mark(&self) -> u64 {
        self.fences.borrow().1
    }
}

/// The read path's watch decision for a read of `reads` that nothing else bypasses
/// (called once per cached read from `fetch.rs`):
///
/// - no watch configured: every read with a non-empty read set depends on unwatched
///   tables (counted in `Stats::unwatched_reads`), none is bypassed;
/// - listener live: no bypass; counted when a relation of `reads` depends on an
///   unwatched table (or is unknown to the coverage);
/// - listener down or catching up: [`BypassReason::WatchUnavailable`] when a relation
///   of `reads` depends on a watched table (or is unknown), so no tier serves it;
///   reads of unwatched tables only are served as usual (and counted).
///
/// Cost on a hit with every table watched: two atomic loads.
/// The relations of a read set, without the key counters of row-level invalidation
/// (`T#k`, `T#b{i}`, see `freshness::row_keys`): such a counter is skipped only when
/// its table is in the set too, which every read set holding one has.
fn relations(reads: &RelationSet) -> impl Iterator<Item = &str> {
    reads.names().iter().map(|n| &**n).filter(move |name| {
        !name
            .rsplit_once('#')
            .is_some_and(|(table, _)| reads.contains(table))
    })
}

pub(crate) fn read_bypass(
    watch: Option<&WatchState>,
    metrics: &Metrics,
    reads: &RelationSet,
) -> Option<BypassReason> {
    if reads.is_empty() {
        return None;
    }
    let Some(watch) = watch else {
        metrics.unwatched_reads.incr();
        return None;
    };
    if watch.live() {
        if !watch.complete.load(Ordering::Relaxed) {
            let coverage = watch.coverage.load();
            if relations(reads).any(|n| coverage.unwatched(n)) {
                metrics.unwatched_reads.incr();
            }
        }
        return None;
    }
    let coverage = watch.coverage.load();
    if relations(reads).any(|n| coverage.watched(n)) {
        return Some(BypassReason::WatchUnavailable);
    }
    metrics.unwatched_reads.incr();
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::generations::Generations;

    fn coverage(watched: &[&str], unwatched: &[&str]) -> Coverage {
        Coverage {
            watched: watched.iter().map(|s| (*s).to_owned()).collect(),
            unwatched: unwatched.iter().map(|s| (*s).to_owned()).collect(),
            ..Coverage::default()
        }
    }

    #[test]
    fn reads_of_watched_relations_bypass_only_while_the_listener_is_down() {
        let g = Generations::new();
        let state = WatchState::default();
        state.set_coverage(coverage(
            &["public.film", "public.film_view"],
            &["public.staff", "public.film_view"],
        ));
        let metrics = Metrics::default();
        let film = g.relation_set(["public.film"]);
        let staff = g.relation_set(["public.staff"]);
        let view = g.relation_set(["public.film_view"]);
        let unknown = g.relation_set(["public.new_table"]);

        for set in [&film, &view, &unknown] {
            assert_eq!(
                read_bypass(Some(&state), &metrics, set),
                Some(BypassReason::WatchUnavailable)
            );
        }
        assert_eq!(read_bypass(Some(&state), &metrics, &staff), None);
        assert_eq!(metrics.unwatched_reads.get(), 1);

        state.set_live(42);
        for set in [&film, &view, &unknown, &staff] {
            assert_eq!(read_bypass(Some(&state), &metrics, set), None);
        }
        assert_eq!(metrics.unwatched_reads.get(), 4, "view, unknown, staff");

        state.set_down();
        assert_eq!(state.listener_pid(), None);
        assert_eq!(
            read_bypass(Some(&state), &metrics, &film),
            Some(BypassReason::WatchUnavailable)
        );
    }

    #[test]
    fn without_watch_every_table_read_is_unwatched() {
        let g = Generations::new();
        let metrics = Metrics::default();
        assert_eq!(
            read_bypass(None, &metrics, &g.relation_set(["public.film"])),
            None
        );
        assert_eq!(read_bypass(None, &metrics, &RelationSet::default()), None);
        assert_eq!(metrics.unwatched_reads.get(), 1);
    }
}
