//! Which functions and literals make a result non-reusable (research
//! `api-sqlx-sqlparser.md` §4, verified against `pg_proc.provolatile` on PostgreSQL 15).

use super::pg_functions::{IMMUTABLE, STABLE, VOLATILE};

/// How the normalizer treats a called function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FunctionClass {
    /// Volatile, or stable but time- or session-dependent: never cached.
    Volatile,
    /// A known builtin whose result depends only on its arguments (immutable), or on
    /// settings assumed equal on every pooled connection (stable, e.g. `to_char`,
    /// `date_trunc` on `timestamptz`).
    Builtin,
    /// Not a `pg_catalog` function: the cache checks its volatility in `pg_proc`.
    Unknown,
}

/// SQL-standard keyword functions that sqlparser parses as argument-less function
/// calls and that are not `pg_proc` names (verified: `CURRENT_TIMESTAMP` parses as
/// `Expr::Function`).
const KEYWORD_FUNCTIONS: &[&str] = &[
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "localtime",
    "localtimestamp",
    "session_user",
    "system_user",
    "user",
];

/// SQL constructs with function syntax that are not `pg_proc` functions (Postgres
/// parses them into their own expression nodes); all depend only on their arguments.
const CONSTRUCTS: &[&str] = &[
    "coalesce",
    "greatest",
    "grouping",
    "json_array",
    "json_arrayagg",
    "json_object",
    "json_objectagg",
    "least",
    "nullif",
    "row",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
];

/// Stable builtins that still depend on the clock, the session, the role or the
/// catalog rather than on their arguments (`pg_proc` marks them `s`).
const SESSION_STABLE: &[&str] = &[
    "age", // only the one-argument form; see `classify_function`
    "format_type",
    "get_current_ts_config",
    "getdatabaseencoding",
    "getpgusername",
    "mxid_age",
    "now",
    "row_security_active",
    "session_user",
    "statement_timestamp",
    "transaction_timestamp",
    "version",
];

/// Prefixes and suffixes of stable builtins that read the catalog, privileges or
/// server state: `pg_*` (sizes, visibility, definitions), `has_*_privilege`,
/// `to_reg*` (search_path), `current_*`, `inet_*`, `txid_*`, `*_description`,
/// `*_to_xml*` (whole tables and schemas).
fn session_stable_pattern(name: &str) -> bool {
    ["pg_", "has_", "to_reg", "current_", "inet_", "txid_"]
        .iter()
        .any(|p| name.starts_with(p))
        || name.ends_with("_description")
        || name.contains("_to_xml")
}

/// Classify a call of `name` (folded) with `args` arguments, qualified by `schema`.
pub(crate) fn classify_function(schema: Option<&str>, name: &str, args: usize) -> FunctionClass {
    if schema.is_some_and(|s| s != "pg_catalog") {
        return FunctionClass::Unknown;
    }
    let listed = |list: &[&str]| list.binary_search(&name).is_ok();
    if KEYWORD_FUNCTIONS.contains(&name) || listed(VOLATILE) {
        return FunctionClass::Volatile;
    }
    if listed(STABLE) {
        let session = if name == "age" {
            args == 1
        } else {
            SESSION_STABLE.contains(&name) || session_stable_pattern(name)
        };
        return if session {
            FunctionClass::Volatile
        } else {
            FunctionClass::Builtin
        };
    }
    if listed(IMMUTABLE) || CONSTRUCTS.contains(&name) {
        FunctionClass::Builtin
    } else {
        FunctionClass::Unknown
    }
}

/// Longest string Postgres' date/time input accepts is `MAXDATELEN` = 128 bytes; we
/// look a little further to stay conservative.
const TIME_LITERAL_MAX_LEN: usize = 256;

/// `true` when `value` (a string literal's content) can be read by Postgres as one of
/// the moving time values `now`, `today`, `tomorrow`, `yesterday`.
///
/// Postgres accepts them case-insensitively, padded, and combined with a time
/// (`'tomorrow 10:00'`, `'now()'`, `' Today'`; verified on PostgreSQL 15), and an
/// untyped literal compared with a timestamp column is read as one. So any such word
/// in a short string counts, whatever the surrounding cast: a false positive only
/// costs a cache bypass.
pub(crate) fn is_time_literal(value: &str) -> bool {
    value.len() <= TIME_LITERAL_MAX_LEN
        && value.split(|c: char| !c.is_ascii_alphabetic()).any(|word| {
            ["now", "today", "tomorrow", "yesterday"]
                .iter()
                .any(|t| word.eq_ignore_ascii_case(t))
        })
}

/// `true` for relations in the system catalogs: schema `pg_catalog`,
/// `information_schema` or `pg_toast*`, or an unqualified `pg_*` name.
pub(crate) fn is_system_relation(schema: Option<&str>, name: &str) -> bool {
    match schema {
        Some(s) => s == "pg_catalog" || s == "information_schema" || s.starts_with("pg_toast"),
        None => name.starts_with("pg_"),
    }
}

/// `true` for relations in a temporary schema (`pg_temp`, `pg_temp_N`).
pub(crate) fn is_temp_schema(schema: Option<&str>) -> bool {
    schema.is_some_and(|s| s == "pg_temp" || s.starts_with("pg_temp_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_classify_by_pg_proc_volatility_and_session_dependence() {
        use FunctionClass::*;
        for (schema, name, args, want) in [
            (None, "random", 0, Volatile),
            (None, "nextval", 1, Volatile),
            (None, "now", 0, Volatile),
            (None, "current_timestamp", 0, Volatile),
            (None, "current_setting", 1, Volatile),
            (None, "pg_table_size", 1, Volatile),
            (None, "has_table_privilege", 2, Volatile),
            (None, "age", 1, Volatile),
            (None, "age", 2, Builtin),
            (None, "lower", 1, Builtin),
            (None, "coalesce", 2, Builtin),
            (None, "count", 1, Builtin),
            (None, "to_char", 2, Builtin),
            (None, "date_trunc", 2, Builtin),
            (Some("pg_catalog"), "upper", 1, Builtin),
            (Some("public"), "upper", 1, Unknown),
            (None, "inventory_in_stock", 1, Unknown),
        ] {
            assert_eq!(classify_function(schema, name, args), want, "{name}/{args}");
        }
    }

    #[test]
    fn time_literals_are_words_in_short_strings() {
        for yes in [
            "now",
            " NOW ",
            "today",
            "tomorrow 10:00",
            "10:00 yesterday",
            "now()",
        ] {
            assert!(is_time_literal(yes), "{yes}");
        }
        for no in ["nowhere", "2020-01-01", "epoch", "knowledge", ""] {
            assert!(!is_time_literal(no), "{no}");
        }
        assert!(!is_time_literal(&format!("{} now", "x".repeat(300))));
    }
}
