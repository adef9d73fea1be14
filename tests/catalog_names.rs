//! The catalog's names against real Postgres: `search_path` resolution agrees with
//! Postgres's own (`to_regclass` under the same path), and function volatility reports
//! the most volatile overload.

mod common;

use common::{exec, rel};

use querycache::freshness::{Catalog, Volatility, parse_search_path};
use querycache::sql::RelationName;

#[tokio::test]
async fn search_path_resolution_agrees_with_postgres() {
    let Some(pool) = common::scratch_database("qc_test_catalog_search_path").await else {
        return;
    };
    exec(
        &pool,
        r#"CREATE SCHEMA s1;
         CREATE SCHEMA s2;
         CREATE TABLE s1.items (id int);
         CREATE TABLE s2.items (id int);
         CREATE TABLE s2.only_in_s2 (id int);
         CREATE SCHEMA "Mixed";
         CREATE TABLE "Mixed"."Items" (id int);
         CREATE SCHEMA postgres;
         CREATE TABLE postgres.mine (id int);"#,
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .expect("current_user");

    // Postgres's own answer: set the path on one connection and ask to_regclass.
    let mut conn = pool.acquire().await.expect("connection");
    let cases: &[(&str, &str)] = &[
        ("s1, s2", "items"),
        ("s2, s1", "items"),
        ("s1, s2", "only_in_s2"),
        ("\"Mixed\", s1", "\"Items\""),
        ("\"$user\", s1", "mine"),
        ("s1", "pg_class"),
    ];
    for &(path, name) in cases {
        sqlx::query("SELECT set_config('search_path', $1, false)")
            .bind(path)
            .execute(&mut *conn)
            .await
            .expect("set search_path");
        let postgres: String = sqlx::query_scalar(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("to_regclass({name}) with {path}: {e}"));
        let folded = name.trim_matches('"');
        let ours = catalog.resolve(&RelationName::new(None, folded), &parse_search_path(path));
        assert_eq!(ours.to_string(), postgres, "{name} with search_path {path}");
    }
    conn.close().await.expect("close");
    assert_eq!(
        user, "postgres",
        "the $user case assumes the test role is postgres"
    );

    // Qualified names pass through, even unknown ones.
    assert_eq!(
        catalog.resolve(&rel("s9.anything"), &[]),
        rel("s9.anything")
    );
    // Not found anywhere: the first existing schema of the path (where CREATE TABLE
    // would put it), skipping pg_temp and missing schemas.
    let path = parse_search_path("pg_temp, missing, s2, s1");
    assert_eq!(
        catalog.resolve(&RelationName::new(None, "new_table"), &path),
        rel("s2.new_table")
    );
    // The two spellings close separately.
    let s1_items = catalog.write_closure(&[rel("s1.items")]);
    assert_eq!(s1_items.relations, vec![rel("s1.items")]);
    assert!(catalog.contains(&rel("s2.items")));
    assert!(!catalog.contains(&rel("s2.new_table")));
    pool.close().await;
}

#[tokio::test]
async fn function_volatility_reports_the_most_volatile_overload() {
    let Some(pool) = common::scratch_database("qc_test_catalog_volatility").await else {
        return;
    };
    exec(
        &pool,
        "CREATE FUNCTION twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';
         CREATE FUNCTION twice(text) RETURNS text VOLATILE LANGUAGE sql AS 'SELECT $1 || $1';
         CREATE FUNCTION pure(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1';
         CREATE SCHEMA other;
         CREATE FUNCTION other.pure(int) RETURNS int STABLE LANGUAGE sql AS 'SELECT $1';",
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");
    assert_eq!(
        catalog.function_volatility("twice"),
        Some(Volatility::Volatile)
    );
    assert_eq!(
        catalog.function_volatility("public.pure"),
        Some(Volatility::Immutable)
    );
    assert_eq!(
        catalog.function_volatility("other.pure"),
        Some(Volatility::Stable)
    );
    assert_eq!(
        catalog.function_volatility("pure"),
        Some(Volatility::Stable)
    );
    assert_eq!(
        catalog.function_volatility("lower"),
        Some(Volatility::Immutable)
    );
    assert_eq!(catalog.function_volatility("now"), Some(Volatility::Stable));
    assert_eq!(
        catalog.function_volatility("random"),
        Some(Volatility::Volatile)
    );
    assert_eq!(catalog.function_volatility("no_such_function"), None);
    pool.close().await;
}
