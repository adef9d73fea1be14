//! Reading the catalog: the queries behind `Catalog::load`, and turning their rows into
//! the dependency graph (relation ids, view edges, partitions, cascades, trigger and
//! rule effects) and the volatility map.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::postgres::PgPool;

use super::catalog::{RelationKind, Volatility};
use super::closure::{Effects, Graph};
use super::function_body::{self, BodyEffects, BodyName};
use super::unique_keys::{self, UniqueKey, UniqueKeyRow};
use super::volatile_views::{self, NodeRow, VolatileSource};
use super::watch::sql as watch;
use crate::Result;
use crate::sql::RelationName;

/// Schemas whose functions are builtins: they write no relation we cache.
pub(crate) const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// `(oid, schema, name, relkind)` from `pg_class`.
type RelationRow = (i64, String, String, String);
/// `(rule's relation, is the view's _RETURN rule, references a function, referenced oid)`.
type RuleDependencyRow = (i64, bool, bool, i64);
/// `(oid, schema, name, provolatile, prolang name, prosrc for user functions,
/// search_path from proconfig, aggregate support functions)`.
type FunctionRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Vec<i64>,
);

/// Everything `Catalog::load` reads, as returned by the server.
#[derive(Debug, Default)]
pub(crate) struct CatalogRows {
    current_user: String,
    schemas: Vec<String>,
    relations: Vec<RelationRow>,
    rule_dependencies: Vec<RuleDependencyRow>,
    /// `(child, parent)` from `pg_inherits`.
    inherits: Vec<(i64, i64)>,
    /// `(referencing, referenced, has a writing ON DELETE/UPDATE action)`.
    foreign_keys: Vec<(i64, i64, bool)>,
    /// `(relation, function)` from `pg_trigger`, internal triggers excluded.
    triggers: Vec<(i64, i64)>,
    functions: Vec<FunctionRow>,
    /// Function calls and relations in user views' query trees (`volatile_views`).
    view_nodes: Vec<NodeRow>,
    /// Primary keys and unique indexes (`unique_keys`).
    unique_keys: Vec<UniqueKeyRow>,
    /// Relations with a rule other than a view's `_RETURN` rule (any rule, also one
    /// that references only its own relation, which `rule_dependencies` drops).
    rule_relations: Vec<i64>,
}

/// Runs the catalog queries in one `REPEATABLE READ` read-only transaction.
pub(crate) async fn query(pool: &PgPool) -> Result<CatalogRows> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (current_user, schemas): (String, Vec<String>) = sqlx::query_as(
        r"SELECT current_user::text, array_agg(nspname::text)
          FROM pg_namespace WHERE nspname !~ '^pg_(toast|temp_)'",
    )
    .fetch_one(&mut *tx)
    .await?;
    let relations = sqlx::query_as(
        r"SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname !~ '^pg_(toast|temp_)'",
    )
    .fetch_all(&mut *tx)
    .await?;
    // What each view's _RETURN rule and each other rule references (columns collapse
    // to their relation); a rule's dependency on its own relation is dropped.
    let rule_dependencies = sqlx::query_as(
        r"SELECT DISTINCT r.ev_class::int8, r.rulename = '_RETURN',
                 d.refclassid = 'pg_proc'::regclass, d.refobjid::int8
          FROM pg_rewrite r
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
          WHERE d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass)
            AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = r.ev_class)",
    )
    .fetch_all(&mut *tx)
    .await?;
    let inherits = sqlx::query_as("SELECT inhrelid::int8, inhparent::int8 FROM pg_inherits")
        .fetch_all(&mut *tx)
        .await?;
    // Actions: a = NO ACTION, r = RESTRICT, c = CASCADE, n = SET NULL, d = SET DEFAULT
    // (PostgreSQL docs, pg_constraint).
    let foreign_keys = sqlx::query_as(
        r"SELECT conrelid::int8, confrelid::int8,
                 confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd')
          FROM pg_constraint WHERE contype = 'f'",
    )
    .fetch_all(&mut *tx)
    .await?;
    let triggers =
        sqlx::query_as("SELECT tgrelid::int8, tgfoid::int8 FROM pg_trigger WHERE NOT tgisinternal")
            .fetch_all(&mut *tx)
            .await?;
    let functions = sqlx::query_as(
        r"SELECT p.oid::int8, n.nspname::text, p.proname::text, p.provolatile::text,
                 l.lanname::text,
                 CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') THEN NULL
                      ELSE p.prosrc END,
                 (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c
                  WHERE c LIKE 'search\_path=%'),
                 CASE WHEN a.aggfnoid IS NULL THEN ARRAY[]::int8[]
                      ELSE ARRAY[a.aggtransfn::oid::int8, a.aggfinalfn::oid::int8,
                                 a.aggcombinefn::oid::int8, a.aggserialfn::oid::int8,
                                 a.aggdeserialfn::oid::int8, a.aggmtransfn::oid::int8,
                                 a.aggminvtransfn::oid::int8, a.aggmfinalfn::oid::int8] END
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_language l ON l.oid = p.prolang
          LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid",
    )
    .fetch_all(&mut *tx)
    .await?;
    let view_nodes = sqlx::query_as(volatile_views::QUERY)
        .fetch_all(&mut *tx)
        .await?;
    let unique_keys = sqlx::query_as(unique_keys::QUERY)
        .fetch_all(&mut *tx)
        .await?;
    let rule_relations: Vec<(i64,)> = sqlx::query_as(
        "SELECT DISTINCT ev_class::int8 FROM pg_rewrite WHERE rulename <> '_RETURN'",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CatalogRows {
        current_user,
        schemas,
        relations,
        rule_dependencies,
        inherits,
        foreign_keys,
        triggers,
        functions,
        view_nodes,
        unique_keys,
        rule_relations: rule_relations.into_iter().map(|(oid,)| oid).collect(),
    })
}

