//! What we can say about text sqlparser did not parse (or that is over the size cap):
//! read-like or a possible write, from its leading keywords.
//!
//! Text whose statements all start with `SELECT`, `VALUES`, `SHOW`, `TABLE`, `WITH`
//! or `EXPLAIN` is read-like (a `WITH` or `EXPLAIN` that names `INSERT`, `UPDATE`,
//! `DELETE` or `MERGE` is not). Anything else may write: the verdict is
//! [`Reason::UnknownWrite`] and `writes_unknown` is set, except for the few forms whose
//! target the leading tokens name for certain (`REFRESH MATERIALIZED VIEW v`, research
//! §3.5; `INSERT INTO t`, `UPDATE t`, `DELETE FROM t`, `TRUNCATE a, b` with no other
//! DML word in the text), which write exactly that target.

use super::analysis::{Reason, RelationName, StatementKind};
use super::analyze::Facts;
use super::lexer::{Lexeme, Lexer, TokenKind};
use super::split::split_statements;

/// A significant token: kind and text (words folded to lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tok<'a> {
    kind: TokenKind,
    text: &'a str,
}

fn tokens(text: &str) -> Vec<Tok<'_>> {
    Lexer::new(text)
        .filter_map(|l| match l {
            Lexeme::Token(kind, range) => Some(Tok {
                kind,
                text: &text[range],
            }),
            _ => None,
        })
        .collect()
}

fn is_word(tok: Option<&Tok<'_>>, word: &str) -> bool {
    tok.is_some_and(|t| t.kind == TokenKind::Word && t.text.eq_ignore_ascii_case(word))
}

