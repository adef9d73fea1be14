//! The SQL of the watch triggers, and the one routine that installs, inspects and
//! removes them ([`install`], [`status`], [`uninstall`]), used by the library
//! ([`QueryCacheBuilder::watch_tables`](crate::QueryCacheBuilder::watch_tables)) and by
//! `querycache watch`. The disk tier's restart rule reads the same version rows
//! ([`crate::tier::disk::restart`]): there is one set of triggers.
//!
//! # Objects
//!
//! - Schema `querycache`, table `querycache.table_version (table_name text PRIMARY
//!   KEY, version bigint)`: one row per watched table (`schema.table`), plus
//!   `*install` (a random installation id), `*ddl` (bumped by every DDL command) and
//!   `*format` ([`FORMAT`], the version of these definitions).
//! - `querycache.bump_version()`: the statement-level trigger function. In the writing
//!   transaction it adds 1 to the table's row and queues `pg_notify('querycache',
//!   '<version> <schema>.<table>')`, which Postgres delivers at commit and drops on
//!   rollback.
//! - Per watched table, trigger `querycache_version` `BEFORE INSERT OR UPDATE OR DELETE
//!   OR TRUNCATE … FOR EACH STATEMENT`. *Before*, not after: the version-row update
//!   locks that row until commit, and taking it before the statement locks any table
//!   row means two transactions writing the same table wait on the version row instead
//!   of deadlocking (with an `AFTER` trigger, a transaction that wrote `t` and then
//!   updates a row another single-statement writer of `t` holds, while that writer
//!   waits for the version row, is a deadlock; `tests/watch_freshness.rs` hit it). The
//!   lock also orders the versions of one table by commit, which the listener relies
//!   on. A write straight into a partition first locks the version rows of its
//!   watched partition ancestors, root first (without bumping them): a write through
//!   the parent holds the parent's row before it locks any row of the partition, so a
//!   transaction writing through the parent and a writer of the partition wait on the
//!   parent's row instead of deadlocking on the partition's row and a table row
//!   (`tests/watch_freshness.rs` hit that too). Transactions that write two watched tables in opposite orders still can
//!   deadlock on the two version rows (see the README's known limits).
//! - Event trigger `querycache_ddl` on `ddl_command_end` (function
//!   `querycache.bump_ddl()`): bumps `*ddl` and notifies `'<version> *ddl'`.
//!
//! # Payload
//!
//! One notification per (table, statement), of at most 20 + 1 + 63 + 1 + 63 bytes
//! (a bigint, and two identifiers of at most `NAMEDATALEN - 1` = 63 bytes), far below
//! the 8000-byte limit. Every payload of a transaction is distinct because each
//! statement raises the version, so Postgres' folding of identical (channel, payload)
//! pairs within one transaction never hides a table: a transaction touching 1000
//! tables sends 1000 notifications, all delivered at its commit.
//!
//! # Privileges
//!
//! Installing needs: `CREATE` on the database (the schema), ownership of every watched
//! table (`CREATE TRIGGER` requires it), and superuser for the event trigger. The
//! functions are `SECURITY DEFINER` (owned by the installing role), so any role that
//! may write a watched table can bump its version; `USAGE` on the schema and `SELECT`
//! on the version table are granted to `PUBLIC`, so any role can listen and read
//! versions. [`status`] and listening need no privilege beyond that.

use sqlx::{PgPool, Postgres, Transaction};

/// Version of the definitions below, stored in the `*format` row. An install whose
/// stored format differs replaces every trigger and function. Format 1 was the disk
/// tier's hand-installed triggers (no `*format` row, no notification); format 2 fired
/// `AFTER` each statement (deadlock-prone, see the module docs); format 3 did not lock
/// a partition's ancestors' rows (deadlock-prone between parent and partition writers).
pub const FORMAT: i64 = 4;

/// The schema holding the version table and the trigger functions.
pub const SCHEMA: &str = "querycache";

/// The per-table trigger's function (in [`SCHEMA`]): it bumps the table's version row
/// once per statement and changes no row of the table.
pub const TRIGGER_FUNCTION: &str = "bump_version";

