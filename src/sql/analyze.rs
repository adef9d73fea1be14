//! The read/write-set visitor: statement kind, read set, write set, called functions
//! and the facts that make a statement uncacheable.
//!
//! Built on the verified visitor of research `api-sqlx-sqlparser.md` §3.3/§6.1: reads
//! come from `pre_visit_relation` minus write targets, table functions and CTE
//! references (resolved with a scope stack, so a CTE that shadows a table hides it
//! only where it is visible, and a recursive CTE reads only its base tables); writes
//! are decided per statement in `pre_visit_statement`, which also sees DML nested in
//! CTEs. Identifiers are folded as Postgres folds them ([`ident`]).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, FromTable, FunctionArguments, Ident, ObjectName, ObjectNamePart, ObjectType,
    Query, RenameTableNameKind, Select, SetExpr, Statement, TableFactor, TableObject, Value,
    ValueWithSpan, Visit, Visitor,
};

use super::analysis::{Reason, RelationName, StatementKind};
use super::volatility::{
    FunctionClass, classify_function, is_system_relation, is_temp_schema, is_time_literal,
};

/// What the visitor found in one or more statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Kind of the (strongest) statement.
    pub kind: StatementKind,
    /// Relations read.
    pub reads: BTreeSet<RelationName>,
    /// Relations written, created, altered or dropped.
    pub writes: BTreeSet<RelationName>,
    /// The statement may write relations it does not name.
    pub writes_unknown: bool,
    /// Called functions that are not known builtins.
    pub functions: BTreeSet<String>,
    /// Why the statement is not cacheable, most important first (see [`Facts::verdict`]).
    pub reasons: Vec<Reason>,
}

impl Facts {
    /// Facts with nothing found yet.
    pub(crate) fn new(kind: StatementKind) -> Self {
        Facts {
            kind,
            reads: BTreeSet::new(),
            writes: BTreeSet::new(),
            writes_unknown: false,
            functions: BTreeSet::new(),
            reasons: Vec::new(),
        }
    }

    /// Merge the facts of a later statement of the same text.
    fn merge(&mut self, other: Facts) {
        if rank(other.kind) > rank(self.kind) {
            self.kind = other.kind;
        }
        self.reads.extend(other.reads);
        self.writes.extend(other.writes);
        self.writes_unknown |= other.writes_unknown;
        self.functions.extend(other.functions);
        self.reasons.extend(other.reasons);
    }

    /// The reason the statement is not cacheable, or `None`. Reasons that do not
    /// depend on literal values come first, so the verdict changes with a literal only
    /// when the literal is the reason ([`Reason::TimeLiteral`], checked last).
    pub(crate) fn verdict(&self) -> Option<Reason> {
        self.reasons
            .iter()
            .min_by_key(|r| priority(r))
            .cloned()
            .or_else(|| (self.kind != StatementKind::Read).then_some(Reason::NotARead(self.kind)))
    }
}

/// Order in which reasons are reported; lower first.
fn priority(reason: &Reason) -> u8 {
    match reason {
        Reason::TooLarge { .. } | Reason::ParseError(_) => 0,
        Reason::MultipleStatements => 1,
        Reason::UnknownWrite(_) => 2,
        Reason::DataModifyingCte | Reason::SelectInto | Reason::ExplainAnalyze => 3,
        Reason::FromOnly | Reason::Misread(_) => 4,
        Reason::Explain | Reason::Show => 5,
        Reason::RowLock | Reason::TableSample => 6,
        Reason::TempTable(_) | Reason::SystemCatalog(_) => 7,
        Reason::VolatileFunction(_) => 8,
        Reason::NotARead(_) => 9,
        Reason::TimeLiteral(_) => 10,
    }
}

/// Strength of a kind when a text holds several statements.
fn rank(kind: StatementKind) -> u8 {
    match kind {
        StatementKind::Read => 0,
        StatementKind::Transaction => 1,
        StatementKind::Session => 2,
        StatementKind::Other => 3,
        StatementKind::Write => 4,
        StatementKind::Ddl => 5,
    }
}

/// Analyze parsed statements.
pub(crate) fn facts(statements: &[Statement]) -> Facts {
    let mut all: Option<Facts> = None;
    for statement in statements {
        let mut visitor = Analyzer::new(statement_kind(statement));
        // The visitor never breaks.
        let _ = statement.visit(&mut visitor);
        let facts = visitor.finish(statement);
        match &mut all {
            Some(all) => all.merge(facts),
            None => all = Some(facts),
        }
    }
    let mut all = all.unwrap_or_else(|| Facts::new(StatementKind::Other));
    if statements.len() > 1 {
        all.reasons.push(Reason::MultipleStatements);
    }
    all
}

