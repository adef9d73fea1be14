//! Primary keys and unique indexes from `pg_index`: what decides whether the columns a
//! statement pins (`sql::KeyRead`, `sql::KeyWrite`) name at most one row.
//!
//! Only indexes that guarantee one row per key value are loaded: `indisunique`,
//! valid (`indisvalid`: a failed `CREATE UNIQUE INDEX CONCURRENTLY` leaves an invalid
//! one that guarantees nothing), not partial (`indpred IS NULL`: a partial index is
//! unique only among the rows its predicate selects) and over plain columns
//! (`indexprs IS NULL`). Only the key columns count (`indnkeyatts`; `INCLUDE` columns
//! are not part of the key). Each column carries its type (`format_type`) and
//! whether the index's collation for it is deterministic
//! (`pg_collation.collisdeterministic`, PostgreSQL 12+; non-collatable types are
//! deterministic): under a nondeterministic collation `'a' = 'A'` may hold, so two
//! spellings name one row and a key cannot be compared byte for byte.
//! Deferrable unique constraints (`indimmediate = false`) are unique in every
//! committed state, which is what the cache stores; they are flagged all the same.

use std::collections::HashMap;
use std::sync::Arc;

/// The `pg_index` query: one row per qualifying index.
pub(crate) const QUERY: &str = r"
SELECT i.indrelid::int8, i.indisprimary, i.indimmediate,
       array_agg(a.attname::text ORDER BY k.ord),
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
       array_agg(coalesce(c.collisdeterministic, true) ORDER BY k.ord)
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indcollation::oid[])
     WITH ORDINALITY AS k(attnum, coll, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
LEFT JOIN pg_collation c ON c.oid = k.coll
WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
  AND k.ord <= i.indnkeyatts
GROUP BY i.indexrelid, i.indrelid, i.indisprimary, i.indimmediate";

/// `(relation oid, primary, immediate, column names, column types, deterministic)`.
pub(crate) type UniqueKeyRow = (i64, bool, bool, Vec<String>, Vec<String>, Vec<bool>);

/// One column of a [`UniqueKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    /// The column name as stored (case preserved).
    pub name: Arc<str>,
    /// Its type as `format_type` prints it (`integer`, `character varying(45)`, …).
    pub type_name: Arc<str>,
    /// The index compares this column with a deterministic collation (or the type is
    /// not collatable): equal keys are equal bytes after the type's normalization.
    pub deterministic: bool,
}

/// A primary key or a non-partial unique index over plain columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// Key columns in index order.
    pub columns: Vec<KeyColumn>,
    /// The primary key.
    pub primary: bool,
    /// Checked at each statement (`false`: a deferrable constraint, checked at
    /// COMMIT).
    pub immediate: bool,
}

impl UniqueKey {
    /// `true` when every key column is among `pinned` and compares deterministically:
    /// pinning these columns to values names at most one row.
    pub fn covered_by(&self, pinned: &[&str]) -> bool {
        self.columns
            .iter()
            .all(|c| c.deterministic && pinned.contains(&&*c.name))
    }
}

/// The rows by relation id (`id_of` maps oids to ids); primary keys first, then by
/// fewer columns.
pub(crate) fn build(
    rows: &[UniqueKeyRow],
    id_of: &HashMap<i64, u32>,
) -> HashMap<u32, Vec<UniqueKey>> {
    let mut out: HashMap<u32, Vec<UniqueKey>> = HashMap::new();
    for (oid, primary, immediate, names, types, deterministic) in rows {
        let Some(&id) = id_of.get(oid) else {
            continue;
        };
        if names.len() != types.len() || names.len() != deterministic.len() || names.is_empty() {
            continue;
        }
        let columns = names
            .iter()
            .zip(types)
            .zip(deterministic)
            .map(|((name, type_name), &deterministic)| KeyColumn {
                name: Arc::from(name.as_str()),
                type_name: Arc::from(type_name.as_str()),
                deterministic,
            })
            .collect();
        out.entry(id).or_default().push(UniqueKey {
            columns,
            primary: *primary,
            immediate: *immediate,
        });
    }
    for keys in out.values_mut() {
        keys.sort_by_key(|k| (!k.primary, k.columns.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_covered_only_by_all_its_deterministic_columns() {
        let rows = vec![
            (
                10,
                false,
                true,
                vec!["email".into()],
                vec!["text".into()],
                vec![false],
            ),
            (
                10,
                true,
                true,
                vec!["a".into(), "b".into()],
                vec!["integer".into(), "text".into()],
                vec![true, true],
            ),
            (
                99,
                true,
                true,
                vec!["x".into()],
                vec!["integer".into()],
                vec![true],
            ),
        ];
        let keys = build(&rows, &HashMap::from([(10, 0)]));
        assert_eq!(keys.len(), 1, "relations not in the catalog are dropped");
        let keys = &keys[&0];
        assert!(keys[0].primary, "primary key first");
        assert!(keys[0].covered_by(&["b", "a", "c"]));
        assert!(!keys[0].covered_by(&["a"]), "composite: every column");
        assert!(
            !keys[1].covered_by(&["email"]),
            "a nondeterministic collation is never a key"
        );
    }
}
