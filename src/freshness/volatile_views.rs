//! Views whose results change without a write: a view whose definition calls a
//! function that is not IMMUTABLE (`now()`, `current_user`, `random()`, a STABLE user
//! function, …) or reads a system catalog, and every view that reads such a view.
//! The normalizer only sees the functions a query's text names, so without this a read
//! of such a view would be cached and served stale.
//!
//! # How the calls are found (verified on PostgreSQL 15.20)
//!
//! `pg_depend` is not enough: dependencies on *pinned* objects (oids below
//! `FirstUnpinnedObjectId`, i.e. the builtins) are never recorded. For
//! `CREATE VIEW v AS SELECT random() AS r`, the view's `_RETURN` rule has only its two
//! dependencies on `v` itself; `now()` in a `WHERE` clause and `current_user` leave no
//! trace either. A user function (`stab()`) is recorded.
//!
//! So the rule itself is read: `pg_rewrite.ev_action` is the stored query tree, as
//! `nodeToString` prints it, and every way a query calls a function is a field holding
//! the function's `pg_proc` oid. [`QUERY`] fetches the tree of every view outside the
//! system schemas as text, and [`nodes`] picks out the fields:
//!
//! - `:funcid N` (a `FuncExpr`: a call, a cast through a function, a set-returning
//!   function in `FROM`), `:aggfnoid N` (`Aggref`), `:winfnoid N` (`WindowFunc`),
//!   `:tsmhandler N` (a `TABLESAMPLE` method: `bernoulli` and `system` are VOLATILE);
//! - `:opfuncid N` (`OpExpr`, `DistinctExpr`, `NullIfExpr`, `ScalarArrayOpExpr`);
//! - `{SQLVALUEFUNCTION :op N`: `CURRENT_DATE`, `CURRENT_TIMESTAMP`, `CURRENT_USER`, …
//!   which PostgreSQL 15 evaluates without a `pg_proc` entry (16 turned them into
//!   `FuncExpr`s of new `pg_proc` functions, which `:funcid` then covers);
//! - `:relid N` (a `RangeTblEntry`): the relations read, to find system catalogs.
//!
//! Names cannot forge a field: strings in the tree (aliases, column names) are printed
//! with spaces escaped (`outToken`), and constants are printed as bytes.
//!
//! A view is flagged when it has
//!
//! - a call of a function that is not IMMUTABLE in `pg_proc`. An aggregate counts with
//!   its support functions: `CREATE AGGREGATE` always records IMMUTABLE, whatever its
//!   state transition function does;
//! - an operator whose function is VOLATILE, or a user function that is not IMMUTABLE.
//!   The builtin STABLE operators (31 on PG 15: `timestamptz` against `date` or
//!   `timestamp`, `timestamptz ± interval`, `text || anynonarray`, `@@` on text) depend
//!   only on session settings (`TimeZone`, `DateStyle`, `default_text_search_config`),
//!   never on time or on tables, and the normalizer does not judge operators in a
//!   query's text either;
//! - any SQL value function: all are STABLE, reading the clock or the session's role;
//! - a read of a relation in `pg_catalog` or `information_schema`: it changes with DDL,
//!   statistics and sessions, without a write through the cache (the normalizer
//!   bypasses such reads when a query names them).
//!
//! `'now'::timestamptz` in a view is *not* volatile: the constant is evaluated once at
//! `CREATE VIEW` (`pg_get_viewdef` prints the timestamp of creation).
//!
//! Then the set is closed over views of views (through the `pg_depend` edges the
//! catalog already loads): a view that reads a flagged view is flagged. Materialized
//! views are never flagged, nor is a view that reads one: their rows change only at
//! `REFRESH`, which is a write.
//!
//! Cost on Pagila (10 views, 208 KB of trees), medians of 30 loads in a debug build on
//! the shared 2-core machine at load average ≈ 6 (provisional): fetching the trees
//! 3.7–7.5 ms, scanning them ≈ 1.3–1.8 ms (unoptimized; one linear pass). The same
//! extraction with `regexp_matches` on the server took 16.5 ms in the same run, so the
//! scan is done here. System views are not read: their trees hold ~3 MB on PG 15, and
//! reads of them bypass anyway; a user view over one is flagged through `:relid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::catalog::{RelationKind, Volatility};
use super::load::{Function, SYSTEM_SCHEMAS};
use crate::sql::RelationName;

