//! Row-level invalidation, case by case against real Postgres: after each write
//! through the cache, every cached read equals what the database returns (so no case
//! serves a stale row), and the reads a key write cannot change stay cached.

mod common;

use querycache::{CachedQuery, Granularity, QueryCache};
use sqlx::{PgPool, Postgres};

/// A bind argument of a test statement.
#[derive(Debug, Clone, Copy)]
enum Arg {
    I16(i16),
    I32(i32),
    I64(i64),
    F64(f64),
    Text(&'static str),
}

/// One statement with its binds.
type Stmt = (&'static str, &'static [Arg]);

/// A scenario: reads are filled (and hit once), then each write runs through the cache
/// and every read is compared with the database; under row granularity the reads at
/// `kept` must still be hits after the writes.
struct Case {
    name: &'static str,
    reads: &'static [Stmt],
    writes: &'static [Stmt],
    kept: &'static [usize],
}

const SCHEMA: &str = r"
CREATE TABLE t (id int PRIMARY KEY, v int8);
INSERT INTO t SELECT g, g * 10 FROM generate_series(1, 40) g;
CREATE VIEW tv AS SELECT id, v FROM t;
CREATE TABLE s (id serial PRIMARY KEY, v int8);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE, v int8);
INSERT INTO u VALUES (1, 'a@x', 1), (2, 'b@x', 2);
CREATE TABLE c (a int, b text, v int8, PRIMARY KEY (a, b));
INSERT INTO c VALUES (1, 'x', 1), (1, 'y', 2);
CREATE TABLE tk (name varchar(20) PRIMARY KEY, v int8);
INSERT INTO tk VALUES ('ab', 1), ('cd', 2);
CREATE COLLATION qc_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE nd (name text COLLATE qc_ci PRIMARY KEY, v int8);
INSERT INTO nd VALUES ('Abc', 1);
CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree (id) ON DELETE CASCADE, v int8);
INSERT INTO tree VALUES (1, NULL, 1), (2, 1, 2), (3, NULL, 3);
CREATE TABLE trg (id int PRIMARY KEY, v int8);
INSERT INTO trg VALUES (1, 1), (2, 2);
CREATE FUNCTION trg_touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN IF pg_trigger_depth() = 1 THEN UPDATE trg SET v = v + 100 WHERE id = 2; END IF;
     RETURN NULL; END $$;
CREATE TRIGGER trg_touch AFTER UPDATE ON trg FOR EACH STATEMENT EXECUTE FUNCTION trg_touch();
CREATE TABLE bt (id int PRIMARY KEY, v int8);
CREATE FUNCTION bt_shift() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.id := NEW.id + 100; RETURN NEW; END $$;
CREATE TRIGGER bt_shift BEFORE INSERT ON bt FOR EACH ROW EXECUTE FUNCTION bt_shift();
CREATE TABLE rl (id int PRIMARY KEY, v int8);
INSERT INTO rl VALUES (1, 1), (2, 2);
CREATE RULE rl_also AS ON DELETE TO rl DO ALSO UPDATE rl SET v = v + 1000 WHERE id = 2;
CREATE TABLE pp (id int PRIMARY KEY, v int8) PARTITION BY RANGE (id);
CREATE TABLE pp1 PARTITION OF pp FOR VALUES FROM (1) TO (100);
CREATE TABLE pp2 PARTITION OF pp FOR VALUES FROM (100) TO (200);
INSERT INTO pp VALUES (5, 5), (150, 150);
";

const KEY_1: Stmt = ("SELECT v FROM t WHERE id = $1", &[Arg::I32(1)]);
const KEY_2: Stmt = ("SELECT v FROM t WHERE id = $1", &[Arg::I32(2)]);
const SUM: Stmt = ("SELECT sum(v)::int8 FROM t", &[]);
const RANGE: Stmt = (
    "SELECT v FROM t WHERE id BETWEEN $1 AND $2 ORDER BY id",
    &[Arg::I32(1), Arg::I32(3)],
);

