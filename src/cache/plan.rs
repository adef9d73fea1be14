//! Statement plans: what the cache does with one SQL text, worked out once.
//!
//! A [`Plan`] joins the normalizer's [`Analysis`] with what only the cache knows: the
//! read set and the write set resolved to schema-qualified relations and their
//! generation counters, the write set closed over the catalog (views, partitions,
//! cascades, triggers), and whether reads bypass the cache and why. Plans are memoized
//! by the xxh3-128 of the raw text, so a hit costs one hash and one lookup; all plans
//! are dropped when the catalog changes (DDL through the cache), which bumps the
//! planner's *version*.

use super::interim_analyzer::StatementMemo;
use crate::freshness::generations::{Generations, RelationSet};
use crate::metrics::BypassReason;
use crate::sql::{Analysis, Reason, RelationName, StatementKind};
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the cache does with one statement text.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The planner version this plan was built under. An entry filled through a plan
    /// of another version is never served: stamps only compare over the same read set.
    pub version: u64,
    /// The normalizer's key fingerprint.
    pub fingerprint: u128,
    /// Why reads of this text bypass the cache, if they do.
    pub bypass: Option<BypassReason>,
    /// The read set, resolved.
    pub reads: RelationSet,
    /// The write set, resolved and closed over the catalog.
    pub writes: RelationSet,
    /// The statement may write relations it does not name: bump the global epoch.
    pub writes_unknown: bool,
    /// DDL: relation names may now resolve differently; drop all plans.
    pub ddl: bool,
}

impl Plan {
    /// `true` when running the statement may change data or schema.
    pub fn writes_anything(&self) -> bool {
        !self.writes.is_empty() || self.writes_unknown || self.ddl
    }
}

/// How relation names become generation keys.
#[derive(Debug)]
pub(crate) enum Resolver {
    /// No catalog: key by bare relation name, so `s.t` and `t` share a counter. Over-
    /// invalidates across schemas, never under-invalidates. Write closure is the write
    /// set itself; user functions are assumed volatile.
    Bare,
}

impl Resolver {
    fn resolve(&self, relation: &RelationName) -> Arc<str> {
        match self {
            Resolver::Bare => Arc::clone(&relation.name),
        }
    }

    /// The write set closed over dependent relations, and whether the closure is
    /// incomplete (the statement must then bump the global epoch).
    fn write_closure(&self, writes: &[RelationName]) -> (Vec<Arc<str>>, bool) {
        match self {
            Resolver::Bare => (writes.iter().map(|r| self.resolve(r)).collect(), false),
        }
    }

    /// `true` when one of `functions` is not known to be immutable.
    fn any_volatile(&self, functions: &[String]) -> bool {
        match self {
            Resolver::Bare => !functions.is_empty(),
        }
    }
}

/// The bypass counter a normalizer verdict maps to.
fn bypass_reason(reason: &Reason) -> BypassReason {
    match reason {
        Reason::NotARead(_) | Reason::UnknownWrite(_) => BypassReason::NotARead,
        Reason::VolatileFunction(_) => BypassReason::VolatileFunction,
        Reason::TimeLiteral(_) => BypassReason::TimeLiteral,
        Reason::RowLock => BypassReason::RowLock,
        Reason::DataModifyingCte => BypassReason::DataModifyingCte,
        Reason::SelectInto => BypassReason::SelectInto,
        Reason::TableSample => BypassReason::TableSample,
        Reason::TempTable(_) => BypassReason::TempTable,
        Reason::SystemCatalog(_) => BypassReason::SystemCatalog,
        Reason::ExplainAnalyze => BypassReason::ExplainAnalyze,
        Reason::MultipleStatements => BypassReason::MultipleStatements,
        Reason::FromOnly => BypassReason::FromOnly,
        Reason::TooLarge { .. } => BypassReason::TooLarge,
        Reason::ParseError(_) => BypassReason::Unparseable,
    }
}

/// Builds and memoizes plans.
///
/// Invariant: a memoized plan whose `version` differs from the planner's is never
/// returned (it may linger in the memo after a concurrent [`Planner::replan`]).
pub(crate) struct Planner {
    memo: quick_cache::sync::Cache<u128, Arc<Plan>>,
    statements: StatementMemo,
    version: AtomicU64,
    resolver: RwLock<Arc<Resolver>>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("plans", &self.memo.len())
            .field("version", &self.version.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Planner {
    /// A planner memoizing up to `capacity` plans.
    pub fn new(capacity: usize, resolver: Resolver) -> Self {
        Planner {
            memo: quick_cache::sync::Cache::new(capacity.max(1)),
            statements: StatementMemo::default(),
            version: AtomicU64::new(0),
            resolver: RwLock::new(Arc::new(resolver)),
        }
    }

    /// The plan for `sql`, built on first use.
    pub fn plan(&self, sql: &str, generations: &Generations) -> Arc<Plan> {
        let hash = xxhash_rust::xxh3::xxh3_128(sql.as_bytes());
        let version = self.version.load(Ordering::SeqCst);
        if let Some(plan) = self.memo.get(&hash)
            && plan.version == version
        {
            return plan;
        }
        let analysis = self.statements.analyze(sql);
        let resolver = Arc::clone(&self.resolver.read());
        let plan = Arc::new(build(&analysis, &resolver, generations, version));
        self.memo.insert(hash, Arc::clone(&plan));
        plan
    }

    /// Drop every plan: relation names may resolve differently now. With `resolver`,
    /// also replace how names resolve (a reloaded catalog).
    pub fn replan(&self, resolver: Option<Resolver>) {
        if let Some(r) = resolver {
            *self.resolver.write() = Arc::new(r);
        }
        self.version.fetch_add(1, Ordering::SeqCst);
        self.memo.clear();
    }

    /// Resolve relation names for a manual invalidation, closed like a write.
    pub fn write_set(
        &self,
        relations: &[RelationName],
        generations: &Generations,
    ) -> (RelationSet, bool) {
        let resolver = Arc::clone(&self.resolver.read());
        let (names, unknown) = resolver.write_closure(relations);
        (
            generations.relation_set(names.iter().map(|n| &**n)),
            unknown,
        )
    }
}

fn build(
    analysis: &Analysis,
    resolver: &Resolver,
    generations: &Generations,
    version: u64,
) -> Plan {
    let reads: Vec<Arc<str>> = analysis.reads.iter().map(|r| resolver.resolve(r)).collect();
    let (writes, closure_unknown) = resolver.write_closure(&analysis.writes);
    let bypass = match analysis.reason() {
        Some(reason) => Some(bypass_reason(reason)),
        None if resolver.any_volatile(&analysis.functions) => Some(BypassReason::VolatileFunction),
        None => None,
    };
    Plan {
        version,
        fingerprint: analysis.fingerprint,
        bypass,
        reads: generations.relation_set(reads.iter().map(|n| &**n)),
        writes: generations.relation_set(writes.iter().map(|n| &**n)),
        writes_unknown: analysis.writes_unknown || closure_unknown,
        ddl: analysis.kind == StatementKind::Ddl,
    }
}
