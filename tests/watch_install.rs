//! The watch triggers' install routine against a real Postgres: idempotent, versioned
//! (an older format's functions and triggers are replaced), reported by `status`,
//! removed by `uninstall`; a role that may not create triggers gets a clear error
//! from `build()` and builds fine once an owner installed them; a transaction touching
//! many tables invalidates all of them; tables left out of `Only` are counted as
//! unwatched and served as without watching.

mod common;

use querycache::freshness::watch::{self, WatchTables};
use querycache::{CachedQuery, Error, QueryCache};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::time::Duration;

async fn setup(name: &str) -> Option<PgPool> {
    let pool = common::scratch_database(name).await?;
    common::exec(
        &pool,
        "CREATE TABLE film (id int PRIMARY KEY, title text NOT NULL);
         CREATE TABLE staff (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR');
         INSERT INTO staff VALUES (1, 'Mike');",
    )
    .await;
    Some(pool)
}

/// Wait until every write committed so far is applied to `cache`.
async fn fence(cache: &QueryCache<sqlx::Postgres>) {
    cache
        .sync_external_writes(Duration::from_secs(5))
        .await
        .expect("fence");
}

#[tokio::test]
async fn install_is_idempotent_versioned_and_removable() {
    let Some(pool) = setup("qc_watch_install").await else {
        return;
    };
    let before = watch::status(&pool).await.expect("status");
    assert_eq!(before.format, None);
    assert_eq!(before.unwatched, ["public.film", "public.staff"]);

    let only = WatchTables::only(["film"]);
    let first = watch::install(&pool, &only).await.expect("install");
    assert!(first.upgraded);
    assert_eq!(first.triggers_created, ["public.film"]);
    let again = watch::install(&pool, &only).await.expect("install again");
    assert_eq!(again, Default::default(), "nothing missing, nothing done");
    let now = watch::status(&pool).await.expect("status");
    assert!(now.current());
    assert_eq!(now.watched, ["public.film"]);
    assert_eq!(now.unwatched, ["public.staff"]);

    // An older format (the disk tier's first triggers did not notify): an install
    // replaces the function, and notifications flow.
    common::exec(
        &pool,
        "DELETE FROM querycache.table_version WHERE table_name = '*format';
         CREATE OR REPLACE FUNCTION querycache.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           UPDATE querycache.table_version SET version = version + 1
            WHERE table_name = TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
           RETURN NULL;
         END $$;",
    )
    .await;
    assert!(!watch::status(&pool).await.expect("status").current());
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(only.clone())
        .build()
        .await
        .expect("build upgrades");
    assert!(watch::status(&pool).await.expect("status").current());
    let title = || async {
        sqlx::query_scalar::<_, String>("SELECT title FROM film WHERE id = 1")
            .fetch_one_cached(&cache)
            .await
            .expect("read")
    };
    assert_eq!(title().await, "ACADEMY DINOSAUR");
    common::exec(&pool, "UPDATE film SET title = 'ACE GOLDFINGER'").await;
    fence(&cache).await;
    assert_eq!(
        title().await,
        "ACE GOLDFINGER",
        "the upgraded trigger notifies"
    );
    drop(cache);

    watch::uninstall(&pool).await.expect("uninstall");
    watch::uninstall(&pool).await.expect("uninstall twice");
    let gone = watch::status(&pool).await.expect("status");
    assert_eq!(gone.format, None);
    assert!(!gone.ddl_trigger);
    assert!(gone.watched.is_empty());
    common::exec(&pool, "UPDATE film SET title = 'X'").await;
}

#[tokio::test]
async fn a_role_that_may_not_create_triggers_gets_a_clear_error() {
    let Some(pool) = setup("qc_watch_roles").await else {
        return;
    };
    common::exec(
        &pool,
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qc_watch_app') THEN
             CREATE ROLE qc_watch_app LOGIN;
           END IF;
         END $$;
         GRANT SELECT, UPDATE ON film, staff TO qc_watch_app;",
    )
    .await;
    let options: PgConnectOptions = (*pool.connect_options()).clone().username("qc_watch_app");
    let app = PgPool::connect_with(options).await.expect("connect as app");
    let err = QueryCache::builder(app.clone())
        .watch_tables(WatchTables::All)
        .build()
        .await
        .expect_err("the app role may not create triggers");
    assert!(matches!(err, Error::Watch(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("querycache watch install"), "{message}");

    // The owner installs (as `querycache watch install` does); the app role builds and
    // its cache hears writes made by any role.
    watch::install(&pool, &WatchTables::All)
        .await
        .expect("install as owner");
    let cache = QueryCache::builder(app.clone())
        .watch_tables(WatchTables::All)
        .build()
        .await
        .expect("nothing to install");
    let name = || async {
        sqlx::query_scalar::<_, String>("SELECT name FROM staff WHERE id = 1")
            .fetch_one_cached(&cache)
            .await
            .expect("read")
    };
    assert_eq!(name().await, "Mike");
    sqlx::query("UPDATE staff SET name = 'Jon'")
        .execute(&app)
        .await
        .expect("the app role's write fires the SECURITY DEFINER trigger");
    fence(&cache).await;
    assert_eq!(name().await, "Jon");
}

#[tokio::test]
async fn one_transaction_touching_many_tables_invalidates_all_of_them() {
    let Some(pool) = setup("qc_watch_many").await else {
        return;
    };
    const N: usize = 300;
    let ddl: String = (0..N)
        .map(|i| format!("CREATE TABLE t{i} (n int NOT NULL); INSERT INTO t{i} VALUES (0);"))
        .collect();
    common::exec(&pool, &ddl).await;
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(WatchTables::All)
        .build()
        .await
        .expect("build");
    let read = |i: usize| {
        let cache = cache.clone();
        async move {
            sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(format!("SELECT n FROM t{i}")))
                .fetch_one_cached(&cache)
                .await
                .expect("read")
        }
    };
    for i in 0..N {
        assert_eq!(read(i).await, 0);
        assert_eq!(read(i).await, 0);
    }
    let hits = cache.stats().hits;
    assert!(hits >= N as u64);
    let updates: String = (0..N)
        .map(|i| format!("UPDATE t{i} SET n = 1; UPDATE t{i} SET n = n + 1;"))
        .collect();
    common::exec(&pool, &format!("BEGIN; {updates} COMMIT;")).await;
    cache
        .sync_external_writes(Duration::from_secs(10))
        .await
        .expect("fence");
    for i in 0..N {
        assert_eq!(read(i).await, 2, "t{i}");
    }
}

#[tokio::test]
async fn tables_left_out_of_only_are_counted_and_served_as_without_watching() {
    let Some(pool) = setup("qc_watch_only").await else {
        return;
    };
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(WatchTables::only(["film"]))
        .build()
        .await
        .expect("build");
    for _ in 0..2 {
        let _: String = sqlx::query_scalar("SELECT name FROM staff WHERE id = 1")
            .fetch_one_cached(&cache)
            .await
            .expect("read");
        let _: String = sqlx::query_scalar("SELECT title FROM film WHERE id = 1")
            .fetch_one_cached(&cache)
            .await
            .expect("read");
    }
    let stats = cache.stats();
    assert_eq!(stats.unwatched_reads, 2, "the staff reads: {stats:?}");
    assert_eq!(stats.hits, 2);
    let missing = QueryCache::builder(pool.clone())
        .watch_tables(WatchTables::only(["no_such_table"]))
        .build()
        .await
        .expect_err("unknown table");
    assert!(matches!(missing, Error::Watch(_)), "{missing:?}");
}

/// DDL made around the cache: a view redefined elsewhere is re-read, and a table
/// created later gets its trigger (under `All`), so its writes are seen too.
#[tokio::test]
async fn ddl_made_elsewhere_invalidates_and_new_tables_are_watched() {
    let Some(pool) = setup("qc_watch_ddl").await else {
        return;
    };
    common::exec(&pool, "CREATE VIEW titles AS SELECT title FROM film").await;
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(WatchTables::All)
        .build()
        .await
        .expect("build");
    let view = || async {
        sqlx::query_scalar::<_, String>("SELECT title FROM titles")
            .fetch_one_cached(&cache)
            .await
            .expect("read view")
    };
    assert_eq!(view().await, "ACADEMY DINOSAUR");
    assert_eq!(view().await, "ACADEMY DINOSAUR");
    common::exec(
        &pool,
        "CREATE OR REPLACE VIEW titles AS SELECT lower(title) AS title FROM film",
    )
    .await;
    fence(&cache).await;
    assert_eq!(view().await, "academy dinosaur", "the redefined view");

    common::exec(
        &pool,
        "CREATE TABLE later (id int PRIMARY KEY, n int NOT NULL); INSERT INTO later VALUES (1, 0);",
    )
    .await;
    fence(&cache).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !watch::status(&pool)
        .await
        .expect("status")
        .watched
        .contains(&"public.later".to_owned())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener watched the new table"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later = || async {
        sqlx::query_scalar::<_, i32>("SELECT n FROM later WHERE id = 1")
            .fetch_one_cached(&cache)
            .await
            .expect("read later")
    };
    // Wait until the coverage knows the table as watched and the read is cached.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let before = cache.stats();
        assert_eq!(later().await, 0);
        assert_eq!(later().await, 0);
        let after = cache.stats();
        if after.hits > before.hits && after.unwatched_reads == before.unwatched_reads {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "later is cached and watched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::exec(&pool, "UPDATE later SET n = 5").await;
    fence(&cache).await;
    assert_eq!(later().await, 5);
}

/// The listener holds the cache weakly: dropping the last handle ends it and closes
/// its connection (within about a second, its idle ping interval).
#[tokio::test]
async fn dropping_the_cache_ends_the_listener() {
    let Some(pool) = setup("qc_watch_drop").await else {
        return;
    };
    let cache = QueryCache::builder(pool.clone())
        .watch_tables(WatchTables::All)
        .build()
        .await
        .expect("build");
    let pid = i32::try_from(cache.watch_listener_pid().expect("live")).expect("pid");
    let name: String =
        sqlx::query_scalar("SELECT application_name FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(&pool)
            .await
            .expect("the listener's session");
    assert_eq!(name, "querycache watch listener");
    drop(cache);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(&pool)
                .await
                .expect("activity");
        if !alive {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listener's connection closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two writers of one watched table wait on its version row instead of deadlocking: a
/// transaction that wrote the table updates a row a concurrent single-statement writer
/// is about to update. With the trigger `AFTER` each statement the single statement
/// would hold its row and wait for the version row while the transaction waits for the
/// row: Postgres would abort one with 40P01.
#[tokio::test]
async fn writers_of_one_table_wait_instead_of_deadlocking() {
    let Some(pool) = setup("qc_watch_deadlock").await else {
        return;
    };
    common::exec(&pool, "INSERT INTO film VALUES (2, 'ACE GOLDFINGER')").await;
    watch::install(&pool, &WatchTables::All)
        .await
        .expect("install");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("UPDATE film SET title = title || '!' WHERE id = 2")
        .execute(&mut *tx)
        .await
        .expect("first write");
    let other = pool.clone();
    let single = tokio::spawn(async move {
        sqlx::query("UPDATE film SET title = title || '?' WHERE id = 1")
            .execute(&other)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("UPDATE film SET title = title || '!' WHERE id = 1")
        .execute(&mut *tx)
        .await
        .expect("no deadlock: the single statement waits before locking its row");
    tx.commit().await.expect("commit");
    single
        .await
        .expect("task")
        .expect("the single statement completes after the commit");
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM film ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("titles");
    assert_eq!(titles, ["ACADEMY DINOSAUR!?", "ACE GOLDFINGER!"]);
}

/// A transaction writing a partitioned table through its parent and a writer straight
/// into a partition wait on the parent's version row instead of deadlocking: the
/// transaction updates a partition row through the parent (holding `part`'s version
/// row and the table row), a single statement targets that row through the partition,
/// then the transaction writes the partition itself. With each trigger locking only its
/// own table's version row, the single statement would hold `part_lo`'s row and wait
/// for the table row while the transaction waits for `part_lo`'s row (40P01;
/// `tests/watch_freshness.rs` hit it). The partition's trigger locks its ancestors'
/// rows first.
#[tokio::test]
async fn writers_through_a_parent_and_its_partition_wait_instead_of_deadlocking() {
    let Some(pool) = setup("qc_watch_deadlock_part").await else {
        return;
    };
    common::exec(
        &pool,
        "CREATE TABLE part (id int PRIMARY KEY, n bigint NOT NULL) PARTITION BY RANGE (id);
         CREATE TABLE part_lo PARTITION OF part FOR VALUES FROM (1) TO (5);
         INSERT INTO part SELECT g, 0 FROM generate_series(1, 4) g;",
    )
    .await;
    watch::install(&pool, &WatchTables::All)
        .await
        .expect("install");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("UPDATE part SET n = n + 1 WHERE id = 2")
        .execute(&mut *tx)
        .await
        .expect("write through the parent");
    let other = pool.clone();
    let single = tokio::spawn(async move {
        sqlx::query("UPDATE part_lo SET n = n + 10 WHERE id = 2")
            .execute(&other)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("UPDATE part_lo SET n = n + 1 WHERE id = 3")
        .execute(&mut *tx)
        .await
        .expect("no deadlock: the partition's writer waits on the parent's version row");
    tx.commit().await.expect("commit");
    single
        .await
        .expect("task")
        .expect("the single statement completes after the commit");
    let ns: Vec<i64> = sqlx::query_scalar("SELECT n FROM part ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("values");
    assert_eq!(ns, [0, 11, 1, 0]);
}
