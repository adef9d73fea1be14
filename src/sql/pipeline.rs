//! The full analysis of one text: size cap, parse, visit, canonicalize, fingerprint.

use std::borrow::Cow;
use std::ops::Range;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use super::analysis::{Analysis, Dialect, Reason, Verdict};
use super::analyze::{Facts, facts};
use super::canonical::{Cut, canonical_without_cut, canonicalize};
use super::fallback::unparsed;
use super::fingerprint::fingerprint;
use super::hoist::{Claims, sqlparser_claims};
use super::keys::recognize;
use super::lexer::{Lexeme, Lexer, TokenKind, leading_keyword};
use super::spans::Locator;
use super::stack::with_stack_for;

/// Default cap on the length of a statement text: 64 KiB. Longer texts are not parsed
/// (research §3.7: a left-deep `1+1+…` chain of ~100 KB overflows a 2 MiB stack when
/// sqlparser's AST is dropped).
pub const DEFAULT_MAX_LEN: usize = 64 * 1024;

/// How to analyze statement texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnalyzeOptions {
    /// SQL dialect. Default: [`Dialect::Postgres`].
    pub dialect: Dialect,
    /// Longest text parsed, in bytes. Default: [`DEFAULT_MAX_LEN`] (64 KiB).
    pub max_len: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            dialect: Dialect::Postgres,
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// Analyze one statement text with the default size cap (64 KiB).
///
/// Never panics; text that does not parse, or is over the cap, gets an uncacheable
/// verdict (and, when it may write, `writes_unknown`).
///
/// ```
/// use querycache::sql::{analyze, Dialect, StatementKind};
/// let a = analyze("select * from Film f join film_actor fa using (film_id) where f.film_id = 42", Dialect::Postgres);
/// assert_eq!(a.kind, StatementKind::Read);
/// assert_eq!(a.canonical, "SELECT * FROM film AS f JOIN film_actor AS fa USING(film_id) WHERE f.film_id = 42");
/// assert!(a.is_cacheable());
/// ```
pub fn analyze(sql: &str, dialect: Dialect) -> Analysis {
    analyze_with(
        sql,
        &AnalyzeOptions {
            dialect,
            ..AnalyzeOptions::default()
        },
    )
}

/// Analyze one statement text with explicit options. See [`analyze`].
pub fn analyze_with(sql: &str, options: &AnalyzeOptions) -> Analysis {
    run(sql, options, false).analysis
}

/// A full analysis, plus what the memo needs to build a template.
pub(crate) struct Outcome {
    pub analysis: Analysis,
    /// The canonical text cut at its literals, with each literal's byte range in the
    /// text (`None` when the range is unknown). `None` when the text did not parse or
    /// could not be cut.
    pub cut: Option<(Cut, Vec<Option<Range<usize>>>)>,
    /// sqlparser's tokens that the memo's shape key transforms, when asked for and the
    /// text was parsed as written.
    pub claims: Option<Claims>,
}

/// What the parser saw: the text (or its `TABLE` rewrite) and how its byte offsets
/// map to the original text's.
struct Parsed<'a> {
    text: Cow<'a, str>,
    /// Parsed-text offset minus original-text offset, for offsets at or after `from`.
    shift: isize,
    from: usize,
    statements: Vec<Statement>,
    claims: Option<Claims>,
}

/// Parse `text`; with `want_claims`, also classify the tokens the parser used.
fn parse_text(
    text: &str,
    want_claims: bool,
) -> Result<(Vec<Statement>, Option<Claims>), ParserError> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(text)?;
    let statements = parser.parse_statements()?;
    let claims = want_claims.then(|| {
        let tokens = (0..)
            .map(|i| parser.token_at(i))
            .take_while(|t| t.token != Token::EOF);
        sqlparser_claims(text, tokens)
    });
    Ok((statements, claims))
}

/// Parse the text. `TABLE t` at the start of the text, which sqlparser rejects, is
/// parsed as its Postgres equivalent `SELECT * FROM t`.
fn parse(sql: &str, want_claims: bool) -> Result<Parsed<'_>, ParserError> {
    match parse_text(sql, want_claims) {
        Ok((statements, claims)) => Ok(Parsed {
            text: Cow::Borrowed(sql),
            shift: 0,
            from: 0,
            statements,
            claims,
        }),
        Err(error) => {
            let table_end = Lexer::new(sql).find_map(|l| match l {
                Lexeme::Token(TokenKind::Word, r)
                    if sql[r.clone()].eq_ignore_ascii_case("table") =>
                {
                    Some(r.end)
                }
                Lexeme::Space(_) | Lexeme::Comment(_) => None,
                _ => Some(0),
            });
            let Some(table_end @ 1..) = table_end else {
                return Err(error);
            };
            const PREFIX: &str = "SELECT * FROM";
            let text = format!("{PREFIX}{}", &sql[table_end..]);
            let (statements, _) = parse_text(&text, false).map_err(|_| error)?;
            Ok(Parsed {
                text: Cow::Owned(text),
                shift: PREFIX.len() as isize - table_end as isize,
                from: table_end,
                statements,
                claims: None,
            })
        }
    }
}

impl Parsed<'_> {
    /// Byte range in the original text of each literal of `cut` (`None` when the
    /// parser gave no usable span, or the literal came from the `TABLE` rewrite).
    fn literal_ranges(&self, cut: &Cut) -> Vec<Option<Range<usize>>> {
        let locator = Locator::new(&self.text);
        let original = |at: Location| {
            let parsed = locator.byte(at)? as isize;
            let original = parsed - self.shift;
            (original >= self.from as isize).then_some(original as usize)
        };
        cut.literals
            .iter()
            .map(|l| {
                let start = original(l.span.start)?;
                let end = original(l.span.end)?;
                (start < end).then_some(start..end)
            })
            .collect()
    }
}