/// The `LISTEN` channel.
pub const CHANNEL: &str = "querycache";

/// Name of the per-table trigger.
pub const TRIGGER: &str = "querycache_version";

/// Name of the installation-id row in `querycache.table_version`.
pub const INSTALL_ID: &str = "*install";

/// Name of the row the DDL event trigger bumps.
pub const DDL_VERSION: &str = "*ddl";

/// Name of the row holding [`FORMAT`].
pub const FORMAT_ROW: &str = "*format";

/// Advisory-lock key that serializes installs (the bytes of `"qcwatch\0"`).
const INSTALL_LOCK: i64 = 0x7163_7761_7463_6800;

/// Creates the schema, the version table and both functions (replacing older
/// definitions), records a random installation id under [`INSTALL_ID`] (so stamps
/// taken before the table was dropped and re-created, versions restarting at 0, cannot
/// match), and (re)creates the DDL event trigger, which needs a superuser. Idempotent.
/// Per-table triggers come from [`watch_table_sql`].
pub const INSTALL_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS querycache;
CREATE TABLE IF NOT EXISTS querycache.table_version (
    table_name text PRIMARY KEY,
    version    bigint NOT NULL
);
INSERT INTO querycache.table_version
    VALUES ('*install', (random() * 9e18)::bigint), ('*ddl', 0)
    ON CONFLICT (table_name) DO NOTHING;
CREATE OR REPLACE FUNCTION querycache.bump_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  relation text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  ancestor text;
  v bigint;
BEGIN
  FOR ancestor IN
    SELECT n.nspname || '.' || c.relname
      FROM pg_partition_ancestors(TG_RELID) WITH ORDINALITY AS a(relid, depth)
      JOIN pg_class c ON c.oid = a.relid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE a.relid <> TG_RELID
     ORDER BY a.depth DESC
  LOOP
    PERFORM 1 FROM querycache.table_version WHERE table_name = ancestor FOR UPDATE;
  END LOOP;
  INSERT INTO querycache.table_version AS t VALUES (relation, 1)
    ON CONFLICT (table_name) DO UPDATE SET version = t.version + 1
    RETURNING t.version INTO v;
  PERFORM pg_notify('querycache', v || ' ' || relation);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION querycache.bump_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  v bigint;
BEGIN
  UPDATE querycache.table_version SET version = version + 1
   WHERE table_name = '*ddl' RETURNING version INTO v;
  PERFORM pg_notify('querycache', coalesce(v, 0) || ' *ddl');
END $$;
GRANT USAGE ON SCHEMA querycache TO PUBLIC;
GRANT SELECT ON querycache.table_version TO PUBLIC;
DROP EVENT TRIGGER IF EXISTS querycache_ddl;
CREATE EVENT TRIGGER querycache_ddl ON ddl_command_end EXECUTE FUNCTION querycache.bump_ddl();
"#;

/// SQL that watches `schema.table`: its version row (starting at 0) and the
/// statement-level `BEFORE` trigger on INSERT, UPDATE, DELETE and TRUNCATE that bumps
/// it in the writing transaction and notifies at commit. Run it after [`INSTALL_SQL`]. `schema`
/// and `table` are the names as stored in the catalog; they are quoted here.
pub fn watch_table_sql(schema: &str, table: &str) -> String {
    format!(
        "INSERT INTO querycache.table_version VALUES ({name}, 0) ON CONFLICT (table_name) DO NOTHING;\n\
         CREATE OR REPLACE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE \
         ON {schema}.{table} FOR EACH STATEMENT EXECUTE FUNCTION querycache.bump_version();",
        name = literal(&format!("{schema}.{table}")),
        schema = ident(schema),
        table = ident(table),
    )
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Which tables to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchTables {
    /// Every ordinary and partitioned table outside the system schemas (`pg_catalog`,
    /// `information_schema`, `pg_toast`, temporary schemas) and `querycache`.
    All,
    /// These tables, each `table` (resolved along the connection's `search_path`) or
    /// `schema.table`, as `to_regclass` reads it (unquoted names fold to lower case).
    Only(Vec<String>),
}

impl WatchTables {
    /// [`WatchTables::Only`] from any list of names.
    pub fn only<S: Into<String>>(tables: impl IntoIterator<Item = S>) -> Self {
        WatchTables::Only(tables.into_iter().map(Into::into).collect())
    }
}

/// What [`status`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchStatus {
    /// The stored `*format`, `None` when nothing (or only the format-1 disk-tier SQL)
    /// is installed.
    pub format: Option<i64>,
    /// The DDL event trigger exists and is enabled.
    pub ddl_trigger: bool,
    /// Tables (`schema.table`) with the trigger and a version row, sorted.
    pub watched: Vec<String>,
    /// User tables (`schema.table`) without them, sorted.
    pub unwatched: Vec<String>,
}

