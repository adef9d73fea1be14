//! Statement plans: what the cache does with one SQL text, worked out once.
//!
//! A [`Plan`] joins the normalizer's [`Analysis`] with what only the cache knows: the
//! read set and the write set resolved to schema-qualified relations and their
//! generation counters, the write set closed over the catalog (views, partitions,
//! cascades, triggers), and whether reads bypass the cache and why. Plans are memoized
//! by the xxh3-128 of the raw text, so a hit costs one hash and one lookup; all plans
//! are dropped when the catalog changes (DDL through the cache), which bumps the
//! planner's *version*.

use super::admission::Admission;
use super::row_plan::{BUCKET_PLANS, BucketPlans, RowKeyed};
use crate::freshness::generations::{Generations, RelationSet};
use crate::freshness::row_keys;
use crate::freshness::row_keys::BindValue;
use crate::freshness::{Catalog, VolatileSource, Volatility};
use crate::metrics::BypassReason;
use crate::sql::{Analysis, AnalyzeOptions, Reason, RelationName, StatementKind, StatementMemo};
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
    /// Whether results of this statement's shape are worth filling, shared by every
    /// plan of the shape (`admission.rs`).
    pub admission: Arc<Admission>,
    /// Consecutive misses of this statement whose result the Redis tier did not admit
    /// (cheap, small results): past [`REDIS_IDLE_LIMIT`] most of its Redis lookups are
    /// skipped (`cache/redis_tier.rs`).
    pub redis_idle: std::sync::atomic::AtomicU32,
    /// The read set, resolved.
    pub reads: RelationSet,
    /// The write set, resolved and closed over the catalog.
    pub writes: RelationSet,
    /// The statement may write relations it does not name: bump the global epoch.
    pub writes_unknown: bool,
    /// DDL: relation names may now resolve differently; reload the catalog.
    pub ddl: bool,
    /// A written relation is not in the catalog (created elsewhere since it was
    /// loaded): bump the global epoch and reload the catalog.
    pub catalog_stale: bool,
    /// A key read or key write invalidated row by row: the plans its key buckets run
    /// under (`row_plan.rs`). `reads` / `writes` above are then the table-level sets
    /// used when a key value cannot be normalized.
    pub row_keyed: Option<RowKeyed>,
    /// The key bucket this plan is the plan of (`row_plan.rs`), if it is one.
    pub key_bucket: Option<u32>,
}

impl Plan {
    /// `true` when running the statement may change data or schema.
    pub fn writes_anything(&self) -> bool {
        !self.writes.is_empty() || self.writes_unknown || self.ddl || self.catalog_stale
    }

    /// `true` when the catalog must be reloaded after this statement.
    pub fn changes_catalog(&self) -> bool {
        self.ddl || self.catalog_stale
    }

    /// The plan one execution runs under: for a row-keyed statement whose key values
    /// `binds` (called at most once) and its literals normalize, the plan of their key
    /// bucket(s); otherwise this table-level plan.
    pub fn for_arguments(
        self: &Arc<Self>,
        binds: impl FnOnce() -> Option<Vec<BindValue>>,
        generations: &Generations,
        bucket_plans: &BucketPlans,
    ) -> Arc<Plan> {
        match &self.row_keyed {
            Some(row) => row.plan(self, binds, generations, bucket_plans),
            None => Arc::clone(self),
        }
    }

    /// A copy of this plan with other read and write sets and no row keys (the plan
    /// of one key bucket).
    pub(super) fn with_sets(
        &self,
        reads: RelationSet,
        writes: RelationSet,
        key_bucket: Option<u32>,
    ) -> Plan {
        Plan {
            version: self.version,
            fingerprint: self.fingerprint,
            bypass: self.bypass,
            admission: Arc::clone(&self.admission),
            redis_idle: std::sync::atomic::AtomicU32::new(0),
            reads,
            writes,
            writes_unknown: self.writes_unknown,
            ddl: self.ddl,
            catalog_stale: self.catalog_stale,
            row_keyed: None,
            key_bucket,
        }
    }
}

