//! What the normalizer knows about one statement text: [`Analysis`] and its parts.
//!
//! These types are the contract between the normalizer (`sql::analyze`) and the rest of
//! the crate: the cache reads `verdict`, `reads`, `writes`, `writes_unknown`,
//! `functions`, `fingerprint` and the key-access forms `key_read` / `key_write`; the
//! CLI prints all of it.

use std::fmt;
use std::sync::Arc;

/// SQL dialect used to parse and to fold identifiers.
///
/// Only Postgres is implemented; SQLite and MySQL follow (they fold names differently:
/// SQLite lower-cases like Postgres, MySQL keeps case on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL: unquoted identifiers fold to lower case.
    #[default]
    Postgres,
}

/// What a statement does, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// A query that returns rows and writes nothing (SELECT, VALUES, TABLE, SHOW, EXPLAIN).
    Read,
    /// DML: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY … FROM, SELECT … INTO,
    /// REFRESH MATERIALIZED VIEW, a SELECT with a data-modifying CTE.
    Write,
    /// Schema changes: CREATE / ALTER / DROP / RENAME of relations and other objects.
    Ddl,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …
    Transaction,
    /// SET, RESET, DISCARD, LISTEN, …: changes session state.
    Session,
    /// Anything else (CALL, DO, unparseable text, …).
    Other,
}

impl StatementKind {
    /// The lower-case name used in CLI output: `read`, `write`, `ddl`, `transaction`,
    /// `session`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Write => "write",
            StatementKind::Ddl => "ddl",
            StatementKind::Transaction => "transaction",
            StatementKind::Session => "session",
            StatementKind::Other => "other",
        }
    }
}

/// A relation (table, view, materialized view, partition) named by a statement, with
/// identifiers folded per dialect: unquoted → lower case, quoted kept as written.
///
/// `schema` is `Some` only when the statement qualified the name; resolving an
/// unqualified name through `search_path` is the cache's job, not the normalizer's.
/// Cheap to clone (`Arc<str>` parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationName {
    /// Schema as written (folded), if the statement qualified the name.
    pub schema: Option<Arc<str>>,
    /// Relation name (folded).
    pub name: Arc<str>,
}

impl RelationName {
    /// A relation name from already-folded parts.
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        RelationName {
            schema: schema.map(Arc::from),
            name: Arc::from(name),
        }
    }
}

impl fmt::Display for RelationName {
    /// `schema.name`, or `name` when unqualified. Parts are printed as folded, without
    /// quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether a statement's result may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A read whose result depends only on its read set and its bind arguments.
    Cacheable,
    /// Never cached, for the given reason.
    Uncacheable(Reason),
}

/// Why a statement is not cached. Each variant is counted separately by the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The statement is not a read (a write, DDL, transaction control, session command).
    NotARead(StatementKind),
    /// Calls a volatile or session-dependent function (`random`, `now`, `current_user`,
    /// …). Holds the folded function name.
    VolatileFunction(String),
    /// Uses one of the time literals `'now'`, `'today'`, `'tomorrow'`, `'yesterday'`.
    TimeLiteral(String),
    /// Takes row locks (`FOR UPDATE`, `FOR SHARE`, …) at any depth.
    RowLock,
    /// A WITH clause contains INSERT / UPDATE / DELETE / MERGE.
    DataModifyingCte,
    /// `SELECT … INTO` creates a table.
    SelectInto,
    /// `TABLESAMPLE` returns a random sample.
    TableSample,
    /// Reads a temporary table (`pg_temp.*`).
    TempTable(String),
    /// Reads a system catalog (`pg_catalog.*`, `pg_*`, `information_schema.*`).
    SystemCatalog(String),
    /// `EXPLAIN ANALYZE` executes the statement.
    ExplainAnalyze,
    /// A plain `EXPLAIN`: its output depends on planner statistics, which change
    /// without a write.
    Explain,
    /// `SHOW` reads a server or session setting.
    Show,
    /// sqlparser reads a construct differently from Postgres, so two texts with
    /// different results could share a canonical text (e.g. `0x1F`, which sqlparser
    /// prints as the bit string `X'1F'`). Holds the construct.
    Misread(String),
    /// The text holds more than one statement.
    MultipleStatements,
    /// `FROM ONLY t`: sqlparser reads it as a table named `only`, so the read set would
    /// be wrong.
    FromOnly,
    /// The text is longer than the configured cap and was not parsed.
    TooLarge {
        /// Length of the text in bytes.
        len: usize,
        /// The cap in bytes.
        cap: usize,
    },
    /// sqlparser could not parse the text, and it starts like a read; holds the
    /// parser's message.
    ParseError(String),
    /// Could not be analyzed and may write (unparseable text not starting with
    /// SELECT/WITH/VALUES/SHOW/TABLE/EXPLAIN, `CALL`, `DO`): the cache must invalidate
    /// everything. Holds the parser's message or the statement's leading keyword.
    UnknownWrite(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotARead(kind) => write!(f, "not a read ({})", kind.as_str()),
            Reason::VolatileFunction(name) => write!(f, "volatile function {name}()"),
            Reason::TimeLiteral(lit) => write!(f, "time literal '{lit}'"),
            Reason::RowLock => f.write_str("row lock (FOR UPDATE/SHARE)"),
            Reason::DataModifyingCte => f.write_str("data-modifying CTE"),
            Reason::SelectInto => f.write_str("SELECT INTO"),
            Reason::TableSample => f.write_str("TABLESAMPLE"),
            Reason::TempTable(name) => write!(f, "temporary table {name}"),
            Reason::SystemCatalog(name) => write!(f, "system catalog {name}"),
            Reason::ExplainAnalyze => f.write_str("EXPLAIN ANALYZE"),
            Reason::Explain => f.write_str("EXPLAIN (plan depends on statistics)"),
            Reason::Show => f.write_str("SHOW (session setting)"),
            Reason::Misread(what) => write!(f, "misread by sqlparser: {what}"),
            Reason::MultipleStatements => f.write_str("multiple statements"),
            Reason::FromOnly => f.write_str("FROM ONLY (misparsed by sqlparser)"),
            Reason::TooLarge { len, cap } => write!(f, "SQL too large ({len} bytes > {cap})"),
            Reason::ParseError(msg) => write!(f, "parse error: {msg}"),
            Reason::UnknownWrite(msg) => write!(f, "unknown write: {msg}"),
        }
    }
}