/// The catalog rows turned into ids and edges.
pub(crate) struct Built {
    /// Sorted by name; the index is the relation's id in `graph`.
    pub relations: Vec<(RelationName, RelationKind)>,
    pub graph: Graph,
    pub schemas: HashSet<Arc<str>>,
    pub current_user: Arc<str>,
    pub volatility: HashMap<String, Volatility>,
    /// Views whose results change without a write, by relation id.
    pub volatile_views: HashMap<u32, VolatileSource>,
    /// Primary keys and unique indexes, by relation id.
    pub unique_keys: HashMap<u32, Vec<UniqueKey>>,
    /// Relations whose rows a statement may change beyond the rows it names: any
    /// trigger other than the cache's own version trigger (a BEFORE ROW trigger can
    /// change a key, any trigger can write the table again), or any rule.
    pub row_key_blocked: HashSet<u32>,
}

/// What one function does on its own, before following its calls.
pub(crate) enum Direct {
    /// A builtin: writes no relation we cache.
    Nothing,
    /// Effects cannot be known (other language, C outside `pg_catalog`, empty body).
    Unknown,
    /// A PL/pgSQL or SQL body, scanned; unqualified names resolve through
    /// `search_path` when the function sets one.
    Body {
        effects: BodyEffects,
        search_path: Option<Vec<String>>,
    },
    /// An aggregate: its support functions.
    Calls(Vec<i64>),
}

/// One `pg_proc` row, read.
pub(crate) struct Function {
    pub schema: String,
    pub name: String,
    /// `provolatile`; for an aggregate, the most volatile of it and its support
    /// functions.
    pub volatility: Volatility,
    pub direct: Direct,
}

