//! Freshness across restarts, against a real Postgres: entries written by an earlier
//! process are served without touching the database only while the tables they read
//! are unchanged. A write made while no process ran (here: plain sqlx, the cache
//! closed) must drop exactly the entries that read the written table; a rolled-back
//! write drops nothing. The persistent per-table versions come from Postgres itself
//! (statement-level trigger, bumped in the writing transaction), as the rule in
//! `querycache::tier::disk` describes; the recovery filter applies the rule at open.

mod common;

use querycache::tier::disk::{DiskStore, RecoveredEntry};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::Path;

const INSTALL: &str = r#"
CREATE SCHEMA querycache;
CREATE TABLE querycache.table_version (table_name text PRIMARY KEY, version bigint NOT NULL);
CREATE FUNCTION querycache.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO querycache.table_version VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 1)
  ON CONFLICT (table_name) DO UPDATE SET version = querycache.table_version.version + 1;
  RETURN NULL;
END $$;
CREATE TABLE film (id int PRIMARY KEY, title text NOT NULL);
CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE category (id int PRIMARY KEY, name text NOT NULL);
CREATE TRIGGER querycache_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON film
  FOR EACH STATEMENT EXECUTE FUNCTION querycache.bump_version();
CREATE TRIGGER querycache_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON actor
  FOR EACH STATEMENT EXECUTE FUNCTION querycache.bump_version();
CREATE TRIGGER querycache_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON category
  FOR EACH STATEMENT EXECUTE FUNCTION querycache.bump_version();
INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR');
INSERT INTO actor VALUES (1, 'PENELOPE GUINESS');
INSERT INTO category VALUES (1, 'Action');
"#;

/// Each cached read: its key, its SQL, and its read set.
const READS: [(u128, &str, &str); 3] = [
    (1, "SELECT title FROM film WHERE id = 1", "public.film"),
    (2, "SELECT name FROM actor WHERE id = 1", "public.actor"),
    (
        3,
        "SELECT name FROM category WHERE id = 1",
        "public.category",
    ),
];

type Versions = HashMap<String, i64>;

async fn versions(pool: &PgPool) -> Versions {
    sqlx::query_as::<_, (String, i64)>("SELECT table_name, version FROM querycache.table_version")
        .fetch_all(pool)
        .await
        .expect("read versions")
        .into_iter()
        .collect()
}

async fn run(pool: &PgPool, sql: &'static str) -> Vec<u8> {
    let (text,): (String,) = sqlx::query_as(sql).fetch_one(pool).await.expect("query");
    text.into_bytes()
}

/// The stamps a fill records: its read set's versions as read at startup.
fn stamps(versions: &Versions, table: &str) -> Vec<u8> {
    let stamp = vec![(table.to_string(), versions.get(table).copied().unwrap_or(0))];
    serde_json::to_vec(&stamp).expect("encode stamps")
}

/// The rule at open: keep an entry only if every stamped version is still current.
fn fresh(versions: &Versions, entry: &RecoveredEntry<'_>) -> bool {
    let stamps: Vec<(String, i64)> =
        serde_json::from_slice(entry.generations).expect("decode stamps");
    stamps
        .iter()
        .all(|(table, v)| versions.get(table).copied().unwrap_or(0) == *v)
}

fn open_with_rule(dir: &Path, now: Versions) -> DiskStore {
    DiskStore::builder(16 << 20)
        .with_recovery_filter(move |entry| fresh(&now, entry))
        .open(dir)
        .expect("open store")
}

#[tokio::test]
async fn a_write_while_the_process_was_down_drops_exactly_the_entries_that_read_it() {
    let Some(pool) = common::scratch_database("qc_disk_restart_freshness").await else {
        return;
    };
    sqlx::raw_sql(INSTALL)
        .execute(&pool)
        .await
        .expect("install");
    let dir = tempfile::tempdir().expect("tempdir");

    // Session 1: fill every read, stamped with the versions read at startup.
    let startup = versions(&pool).await;
    let store = open_with_rule(dir.path(), startup.clone());
    for (key, sql, table) in READS {
        store
            .put(key, &run(&pool, sql).await, &stamps(&startup, table), None)
            .expect("put");
    }
    let first_session = store.session();
    store.close().expect("close");

    // The process is down; other clients write.
    sqlx::query("UPDATE film SET title = 'ACE GOLDFINGER' WHERE id = 1")
        .execute(&pool)
        .await
        .expect("update");
    sqlx::raw_sql("TRUNCATE category")
        .execute(&pool)
        .await
        .expect("truncate");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("UPDATE actor SET name = 'NICK WAHLBERG' WHERE id = 1")
        .execute(&mut *tx)
        .await
        .expect("update");
    tx.rollback().await.expect("rollback");

    // Without the rule, the restarted process would serve the old film title.
    let unchecked = DiskStore::open(dir.path(), 16 << 20).expect("open");
    let stale = unchecked.get(1).expect("get").expect("entry on disk");
    assert_eq!(stale.value, b"ACADEMY DINOSAUR");
    assert_ne!(
        stale.value,
        run(&pool, READS[0].1).await,
        "the danger the rule removes"
    );
    drop(unchecked);

    // Session 3 with the rule: versions read at startup, filter at open.
    let store = open_with_rule(dir.path(), versions(&pool).await);
    assert_eq!(
        store.get(1).expect("get"),
        None,
        "film was written while down"
    );
    assert_eq!(
        store.get(3).expect("get"),
        None,
        "category was truncated while down"
    );
    let actor = store
        .get(2)
        .expect("get")
        .expect("actor only saw a rollback: still fresh");
    assert_eq!(
        actor.value,
        run(&pool, READS[1].1).await,
        "served without Postgres, and correct"
    );
    assert_eq!(
        actor.session, first_session,
        "an entry of an earlier session"
    );
    assert!(actor.session < store.session());
    assert_eq!(store.stats().recovery_dropped, 2);
}