const CASES: &[Case] = &[
    Case {
        name: "a key update invalidates its key, ranges and aggregates, not other keys",
        reads: &[
            KEY_1,
            KEY_2,
            SUM,
            RANGE,
            ("SELECT v FROM tv WHERE id = 1", &[]),
        ],
        writes: &[("UPDATE t SET v = v + 1 WHERE id = $1", &[Arg::I32(1)])],
        kept: &[1],
    },
    Case {
        name: "int2, int4, int8 binds and '5', 5 literals name one key",
        reads: &[
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(5)]),
            // sqlx prepares a text once per connection with its first binds' types:
            // other bind types need another text (same fingerprint: comments go).
            ("SELECT v FROM t WHERE id = $1 -- int8", &[Arg::I64(5)]),
            ("SELECT v FROM t WHERE id = $1 -- int2", &[Arg::I16(5)]),
            ("SELECT v FROM t WHERE id = 5", &[]),
            ("SELECT v FROM t WHERE id = '5'", &[]),
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(6)]),
        ],
        writes: &[
            (
                "UPDATE t SET v = v + 1 WHERE id = $1 -- int8",
                &[Arg::I64(5)],
            ),
            ("UPDATE t SET v = v + 1 WHERE id = '5'", &[]),
            ("UPDATE t SET v = v + 1 WHERE id = 5", &[]),
            (
                "UPDATE t SET v = v + 1 WHERE id = $1 -- int2",
                &[Arg::I16(5)],
            ),
        ],
        kept: &[5],
    },
    Case {
        name: "values the cache does not normalize fall back to table level",
        reads: &[
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(7)]),
            ("SELECT v FROM t WHERE id = 7.0", &[]),
        ],
        writes: &[
            (
                "UPDATE t SET v = v + 1 WHERE id = $1 -- float8",
                &[Arg::F64(7.0)],
            ),
            ("UPDATE t SET v = v + 1 WHERE id = 7.0", &[]),
            (
                "UPDATE t SET v = v + 1 WHERE id = $1::int8 -- int8",
                &[Arg::I64(7)],
            ),
        ],
        kept: &[],
    },
    Case {
        name: "an insert fills a cached empty key read; delete and re-insert",
        reads: &[
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(50)]),
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(51)]),
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(52)]),
            SUM,
        ],
        writes: &[
            (
                "INSERT INTO t (id, v) VALUES ($1, $2)",
                &[Arg::I32(50), Arg::I64(1)],
            ),
            ("INSERT INTO t (v, id) VALUES (2, 51), (3, 52)", &[]),
            ("DELETE FROM t WHERE id = $1", &[Arg::I32(50)]),
            (
                "INSERT INTO t (id, v) VALUES ($1, $2)",
                &[Arg::I32(50), Arg::I64(9)],
            ),
            ("DELETE FROM t WHERE id IN (51, 52)", &[]),
        ],
        kept: &[],
    },
    Case {
        name: "a key-changing update moves the row between keys",
        reads: &[
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(8)]),
            ("SELECT v FROM t WHERE id = $1", &[Arg::I32(60)]),
        ],
        writes: &[("UPDATE t SET id = 60 WHERE id = $1", &[Arg::I32(8)])],
        kept: &[],
    },
    Case {
        name: "a serial key left to its default reaches cached empty reads",
        reads: &[("SELECT v FROM s WHERE id = $1", &[Arg::I32(1)])],
        writes: &[("INSERT INTO s (v) VALUES ($1)", &[Arg::I64(7)])],
        kept: &[],
    },
    Case {
        name: "ON CONFLICT on the key and on another unique key",
        reads: &[
            ("SELECT v FROM u WHERE id = $1", &[Arg::I32(1)]),
            ("SELECT v FROM u WHERE id = $1", &[Arg::I32(2)]),
            ("SELECT v FROM u WHERE email = $1", &[Arg::Text("a@x")]),
        ],
        writes: &[
            (
                "INSERT INTO u (id, email, v) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                &[Arg::I32(1), Arg::Text("a@x"), Arg::I64(11)],
            ),
            (
                "INSERT INTO u (id, email, v) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE SET v = excluded.v",
                &[Arg::I32(9), Arg::Text("b@x"), Arg::I64(22)],
            ),
            (
                "INSERT INTO u (id, email, v) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[Arg::I32(1), Arg::Text("z@x"), Arg::I64(33)],
            ),
        ],
        kept: &[],
    },
    Case {
        name: "a composite key",
        reads: &[
            (
                "SELECT v FROM c WHERE a = $1 AND b = $2",
                &[Arg::I32(1), Arg::Text("x")],
            ),
            ("SELECT v FROM c WHERE b = 'y' AND a = 1", &[]),
            ("SELECT v FROM c WHERE a = 1 ORDER BY b", &[]),
        ],
        writes: &[(
            "UPDATE c SET v = v + 1 WHERE a = 1 AND b = $1",
            &[Arg::Text("x")],
        )],
        kept: &[1],
    },
    Case {
        name: "text keys, literal and bind",
        reads: &[
            ("SELECT v FROM tk WHERE name = $1", &[Arg::Text("ab")]),
            ("SELECT v FROM tk WHERE name = 'ab'", &[]),
            ("SELECT v FROM tk WHERE name = 'cd'", &[]),
        ],
        writes: &[("UPDATE tk SET v = v + 1 WHERE name = 'ab'", &[])],
        kept: &[2],
    },
    Case {
        name: "a nondeterministic collation: 'ABC' and 'abc' name one row",
        reads: &[("SELECT v FROM nd WHERE name = 'abc'", &[])],
        writes: &[(
            "UPDATE nd SET v = v + 1 WHERE name = $1",
            &[Arg::Text("ABC")],
        )],
        kept: &[],
    },
    Case {
        name: "a self-referencing cascade deletes other keys",
        reads: &[("SELECT v FROM tree WHERE id = $1", &[Arg::I32(2)])],
        writes: &[("DELETE FROM tree WHERE id = $1", &[Arg::I32(1)])],
        kept: &[],
    },
    Case {
        name: "a trigger writing other rows of the table",
        reads: &[("SELECT v FROM trg WHERE id = $1", &[Arg::I32(2)])],
        writes: &[("UPDATE trg SET v = v + 1 WHERE id = $1", &[Arg::I32(1)])],
        kept: &[],
    },
    Case {
        name: "a BEFORE trigger changing the inserted key",
        reads: &[("SELECT v FROM bt WHERE id = $1", &[Arg::I32(101)])],
        writes: &[("INSERT INTO bt (id, v) VALUES ($1, 5)", &[Arg::I32(1)])],
        kept: &[],
    },
    Case {
        name: "a rule writing other rows of the table",
        reads: &[("SELECT v FROM rl WHERE id = $1", &[Arg::I32(2)])],
        writes: &[("DELETE FROM rl WHERE id = $1", &[Arg::I32(1)])],
        kept: &[],
    },
    Case {
        name: "partitions: key writes through the parent and the partition",
        reads: &[
            ("SELECT v FROM pp1 WHERE id = $1", &[Arg::I32(5)]),
            ("SELECT v FROM pp WHERE id = $1", &[Arg::I32(5)]),
            ("SELECT v FROM pp2 WHERE id = $1", &[Arg::I32(150)]),
        ],
        writes: &[
            ("UPDATE pp SET v = v + 1 WHERE id = $1", &[Arg::I32(5)]),
            ("UPDATE pp1 SET v = v + 1 WHERE id = $1", &[Arg::I32(5)]),
        ],
        kept: &[],
    },
];