/// The query tree of each user view's `_RETURN` rule, as `(view oid, tree)` rows.
pub(crate) const QUERY: &str = r"
    SELECT r.ev_class::int8, r.ev_action::text
    FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'v' AND r.rulename = '_RETURN'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'";

/// A row of [`QUERY`]: the view's oid and its query tree as text.
pub(crate) type NodeRow = (i64, String);

/// A field of a query tree that may make a view volatile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// `:funcid`, `:aggfnoid`, `:winfnoid` or `:tsmhandler`: a `pg_proc` oid called.
    Call(i64),
    /// `:opfuncid`: the `pg_proc` oid of an operator's function.
    Operator(i64),
    /// `:relid`: a `pg_class` oid read.
    Relation(i64),
    /// `{SQLVALUEFUNCTION :op N`: the op number.
    SqlValueFunction(i64),
}

/// The fields of `tree` (`nodeToString` text) that [`flag`] judges, in order.
///
/// Fields are `:name value` pairs; splitting at `:` gives `name value …` segments. A
/// `:` inside a name is harmless, because the space after it is printed escaped
/// (`\ `), so the segment's name does not match.
pub(crate) fn nodes(tree: &str) -> impl Iterator<Item = Node> + '_ {
    let mut previous = "";
    tree.split(':').filter_map(move |segment| {
        let sql_value_function = previous.ends_with("{SQLVALUEFUNCTION ");
        previous = segment;
        let (field, rest) = segment.split_once(' ')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest, |end| &rest[..end]);
        let number: i64 = digits.parse().ok()?;
        Some(match field {
            "funcid" | "aggfnoid" | "winfnoid" | "tsmhandler" => Node::Call(number),
            "opfuncid" => Node::Operator(number),
            "relid" => Node::Relation(number),
            "op" if sql_value_function => Node::SqlValueFunction(number),
            _ => return None,
        })
    })
}

/// Why a view's result can change without a write to any relation it reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VolatileSource {
    /// The view (or a view it reads) calls this function, which is not IMMUTABLE: the
    /// function's name as in `pg_proc` (`now`, `random`, `stab`), or a SQL value
    /// function's lower-cased keyword (`current_user`, `current_date`).
    Function(Arc<str>),
    /// The view (or a view it reads) reads this system catalog or system view.
    SystemRelation(RelationName),
}

impl fmt::Display for VolatileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolatileSource::Function(name) => write!(f, "calls {name}()"),
            VolatileSource::SystemRelation(name) => write!(f, "reads {name}"),
        }
    }
}

/// `SQLValueFunctionOp` in PostgreSQL 15's `primnodes.h`, in order (checked on 15.20 by
/// a view selecting all fifteen); only a label, every op is flagged.
const SQL_VALUE_FUNCTIONS: [&str; 15] = [
    "current_date",
    "current_time",
    "current_time",
    "current_timestamp",
    "current_timestamp",
    "localtime",
    "localtime",
    "localtimestamp",
    "localtimestamp",
    "current_role",
    "current_user",
    "user",
    "session_user",
    "current_catalog",
    "current_schema",
];

