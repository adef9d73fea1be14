//! Views whose results change without a write: a view over `now()`, `current_user`,
//! `random()`, a STABLE function or a system catalog (and a view over such a view) is
//! found by the catalog and never served from memory, although the query's text names
//! no volatile function. Immutable views stay cached.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{cached_column, exec, plain_column, rel};
use querycache::QueryCache;
use querycache::freshness::{Catalog, VolatileSource, Volatility};
use sqlx::{PgPool, Postgres};

const SCHEMA: &str = r"
    CREATE TABLE t (id int, ts timestamptz NOT NULL DEFAULT now());
    INSERT INTO t (id) VALUES (1), (2);
    CREATE FUNCTION stab() RETURNS text LANGUAGE sql STABLE AS $$ SELECT clock_timestamp()::text $$;
    CREATE FUNCTION imm(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 * 2 $$;
    CREATE FUNCTION noisy(int, int) RETURNS int LANGUAGE sql VOLATILE
        AS $$ SELECT coalesce($1, 0) + $2 + (random() * 0)::int $$;
    CREATE AGGREGATE noisy_sum(int) (SFUNC = noisy, STYPE = int);
    CREATE VIEW v_now AS SELECT count(*)::text AS n FROM t WHERE ts > now() - interval '1 second';
    CREATE VIEW v_user AS SELECT current_user::text AS u, id FROM t;
    CREATE VIEW v_date AS SELECT current_date::text AS d;
    CREATE VIEW v_random AS SELECT random()::text AS r;
    CREATE VIEW v_stable AS SELECT stab() AS s;
    CREATE VIEW v_aggregate AS SELECT noisy_sum(id)::text AS s FROM t;
    CREATE VIEW v_sample AS SELECT id FROM t TABLESAMPLE BERNOULLI (50);
    CREATE VIEW v_catalog AS SELECT relname::text FROM pg_class WHERE relname = 't';
    CREATE VIEW v_over_now AS SELECT n FROM v_now;
    CREATE VIEW v_over_over AS SELECT n FROM v_over_now;
    CREATE VIEW v_immutable AS SELECT imm(id)::text AS d FROM t;
    CREATE VIEW v_folded AS SELECT 'now'::timestamptz::text AS created;
    CREATE VIEW v_operator AS SELECT id FROM t WHERE ts > date '2000-01-01';
    CREATE MATERIALIZED VIEW m_now AS SELECT n FROM v_now;
    CREATE VIEW v_over_matview AS SELECT n FROM m_now;";

async fn scratch(name: &str) -> Option<PgPool> {
    let pool = common::scratch_database(name).await?;
    exec(&pool, SCHEMA).await;
    Some(pool)
}

fn function(name: &str) -> Option<VolatileSource> {
    Some(VolatileSource::Function(Arc::from(name)))
}

#[tokio::test]
async fn the_catalog_flags_views_over_functions_that_are_not_immutable() {
    let Some(pool) = scratch("qc_test_volviews_catalog").await else {
        return;
    };
    let catalog = Catalog::load(&pool).await.expect("load catalog");
    let flagged = |view: &str| catalog.reads_volatile(&rel(view)).cloned();
    for (view, expected) in [
        ("public.v_now", function("now")),
        ("public.v_user", function("current_user")),
        ("public.v_date", function("current_date")),
        ("public.v_random", function("random")),
        ("public.v_stable", function("stab")),
        ("public.v_aggregate", function("noisy_sum")),
        ("public.v_sample", function("bernoulli")),
        (
            "public.v_catalog",
            Some(VolatileSource::SystemRelation(rel("pg_catalog.pg_class"))),
        ),
        ("public.v_over_now", function("now")),
        ("public.v_over_over", function("now")),
        ("public.v_immutable", None),
        ("public.v_folded", None),
        ("public.v_operator", None),
        ("public.m_now", None),
        ("public.v_over_matview", None),
        ("public.t", None),
    ] {
        assert_eq!(flagged(view), expected, "{view}");
    }
    // CREATE AGGREGATE records IMMUTABLE; the state function is what varies.
    assert_eq!(
        catalog.function_volatility("noisy_sum"),
        Some(Volatility::Volatile)
    );
}

async fn cache_on(pool: &PgPool) -> QueryCache<Postgres> {
    QueryCache::builder(pool.clone())
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn reads_of_volatile_views_bypass_and_immutable_views_hit() {
    let Some(pool) = scratch("qc_test_volviews_bypass").await else {
        return;
    };
    let cache = cache_on(&pool).await;
    let volatile = [
        "SELECT n FROM v_now",
        "SELECT u FROM v_user ORDER BY id",
        "SELECT d FROM v_date",
        "SELECT r FROM v_random",
        "SELECT s FROM v_stable",
        "SELECT s FROM v_aggregate",
        "SELECT id::text FROM v_sample ORDER BY 1",
        "SELECT n FROM v_over_over",
        "SELECT n FROM public.v_over_now",
    ];
    for sql in volatile {
        cached_column(&cache, sql).await;
        cached_column(&cache, sql).await;
    }
    cached_column(&cache, "SELECT relname FROM v_catalog").await;
    cached_column(&cache, "SELECT relname FROM v_catalog").await;
    let stats = cache.stats();
    assert_eq!(stats.hits, 0, "{stats:?}");
    assert_eq!(
        stats.bypasses_by_reason.get("volatile_function"),
        Some(&(2 * volatile.len() as u64)),
        "{stats:?}"
    );
    assert_eq!(
        stats.bypasses_by_reason.get("system_catalog"),
        Some(&2),
        "{stats:?}"
    );

    for sql in [
        "SELECT d FROM v_immutable ORDER BY 1",
        "SELECT created FROM v_folded",
        "SELECT id::text FROM v_operator ORDER BY 1",
        "SELECT n FROM v_over_matview",
    ] {
        let first = cached_column(&cache, sql).await;
        let hits = cache.stats().hits;
        assert_eq!(cached_column(&cache, sql).await, first, "{sql}");
        assert_eq!(cache.stats().hits, hits + 1, "{sql} is served from memory");
    }
}

/// Without the catalog's flag these reads hit memory and return the first result
/// again: a count of rows newer than a second that is a second old, the same random
/// number, the same clock reading.
#[tokio::test]
async fn a_volatile_view_is_never_served_stale() {
    let Some(pool) = scratch("qc_test_volviews_stale").await else {
        return;
    };
    let cache = cache_on(&pool).await;
    exec(&pool, "INSERT INTO t (id) VALUES (3)").await;
    let reads = ["SELECT n FROM v_now", "SELECT n FROM v_over_over"];
    let mut before = Vec::new();
    for sql in reads {
        let through_cache = cached_column(&cache, sql).await;
        assert_eq!(through_cache, plain_column(&pool, sql).await, "{sql}");
        before.push(through_cache);
    }
    // The view's answer changes with time alone: no write happens meanwhile.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (sql, before) in reads.into_iter().zip(before) {
        let truth = plain_column(&pool, sql).await;
        assert_ne!(truth, before, "{sql}: the rows aged out of the window");
        assert_eq!(
            cached_column(&cache, sql).await,
            truth,
            "{sql} served stale"
        );
    }

    for sql in ["SELECT r FROM v_random", "SELECT s FROM v_stable"] {
        let first = cached_column(&cache, sql).await;
        assert_ne!(
            cached_column(&cache, sql).await,
            first,
            "{sql} served from memory"
        );
    }
}

#[tokio::test]
async fn pagila_views_over_stable_functions_bypass_and_stay_fresh() {
    let Some(pool) = common::pagila_database("qc_test_volviews_pagila").await else {
        return;
    };
    let catalog = Catalog::load(&pool).await.expect("load catalog");
    // concat("any") and json_agg are STABLE (they call type output functions, which
    // read DateStyle and friends); every other Pagila view calls immutable functions
    // only (group_concat's state function _group_concat is IMMUTABLE).
    for (view, expected) in [
        ("public.sales_by_store", function("concat")),
        ("public.rental_report", function("json_agg")),
        ("public.actor_info", None),
        ("public.customer_list", None),
        ("public.family_films", None),
        ("public.film_list", None),
        ("public.sales_by_film_category", None),
        ("public.sales_top5_by_film_category", None),
        ("public.staff_list", None),
        ("public.nicer_but_slower_film_list", None),
        ("legacy.rental", None),
    ] {
        assert_eq!(
            catalog.reads_volatile(&rel(view)).cloned(),
            expected,
            "{view}"
        );
    }

    let cache = cache_on(&pool).await;
    let read = "SELECT v::text FROM sales_by_store AS v ORDER BY 1";
    let before = cached_column(&cache, read).await;
    assert_eq!(cached_column(&cache, read).await, before);
    assert_eq!(cache.stats().hits, 0, "sales_by_store is not cached");
    sqlx::query("UPDATE staff SET first_name = 'Zed' WHERE staff_id = 1")
        .execute(&cache)
        .await
        .expect("update");
    let truth = plain_column(&pool, read).await;
    assert_ne!(truth, before, "the write changes the view");
    assert_eq!(cached_column(&cache, read).await, truth);
}
