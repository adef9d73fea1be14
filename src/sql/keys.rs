//! Key-access forms: recognizes statements that may read or write rows by key
//! ([`KeyRead`], [`KeyWrite`]) and records the columns they pin.
//!
//! The normalizer has no catalog, so this only records the *form*: the one relation
//! and the `column = value` / `column IN (values…)` conjuncts of the top-level `AND`s
//! of the WHERE clause (values: plain literals, `-number`, binds `$n`, each with at
//! most one explicit cast), the assignments of an UPDATE, the column list and VALUES
//! rows of an INSERT and its ON CONFLICT clause. Whether the pinned columns cover a
//! primary key or a non-partial unique index with deterministic collation, and
//! whether the relation is a base table, is decided with the catalog
//! (`freshness::Catalog::unique_keys`).
//!
//! Soundness rules applied here:
//! - `NULL` never pins (`id = NULL` is never true, and NULL is not a key value);
//!   neither do `IS NULL`, `<>`, `NOT IN`, `OR`, or a column under a function or cast.
//! - A read qualifies only with no join, subquery (anywhere), CTE, set operation,
//!   GROUP BY / HAVING, window function or builtin aggregate, so its result is a
//!   function of the rows of the pinned key alone.
//! - `IN (…)` pins only when every element is a value; a read of several keys depends
//!   on each of them.
//! - A pinned column qualified by another name than the relation or its alias is not
//!   a pin.
//!
//! Literals are recorded by their parser span while the AST is intact and mapped to
//! their index in `Analysis::literals` once the canonical text is cut
//! ([`Recognized::resolve`]); the statement memo's templates keep those indices, so a
//! new literal variant of a known shape pins its own values.

use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, ConflictTarget, Expr, FromTable, FunctionArguments,
    GroupByExpr, Ident, ObjectName, OnConflictAction, OnInsert, Query, SetExpr, Statement,
    TableFactor, TableObject, TableWithJoins, UnaryOperator, Value, Visit, Visitor,
};
use sqlparser::tokenizer::Span;

use super::analysis::{
    KeyRead, KeyWrite, KeyWriteKind, OnConflict, Pin, PinnedValue, RelationName,
};
use super::analyze::{ident, relation_name};
use super::canonical::Cut;

/// Most values one `IN (…)` list may pin; a longer list is a table-level read.
pub(crate) const MAX_IN_VALUES: usize = 64;

/// Builtin aggregates (PostgreSQL docs, "Aggregate Functions"): a read calling one is
/// not a key read. (An aggregate over a key read's rows would still be a function of
/// those rows alone, so a user aggregate missing from this list is not unsound.)
const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "json_agg",
    "json_agg_strict",
    "json_arrayagg",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "json_objectagg",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "max",
    "min",
    "range_agg",
    "range_intersect_agg",
    "string_agg",
    "sum",
    "xmlagg",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "grouping",
];

/// Key-access forms of one statement, with literals still named by span.
#[derive(Debug, Default)]
pub(crate) struct Recognized {
    key_read: Option<KeyRead>,
    key_write: Option<KeyWrite>,
    /// `PinnedValue::Literal::index` indexes this list until [`resolve`](Self::resolve).
    spans: Vec<Span>,
}

impl Recognized {
    /// Map each literal's span to its index among the canonical text's literals
    /// (`cut.slots` order). A literal that is not found drops the form (never a wrong
    /// value): the statement is table-level.
    pub(crate) fn resolve(self, cut: Option<&Cut>) -> (Option<KeyRead>, Option<KeyWrite>) {
        let index_of = |i: usize| -> Option<usize> {
            let span = *self.spans.get(i)?;
            let cut = cut?;
            cut.slots
                .iter()
                .position(|&slot| cut.literals.get(slot).is_some_and(|l| l.span == span))
        };
        let remap = |value: &mut PinnedValue| -> Option<()> {
            if let PinnedValue::Literal { index, .. } = value {
                *index = index_of(*index)?;
            }
            Some(())
        };
        let remap_pins = |pins: &mut [Pin]| -> Option<()> {
            pins.iter_mut()
                .try_for_each(|p| p.values.iter_mut().try_for_each(remap))
        };
        let key_read = self.key_read.clone().and_then(|mut read| {
            remap_pins(&mut read.pins)?;
            Some(read)
        });
        let key_write = self.key_write.clone().and_then(|mut write| {
            remap_pins(&mut write.pins)?;
            if let KeyWriteKind::Insert { rows, .. } = &mut write.kind {
                rows.iter_mut().flatten().flatten().try_for_each(remap)?;
            }
            Some(write)
        });
        (key_read, key_write)
    }
}