/// The kind of a top-level statement.
pub(crate) fn statement_kind(statement: &Statement) -> StatementKind {
    use StatementKind::*;
    match statement {
        Statement::Query(_) => Read,
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => Write,
        Statement::Copy { to, .. } => {
            if *to {
                Other
            } else {
                Write
            }
        }
        Statement::Explain {
            statement: inner, ..
        } if explain_runs(statement) => statement_kind(inner),
        Statement::Explain { .. } | Statement::ExplainTable { .. } => Read,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Lock(_)
        | Statement::LockTables { .. }
        | Statement::UnlockTables => Transaction,
        Statement::Set(sqlparser::ast::Set::SetTransaction { .. }) => Transaction,
        Statement::Set(_)
        | Statement::Reset(_)
        | Statement::Discard { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. }
        | Statement::Use(_)
        | Statement::Prepare { .. }
        | Statement::Deallocate { .. } => Session,
        s if is_show(s) => Read,
        s if ddl_effect(s).is_some() => Ddl,
        _ => Other,
    }
}

/// `true` when an `EXPLAIN` statement runs its statement (`EXPLAIN ANALYZE`, or
/// `EXPLAIN (ANALYZE [true|on|1]) …`).
fn explain_runs(statement: &Statement) -> bool {
    let Statement::Explain {
        analyze, options, ..
    } = statement
    else {
        return false;
    };
    *analyze
        || options.iter().flatten().any(|option| {
            option.name.value.eq_ignore_ascii_case("analyze")
                && !option.arg.as_ref().is_some_and(|arg| {
                    let text = arg.to_string().to_ascii_lowercase();
                    matches!(text.as_str(), "false" | "off" | "0" | "'false'" | "'off'")
                })
        })
}

fn is_show(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowProcessList { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. }
    )
}

/// For a DDL statement: `Some(true)` when it can change the results of existing reads
/// without naming the relations (the cache must invalidate everything), `Some(false)`
/// when its effect is named (or nil). `None` for statements that are not DDL.
fn ddl_effect(statement: &Statement) -> Option<bool> {
    let unknown = match statement {
        // Named effect (handled in `record_writes`) or no effect on existing results.
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::AlterTable(_)
        | Statement::AlterView { .. }
        | Statement::RenameTable(_)
        | Statement::CreateIndex(_)
        | Statement::AlterIndex { .. }
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateExtension(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateRole(_)
        | Statement::CreateUser(_)
        | Statement::CreateDatabase { .. }
        | Statement::CreateCollation(_)
        | Statement::Comment { .. } => false,
        Statement::CreateFunction(f) => f.or_replace || f.or_alter,
        Statement::Drop {
            object_type,
            cascade,
            ..
        } => match object_type {
            ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => false,
            ObjectType::Index | ObjectType::Sequence | ObjectType::Role | ObjectType::User => false,
            ObjectType::Schema | ObjectType::Database => true,
            _ => *cascade,
        },
        // Functions, policies, rules, triggers, privileges, types, schemas: can change
        // what an existing query returns (or whether it may run).
        Statement::CreateVirtualTable { .. }
        | Statement::CreateServer(_)
        | Statement::CreatePolicy(_)
        | Statement::CreateConnector(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateTextSearch(_)
        | Statement::AlterSchema(_)
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterRole { .. }
        | Statement::AlterPolicy(_)
        | Statement::AlterConnector { .. }
        | Statement::AlterUser(_)
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropPolicy(_)
        | Statement::DropConnector { .. }
        | Statement::DropExtension(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_)
        | Statement::CreateTrigger(_)
        | Statement::DropTrigger(_)
        | Statement::CreateProcedure { .. }
        | Statement::Grant(_)
        | Statement::Deny(_)
        | Statement::Revoke(_) => true,
        _ => return None,
    };
    Some(unknown)
}

/// A CTE scope: the names of one WITH clause and their bodies.
struct Frame {
    names: Vec<String>,
    bodies: Vec<*const Query>,
    recursive: bool,
    /// How many of `names` are visible right now (fewer while inside body `i` of a
    /// non-recursive WITH).
    visible: usize,
}

struct Analyzer {
    facts: Facts,
    frames: Vec<Frame>,
    /// `ObjectName`s (by address) that are write targets or table functions.
    skip: Vec<*const ObjectName>,
    /// Nesting of statements (0 outside the top-level statement).
    statement_depth: usize,
    /// Nesting of queries.
    query_depth: usize,
    /// The DML statement that is the body of the top-level query (`WITH … INSERT`).
    main_dml: Option<*const Statement>,
    /// DML met inside a query other than `main_dml`: a data-modifying CTE.
    nested_dml: bool,
}

/// An identifier folded as Postgres folds it: unquoted → ASCII lower case, quoted
/// kept as written.
pub(crate) fn ident(ident: &Ident) -> Cow<'_, str> {
    if ident.quote_style.is_none() && ident.value.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(ident.value.to_ascii_lowercase())
    } else {
        Cow::Borrowed(&ident.value)
    }
}

