//! The pgbench generator against the real thing: the tables `querycache::datasets::
//! pgbench::load` makes must be indistinguishable from those of `pgbench -i` (schema,
//! storage options, keys, and every row), and an interrupted load must leave nothing a
//! later run would mistake for a complete dataset.

mod common;

use querycache::datasets::pgbench;
use sqlx::PgPool;
use std::process::Command;

/// Everything about the pgbench tables that a benchmark could notice, as text: columns
/// with types and nullability, storage options, primary keys, row counts, and a digest
/// of every row.
async fn describe(pool: &PgPool) -> Vec<String> {
    let mut facts: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s.%s %s(%s) nullable=%s', table_name, column_name, data_type, \
                character_maximum_length, is_nullable) \
         FROM information_schema.columns WHERE table_name LIKE 'pgbench\\_%' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .expect("columns");
    facts.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('table %s options %s', relname, reloptions) FROM pg_class \
             WHERE relname LIKE 'pgbench\\_%' AND relkind = 'r' ORDER BY relname",
        )
        .fetch_all(pool)
        .await
        .expect("reloptions"),
    );
    facts.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('key %s %s', conrelid::regclass, pg_get_constraintdef(oid)) \
             FROM pg_constraint WHERE conrelid::regclass::text LIKE 'pgbench\\_%' ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .expect("constraints"),
    );
    for (table, key) in [
        ("pgbench_branches", "bid"),
        ("pgbench_tellers", "tid"),
        ("pgbench_accounts", "aid"),
        ("pgbench_history", "aid"),
    ] {
        let sql = format!(
            "SELECT format('rows %s %s digest %s', '{table}', count(*), \
                    md5(coalesce(string_agg(t::text, '|' ORDER BY {key}), ''))) FROM {table} t"
        );
        facts.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .expect("row digest"),
        );
    }
    facts
}

/// `DATABASE_URL` with its database replaced by `name`.
fn url_of(database_url: &str, name: &str) -> String {
    let without_query = database_url.split('?').next().unwrap_or(database_url);
    let (scheme, rest) = without_query
        .split_once("://")
        .expect("a URL with a scheme");
    let server = rest.split_once('/').map_or(rest, |(server, _)| server);
    format!("{scheme}://{server}/{name}")
}

#[tokio::test]
async fn generated_tables_are_the_ones_pgbench_i_makes() {
    let Some(ours) = common::scratch_database("qc_test_pgbench_ours").await else {
        return;
    };
    let Some(theirs) = common::scratch_database("qc_test_pgbench_theirs").await else {
        return;
    };
    let Some(url) = common::database_url() else {
        return;
    };
    let status = match Command::new("pgbench")
        .args(["-i", "-q", "-s", "2"])
        .arg(url_of(&url, "qc_test_pgbench_theirs"))
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            eprintln!("SKIP: pgbench is not runnable here ({e}); nothing to compare against");
            return;
        }
    };
    assert!(status.success(), "pgbench -i failed: {status}");

    let mut conn = ours.acquire().await.expect("connection");
    let mut last_progress = 0;
    pgbench::load(&mut conn, 2, &mut |rows| last_progress = rows)
        .await
        .expect("load");
    drop(conn);

    let (ours_facts, theirs_facts) = (describe(&ours).await, describe(&theirs).await);
    assert_eq!(ours_facts, theirs_facts);
    assert!(
        theirs_facts
            .iter()
            .any(|f| f.starts_with("rows pgbench_accounts 200000 ")),
        "pgbench -i -s 2 makes 200 000 accounts: {theirs_facts:?}"
    );
    assert_eq!(
        last_progress,
        2 * (1 + 10 + 100_000),
        "progress ends at the row count"
    );
}

#[tokio::test]
async fn an_interrupted_load_is_not_mistaken_for_a_complete_one() {
    let Some(pool) = common::scratch_database("qc_test_pgbench_interrupted").await else {
        return;
    };
    let mut conn = pool.acquire().await.expect("connection");
    assert!(
        !pgbench::is_loaded(&mut conn, 3).await.expect("is_loaded"),
        "empty database"
    );

    // Cancel the load as soon as it reports its first chunk of rows.
    let (sent, mut first_chunk) = tokio::sync::watch::channel(0_u64);
    let mut report = |rows| {
        sent.send_replace(rows);
    };
    tokio::select! {
        result = pgbench::load(&mut conn, 3, &mut report) => {
            panic!("the load finished before it could be interrupted: {result:?}")
        }
        _ = first_chunk.wait_for(|rows| *rows > 0) => {}
    }
    // The cancelled load left its connection mid-COPY: throw it away, as a crash would.
    conn.close_on_drop();
    drop(conn);

    let mut conn = pool.acquire().await.expect("connection");
    assert!(!pgbench::is_loaded(&mut conn, 3).await.expect("is_loaded"));
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgbench\\_%'")
            .fetch_one(&mut *conn)
            .await
            .expect("count tables");
    assert_eq!(leftovers, 0, "an interrupted load leaves no tables behind");

    pgbench::load(&mut conn, 1, &mut |_| {})
        .await
        .expect("load after an interruption");
    assert!(pgbench::is_loaded(&mut conn, 1).await.expect("is_loaded"));
    assert!(
        !pgbench::is_loaded(&mut conn, 3).await.expect("is_loaded"),
        "marker names the scale"
    );
}
