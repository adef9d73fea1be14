//! The catalog dependency closure against real Postgres: Pagila's views, partitions and
//! triggers, and small purpose-built schemas (cascade chains, inheritance, multi-level
//! partitioning, trigger-written audit tables, dynamic SQL, views of views,
//! materialized views). Name resolution and volatility: `catalog_names.rs`.
//!
//! Expected closures are named by hand from the schemas below. The `oracle` checks go
//! further: they run a write, compare every relation's contents before and after, and
//! require each relation whose result changed to be in the closure (a stale read
//! otherwise).

mod common;

use common::{exec, rel};

use querycache::freshness::WriteClosure;
use querycache::freshness::{Catalog, RelationKind};
use querycache::sql::RelationName;
use sqlx::PgPool;

fn rels(names: &[&str]) -> Vec<RelationName> {
    let mut out: Vec<RelationName> = names.iter().map(|n| rel(n)).collect();
    out.sort();
    out
}

fn closure_of(catalog: &Catalog, written: &str) -> Vec<RelationName> {
    let closure = catalog.write_closure(&[rel(written)]);
    assert!(!closure.unknown, "closure of {written} is unknown");
    closure.relations
}

/// Every user relation's contents, as one hash per relation (`md5` of its rows as
/// text, sorted), read by plain SQL.
async fn snapshot(pool: &PgPool) -> Vec<(RelationName, String)> {
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm') AND (c.relkind <> 'm' OR c.relispopulated)
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("list relations");
    let mut out = Vec::new();
    for (schema, name) in names {
        let hash: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))
             FROM \"{schema}\".\"{name}\" t"
        )))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("hash {schema}.{name}: {e}"));
        out.push((RelationName::new(Some(&schema), &name), hash));
    }
    out
}

/// Runs `sql` and asserts that every relation whose contents it changed is in the
/// closure of `written`. Returns the changed relations (so a caller can check the write
/// really reached what the test is about).
async fn oracle(
    pool: &PgPool,
    catalog: &Catalog,
    written: &[&str],
    sql: &str,
) -> Vec<RelationName> {
    let written: Vec<RelationName> = written.iter().map(|w| rel(w)).collect();
    let closure = catalog.write_closure(&written);
    oracle_closure(pool, &closure, sql).await
}

/// [`oracle`] against a given closure (e.g. `TRUNCATE … CASCADE`'s).
async fn oracle_closure(pool: &PgPool, closure: &WriteClosure, sql: &str) -> Vec<RelationName> {
    let before = snapshot(pool).await;
    exec(pool, sql).await;
    let after = snapshot(pool).await;
    assert_eq!(before.len(), after.len(), "relations appeared or vanished");
    let changed: Vec<RelationName> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(b, _)| b.0.clone())
        .collect();
    let missed: Vec<&RelationName> = changed
        .iter()
        .filter(|c| !closure.relations.contains(c))
        .collect();
    assert!(
        closure.unknown || missed.is_empty(),
        "`{sql}` changed {missed:?}, which the closure misses: {:?}",
        closure.relations
    );
    changed
}