/// A name sqlparser keeps as a plain string (`TABLE t` in a set operation): quoted
/// (`"T"`) kept as written, otherwise folded.
fn plain_name(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    }
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => ident(i).into_owned(),
            other => other.to_string(),
        })
        .collect()
}

/// `schema.name` from a (possibly catalog-qualified) object name.
pub(crate) fn relation_name(name: &ObjectName) -> RelationName {
    let parts = parts(name);
    let n = parts.len();
    let last = parts.last().map_or("", String::as_str);
    let schema = (n >= 2).then(|| parts[n - 2].as_str());
    RelationName::new(schema, last)
}

/// sqlparser reads `FROM ONLY t` as table `only` with alias `t` (research §3.5).
fn only_misread(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)] if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only"))
}

fn argument_count(args: &FunctionArguments) -> usize {
    match args {
        FunctionArguments::None => 0,
        FunctionArguments::Subquery(_) => 1,
        FunctionArguments::List(list) => list.args.len(),
    }
}

fn string_value(value: &Value) -> Option<&str> {
    match value {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::DoubleQuotedString(s)
        | Value::TripleSingleQuotedString(s)
        | Value::TripleDoubleQuotedString(s) => Some(s),
        Value::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

impl Analyzer {
    fn new(kind: StatementKind) -> Self {
        Analyzer {
            facts: Facts::new(kind),
            frames: Vec::new(),
            skip: Vec::new(),
            statement_depth: 0,
            query_depth: 0,
            main_dml: None,
            nested_dml: false,
        }
    }

    fn reason(&mut self, reason: Reason) {
        if !self.facts.reasons.contains(&reason) {
            self.facts.reasons.push(reason);
        }
    }

    fn is_cte_reference(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(i)] = name.0.as_slice() else {
            return false;
        };
        let n = ident(i);
        let n = n.as_ref();
        self.frames
            .iter()
            .rev()
            .any(|f| f.names[..f.visible].iter().any(|c| c == n))
    }

    fn write(&mut self, name: &ObjectName) {
        self.skip.push(name);
        self.facts.writes.insert(relation_name(name));
    }

    fn write_factor(&mut self, factor: &TableFactor) {
        match factor {
            TableFactor::Table { name, alias, .. } if only_misread(name) => match alias {
                Some(alias) if alias.columns.is_empty() => {
                    self.skip.push(name);
                    self.facts
                        .writes
                        .insert(RelationName::new(None, &ident(&alias.name)));
                }
                _ => self.facts.writes_unknown = true,
            },
            TableFactor::Table { name, .. } => self.write(name),
            _ => self.facts.writes_unknown = true,
        }
    }

    fn record_writes(&mut self, statement: &Statement) {
        match statement {
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => self.write(name),
                _ => self.facts.writes_unknown = true,
            },
            Statement::Update(update) => {
                self.write_factor(&update.table.relation);
                // MySQL multi-table UPDATE may write any joined table.
                for join in &update.table.joins {
                    self.write_factor(&join.relation);
                }
            }
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for name in &delete.tables {
                    self.write(name);
                }
                for table in from {
                    self.write_factor(&table.relation);
                    if !delete.tables.is_empty() {
                        for join in &table.joins {
                            self.write_factor(&join.relation);
                        }
                    }
                }
            }
            Statement::Merge(merge) => self.write_factor(&merge.table),
            Statement::Truncate(truncate) => {
                for target in &truncate.table_names {
                    self.write(&target.name);
                }
                // TRUNCATE … CASCADE empties every table that references these.
                if matches!(
                    truncate.cascade,
                    Some(sqlparser::ast::CascadeOption::Cascade)
                ) {
                    self.facts.writes_unknown = true;
                }
            }
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                to,
                ..
            } => {
                if *to {
                    // COPY t TO: the name is not visited as a relation.
                    self.facts.reads.insert(relation_name(table_name));
                } else {
                    self.write(table_name);
                }
            }
            Statement::CreateTable(create) => self.write(&create.name),
            Statement::CreateView(view) => self.write(&view.name),
            Statement::AlterView { name, .. } => self.write(name),
            Statement::AlterTable(alter) => {
                self.write(&alter.name);
                let old = relation_name(&alter.name);
                for op in &alter.operations {
                    if let sqlparser::ast::AlterTableOperation::RenameTable { table_name } = op {
                        let (RenameTableNameKind::As(new) | RenameTableNameKind::To(new)) =
                            table_name;
                        let mut new = relation_name(new);
                        if new.schema.is_none() {
                            new.schema = old.schema.clone();
                        }
                        self.facts.writes.insert(new);
                    }
                }
            }
            Statement::RenameTable(renames) => {
                for rename in renames {
                    self.write(&rename.old_name);
                    self.write(&rename.new_name);
                }
            }
            Statement::Drop {
                object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
                names,
                ..
            } => {
                for name in names {
                    self.write(name);
                }
            }
            _ => {}
        }
    }

    fn function(&mut self, name: &ObjectName, args: usize) {
        let relation = relation_name(name);
        let schema = relation.schema.as_deref();
        match classify_function(schema, &relation.name, args) {
            FunctionClass::Volatile => {
                self.reason(Reason::VolatileFunction(relation.name.to_string()))
            }
            FunctionClass::Builtin => {}
            FunctionClass::Unknown => {
                self.facts.functions.insert(relation.to_string());
            }
        }
    }

    /// `TABLE t` in a query body or a set operation: the visitor does not see its
    /// name as a relation.
    fn table_shorthands(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(table) => {
                if let Some(name) = &table.table_name {
                    let schema = table.schema_name.as_deref().map(plain_name);
                    self.facts
                        .reads
                        .insert(RelationName::new(schema.as_deref(), &plain_name(name)));
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.table_shorthands(left);
                self.table_shorthands(right);
            }
            _ => {}
        }
    }

    /// Final adjustments once the whole statement was visited.
    fn finish(mut self, statement: &Statement) -> Facts {
        match statement {
            Statement::Explain { .. } if explain_runs(statement) => {
                self.reason(Reason::ExplainAnalyze);
            }
            Statement::Explain { .. } => {
                // A plain EXPLAIN runs nothing: what its statement would write, it reads.
                let writes = std::mem::take(&mut self.facts.writes);
                self.facts.reads.extend(writes);
                self.facts.writes_unknown = false;
                self.facts.reasons.retain(|r| {
                    !matches!(
                        r,
                        Reason::DataModifyingCte | Reason::SelectInto | Reason::UnknownWrite(_)
                    )
                });
                self.facts.kind = StatementKind::Read;
                self.reason(Reason::Explain);
            }
            Statement::Call(_) | Statement::Execute { .. } => {
                self.facts.writes_unknown = true;
                let keyword = if matches!(statement, Statement::Call(_)) {
                    "CALL"
                } else {
                    "EXECUTE"
                };
                self.reason(Reason::UnknownWrite(keyword.to_owned()));
            }
            s if is_show(s) => self.reason(Reason::Show),
            s => {
                if let Some(unknown) = ddl_effect(s) {
                    self.facts.writes_unknown |= unknown;
                } else if statement_kind(s) == StatementKind::Other
                    && !matches!(
                        s,
                        Statement::Copy { .. }
                            | Statement::Analyze(_)
                            | Statement::Vacuum(_)
                            | Statement::Declare { .. }
                            | Statement::Fetch { .. }
                            | Statement::Close { .. }
                    )
                {
                    // Something we do not model: assume it may write anything.
                    self.facts.writes_unknown = true;
                }
            }
        }
        if self.nested_dml {
            if self.facts.kind == StatementKind::Read {
                self.reason(Reason::DataModifyingCte);
            }
            self.facts.kind = StatementKind::Write;
        } else if self.main_dml.is_some() {
            self.facts.kind = StatementKind::Write;
        }
        if self.facts.reasons.contains(&Reason::SelectInto) {
            self.facts.kind = StatementKind::Write;
        }
        self.facts
    }
}

