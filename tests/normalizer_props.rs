//! Property tests of the normalizer.
//!
//! - The key fingerprint is invariant under whitespace, comment and keyword-case
//!   rewrites, and changes when a literal value changes.
//! - `analyze(canonical(q))` equals `analyze(q)` in kind, reads, writes and fingerprint.
//! - The memo's fast path (a known shape with new literals) gives exactly the full
//!   analysis.
//!
//! Queries come from a corpus of realistic statements (pagila shapes) whose literal
//! holes (`{i}` integer, `{d}` decimal, `{s}` string) are filled with generated values;
//! tokens are separated by single spaces so a rewrite may put any whitespace or
//! comment between them.

use std::sync::LazyLock;

use proptest::prelude::*;
use querycache::sql::{AnalyzeOptions, Dialect, StatementMemo, analyze, analyze_with};

const CORPUS: &[&str] = &[
    "SELECT * FROM film WHERE film_id = {i}",
    "SELECT title , rental_rate FROM film WHERE rating = {s} AND length > {i} ORDER BY title LIMIT {i} OFFSET {i}",
    "SELECT c.first_name , c.last_name , sum(p.amount) FROM customer c JOIN payment p ON p.customer_id = c.customer_id \
     WHERE p.amount > {d} AND c.email LIKE {s} GROUP BY c.first_name , c.last_name HAVING sum(p.amount) > {d}",
    "INSERT INTO actor ( first_name , last_name ) VALUES ( {s} , {s} ) RETURNING actor_id",
    "UPDATE film SET rental_rate = {d} WHERE film_id = {i}",
    "DELETE FROM rental WHERE rental_id = {i} AND staff_id IN ( {i} , {i} )",
    "SELECT CAST ( {s} AS varchar(20) ) , title FROM film WHERE film_id > {i}",
    "SELECT {i} , {s} , -{i} , {d} , NULL , true",
    "WITH r AS ( SELECT * FROM rental WHERE customer_id = {i} ) SELECT count(*) FROM r JOIN inventory i \
     USING ( inventory_id ) WHERE i.store_id = {i}",
    "SELECT * FROM rental WHERE rental_date > {s}::timestamp",
    "SELECT film_id , title FROM film WHERE film_id = ANY ( ARRAY[{i}, {i}] ) ORDER BY 1 DESC",
    "SELECT * FROM legacy.rental WHERE return_date IS NULL AND inventory_id BETWEEN {i} AND {i}",
    "SELECT date_trunc({s}, payment_date) , sum(amount) FROM payment WHERE payment_date >= DATE {s} GROUP BY 1",
    "SELECT * FROM film WHERE rating = {s} FOR UPDATE",
    "SELECT CASE WHEN length > {i} THEN {s} ELSE {s} END FROM film",
    "SELECT * FROM film f WHERE f.title IN ( {s} , {s} , {s} )",
    "SELECT payment_id FROM payment WHERE amount > {d} AND payment_date < {s} + interval {s}",
    "SELECT substring(title from {i} for {i}) FROM film",
    "SELECT {s} AS x , \"Title\" FROM \"Film\" WHERE \"Id\" = {i}",
    "SELECT * FROM film WHERE film_id = $1 AND title = {s} LIMIT {i}",
    "SELECT f.title FROM film f WHERE f.film_id IN ( SELECT film_id FROM inventory WHERE store_id = {i} ) \
     AND NOT EXISTS ( SELECT 1 FROM rental r WHERE r.inventory_id = {i} )",
];

fn int() -> impl Strategy<Value = String> {
    "[0-9]{1,20}"
}

fn dec() -> impl Strategy<Value = String> {
    "[0-9]{1,6}\\.[0-9]{1,6}"
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<String>(),
        2 => "[ a-zA-Z0-9'%_-]{0,12}",
        1 => Just("x -- y /* z */ ' ;".to_owned()),
        1 => prop_oneof![Just("now"), Just("Today"), Just("tomorrow 10:00"), Just("yesterday")]
            .prop_map(str::to_owned),
    ]
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Fill the holes of `template`, in order, from `values` (cycled, by kind).
fn fill(template: &str, ints: &[String], decs: &[String], strs: &[String]) -> String {
    let (mut i, mut d, mut s) = (0, 0, 0);
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let hole = &rest[at..at + 3];
        match hole {
            "{i}" => {
                out.push_str(&ints[i % ints.len()]);
                i += 1;
            }
            "{d}" => {
                out.push_str(&decs[d % decs.len()]);
                d += 1;
            }
            "{s}" => {
                out.push_str(&quote(&strs[s % strs.len()]));
                s += 1;
            }
            _ => unreachable!("corpus holes are {{i}}, {{d}}, {{s}}"),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

fn literals() -> impl Strategy<Value = (Vec<String>, Vec<String>, Vec<String>)> {
    (
        prop::collection::vec(int(), 1..6),
        prop::collection::vec(dec(), 1..4),
        prop::collection::vec(string(), 1..5),
    )
}

/// Whitespace or a comment to put between two tokens.
fn gap() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(" "),
        Just("  "),
        Just("\n"),
        Just("\t \r\n "),
        Just(" /* note */ "),
        Just(" /* a /* nested */ b */ "),
        Just(" -- line comment\n"),
    ]
}

