//! Fuzz the normalizer: no input panics or aborts; the canonical text of a read
//! re-parses to the same fingerprint; the memo (including its literal-hoist fast path)
//! agrees with the full analysis; splitting never panics.
//!
//! The fixed-point check covers reads, whose key fingerprint names cached results.
//! Other statements are never cached, and sqlparser prints some of them in a form it
//! parses differently (a `COPY … FROM STDIN` payload loses its leading tab).
//!
//! Run: `scripts/fuzz-smoke normalize 60` (seeds in `fuzz/seeds/normalize/`).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use querycache::sql::{
    AnalyzeOptions, Dialect, StatementKind, StatementMemo, analyze, split_statements,
};

static MEMO: LazyLock<StatementMemo> =
    LazyLock::new(|| StatementMemo::new(4096, AnalyzeOptions::default()));

/// The text with every ASCII digit changed: a literal variant of the same shape when
/// the digits are in numbers.
fn bump_digits(sql: &str) -> String {
    sql.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit((d + 1) % 10, 10).unwrap_or(c),
            None => c,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let _ = split_statements(sql);
    let full = analyze(sql, Dialect::Postgres);
    // Only a cacheable read's canonical text is a key; a misread one is never cached.
    if full.kind == StatementKind::Read && full.reason().is_none() && !full.canonical.is_empty() {
        let again = analyze(&full.canonical, Dialect::Postgres);
        assert_eq!(
            again.canonical, full.canonical,
            "canonical text is not a fixed point for {sql:?}"
        );
        assert_eq!(again.fingerprint, full.fingerprint);
    }
    assert_eq!(*MEMO.analyze(sql), full, "memo differs for {sql:?}");
    let variant = bump_digits(sql);
    assert_eq!(
        *MEMO.analyze(&variant),
        analyze(&variant, Dialect::Postgres),
        "memo differs for the variant {variant:?}"
    );
});
