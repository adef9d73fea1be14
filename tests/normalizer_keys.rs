//! Key safety and cacheability verdicts.
//!
//! Two statements that can return different results never share a key fingerprint;
//! formatting variants do. Every never-cacheable construct has its own reason.

use querycache::sql::{Analysis, Dialect, Reason, StatementKind, analyze};

fn run(sql: &str) -> Analysis {
    analyze(sql, Dialect::Postgres)
}

#[test]
fn statements_with_different_results_never_share_a_key() {
    let pairs = [
        // String contents: spaces, case, comment markers inside strings.
        (
            "SELECT * FROM film WHERE title = 'a b'",
            "SELECT * FROM film WHERE title = 'a  b'",
        ),
        (
            "SELECT * FROM film WHERE title = 'Alien'",
            "SELECT * FROM film WHERE title = 'alien'",
        ),
        (
            "SELECT * FROM film WHERE title = 'x -- y'",
            "SELECT * FROM film WHERE title = 'x'",
        ),
        (
            "SELECT * FROM film WHERE title = 'x /* y */'",
            "SELECT * FROM film WHERE title = 'x'",
        ),
        ("SELECT 'it''s'", "SELECT 'its'"),
        // sqlparser's own Display prints both of each pair alike (lossy escaper).
        ("SELECT ''''", "SELECT ''''''"),
        ("SELECT 'a''''b'", "SELECT 'a''b'"),
        ("SELECT N'a''''b'", "SELECT N'a''b'"),
        ("SELECT \"a\"\"b\" FROM t", "SELECT \"a\"\"\"\"b\" FROM t"),
        // Texts holding the sentinel character are canonicalized another way.
        ("SELECT '\u{1}', ''''", "SELECT '\u{1}', ''''''"),
        (
            "SELECT '\u{1}' AS \"a\"\"b\"",
            "SELECT '\u{1}' AS \"a\"\"\"\"b\"",
        ),
        // E'' and dollar-quoted strings.
        ("SELECT E'a\\nb'", "SELECT 'a\\nb'"),
        ("SELECT E'a\\tb'", "SELECT E'a\\nb'"),
        ("SELECT $$a b$$", "SELECT $$a  b$$"),
        ("SELECT $t$x$t$", "SELECT $t$y$t$"),
        // Quoted identifiers and aliases.
        ("SELECT * FROM \"Film\"", "SELECT * FROM film"),
        (
            "SELECT title AS \"Title\" FROM film",
            "SELECT title AS title FROM film",
        ),
        (
            "SELECT f.title FROM film f",
            "SELECT f.title FROM film \"F\"",
        ),
        // Numeric literals.
        (
            "SELECT * FROM film WHERE film_id = 1",
            "SELECT * FROM film WHERE film_id = 2",
        ),
        ("SELECT 1.0", "SELECT 1.00"),
        ("SELECT 10", "SELECT 1e1"),
        ("SELECT -1", "SELECT 1"),
        // NULL vs 'NULL', TRUE vs 'true'.
        (
            "SELECT * FROM film WHERE title = NULL",
            "SELECT * FROM film WHERE title = 'NULL'",
        ),
        ("SELECT true", "SELECT 'true'"),
        // Placeholder order.
        (
            "SELECT * FROM film WHERE a = $1 AND b = $2",
            "SELECT * FROM film WHERE a = $2 AND b = $1",
        ),
        // LIMIT, OFFSET, ASC/DESC, DISTINCT, positional ORDER BY.
        ("SELECT * FROM film LIMIT 10", "SELECT * FROM film LIMIT 20"),
        (
            "SELECT * FROM film LIMIT 10 OFFSET 5",
            "SELECT * FROM film LIMIT 10 OFFSET 6",
        ),
        (
            "SELECT * FROM film ORDER BY title ASC",
            "SELECT * FROM film ORDER BY title DESC",
        ),
        (
            "SELECT * FROM film ORDER BY title",
            "SELECT * FROM film ORDER BY title DESC",
        ),
        (
            "SELECT DISTINCT rating FROM film",
            "SELECT rating FROM film",
        ),
        (
            "SELECT title, rating FROM film ORDER BY 1",
            "SELECT title, rating FROM film ORDER BY 2",
        ),
        (
            "SELECT * FROM film ORDER BY title NULLS FIRST",
            "SELECT * FROM film ORDER BY title NULLS LAST",
        ),
        // Operators and casts.
        (
            "SELECT * FROM film WHERE title LIKE 'A%'",
            "SELECT * FROM film WHERE title ILIKE 'A%'",
        ),
        ("SELECT '1'::int", "SELECT '1'::text"),
        ("SELECT (1 + 2) * 3", "SELECT 1 + 2 * 3"),
        // Schemas.
        ("SELECT * FROM legacy.rental", "SELECT * FROM rental"),
    ];
    for (a, b) in pairs {
        let (x, y) = (run(a), run(b));
        assert!(
            !x.canonical.is_empty() && !y.canonical.is_empty(),
            "{a} / {b} parse"
        );
        assert_ne!(
            x.fingerprint, y.fingerprint,
            "{a}\n{b}\nboth: {}",
            x.canonical
        );
    }
}

