//! The catalog dependency closure: which relations' cached results a write can change.
//!
//! [`Catalog::load`] reads Postgres's catalogs once (when the cache is built, and again
//! after DDL through the cache) and precomputes, for every relation, the closure of a
//! write to it ([`Catalog::write_closure`]); name resolution through `search_path`
//! ([`Catalog::resolve`]) and function volatility ([`Catalog::function_volatility`])
//! come from the same snapshot, and so do the views whose results change without a
//! write ([`Catalog::reads_volatile`]). How the closure spreads is described in
//! `closure.rs`; how trigger function bodies are read, in `function_body.rs`; how
//! volatile views are found, in `volatile_views.rs`; which indexes are keys
//! ([`Catalog::unique_keys`]), in `unique_keys.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::postgres::PgPool;

use super::closure::{Graph, IdClosure, Scratch};
use super::load::{self, CatalogRows};
use super::unique_keys::UniqueKey;
use super::volatile_views::VolatileSource;
use crate::Result;
use crate::sql::RelationName;

/// How a function's result may vary, from `pg_proc.provolatile` (PostgreSQL docs,
/// "Function Volatility Categories"). Ordered from least to most volatile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Volatility {
    /// `i`: same arguments, same result, forever.
    Immutable,
    /// `s`: same result within one statement (may depend on settings such as
    /// `TimeZone`, or read tables).
    Stable,
    /// `v`: may change at any call, or have side effects.
    Volatile,
}

impl Volatility {
    /// From `pg_proc.provolatile`; anything unexpected is [`Volatility::Volatile`].
    pub(crate) fn from_provolatile(code: &str) -> Self {
        match code {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            _ => Volatility::Volatile,
        }
    }
}

/// What kind of relation a catalog entry is (`pg_class.relkind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RelationKind {
    /// `r`: an ordinary table (including a partition or an inheritance child).
    Table,
    /// `p`: a partitioned table (its rows live in its partitions).
    PartitionedTable,
    /// `v`: a view.
    View,
    /// `m`: a materialized view.
    MaterializedView,
    /// `f`: a foreign table.
    ForeignTable,
}

impl RelationKind {
    /// From `pg_class.relkind`; `None` for kinds that hold no rows we cache (indexes,
    /// sequences, composite types, TOAST tables).
    pub(crate) fn from_relkind(code: &str) -> Option<Self> {
        Some(match code {
            "r" => RelationKind::Table,
            "p" => RelationKind::PartitionedTable,
            "v" => RelationKind::View,
            "m" => RelationKind::MaterializedView,
            "f" => RelationKind::ForeignTable,
            _ => return None,
        })
    }
}

/// The relations whose cached results a write can change.
///
/// `relations` holds the written relations and everything their write reaches:
/// views and materialized views that read them (through views of views), partitions
/// and parents in both directions (a write to a partition changes the parent's
/// result; a write through the parent may reach any partition; likewise inheritance),
/// tables reached through `ON DELETE` / `ON UPDATE` `CASCADE`, `SET NULL` and
/// `SET DEFAULT` foreign keys, and the tables that triggers and rules on any written
/// relation write (transitively). Materialized views are included although their rows
/// change only at `REFRESH`: conservative, and it keeps a closure independent of
/// refresh timing.
///
/// # The `unknown` rule
///
/// `unknown = true` means the write may change relations we cannot name, and **the
/// cache must invalidate everything** (bump every generation, or a global one). It is
/// set when a trigger or rule on a written relation calls a function whose effects we
/// cannot read: a PL/pgSQL or SQL body using `EXECUTE` (dynamic SQL) or DDL, a body
/// writing a relation not in the catalog, a C or `internal` function outside
/// `pg_catalog`, or a function in any other language (PL/Python, PL/Perl, …).
/// Builtin functions in `pg_catalog` (`tsvector_update_trigger`, the foreign-key
/// triggers) write no other relation. A trigger function that only assigns to
/// `NEW`/`OLD` (Pagila's `last_updated()`) writes nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteClosure {
    /// Schema-qualified relations, sorted and deduplicated.
    pub relations: Vec<RelationName>,
    /// The write may change relations not listed: invalidate everything.
    pub unknown: bool,
}

