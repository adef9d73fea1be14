//! TEMPORARY stand-in for `sql::StatementMemo` until the normalizer branch lands on
//! main; deleted then. Deliberately crude and conservative: every relation a statement
//! names is both read and written, any function call bypasses, anything that is not a
//! plain query or DML is an unknown write (bumps the global epoch).

use crate::sql::{Analysis, Reason, RelationName, StatementKind, Verdict};
use parking_lot::Mutex;
use sqlparser::ast::{Expr, ObjectNamePart, Statement, visit_expressions, visit_relations};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Memoizes [`analyze`] by raw text.
#[derive(Debug, Default)]
pub(crate) struct StatementMemo(Mutex<HashMap<String, Arc<Analysis>>>);

impl StatementMemo {
    pub(crate) fn analyze(&self, sql: &str) -> Arc<Analysis> {
        if let Some(a) = self.0.lock().get(sql) {
            return Arc::clone(a);
        }
        let a = Arc::new(analyze(sql));
        self.0.lock().insert(sql.to_owned(), Arc::clone(&a));
        a
    }
}

fn analyze(sql: &str) -> Analysis {
    let unknown = |kind, reason| Analysis {
        kind,
        reads: vec![],
        writes: vec![],
        writes_unknown: true,
        functions: vec![],
        canonical: String::new(),
        fingerprint: xxhash_rust::xxh3::xxh3_128(sql.as_bytes()),
        shape: 0,
        literals: vec![],
        verdict: Verdict::Uncacheable(reason),
    };
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) => return unknown(StatementKind::Other, Reason::ParseError(e.to_string())),
    };
    let [statement] = &statements[..] else {
        return unknown(StatementKind::Other, Reason::MultipleStatements);
    };
    let mut relations = Vec::new();
    let _ = visit_relations(statement, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) if i.quote_style.is_some() => Some(i.value.clone()),
                ObjectNamePart::Identifier(i) => Some(i.value.to_lowercase()),
                _ => None,
            })
            .collect();
        match &parts[..] {
            [name] => relations.push(RelationName::new(None, name)),
            [schema, name] => relations.push(RelationName::new(Some(schema), name)),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    relations.sort();
    relations.dedup();
    let mut function = None;
    let _ = visit_expressions(statement, |e| {
        if let Expr::Function(f) = e {
            function = Some(f.name.to_string().to_lowercase());
        }
        ControlFlow::<()>::Continue(())
    });
    let canonical = statement.to_string();
    let (kind, verdict, writes_unknown) = match statement {
        Statement::Query(q) if !q.locks.is_empty() => (
            StatementKind::Read,
            Verdict::Uncacheable(Reason::RowLock),
            false,
        ),
        Statement::Query(_) => match function {
            Some(f) => (
                StatementKind::Read,
                Verdict::Uncacheable(Reason::VolatileFunction(f)),
                false,
            ),
            None => (StatementKind::Read, Verdict::Cacheable, false),
        },
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Truncate(_)
        | Statement::Merge(_) => (
            StatementKind::Write,
            Verdict::Uncacheable(Reason::NotARead(StatementKind::Write)),
            false,
        ),
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::Drop { .. }
        | Statement::CreateView(_)
        | Statement::CreateIndex(_) => (
            StatementKind::Ddl,
            Verdict::Uncacheable(Reason::NotARead(StatementKind::Ddl)),
            true,
        ),
        _ => {
            let mut a = unknown(StatementKind::Other, Reason::UnknownWrite(canonical));
            a.writes = relations;
            return a;
        }
    };
    let writes = if kind == StatementKind::Read {
        vec![]
    } else {
        relations.clone()
    };
    Analysis {
        kind,
        reads: relations,
        writes,
        writes_unknown,
        functions: vec![],
        fingerprint: xxhash_rust::xxh3::xxh3_128(canonical.as_bytes()),
        shape: 0,
        canonical,
        literals: vec![],
        verdict,
    }
}