/// A DML keyword other than the statement's own leading one: `INSERT`, `DELETE`,
/// `MERGE`, or `UPDATE` not in `FOR [NO KEY] UPDATE` / `DO UPDATE` / `ON UPDATE`.
fn has_other_dml(toks: &[Tok<'_>], skip_first: usize) -> bool {
    toks.iter().enumerate().skip(skip_first).any(|(i, t)| {
        if t.kind != TokenKind::Word {
            return false;
        }
        let w = t.text.to_ascii_lowercase();
        match w.as_str() {
            "insert" | "delete" | "merge" => true,
            "update" => {
                let prev = i.checked_sub(1).and_then(|p| toks.get(p));
                !["for", "key", "do", "on"].iter().any(|k| is_word(prev, k))
            }
            _ => false,
        }
    })
}

/// Parse a qualified name at `toks[*at..]`, folding unquoted parts.
fn name(toks: &[Tok<'_>], at: &mut usize) -> Option<RelationName> {
    let mut parts = Vec::new();
    loop {
        let tok = toks.get(*at)?;
        let part = match tok.kind {
            TokenKind::Word => tok.text.to_ascii_lowercase(),
            TokenKind::QuotedIdent => tok.text[1..tok.text.len() - 1].replace("\"\"", "\""),
            _ => return None,
        };
        parts.push(part);
        *at += 1;
        if toks.get(*at).is_some_and(|t| t.text == ".") {
            *at += 1;
        } else {
            break;
        }
    }
    let n = parts.len();
    Some(RelationName::new(
        (n >= 2).then(|| parts[n - 2].as_str()),
        &parts[n - 1],
    ))
}

/// What one statement's leading tokens say.
enum Lead {
    /// Starts like a read.
    Read,
    /// Writes exactly these relations.
    Writes(Vec<RelationName>),
    /// May write; these are the targets we could name.
    Unknown(Vec<RelationName>),
}

fn lead(statement: &str) -> Lead {
    let toks = tokens(statement);
    let first = toks.iter().position(|t| t.kind != TokenKind::LParen);
    let Some(first) = first else {
        return Lead::Read;
    };
    let keyword = toks[first].text.to_ascii_lowercase();
    let at = |i: usize| toks.get(first + i);
    match keyword.as_str() {
        "select" | "values" | "show" | "table" => Lead::Read,
        "with" | "explain" if !has_other_dml(&toks, 0) => Lead::Read,
        "refresh" if is_word(at(1), "materialized") && is_word(at(2), "view") => {
            let mut i = first + 3;
            if is_word(toks.get(i), "concurrently") {
                i += 1;
            }
            match name(&toks, &mut i) {
                Some(n) if i == toks.len() || is_word(toks.get(i), "with") => Lead::Writes(vec![n]),
                Some(n) => Lead::Unknown(vec![n]),
                None => Lead::Unknown(vec![]),
            }
        }
        "insert" | "update" | "delete" | "truncate" => {
            let mut i = first + 1;
            let prefix = match keyword.as_str() {
                "insert" => "into",
                "delete" => "from",
                "truncate" => "table",
                _ => "",
            };
            if is_word(toks.get(i), prefix) {
                i += 1;
            }
            let mut names = Vec::new();
            loop {
                if is_word(toks.get(i), "only") {
                    i += 1;
                }
                match name(&toks, &mut i) {
                    Some(n) => names.push(n),
                    None => return Lead::Unknown(names),
                }
                if toks.get(i).is_some_and(|t| t.text == "*") {
                    i += 1;
                }
                if keyword == "truncate" && toks.get(i).is_some_and(|t| t.text == ",") {
                    i += 1;
                    continue;
                }
                break;
            }
            let cascade = toks.iter().any(|t| is_word(Some(t), "cascade"));
            if has_other_dml(&toks, first + 1) || (keyword == "truncate" && cascade) {
                Lead::Unknown(names)
            } else {
                Lead::Writes(names)
            }
        }
        _ => Lead::Unknown(vec![]),
    }
}

/// Facts for text that was not parsed. `read_reason` is the verdict when the text is
/// read-like ([`Reason::ParseError`], [`Reason::FromOnly`] or [`Reason::TooLarge`]);
/// `message` is what [`Reason::UnknownWrite`] holds otherwise.
pub(crate) fn unparsed(text: &str, read_reason: Reason, message: &str) -> Facts {
    let statements = split_statements(text);
    let mut facts = Facts::new(StatementKind::Other);
    let mut certain = true;
    for statement in &statements {
        match lead(statement) {
            Lead::Read => {}
            Lead::Writes(names) => {
                facts.kind = StatementKind::Write;
                facts.writes.extend(names);
            }
            Lead::Unknown(names) => {
                certain = false;
                facts.writes.extend(names);
            }
        }
    }
    facts.writes_unknown = !certain;
    if !certain {
        facts.reasons.push(Reason::UnknownWrite(message.to_owned()));
    }
    if matches!(read_reason, Reason::TooLarge { .. }) || (certain && facts.writes.is_empty()) {
        facts.reasons.push(read_reason);
    }
    if statements.len() > 1 {
        facts.reasons.push(Reason::MultipleStatements);
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(facts: &Facts) -> Vec<String> {
        facts.writes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn refresh_materialized_view_writes_its_view() {
        let f = unparsed(
            "REFRESH MATERIALIZED VIEW CONCURRENTLY Reports.\"Daily\" WITH DATA",
            Reason::ParseError("x".into()),
            "x",
        );
        assert_eq!(names(&f), vec!["reports.Daily"]);
        assert!(!f.writes_unknown);
        assert_eq!(f.kind, StatementKind::Write);
    }

    #[test]
    fn unknown_leading_keywords_are_unknown_writes() {
        for text in [
            "DO $$ BEGIN DELETE FROM t; END $$",
            "VACUUM FULL t",
            "GRANT x TO y",
        ] {
            let f = unparsed(text, Reason::ParseError("p".into()), "p");
            assert!(f.writes_unknown, "{text}");
            assert!(
                f.reasons.contains(&Reason::UnknownWrite("p".into())),
                "{text}"
            );
        }
    }

    #[test]
    fn read_like_text_keeps_the_read_reason() {
        for text in [
            "SELECT * FROM t WHERE",
            "WITH a AS (SELECT 1) SELECT * FROM a FOR UPDATE x",
        ] {
            let f = unparsed(text, Reason::ParseError("p".into()), "p");
            assert!(!f.writes_unknown, "{text}");
            assert_eq!(f.reasons, vec![Reason::ParseError("p".into())], "{text}");
        }
    }

    #[test]
    fn dml_inside_with_or_a_second_statement_is_an_unknown_write() {
        for text in [
            "WITH d AS (DELETE FROM q RETURNING *) SELECT * FROM d ???",
            "SELECT 1; CALL p() ???",
            "INSERT INTO t WITH d AS (DELETE FROM q RETURNING *) SELECT * FROM d ???",
        ] {
            let f = unparsed(text, Reason::ParseError("p".into()), "p");
            assert!(f.writes_unknown, "{text}");
        }
    }

    #[test]
    fn plain_dml_names_its_target() {
        let f = unparsed(
            "INSERT INTO public.t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2 ???",
            Reason::ParseError("p".into()),
            "p",
        );
        assert_eq!(names(&f), vec!["public.t"]);
        assert!(!f.writes_unknown);
        let f = unparsed(
            "TRUNCATE ONLY a, b * CASCADE",
            Reason::ParseError("p".into()),
            "p",
        );
        assert_eq!(names(&f), vec!["a", "b"]);
        assert!(f.writes_unknown);
    }
}
