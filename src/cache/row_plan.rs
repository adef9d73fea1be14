//! The row-level part of a statement plan: which key rows a key read or key write
//! names, where each key value comes from, and the plan each key bucket runs under
//! (the counters are explained in `freshness::row_keys`).
//!
//! A statement is row-keyed only when every rule below holds; otherwise it stays a
//! table-level read or write:
//! - its one relation has a row key ([`Catalog::row_key`](crate::freshness::Catalog::row_key));
//! - a read pins every key column to exactly one value (`IN` lists are table level);
//! - an UPDATE or DELETE pins every key column (a single-column key may be pinned by
//!   an `IN` list: each value is a key row), and an UPDATE assigns no key column;
//! - an INSERT gives every key column a literal or bind in every VALUES row, and its
//!   `ON CONFLICT` is `DO NOTHING` (any target: a conflicting row is left alone) or
//!   `(key columns) DO UPDATE` assigning no key column (the updated row is the one
//!   with the inserted key);
//! - every literal key value normalizes (`row_keys::literal_value`); bind values are
//!   normalized per execution, and one that does not normalize makes that execution
//!   table level.

use super::plan::{Plan, Resolver};
use crate::freshness::generations::{Generations, RelationSet};
use crate::freshness::row_keys::{self, BindValue, KeyType, KeyValue};
use crate::sql::{Analysis, KeyWriteKind, Pin, PinnedValue};
use std::sync::{Arc, OnceLock};

/// Bucket plans of bind-keyed statements by (statement text hash, planner version,
/// bucket), shared by a planner's plans and bounded: an evicted bucket plan is rebuilt
/// on its next use over the same named counters, so entries filled under it stay
/// valid.
pub(crate) type BucketPlans = quick_cache::sync::Cache<(u128, u64, u32), Arc<Plan>>;

/// Bucket plans a planner keeps: each is ~300 B with its sets, so ≈ 5 MiB.
pub(crate) const BUCKET_PLANS: usize = 16_384;

/// Where one key column's value comes from.
#[derive(Debug)]
enum KeySource {
    /// A literal, normalized when the plan was built.
    Value(KeyValue),
    /// The bind `$number` (1-based), normalized per execution.
    Bind {
        number: usize,
        cast: Option<Arc<str>>,
    },
}

/// A row-keyed statement's key rows and per-bucket plans.
#[derive(Debug)]
pub(crate) struct RowKeyed {
    /// The key columns' types, in key order.
    types: Vec<KeyType>,
    /// The key rows the statement names: per row, one source per key column.
    rows: Vec<Vec<KeySource>>,
    /// The bucket of a statement whose keys are literals in one bucket, and its plan,
    /// built on first use. Other statements find their bucket plans in the planner's
    /// [`BucketPlans`].
    fixed: Option<(usize, OnceLock<Arc<Plan>>)>,
    /// The statement text's hash (the plan memo's key), naming this plan in
    /// [`BucketPlans`].
    text_hash: u128,
    /// A key read (else a key write).
    is_read: bool,
    /// A write's set without buckets (its closure minus the table, plus the table's
    /// key-writes counter), for writes whose rows fall in several buckets.
    write_rest: Vec<Arc<str>>,
    /// The schema-qualified table.
    table: Arc<str>,
    /// Key writes bump no bucket (tests only).
    skip_key_bumps: bool,
}

