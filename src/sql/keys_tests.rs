//! Unit tests of the key-access forms (`keys.rs`).

use super::super::analysis::{Analysis, KeyWriteKind, PinnedValue};
use super::super::{Dialect, StatementMemo, analyze};
use std::sync::Arc;

fn a(sql: &str) -> Analysis {
    analyze(sql, Dialect::Postgres)
}

/// The pins of a key read as `column=value` strings: literals by their text, binds as
/// `$n`, casts as `::type`, `|` between IN values.
fn pins_of(analysis: &Analysis, pins: &[super::Pin]) -> Vec<String> {
    pins.iter()
        .map(|pin| {
            let values: Vec<String> = pin.values.iter().map(|v| value_text(analysis, v)).collect();
            format!("{}={}", pin.column, values.join("|"))
        })
        .collect()
}

fn value_text(analysis: &Analysis, value: &PinnedValue) -> String {
    match value {
        PinnedValue::Literal {
            index,
            negated,
            cast,
        } => format!(
            "{}{}{}",
            if *negated { "-" } else { "" },
            analysis.literals[*index],
            cast.as_ref().map(|c| format!("::{c}")).unwrap_or_default()
        ),
        PinnedValue::Bind { number, cast } => format!(
            "${number}{}",
            cast.as_ref().map(|c| format!("::{c}")).unwrap_or_default()
        ),
    }
}

fn read_pins(sql: &str) -> Option<Vec<String>> {
    let analysis = a(sql);
    let read = analysis.key_read.clone()?;
    Some(pins_of(&analysis, &read.pins))
}

#[test]
fn a_primary_key_lookup_pins_its_column() {
    let analysis = a("SELECT title FROM film WHERE film_id = 5");
    let read = analysis.key_read.clone().expect("a key read");
    assert_eq!(read.relation.to_string(), "film");
    assert_eq!(pins_of(&analysis, &read.pins), ["film_id=5"]);
    assert_eq!(analysis.key_write, None);
    assert_eq!(
        read_pins("SELECT * FROM public.film WHERE $1 = film_id").expect("key read"),
        ["film_id=$1"]
    );
}

#[test]
fn composite_keys_pin_every_conjunct_and_ignore_other_predicates() {
    assert_eq!(
        read_pins(
            "SELECT * FROM film_actor WHERE actor_id = $1 AND (film_id = $2 AND last_update > '2020-01-01')"
        )
        .expect("key read"),
        ["actor_id=$1", "film_id=$2"]
    );
}

#[test]
fn literal_types_and_casts_are_recorded_for_the_catalog_to_judge() {
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id = '5'").expect("key read"),
        ["film_id='5'"]
    );
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id = 5.0").expect("key read"),
        ["film_id=5.0"]
    );
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id = -5").expect("key read"),
        ["film_id=-5"]
    );
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id = $1::int8").expect("key read"),
        ["film_id=$1::int8"]
    );
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id = CAST('7' AS bigint)").expect("key read"),
        ["film_id='7'::bigint"]
    );
}

#[test]
fn null_never_pins_and_neither_do_other_operators() {
    for sql in [
        "SELECT * FROM film WHERE film_id = NULL",
        "SELECT * FROM film WHERE film_id IS NULL",
        "SELECT * FROM film WHERE film_id <> 5",
        "SELECT * FROM film WHERE film_id = 5 OR film_id = 6",
        "SELECT * FROM film WHERE film_id NOT IN (1, 2)",
        "SELECT * FROM film WHERE film_id IN (1, NULL)",
        "SELECT * FROM film WHERE film_id::text = '5'",
        "SELECT * FROM film WHERE film_id = rental_rate",
        "SELECT * FROM film WHERE other.film_id = 5",
        "SELECT * FROM film",
    ] {
        assert_eq!(read_pins(sql), Some(vec![]), "{sql}");
    }
}

#[test]
fn in_lists_of_values_pin_several_keys() {
    assert_eq!(
        read_pins("SELECT * FROM film WHERE film_id IN (1, $1, '3')").expect("key read"),
        ["film_id=1|$1|'3'"]
    );
}

#[test]
fn aliases_and_qualified_columns_resolve_to_the_relation() {
    assert_eq!(
        read_pins("SELECT f.title FROM film AS f WHERE f.film_id = 1").expect("key read"),
        ["film_id=1"]
    );
    assert_eq!(
        read_pins("SELECT title FROM public.film WHERE public.film.film_id = 1 AND film.x = 2")
            .expect("key read"),
        ["film_id=1", "x=2"],
        "Postgres accepts the bare table name for a schema-qualified relation"
    );
    assert_eq!(
        read_pins("SELECT f.title FROM film AS f WHERE film.film_id = 1").expect("key read"),
        Vec::<String>::new(),
        "with an alias the table name no longer qualifies"
    );
}