async fn setup(db: &str, granularity: Granularity) -> Option<(PgPool, QueryCache<Postgres>)> {
    let pool = common::scratch_database(db).await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await.expect("schema");
    let cache = QueryCache::builder(pool.clone())
        .invalidation(granularity)
        .adaptive_admission(false)
        .build()
        .await
        .expect("build");
    Some((pool, cache))
}

fn query(
    (sql, args): Stmt,
) -> sqlx::query::QueryScalar<'static, Postgres, Option<i64>, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query_scalar(sql);
    for arg in args {
        q = match *arg {
            Arg::I16(v) => q.bind(v),
            Arg::I32(v) => q.bind(v),
            Arg::I64(v) => q.bind(v),
            Arg::F64(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        };
    }
    q
}

/// The read through the cache and whether it was a hit.
async fn cached(cache: &QueryCache<Postgres>, read: Stmt) -> (Vec<Option<i64>>, bool) {
    let hits = cache.stats().hits;
    let rows = query(read)
        .fetch_all_cached(cache)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", read.0));
    (rows, cache.stats().hits > hits)
}

async fn direct(pool: &PgPool, read: Stmt) -> Vec<Option<i64>> {
    query(read).fetch_all(pool).await.expect("direct read")
}

/// Runs every case; returns, per case, which reads were still hits after its writes.
async fn run_cases(pool: &PgPool, cache: &QueryCache<Postgres>) -> Vec<Vec<bool>> {
    let mut kept = Vec::new();
    for case in CASES {
        for &read in case.reads {
            cached(cache, read).await;
            let (_, hit) = cached(cache, read).await;
            assert!(hit, "{}: {} is cached before the writes", case.name, read.0);
        }
        let mut hits = vec![true; case.reads.len()];
        for &write in case.writes {
            sqlx::Executor::execute(cache, query(write))
                .await
                .unwrap_or_else(|e| panic!("{}: {}: {e}", case.name, write.0));
            for (i, &read) in case.reads.iter().enumerate() {
                let (rows, hit) = cached(cache, read).await;
                hits[i] &= hit;
                assert_eq!(
                    rows,
                    direct(pool, read).await,
                    "{}: {} after {} {:?} is stale",
                    case.name,
                    read.0,
                    write.0,
                    write.1
                );
            }
        }
        kept.push(hits);
    }
    kept
}