/// Rewrite the template's formatting: new gaps, and each unquoted token upper-,
/// lower- or mixed-cased (holes and quoted identifiers are left alone).
fn reformat(template: &str, gaps: &[&str], cases: &[u8]) -> String {
    let mut out = String::new();
    for (n, token) in template.split(' ').filter(|t| !t.is_empty()).enumerate() {
        if n > 0 {
            out.push_str(gaps[n % gaps.len()]);
        }
        if token.contains('"') || token.contains('{') {
            out.push_str(token);
            continue;
        }
        match cases[n % cases.len()] % 3 {
            0 => out.push_str(&token.to_ascii_uppercase()),
            1 => out.push_str(&token.to_ascii_lowercase()),
            _ => out.extend(token.chars().enumerate().map(|(k, c)| {
                if k % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })),
        }
    }
    out
}

fn pg(sql: &str) -> querycache::sql::Analysis {
    analyze(sql, Dialect::Postgres)
}

static MEMO: LazyLock<StatementMemo> =
    LazyLock::new(|| StatementMemo::new(10_000, AnalyzeOptions::default()));

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn fingerprint_ignores_formatting(
        index in 0..CORPUS.len(),
        (ints, decs, strs) in literals(),
        gaps in prop::collection::vec(gap(), 1..8),
        cases in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let template = CORPUS[index];
        let plain = pg(&fill(template, &ints, &decs, &strs));
        let rewritten = fill(&reformat(template, &gaps, &cases), &ints, &decs, &strs);
        let other = pg(&rewritten);
        prop_assert!(!plain.canonical.is_empty(), "corpus parses: {:?}", plain.reason());
        prop_assert_eq!(&other.canonical, &plain.canonical, "{}", rewritten);
        prop_assert_eq!(other.fingerprint, plain.fingerprint);
        prop_assert_eq!(other.shape, plain.shape);
    }

    #[test]
    fn fingerprint_changes_with_any_literal(
        index in 0..CORPUS.len(),
        (ints, decs, strs) in literals(),
        which in 0usize..3,
        salt in "[a-z0-9]{1,4}",
    ) {
        let template = CORPUS[index];
        let before = pg(&fill(template, &ints, &decs, &strs));
        let (mut ints2, mut decs2, mut strs2) = (ints.clone(), decs.clone(), strs.clone());
        let hole = ["{i}", "{d}", "{s}"][which];
        prop_assume!(template.contains(hole));
        match which {
            0 => ints2 = ints.iter().map(|v| format!("{v}{}", salt.len())).collect(),
            1 => decs2 = decs.iter().map(|v| format!("{v}{}", salt.len())).collect(),
            _ => strs2 = strs.iter().map(|v| format!("{v}{salt}")).collect(),
        }
        let after = pg(&fill(template, &ints2, &decs2, &strs2));
        prop_assert_ne!(after.fingerprint, before.fingerprint, "{}\n{}", before.canonical, after.canonical);
        prop_assert_eq!(after.shape, before.shape);
    }

    #[test]
    fn canonical_text_analyzes_like_the_original(
        index in 0..CORPUS.len(),
        (ints, decs, strs) in literals(),
        gaps in prop::collection::vec(gap(), 1..8),
        cases in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let sql = fill(&reformat(CORPUS[index], &gaps, &cases), &ints, &decs, &strs);
        let a = pg(&sql);
        let b = pg(&a.canonical);
        prop_assert_eq!(b.kind, a.kind);
        prop_assert_eq!(&b.reads, &a.reads);
        prop_assert_eq!(&b.writes, &a.writes);
        prop_assert_eq!(&b.canonical, &a.canonical);
        prop_assert_eq!(b.fingerprint, a.fingerprint);
    }

    #[test]
    fn memo_fast_path_equals_full_analysis(
        index in 0..CORPUS.len(),
        (ints, decs, strs) in literals(),
        gaps in prop::collection::vec(gap(), 1..3),
    ) {
        // Few formatting variants, so most texts hit a known shape.
        let sql = fill(&reformat(CORPUS[index], &gaps, &[1]), &ints, &decs, &strs);
        let full = analyze_with(&sql, MEMO.options());
        let memo = MEMO.analyze(&sql);
        prop_assert_eq!(&*memo, &full, "{}", sql);
        prop_assert_eq!(&*MEMO.analyze(&sql), &full, "second lookup of {}", sql);
    }
}

