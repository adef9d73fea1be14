//! Loading Pagila through sqlx: every table's rows arrive, the views work, and the one
//! view PostgreSQL 15 cannot create is skipped and reported rather than aborting the load.

mod common;

use querycache::datasets::pagila;
use sqlx::PgPool;

/// Figures from the dataset's README (`shared/datasets/pagila/README.md`).
const DOCUMENTED: &[(&str, i64)] = &[
    ("rental", 16_044),
    ("payment", 16_044),
    ("film", 1_000),
    ("customer", 599),
    ("actor", 200),
];

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM public.{table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("count public.{table}: {e}"))
}

#[tokio::test]
async fn loads_pagila_into_a_scratch_database() {
    let Some(pool) = common::scratch_database("qc_test_pagila_loader").await else {
        return;
    };
    let Some(dir) = common::pagila_dir() else {
        return;
    };
    assert!(
        !pagila::is_loaded(&pool)
            .await
            .expect("is_loaded on an empty database"),
        "an empty database must not count as loaded"
    );

    let report = pagila::load(&pool, &dir).await.expect("load Pagila");

    for &(table, documented) in DOCUMENTED {
        assert_eq!(count(&pool, table).await, documented, "rows in {table}");
    }
    // The report's COPY counts agree with what the server holds: rental is copied
    // directly, payment through its partitions.
    assert_eq!(
        report.rows("public", "rental").map(|r| r as i64),
        Some(count(&pool, "rental").await)
    );
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'public.payment'::regclass",
    )
    .fetch_all(&pool)
    .await
    .expect("list payment partitions");
    assert_eq!(partitions.len(), 8, "payment partitions: {partitions:?}");
    let copied_into_partitions: u64 = partitions
        .iter()
        .map(|p| {
            report
                .rows("public", p)
                .unwrap_or_else(|| panic!("no COPY into {p}"))
        })
        .sum();
    assert_eq!(copied_into_partitions as i64, count(&pool, "payment").await);
    assert!(
        report.objects_loaded > 100,
        "objects loaded: {}",
        report.objects_loaded
    );

    for view in ["film_list", "sales_by_film_category", "customer_list"] {
        let rows = count(&pool, view).await;
        assert!(rows > 0, "view {view} returned no rows");
    }
    // customer_list has one row per customer (it joins address, city, country).
    assert_eq!(count(&pool, "customer_list").await, 599);

    // On PostgreSQL < 17 the JSON_TABLE view is skipped and reported; on 17 it loads.
    let server_version: i32 =
        sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
            .fetch_one(&pool)
            .await
            .expect("server version");
    let view_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public.films_per_customer_rental') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("look up the JSON_TABLE view");
    let skipped_view: Vec<_> = report
        .skipped
        .iter()
        .filter(|s| s.object == "VIEW public.films_per_customer_rental")
        .collect();
    if server_version < 170_000 {
        assert!(!view_exists);
        assert_eq!(skipped_view.len(), 1, "skipped: {:?}", report.skipped);
        assert_eq!(skipped_view[0].file, pagila::SCHEMA_FILE);
        assert!(!skipped_view[0].error.is_empty());
    } else {
        assert!(view_exists);
        assert!(skipped_view.is_empty(), "skipped: {:?}", report.skipped);
    }
    // Nothing else is skipped but settings the server does not know.
    for skipped in &report.skipped {
        assert!(
            skipped.object == "VIEW public.films_per_customer_rental"
                || skipped.object.starts_with("SET "),
            "unexpected skip: {skipped:?}"
        );
    }

    assert!(
        pagila::is_loaded(&pool)
            .await
            .expect("is_loaded after load")
    );
    // The loader's connection carried `search_path = ''`; it must not have returned to
    // the pool.
    for _ in 0..8 {
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&pool)
            .await
            .expect("show search_path");
        assert_ne!(path, "", "the loader's session state leaked into the pool");
    }
    pool.close().await;
}

#[tokio::test]
async fn a_failing_entry_other_than_the_known_view_aborts_the_load() {
    let Some(pool) = common::scratch_database("qc_test_pagila_loader_fail").await else {
        return;
    };
    let Some(dir) = common::pagila_dir() else {
        return;
    };
    // A pre-existing table makes `CREATE TABLE public.actor` fail.
    sqlx::raw_sql("CREATE TABLE public.actor (x int)")
        .execute(&pool)
        .await
        .expect("create a conflicting table");
    let err = pagila::load(&pool, &dir).await.expect_err("load must fail");
    let message = err.to_string();
    assert!(message.contains("TABLE public.actor"), "{message}");
    assert!(matches!(err, querycache::Error::Dataset { .. }), "{err:?}");
    pool.close().await;
}

#[tokio::test]
async fn pagila_database_copies_a_loaded_template() {
    let Some(pool) = common::pagila_database("qc_test_pagila_from_template").await else {
        return;
    };
    assert!(pagila::is_loaded(&pool).await.expect("is_loaded"));
    for &(table, documented) in DOCUMENTED {
        assert_eq!(count(&pool, table).await, documented, "rows in {table}");
    }
    pool.close().await;
}