/// Builds relation ids, the graph and the volatility map from the rows.
pub(crate) fn build(rows: CatalogRows) -> Built {
    let mut relations: Vec<(i64, RelationName, RelationKind)> = rows
        .relations
        .iter()
        .filter_map(|(oid, schema, name, relkind)| {
            let kind = RelationKind::from_relkind(relkind)?;
            Some((*oid, RelationName::new(Some(schema), name), kind))
        })
        .collect();
    relations.sort_by(|a, b| a.1.cmp(&b.1));
    let id_of: HashMap<i64, u32> = relations
        .iter()
        .enumerate()
        .map(|(id, (oid, ..))| (*oid, u32::try_from(id).expect("fewer than 2^32 relations")))
        .collect();
    let mut by_relname: HashMap<&str, Vec<(u32, &str)>> = HashMap::new();
    for (id, (_, name, _)) in relations.iter().enumerate() {
        let schema = name.schema.as_deref().expect("catalog names are qualified");
        by_relname
            .entry(&name.name)
            .or_default()
            .push((id as u32, schema));
    }

    let (functions, volatility) = functions(&rows.functions);
    let mut user_functions: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (&oid, function) in &functions {
        if !SYSTEM_SCHEMAS.contains(&function.schema.as_str()) {
            user_functions
                .entry(&function.name)
                .or_default()
                .push((&function.schema, oid));
        }
    }
    let mut effects_of = FunctionEffects {
        functions: &functions,
        user_functions: &user_functions,
        by_relname: &by_relname,
        memo: HashMap::new(),
    };

    let mut graph = Graph::new(relations.len());
    for &(relation, is_view_body, is_function, referenced) in &rows.rule_dependencies {
        let Some(&id) = id_of.get(&relation) else {
            continue;
        };
        let id = id as usize;
        match (is_view_body, is_function) {
            (true, false) => {
                if let Some(&base) = id_of.get(&referenced) {
                    graph.reads[id].push(base);
                    graph.readers[base as usize].push(id as u32);
                }
            }
            (true, true) => {
                // A view that calls a non-immutable user function may read any table
                // through it: its result may change on any write.
                if functions.get(&referenced).is_some_and(|f| {
                    !SYSTEM_SCHEMAS.contains(&f.schema.as_str())
                        && f.volatility != Volatility::Immutable
                }) {
                    graph.always_changed.push(id as u32);
                }
            }
            (false, false) => {
                // A rule's action may write any relation it references.
                if let Some(&target) = id_of.get(&referenced) {
                    graph.effects[id].writes.push(target);
                }
            }
            (false, true) => {
                let effects = effects_of.total(referenced);
                graph.effects[id].merge(&effects);
            }
        }
    }
    for &(child, parent) in &rows.inherits {
        if let (Some(&child), Some(&parent)) = (id_of.get(&child), id_of.get(&parent)) {
            graph.children[parent as usize].push(child);
            graph.parents[child as usize].push(parent);
        }
    }
    for &(referencing, referenced, acts) in &rows.foreign_keys {
        if let (Some(&from), Some(&to)) = (id_of.get(&referencing), id_of.get(&referenced)) {
            graph.referenced_by[to as usize].push(from);
            if acts {
                graph.cascades[to as usize].push(from);
            }
        }
    }
    let mut row_key_blocked: HashSet<u32> = rows
        .rule_relations
        .iter()
        .filter_map(|oid| id_of.get(oid).copied())
        .collect();
    for &(relation, function) in &rows.triggers {
        if let Some(&id) = id_of.get(&relation) {
            let effects = effects_of.total(function);
            graph.effects[id as usize].merge(&effects);
            let own = functions
                .get(&function)
                .is_some_and(|f| f.schema == watch::SCHEMA && f.name == watch::TRIGGER_FUNCTION);
            if !own {
                row_key_blocked.insert(id);
            }
        }
    }
    for lists in [
        &mut graph.readers,
        &mut graph.reads,
        &mut graph.parents,
        &mut graph.children,
        &mut graph.cascades,
        &mut graph.referenced_by,
    ] {
        for list in lists.iter_mut() {
            list.sort_unstable();
            list.dedup();
        }
    }
    for effects in &mut graph.effects {
        effects.normalize();
    }
    graph.always_changed.sort_unstable();
    graph.always_changed.dedup();
    let volatile_views = volatile_views::flag(
        &rows.view_nodes,
        &functions,
        &id_of,
        &relations,
        &graph.readers,
    );

    let unique_keys = unique_keys::build(&rows.unique_keys, &id_of);
    Built {
        unique_keys,
        row_key_blocked,
        relations: relations
            .into_iter()
            .map(|(_, name, kind)| (name, kind))
            .collect(),
        graph,
        schemas: rows.schemas.iter().map(|s| Arc::from(s.as_str())).collect(),
        current_user: Arc::from(rows.current_user.as_str()),
        volatility,
        volatile_views,
    }
}

/// Functions by oid, and the volatility map (`name` and `schema.name` → most volatile).
fn functions(rows: &[FunctionRow]) -> (HashMap<i64, Function>, HashMap<String, Volatility>) {
    let mut functions = HashMap::with_capacity(rows.len());
    let mut volatility: HashMap<String, Volatility> = HashMap::with_capacity(rows.len() * 2);
    let declared: HashMap<i64, Volatility> = rows
        .iter()
        .map(|row| (row.0, Volatility::from_provolatile(&row.3)))
        .collect();
    for (oid, schema, name, provolatile, language, source, search_path, aggregate) in rows {
        // `CREATE AGGREGATE` records every aggregate as IMMUTABLE ("not needed for
        // agg", AggregateCreate in pg_aggregate.c); its result varies as its support
        // functions do (a state function calling random(), say).
        let level = aggregate
            .iter()
            .filter_map(|support| declared.get(support))
            .fold(Volatility::from_provolatile(provolatile), |a, &b| a.max(b));
        for key in [name.clone(), format!("{schema}.{name}")] {
            let entry = volatility.entry(key).or_insert(level);
            *entry = (*entry).max(level);
        }
        let system = SYSTEM_SCHEMAS.contains(&schema.as_str());
        let direct = if system {
            Direct::Nothing
        } else if !aggregate.is_empty() {
            Direct::Calls(aggregate.iter().copied().filter(|&f| f != 0).collect())
        } else {
            match (language.as_str(), source.as_deref()) {
                ("plpgsql" | "sql", Some(source)) if !source.trim().is_empty() => Direct::Body {
                    effects: function_body::scan(source),
                    search_path: search_path
                        .as_deref()
                        .map(super::catalog::parse_search_path),
                },
                _ => Direct::Unknown,
            }
        };
        functions.insert(
            *oid,
            Function {
                schema: schema.clone(),
                name: name.clone(),
                volatility: level,
                direct,
            },
        );
    }
    (functions, volatility)
}