#[test]
fn reads_that_depend_on_more_than_the_pinned_rows_are_not_key_reads() {
    for sql in [
        "SELECT * FROM film f JOIN film_actor fa USING (film_id) WHERE f.film_id = 1",
        "SELECT * FROM film, actor WHERE film_id = 1",
        "SELECT * FROM film WHERE film_id = 1 AND language_id IN (SELECT language_id FROM language)",
        "SELECT (SELECT count(*) FROM actor), title FROM film WHERE film_id = 1",
        "SELECT * FROM film WHERE film_id = 1 AND EXISTS (SELECT 1 FROM actor)",
        "SELECT count(*) FROM film WHERE film_id = 1",
        "SELECT rating, max(length) FROM film WHERE film_id = 1 GROUP BY rating",
        "SELECT title, row_number() OVER () FROM film WHERE film_id = 1",
        "SELECT title FROM film WHERE film_id = 1 UNION SELECT title FROM film WHERE film_id = 2",
        "WITH f AS (SELECT * FROM film) SELECT * FROM f WHERE film_id = 1",
        "SELECT * FROM generate_series(1, 3) g WHERE g = 1",
        "SELECT * FROM (SELECT * FROM film) f WHERE film_id = 1",
        "SELECT * FROM film WHERE film_id = 1 FOR UPDATE",
        "SELECT * FROM film WHERE film_id = 1; SELECT 1",
    ] {
        assert_eq!(a(sql).key_read, None, "{sql}");
    }
}

#[test]
fn updates_and_deletes_by_key_are_key_writes() {
    let analysis =
        a("UPDATE film SET title = $1, rental_rate = 2 WHERE film_id = $2 RETURNING title");
    let write = analysis.key_write.clone().expect("key write");
    assert_eq!(write.relation.to_string(), "film");
    assert_eq!(pins_of(&analysis, &write.pins), ["film_id=$2"]);
    assert_eq!(
        write.kind,
        KeyWriteKind::Update {
            assigned: vec![Arc::from("rental_rate"), Arc::from("title")]
        }
    );
    assert_eq!(analysis.key_read, None);

    let analysis = a("DELETE FROM film_actor WHERE film_id = 3 AND actor_id = '4'");
    let write = analysis.key_write.clone().expect("key write");
    assert_eq!(write.kind, KeyWriteKind::Delete);
    assert_eq!(
        pins_of(&analysis, &write.pins),
        ["actor_id='4'", "film_id=3"]
    );
}

#[test]
fn a_key_changing_update_records_the_assigned_key_column() {
    let analysis = a("UPDATE film SET film_id = 7 WHERE film_id = 5");
    let write = analysis.key_write.clone().expect("key write");
    assert_eq!(pins_of(&analysis, &write.pins), ["film_id=5"]);
    let KeyWriteKind::Update { assigned } = &write.kind else {
        panic!("an update");
    };
    assert_eq!(assigned.as_slice(), [Arc::from("film_id")]);
}

#[test]
fn writes_through_other_tables_are_not_key_writes() {
    for sql in [
        "UPDATE film SET title = 'x' FROM language WHERE film.film_id = 1",
        "DELETE FROM film USING language WHERE film.film_id = 1",
        "INSERT INTO film SELECT * FROM film WHERE film_id = 1",
        "INSERT INTO film VALUES (1, 'x')",
        "INSERT INTO film DEFAULT VALUES",
        "MERGE INTO film USING language ON true WHEN MATCHED THEN DELETE",
        "TRUNCATE film",
    ] {
        assert_eq!(a(sql).key_write, None, "{sql}");
    }
    // A write with no pinned column is a key-write form with no pins: table level.
    let write = a("UPDATE film SET title = 'x'").key_write.expect("form");
    assert!(write.pins.is_empty());
}

#[test]
fn inserts_record_columns_and_values_per_row() {
    let analysis =
        a("INSERT INTO actor (actor_id, first_name) VALUES (1, 'a'), ($1, DEFAULT), (now(), NULL)");
    let write = analysis.key_write.clone().expect("key write");
    let KeyWriteKind::Insert {
        columns,
        rows,
        on_conflict,
    } = &write.kind
    else {
        panic!("an insert");
    };
    assert_eq!(
        columns.as_slice(),
        [Arc::from("actor_id"), Arc::from("first_name")]
    );
    let text: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| {
                    v.as_ref()
                        .map_or("-".to_owned(), |v| value_text(&analysis, v))
                })
                .collect()
        })
        .collect();
    assert_eq!(text, [["1", "'a'"], ["$1", "-"], ["-", "-"]]);
    assert_eq!(*on_conflict, None);
}