impl RowKeyed {
    /// The row-level part of `base` (built from `analysis`; `closure` its write
    /// closure), or `None` when the statement stays table level.
    pub fn build(
        analysis: &Analysis,
        resolver: &Resolver,
        base: &Plan,
        closure: &[Arc<str>],
        skip_key_bumps: bool,
        text_hash: u128,
    ) -> Option<RowKeyed> {
        if base.writes_unknown || base.ddl || base.catalog_stale {
            return None;
        }
        let (relation, pins_rows, is_read) = if let Some(read) = &analysis.key_read {
            if base.bypass.is_some() || analysis.reads.len() != 1 || !analysis.writes.is_empty() {
                return None;
            }
            (&read.relation, KeyRows::Pins(&read.pins), true)
        } else if let Some(write) = &analysis.key_write {
            if analysis.writes.len() != 1 {
                return None;
            }
            let rows = match &write.kind {
                KeyWriteKind::Update { .. } | KeyWriteKind::Delete => KeyRows::Pins(&write.pins),
                KeyWriteKind::Insert { columns, rows, .. } => KeyRows::Insert { columns, rows },
            };
            (&write.relation, rows, false)
        } else {
            return None;
        };
        let (catalog, name) = resolver.catalog_name(relation)?;
        let key = catalog.row_key(&name)?;
        let key_columns: Vec<&str> = key.columns.iter().map(|c| &*c.name).collect();
        if let Some(write) = &analysis.key_write
            && !is_read
        {
            if write.assigns_any(&key_columns) {
                return None;
            }
            if let KeyWriteKind::Insert {
                on_conflict: Some(conflict),
                ..
            } = &write.kind
                && conflict.updates.is_some()
            {
                let mut target: Vec<&str> = conflict.target.iter().map(|c| &**c).collect();
                let mut wanted = key_columns.clone();
                target.sort_unstable();
                wanted.sort_unstable();
                if conflict.constraint.is_some() || target != wanted {
                    return None;
                }
            }
        }
        let types: Vec<KeyType> = key
            .columns
            .iter()
            .map(|c| KeyType::of(&c.type_name))
            .collect::<Option<_>>()?;
        let rows = pins_rows.sources(&key_columns, &types, &analysis.literals, is_read)?;

        let literal_buckets: Option<Vec<usize>> = rows
            .iter()
            .map(|row| {
                let values: Option<Vec<KeyValue>> = row
                    .iter()
                    .map(|s| match s {
                        KeySource::Value(v) => Some(v.clone()),
                        KeySource::Bind { .. } => None,
                    })
                    .collect();
                values.map(|v| row_keys::bucket(&v))
            })
            .collect();
        let fixed = match literal_buckets.as_deref() {
            Some([first, rest @ ..]) if rest.iter().all(|b| b == first) => Some(*first),
            _ => None,
        };
        let table: Arc<str> = Arc::from(name.to_string());
        let key_writes = row_keys::key_writes_name(&table);
        let write_rest: Vec<Arc<str>> = closure
            .iter()
            .filter(|n| **n != table)
            .cloned()
            .chain([Arc::from(key_writes)])
            .collect();
        Some(RowKeyed {
            types,
            rows,
            fixed: fixed.map(|bucket| (bucket, OnceLock::new())),
            text_hash,
            is_read,
            write_rest,
            table,
            skip_key_bumps,
        })
    }

    /// The plan of `base` for key rows all in `bucket`: a read checks the table and
    /// the bucket; a write bumps the bucket and the rest of its closure.
    fn bucket_plan(&self, base: &Plan, bucket: usize, generations: &Generations) -> Plan {
        let bucket_index = bucket as u32;
        let bucket = row_keys::bucket_name(&self.table, bucket);
        if self.is_read {
            let reads = generations.relation_set([&*self.table, bucket.as_str()]);
            base.with_sets(reads, base.writes.clone(), Some(bucket_index))
        } else {
            let bump = (!self.skip_key_bumps).then_some(bucket.as_str());
            let names = self.write_rest.iter().map(|n| &**n).chain(bump);
            base.with_sets(
                base.reads.clone(),
                generations.relation_set(names),
                Some(bucket_index),
            )
        }
    }

    /// The plan of `base` for key rows all in `bucket` (from an entry filled under
    /// it, or computed from an execution's key values).
    pub fn plan_of_bucket(
        &self,
        base: &Plan,
        bucket: usize,
        generations: &Generations,
        bucket_plans: &BucketPlans,
    ) -> Arc<Plan> {
        if let Some((fixed, plan)) = &self.fixed
            && *fixed == bucket
        {
            return Arc::clone(
                plan.get_or_init(|| Arc::new(self.bucket_plan(base, bucket, generations))),
            );
        }
        bucket_plans
            .get_or_insert_with(&(self.text_hash, base.version, bucket as u32), || {
                Ok::<_, std::convert::Infallible>(Arc::new(self.bucket_plan(
                    base,
                    bucket,
                    generations,
                )))
            })
            .unwrap_or_else(|never| match never {})
    }

