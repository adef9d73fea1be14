//! The statement memo: raw text → `Arc<Analysis>`, so a repeated text never parses
//! twice, and shape → template, so a new literal variant of a known shape does not
//! parse either.
//!
//! Two bounded concurrent maps (`quick_cache`, S3-FIFO-class eviction):
//!
//! 1. **texts**: xxh3-128 of the raw text → `Arc<Analysis>`. A hit is one hash of the
//!    text and one map lookup.
//! 2. **shapes**: the lexer-level shape key (`hoist.rs`) → [`Template`]. On a text
//!    miss the text is lexed; if its shape has a template, the analysis is the
//!    template's with the new literals spliced into the canonical text, and the key
//!    fingerprint recomputed over it. Otherwise the text is analyzed in full and, when
//!    it qualifies, becomes its shape's template.
//!
//! # The fast path equals the full analysis
//!
//! A template is built from one full analysis (the representative) whose text our
//! lexer and sqlparser's tokenizer read alike (every comment and hoisted literal we
//! see is the same token to sqlparser: `hoist::agree`; all other bytes are part of
//! the shape key), and records, for every slot of the canonical text, which hoisted literal of the representative's
//! text sqlparser turned into that literal: the AST literal's span must cover exactly
//! the hoisted token, and its `Display` must equal the token's text (true for plain
//! strings and numbers, which the lexer alone hoists). Literals sqlparser made from
//! other tokens (`E''`, `1e5`) are fixed text: those tokens are part of the shape key.
//! A hoisted literal that became no AST literal (`varchar(10)`, an alias) is *pinned*:
//! a new text must repeat it exactly or take the full path. A template is not built
//! when the verdict depends on a literal's value ([`Reason::TimeLiteral`]), and a text
//! whose new strings hold a time word takes the full path. Property tests compare the
//! two paths on generated literal variants.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;

use super::analysis::{Analysis, Reason};
use super::canonical::Cut;
use super::fingerprint::fingerprint;
use super::hoist::{Hoisted, agree, claims, hoist};
use super::pipeline::{AnalyzeOptions, run};
use super::volatility::is_time_literal;

/// Where a slot of a template's canonical text gets its literal.
#[derive(Debug)]
enum Source {
    /// From the new text's hoisted literal `i`, verbatim.
    Hoisted(usize),
    /// Always this text.
    Fixed(Box<str>),
}

/// What a shape's texts share: everything but their hoisted literals.
#[derive(Debug)]
struct Template {
    /// Canonical text between literals.
    pieces: Vec<Box<str>>,
    /// One source per gap between pieces.
    slots: Vec<Source>,
    /// Number of hoisted literals a text of this shape has.
    hoisted: usize,
    /// Hoisted literals that must equal these texts (indices into the hoisted list).
    pinned: Vec<(usize, Box<str>)>,
    /// The representative's analysis without its canonical text and literals;
    /// `canonical`, `fingerprint` and `literals` are made for each new text.
    base: Analysis,
}

impl Template {
    /// Build a template from a full analysis of `text`, if it qualifies.
    fn build(
        text: &str,
        hoisted: &Hoisted,
        analysis: &Analysis,
        cut: &Cut,
        ranges: &[Option<Range<usize>>],
    ) -> Option<Template> {
        if matches!(analysis.reason(), Some(Reason::TimeLiteral(_))) {
            return None;
        }
        let overlaps = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
        let mut claimed = vec![false; hoisted.literals.len()];
        let mut sources = Vec::with_capacity(cut.literals.len());
        for (literal, range) in cut.literals.iter().zip(ranges) {
            let range = range.as_ref()?;
            let exact = hoisted
                .literals
                .binary_search_by_key(&range.start, |r| r.start);
            let source = match exact {
                Ok(i)
                    if hoisted.literals[i] == *range && text[range.clone()] == literal.display =>
                {
                    claimed[i] = true;
                    Source::Hoisted(i)
                }
                _ if hoisted.literals.iter().any(|h| overlaps(h, range)) => return None,
                _ => Source::Fixed(literal.display.as_str().into()),
            };
            sources.push(source);
        }
        let slots = cut
            .slots
            .iter()
            .map(|&slot| match &sources[slot] {
                Source::Hoisted(i) => Source::Hoisted(*i),
                Source::Fixed(s) => Source::Fixed(s.clone()),
            })
            .collect();
        let pinned = claimed
            .iter()
            .enumerate()
            .filter(|(_, c)| !**c)
            .map(|(i, _)| (i, text[hoisted.literals[i].clone()].into()))
            .collect();
        Some(Template {
            pieces: cut.pieces.iter().map(|p| p.as_str().into()).collect(),
            slots,
            hoisted: hoisted.literals.len(),
            pinned,
            base: Analysis {
                canonical: String::new(),
                literals: Vec::new(),
                ..analysis.clone()
            },
        })
    }

