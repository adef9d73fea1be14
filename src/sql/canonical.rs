//! Canonical text: sqlparser's `Display` of the parsed statements, identifiers
//! folded, cut at every literal.
//!
//! `Display` upper-cases keywords, collapses whitespace and drops comments (research
//! §3.4); a `VisitorMut` folds unquoted identifiers to lower case first (Postgres
//! folding; quoted ones are kept as written). To know where each literal lands, a
//! `VisitorMut` replaces every literal with a sentinel placeholder before `Display`;
//! the output is then cut at the sentinels into `pieces`, and the canonical text is
//! `pieces[0] lit pieces[1] lit …` with each literal rendered by its own `Display`.
//! The shape text is the same with `?` for every literal. The memo splices new
//! literals into the same pieces, so both paths build the text the same way.
//!
//! Literals are numbers and strings of every kind; `NULL`, `TRUE`/`FALSE` and
//! parameters (`$1`) are structure.
//!
//! sqlparser's `Display` of `'…'` strings and `"…"` identifiers is lossy: its escaper
//! leaves an already doubled quote alone, so the string `''` prints as `''''`, the
//! same as the string `'` (verified, sqlparser 0.63). Two texts with different results
//! would share a canonical text. So literals are rendered here ([`render`]), and
//! quoted identifiers are pre-escaped before `Display` so that it prints them
//! faithfully.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, Statement, TableFactor, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use sqlparser::tokenizer::Span;

/// Opens and closes a sentinel; a text holding this character is canonicalized
/// without sentinels (see [`canonicalize`]).
pub(crate) const SENTINEL: char = '\u{1}';

/// One literal of the parsed statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Literal {
    /// How sqlparser displays it (`'it''s'`, `1.50`, `E'\n'`).
    pub display: String,
    /// Where the parser found it in the parsed text (line and column, 1-based).
    pub span: Span,
}

/// Canonical text cut at its literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Text between literals: one more piece than `slots`.
    pub pieces: Vec<String>,
    /// For each gap between pieces, the index into `literals`.
    pub slots: Vec<usize>,
    /// The literals, in visitor order.
    pub literals: Vec<Literal>,
}

impl Cut {
    /// Join pieces and literals, rendering slot `i` with `render(slots[i])`.
    pub(crate) fn join<'a>(&'a self, mut render: impl FnMut(usize) -> &'a str) -> String {
        let len = self.pieces.iter().map(String::len).sum::<usize>() + 8 * self.slots.len();
        let mut out = String::with_capacity(len);
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            if let Some(&slot) = self.slots.get(i) {
                out.push_str(render(slot));
            }
        }
        out
    }

    /// The canonical text with literals kept.
    pub(crate) fn canonical(&self) -> String {
        self.join(|slot| &self.literals[slot].display)
    }

    /// The shape text: literals replaced by `?`.
    pub(crate) fn shape(&self) -> String {
        self.join(|_| "?")
    }

    /// `true` when every literal appears in the canonical text. When one does not,
    /// texts that differ only in that literal would share a canonical text.
    pub(crate) fn complete(&self) -> bool {
        let mut seen = vec![false; self.literals.len()];
        for &slot in &self.slots {
            seen[slot] = true;
        }
        seen.into_iter().all(|s| s)
    }

    /// The literals in canonical-text order, as displayed.
    pub(crate) fn ordered_literals(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|&slot| self.literals[slot].display.clone())
            .collect()
    }
}

/// A literal as canonical text: quoted literals with every quote doubled (faithful,
/// unlike sqlparser's escaper); everything else as sqlparser prints it (`E''` and
/// `U&''` strings escape every character individually, dollar quotes cannot hold
/// their tag, numbers are their text).
pub(crate) fn render(value: &Value) -> String {
    fn quoted(prefix: &str, quote: char, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + prefix.len() + 2);
        out.push_str(prefix);
        out.push(quote);
        for c in s.chars() {
            if c == quote {
                out.push(quote);
            }
            out.push(c);
        }
        out.push(quote);
        out
    }
    match value {
        Value::SingleQuotedString(s) => quoted("", '\'', s),
        Value::NationalStringLiteral(s) => quoted("N", '\'', s),
        // sqlparser prints these without escaping at all.
        Value::SingleQuotedByteStringLiteral(s) => quoted("B", '\'', s),
        Value::HexStringLiteral(s) => quoted("X", '\'', s),
        Value::DoubleQuotedByteStringLiteral(s) => quoted("B", '"', s),
        Value::DoubleQuotedString(s) => quoted("", '"', s),
        other => other.to_string(),
    }
}

fn is_literal(value: &Value) -> bool {
    !matches!(
        value,
        Value::Null | Value::Boolean(_) | Value::Placeholder(_)
    )
}

/// What [`Literals`] puts in place of a literal.
enum Mode {
    /// A sentinel naming the literal's index.
    Sentinel,
    /// The literal's faithful rendering (see [`render`]).
    Render,
    /// `?`, for the values marked `true` (by visit order) in an earlier pass.
    Strip(Vec<bool>),
}