/// `0x1F`: sqlparser reads it as the bit string `X'1F'`; Postgres 15 as `0 AS x1F`,
/// Postgres 16 as 31.
fn has_hex_number(text: &str) -> bool {
    Lexer::new(text).any(|l| matches!(l, Lexeme::Token(TokenKind::OtherLiteral, r) if text[r.clone()].starts_with("0x")))
}

/// `FROM ONLY`, `JOIN ONLY` or `, ONLY` in the text (sqlparser rejects or misreads it).
fn has_from_only(text: &str) -> bool {
    let mut previous = "";
    for lexeme in Lexer::new(text) {
        if let Lexeme::Token(kind, range) = lexeme {
            let word = &text[range];
            if kind == TokenKind::Word
                && word.eq_ignore_ascii_case("only")
                && ["from", "join", ","]
                    .iter()
                    .any(|p| previous.eq_ignore_ascii_case(p))
            {
                return true;
            }
            previous = word;
        }
    }
    false
}

fn build(facts: Facts, canonical: String, shape: &str, literals: Vec<String>) -> Analysis {
    let verdict = match facts.verdict() {
        Some(reason) => Verdict::Uncacheable(reason),
        None => Verdict::Cacheable,
    };
    Analysis {
        kind: facts.kind,
        reads: facts.reads.into_iter().collect(),
        writes: facts.writes.into_iter().collect(),
        writes_unknown: facts.writes_unknown,
        functions: facts.functions.into_iter().collect(),
        fingerprint: fingerprint(&canonical),
        canonical,
        shape: fingerprint(shape),
        literals,
        verdict,
        key_read: None,
        key_write: None,
    }
}

/// Analysis of text that is not parsed: canonical text empty, both fingerprints the
/// xxh3-128 of the raw text (so different texts never share one).
fn unparsed_analysis(sql: &str, facts: Facts) -> Analysis {
    let mut analysis = build(facts, String::new(), "", Vec::new());
    analysis.fingerprint = fingerprint(sql);
    analysis.shape = analysis.fingerprint;
    analysis
}

/// The full analysis of one text; with `want_claims`, also sqlparser's token claims.
pub(crate) fn run(sql: &str, options: &AnalyzeOptions, want_claims: bool) -> Outcome {
    let Dialect::Postgres = options.dialect;
    if sql.len() > options.max_len {
        return too_large(sql, options);
    }
    with_stack_for(sql.len(), || run_parsed(sql, want_claims))
}

fn too_large(sql: &str, options: &AnalyzeOptions) -> Outcome {
    let reason = Reason::TooLarge {
        len: sql.len(),
        cap: options.max_len,
    };
    let message = format!("{} bytes over the {}-byte cap", sql.len(), options.max_len);
    Outcome {
        analysis: unparsed_analysis(sql, unparsed(sql, reason, &message)),
        cut: None,
        claims: None,
    }
}

/// Parse, visit, canonicalize and drop; see [`with_stack_for`] for the stack.
fn run_parsed(sql: &str, want_claims: bool) -> Outcome {
    let mut parsed = match parse(sql, want_claims) {
        Ok(parsed) if !parsed.statements.is_empty() => parsed,
        Ok(_) => {
            let reason = Reason::ParseError("empty statement".to_owned());
            return Outcome {
                analysis: unparsed_analysis(sql, unparsed(sql, reason, "empty statement")),
                cut: None,
                claims: None,
            };
        }
        Err(error) => {
            let message = error.to_string();
            let message = message
                .strip_prefix("sql parser error: ")
                .unwrap_or(&message);
            let reason = if has_from_only(sql)
                && leading_keyword(sql).is_some_and(|k| k != "delete" && k != "update")
            {
                Reason::FromOnly
            } else {
                Reason::ParseError(message.to_owned())
            };
            return Outcome {
                analysis: unparsed_analysis(sql, unparsed(sql, reason, message)),
                cut: None,
                claims: None,
            };
        }
    };
    let mut facts = facts(&parsed.statements);
    let keys = recognize(&parsed.statements);
    if has_hex_number(sql) {
        facts.reasons.push(Reason::Misread("0x… number".to_owned()));
    }
    // The AST is dropped on return, on the stack `run` chose.
    match canonicalize(&parsed.text, &mut parsed.statements) {
        Some(cut) => {
            if !cut.complete() {
                facts
                    .reasons
                    .push(Reason::Misread("literal not printed".to_owned()));
            }
            let mut analysis = build(facts, cut.canonical(), &cut.shape(), cut.ordered_literals());
            (analysis.key_read, analysis.key_write) = keys.resolve(Some(&cut));
            let ranges = parsed.literal_ranges(&cut);
            Outcome {
                analysis,
                cut: Some((cut, ranges)),
                claims: parsed.claims.take(),
            }
        }
        None => {
            let (canonical, shape, literals) = canonical_without_cut(&mut parsed.statements);
            let mut analysis = build(facts, canonical, &shape, literals);
            // Without a cut, literals cannot be named by index: only binds survive.
            (analysis.key_read, analysis.key_write) = keys.resolve(None);
            Outcome {
                analysis,
                cut: None,
                claims: None,
            }
        }
    }
}