#[derive(Debug, Clone)]
struct Relation {
    name: RelationName,
    kind: RelationKind,
}

/// A snapshot of the catalog facts freshness needs: relation names and kinds, the
/// precomputed write closure of every relation, schemas, function volatility, and the
/// views whose results change without a write.
///
/// Immutable once loaded; the cache shares it in an `Arc` and swaps in a new one from
/// [`Catalog::load`] after DDL. Relation identity is the schema-qualified,
/// case-preserving `RelationName` as stored in `pg_class` (which is how the
/// normalizer folds names: unquoted → lower case, quoted → as written).
///
/// Temporary schemas (`pg_temp_N`) and TOAST schemas are not loaded: they belong to
/// one session.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Sorted by name; a relation's id is its index.
    relations: Vec<Relation>,
    ids: HashMap<RelationName, u32>,
    /// Relation name → ids of the relations with that name, in any schema.
    by_relname: HashMap<Arc<str>, Vec<u32>>,
    schemas: HashSet<Arc<str>>,
    current_user: Arc<str>,
    /// Write closure of each relation, by id.
    closures: Vec<IdClosure>,
    graph: Graph,
    /// `name` and `schema.name` → most volatile overload.
    volatility: HashMap<String, Volatility>,
    /// Views whose results change without a write, by id.
    volatile_views: HashMap<u32, VolatileSource>,
    /// Primary keys and unique indexes, by id (`unique_keys.rs`).
    unique_keys: HashMap<u32, Vec<UniqueKey>>,
    /// Relations with a trigger (other than the cache's version trigger) or a rule.
    row_key_blocked: HashSet<u32>,
}

impl Catalog {
    /// Loads the catalog of the pool's database: a few queries (`pg_class`/
    /// `pg_namespace`, `pg_rewrite` + `pg_depend` for views and rules, `pg_inherits`,
    /// `pg_constraint`, `pg_trigger`, `pg_proc` + `pg_language` + `pg_aggregate`, and
    /// the query trees of user views, `pg_rewrite.ev_action`) in one
    /// `REPEATABLE READ` read-only transaction, so they see one snapshot. Then it
    /// precomputes every relation's write closure, so [`write_closure`](Self::write_closure)
    /// only merges precomputed sets, and the views whose results change without a write
    /// ([`reads_volatile`](Self::reads_volatile)).
    ///
    /// Cost: the queries plus O(Σ closure sizes) to precompute; on Pagila (242
    /// relations with the system catalogs, all of `pg_proc`) 9–16 ms, measured in a
    /// release build on a shared, loaded 2-core machine (provisional), before the view
    /// trees were read; those add a few ms (see `volatile_views.rs`).
    ///
    /// # Errors
    /// [`crate::Error::Database`] when a query fails.
    pub async fn load(pool: &PgPool) -> Result<Catalog> {
        let rows = load::query(pool).await?;
        Ok(Catalog::build(rows))
    }

    fn build(rows: CatalogRows) -> Catalog {
        let built = load::build(rows);
        let n = built.relations.len();
        let relations: Vec<Relation> = built
            .relations
            .into_iter()
            .map(|(name, kind)| Relation { name, kind })
            .collect();
        let mut ids = HashMap::with_capacity(n);
        let mut by_relname: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (id, relation) in relations.iter().enumerate() {
            let id = u32::try_from(id).expect("fewer than 2^32 relations");
            ids.insert(relation.name.clone(), id);
            by_relname
                .entry(relation.name.name.clone())
                .or_default()
                .push(id);
        }
        let mut scratch = Scratch::new(n);
        let closures = (0..n)
            .map(|id| {
                let id = u32::try_from(id).expect("fewer than 2^32 relations");
                built.graph.closure(&[id], false, &mut scratch)
            })
            .collect();
        Catalog {
            relations,
            ids,
            by_relname,
            schemas: built.schemas,
            current_user: built.current_user,
            closures,
            graph: built.graph,
            volatility: built.volatility,
            volatile_views: built.volatile_views,
            unique_keys: built.unique_keys,
            row_key_blocked: built.row_key_blocked,
        }
    }

