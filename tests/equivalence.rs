//! Every cached read form returns exactly what plain sqlx returns — on the miss that
//! fills and on the hit after it — for the common Postgres types, NULLs and enums, and
//! errors come back as sqlx's own.

mod common;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use querycache::{CachedQuery, QueryCache};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "mood", rename_all = "lowercase")]
enum Mood {
    Happy,
    Sad,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
struct Everything {
    small: i16,
    int: Option<i32>,
    big: i64,
    num: Option<Decimal>,
    txt: Option<String>,
    flag: Option<bool>,
    ts: Option<NaiveDateTime>,
    tstz: Option<DateTime<Utc>>,
    day: Option<NaiveDate>,
    id: Option<Uuid>,
    doc: Option<serde_json::Value>,
    docb: Option<serde_json::Value>,
    ints: Option<Vec<i32>>,
    texts: Option<Vec<Option<String>>>,
    bytes: Option<Vec<u8>>,
    mood: Option<Mood>,
}

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE everything (
    small int2 NOT NULL, int int4, big int8 NOT NULL, num numeric, txt text, flag bool,
    ts timestamp, tstz timestamptz, day date, id uuid, doc json, docb jsonb,
    ints int4[], texts text[], bytes bytea, mood mood
);
INSERT INTO everything VALUES
 (1, 42, 9000000000, 12345.678900, 'héllo ✓', true, '2024-02-29 12:34:56.789',
  '2024-02-29 12:34:56.789+05:30', '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"k": [1, "two", null], "n": 1.5}', '{"b": {"c": true}}', '{1,2,3}', '{"a","b c",""}',
  '\xdeadbeef', 'happy'),
 (2, NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, 0, -0.5, '', false, '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '0001-01-01',
  '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}', '{NULL}', '\x', 'sad');
"#;

const SELECT_ALL: &str = "SELECT * FROM everything ORDER BY small";

async fn setup(name: &str) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::scratch_database(name).await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    let cache = QueryCache::builder(pool.clone())
        .build()
        .await
        .expect("build");
    Some((pool, cache))
}

#[tokio::test]
async fn typed_rows_equal_plain_sqlx_on_miss_and_hit() {
    let Some((pool, cache)) = setup("qc_test_equiv_rows").await else {
        return;
    };
    let plain: Vec<Everything> = sqlx::query_as(SELECT_ALL)
        .fetch_all(&pool)
        .await
        .expect("plain");
    assert_eq!(plain.len(), 3);
    for round in 0..2 {
        let cached: Vec<Everything> = sqlx::query_as(SELECT_ALL)
            .fetch_all_cached(&cache)
            .await
            .expect("cached");
        assert_eq!(cached, plain, "round {round}");
    }
    let shared = sqlx::query_as::<_, Everything>(SELECT_ALL)
        .fetch_all_shared(&cache)
        .await
        .expect("shared");
    assert_eq!(&shared[..], &plain[..]);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.fills), (1, 2, 1));
}

#[tokio::test]
async fn one_optional_and_scalar_forms_equal_plain_sqlx() {
    let Some((pool, cache)) = setup("qc_test_equiv_forms").await else {
        return;
    };
    let by_key = "SELECT * FROM everything WHERE small = $1";
    for round in 0..2 {
        for key in [1_i16, 2, 3] {
            let plain: Everything = sqlx::query_as(by_key)
                .bind(key)
                .fetch_one(&pool)
                .await
                .expect("plain");
            let cached: Everything = sqlx::query_as(by_key)
                .bind(key)
                .fetch_one_cached(&cache)
                .await
                .expect("cached");
            assert_eq!(cached, plain, "round {round} key {key}");
        }
        let plain: Option<Everything> = sqlx::query_as(by_key)
            .bind(99_i16)
            .fetch_optional(&pool)
            .await
            .expect("plain");
        let cached: Option<Everything> = sqlx::query_as(by_key)
            .bind(99_i16)
            .fetch_optional_cached(&cache)
            .await
            .expect("cached");
        assert_eq!((cached, plain), (None, None));

        let scalar = "SELECT txt FROM everything ORDER BY small";
        let plain: Vec<Option<String>> = sqlx::query_scalar(scalar)
            .fetch_all(&pool)
            .await
            .expect("plain");
        let cached: Vec<Option<String>> = sqlx::query_scalar(scalar)
            .fetch_all_cached(&cache)
            .await
            .expect("cached");
        assert_eq!(cached, plain);
        let first: Option<String> = sqlx::query_scalar(scalar)
            .fetch_one_cached(&cache)
            .await
            .expect("cached");
        assert_eq!(first, plain[0]);
    }
    assert!(cache.stats().hits >= 6, "{:?}", cache.stats());
}

