//! Per-relation generation counters and the global epoch.
//!
//! Every relation the cache has seen (schema-qualified name, e.g. `public.film`) owns a
//! monotonically increasing counter, its *generation*. A write bumps the generations of
//! its write set once it has succeeded (autocommit) or committed (transaction); a write
//! the cache cannot analyse bumps the global *epoch* instead, which every entry depends
//! on.
//!
//! A read takes a [`Stamp`] of its read set **before** it executes and stores it with
//! the result. A hit is served only while the read set's current stamp equals the
//! stored one; a fill whose stamp moved while its query ran is refused. This closes the
//! cache-aside race (reader misses, writer commits and invalidates, reader stores old
//! rows) that pgpool, MaxScale and django-cachalot leave open (DESIGN §3).
//!
//! # Why one sum is an exact stamp
//!
//! Counters only ever increase, so the sum `epoch + Σ generation(r)` over a fixed set
//! of relations changes if and only if one of them was bumped: it cannot go down, and
//! any bump raises it. One `u64` per entry therefore replaces a vector of snapshots
//! (DESIGN §5 asks for ≤ 64 B of overhead per entry). The sum only compares stamps of
//! the *same* [`RelationSet`]; the cache stores the identity of the statement plan that
//! produced a stamp next to it for that reason.
//!
//! # Memory ordering
//!
//! Bumps and loads are `SeqCst`: a bump made before a writer returns is visible to every
//! read that starts after that return, on any thread. On x86-64 a `SeqCst` load is a
//! plain `mov`, so the hit path pays nothing for it.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One generation counter, alone on its cache line (128 bytes: Intel's adjacent-line
/// prefetcher pairs 64-byte lines) so that bumping a hot table does not slow the loads
/// of its neighbours.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Generation(AtomicU64);

impl Generation {
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A snapshot of a read set: `epoch + Σ generation(r)` for the relations of one
/// [`RelationSet`] (see the module docs for why the sum is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp(u64);

impl Stamp {
    /// The raw value, for logs and encoded entries.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A deduplicated set of relations with their counters resolved, so that taking a
/// stamp or bumping costs no map lookup. Built once per statement plan.
#[derive(Debug, Clone, Default)]
pub struct RelationSet {
    names: Box<[Arc<str>]>,
    counters: Box<[Arc<Generation>]>,
}

impl RelationSet {
    /// The schema-qualified relation names, sorted.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// `true` when the set names no relation.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `true` when `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| &**n == name)
    }
}

/// The registry of generation counters plus the global epoch. One per cache.
///
/// Invariants:
/// 1. A counter, once created for a name, is never removed or replaced: a
///    [`RelationSet`] resolved earlier keeps observing the same counter.
/// 2. Counters and the epoch never decrease.
///
/// Lock order: `relations` is the only lock and is never held while a counter is bumped
/// or loaded.
#[derive(Debug, Default)]
pub struct Generations {
    epoch: Generation,
    relations: RwLock<HashMap<Arc<str>, Arc<Generation>>>,
}

impl Generations {
    /// An empty registry: epoch 0, no relations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolve `names` (schema-qualified) to their counters, creating missing ones at
    /// generation 0. Duplicates are removed; the set is sorted by name.
    pub fn relation_set<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> RelationSet {
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let mut out_names = Vec::with_capacity(names.len());
        let mut counters = Vec::with_capacity(names.len());
        for name in names {
            let (name, counter) = self.counter(name);
            out_names.push(name);
            counters.push(counter);
        }
        RelationSet {
            names: out_names.into(),
            counters: counters.into(),
        }
    }

    fn counter(&self, name: &str) -> (Arc<str>, Arc<Generation>) {
        if let Some((k, v)) = self.relations.read().get_key_value(name) {
            return (Arc::clone(k), Arc::clone(v));
        }
        let mut map = self.relations.write();
        if let Some((k, v)) = map.get_key_value(name) {
            return (Arc::clone(k), Arc::clone(v));
        }
        let (k, v) = (Arc::<str>::from(name), Arc::<Generation>::default());
        map.insert(Arc::clone(&k), Arc::clone(&v));
        (k, v)
    }

    /// The current stamp of `set`: the epoch plus the sum of its generations.
    pub fn stamp(&self, set: &RelationSet) -> Stamp {
        let sum = set
            .counters
            .iter()
            .fold(self.epoch.get(), |acc, g| acc.wrapping_add(g.get()));
        Stamp(sum)
    }

    /// Bump every relation in `set` by one.
    pub fn bump(&self, set: &RelationSet) {
        for counter in set.counters.iter() {
            counter.bump();
        }
    }

    /// Bump the global epoch: every stamp taken before this call is now stale.
    pub fn bump_epoch(&self) {
        self.epoch.bump();
    }

    /// The generation of one relation (0 if the cache has never seen it).
    pub fn generation(&self, name: &str) -> u64 {
        self.relations.read().get(name).map_or(0, |g| g.get())
    }

    /// The global epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_of_any_member_changes_the_stamp_and_others_do_not() {
        let g = Generations::new();
        let film_actor = g.relation_set(["public.film", "public.actor", "public.film"]);
        let other = g.relation_set(["public.rental"]);
        assert_eq!(film_actor.names().len(), 2, "duplicates are removed");

        let before = g.stamp(&film_actor);
        g.bump(&other);
        assert_eq!(g.stamp(&film_actor), before, "unrelated write");

        g.bump(&g.relation_set(["public.actor"]));
        let after_actor = g.stamp(&film_actor);
        assert_ne!(after_actor, before);

        g.bump_epoch();
        assert_ne!(
            g.stamp(&film_actor),
            after_actor,
            "the epoch covers every set"
        );
    }

    #[test]
    fn sets_resolved_at_different_times_share_counters() {
        let g = Generations::new();
        let early = g.relation_set(["public.film"]);
        g.bump(&g.relation_set(["public.film"]));
        assert_eq!(g.generation("public.film"), 1);
        let s = g.stamp(&early);
        g.bump(&g.relation_set(["public.film"]));
        assert_ne!(g.stamp(&early), s);
        assert_eq!(g.generation("public.film"), 2);
    }
}
