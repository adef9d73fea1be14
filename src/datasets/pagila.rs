//! Pagila, the DVD-rental sample database (a PostgreSQL port of MySQL's Sakila): a loader
//! that runs its two `pg_dump` scripts through sqlx, and a check that it is loaded.
//!
//! The files are not shipped with the crate; `load` reads them from a directory the
//! caller names (the test suite and CI use `../shared/datasets/pagila`).

use std::path::Path;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnection, PgPool};

use super::dump::{self, Entry, Part};
use crate::sql::RelationName;
use crate::{Error, Result};

/// The schema script, loaded first.
pub const SCHEMA_FILE: &str = "pagila-schema.sql";
/// The data script (`COPY … FROM stdin` blocks and sequence values), loaded second.
pub const DATA_FILE: &str = "pagila-data.sql";

/// Rows in `public.rental` once loaded (the dataset's README: 16 044).
pub const RENTAL_ROWS: i64 = 16_044;

/// The view that needs PostgreSQL 17 (`JSON_TABLE`); on older servers it is skipped and
/// reported in [`PagilaReport::skipped`].
pub const JSON_TABLE_VIEW: &str = "films_per_customer_rental";

/// Tables [`is_loaded`] expects in schema `public`.
const TABLES: &[&str] = &[
    "actor",
    "address",
    "category",
    "city",
    "country",
    "customer",
    "film",
    "film_actor",
    "film_category",
    "inventory",
    "language",
    "payment",
    "rental",
    "staff",
    "store",
];

/// What [`load`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PagilaReport {
    /// Dump entries that ran successfully, in both files: objects (tables, views,
    /// functions, constraints, …), table-data entries and preamble settings.
    pub objects_loaded: usize,
    /// Rows copied per table, in load order, as counted by the server for each
    /// `COPY … FROM stdin` (`payment` rows are copied into its partitions).
    pub rows_copied: Vec<(RelationName, u64)>,
    /// Entries that failed in a way this loader tolerates (see [`load`]).
    pub skipped: Vec<SkippedObject>,
}

impl PagilaReport {
    /// Rows copied into `schema.table`, if the load copied into it.
    pub fn rows(&self, schema: &str, table: &str) -> Option<u64> {
        self.rows_copied
            .iter()
            .find(|(name, _)| name.schema.as_deref() == Some(schema) && &*name.name == table)
            .map(|(_, rows)| *rows)
    }
}

/// A dump entry that failed and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedObject {
    /// The script it came from ([`SCHEMA_FILE`] or [`DATA_FILE`]).
    pub file: &'static str,
    /// The entry, e.g. `VIEW public.films_per_customer_rental`, or the preamble
    /// statement itself (`SET transaction_timeout = 0;`).
    pub object: String,
    /// The server's error message.
    pub error: String,
}

/// Loads Pagila from `data_dir` ([`SCHEMA_FILE`], then [`DATA_FILE`]) into the pool's
/// database, which should be empty.
///
/// Every statement runs on one connection taken from `pool`, because the scripts set
/// session state that later statements rely on (`search_path` is emptied, triggers are
/// disabled around each `COPY`); that connection is closed afterwards instead of being
/// returned to the pool with that state. Each dump entry (an object and its
/// `ALTER … OWNER`) is one simple query, so it succeeds or fails as a unit; table data
/// goes through `COPY … FROM STDIN` ([`PgConnection::copy_in_raw`]). Needs a role that
/// may `ALTER TABLE … DISABLE TRIGGER ALL` and `ALTER … OWNER TO postgres` (a
/// superuser).
///
/// Two failures are tolerated, skipped and reported, because the schema was dumped by
/// PostgreSQL 17: the view [`JSON_TABLE_VIEW`] (`JSON_TABLE` is new in 17), and a
/// preamble `SET` of a parameter the server does not know (SQLSTATE 42704, e.g.
/// `transaction_timeout` before 17).
///
/// # Errors
/// [`Error::Dataset`] naming the file and entry, wrapping [`Error::Io`] when a file
/// cannot be read, [`Error::Corrupt`] when a `COPY` block is unterminated, or
/// [`Error::Database`] for any other failing statement. A failed load leaves a
/// partially loaded database behind: load into a scratch database.
///
/// # Cancellation
/// Dropping the future mid-load closes the connection (the server rolls back the
/// entry in progress); entries already run stay.
pub async fn load(pool: &PgPool, data_dir: &Path) -> Result<PagilaReport> {
    let mut conn = pool.acquire().await?;
    // Session state (search_path '', SET SESSION AUTHORIZATION, …) must not leak into
    // the pool, and a connection dropped mid-COPY is unusable anyway.
    conn.close_on_drop();
    let mut report = PagilaReport::default();
    for file in [SCHEMA_FILE, DATA_FILE] {
        let path = data_dir.join(file);
        let script = tokio::task::spawn_blocking({
            let path = path.clone();
            move || std::fs::read_to_string(path)
        })
        .await
        .map_err(|join| Error::Io(std::io::Error::other(join)))
        .and_then(|read| read.map_err(Error::Io))
        .map_err(|source| dataset_error(&path.display().to_string(), source))?;
        let entries = dump::entries(&script).map_err(|source| dataset_error(file, source))?;
        for entry in &entries {
            run_entry(&mut conn, file, entry, &mut report).await?;
        }
    }
    Ok(report)
}