#[tokio::test]
async fn query_builder_output_is_cacheable() {
    let Some((pool, cache)) = setup("qc_test_equiv_builder").await else {
        return;
    };
    let build = || {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT small, txt FROM everything WHERE small IN (");
        let mut list = qb.separated(", ");
        for k in [1_i16, 3] {
            list.push_bind(k);
        }
        qb.push(") ORDER BY small");
        qb
    };
    let plain: Vec<(i16, Option<String>)> = build()
        .build_query_as()
        .fetch_all(&pool)
        .await
        .expect("plain");
    for _ in 0..2 {
        let mut qb = build();
        let cached: Vec<(i16, Option<String>)> = qb
            .build_query_as()
            .fetch_all_cached(&cache)
            .await
            .expect("cached");
        assert_eq!(cached, plain);
    }
    assert_eq!(cache.stats().hits, 1);
}

#[tokio::test]
async fn different_arguments_and_types_never_share_an_entry() {
    let Some((_pool, cache)) = setup("qc_test_equiv_keys").await else {
        return;
    };
    let sql = "SELECT big FROM everything WHERE small = $1";
    let one: i64 = sqlx::query_scalar(sql)
        .bind(1_i16)
        .fetch_one_cached(&cache)
        .await
        .expect("1");
    let two: i64 = sqlx::query_scalar(sql)
        .bind(2_i16)
        .fetch_one_cached(&cache)
        .await
        .expect("2");
    assert_eq!((one, two), (9_000_000_000, -1));
    let as_tuple: (i64,) = sqlx::query_as(sql)
        .bind(1_i16)
        .fetch_one_cached(&cache)
        .await
        .expect("tuple");
    assert_eq!(as_tuple, (9_000_000_000,));
    assert_eq!(cache.stats().hits, 0);
}

/// The same failure through sqlx and through the cache: same variant, same message,
/// same SQLSTATE.
fn assert_same_error(plain: sqlx::Error, cached: sqlx::Error) {
    assert_eq!(cached.to_string(), plain.to_string());
    assert_eq!(
        cached.as_database_error().and_then(|e| e.code()),
        plain.as_database_error().and_then(|e| e.code())
    );
    assert_eq!(
        std::mem::discriminant(&cached),
        std::mem::discriminant(&plain)
    );
}

#[tokio::test]
async fn errors_are_sqlx_errors() {
    let Some((pool, cache)) = setup("qc_test_equiv_errors").await else {
        return;
    };
    for sql in [
        "SELEC small FROM everything",
        "SELECT small FROM no_such_table",
        "SELECT no_such_column FROM everything",
    ] {
        for _ in 0..2 {
            let plain = sqlx::query_scalar::<_, i16>(sql)
                .fetch_all(&pool)
                .await
                .expect_err("plain");
            let cached = sqlx::query_scalar::<_, i16>(sql)
                .fetch_all_cached(&cache)
                .await
                .expect_err("cached");
            assert_same_error(plain, cached);
        }
    }
    // Decode errors: text read as an integer.
    let sql = "SELECT txt FROM everything WHERE small = 1";
    let plain = sqlx::query_scalar::<_, i32>(sql)
        .fetch_all(&pool)
        .await
        .expect_err("plain");
    let cached = sqlx::query_scalar::<_, i32>(sql)
        .fetch_all_cached(&cache)
        .await
        .expect_err("cached");
    assert_same_error(plain, cached);
    // No rows for fetch_one.
    let sql = "SELECT small FROM everything WHERE small = 99";
    for _ in 0..2 {
        let plain = sqlx::query_scalar::<_, i16>(sql)
            .fetch_one(&pool)
            .await
            .expect_err("plain");
        let cached = sqlx::query_scalar::<_, i16>(sql)
            .fetch_one_cached(&cache)
            .await
            .expect_err("cached");
        assert!(matches!(cached, sqlx::Error::RowNotFound));
        assert_same_error(plain, cached);
    }
    // fetch_one decodes only the first row: a later row that fails to decode is not an
    // error, exactly as in sqlx, even after fetch_all of the same text failed.
    let sql = "SELECT int FROM everything ORDER BY small";
    let all = sqlx::query_scalar::<_, i32>(sql)
        .fetch_all_cached(&cache)
        .await;
    assert!(all.is_err(), "row 2 holds NULL");
    let first: i32 = sqlx::query_scalar(sql)
        .fetch_one_cached(&cache)
        .await
        .expect("first row");
    assert_eq!(
        first,
        sqlx::query_scalar::<_, i32>(sql)
            .fetch_one(&pool)
            .await
            .expect("plain")
    );
}