    /// Number of relations loaded (tables, partitions, views, materialized views,
    /// foreign tables; system catalogs included).
    pub fn relation_count(&self) -> usize {
        self.relations.len()
    }

    /// `true` when `name` (schema-qualified) is a relation of this snapshot. A write to
    /// a name that is not may mean the catalog is stale (DDL made elsewhere): see
    /// [`resolve`](Self::resolve).
    pub fn contains(&self, name: &RelationName) -> bool {
        self.ids.contains_key(name)
    }

    /// The kind of relation `name` (schema-qualified) is, if it is in the catalog.
    pub fn kind(&self, name: &RelationName) -> Option<RelationKind> {
        self.ids
            .get(name)
            .map(|&id| self.relations[id as usize].kind)
    }

    /// The schema-qualified identity of `name` as Postgres would resolve it with
    /// `search_path`.
    ///
    /// - A qualified name is returned unchanged.
    /// - An unqualified name resolves to the first schema of the path that holds a
    ///   relation of that name. As in Postgres, `pg_catalog` is searched first unless the
    ///   path lists it elsewhere. `$user` stands for the role that loaded the catalog
    ///   (`current_user`; the pool's connections are assumed to share it). `pg_temp`
    ///   (and `pg_temp_N`) entries are skipped: temporary tables belong to one session
    ///   and are not in the catalog, so a temporary table that shadows a permanent one
    ///   resolves to the permanent one. Reads of temporary tables must not be cached.
    /// - A name found in no schema of the path (a relation created after the catalog
    ///   was loaded, or a typo that will fail) resolves to the first schema of the path
    ///   that exists, which is where `CREATE TABLE name` would put it; if none exists,
    ///   to the first entry, or `public` for an empty path.
    ///
    /// `search_path` holds schema names already folded (see [`parse_search_path`]).
    ///
    /// Recommendation for the cache: generations are keyed by the resolved name only;
    /// reads and writes resolve through the same catalog and path, so they agree.
    /// When a write's resolved name is not [`contains`](Self::contains)ed, the catalog
    /// may be stale: reload it (the name may now resolve elsewhere), and until the
    /// reload returns also bump the unqualified spelling's candidates, i.e. that name in
    /// every schema of the path.
    pub fn resolve(&self, name: &RelationName, search_path: &[String]) -> RelationName {
        if name.schema.is_some() {
            return name.clone();
        }
        if let Some(candidates) = self.by_relname.get(&name.name) {
            for schema in self.searched_schemas(search_path) {
                let found = candidates.iter().find(|&&id| {
                    self.relations[id as usize].name.schema.as_deref() == Some(schema)
                });
                if let Some(&id) = found {
                    return self.relations[id as usize].name.clone();
                }
            }
        }
        let explicit: Vec<&str> = self.explicit_schemas(search_path).collect();
        let schema = explicit
            .iter()
            .find(|schema| self.schemas.contains(**schema))
            .or(explicit.first())
            .copied()
            .unwrap_or("public");
        RelationName {
            schema: Some(Arc::from(schema)),
            name: name.name.clone(),
        }
    }

    /// The path's schemas in search order: `pg_catalog` first unless listed.
    fn searched_schemas<'a>(&'a self, search_path: &'a [String]) -> impl Iterator<Item = &'a str> {
        let implicit_catalog = !search_path.iter().any(|s| s == "pg_catalog");
        implicit_catalog
            .then_some("pg_catalog")
            .into_iter()
            .chain(self.explicit_schemas(search_path))
    }

    /// The path's entries with `$user` expanded and `pg_temp` entries dropped.
    fn explicit_schemas<'a>(&'a self, search_path: &'a [String]) -> impl Iterator<Item = &'a str> {
        search_path
            .iter()
            .map(|schema| match schema.as_str() {
                "$user" => &*self.current_user,
                other => other,
            })
            .filter(|schema| *schema != "pg_temp" && !schema.starts_with("pg_temp_"))
    }