/// How relation names become generation keys, write sets close, and functions are
/// judged.
#[derive(Debug)]
pub(crate) enum Resolver {
    /// Through the catalog: unqualified names resolve along `search_path` as Postgres
    /// resolves them; a write set closes over views, partitions, inheritance, cascades,
    /// triggers and rules; a function is cacheable only if `pg_proc` says IMMUTABLE
    /// (for every overload), and a view only if it calls no such function and reads
    /// no system catalog, through views of views ([`Catalog::reads_volatile`]).
    Catalog {
        /// The loaded catalog.
        catalog: Arc<Catalog>,
        /// The pool's `search_path`, parsed ([`crate::freshness::parse_search_path`]).
        search_path: Vec<String>,
    },
    /// DDL ran and the catalog is being reloaded (or could not be reloaded): names may
    /// resolve differently and closures are unknown, so reads bypass and writes bump
    /// the global epoch until a new catalog is installed.
    Reloading,
    /// A database without catalog support: key by bare relation name, so `s.t` and `t`
    /// share a counter (over-invalidates across schemas, never under-invalidates).
    /// Write closure is the write set itself; every function is assumed volatile.
    /// Views cannot be told from tables, so a view over `now()` is cached: use
    /// [`Resolver::Catalog`] with Postgres.
    Bare,
}

/// A write set after resolution and closure.
struct Closure {
    names: Vec<Arc<str>>,
    /// Write to relations we cannot name: bump the global epoch.
    unknown: bool,
    /// A written relation is missing from the catalog: reload it.
    catalog_stale: bool,
}

impl Resolver {
    fn resolve(&self, relation: &RelationName) -> Arc<str> {
        match self {
            Resolver::Catalog {
                catalog,
                search_path,
            } => Arc::from(catalog.resolve(relation, search_path).to_string()),
            Resolver::Reloading | Resolver::Bare => Arc::clone(&relation.name),
        }
    }

    fn write_closure(&self, writes: &[RelationName]) -> Closure {
        match self {
            Resolver::Catalog {
                catalog,
                search_path,
            } => {
                let resolved: Vec<RelationName> = writes
                    .iter()
                    .map(|r| catalog.resolve(r, search_path))
                    .collect();
                let closure = catalog.write_closure(&resolved);
                Closure {
                    names: closure
                        .relations
                        .iter()
                        .map(|r| Arc::from(r.to_string()))
                        .collect(),
                    unknown: closure.unknown,
                    catalog_stale: resolved.iter().any(|r| !catalog.contains(r)),
                }
            }
            Resolver::Reloading => Closure {
                names: writes.iter().map(|r| self.resolve(r)).collect(),
                unknown: !writes.is_empty(),
                catalog_stale: false,
            },
            Resolver::Bare => Closure {
                names: writes.iter().map(|r| self.resolve(r)).collect(),
                unknown: false,
                catalog_stale: false,
            },
        }
    }

    /// The catalog and the resolved name of `relation`, when names resolve through one.
    pub(super) fn catalog_name(&self, relation: &RelationName) -> Option<(&Catalog, RelationName)> {
        match self {
            Resolver::Catalog {
                catalog,
                search_path,
            } => Some((catalog, catalog.resolve(relation, search_path))),
            Resolver::Reloading | Resolver::Bare => None,
        }
    }