#[tokio::test]
async fn pagila_views_partitions_and_triggers() {
    let Some(pool) = common::pagila_database("qc_test_catalog_pagila").await else {
        return;
    };
    let catalog = Catalog::load(&pool).await.expect("load catalog");

    // film_category is read by these views (sales_top5 reads it directly as well), is
    // referenced by no foreign key, and its only trigger (last_updated) assigns NEW.
    assert_eq!(
        closure_of(&catalog, "public.film_category"),
        rels(&[
            "public.actor_info",
            "public.film_category",
            "public.film_list",
            "public.nicer_but_slower_film_list",
            "public.sales_by_film_category",
            "public.sales_top5_by_film_category",
        ])
    );
    // rental: legacy's view over it and four public views; payment references rental
    // with NO ACTION, so it is not reached.
    assert_eq!(
        closure_of(&catalog, "public.rental"),
        rels(&[
            "legacy.rental",
            "public.rental",
            "public.rental_report",
            "public.sales_by_film_category",
            "public.sales_by_store",
            "public.sales_top5_by_film_category",
        ])
    );
    // A partition changes its parent's result (and the parent's views), not its
    // siblings.
    assert_eq!(
        closure_of(&catalog, "public.payment_p2007_01"),
        rels(&[
            "public.payment",
            "public.payment_p2007_01",
            "public.sales_by_film_category",
            "public.sales_by_store",
            "public.sales_top5_by_film_category",
        ])
    );
    // A write through the parent may route to any partition.
    let payment = closure_of(&catalog, "public.payment");
    for partition in [
        "public.payment_p0000_default",
        "public.payment_p2007_01",
        "public.payment_p2007_02",
        "public.payment_p2007_03",
        "public.payment_p2007_04",
        "public.payment_p2007_05",
        "public.payment_p2007_06",
        "public.payment_p2007_07_max",
    ] {
        assert!(
            payment.contains(&rel(partition)),
            "payment misses {partition}"
        );
    }
    // film has last_updated() and the builtin tsvector_update_trigger: nothing unknown.
    let film = catalog.write_closure(&[rel("public.film")]);
    assert!(!film.unknown);
    assert!(film.relations.contains(&rel("public.film_list")));
    assert!(film.relations.contains(&rel("public.family_films")));
    assert_eq!(
        catalog.kind(&rel("public.payment")),
        Some(RelationKind::PartitionedTable)
    );
    assert_eq!(
        catalog.kind(&rel("public.nicer_but_slower_film_list")),
        Some(RelationKind::MaterializedView)
    );

    // The closures hold what real writes change.
    let changed = oracle(
        &pool,
        &catalog,
        &["public.film_category"],
        "UPDATE public.film_category SET category_id = 2 WHERE film_id = 1",
    )
    .await;
    assert!(changed.contains(&rel("public.film_list")), "{changed:?}");
    let changed = oracle(
        &pool,
        &catalog,
        &["public.country"],
        "UPDATE public.country SET country_id = 1000 WHERE country_id = 1",
    )
    .await;
    assert!(
        changed.contains(&rel("public.city")),
        "ON UPDATE CASCADE: {changed:?}"
    );
    let changed = oracle(
        &pool,
        &catalog,
        &["public.payment"],
        "INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
         VALUES (1, 1, 76, 1.99, '2007-03-15')",
    )
    .await;
    assert!(
        changed.contains(&rel("public.payment_p2007_03")),
        "{changed:?}"
    );
    pool.close().await;
}

#[tokio::test]
async fn foreign_key_actions_cascade_and_no_action_does_not() {
    let Some(pool) = common::scratch_database("qc_test_catalog_cascade").await else {
        return;
    };
    exec(
        &pool,
        "CREATE TABLE a (id int PRIMARY KEY);
         CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a ON DELETE CASCADE);
         CREATE TABLE c (id int PRIMARY KEY, b_id int REFERENCES b ON DELETE SET NULL);
         CREATE TABLE d (id int PRIMARY KEY, c_id int DEFAULT 0 REFERENCES c ON UPDATE SET DEFAULT);
         CREATE VIEW d_view AS SELECT * FROM d;
         CREATE TABLE e (id int, a_id int REFERENCES a);
         INSERT INTO a VALUES (1), (2);
         INSERT INTO b VALUES (10, 1), (20, 2);
         INSERT INTO c VALUES (0, NULL), (100, 10), (200, 20);
         INSERT INTO d VALUES (1000, 100);
         INSERT INTO e VALUES (1, 2);",
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");

    assert_eq!(
        closure_of(&catalog, "public.a"),
        rels(&[
            "public.a",
            "public.b",
            "public.c",
            "public.d",
            "public.d_view"
        ])
    );
    assert_eq!(
        closure_of(&catalog, "public.c"),
        rels(&["public.c", "public.d", "public.d_view"])
    );
    // e references a with NO ACTION: a write to a cannot change e.
    assert!(!closure_of(&catalog, "public.a").contains(&rel("public.e")));
    assert_eq!(closure_of(&catalog, "public.e"), rels(&["public.e"]));
    // TRUNCATE a CASCADE truncates e as well.
    let truncate = catalog.write_closure_truncate_cascade(&[rel("public.a")]);
    assert!(truncate.relations.contains(&rel("public.e")));

    let changed = oracle(&pool, &catalog, &["public.a"], "DELETE FROM a WHERE id = 1").await;
    assert!(
        changed.contains(&rel("public.c")),
        "SET NULL reached c: {changed:?}"
    );
    let changed = oracle(
        &pool,
        &catalog,
        &["public.c"],
        "UPDATE c SET id = 300 WHERE id = 100",
    )
    .await;
    assert!(
        changed.contains(&rel("public.d_view")),
        "SET DEFAULT reached d: {changed:?}"
    );
    let changed = oracle_closure(&pool, &truncate, "TRUNCATE a CASCADE").await;
    assert!(changed.contains(&rel("public.e")), "{changed:?}");
    pool.close().await;
}