/// The views whose results change without a write, by relation id, each with one
/// reason. `relations` and `readers` are indexed by relation id (`readers` from the
/// catalog graph); `functions` holds every `pg_proc` row with its effective volatility.
pub(crate) fn flag(
    rows: &[NodeRow],
    functions: &HashMap<i64, Function>,
    id_of: &HashMap<i64, u32>,
    relations: &[(i64, RelationName, RelationKind)],
    readers: &[Vec<u32>],
) -> HashMap<u32, VolatileSource> {
    let mut flagged: HashMap<u32, VolatileSource> = HashMap::new();
    for (view, tree) in rows {
        let Some(&id) = id_of.get(view) else {
            continue;
        };
        let source = nodes(tree).find_map(|node| match node {
            Node::Call(oid) => judge(functions, oid, false),
            Node::Operator(oid) => judge(functions, oid, true),
            Node::Relation(oid) => id_of
                .get(&oid)
                .map(|&read| &relations[read as usize].1)
                .filter(|name| {
                    name.schema
                        .as_deref()
                        .is_some_and(|schema| SYSTEM_SCHEMAS.contains(&schema))
                })
                .map(|name| VolatileSource::SystemRelation(name.clone())),
            Node::SqlValueFunction(op) => {
                let name = usize::try_from(op)
                    .ok()
                    .and_then(|op| SQL_VALUE_FUNCTIONS.get(op))
                    .unwrap_or(&"sql_value_function");
                Some(VolatileSource::Function(Arc::from(*name)))
            }
        });
        if let Some(source) = source {
            flagged.insert(id, source);
        }
    }
    // Views of views, upward through the readers edges; materialized views stop it.
    let mut stack: Vec<u32> = flagged.keys().copied().collect();
    stack.sort_unstable();
    while let Some(id) = stack.pop() {
        let source = flagged[&id].clone();
        for &reader in &readers[id as usize] {
            if relations[reader as usize].2 == RelationKind::View && !flagged.contains_key(&reader)
            {
                flagged.insert(reader, source.clone());
                stack.push(reader);
            }
        }
    }
    flagged
}

