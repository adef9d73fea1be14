//! Which pinned columns form a key, decided with the catalog: primary keys and unique
//! indexes as `pg_index` stores them (composite, partial, expression, INCLUDE,
//! nondeterministic collation), against the normalizer's key-access forms.

mod common;

use querycache::freshness::Catalog;
use querycache::sql::{Dialect, Pin, analyze};

const SCHEMA: &str = r"
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE one (id int PRIMARY KEY, v text);
CREATE TABLE pair (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE person (
    id serial PRIMARY KEY,
    email text UNIQUE,
    handle text COLLATE ci UNIQUE,
    code text,
    nick text,
    slot int
);
CREATE UNIQUE INDEX person_code ON person (code) WHERE code IS NOT NULL;
CREATE UNIQUE INDEX person_nick ON person (lower(nick));
CREATE UNIQUE INDEX person_slot ON person (slot) INCLUDE (nick);
CREATE VIEW one_view AS SELECT * FROM one;
CREATE TABLE parted (id int, part int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
";

#[tokio::test]
async fn pinned_columns_cover_exactly_the_keys_postgres_guarantees() {
    let Some(pool) = common::scratch_database("qc_rowkey_catalog_keys").await else {
        return;
    };
    common::exec(&pool, SCHEMA).await;
    let catalog = Catalog::load(&pool).await.expect("load catalog");
    let rel = common::rel;

    let covered = |relation: &str, pinned: &[&str]| {
        catalog.key_covered_by(&rel(relation), pinned).map(|key| {
            key.columns
                .iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(covered("public.one", &["id"]), Some(vec!["id".into()]));
    assert_eq!(covered("public.one", &["v"]), None);
    assert_eq!(
        covered("public.pair", &["b", "a"]),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(covered("public.pair", &["a"]), None, "half a composite key");
    assert_eq!(
        covered("public.person", &["email"]),
        Some(vec!["email".into()])
    );
    assert_eq!(
        covered("public.person", &["handle"]),
        None,
        "nondeterministic collation"
    );
    assert_eq!(covered("public.person", &["code"]), None, "partial index");
    assert_eq!(
        covered("public.person", &["nick"]),
        None,
        "expression index"
    );
    assert_eq!(
        covered("public.person", &["slot"]),
        Some(vec!["slot".into()]),
        "INCLUDE is not key"
    );
    assert_eq!(
        covered("public.person", &["id", "email"]),
        Some(vec!["id".into()]),
        "the primary key is preferred"
    );
    assert_eq!(
        covered("public.one_view", &["id"]),
        None,
        "views are table level"
    );
    assert_eq!(
        covered("public.parted", &["id", "part"]),
        None,
        "a partitioned parent"
    );
    assert_eq!(
        covered("public.parted_1", &["id", "part"]),
        Some(vec!["id".into(), "part".into()]),
        "a partition has its own key"
    );

    let person = catalog.unique_keys(&rel("public.person"));
    assert!(person[0].primary);
    assert_eq!(&*person[0].columns[0].type_name, "integer");
    assert!(person.iter().all(|k| k.immediate));

    // The normalizer's forms against the catalog.
    let read = |sql: &str| {
        let analysis = analyze(sql, Dialect::Postgres);
        let read = analysis.key_read.expect("a key-read form");
        let pinned = Pin::columns(&read.pins);
        catalog
            .key_covered_by(&rel("public.pair"), &pinned)
            .is_some()
    };
    assert!(read(
        "SELECT v FROM pair WHERE a = 1 AND b = $1 AND v <> 'x'"
    ));
    assert!(!read("SELECT v FROM pair WHERE a = 1"));
    assert!(!read("SELECT v FROM pair WHERE a = 1 AND b = NULL"));
}