#[tokio::test]
async fn every_case_reads_fresh_and_key_writes_keep_other_keys_cached() {
    let Some((pool, cache)) = setup("qc_test_row_level", Granularity::Row).await else {
        return;
    };
    let kept = run_cases(&pool, &cache).await;
    for (case, hits) in CASES.iter().zip(&kept) {
        for &i in case.kept {
            assert!(
                hits[i],
                "{}: {} was invalidated by a write to another key",
                case.name, case.reads[i].0
            );
        }
    }
    let stats = cache.stats();
    assert!(
        stats.invalidations_by_table.contains_key("public.t#keys"),
        "key writes are counted per table: {:?}",
        stats.invalidations_by_table
    );
}

#[tokio::test]
async fn table_granularity_is_fresh_and_invalidates_the_whole_table() {
    let Some((pool, cache)) = setup("qc_test_row_level_table", Granularity::Table).await else {
        return;
    };
    let kept = run_cases(&pool, &cache).await;
    assert!(
        !kept[0][1],
        "table level: a write to key 1 invalidates the cached read of key 2"
    );
}

#[tokio::test]
async fn writes_in_a_transaction_invalidate_their_keys_at_commit() {
    let Some((pool, cache)) = setup("qc_test_row_level_tx", Granularity::Row).await else {
        return;
    };
    let reads = [KEY_1, KEY_2, SUM];
    for read in reads {
        cached(&cache, read).await;
    }
    let mut tx = cache.begin().await.expect("begin");
    sqlx::query("UPDATE t SET v = v + 1 WHERE id = $1")
        .bind(1)
        .execute(&mut tx)
        .await
        .expect("update");
    sqlx::query("INSERT INTO t (id, v) VALUES ($1, 0)")
        .bind(2_000)
        .execute(&mut tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    for read in reads {
        assert_eq!(
            cached(&cache, read).await.0,
            direct(&pool, read).await,
            "{}",
            read.0
        );
    }
}
