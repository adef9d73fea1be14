//! The SQL normalizer: parse, analyze, canonicalize and fingerprint statement texts.
//!
//! Entry points: [`analyze`] / [`analyze_with`] for one text, [`StatementMemo`] for
//! the cached path, [`split_statements`] to cut a script into statements.
//!
//! Pipeline (`pipeline.rs`): size cap → sqlparser 0.63 (`PostgreSqlDialect`) →
//! read/write-set visitor (`analyze.rs`, `volatility.rs`) and key-access forms
//! (`keys.rs`) → canonical text with
//! identifiers folded, cut at its literals (`canonical.rs`) → xxh3-128 fingerprints
//! (`fingerprint.rs`); the AST is then taken apart without deep recursion
//! (`stack.rs`). Text sqlparser cannot parse is classified by its
//! leading keywords (`fallback.rs`). The memo (`memo.rs`) keeps analyses per text
//! and, through a lexer-level literal hoist (`hoist.rs`), per shape.

mod analysis;
mod analyze;
mod canonical;
mod fallback;
mod fingerprint;
mod hoist;
mod keys;
mod lexer;
#[cfg(test)]
mod lexer_differential;
mod memo;
mod pg_functions;
mod pipeline;
mod spans;
mod split;
mod stack;
mod volatility;

pub use analysis::{
    Analysis, Dialect, KeyRead, KeyWrite, KeyWriteKind, OnConflict, Pin, PinnedValue, Reason,
    RelationName, StatementKind, Verdict,
};
pub use fingerprint::fingerprint_hex;
pub use memo::StatementMemo;
pub use pipeline::{AnalyzeOptions, DEFAULT_MAX_LEN, analyze, analyze_with};
pub use split::split_statements;