#[test]
fn formatting_variants_share_a_key_and_a_shape() {
    let base = "SELECT f.title, count(*) FROM film f JOIN film_actor fa ON fa.film_id = f.film_id \
                WHERE f.rating = 'PG' AND f.length > 90 GROUP BY f.title ORDER BY 2 DESC LIMIT 10";
    let variants = [
        "select f.title, count(*) from film f join film_actor fa on fa.film_id = f.film_id \
         where f.rating = 'PG' and f.length > 90 group by f.title order by 2 desc limit 10",
        "SELECT   F.Title,\n\tCOUNT(*)\nFROM Film F\n  JOIN Film_Actor FA ON FA.Film_Id = F.Film_Id -- join\n\
         WHERE F.Rating = 'PG' /* rated */ AND F.Length > 90\nGROUP BY F.Title ORDER BY 2 DESC LIMIT 10;",
        "SELECT f.title, count(*) FROM film AS f JOIN film_actor AS fa ON fa.film_id = f.film_id \
         WHERE f.rating = 'PG' AND f.length > 90 GROUP BY f.title ORDER BY 2 DESC LIMIT 10",
        "/* app=web */ SELECT f.title, count(*) FROM film f JOIN film_actor fa ON fa.film_id = f.film_id \
         WHERE f.rating = 'PG' AND f.length > 90 GROUP BY f.title ORDER BY 2 DESC LIMIT 10 ;  ",
    ];
    let a = run(base);
    assert!(a.is_cacheable(), "{a:#?}");
    for v in variants {
        let b = run(v);
        assert_eq!(b.canonical, a.canonical, "{v}");
        assert_eq!(b.fingerprint, a.fingerprint, "{v}");
        assert_eq!(b.shape, a.shape, "{v}");
    }
}

#[test]
fn literal_variants_share_a_shape_but_not_a_key() {
    let a = run("SELECT * FROM film WHERE film_id = 1 AND title = 'A'");
    let b = run("SELECT * FROM film WHERE film_id = 22 AND title = 'B'");
    assert_eq!(a.shape, b.shape);
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(b.literals, ["22", "'B'"]);
    let c = run("SELECT * FROM film WHERE film_id = $1 AND title = $2");
    assert_ne!(a.shape, c.shape, "a parameter is structure, not a literal");
    assert!(c.literals.is_empty());
}

fn reason(sql: &str) -> Reason {
    let a = run(sql);
    a.reason()
        .cloned()
        .unwrap_or_else(|| panic!("{sql} is cacheable: {a:#?}"))
}

#[test]
fn never_cacheable_constructs_each_have_their_reason() {
    use Reason::*;
    let volatile = |name: &str| VolatileFunction(name.to_owned());
    let cases: Vec<(&str, Reason)> = vec![
        ("SELECT random()", volatile("random")),
        ("SELECT nextval('film_film_id_seq')", volatile("nextval")),
        (
            "SELECT * FROM rental WHERE rental_date > now() - interval '1 day'",
            volatile("now"),
        ),
        ("SELECT CURRENT_TIMESTAMP", volatile("current_timestamp")),
        ("SELECT current_user", volatile("current_user")),
        (
            "SELECT current_setting('app.tenant')",
            volatile("current_setting"),
        ),
        (
            "SELECT * FROM film WHERE last_update < pg_catalog.now()",
            volatile("now"),
        ),
        (
            "SELECT gen_random_uuid() FROM film",
            volatile("gen_random_uuid"),
        ),
        (
            "SELECT * FROM rental WHERE rental_date > 'now'",
            TimeLiteral("now".into()),
        ),
        (
            "SELECT * FROM rental WHERE rental_date::date = 'today'::date",
            TimeLiteral("today".into()),
        ),
        (
            "SELECT * FROM rental WHERE rental_date < timestamp 'tomorrow'",
            TimeLiteral("tomorrow".into()),
        ),
        (
            "SELECT * FROM rental WHERE rental_date > 'Yesterday 10:00'",
            TimeLiteral("Yesterday 10:00".into()),
        ),
        ("SELECT * FROM film WHERE film_id = 1 FOR UPDATE", RowLock),
        (
            "SELECT * FROM inventory WHERE film_id = 1 FOR SHARE SKIP LOCKED",
            RowLock,
        ),
        (
            "SELECT * FROM film WHERE film_id IN (SELECT film_id FROM inventory FOR UPDATE)",
            RowLock,
        ),
        (
            "WITH d AS (DELETE FROM rental WHERE rental_id = 1 RETURNING *) SELECT * FROM d",
            DataModifyingCte,
        ),
        ("SELECT * INTO film_copy FROM film", SelectInto),
        ("SELECT * FROM film TABLESAMPLE SYSTEM (10)", TableSample),
        (
            "SELECT * FROM pg_temp.scratch",
            TempTable("pg_temp.scratch".into()),
        ),
        ("SELECT * FROM pg_class", SystemCatalog("pg_class".into())),
        (
            "SELECT * FROM pg_catalog.pg_stat_activity",
            SystemCatalog("pg_catalog.pg_stat_activity".into()),
        ),
        (
            "SELECT table_name FROM information_schema.tables",
            SystemCatalog("information_schema.tables".into()),
        ),
        ("EXPLAIN ANALYZE SELECT * FROM film", ExplainAnalyze),
        (
            "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM film",
            ExplainAnalyze,
        ),
        ("SELECT 1; SELECT 2", MultipleStatements),
        ("SELECT * FROM ONLY payment", FromOnly),
        ("SELECT * FROM ONLY payment p WHERE p.amount > 1", FromOnly),
        ("SELECT * FROM a JOIN ONLY payment ON true", FromOnly),
        ("SELECT 0x1F", Misread("0x… number".into())),
        ("SHOW search_path", Show),
        ("EXPLAIN SELECT * FROM film", Explain),
        (
            "INSERT INTO film (title) VALUES ('x')",
            NotARead(StatementKind::Write),
        ),
        ("BEGIN", NotARead(StatementKind::Transaction)),
        (
            "SET search_path TO legacy",
            NotARead(StatementKind::Session),
        ),
        ("CREATE INDEX ON film (title)", NotARead(StatementKind::Ddl)),
    ];
    for (sql, want) in cases {
        assert_eq!(reason(sql), want, "{sql}");
    }
}