#[test]
fn an_insert_with_a_defaulted_key_column_lists_only_the_given_columns() {
    let write = a("INSERT INTO actor (first_name, last_name) VALUES ($1, $2)")
        .key_write
        .expect("key write");
    let KeyWriteKind::Insert { columns, .. } = &write.kind else {
        panic!("an insert");
    };
    // actor_id is missing: the catalog sees the key is defaulted (serial), so the new
    // row's key is unknown and the write is table level.
    assert!(!columns.iter().any(|c| &**c == "actor_id"));
}

#[test]
fn on_conflict_clauses_are_recorded() {
    let conflict = |sql: &str| match a(sql).key_write.expect("key write").kind {
        KeyWriteKind::Insert { on_conflict, .. } => on_conflict.expect("on conflict"),
        other => panic!("not an insert: {other:?}"),
    };
    let c = conflict(
        "INSERT INTO actor (actor_id, first_name) VALUES (1, 'a') ON CONFLICT (actor_id) DO NOTHING",
    );
    assert_eq!(c.target.as_slice(), [Arc::from("actor_id")]);
    assert_eq!(c.updates, None);
    let c = conflict(
        "INSERT INTO actor (actor_id, first_name) VALUES ($1, $2) \
         ON CONFLICT (actor_id) DO UPDATE SET first_name = excluded.first_name, actor_id = 9",
    );
    assert_eq!(
        c.updates,
        Some(vec![Arc::from("actor_id"), Arc::from("first_name")])
    );
    let c = conflict(
        "INSERT INTO actor (actor_id) VALUES (1) ON CONFLICT ON CONSTRAINT actor_pkey DO NOTHING",
    );
    assert_eq!(c.constraint.as_deref(), Some("actor_pkey"));
    assert!(c.target.is_empty());
}

#[test]
fn templated_analyses_pin_the_new_texts_literals() {
    let memo = StatementMemo::new(64, Default::default());
    let first = memo.analyze("SELECT * FROM film WHERE film_id = 5 AND title = 'A'");
    let second = memo.analyze("SELECT * FROM film WHERE film_id = 77 AND title = 'B'");
    assert_eq!(
        memo.templated_analyses(),
        1,
        "the second text took the template"
    );
    let pins = |x: &Analysis| pins_of(x, &x.key_read.clone().expect("key read").pins);
    assert_eq!(pins(&first), ["film_id=5", "title='A'"]);
    assert_eq!(pins(&second), ["film_id=77", "title='B'"]);
    assert_eq!(
        *second,
        a("SELECT * FROM film WHERE film_id = 77 AND title = 'B'")
    );

    let w1 = memo.analyze("UPDATE film SET title = 'x' WHERE film_id = 1");
    let w2 = memo.analyze("UPDATE film SET title = 'y' WHERE film_id = 2");
    assert_eq!(memo.templated_analyses(), 2);
    let wpins = |x: &Analysis| pins_of(x, &x.key_write.clone().expect("key write").pins);
    assert_eq!(wpins(&w1), ["film_id=1"]);
    assert_eq!(wpins(&w2), ["film_id=2"]);
    let i = memo.analyze("INSERT INTO actor (actor_id) VALUES (3)");
    let j = memo.analyze("INSERT INTO actor (actor_id) VALUES (4)");
    assert_eq!(memo.templated_analyses(), 3);
    assert_eq!(*j, a("INSERT INTO actor (actor_id) VALUES (4)"));
    assert_ne!(i.key_write, None);
}

#[test]
fn pinned_columns_and_key_changes_of_writes() {
    let w = |sql: &str| a(sql).key_write.expect("key write");
    let insert = w("INSERT INTO actor (actor_id, first_name) VALUES (1, 'a'), ($1, DEFAULT)");
    assert_eq!(
        insert.pinned_columns(),
        ["actor_id"],
        "a DEFAULT in one row unpins"
    );
    assert_eq!(
        w("INSERT INTO actor (first_name) VALUES ('a')").pinned_columns(),
        ["first_name"],
        "the defaulted key column is not pinned"
    );
    let update = w("UPDATE film SET film_id = 7 WHERE film_id = 5");
    assert_eq!(update.pinned_columns(), ["film_id"]);
    assert!(update.assigns_any(&["film_id"]));
    assert!(!w("UPDATE film SET title = 'x' WHERE film_id = 5").assigns_any(&["film_id"]));
    let upsert = w(
        "INSERT INTO actor (actor_id) VALUES (1) ON CONFLICT (actor_id) DO UPDATE SET actor_id = 2",
    );
    assert!(upsert.assigns_any(&["actor_id"]));
    assert!(
        !w("INSERT INTO actor (actor_id) VALUES (1) ON CONFLICT DO NOTHING")
            .assigns_any(&["actor_id"])
    );
}
