//! Read sets, write sets and statement kinds, table-driven, on realistic queries
//! (shapes from the pagila sample database: its views, its partitioned `payment`
//! table and its `legacy` schema).

mod common;

use querycache::sql::{Analysis, Dialect, Reason, StatementKind, analyze};

fn names(list: &[querycache::sql::RelationName]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

fn run(sql: &str) -> Analysis {
    analyze(sql, Dialect::Postgres)
}

/// `(sql, kind, reads, writes)`.
fn check(cases: &[(&str, StatementKind, &[&str], &[&str])]) {
    for (sql, kind, reads, writes) in cases {
        let a = run(sql);
        assert_eq!(a.kind, *kind, "kind of {sql}\n{a:#?}");
        assert_eq!(names(&a.reads), *reads, "reads of {sql}\n{a:#?}");
        assert_eq!(names(&a.writes), *writes, "writes of {sql}\n{a:#?}");
    }
}

use StatementKind::{Ddl, Other, Read, Session, Transaction, Write};

#[test]
fn read_sets_cover_every_join_form_and_subquery_position() {
    check(&[
        (
            "SELECT f.title, c.name FROM film f JOIN film_category fc ON fc.film_id = f.film_id \
             LEFT JOIN category c ON c.category_id = fc.category_id WHERE f.film_id = $1",
            Read,
            &["category", "film", "film_category"],
            &[],
        ),
        (
            "SELECT * FROM actor a RIGHT OUTER JOIN film_actor fa USING (actor_id) \
             FULL JOIN film f ON f.film_id = fa.film_id CROSS JOIN language NATURAL JOIN city",
            Read,
            &["actor", "city", "film", "film_actor", "language"],
            &[],
        ),
        (
            "SELECT c.first_name FROM customer c, address a, city ci WHERE c.address_id = a.address_id \
             AND a.city_id = ci.city_id",
            Read,
            &["address", "city", "customer"],
            &[],
        ),
        (
            "SELECT (SELECT count(*) FROM rental r WHERE r.customer_id = c.customer_id) AS n \
             FROM customer c WHERE c.store_id IN (SELECT store_id FROM store WHERE manager_staff_id = 1) \
             AND EXISTS (SELECT 1 FROM payment p WHERE p.customer_id = c.customer_id) \
             AND c.address_id = ANY (SELECT address_id FROM address) \
             GROUP BY c.customer_id HAVING sum(c.active) > (SELECT min(amount) FROM payment_p2022_01)",
            Read,
            &[
                "address",
                "customer",
                "payment",
                "payment_p2022_01",
                "rental",
                "store",
            ],
            &[],
        ),
        (
            "SELECT title FROM film UNION SELECT name FROM category INTERSECT SELECT name FROM language \
             EXCEPT ALL SELECT first_name FROM actor",
            Read,
            &["actor", "category", "film", "language"],
            &[],
        ),
        (
            "SELECT c.customer_id, r.* FROM customer c CROSS JOIN LATERAL \
             (SELECT rental_date FROM rental WHERE customer_id = c.customer_id ORDER BY rental_date DESC LIMIT 3) r, \
             generate_series(1, 3) g, unnest(ARRAY[1, 2]) u",
            Read,
            &["customer", "rental"],
            &[],
        ),
        ("TABLE film", Read, &["film"], &[]),
        ("TABLE legacy.rental", Read, &["legacy.rental"], &[]),
        ("SELECT 1 UNION ALL TABLE staff", Read, &["staff"], &[]),
        (
            "SELECT * FROM film_list WHERE fid = 7",
            Read,
            &["film_list"],
            &[],
        ),
        ("VALUES (1, 'a'), (2, 'b')", Read, &[], &[]),
        ("SELECT 1", Read, &[], &[]),
    ]);
}

#[test]
fn relation_names_fold_unquoted_keep_quoted_and_keep_schemas() {
    check(&[(
        "SELECT * FROM Public.Film JOIN \"Film\" ON true JOIN \"Legacy\".\"Rental\" ON true \
         JOIN legacy.RENTAL ON true JOIN mydb.public.actor ON true",
        Read,
        // Sorted by schema (unqualified first), then name.
        &[
            "Film",
            "Legacy.Rental",
            "legacy.rental",
            "public.actor",
            "public.film",
        ],
        &[],
    )]);
}

#[test]
fn ctes_are_not_tables() {
    check(&[
        (
            "WITH top AS (SELECT film_id, count(*) AS n FROM rental r JOIN inventory i USING (inventory_id) \
             GROUP BY film_id ORDER BY n DESC LIMIT 10) SELECT f.title, top.n FROM top JOIN film f USING (film_id)",
            Read,
            &["film", "inventory", "rental"],
            &[],
        ),
        // A CTE that shadows a table: inside its own body the name is the table.
        (
            "WITH film AS (SELECT * FROM film WHERE rating = 'G') SELECT * FROM film",
            Read,
            &["film"],
            &[],
        ),
        // A later CTE sees an earlier one; the earlier one's body sees the table.
        (
            "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM b",
            Read,
            &["b"],
            &[],
        ),
        (
            "WITH RECURSIVE chain(n, id) AS (SELECT 1, staff_id FROM staff UNION ALL \
             SELECT n + 1, id FROM chain WHERE n < 5) SELECT * FROM chain",
            Read,
            &["staff"],
            &[],
        ),
        // The CTE name is only hidden inside its WITH.
        (
            "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s JOIN x ON true",
            Read,
            &["x"],
            &[],
        ),
    ]);
}

#[test]
fn write_sets_of_dml() {
    check(&[
        (
            "INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id) VALUES (now(), $1, $2, $3) \
             RETURNING rental_id",
            Write,
            &[],
            &["rental"],
        ),
        (
            "INSERT INTO film_actor (actor_id, film_id) SELECT a.actor_id, $1 FROM actor a \
             WHERE a.last_name = $2 ON CONFLICT (actor_id, film_id) DO UPDATE SET last_update = excluded.last_update",
            Write,
            &["actor"],
            &["film_actor"],
        ),
        (
            "UPDATE customer c SET active = 0 FROM rental r WHERE r.customer_id = c.customer_id \
             AND r.return_date IS NULL",
            Write,
            &["rental"],
            &["customer"],
        ),
        (
            "DELETE FROM payment p USING rental r WHERE p.rental_id = r.rental_id AND r.staff_id = $1",
            Write,
            &["rental"],
            &["payment"],
        ),
        (
            "MERGE INTO inventory t USING (SELECT film_id, store_id FROM film, store) s \
             ON t.film_id = s.film_id AND t.store_id = s.store_id \
             WHEN NOT MATCHED THEN INSERT (film_id, store_id) VALUES (s.film_id, s.store_id)",
            Write,
            &["film", "store"],
            &["inventory"],
        ),
        (
            "TRUNCATE payment_p2022_01, public.payment_p2022_02 RESTART IDENTITY",
            Write,
            &[],
            &["payment_p2022_01", "public.payment_p2022_02"],
        ),
        (
            "COPY actor (actor_id, first_name) FROM STDIN WITH (FORMAT csv)",
            Write,
            &[],
            &["actor"],
        ),
        ("COPY actor TO STDOUT", Other, &["actor"], &[]),
        ("COPY (SELECT * FROM film) TO STDOUT", Other, &["film"], &[]),
        (
            "REFRESH MATERIALIZED VIEW public.rental_by_category",
            Write,
            &[],
            &["public.rental_by_category"],
        ),
        (
            "SELECT * INTO TEMP film_copy FROM film",
            Write,
            &["film"],
            &["film_copy"],
        ),
        (
            "WITH moved AS (DELETE FROM rental WHERE return_date < $1 RETURNING *) \
             SELECT count(*) FROM moved",
            Write,
            &[],
            &["rental"],
        ),
        (
            "WITH moved AS (DELETE FROM rental WHERE rental_id = $1 RETURNING *) \
             INSERT INTO rental_archive SELECT * FROM moved",
            Write,
            &[],
            &["rental", "rental_archive"],
        ),
        (
            "UPDATE ONLY payment SET amount = 0 WHERE payment_id = 1",
            Write,
            &[],
            &["payment"],
        ),
        (
            "DELETE FROM ONLY payment WHERE payment_id = 1",
            Write,
            &[],
            &["payment"],
        ),
    ]);
}

#[test]
fn write_sets_of_ddl() {
    check(&[
        (
            "DROP TABLE IF EXISTS a, legacy.b CASCADE",
            Ddl,
            &[],
            &["a", "legacy.b"],
        ),
        ("DROP VIEW film_list", Ddl, &[], &["film_list"]),
        (
            "DROP MATERIALIZED VIEW rental_by_category",
            Ddl,
            &[],
            &["rental_by_category"],
        ),
        (
            "ALTER TABLE ONLY public.actor ADD COLUMN age int",
            Ddl,
            &[],
            &["public.actor"],
        ),
        (
            "ALTER TABLE legacy.r RENAME TO r2",
            Ddl,
            &[],
            &["legacy.r", "legacy.r2"],
        ),
        (
            "CREATE TABLE film_copy AS SELECT * FROM film",
            Ddl,
            &["film"],
            &["film_copy"],
        ),
        (
            "CREATE VIEW legacy.rental AS SELECT rental_id, rental_date FROM public.rental",
            Ddl,
            &["public.rental"],
            &["legacy.rental"],
        ),
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT category_id, count(*) FROM film_category GROUP BY 1",
            Ddl,
            &["film_category"],
            &["mv"],
        ),
        ("CREATE INDEX idx ON film (title)", Ddl, &["film"], &[]),
    ]);
}