#[tokio::test]
async fn inheritance_and_multi_level_partitions_in_both_directions() {
    let Some(pool) = common::scratch_database("qc_test_catalog_inherit").await else {
        return;
    };
    exec(
        &pool,
        "CREATE TABLE animal (name text);
         CREATE TABLE dog (breed text) INHERITS (animal);
         CREATE TABLE puppy (age int) INHERITS (dog);
         CREATE TABLE cat () INHERITS (animal);
         CREATE TABLE m (k int, v int) PARTITION BY RANGE (k);
         CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10) PARTITION BY RANGE (v);
         CREATE TABLE m1a PARTITION OF m1 FOR VALUES FROM (0) TO (5);
         CREATE TABLE m1b PARTITION OF m1 FOR VALUES FROM (5) TO (10);
         CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20);
         CREATE VIEW m_view AS SELECT * FROM m;",
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");

    assert_eq!(
        closure_of(&catalog, "public.puppy"),
        rels(&["public.animal", "public.dog", "public.puppy"])
    );
    assert_eq!(
        closure_of(&catalog, "public.animal"),
        rels(&["public.animal", "public.cat", "public.dog", "public.puppy"])
    );
    assert_eq!(
        closure_of(&catalog, "public.m1a"),
        rels(&["public.m", "public.m1", "public.m1a", "public.m_view"])
    );
    assert_eq!(
        closure_of(&catalog, "public.m"),
        rels(&[
            "public.m",
            "public.m1",
            "public.m1a",
            "public.m1b",
            "public.m2",
            "public.m_view"
        ])
    );

    let changed = oracle(
        &pool,
        &catalog,
        &["public.puppy"],
        "INSERT INTO puppy VALUES ('rex', 'pug', 1)",
    )
    .await;
    assert!(changed.contains(&rel("public.animal")), "{changed:?}");
    oracle(
        &pool,
        &catalog,
        &["public.animal"],
        "UPDATE animal SET name = 'max'",
    )
    .await;
    let changed = oracle(
        &pool,
        &catalog,
        &["public.m"],
        "INSERT INTO m VALUES (1, 7)",
    )
    .await;
    assert!(changed.contains(&rel("public.m1b")), "{changed:?}");
    pool.close().await;
}