    /// The plan of one execution of `base` (see [`Plan::for_arguments`]).
    pub fn plan(
        &self,
        base: &Arc<Plan>,
        binds: impl FnOnce() -> Option<Vec<BindValue>>,
        generations: &Generations,
        bucket_plans: &BucketPlans,
    ) -> Arc<Plan> {
        if let Some((bucket, _)) = &self.fixed {
            return self.plan_of_bucket(base, *bucket, generations, bucket_plans);
        }
        let needs_binds = self
            .rows
            .iter()
            .flatten()
            .any(|s| matches!(s, KeySource::Bind { .. }));
        let binds = if needs_binds {
            binds()
        } else {
            Some(Vec::new())
        };
        let Some(binds) = binds else {
            return Arc::clone(base);
        };
        let mut buckets = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let mut values = Vec::with_capacity(row.len());
            for (source, &ty) in row.iter().zip(&self.types) {
                let value = match source {
                    KeySource::Value(v) => Some(v.clone()),
                    KeySource::Bind { number, cast } => binds
                        .get(number.wrapping_sub(1))
                        .and_then(|b| row_keys::bind_value(ty, b, cast.as_deref())),
                };
                match value {
                    Some(v) => values.push(v),
                    None => return Arc::clone(base),
                }
            }
            buckets.push(row_keys::bucket(&values));
        }
        buckets.sort_unstable();
        buckets.dedup();
        match buckets.as_slice() {
            [] => Arc::clone(base),
            [one] => self.plan_of_bucket(base, *one, generations, bucket_plans),
            several => {
                let bucket_names: Vec<String> = several
                    .iter()
                    .filter(|_| !self.skip_key_bumps)
                    .map(|&i| row_keys::bucket_name(&self.table, i))
                    .collect();
                let names = self
                    .write_rest
                    .iter()
                    .map(|n| &**n)
                    .chain(bucket_names.iter().map(String::as_str));
                let writes: RelationSet = generations.relation_set(names);
                Arc::new(base.with_sets(base.reads.clone(), writes, None))
            }
        }
    }
}

/// How a statement names its key rows.
enum KeyRows<'a> {
    /// WHERE pins (reads, UPDATE, DELETE).
    Pins(&'a [Pin]),
    /// An INSERT's column list and VALUES rows.
    Insert {
        columns: &'a [Arc<str>],
        rows: &'a [Vec<Option<PinnedValue>>],
    },
}

impl KeyRows<'_> {
    /// One source per key column per key row; `None` when a key column is not given
    /// in every row, a literal does not normalize, or a read pins several values.
    fn sources(
        &self,
        key: &[&str],
        types: &[KeyType],
        literals: &[String],
        is_read: bool,
    ) -> Option<Vec<Vec<KeySource>>> {
        let source = |value: &PinnedValue, ty: KeyType| -> Option<KeySource> {
            match value {
                PinnedValue::Literal {
                    index,
                    negated,
                    cast,
                } => row_keys::literal_value(ty, literals.get(*index)?, *negated, cast.as_deref())
                    .map(KeySource::Value),
                PinnedValue::Bind { number, cast } => Some(KeySource::Bind {
                    number: *number,
                    cast: cast.clone(),
                }),
            }
        };
        match self {
            KeyRows::Pins(pins) => {
                let pinned: Vec<&Pin> = key
                    .iter()
                    .map(|column| pins.iter().find(|p| &*p.column == *column))
                    .collect::<Option<_>>()?;
                match pinned.as_slice() {
                    // One key column pinned by `IN (…)` in a write: one key row each.
                    [pin] if !is_read && !pin.values.is_empty() => pin
                        .values
                        .iter()
                        .map(|v| Some(vec![source(v, types[0])?]))
                        .collect(),
                    _ => {
                        let row = pinned
                            .iter()
                            .zip(types)
                            .map(|(pin, &ty)| match pin.values.as_slice() {
                                [value] => source(value, ty),
                                _ => None,
                            })
                            .collect::<Option<_>>()?;
                        Some(vec![row])
                    }
                }
            }
            KeyRows::Insert { columns, rows } => {
                let positions: Vec<usize> = key
                    .iter()
                    .map(|k| columns.iter().position(|c| &**c == *k))
                    .collect::<Option<_>>()?;
                rows.iter()
                    .map(|row| {
                        positions
                            .iter()
                            .zip(types)
                            .map(|(&i, &ty)| source(row.get(i)?.as_ref()?, ty))
                            .collect()
                    })
                    .collect()
            }
        }
    }
}