impl Visitor for Analyzer {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let is_dml = matches!(
            statement,
            Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Merge(_)
        );
        if is_dml && self.query_depth > 0 && self.main_dml != Some(statement as *const _) {
            self.nested_dml = true;
        }
        self.record_writes(statement);
        self.statement_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        self.statement_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.query_depth == 0
            && self.statement_depth == 1
            && let SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) =
                query.body.as_ref()
        {
            self.main_dml = Some(s as *const _);
        }
        self.query_depth += 1;
        // Entering the body of CTE i: only CTEs 0..i are visible (all of them under
        // WITH RECURSIVE).
        if let Some(top) = self.frames.last_mut()
            && let Some(i) = top.bodies.iter().position(|b| std::ptr::eq(*b, query))
        {
            top.visible = if top.recursive { top.names.len() } else { i };
        }
        let mut frame = Frame {
            names: Vec::new(),
            bodies: Vec::new(),
            recursive: false,
            visible: 0,
        };
        if let Some(with) = &query.with {
            frame.recursive = with.recursive;
            for cte in &with.cte_tables {
                frame.names.push(ident(&cte.alias.name).into_owned());
                frame.bodies.push(&*cte.query as *const Query);
            }
            frame.visible = frame.names.len();
        }
        self.frames.push(frame);
        if !query.locks.is_empty() {
            self.reason(Reason::RowLock);
        }
        self.table_shorthands(&query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        self.frames.pop();
        if let Some(top) = self.frames.last_mut()
            && top.bodies.iter().any(|b| std::ptr::eq(*b, query))
        {
            top.visible = top.names.len();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            self.reason(Reason::SelectInto);
            for target in &into.targets {
                match target {
                    Expr::Identifier(i) => {
                        self.facts.writes.insert(RelationName::new(None, &ident(i)));
                    }
                    Expr::CompoundIdentifier(v) => {
                        let n = v.len();
                        let schema = (n >= 2).then(|| ident(&v[n - 2]));
                        let name = v.last().map(ident).unwrap_or_default();
                        self.facts
                            .writes
                            .insert(RelationName::new(schema.as_deref(), &name));
                    }
                    _ => self.facts.writes_unknown = true,
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args,
                sample,
                alias,
                ..
            } => {
                if let Some(args) = args {
                    // A set-returning function: FROM generate_series(1, 3).
                    self.skip.push(name);
                    self.function(name, args.args.len());
                } else if only_misread(name) && !self.skip.iter().any(|p| std::ptr::eq(*p, name)) {
                    // A read of `ONLY t`; write targets were resolved in `write_factor`.
                    self.skip.push(name);
                    self.reason(Reason::FromOnly);
                    if let Some(alias) = alias {
                        self.facts
                            .reads
                            .insert(RelationName::new(None, &ident(&alias.name)));
                    }
                }
                if sample.is_some() {
                    self.reason(Reason::TableSample);
                }
            }
            TableFactor::Function { name, args, .. } => {
                self.function(name, args.len());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if self.skip.iter().any(|p| std::ptr::eq(*p, relation)) || self.is_cte_reference(relation) {
            return ControlFlow::Continue(());
        }
        let name = relation_name(relation);
        if is_temp_schema(name.schema.as_deref()) {
            self.reason(Reason::TempTable(name.to_string()));
        } else if is_system_relation(name.schema.as_deref(), &name.name) {
            self.reason(Reason::SystemCatalog(name.to_string()));
        }
        self.facts.reads.insert(name);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function(&f.name, argument_count(&f.args)),
            Expr::Cast { data_type, .. }
            | Expr::TypedString(sqlparser::ast::TypedString { data_type, .. })
                if misprinted_modifiers(data_type) =>
            {
                self.reason(Reason::Misread("quoted type modifier".to_owned()));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        if let Some(s) = string_value(&value.value)
            && is_time_literal(s)
        {
            self.reason(Reason::TimeLiteral(s.to_owned()));
        }
        ControlFlow::Continue(())
    }
}

/// A user type's modifiers (`t(10, 'x')`) that sqlparser prints otherwise than they
/// were written: it keeps a quoted modifier's content and prints it without quotes, so
/// `t('Point')` and `t(Point)` (which Postgres passes to the type as `Point` and
/// `point`) would share a canonical text and key, and `t('''')` would not print to a
/// fixed point (fuzz crash, 2026-12-03). Only number modifiers print back as written.
fn misprinted_modifiers(data_type: &sqlparser::ast::DataType) -> bool {
    use sqlparser::ast::{ArrayElemTypeDef, DataType};
    match data_type {
        DataType::Custom(_, modifiers) => modifiers
            .iter()
            .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit())),
        DataType::Array(
            ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::Parenthesis(inner)
            | ArrayElemTypeDef::Qualified(inner, _),
        ) => misprinted_modifiers(inner),
        _ => false,
    }
}