/// The key-access form of `statements` (only a text of one statement has one).
pub(crate) fn recognize(statements: &[Statement]) -> Recognized {
    let mut out = Recognized::default();
    let [statement] = statements else {
        return out;
    };
    match statement {
        Statement::Query(query) => out.key_read = key_read(query, &mut out.spans),
        Statement::Update(update) => {
            if update.from.is_some() || !update.table.joins.is_empty() {
                return out;
            }
            let Some((relation, alias)) = base_relation(&update.table.relation) else {
                return out;
            };
            let mut assigned = Vec::new();
            for assignment in &update.assignments {
                match &assignment.target {
                    AssignmentTarget::ColumnName(name) => assigned.push(last_part(name)),
                    AssignmentTarget::Tuple(names) => assigned.extend(names.iter().map(last_part)),
                }
            }
            assigned.sort();
            assigned.dedup();
            let pins = where_pins(update.selection.as_ref(), &relation, alias, &mut out.spans);
            out.key_write = Some(KeyWrite {
                relation,
                pins,
                kind: KeyWriteKind::Update { assigned },
            });
        }
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            if !delete.tables.is_empty() || delete.using.is_some() {
                return out;
            }
            let [TableWithJoins { relation, joins }] = from.as_slice() else {
                return out;
            };
            if !joins.is_empty() {
                return out;
            }
            let Some((relation, alias)) = base_relation(relation) else {
                return out;
            };
            let pins = where_pins(delete.selection.as_ref(), &relation, alias, &mut out.spans);
            out.key_write = Some(KeyWrite {
                relation,
                pins,
                kind: KeyWriteKind::Delete,
            });
        }
        Statement::Insert(insert) => out.key_write = key_insert(insert, &mut out.spans),
        _ => {}
    }
    out
}

fn last_part(name: &ObjectName) -> Arc<str> {
    Arc::from(&*relation_name(name).name)
}

/// A plain named relation (no table function, sample, `ONLY` misread) and its alias.
fn base_relation(factor: &TableFactor) -> Option<(RelationName, Option<&Ident>)> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            sample: None,
            ..
        } => {
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                return None;
            }
            let relation = relation_name(name);
            if &*relation.name == "only" && relation.schema.is_none() {
                return None;
            }
            Some((relation, alias.as_ref().map(|a| &a.name)))
        }
        _ => None,
    }
}

fn key_read(query: &Query, spans: &mut Vec<Span>) -> Option<KeyRead> {
    if query.with.is_some() || !query.locks.is_empty() || !query.pipe_operators.is_empty() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [TableWithJoins { relation, joins }] = select.from.as_slice() else {
        return None;
    };
    let no_grouping = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => exprs.is_empty() && modifiers.is_empty(),
        GroupByExpr::All(_) => false,
    };
    if !joins.is_empty()
        || !no_grouping
        || select.having.is_some()
        || select.into.is_some()
        || select.qualify.is_some()
        || !select.named_window.is_empty()
        || !select.lateral_views.is_empty()
        || select.prewhere.is_some()
        || !select.connect_by.is_empty()
    {
        return None;
    }
    let (relation, alias) = base_relation(relation)?;
    if has_nested_query_or_aggregate(query) {
        return None;
    }
    let pins = where_pins(select.selection.as_ref(), &relation, alias, spans);
    Some(KeyRead { relation, pins })
}

/// `true` when `query` holds another query (a subquery anywhere), a window function
/// or a builtin aggregate.
fn has_nested_query_or_aggregate(query: &Query) -> bool {
    struct Find {
        queries: usize,
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.queries += 1;
            if self.queries > 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                Expr::Function(f) => {
                    let name = relation_name(&f.name);
                    let aggregate = f.over.is_some()
                        || f.filter.is_some()
                        || !f.within_group.is_empty()
                        || matches!(f.args, FunctionArguments::Subquery(_))
                        || (name.schema.as_deref().is_none_or(|s| s == "pg_catalog")
                            && AGGREGATES.contains(&&*name.name));
                    if aggregate {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    query.visit(&mut Find { queries: 0 }).is_break()
}

/// The pins of a WHERE clause over `relation` (aliased `alias`).
fn where_pins(
    selection: Option<&Expr>,
    relation: &RelationName,
    alias: Option<&Ident>,
    spans: &mut Vec<Span>,
) -> Vec<Pin> {
    let mut conjuncts = Vec::new();
    if let Some(selection) = selection {
        flatten_and(selection, &mut conjuncts);
    }
    let mut pins: Vec<Pin> = Vec::new();
    for conjunct in conjuncts {
        let Some(pin) = pin(conjunct, relation, alias, spans) else {
            continue;
        };
        // `a = 1 AND a = 2` matches no row: either pin alone is sound; keep the first.
        if !pins.iter().any(|p| p.column == pin.column) {
            pins.push(pin);
        }
    }
    pins.sort_by(|a, b| a.column.cmp(&b.column));
    pins
}

fn flatten_and<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        Expr::Nested(inner) => flatten_and(inner, out),
        other => out.push(other),
    }
}

fn pin(
    conjunct: &Expr,
    relation: &RelationName,
    alias: Option<&Ident>,
    spans: &mut Vec<Span>,
) -> Option<Pin> {
    match conjunct {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (column, value) = match column_of(left, relation, alias) {
                Some(column) => (column, right),
                None => (column_of(right, relation, alias)?, left),
            };
            let value = pinned_value(value, spans)?;
            Some(Pin {
                column,
                values: vec![value],
            })
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } if !list.is_empty() && list.len() <= MAX_IN_VALUES => {
            let column = column_of(expr, relation, alias)?;
            let mut values = Vec::with_capacity(list.len());
            for item in list {
                values.push(pinned_value(item, spans)?);
            }
            values.dedup();
            Some(Pin { column, values })
        }
        Expr::Nested(inner) => pin(inner, relation, alias, spans),
        _ => None,
    }
}