    /// Why reads under this resolver bypass, if they must: a function the text calls,
    /// or a relation it reads that is a view over a volatile function or a system
    /// catalog.
    fn read_bypass(&self, functions: &[String], reads: &[RelationName]) -> Option<BypassReason> {
        match self {
            Resolver::Reloading => Some(BypassReason::CatalogUnavailable),
            Resolver::Bare => (!functions.is_empty()).then_some(BypassReason::VolatileFunction),
            Resolver::Catalog {
                catalog,
                search_path,
            } => {
                let immutable =
                    |f: &String| catalog.function_volatility(f) == Some(Volatility::Immutable);
                if !functions.iter().all(immutable) {
                    return Some(BypassReason::VolatileFunction);
                }
                reads.iter().find_map(|read| {
                    let read = catalog.resolve(read, search_path);
                    catalog.reads_volatile(&read).map(|source| match source {
                        VolatileSource::SystemRelation(_) => BypassReason::SystemCatalog,
                        VolatileSource::Function(_) => BypassReason::VolatileFunction,
                    })
                })
            }
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
        Reason::Explain => BypassReason::Explain,
        Reason::Show => BypassReason::Show,
        Reason::Misread(_) => BypassReason::Misread,
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
    /// Admission state by statement shape; dropped with the plans at a replan.
    shapes: quick_cache::sync::Cache<u128, Arc<Admission>>,
    statements: StatementMemo,
    version: AtomicU64,
    resolver: RwLock<Arc<Resolver>>,
    row_level: RowLevel,
    /// Plans of key buckets of bind-keyed statements (`row_plan.rs`).
    pub bucket_plans: BucketPlans,
}

/// Row-level invalidation settings of a planner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLevel {
    /// Invalidate key reads and key writes row by row
    /// ([`Granularity::Row`](super::builder::Granularity::Row)).
    pub on: bool,
    /// Key writes bump no key bucket (tests only).
    pub skip_key_bumps: bool,
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
    pub fn new(
        capacity: usize,
        dialect: crate::sql::Dialect,
        resolver: Resolver,
        row_level: RowLevel,
    ) -> Self {
        let options = AnalyzeOptions {
            dialect,
            ..AnalyzeOptions::default()
        };
        Planner {
            memo: quick_cache::sync::Cache::new(capacity.max(1)),
            shapes: quick_cache::sync::Cache::new(capacity.max(1)),
            statements: StatementMemo::new(capacity, options),
            version: AtomicU64::new(0),
            resolver: RwLock::new(Arc::new(resolver)),
            row_level,
            bucket_plans: BucketPlans::new(BUCKET_PLANS),
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
        let admission = self
            .shapes
            .get_or_insert_with(&analysis.shape, || {
                Ok::<_, std::convert::Infallible>(Arc::default())
            })
            .unwrap_or_default();
        let plan = Arc::new(build(
            &analysis,
            &resolver,
            generations,
            version,
            admission,
            self.row_level,
            hash,
        ));
        self.memo.insert(hash, Arc::clone(&plan));
        plan
    }

    /// Replace how names resolve (a catalog reloading or reloaded) and drop every
    /// plan built under the old resolver.
    pub fn replan(&self, resolver: Resolver) {
        *self.resolver.write() = Arc::new(resolver);
        self.version.fetch_add(1, Ordering::SeqCst);
        self.memo.clear();
        self.shapes.clear();
        self.bucket_plans.clear();
    }

    /// Resolve relation names for a manual invalidation, closed like a write.
    pub fn write_set(
        &self,
        relations: &[RelationName],
        generations: &Generations,
    ) -> (RelationSet, bool) {
        let resolver = Arc::clone(&self.resolver.read());
        let closure = resolver.write_closure(relations);
        (
            generations.relation_set(closure.names.iter().map(|n| &**n)),
            closure.unknown || closure.catalog_stale,
        )
    }
}

fn build(
    analysis: &Analysis,
    resolver: &Resolver,
    generations: &Generations,
    version: u64,
    admission: Arc<Admission>,
    row_level: RowLevel,
    text_hash: u128,
) -> Plan {
    let mut reads: Vec<Arc<str>> = analysis.reads.iter().map(|r| resolver.resolve(r)).collect();
    if row_level.on {
        // Reads of a row-keyed table that are not key reads also check its key writes.
        for relation in &analysis.reads {
            if let Some((catalog, name)) = resolver.catalog_name(relation)
                && catalog.row_key(&name).is_some()
            {
                reads.push(Arc::from(row_keys::key_writes_name(&name.to_string())));
            }
        }
    }
    let closure = resolver.write_closure(&analysis.writes);
    let bypass = match analysis.reason() {
        Some(reason) => Some(bypass_reason(reason)),
        None => resolver.read_bypass(&analysis.functions, &analysis.reads),
    };
    let mut plan = Plan {
        version,
        fingerprint: analysis.fingerprint,
        bypass,
        admission,
        reads: generations.relation_set(reads.iter().map(|n| &**n)),
        writes: generations.relation_set(closure.names.iter().map(|n| &**n)),
        writes_unknown: analysis.writes_unknown || closure.unknown,
        ddl: analysis.kind == StatementKind::Ddl,
        catalog_stale: closure.catalog_stale,
        redis_idle: std::sync::atomic::AtomicU32::new(0),
        row_keyed: None,
        key_bucket: None,
    };
    if row_level.on {
        plan.row_keyed = RowKeyed::build(
            analysis,
            resolver,
            &plan,
            &closure.names,
            row_level.skip_key_bumps,
            text_hash,
        );
    }
    plan
}