/// Whether calling `oid` (as an operator's function when `operator`) flags a view.
fn judge(functions: &HashMap<i64, Function>, oid: i64, operator: bool) -> Option<VolatileSource> {
    if oid == 0 {
        return None; // InvalidOid: no function (an unset field).
    }
    let Some(function) = functions.get(&oid) else {
        // Not in pg_proc in the same snapshot: cannot be judged, so assume the worst.
        return Some(VolatileSource::Function(Arc::from(format!("oid {oid}"))));
    };
    let counts = match function.volatility {
        Volatility::Immutable => false,
        Volatility::Volatile => true,
        Volatility::Stable => !operator || !SYSTEM_SCHEMAS.contains(&function.schema.as_str()),
    };
    counts.then(|| VolatileSource::Function(Arc::from(function.name.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::load::Direct;

    /// Excerpts of `ev_action` printed by PostgreSQL 15.20 for
    /// `WHERE ts > now() - interval '1 day'`, `SELECT current_date`, and two column
    /// aliases spelled like fields (`"a:funcid 1299"`, `"b:relid 1259"`).
    const WHERE_NOW: &str = "{RANGETBLENTRY :alias <> :eref {ALIAS :aliasname t :colnames (\"id\" \"ts\")} :rtekind 0 :relid 33767 :relkind r} :quals {OPEXPR :opno 1324 :opfuncid 1157 :opresulttype 16 :args ({VAR :varno 3} {OPEXPR :opno 1329 :opfuncid 1190 :opresulttype 1184 :args ({FUNCEXPR :funcid 1299 :funcresulttype 1184 :funcretset false :args <> :location 48} {CONST :consttype 1186 :constvalue 16 [ 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 ]}) :location 54}) :location 46}}";
    const CURRENT_DATE: &str = ":targetList ({TARGETENTRY :expr {SQLVALUEFUNCTION :op 0 :type 1082 :typmod -1 :location 27} :resno 1 :resname d :ressortgroupref 0}) :override 0 :op 3";
    const ALIASES: &str = ":resno 1 :resname a:funcid\\ 1299 :ressortgroupref 0 :resno 2 :resname b:relid\\ 1259 :ressortgroupref 0";

    #[test]
    fn nodes_reads_calls_operators_relations_and_sql_value_functions() {
        assert_eq!(
            nodes(WHERE_NOW).collect::<Vec<_>>(),
            [
                Node::Relation(33767),
                Node::Operator(1157),
                Node::Operator(1190),
                Node::Call(1299)
            ]
        );
        assert_eq!(
            nodes(CURRENT_DATE).collect::<Vec<_>>(),
            [Node::SqlValueFunction(0)],
            "a plain :op field is not a SQL value function"
        );
        assert_eq!(nodes(ALIASES).count(), 0, "names cannot forge a field");
    }

    fn function(schema: &str, name: &str, volatility: Volatility) -> Function {
        Function {
            schema: schema.into(),
            name: name.into(),
            volatility,
            direct: Direct::Nothing,
        }
    }

    /// Relations: 0 table, 1 view calling f, 2 view over 1, 3 matview over 1,
    /// 4 view over 3, 5 view with a stable builtin operator, 6 view over pg_class,
    /// 7 view reading current_user, 8 pg_catalog.pg_class.
    #[test]
    fn flags_calls_operators_and_system_reads_then_closes_over_views() {
        let functions = HashMap::from([
            (10, function("public", "f", Volatility::Stable)),
            (11, function("pg_catalog", "textanycat", Volatility::Stable)),
            (12, function("pg_catalog", "int4eq", Volatility::Immutable)),
        ]);
        let kinds = [
            ("t", RelationKind::Table),
            ("v1", RelationKind::View),
            ("v2", RelationKind::View),
            ("m3", RelationKind::MaterializedView),
            ("v4", RelationKind::View),
            ("v5", RelationKind::View),
            ("v6", RelationKind::View),
            ("v7", RelationKind::View),
        ];
        let mut relations: Vec<(i64, RelationName, RelationKind)> = kinds
            .iter()
            .zip(100..)
            .map(|((name, kind), oid)| (oid, RelationName::new(Some("public"), name), *kind))
            .collect();
        relations.push((
            1259,
            RelationName::new(Some("pg_catalog"), "pg_class"),
            RelationKind::Table,
        ));
        let id_of = relations
            .iter()
            .zip(0..)
            .map(|((oid, ..), id)| (*oid, id))
            .collect();
        let mut readers = vec![Vec::new(); relations.len()];
        readers[1] = vec![2, 3];
        readers[3] = vec![4];
        let rows: Vec<NodeRow> = [
            (101, "{OPEXPR :opfuncid 12} {FUNCEXPR :funcid 10}"),
            (102, ":relid 101"),
            (103, ":relid 101"),
            (104, ":relid 103"),
            (105, "{OPEXPR :opfuncid 11} {FUNCEXPR :funcid 12}"),
            (106, ":relid 100 :relid 1259"),
            (107, "{SQLVALUEFUNCTION :op 10 :type 19}"),
        ]
        .into_iter()
        .map(|(oid, tree)| (oid, tree.to_owned()))
        .collect();
        let flagged = flag(&rows, &functions, &id_of, &relations, &readers);
        let f = VolatileSource::Function(Arc::from("f"));
        assert_eq!(flagged.get(&1), Some(&f));
        assert_eq!(flagged.get(&2), Some(&f), "a view over a flagged view");
        assert_eq!(flagged.get(&3), None, "a materialized view");
        assert_eq!(flagged.get(&4), None, "a view over a materialized view");
        assert_eq!(flagged.get(&5), None, "a builtin stable operator");
        assert_eq!(
            flagged.get(&6),
            Some(&VolatileSource::SystemRelation(RelationName::new(
                Some("pg_catalog"),
                "pg_class"
            )))
        );
        assert_eq!(
            flagged.get(&7),
            Some(&VolatileSource::Function(Arc::from("current_user")))
        );
        assert_eq!(flagged.len(), 4);
    }
}