/// Replaces every literal of the AST, folds unquoted identifiers and pre-escapes
/// quoted ones.
struct Literals {
    mode: Mode,
    literals: Vec<Literal>,
    /// For every value visited, in order: was it a literal?
    marks: Vec<bool>,
}

impl Literals {
    fn new(mode: Mode) -> Self {
        Literals {
            mode,
            literals: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn run(mut self, statements: &mut [Statement]) -> Self {
        for statement in statements.iter_mut() {
            // Never breaks.
            let _ = statement.visit(&mut self);
        }
        self
    }
}

impl VisitorMut for Literals {
    type Break = ();

    fn post_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        let literal = match &self.mode {
            Mode::Strip(marks) => marks.get(self.marks.len()).copied().unwrap_or(false),
            _ => is_literal(&value.value),
        };
        self.marks.push(literal);
        if !literal {
            return ControlFlow::Continue(());
        }
        let index = self.literals.len();
        let display = render(&value.value);
        let placeholder = match self.mode {
            Mode::Sentinel => format!("{SENTINEL}{index}{SENTINEL}"),
            Mode::Render => display.clone(),
            Mode::Strip(_) => "?".to_owned(),
        };
        self.literals.push(Literal {
            display,
            span: value.span,
        });
        value.value = Value::Placeholder(placeholder);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `5 .o` prints as `5.o`, which parses back as `5. AS o`: parenthesize a
        // number that is the root of a field access.
        if let Expr::CompoundFieldAccess { root, .. } = expr
            && matches!(
                **root,
                Expr::Value(ValueWithSpan {
                    value: Value::Number(..),
                    ..
                })
            )
        {
            let number = std::mem::replace(&mut **root, Expr::Value(Value::Null.into()));
            **root = Expr::Nested(Box::new(number));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `film f` and `film AS f` mean the same: print `AS` always.
        let alias = match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::TableFunction { alias, .. } => alias,
            _ => return ControlFlow::Continue(()),
        };
        if let Some(alias) = alias {
            alias.explicit = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<()> {
        if matches!(self.mode, Mode::Strip(_)) {
            return ControlFlow::Continue(());
        }
        if ident.quote_style.is_none() {
            ident.value.make_ascii_lowercase();
        }
        // sqlparser's escaper prints a doubled quote as is and doubles a lone one
        // (unless after a backslash, where it prints it as is): with every quote
        // doubled beforehand, it prints the value with every quote doubled, which is
        // the faithful spelling.
        if let Some(quote @ ('"' | '\'')) = ident.quote_style
            && ident.value.contains(quote)
        {
            let doubled: String = [quote, quote].iter().collect();
            ident.value = ident.value.replace(quote, &doubled);
        }
        ControlFlow::Continue(())
    }
}

fn display(statements: &[Statement]) -> String {
    let mut out = String::new();
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&statement.to_string());
    }
    out
}

/// Canonicalize `statements`, parsed from `text`. Replaces the literals in the AST.
///
/// Returns `None`, leaving the AST untouched, when `text` contains the sentinel
/// character; the caller then uses [`canonical_without_cut`]. A literal may appear
/// in several slots; one that `Display` does not print at all appears in none, which
/// [`Cut::complete`] reports.
pub(crate) fn canonicalize(text: &str, statements: &mut [Statement]) -> Option<Cut> {
    if text.contains(SENTINEL) {
        return None;
    }
    let sentinels = Literals::new(Mode::Sentinel).run(statements);
    let displayed = display(statements);
    let mut pieces = Vec::with_capacity(sentinels.literals.len() + 1);
    let mut slots = Vec::with_capacity(sentinels.literals.len());
    let mut rest = displayed.as_str();
    let mut piece = String::new();
    while let Some(open) = rest.find(SENTINEL) {
        piece.push_str(&rest[..open]);
        let after = &rest[open + SENTINEL.len_utf8()..];
        let sentinel = after
            .find(SENTINEL)
            .and_then(|close| Some((close, after[..close].parse::<usize>().ok()?)))
            .filter(|&(_, index)| index < sentinels.literals.len());
        match sentinel {
            Some((close, index)) => {
                pieces.push(std::mem::take(&mut piece));
                slots.push(index);
                rest = &after[close + SENTINEL.len_utf8()..];
            }
            // Not one of ours (cannot happen: the text held no SENTINEL); keep it.
            None => {
                piece.push(SENTINEL);
                rest = after;
            }
        }
    }
    piece.push_str(rest);
    pieces.push(piece);
    Some(Cut {
        pieces,
        slots,
        literals: sentinels.literals,
    })
}

/// Canonical text, shape text and literals (visitor order) without a cut: two
/// `Display` passes. Used only when [`canonicalize`] declines.
pub(crate) fn canonical_without_cut(statements: &mut [Statement]) -> (String, String, Vec<String>) {
    let rendered = Literals::new(Mode::Render).run(statements);
    let canonical = display(statements);
    Literals::new(Mode::Strip(rendered.marks)).run(statements);
    let shape = display(statements);
    let literals = rendered.literals.into_iter().map(|l| l.display).collect();
    (canonical, shape, literals)
}