    /// The relations whose cached results a write to `written` can change, and whether
    /// the write's effects are unknown (see [`WriteClosure`] for the rule).
    ///
    /// `written` must already be resolved ([`resolve`](Self::resolve)). A name not in
    /// the catalog closes over itself only (the catalog cannot know its dependents; see
    /// `resolve` for what the cache should do).
    ///
    /// Cost: merges precomputed closures: O(closure size) clones of `Arc`s, plus a sort
    /// when `written` has several relations. No database access. Measured on Pagila:
    /// ≈ 190 ns for `public.rental` (6 relations), ≈ 470 ns for `rental` + `film`
    /// (14 relations), release build on a loaded machine (provisional).
    pub fn write_closure(&self, written: &[RelationName]) -> WriteClosure {
        let mut unknown = false;
        let mut ids: Vec<u32> = Vec::new();
        let mut missing = Vec::new();
        for name in written {
            match self.ids.get(name) {
                Some(&id) => {
                    let closure = &self.closures[id as usize];
                    unknown |= closure.unknown;
                    ids.extend_from_slice(&closure.ids);
                }
                None => missing.push(name.clone()),
            }
        }
        self.closure_names(ids, missing, unknown, written.len() > 1)
    }

    /// Like [`write_closure`](Self::write_closure) for `TRUNCATE … CASCADE`, which also
    /// truncates every table with a foreign key to a truncated table, whatever its
    /// `ON DELETE` action (recursively, with their partitions).
    ///
    /// Cost: a graph walk over the closure (not precomputed; `TRUNCATE` is rare) and
    /// one allocation of 12 bytes per catalog relation.
    pub fn write_closure_truncate_cascade(&self, truncated: &[RelationName]) -> WriteClosure {
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for name in truncated {
            match self.ids.get(name) {
                Some(&id) => ids.push(id),
                None => missing.push(name.clone()),
            }
        }
        let mut scratch = Scratch::new(self.relations.len());
        let closure = self.graph.closure(&ids, true, &mut scratch);
        self.closure_names(closure.ids, missing, closure.unknown, false)
    }

    fn closure_names(
        &self,
        mut ids: Vec<u32>,
        missing: Vec<RelationName>,
        unknown: bool,
        merge: bool,
    ) -> WriteClosure {
        if merge {
            ids.sort_unstable();
            ids.dedup();
        }
        let mut relations: Vec<RelationName> = ids
            .iter()
            .map(|&id| self.relations[id as usize].name.clone())
            .collect();
        if !missing.is_empty() {
            relations.extend(missing);
            relations.sort();
            relations.dedup();
        }
        WriteClosure { relations, unknown }
    }

    /// The volatility of the function `name` (folded): `schema.name` matches that
    /// schema's function only, a bare `name` matches the function in every schema.
    /// With several overloads (or schemas), the most volatile is reported, so a name
    /// counts as immutable only when every function it may denote is (research
    /// api-sqlx-sqlparser.md §4). `None` when no function has that name (it may be a
    /// keyword-like SQL construct, or created after the load).
    pub fn function_volatility(&self, name: &str) -> Option<Volatility> {
        self.volatility.get(name).copied()
    }

    /// The primary key and non-partial unique indexes over plain columns of `name`
    /// (schema-qualified), primary key first (see `unique_keys.rs` for which indexes
    /// qualify). Empty for relations without one, views and unknown names.
    pub fn unique_keys(&self, name: &RelationName) -> &[UniqueKey] {
        self.ids
            .get(name)
            .and_then(|id| self.unique_keys.get(id))
            .map_or(&[], Vec::as_slice)
    }

    /// The key that `pinned` columns cover on `name` (schema-qualified), if `name` is
    /// an ordinary table (not a view, partitioned parent or foreign table) and some
    /// unique key's columns are all pinned with deterministic collation: then a
    /// statement pinning them reads or writes at most one row per pinned value. The
    /// primary key is preferred. `pinned` are column names as stored.
    pub fn key_covered_by(&self, name: &RelationName, pinned: &[&str]) -> Option<&UniqueKey> {
        if self.kind(name) != Some(RelationKind::Table) {
            return None;
        }
        self.unique_keys(name)
            .iter()
            .find(|key| key.covered_by(pinned))
    }