#[test]
fn other_statement_kinds() {
    check(&[
        ("BEGIN", Transaction, &[], &[]),
        ("COMMIT", Transaction, &[], &[]),
        ("ROLLBACK TO SAVEPOINT s", Transaction, &[], &[]),
        ("SET search_path TO legacy, public", Session, &[], &[]),
        ("LISTEN film_changes", Session, &[], &[]),
        ("SHOW search_path", Read, &[], &[]),
        ("CALL refresh_all()", Other, &[], &[]),
        ("DO $$ BEGIN PERFORM 1; END $$", Other, &[], &[]),
        ("EXPLAIN SELECT * FROM film", Read, &["film"], &[]),
        (
            "EXPLAIN ANALYZE DELETE FROM film WHERE film_id = 1",
            Write,
            &[],
            &["film"],
        ),
        (
            "EXPLAIN DELETE FROM film WHERE film_id = 1",
            Read,
            &["film"],
            &[],
        ),
    ]);
}

#[test]
fn unknown_writes_invalidate_everything() {
    for sql in [
        "CALL refresh_all()",
        "DO $$ BEGIN DELETE FROM film; END $$",
        "VACUUM FULL film ???",
        "CREATE OR REPLACE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "GRANT SELECT ON film TO app",
        "TRUNCATE film CASCADE",
        "DROP SCHEMA legacy CASCADE",
    ] {
        let a = run(sql);
        assert!(a.writes_unknown, "{sql}: {a:#?}");
        assert!(!a.is_cacheable(), "{sql}");
    }
    let a = run("DO $$ BEGIN DELETE FROM film; END $$");
    assert!(
        matches!(a.reason(), Some(Reason::UnknownWrite(msg)) if msg.contains("DO")),
        "{a:#?}"
    );
}

#[test]
fn pagila_views_read_their_base_tables() {
    let schema = std::fs::read_to_string(pagila_schema()).expect("read the pagila schema");
    let view = querycache::sql::split_statements(&schema)
        .into_iter()
        .find(|s| s.contains("CREATE VIEW public.sales_by_film_category"))
        .expect("the view");
    let a = run(view);
    assert_eq!(a.kind, Ddl);
    assert_eq!(names(&a.writes), ["public.sales_by_film_category"]);
    assert_eq!(
        names(&a.reads),
        [
            "public.category",
            "public.film",
            "public.film_category",
            "public.inventory",
            "public.payment",
            "public.rental"
        ]
    );
}

/// `pagila-schema.sql`, found by `common::pagila_dir` (`QUERYCACHE_PAGILA_DIR`, else
/// `../shared/datasets/pagila` beside the checkout or two levels up).
fn pagila_schema() -> std::path::PathBuf {
    common::pagila_dir()
        .expect("pagila-schema.sql (set QUERYCACHE_PAGILA_DIR)")
        .join(querycache::datasets::pagila::SCHEMA_FILE)
}
