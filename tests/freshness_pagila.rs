//! Freshness on Pagila, where writes reach cached results the statement never names:
//! through views, partition parents and children, and foreign-key cascades.
//!
//! Each check reads through the cache until it is served from memory, writes through
//! the cache, then compares the cached read with a plain read of the pool (the
//! oracle) and makes sure the write did change the result.

mod common;

use common::{cached_column, plain_column};
use querycache::{CachedQuery, QueryCache};
use sqlx::{AssertSqlSafe, PgPool, Postgres};

async fn pagila(name: &str) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::pagila_database(name).await?;
    let cache = QueryCache::builder(pool.clone())
        .build()
        .await
        .expect("build");
    Some((pool, cache))
}

/// Read `read` until it hits, run `write` through the cache, and check that the next
/// cached read equals the database's answer, which the write changed.
async fn check(pool: &PgPool, cache: &QueryCache<Postgres>, read: &str, write: &str) {
    let before = cached_column(cache, read).await;
    let hits = cache.stats().hits;
    assert_eq!(cached_column(cache, read).await, before);
    assert_eq!(cache.stats().hits, hits + 1, "{read} is served from memory");

    sqlx::raw_sql(AssertSqlSafe(write.to_owned()))
        .execute(cache)
        .await
        .expect(write);

    let truth = plain_column(pool, read).await;
    assert_ne!(truth, before, "the write must change the result: {write}");
    assert_eq!(
        cached_column(cache, read).await,
        truth,
        "stale after: {write}"
    );
}

#[tokio::test]
async fn writes_to_base_tables_reach_every_view() {
    let Some((pool, cache)) = pagila("qc_test_pagila_views").await else {
        return;
    };
    let view = |name: &str| format!("SELECT v::text FROM {name} AS v ORDER BY 1");
    // sales_by_store calls concat(), which is STABLE, so it is never cached (see
    // tests/volatile_views.rs): `check` needs a hit.
    for (name, write) in [
        (
            "actor_info",
            "UPDATE actor SET first_name = 'ZED' WHERE actor_id = 1",
        ),
        (
            "customer_list",
            "UPDATE country SET country = country || '!' WHERE country_id < 50",
        ),
        (
            "family_films",
            "UPDATE film SET title = title || '!' WHERE rating = 'G'",
        ),
        (
            "film_list",
            "UPDATE category SET name = name || '!' WHERE category_id = 1",
        ),
        (
            "sales_by_film_category",
            "UPDATE film_category SET category_id = 2 WHERE film_id = 1",
        ),
        (
            "staff_list",
            "UPDATE address SET phone = '000' WHERE address_id IN (SELECT address_id FROM staff)",
        ),
        (
            "legacy.rental",
            "UPDATE rental SET staff_id = 3 - staff_id WHERE rental_id < 10",
        ),
    ] {
        check(&pool, &cache, &view(name), write).await;
    }
}

#[tokio::test]
async fn partition_writes_reach_the_parent_and_the_reverse() {
    let Some((pool, cache)) = pagila("qc_test_pagila_partitions").await else {
        return;
    };
    let id: i32 = sqlx::query_scalar("SELECT min(payment_id) FROM payment_p2007_02")
        .fetch_one(&pool)
        .await
        .expect("a payment in February 2007");
    let through_parent = format!("SELECT amount::text FROM payment WHERE payment_id = {id}");
    let through_child =
        format!("SELECT amount::text FROM payment_p2007_02 WHERE payment_id = {id}");
    check(
        &pool,
        &cache,
        &through_parent,
        &format!("UPDATE payment_p2007_02 SET amount = amount + 1 WHERE payment_id = {id}"),
    )
    .await;
    check(
        &pool,
        &cache,
        &through_child,
        &format!("UPDATE payment SET amount = amount + 1 WHERE payment_id = {id}"),
    )
    .await;
    // A view over the parent, written through a child.
    check(
        &pool,
        &cache,
        "SELECT v::text FROM sales_top5_by_film_category AS v ORDER BY 1",
        "UPDATE payment_p2007_03 SET amount = 900 WHERE payment_id IN \
         (SELECT payment_id FROM payment_p2007_03 ORDER BY payment_id LIMIT 50)",
    )
    .await;
}

#[tokio::test]
async fn on_update_cascade_reaches_the_referencing_table() {
    let Some((pool, cache)) = pagila("qc_test_pagila_cascade").await else {
        return;
    };
    // film.language_id REFERENCES language ON UPDATE CASCADE.
    check(
        &pool,
        &cache,
        "SELECT language_id::text FROM film WHERE film_id = 1",
        "UPDATE language SET language_id = 99 WHERE language_id = 1",
    )
    .await;
}

#[tokio::test]
async fn refresh_materialized_view_through_the_cache() {
    let Some((pool, cache)) = pagila("qc_test_pagila_matview").await else {
        return;
    };
    sqlx::raw_sql("REFRESH MATERIALIZED VIEW nicer_but_slower_film_list")
        .execute(&pool)
        .await
        .expect("populate");
    let read = "SELECT v::text FROM nicer_but_slower_film_list AS v WHERE fid < 5 ORDER BY 1";
    let before = cached_column(&cache, read).await;
    sqlx::query("UPDATE film SET title = 'RENAMED' WHERE film_id = 1")
        .execute(&cache)
        .await
        .expect("update");
    // Until REFRESH, the materialized view still holds the old rows: both agree.
    assert_eq!(
        cached_column(&cache, read).await,
        plain_column(&pool, read).await
    );
    check(
        &pool,
        &cache,
        read,
        "REFRESH MATERIALIZED VIEW nicer_but_slower_film_list",
    )
    .await;
    assert_ne!(cached_column(&cache, read).await, before);
}

#[tokio::test]
async fn enums_round_trip_like_plain_sqlx() {
    let Some((pool, cache)) = pagila("qc_test_pagila_enum").await else {
        return;
    };
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::Type)]
    #[sqlx(type_name = "mpaa_rating")]
    enum Rating {
        G,
        PG,
        #[sqlx(rename = "PG-13")]
        Pg13,
        R,
        #[sqlx(rename = "NC-17")]
        Nc17,
    }
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
    struct Film {
        film_id: i32,
        title: String,
        rating: Option<Rating>,
        rental_rate: rust_decimal::Decimal,
        special_features: Option<Vec<String>>,
        last_update: chrono::DateTime<chrono::Utc>,
    }
    let sql = "SELECT film_id, title, rating, rental_rate, special_features, \
               last_update::timestamptz AS last_update FROM film WHERE rating = $1::mpaa_rating ORDER BY film_id";
    for rating in ["G", "PG-13", "NC-17"] {
        let want: Vec<Film> = sqlx::query_as(sql)
            .bind(rating)
            .fetch_all(&pool)
            .await
            .expect("plain");
        for _ in 0..2 {
            let got: Vec<Film> = sqlx::query_as(sql)
                .bind(rating)
                .fetch_all_cached(&cache)
                .await
                .expect("cached");
            assert_eq!(got, want);
        }
    }
    assert_eq!(cache.stats().hits, 3);
}