/// Resolves functions' effects to relation ids, following calls (memoized per oid).
struct FunctionEffects<'a> {
    functions: &'a HashMap<i64, Function>,
    /// User-defined (non-system) function name → `(schema, oid)` of each overload.
    user_functions: &'a HashMap<&'a str, Vec<(&'a str, i64)>>,
    /// Relation name → `(id, schema)` of each relation with that name.
    by_relname: &'a HashMap<&'a str, Vec<(u32, &'a str)>>,
    memo: HashMap<i64, Effects>,
}

impl FunctionEffects<'_> {
    /// The effects of calling `oid`, including everything it calls (transitively).
    fn total(&mut self, oid: i64) -> Effects {
        if let Some(effects) = self.memo.get(&oid) {
            return effects.clone();
        }
        let mut total = Effects::default();
        let mut seen = HashSet::from([oid]);
        let mut stack = vec![oid];
        while let Some(current) = stack.pop() {
            let (direct, calls) = self.direct(current);
            total.merge(&direct);
            for call in calls {
                if seen.insert(call) {
                    stack.push(call);
                }
            }
        }
        total.normalize();
        self.memo.insert(oid, total.clone());
        total
    }

    /// The function's own effects and the user functions it may call.
    fn direct(&self, oid: i64) -> (Effects, Vec<i64>) {
        let Some(function) = self.functions.get(&oid) else {
            // Not in pg_proc (dropped meanwhile): cannot know.
            return (unknown(), Vec::new());
        };
        match &function.direct {
            Direct::Nothing => (Effects::default(), Vec::new()),
            Direct::Unknown => (unknown(), Vec::new()),
            Direct::Calls(calls) => (Effects::default(), calls.clone()),
            Direct::Body {
                effects,
                search_path,
            } => {
                let mut resolved = Effects {
                    unknown: effects.unknown,
                    ..Effects::default()
                };
                for name in &effects.writes {
                    self.relations(name, search_path.as_deref(), &mut resolved, false);
                }
                for name in &effects.truncate_cascade {
                    self.relations(name, search_path.as_deref(), &mut resolved, true);
                }
                let calls = effects
                    .calls
                    .iter()
                    .flat_map(|call| self.user_functions(call))
                    .filter(|&callee| callee != oid)
                    .collect();
                (resolved, calls)
            }
        }
    }

    /// Adds the relations `name` may denote. Unqualified: through the function's own
    /// `search_path` if it sets one, else every schema's relation of that name (the
    /// caller's path is not known when the trigger fires). No match is unknown.
    fn relations(
        &self,
        name: &BodyName,
        search_path: Option<&[String]>,
        effects: &mut Effects,
        truncate_cascade: bool,
    ) {
        let candidates = self
            .by_relname
            .get(name.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        let matched: Vec<u32> = match (&name.schema, search_path) {
            (Some(schema), _) => candidates
                .iter()
                .filter(|(_, s)| s == schema)
                .map(|(id, _)| *id)
                .collect(),
            (None, Some(path)) => std::iter::once("pg_catalog")
                .chain(path.iter().map(String::as_str))
                .find_map(|schema| candidates.iter().find(|(_, s)| *s == schema))
                .map(|(id, _)| *id)
                .into_iter()
                .collect(),
            (None, None) => candidates.iter().map(|(id, _)| *id).collect(),
        };
        if matched.is_empty() {
            effects.unknown = true;
        }
        if truncate_cascade {
            effects.truncate_cascade.extend_from_slice(&matched);
        }
        effects.writes.extend(matched);
    }

    /// User-defined functions a call of `name` may reach (all overloads; any schema
    /// when unqualified). Builtins and keywords followed by `(` match nothing.
    fn user_functions<'n>(&'n self, name: &'n BodyName) -> impl Iterator<Item = i64> + 'n {
        self.user_functions
            .get(name.name.as_str())
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(move |(schema, _)| name.schema.as_deref().is_none_or(|s| s == *schema))
            .map(|&(_, oid)| oid)
    }
}

fn unknown() -> Effects {
    Effects {
        unknown: true,
        ..Effects::default()
    }
}