#[test]
fn the_fast_path_is_taken_for_new_literals_of_a_known_shape() {
    let memo = StatementMemo::new(1_000, AnalyzeOptions::default());
    let first = memo.analyze("SELECT * FROM film WHERE film_id = 1 AND title = 'A' /* req 1 */");
    assert_eq!(memo.full_analyses(), 1);
    let again = memo.analyze("SELECT * FROM film WHERE film_id = 1 AND title = 'A' /* req 1 */");
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "a repeated text is not analyzed again"
    );
    assert_eq!(memo.full_analyses(), 1);
    let second =
        memo.analyze("SELECT * FROM film WHERE film_id = 2 AND title = 'it''s' /* request 2 */");
    assert_eq!(
        memo.full_analyses(),
        1,
        "a new literal variant does not parse"
    );
    assert_eq!(memo.templated_analyses(), 1);
    assert_eq!(
        second.canonical,
        "SELECT * FROM film WHERE film_id = 2 AND title = 'it''s'"
    );
    assert_eq!(
        *second,
        pg("SELECT * FROM film WHERE film_id = 2 AND title = 'it''s' /* request 2 */")
    );
    assert_ne!(second.fingerprint, first.fingerprint);
    assert_eq!(second.shape, first.shape);
}

#[test]
fn literal_values_that_change_the_analysis_take_the_full_path() {
    let memo = StatementMemo::new(1_000, AnalyzeOptions::default());
    let sql = |v: &str| format!("SELECT * FROM rental WHERE rental_date > '{v}'");
    assert!(memo.analyze(&sql("2020-01-01")).is_cacheable());
    let now = memo.analyze(&sql("now"));
    assert!(!now.is_cacheable(), "'now' is a time literal");
    assert_eq!(memo.full_analyses(), 2);
    assert!(memo.analyze(&sql("2021-01-01")).is_cacheable());
    assert_eq!(memo.templated_analyses(), 1);

    // A literal sqlparser does not keep as a value (a type length) is pinned.
    let cast = |n: u32, s: &str| format!("SELECT CAST('{s}' AS varchar({n}))");
    memo.analyze(&cast(3, "abc"));
    let same_shape = memo.analyze(&cast(3, "xyz"));
    assert_eq!(same_shape.canonical, "SELECT CAST('xyz' AS VARCHAR(3))");
    let before = memo.full_analyses();
    let other_length = memo.analyze(&cast(5, "xyz"));
    assert_eq!(memo.full_analyses(), before + 1, "a pinned literal changed");
    assert_eq!(other_length.canonical, "SELECT CAST('xyz' AS VARCHAR(5))");
}

#[test]
fn a_comment_holding_the_canonical_sentinel_takes_the_full_path() {
    // Fuzz regression: the template of a known shape pinned the literal of a key read,
    // while the full analysis of a text with `\u{1}` in a comment cannot cut its
    // literals and keeps no key form.
    let memo = StatementMemo::new(1_000, AnalyzeOptions::default());
    memo.analyze("SELECT * FROM film WHERE film_id = 1");
    memo.analyze("SELECT * FROM film /* a comment */ WHERE film_id = 1\n");
    memo.analyze("SELECT * FROM film /* a /* nested */ comment */ WHERE film_id = 1\n");
    let odd = "SELECT * FROM film /* a /* nested */ o\u{1}\0mect */ WHERE film_id = 7\n";
    assert_eq!(*memo.analyze(odd), pg(odd));
}

#[test]
fn a_quoted_user_type_modifier_is_never_cached() {
    // Fuzz regression: sqlparser prints a quoted modifier of a user type without its
    // quotes, so `t('Point')` and `t(Point)` would share a canonical text (and key),
    // and the canonical text of `t('''')` is not a fixed point.
    for sql in [
        "SELECT '1'::nemeric(10, 'a')",
        "SELECT '1'::nemeric(10,'''''''',2)",
    ] {
        let a = pg(sql);
        assert!(
            a.reason()
                .is_some_and(|r| r.to_string().contains("quoted type modifier")),
            "{sql}: {:?}",
            a.reason()
        );
    }
    let plain = pg("SELECT '1'::nemeric(10, 2)");
    assert!(
        plain.reason().is_none(),
        "number modifiers print back as written"
    );
    assert_eq!(pg(&plain.canonical).canonical, plain.canonical);
}