#[test]
fn unparseable_text_reports_the_parser_message() {
    let a = run("SELECT * FROM film WHERE");
    assert!(
        matches!(a.reason(), Some(Reason::ParseError(m)) if m.contains("Expected")),
        "{a:#?}"
    );
    assert!(!a.writes_unknown);
    assert!(a.canonical.is_empty());
    let b = run("SELECT * FROM film WHERE title =");
    assert_ne!(
        a.fingerprint, b.fingerprint,
        "unparsed texts do not share a fingerprint"
    );
    let c = run("UPSERT INTO film VALUES (1)");
    assert!(
        matches!(c.reason(), Some(Reason::UnknownWrite(m)) if m.contains("UPSERT")),
        "{c:#?}"
    );
    assert!(c.writes_unknown);
}

#[test]
fn text_over_the_cap_is_not_parsed() {
    use querycache::sql::{AnalyzeOptions, analyze_with};
    let options = AnalyzeOptions {
        max_len: 64,
        ..AnalyzeOptions::default()
    };
    let select = format!(
        "SELECT * FROM film WHERE title IN ({})",
        vec!["'x'"; 40].join(", ")
    );
    let a = analyze_with(&select, &options);
    assert_eq!(
        a.reason(),
        Some(&Reason::TooLarge {
            len: select.len(),
            cap: 64
        })
    );
    assert!(!a.writes_unknown);
    let insert = format!(
        "INSERT INTO film (title) VALUES {}",
        vec!["('x')"; 40].join(", ")
    );
    let b = analyze_with(&insert, &options);
    assert!(matches!(b.reason(), Some(Reason::TooLarge { .. })));
    assert_eq!(b.writes.len(), 1, "{b:#?}");
    assert_eq!(b.writes[0].to_string(), "film");
    let c = analyze_with(&format!("DO $$ {} $$", "x".repeat(100)), &options);
    assert!(c.writes_unknown);
}

#[test]
fn cacheable_reads_with_builtins_and_user_functions() {
    let a = run(
        "SELECT f.title, upper(f.title), coalesce(f.rental_rate, 0), date_trunc('day', r.rental_date), \
         public.inventory_in_stock(i.inventory_id), film_in_stock(1, 1) \
         FROM film f JOIN inventory i USING (film_id) JOIN rental r USING (inventory_id) WHERE f.film_id = $1",
    );
    assert!(a.is_cacheable(), "{a:#?}");
    assert_eq!(a.functions, ["film_in_stock", "public.inventory_in_stock"]);
}

#[test]
fn canonical_text_is_a_fixed_point_for_tricky_literals() {
    for sql in [
        "SELECT 'it''s', '''', '''''', E'a\\'b\\\\c\\n', N'x''y', U&'d\\0061t'",
        "SELECT B'01''1', X'f''f', $tag$a'b$tag$, $$'$$, 1.50, 1e5, .5, -2, 0x1F",
        "SELECT \"a\"\"b\", \"c\"\"\"\"d\" FROM \"we\"\"ird\" AS \"x\"\"y\"",
        "SELECT '8it''s', E'\\anb\\x41', x%$  y, 0x, B'0508it''s', X'ff0061t', .5O",
        "SELECT -5,5 .O, 'a' .b, $1 .c",
    ] {
        let a = run(sql);
        assert!(!a.canonical.is_empty(), "{sql}: {:?}", a.reason());
        let b = run(&a.canonical);
        assert_eq!(b.canonical, a.canonical, "{sql}");
        assert_eq!(b.fingerprint, a.fingerprint, "{sql}");
    }
}

#[test]
fn a_quote_inside_a_bit_string_does_not_split_it_into_two_literals() {
    // Printed unescaped, B'x'', ''y' (one literal) would read like B'x', 'y' (two).
    assert_ne!(
        run("SELECT B'x'', ''y'").fingerprint,
        run("SELECT B'x', 'y'").fingerprint
    );
}