    /// The analysis of `text` (of this template's shape), or `None` when it must take
    /// the full path.
    fn apply(&self, text: &str, hoisted: &Hoisted) -> Option<Analysis> {
        if hoisted.literals.len() != self.hoisted {
            return None;
        }
        // A text holding the canonicalizer's sentinel (in a comment, say) is analysed
        // without a cut, so its literals cannot be named by index and its key forms are
        // dropped: only the full path gives that answer (fuzz seed regression-sentinel-in-comment.sql).
        if text.contains(super::canonical::SENTINEL) {
            return None;
        }
        let raw = |i: usize| &text[hoisted.literals[i].clone()];
        if self.pinned.iter().any(|(i, want)| raw(*i) != &**want) {
            return None;
        }
        // A string literal (the only kind starting with a quote) holding a time word
        // changes the verdict: leave it to the full path.
        let time_word = hoisted.literals.iter().any(|r| {
            text.as_bytes()[r.start] == b'\'' && is_time_literal(&text[r.start + 1..r.end - 1])
        });
        if time_word {
            return None;
        }
        fn render<'a>(slot: &'a Source, raw: impl Fn(usize) -> &'a str) -> &'a str {
            match slot {
                Source::Hoisted(i) => raw(*i),
                Source::Fixed(s) => s,
            }
        }
        let len = self.pieces.iter().map(|p| p.len()).sum::<usize>()
            + hoisted.literals.iter().map(|r| r.len()).sum::<usize>();
        let mut canonical = String::with_capacity(len + 16);
        for (i, piece) in self.pieces.iter().enumerate() {
            canonical.push_str(piece);
            if let Some(slot) = self.slots.get(i) {
                canonical.push_str(render(slot, raw));
            }
        }
        let base = &self.base;
        Some(Analysis {
            kind: base.kind,
            reads: base.reads.clone(),
            writes: base.writes.clone(),
            writes_unknown: base.writes_unknown,
            functions: base.functions.clone(),
            fingerprint: fingerprint(&canonical),
            canonical,
            shape: base.shape,
            literals: self
                .slots
                .iter()
                .map(|s| render(s, raw).to_owned())
                .collect(),
            verdict: base.verdict.clone(),
            // Pinned literals are indices into `literals`, which hold this text's.
            key_read: base.key_read.clone(),
            key_write: base.key_write.clone(),
        })
    }
}

/// A bounded, concurrent memo of statement analyses. Share one per process (or per
/// cache) behind an `Arc`; all methods take `&self`.
///
/// # Concurrent calls on the same text
///
/// Two threads that miss on the same new text both analyze it and both insert the
/// (equal) result; no lock is held while analyzing.
pub struct StatementMemo {
    options: AnalyzeOptions,
    texts: Cache<u128, Arc<Analysis>>,
    shapes: Cache<u128, Arc<Template>>,
    full: AtomicU64,
    templated: AtomicU64,
}

impl std::fmt::Debug for StatementMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementMemo")
            .field("options", &self.options)
            .field("texts", &self.texts.len())
            .field("shapes", &self.shapes.len())
            .field("full_analyses", &self.full_analyses())
            .field("templated_analyses", &self.templated_analyses())
            .finish()
    }
}

impl StatementMemo {
    /// A memo holding up to `capacity_entries` texts and as many shapes (at least 16
    /// of each), analyzing with `options`.
    pub fn new(capacity_entries: usize, options: AnalyzeOptions) -> Self {
        let capacity = capacity_entries.max(16);
        StatementMemo {
            options,
            texts: Cache::new(capacity),
            shapes: Cache::new(capacity),
            full: AtomicU64::new(0),
            templated: AtomicU64::new(0),
        }
    }

    /// The options texts are analyzed with.
    pub fn options(&self) -> &AnalyzeOptions {
        &self.options
    }

    /// The analysis of `sql`: from the memo when this text was seen, else from its
    /// shape's template, else by a full parse. Equal to
    /// [`analyze_with`](super::analyze_with)`(sql, self.options())` in every case.
    ///
    /// Cost (`benches/normalize.rs`, 2-core shared VM): a hit hashes the text and looks
    /// it up (≈ 33 ns for 133 bytes, 130 ns for 2 KB); a new literal variant of a
    /// known shape lexes the text and splices the literals (≈ 0.9 µs for 133 bytes,
    /// 10 µs for 2 KB with 90 literals); a new shape parses it (≈ 28 µs for 133 bytes,
    /// 380 µs for 2 KB).
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        let key = fingerprint(sql);
        if let Some(hit) = self.texts.get(&key) {
            return hit;
        }
        let analysis = Arc::new(self.miss(sql));
        self.texts.insert(key, Arc::clone(&analysis));
        analysis
    }

    fn miss(&self, sql: &str) -> Analysis {
        let hoisted = (sql.len() <= self.options.max_len)
            .then(|| hoist(sql))
            .flatten();
        if let Some(hoisted) = &hoisted
            && let Some(template) = self.shapes.get(&hoisted.key)
            && let Some(analysis) = template.apply(sql, hoisted)
        {
            self.templated.fetch_add(1, Ordering::Relaxed);
            return analysis;
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        let outcome = run(sql, &self.options, hoisted.is_some());
        if let (Some(hoisted), Some((cut, ranges)), Some(theirs)) =
            (&hoisted, &outcome.cut, &outcome.claims)
            && agree(&claims(sql), theirs)
            && let Some(template) = Template::build(sql, hoisted, &outcome.analysis, cut, ranges)
        {
            self.shapes.insert(hoisted.key, Arc::new(template));
        }
        outcome.analysis
    }

    /// Texts analyzed by a full parse so far (memo and template misses).
    pub fn full_analyses(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Texts analyzed from their shape's template so far.
    pub fn templated_analyses(&self) -> u64 {
        self.templated.load(Ordering::Relaxed)
    }

    /// Number of texts currently memoized.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// `true` when no text is memoized.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}