/// The column `expr` names, if it is a bare column of `relation` (`c`, `alias.c`,
/// `t.c`, `schema.t.c`).
fn column_of(expr: &Expr, relation: &RelationName, alias: Option<&Ident>) -> Option<Arc<str>> {
    match expr {
        Expr::Identifier(column) => Some(Arc::from(&*ident(column))),
        Expr::CompoundIdentifier(parts) => {
            let (column, qualifier) = parts.split_last()?;
            let qualifier: Vec<_> = qualifier.iter().map(ident).collect();
            let matches = match (qualifier.as_slice(), alias) {
                ([name], Some(alias)) => *name == ident(alias),
                ([name], None) => **name == *relation.name,
                ([schema, name], None) => {
                    **name == *relation.name && relation.schema.as_deref() == Some(&**schema)
                }
                _ => false,
            };
            matches.then(|| Arc::from(&*ident(column)))
        }
        Expr::Nested(inner) => column_of(inner, relation, alias),
        _ => None,
    }
}

/// A literal, `-number` or bind, under at most one explicit cast.
fn pinned_value(expr: &Expr, spans: &mut Vec<Span>) -> Option<PinnedValue> {
    let (inner, cast) = match expr {
        Expr::Cast {
            expr,
            data_type,
            format: None,
            ..
        } => (
            expr.as_ref(),
            Some(Arc::from(data_type.to_string().to_lowercase())),
        ),
        other => (other, None),
    };
    let (inner, negated) = match inner {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (expr.as_ref(), true),
        Expr::Nested(nested) if cast.is_none() => return pinned_value(nested, spans),
        other => (other, false),
    };
    let Expr::Value(value) = inner else {
        return None;
    };
    match &value.value {
        Value::Number(..) => {}
        Value::SingleQuotedString(_) if !negated => {}
        Value::Placeholder(p) if !negated => {
            let number = p.strip_prefix('$')?.parse::<usize>().ok()?;
            return (number >= 1).then_some(PinnedValue::Bind { number, cast });
        }
        _ => return None,
    }
    spans.push(value.span);
    Some(PinnedValue::Literal {
        index: spans.len() - 1,
        negated,
        cast,
    })
}

fn key_insert(insert: &sqlparser::ast::Insert, spans: &mut Vec<Span>) -> Option<KeyWrite> {
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    if insert.columns.is_empty() || !insert.assignments.is_empty() {
        return None;
    }
    let relation = relation_name(name);
    let columns: Vec<Arc<str>> = insert.columns.iter().map(last_part).collect();
    let source = insert.source.as_ref()?;
    if source.with.is_some() {
        return None;
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.content.len() != columns.len() {
            return None;
        }
        rows.push(
            row.content
                .iter()
                .map(|expr| pinned_value(expr, spans))
                .collect(),
        );
    }
    let on_conflict = match &insert.on {
        None => None,
        Some(OnInsert::OnConflict(conflict)) => {
            let (target, constraint) = match &conflict.conflict_target {
                None => (Vec::new(), None),
                Some(ConflictTarget::Columns(columns)) => (
                    columns.iter().map(|c| Arc::from(&*ident(c))).collect(),
                    None,
                ),
                Some(ConflictTarget::OnConstraint(name)) => (Vec::new(), Some(last_part(name))),
            };
            let updates = match &conflict.action {
                OnConflictAction::DoNothing => None,
                OnConflictAction::DoUpdate(update) => {
                    let mut updates = Vec::new();
                    for assignment in &update.assignments {
                        match &assignment.target {
                            AssignmentTarget::ColumnName(name) => updates.push(last_part(name)),
                            AssignmentTarget::Tuple(names) => {
                                updates.extend(names.iter().map(last_part))
                            }
                        }
                    }
                    updates.sort();
                    updates.dedup();
                    Some(updates)
                }
            };
            Some(OnConflict {
                target,
                constraint,
                updates,
            })
        }
        Some(_) => return None,
    };
    Some(KeyWrite {
        relation,
        pins: Vec::new(),
        kind: KeyWriteKind::Insert {
            columns,
            rows,
            on_conflict,
        },
    })
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