impl WatchStatus {
    /// `true` when the definitions are of the current [`FORMAT`] and the DDL trigger is
    /// there: tables in [`watched`](Self::watched) are seen.
    pub fn current(&self) -> bool {
        self.format == Some(FORMAT) && self.ddl_trigger
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstallReport {
    /// The functions and event trigger were (re)created (a first install or a format
    /// upgrade).
    pub upgraded: bool,
    /// Tables whose trigger was created or replaced, sorted.
    pub triggers_created: Vec<String>,
}

const USER_TABLES: &str = r#"
SELECT n.nspname::text, c.relname::text,
       EXISTS (SELECT 1 FROM pg_trigger t
                WHERE t.tgrelid = c.oid AND t.tgname = 'querycache_version' AND NOT t.tgisinternal)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'querycache')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 1, 2
"#;

/// The state of the watch triggers in the pool's database.
///
/// # Errors
/// The database error, unchanged.
pub async fn status(pool: &PgPool) -> Result<WatchStatus, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    status_on(&mut conn).await
}

async fn status_on(conn: &mut sqlx::PgConnection) -> Result<WatchStatus, sqlx::Error> {
    let installed: bool =
        sqlx::query_scalar("SELECT to_regclass('querycache.table_version') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    let rows: Vec<(String, i64)> = if installed {
        sqlx::query_as("SELECT table_name, version FROM querycache.table_version")
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    let ddl_trigger: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'querycache_ddl' AND evtenabled <> 'D')",
    )
    .fetch_one(&mut *conn)
    .await?;
    let tables: Vec<(String, String, bool)> =
        sqlx::query_as(USER_TABLES).fetch_all(&mut *conn).await?;
    let has_row = |name: &str| rows.iter().any(|(n, _)| n == name);
    let mut status = WatchStatus {
        format: rows.iter().find(|(n, _)| n == FORMAT_ROW).map(|(_, v)| *v),
        ddl_trigger,
        ..WatchStatus::default()
    };
    for (schema, table, trigger) in tables {
        let name = format!("{schema}.{table}");
        if trigger && has_row(&name) {
            status.watched.push(name);
        } else {
            status.unwatched.push(name);
        }
    }
    Ok(status)
}