/// Everything the normalizer derives from one statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// What the statement does.
    pub kind: StatementKind,
    /// Relations the statement reads, sorted and deduplicated. CTE names and table
    /// functions are not relations.
    pub reads: Vec<RelationName>,
    /// Relations the statement writes (or creates, alters, drops), sorted and
    /// deduplicated.
    pub writes: Vec<RelationName>,
    /// `true` when the statement may write relations it does not name (unparseable
    /// write-like text, `CALL`, `DO`, `EXECUTE`, and DDL whose effect on existing
    /// results has no relation name: `CREATE OR REPLACE FUNCTION`, `GRANT`, `DROP
    /// SCHEMA`, `TRUNCATE … CASCADE`, …): the cache invalidates everything.
    pub writes_unknown: bool,
    /// Functions the statement calls that are not known builtins (folded, sorted,
    /// deduplicated); the cache checks their volatility in `pg_proc`.
    pub functions: Vec<String>,
    /// Canonical text: keywords upper case, unquoted identifiers folded, whitespace
    /// collapsed, comments and a trailing `;` dropped, literals kept. Empty when the
    /// text did not parse.
    pub canonical: String,
    /// xxh3-128 of `canonical`: the key fingerprint. Two statements that can return
    /// different results never share it.
    pub fingerprint: u128,
    /// xxh3-128 of the canonical text with literals replaced by placeholders (like
    /// pg_stat_statements' `queryid`).
    pub shape: u128,
    /// The literals in text order, as they appear in the canonical text.
    pub literals: Vec<String>,
    /// Whether the result may be cached.
    pub verdict: Verdict,
    /// The read's single relation and the columns its WHERE pins, when it has the
    /// form of a key read ([`KeyRead`]); `None` for every other statement.
    pub key_read: Option<KeyRead>,
    /// The write's relation and pinned columns or inserted values, when it has the
    /// form of a key write ([`KeyWrite`]); `None` for every other statement.
    pub key_write: Option<KeyWrite>,
}

impl Analysis {
    /// `true` when the verdict is [`Verdict::Cacheable`].
    pub fn is_cacheable(&self) -> bool {
        matches!(self.verdict, Verdict::Cacheable)
    }

    /// The reason the statement is not cached, if it is not.
    pub fn reason(&self) -> Option<&Reason> {
        match &self.verdict {
            Verdict::Cacheable => None,
            Verdict::Uncacheable(reason) => Some(reason),
        }
    }
}

/// A value a statement pins a column to, in a key read or a key write.
///
/// Literals are referred to by their index in [`Analysis::literals`], so an analysis
/// made from a shape's template (a new literal variant of a known statement) pins the
/// new text's values. What a value means as a key (`'5'` and `5.0` against an `int`
/// column are both the key 5; `'5.5'` is an error and `5.5` matches nothing) depends on
/// the column's type, which only the catalog knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PinnedValue {
    /// The literal `Analysis::literals[index]` (a plain number or a `'…'` string),
    /// with a leading minus when `negated`, and the type of an explicit cast
    /// (`'5'::int8`, `CAST(5 AS bigint)`) as written, lower case.
    Literal {
        /// Index into [`Analysis::literals`].
        index: usize,
        /// Written `-literal`.
        negated: bool,
        /// Explicit cast target, if any.
        cast: Option<Arc<str>>,
    },
    /// The bind parameter `$number` (1-based), with an explicit cast's type if any.
    Bind {
        /// The parameter's number, 1-based.
        number: usize,
        /// Explicit cast target, if any.
        cast: Option<Arc<str>>,
    },
}