    /// The key by which `name` (schema-qualified) is invalidated row by row
    /// (`row_keys.rs`), if it has one: `name` is an ordinary table; no trigger (but the
    /// cache's own version trigger) and no rule is on it; no foreign-key cascade,
    /// trigger or rule reached from a write to it writes it again (so a statement
    /// changes only the rows it names); and its primary key — else its first unique
    /// key — has only columns whose equality `row_keys::KeyType` models, under a
    /// deterministic collation. One key per table, so that every key read and key
    /// write of the table counts in the same key space.
    pub fn row_key(&self, name: &RelationName) -> Option<&UniqueKey> {
        let &id = self.ids.get(name)?;
        if self.kind(name) != Some(RelationKind::Table)
            || self.row_key_blocked.contains(&id)
            || self.writes_itself(id)
        {
            return None;
        }
        let key = self.unique_keys.get(&id)?.first()?;
        key.columns
            .iter()
            .all(|c| c.deterministic && super::row_keys::KeyType::of(&c.type_name).is_some())
            .then_some(key)
    }

    /// Whether a write to `start` can write `start` again, or has unknown effects: a
    /// walk over what writing a relation writes (its inheritance children, the tables
    /// its cascades reach, what its triggers and rules write).
    fn writes_itself(&self, start: u32) -> bool {
        let graph = &self.graph;
        let mut seen = HashSet::new();
        let mut queue = vec![start];
        while let Some(id) = queue.pop() {
            let i = id as usize;
            if graph.effects[i].unknown {
                return true;
            }
            let next = graph.children[i]
                .iter()
                .chain(&graph.cascades[i])
                .chain(&graph.effects[i].writes);
            for &n in next {
                if n == start {
                    return true;
                }
                if seen.insert(n) {
                    queue.push(n);
                }
            }
        }
        false
    }

    /// Why reading `name` (schema-qualified) can return a different result without any
    /// write: `Some` for a view whose definition calls a function that is not IMMUTABLE
    /// (`now()`, `current_user`, `random()`, a STABLE user function, an aggregate whose
    /// support functions are not immutable) or reads a system catalog, and for every
    /// view that reads such a view; the cache must not serve such a read from memory.
    /// `None` for tables, materialized views (their rows change only at `REFRESH`, a
    /// write), other views, and names not in the catalog.
    ///
    /// Found at load from each view's stored query tree (`pg_rewrite.ev_action`), since
    /// `pg_depend` does not record builtins: see `volatile_views.rs` for the fields
    /// read and the evidence. Cost: one hash lookup.
    pub fn reads_volatile(&self, name: &RelationName) -> Option<&VolatileSource> {
        self.ids
            .get(name)
            .and_then(|id| self.volatile_views.get(id))
    }
}

/// Splits a `search_path` setting as `SHOW search_path` prints it (`"$user", public`)
/// into schema names folded like identifiers: quoted entries keep their case (with
/// `""` unescaped), unquoted ones are lower-cased; `$user` stays `$user`.
pub fn parse_search_path(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => entries.push(std::mem::take(&mut current)),
            c if quoted => current.push(c),
            c if c.is_whitespace() => {}
            c => current.extend(c.to_lowercase()),
        }
    }
    entries.push(current);
    entries.retain(|entry| !entry.is_empty());
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_search_path_like_show_prints_it() {
        assert_eq!(
            parse_search_path(r#""$user", public"#),
            vec!["$user", "public"]
        );
        assert_eq!(
            parse_search_path(r#"App, "Mixed""Case", pg_temp"#),
            vec!["app", "Mixed\"Case", "pg_temp"]
        );
        assert_eq!(parse_search_path(""), Vec::<String>::new());
    }

    #[test]
    fn volatility_orders_from_immutable_to_volatile() {
        assert!(Volatility::Immutable < Volatility::Stable);
        assert!(Volatility::Stable < Volatility::Volatile);
        assert_eq!(Volatility::from_provolatile("s"), Volatility::Stable);
    }
}