#[tokio::test]
async fn triggers_rules_and_unknown_effects() {
    let Some(pool) = common::scratch_database("qc_test_catalog_triggers").await else {
        return;
    };
    exec(
        &pool,
        r#"CREATE SCHEMA audit;
         CREATE TABLE audit.log (op text);
         CREATE VIEW audit.recent AS SELECT * FROM audit.log;
         CREATE TABLE counters (n int);
         INSERT INTO counters VALUES (0);
         CREATE TABLE orders (id int, touched text);

         CREATE FUNCTION bump() RETURNS void LANGUAGE plpgsql AS $$
         BEGIN UPDATE counters SET n = n + 1; END $$;
         CREATE FUNCTION log_order() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO audit.log (op) VALUES (TG_OP);
           PERFORM bump();
           RETURN NEW;
         END $$;
         CREATE TRIGGER orders_audit AFTER INSERT OR UPDATE OR DELETE ON orders
           FOR EACH ROW EXECUTE FUNCTION log_order();
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.touched := 'yes'; RETURN NEW; END $$;
         CREATE TRIGGER orders_touch BEFORE INSERT ON orders
           FOR EACH ROW EXECUTE FUNCTION touch();

         CREATE TABLE plain (id int);
         CREATE TRIGGER plain_touch BEFORE INSERT ON plain
           FOR EACH ROW EXECUTE FUNCTION touch();

         CREATE TABLE dyn (id int);
         CREATE TABLE dyn_target (id int);
         CREATE FUNCTION dyn_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN EXECUTE format('INSERT INTO %I VALUES (1)', TG_ARGV[0]); RETURN NEW; END $$;
         CREATE TRIGGER dyn_trigger AFTER INSERT ON dyn
           FOR EACH ROW EXECUTE FUNCTION dyn_write('dyn_target');

         CREATE TABLE ruled (id int);
         CREATE TABLE rule_log (id int);
         CREATE RULE ruled_log AS ON INSERT TO ruled DO ALSO INSERT INTO rule_log VALUES (NEW.id);"#,
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");

    assert_eq!(
        closure_of(&catalog, "public.orders"),
        rels(&[
            "audit.log",
            "audit.recent",
            "public.counters",
            "public.orders"
        ])
    );
    // A trigger that only assigns to NEW writes nothing else.
    assert_eq!(
        closure_of(&catalog, "public.plain"),
        rels(&["public.plain"])
    );
    // Dynamic SQL: unknown, the cache must invalidate everything.
    assert!(catalog.write_closure(&[rel("public.dyn")]).unknown);
    // ...but only for writes that fire it.
    assert!(!catalog.write_closure(&[rel("public.dyn_target")]).unknown);
    // A rule's action writes what it references.
    assert_eq!(
        closure_of(&catalog, "public.ruled"),
        rels(&["public.rule_log", "public.ruled"])
    );
    // Several written relations: the union, with `unknown` from any of them.
    let both = catalog.write_closure(&[rel("public.plain"), rel("public.dyn")]);
    assert!(both.unknown);
    assert!(both.relations.contains(&rel("public.plain")));
    assert!(both.relations.contains(&rel("public.dyn")));

    let changed = oracle(
        &pool,
        &catalog,
        &["public.orders"],
        "INSERT INTO orders VALUES (1)",
    )
    .await;
    assert!(changed.contains(&rel("public.counters")), "{changed:?}");
    assert!(changed.contains(&rel("audit.recent")), "{changed:?}");
    oracle(
        &pool,
        &catalog,
        &["public.ruled"],
        "INSERT INTO ruled VALUES (7)",
    )
    .await;
    pool.close().await;
}

#[tokio::test]
async fn views_of_views_materialized_views_and_opaque_functions() {
    let Some(pool) = common::scratch_database("qc_test_catalog_views").await else {
        return;
    };
    exec(
        &pool,
        r#"CREATE TABLE base (x int);
         CREATE VIEW v1 AS SELECT x FROM base;
         CREATE VIEW v2 AS SELECT x FROM v1 WHERE x > 0;
         CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM v2;
         CREATE TABLE other (y int);
         CREATE TABLE hidden (z int);
         CREATE FUNCTION hidden_count() RETURNS bigint STABLE LANGUAGE plpgsql AS $$
         BEGIN RETURN (SELECT count(*) FROM hidden); END $$;
         CREATE VIEW through_function AS SELECT hidden_count() AS n;
         CREATE VIEW over_opaque AS SELECT n + 1 AS m FROM through_function;"#,
    )
    .await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");

    let base = closure_of(&catalog, "public.base");
    for expected in ["public.base", "public.mv", "public.v1", "public.v2"] {
        assert!(
            base.contains(&rel(expected)),
            "base misses {expected}: {base:?}"
        );
    }
    assert!(!base.contains(&rel("public.other")));
    // Writing an auto-updatable view writes its base table.
    let v1 = closure_of(&catalog, "public.v1");
    assert!(
        v1.contains(&rel("public.base")) && v1.contains(&rel("public.v2")),
        "{v1:?}"
    );
    let changed = oracle(&pool, &catalog, &["public.v1"], "INSERT INTO v1 VALUES (5)").await;
    assert!(changed.contains(&rel("public.base")), "{changed:?}");

    // A view reading through a non-immutable user function may change on any write.
    let hidden = closure_of(&catalog, "public.hidden");
    assert!(
        hidden.contains(&rel("public.through_function")),
        "{hidden:?}"
    );
    assert!(hidden.contains(&rel("public.over_opaque")), "{hidden:?}");
    let changed = oracle(
        &pool,
        &catalog,
        &["public.hidden"],
        "INSERT INTO hidden VALUES (1)",
    )
    .await;
    assert!(
        changed.contains(&rel("public.through_function")),
        "{changed:?}"
    );
    pool.close().await;
}

#[tokio::test]
async fn a_reloaded_catalog_sees_new_dependents() {
    let Some(pool) = common::scratch_database("qc_test_catalog_reload").await else {
        return;
    };
    exec(&pool, "CREATE TABLE t (id int)").await;
    let before = Catalog::load(&pool).await.expect("load catalog");
    exec(&pool, "CREATE VIEW t_view AS SELECT * FROM t").await;
    assert_eq!(closure_of(&before, "public.t"), rels(&["public.t"]));
    let after = Catalog::load(&pool).await.expect("reload catalog");
    assert_eq!(
        closure_of(&after, "public.t"),
        rels(&["public.t", "public.t_view"])
    );
    pool.close().await;
}