/// The `(schema, table)` pairs `tables` names, resolved by the server.
async fn targets(
    tx: &mut Transaction<'_, Postgres>,
    tables: &WatchTables,
) -> crate::Result<Vec<(String, String)>> {
    match tables {
        WatchTables::All => {
            let rows: Vec<(String, String, bool)> =
                sqlx::query_as(USER_TABLES).fetch_all(&mut **tx).await?;
            Ok(rows.into_iter().map(|(s, t, _)| (s, t)).collect())
        }
        WatchTables::Only(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let found: Option<(String, String)> = sqlx::query_as(
                    "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                )
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?;
                match found {
                    Some(pair) => out.push(pair),
                    None => {
                        return Err(crate::Error::Watch(format!(
                            "cannot watch {name:?}: no such table (ordinary or partitioned)"
                        )));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Install what is missing for `tables`: the functions and event trigger when absent or
/// of another [`FORMAT`] (then every existing trigger is replaced too), and the trigger
/// and version row of each table that lacks them. Idempotent; concurrent installs are
/// serialized by an advisory lock and run in one transaction, so a failure leaves the
/// database as it was. Does nothing (and needs no privilege) when everything is there.
///
/// Creating a trigger takes a `SHARE ROW EXCLUSIVE` lock on its table for the rest of
/// the transaction: writes to it wait for the install to commit.
///
/// # Errors
/// [`Error::Watch`](crate::Error::Watch) when the role may not create what is missing
/// (not the owner of a table, not a superuser for the event trigger), with the
/// database's message, or when an [`Only`](WatchTables::Only) table does not exist;
/// [`Error::Database`](crate::Error::Database) for other database errors.
pub async fn install(pool: &PgPool, tables: &WatchTables) -> crate::Result<InstallReport> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK)
        .execute(&mut *tx)
        .await?;
    let wanted = targets(&mut tx, tables).await?;
    let now = status_on(&mut tx).await?;
    let upgrade = !now.current();
    let missing: Vec<&(String, String)> = wanted
        .iter()
        .filter(|(s, t)| upgrade || !now.watched.contains(&format!("{s}.{t}")))
        .collect();
    if !upgrade && missing.is_empty() {
        return Ok(InstallReport::default());
    }
    let mut report = InstallReport {
        upgraded: upgrade,
        triggers_created: Vec::new(),
    };
    if upgrade {
        sqlx::raw_sql(INSTALL_SQL)
            .execute(&mut *tx)
            .await
            .map_err(|e| privilege("the querycache schema, functions and DDL event trigger", e))?;
        // Replace the triggers of an older format as well as the wanted ones.
        for name in &now.watched {
            if let Some((s, t)) = name.split_once('.') {
                run_watch(&mut tx, s, t).await?;
                report.triggers_created.push(name.clone());
            }
        }
    }
    for (schema, table) in missing {
        let name = format!("{schema}.{table}");
        if !report.triggers_created.contains(&name) {
            run_watch(&mut tx, schema, table).await?;
            report.triggers_created.push(name);
        }
    }
    sqlx::query(
        "INSERT INTO querycache.table_version VALUES ($1, $2) \
         ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version",
    )
    .bind(FORMAT_ROW)
    .bind(FORMAT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    report.triggers_created.sort();
    Ok(report)
}

async fn run_watch(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    table: &str,
) -> crate::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(watch_table_sql(schema, table)))
        .execute(&mut **tx)
        .await
        .map_err(|e| privilege(&format!("the trigger on {schema}.{table}"), e))?;
    Ok(())
}

/// A clear error for a role that may not create `what`, else the error unchanged.
fn privilege(what: &str, e: sqlx::Error) -> crate::Error {
    let denied = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "42501");
    if denied {
        crate::Error::Watch(format!(
            "this role may not create {what} ({e}); install as the tables' owner and a \
             superuser with `querycache watch install --database-url …`"
        ))
    } else {
        crate::Error::Database(e)
    }
}

/// Remove everything [`install`] created: the event trigger, every `querycache_version`
/// trigger and the `querycache` schema (versions included, so a later install gets a
/// new installation id and the disk tier drops its entries). Idempotent.
///
/// # Errors
/// The database error, unchanged (e.g. the role does not own the objects).
pub async fn uninstall(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("DROP EVENT TRIGGER IF EXISTS querycache_ddl")
        .execute(&mut *tx)
        .await?;
    let triggered: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE t.tgname = 'querycache_version' AND NOT t.tgisinternal",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (schema, table) in triggered {
        let sql = format!(
            "DROP TRIGGER IF EXISTS {TRIGGER} ON {}.{}",
            ident(&schema),
            ident(&table)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql("DROP SCHEMA IF EXISTS querycache CASCADE")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_sql_quotes_names() {
        let sql = watch_table_sql("public", "we\"ird");
        assert!(sql.contains("ON \"public\".\"we\"\"ird\""));
        assert!(sql.contains("'public.we\"ird'"));
    }
}
