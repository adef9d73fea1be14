//! Stack safety: no input up to the size cap overflows a 2 MiB stack (the tokio worker
//! default), whether parsing, visiting, printing or dropping the AST (research §3.7).

use querycache::sql::{AnalyzeOptions, Dialect, Reason, StatementKind, StatementMemo, analyze};

const STACK: usize = 2 << 20;
const SIZE: usize = 60 * 1024;

/// `head` + `unit` repeated until the text is about 60 KB + `tail`.
fn repeat(head: &str, unit: &str, tail_unit: &str) -> String {
    let n = (SIZE - head.len()) / (unit.len() + tail_unit.len());
    format!("{head}{}{}", unit.repeat(n), tail_unit.repeat(n))
}

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn a 2 MiB-stack thread")
        .join()
        .expect("the analysis did not panic")
}

#[test]
fn deep_inputs_up_to_the_cap_do_not_overflow_a_2_mib_stack() {
    let cases: Vec<(&str, String)> = vec![
        ("left-deep + chain", repeat("SELECT 1", "+1", "")),
        // Just under the length from which the AST is taken apart before its drop.
        (
            "left-deep + chain, 4 KB",
            format!("SELECT 1{}", "+1".repeat(2040)),
        ),
        ("left-deep || chain", repeat("SELECT 'a'", " || 'a'", "")),
        (
            "AND chain",
            repeat("SELECT * FROM t WHERE a = 1", " AND a = 1", ""),
        ),
        (
            "IN list",
            repeat("SELECT * FROM t WHERE a IN (0", ",1", "") + ")",
        ),
        (
            "nested parentheses",
            repeat("SELECT ", "(", ")").replacen("()", "(1)", 1),
        ),
        (
            "nested subqueries",
            repeat("SELECT * FROM ", "(SELECT * FROM ", ") x").replacen("FROM ) x", "FROM t) x", 1),
        ),
        ("NOT chain", repeat("SELECT ", "NOT ", "") + "true"),
        ("unary minus chain", repeat("SELECT ", "- ", "") + "1"),
        (
            "nested CASE",
            repeat("SELECT ", "CASE WHEN a THEN ", " END"),
        ),
        ("nested arrays", repeat("SELECT ", "ARRAY[", "]")),
        ("nested function calls", repeat("SELECT ", "abs(", ")")),
        ("nested comments", repeat("SELECT 1 ", "/*", "*/")),
        ("cast chain", repeat("SELECT 1", "::int", "")),
        ("long string", format!("SELECT '{}'", "x".repeat(SIZE))),
    ];
    for (name, sql) in cases {
        assert!(sql.len() <= 64 * 1024, "{name}: {} bytes", sql.len());
        let sql2 = sql.clone();
        let (full, memo) = on_small_stack(move || {
            let memo = StatementMemo::new(16, AnalyzeOptions::default());
            (analyze(&sql2, Dialect::Postgres), memo.analyze(&sql2))
        });
        assert_eq!(*memo, full, "{name}");
        // Either analyzed, or refused with a reason; never a wrong kind of read.
        match full.reason() {
            None | Some(Reason::ParseError(_)) => {}
            Some(other) => panic!("{name}: unexpected reason {other}"),
        }
        if full.is_cacheable() {
            assert_eq!(full.kind, StatementKind::Read, "{name}");
            assert!(!full.canonical.is_empty(), "{name}");
        }
    }
}

#[test]
fn text_over_the_cap_is_refused_before_parsing() {
    let sql = repeat("SELECT 1", "+1", "") + &"+1".repeat(4 * 1024);
    assert!(sql.len() > 64 * 1024);
    let a = on_small_stack(move || analyze(&sql, Dialect::Postgres));
    assert!(matches!(
        a.reason(),
        Some(Reason::TooLarge { cap: 65536, .. })
    ));
}