/// `true` when the pool's database holds Pagila: every table of the dataset exists in
/// schema `public` and `public.rental` has [`RENTAL_ROWS`] rows.
///
/// # Errors
/// [`Error::Database`] when a query fails.
pub async fn is_loaded(pool: &PgPool) -> Result<bool> {
    let tables: Vec<String> = TABLES.iter().map(|t| format!("public.{t}")).collect();
    let all_exist: bool =
        sqlx::query_scalar("SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest($1::text[]) t")
            .bind(&tables)
            .fetch_one(pool)
            .await?;
    if !all_exist {
        return Ok(false);
    }
    let rentals: i64 = sqlx::query_scalar("SELECT count(*) FROM public.rental")
        .fetch_one(pool)
        .await?;
    Ok(rentals == RENTAL_ROWS)
}

async fn run_entry(
    conn: &mut PgConnection,
    file: &'static str,
    entry: &Entry<'_>,
    report: &mut PagilaReport,
) -> Result<()> {
    let context = || match entry.header {
        Some(header) => format!("{file}: {}", header.describe()),
        None => format!("{file}: preamble"),
    };
    if entry.header.is_none() {
        // Preamble: independent one-line settings, each run (and tolerated) alone.
        for part in &entry.parts {
            let Part::Sql(sql) = *part else {
                return Err(dataset_error(&context(), unexpected_copy()));
            };
            match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
                Ok(_) => report.objects_loaded += 1,
                Err(err) if unknown_setting(sql, &err) => report.skipped.push(SkippedObject {
                    file,
                    object: sql.to_owned(),
                    error: err.to_string(),
                }),
                Err(err) => return Err(dataset_error(&context(), err.into())),
            }
        }
        return Ok(());
    }
    if entry.parts.is_empty() {
        return Ok(());
    }
    let mut copied = Vec::new();
    let result = run_parts(conn, &entry.parts, &mut copied).await;
    match result {
        Ok(()) => {
            report.objects_loaded += 1;
            report.rows_copied.extend(copied);
            Ok(())
        }
        Err(err) if entry.header.is_some_and(|h| h.name == JSON_TABLE_VIEW) => {
            report.skipped.push(SkippedObject {
                file,
                object: entry.header.map(|h| h.describe()).unwrap_or_default(),
                error: err.to_string(),
            });
            Ok(())
        }
        Err(err) => Err(dataset_error(&context(), err)),
    }
}

async fn run_parts(
    conn: &mut PgConnection,
    parts: &[Part<'_>],
    copied: &mut Vec<(RelationName, u64)>,
) -> Result<()> {
    for part in parts {
        match *part {
            Part::Sql(sql) => {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await?;
            }
            Part::Copy {
                statement,
                table,
                data,
            } => {
                let mut copy = conn.copy_in_raw(statement).await?;
                copy.send(data.as_bytes()).await?;
                let rows = copy.finish().await?;
                copied.push((printed_name(table), rows));
            }
        }
    }
    Ok(())
}

/// `SET <parameter> = …` rejected because the server does not know the parameter.
fn unknown_setting(sql: &str, err: &sqlx::Error) -> bool {
    sql.starts_with("SET ")
        && err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "42704")
}

/// `public.actor` as pg_dump prints it (Pagila's names need no quoting).
fn printed_name(table: &str) -> RelationName {
    match table.split_once('.') {
        Some((schema, name)) => RelationName::new(Some(schema), name),
        None => RelationName::new(Some("public"), table),
    }
}

fn unexpected_copy() -> Error {
    Error::Corrupt("COPY block before the first entry header".to_owned())
}

fn dataset_error(context: &str, source: Error) -> Error {
    Error::Dataset {
        context: context.to_owned(),
        source: Box::new(source),
    }
}
