//! The SQL normalizer: parse, analyze, canonicalize and fingerprint statement texts.
//!
//! Entry points: `analyze` for one text, `StatementMemo` for the cached path.

mod analysis;

pub use analysis::{Analysis, Dialect, Reason, RelationName, StatementKind, Verdict};
