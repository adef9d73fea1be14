//! Freshness across restarts, against a real Postgres: entries written by an earlier
//! process are served without touching the database only while the tables they read
//! are unchanged. A write made while no process ran (here: plain sqlx, the cache
//! closed) must drop exactly the entries that read the written table; a rolled-back
//! write drops nothing; DDL drops everything; an entry that read an unwatched table
//! never outlives its session. The persistent per-table versions come from Postgres itself
//! (statement-level trigger, bumped in the writing transaction), as the rule in
//! `querycache::tier::disk` describes; the recovery filter applies the rule at open.

mod common;

use querycache::tier::disk::DiskStore;
use querycache::tier::disk::restart::{self, Stamp, TableVersions};
use sqlx::PgPool;
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE film (id int PRIMARY KEY, title text NOT NULL);
CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE category (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE staff (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR');
INSERT INTO actor VALUES (1, 'PENELOPE GUINESS');
INSERT INTO category VALUES (1, 'Action');
INSERT INTO staff VALUES (1, 'Mike');
"#;

/// Tables whose writes bump a persistent version; `staff` is left unwatched.
const WATCHED: [&str; 3] = ["film", "actor", "category"];

/// Each cached read: its key, its SQL, and its read set.
const READS: [(u128, &str, &str); 4] = [
    (1, "SELECT title FROM film WHERE id = 1", "public.film"),
    (2, "SELECT name FROM actor WHERE id = 1", "public.actor"),
    (
        3,
        "SELECT name FROM category WHERE id = 1",
        "public.category",
    ),
    (4, "SELECT name FROM staff WHERE id = 1", "public.staff"),
];

async fn versions(pool: &PgPool) -> TableVersions {
    TableVersions::load(pool).await.expect("read versions")
}

async fn run(pool: &PgPool, sql: &'static str) -> Vec<u8> {
    let (text,): (String,) = sqlx::query_as(sql).fetch_one(pool).await.expect("query");
    text.into_bytes()
}

/// The stamps a fill records (the session has seen no write: every generation is 0),
/// encoded as the blob stored with the entry.
fn stamps(versions: &TableVersions, table: &str) -> Vec<u8> {
    let generations = [(table.to_owned(), 0), ("*".to_owned(), 0)];
    serde_json::to_vec(&versions.stamps(&generations)).expect("encode stamps")
}

/// The rule at open: keep an entry only if its stamps are all still current.
fn open_with_rule(dir: &Path, now: TableVersions) -> DiskStore {
    DiskStore::builder(16 << 20)
        .with_recovery_filter(move |entry| {
            let stamps: Vec<Stamp> =
                serde_json::from_slice(entry.generations).expect("decode stamps");
            now.still_fresh(&stamps)
        })
        .open(dir)
        .expect("open store")
}

#[tokio::test]
async fn a_write_while_the_process_was_down_drops_exactly_the_entries_that_read_it() {
    let Some(pool) = common::scratch_database("qc_disk_restart_freshness").await else {
        return;
    };
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    sqlx::raw_sql(restart::INSTALL_SQL)
        .execute(&pool)
        .await
        .expect("install");
    for table in WATCHED {
        let sql = restart::watch_table_sql("public", table);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .expect("watch");
    }
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
    assert_eq!(
        store.get(4).expect("get"),
        None,
        "staff is not watched: never kept across a restart"
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
    assert_eq!(store.stats().recovery_dropped, 3);
    store.close().expect("close");

    // DDL while down changes what a query may return without writing a row: every
    // entry of an earlier session is dropped.
    sqlx::raw_sql("CREATE VIEW actor_names AS SELECT name FROM actor")
        .execute(&pool)
        .await
        .expect("ddl");
    let store = open_with_rule(dir.path(), versions(&pool).await);
    assert_eq!(store.get(2).expect("get"), None, "DDL ran while down");
}
