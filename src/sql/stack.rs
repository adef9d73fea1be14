//! Dropping an AST without overflowing the stack.
//!
//! sqlparser parses a left-deep operator chain (`1+1+…`) with a loop, so the
//! recursion limit does not bound its depth, and the AST's `Drop` recurses once per
//! operator: 50 000 terms abort a 2 MiB-stack thread (research §3.7). Visiting is
//! protected by sqlparser's `recursive-protection` feature (it grows the stack with
//! `stacker`), so we take expressions apart in a post-order visit, each node after its
//! children, leaving nothing deep to drop.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Statement, Value, VisitMut, VisitorMut};

/// Texts shorter than this cannot nest deeply enough to matter (a chain needs at least
/// two bytes per level; 2 048 levels of `Drop` fit easily in a 2 MiB stack), so their
/// ASTs are dropped normally.
const DISMANTLE_FROM_LEN: usize = 4 * 1024;

struct Dismantle;

impl VisitorMut for Dismantle {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // The children were already replaced, so this drop is shallow.
        drop(std::mem::replace(expr, Expr::Value(Value::Null.into())));
        ControlFlow::Continue(())
    }
}

/// Drop `statements`, parsed from a text of `len` bytes, without deep recursion.
pub(crate) fn dismantle(mut statements: Vec<Statement>, len: usize) {
    if len >= DISMANTLE_FROM_LEN {
        for statement in &mut statements {
            let _ = statement.visit(&mut Dismantle);
        }
    }
    drop(statements);
}
