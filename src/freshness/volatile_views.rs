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
//! the function's `pg_proc` oid. One regular expression, run by the server over the
//! `_RETURN` rules of views outside the system schemas ([`QUERY`]), extracts:
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
//! System views are not scanned: their trees hold ~3 MB on PG 15, which costs the
//! server ≈ 60 ms per catalog load, and reads of them bypass anyway; a user view over
//! one is flagged through `:relid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::catalog::{RelationKind, Volatility};
use super::load::{Function, SYSTEM_SCHEMAS};
use crate::sql::RelationName;

/// The query tree fields of each user view's `_RETURN` rule, as
/// `(view oid, field, number)` rows: `field` is `funcid`, `aggfnoid`, `winfnoid`,
/// `tsmhandler`, `opfuncid`, `relid` or `SQLVALUEFUNCTION` (whose number is its `op`).
pub(crate) const QUERY: &str = r"
    SELECT DISTINCT r.ev_class::int8, coalesce(m[1], m[3]), coalesce(m[2], m[4])::int8
    FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL regexp_matches(r.ev_action::text,
        ':(funcid|aggfnoid|winfnoid|tsmhandler|opfuncid|relid) (\d+)|\{(SQLVALUEFUNCTION) :op (\d+)',
        'g') m
    WHERE c.relkind = 'v' AND r.rulename = '_RETURN'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
    ORDER BY 1, 2, 3";

/// A row of [`QUERY`].
pub(crate) type NodeRow = (i64, String, i64);

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
    for (view, field, number) in rows {
        let Some(&id) = id_of.get(view) else {
            continue;
        };
        if flagged.contains_key(&id) {
            continue;
        }
        let source = match field.as_str() {
            "SQLVALUEFUNCTION" => {
                let name = usize::try_from(*number)
                    .ok()
                    .and_then(|op| SQL_VALUE_FUNCTIONS.get(op))
                    .unwrap_or(&"sql_value_function");
                Some(VolatileSource::Function(Arc::from(*name)))
            }
            "relid" => id_of
                .get(number)
                .map(|&read| &relations[read as usize].1)
                .filter(|name| {
                    name.schema
                        .as_deref()
                        .is_some_and(|schema| SYSTEM_SCHEMAS.contains(&schema))
                })
                .map(|name| VolatileSource::SystemRelation(name.clone())),
            "opfuncid" => judge(functions, *number, true),
            _ => judge(functions, *number, false),
        };
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
    /// 7 pg_catalog.pg_class.
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
        ];
        let mut relations: Vec<(i64, RelationName, RelationKind)> = kinds
            .iter()
            .enumerate()
            .map(|(id, (name, kind))| (100 + id as i64, RelationName::new(Some("public"), name), *kind))
            .collect();
        relations.push((1259, RelationName::new(Some("pg_catalog"), "pg_class"), RelationKind::Table));
        let id_of = relations
            .iter()
            .enumerate()
            .map(|(id, (oid, ..))| (*oid, id as u32))
            .collect();
        let mut readers = vec![Vec::new(); relations.len()];
        readers[1] = vec![2, 3];
        readers[3] = vec![4];
        let rows: Vec<NodeRow> = vec![
            (101, "funcid".into(), 10),
            (101, "opfuncid".into(), 12),
            (105, "opfuncid".into(), 11),
            (105, "funcid".into(), 12),
            (106, "relid".into(), 1259),
            (106, "relid".into(), 100),
        ];
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
        assert_eq!(flagged.len(), 3);
    }

    #[test]
    fn sql_value_functions_are_always_flagged() {
        let relations = vec![(100, RelationName::new(Some("public"), "v"), RelationKind::View)];
        let id_of = HashMap::from([(100, 0)]);
        let rows: Vec<NodeRow> = vec![(100, "SQLVALUEFUNCTION".into(), 10)];
        let flagged = flag(&rows, &HashMap::new(), &id_of, &relations, &[Vec::new()]);
        assert_eq!(
            flagged.get(&0),
            Some(&VolatileSource::Function(Arc::from("current_user")))
        );
    }
}