/// One column pinned by a WHERE clause: `column = value` or `column IN (values…)`
/// (then several values), a conjunct of the top-level `AND`s. `NULL` never pins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pin {
    /// The column, folded.
    pub column: Arc<str>,
    /// One value for `=`, the list's values for `IN`.
    pub values: Vec<PinnedValue>,
}

/// A read that may be a key read: a single-relation SELECT of one named relation (no
/// join, subquery, CTE, set operation, GROUP BY / HAVING, aggregate or window
/// function) whose WHERE pins `pins`. Whether the pins cover a primary key or a
/// non-partial unique index with deterministic collation (and whether the relation is
/// a base table at all) is decided with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRead {
    /// The relation, as named (not resolved through `search_path`).
    pub relation: RelationName,
    /// Pinned columns, sorted by column; empty when none is pinned.
    pub pins: Vec<Pin>,
}

/// What a write that may be a key write does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyWriteKind {
    /// `UPDATE … SET assigned… WHERE pins`: an assignment to a key column moves the
    /// row to another key (the catalog decides whether that falls back to table level).
    Update {
        /// Assigned columns, sorted.
        assigned: Vec<Arc<str>>,
    },
    /// `DELETE FROM … WHERE pins`.
    Delete,
    /// `INSERT INTO t (columns…) VALUES rows…`.
    Insert {
        /// The column list as written, folded.
        columns: Vec<Arc<str>>,
        /// Per row, per column: the pinned value, or `None` for anything else
        /// (`DEFAULT`, an expression, `NULL`), which gives that column no key value.
        rows: Vec<Vec<Option<PinnedValue>>>,
        /// The `ON CONFLICT` clause, if any.
        on_conflict: Option<OnConflict>,
    },
}

/// An `INSERT`'s `ON CONFLICT` clause.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OnConflict {
    /// Conflict target columns (`ON CONFLICT (a, b)`), folded; empty when none is given
    /// or the target is a constraint.
    pub target: Vec<Arc<str>>,
    /// `ON CONFLICT ON CONSTRAINT name`.
    pub constraint: Option<Arc<str>>,
    /// `DO UPDATE SET` columns, sorted; `None` for `DO NOTHING`.
    pub updates: Option<Vec<Arc<str>>>,
}

/// A write that may be a key write: UPDATE or DELETE of one named relation (no
/// `FROM` / `USING`) whose WHERE pins `pins`, or an INSERT with a column list and a
/// `VALUES` list. Whether it covers a key is decided with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyWrite {
    /// The written relation, as named.
    pub relation: RelationName,
    /// Columns the WHERE clause pins (UPDATE, DELETE), sorted; empty for INSERT.
    pub pins: Vec<Pin>,
    /// What the write does.
    pub kind: KeyWriteKind,
}

impl KeyWrite {
    /// The columns this write gives a value for in every row it can touch: the WHERE
    /// pins of an UPDATE / DELETE, or the INSERT columns that every VALUES row sets to
    /// a literal or bind (a column left to its default, serial or not, is not among
    /// them, so a key the database generates is never taken as known). Sorted.
    pub fn pinned_columns(&self) -> Vec<&str> {
        match &self.kind {
            KeyWriteKind::Insert { columns, rows, .. } => {
                let mut out: Vec<&str> = columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        rows.iter()
                            .all(|row| row.get(*i).is_some_and(Option::is_some))
                    })
                    .map(|(_, c)| &**c)
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            }
            _ => Pin::columns(&self.pins),
        }
    }

    /// `true` when the write may change one of `columns` (an UPDATE assigning it, or an
    /// `INSERT … ON CONFLICT DO UPDATE` setting it): a write that changes a key column
    /// moves a row from one key to another.
    pub fn assigns_any(&self, columns: &[&str]) -> bool {
        let assigned = match &self.kind {
            KeyWriteKind::Update { assigned } => assigned.as_slice(),
            KeyWriteKind::Insert {
                on_conflict:
                    Some(OnConflict {
                        updates: Some(updates),
                        ..
                    }),
                ..
            } => updates.as_slice(),
            _ => return false,
        };
        assigned.iter().any(|a| columns.contains(&&**a))
    }
}

impl Pin {
    /// The column names of `pins`.
    pub fn columns(pins: &[Pin]) -> Vec<&str> {
        pins.iter().map(|p| &*p.column).collect()
    }
}
