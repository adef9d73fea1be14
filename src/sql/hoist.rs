//! The lexer-level literal hoist: a text's *shape key* and its hoistable literals.
//!
//! Two texts share a shape key exactly when they are byte-for-byte equal except for
//! (a) the contents of plain `'…'` strings and plain numbers (`42`, `1.50`), (b) the
//! case of unquoted words, and (c) the contents of comments. Whitespace is kept
//! verbatim (sqlparser looks at it in a few places, e.g. `COPY` payloads), and so is a
//! comment that directly follows punctuation (sqlparser's custom-operator scan can
//! swallow `--` or `/*` there). Everything else — keywords, identifiers, operators,
//! parameters, `E''` strings, dollar quotes, `1e5` — is part of the key.
//!
//! sqlparser's tokenizer therefore produces the same tokens for two texts with one
//! shape key, except for the hoisted literals' values; the memo (`memo.rs`) checks,
//! once per shape, which hoisted literal became which literal of the AST.

use std::ops::Range;

use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::lexer::{Lexeme, Lexer, TokenKind};
use super::spans::Locator;

/// A text's shape key and the byte ranges of its hoisted literals, in text order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hoisted {
    /// xxh3-128 of the shape encoding.
    pub key: u128,
    /// Byte ranges of the plain strings (quotes included) and plain numbers.
    pub literals: Vec<Range<usize>>,
    /// For each literal, `true` when it is a string.
    pub strings: Vec<bool>,
}

fn tag(kind: TokenKind) -> u8 {
    match kind {
        TokenKind::Word => b'w',
        TokenKind::QuotedIdent => b'q',
        TokenKind::String => b's',
        TokenKind::Number => b'n',
        TokenKind::OtherLiteral => b'l',
        TokenKind::Param => b'p',
        TokenKind::LParen => b'(',
        TokenKind::RParen => b')',
        TokenKind::Semicolon => b';',
        TokenKind::Punct => b'.',
        TokenKind::Unterminated => b'u',
    }
}

/// Append one length-prefixed item, so that no two lexeme sequences encode alike.
fn item(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Hoist the literals of `text`. `None` when the text has an unterminated string,
/// identifier or comment (sqlparser rejects it; the memo then parses it fully).
pub(crate) fn hoist(text: &str) -> Option<Hoisted> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut literals = Vec::new();
    let mut strings = Vec::new();
    let mut after_punct = false;
    for lexeme in Lexer::new(text) {
        let is_punct = matches!(lexeme, Lexeme::Token(TokenKind::Punct, _));
        match lexeme {
            Lexeme::Space(r) => item(&mut out, b' ', &bytes[r]),
            Lexeme::Comment(r) if after_punct => item(&mut out, b'c', &bytes[r]),
            Lexeme::Comment(_) => item(&mut out, b'c', &[]),
            Lexeme::Token(TokenKind::Unterminated, _) => return None,
            Lexeme::Token(kind @ (TokenKind::String | TokenKind::Number), r) => {
                item(&mut out, tag(kind), &[]);
                strings.push(kind == TokenKind::String);
                literals.push(r);
            }
            Lexeme::Token(TokenKind::Word, r) => {
                out.push(b'w');
                out.extend_from_slice(&((r.end - r.start) as u32).to_le_bytes());
                out.extend(bytes[r].iter().map(u8::to_ascii_lowercase));
            }
            Lexeme::Token(kind, r) => item(&mut out, tag(kind), &bytes[r]),
        }
        after_punct = is_punct;
    }
    Some(Hoisted {
        key: xxhash_rust::xxh3::xxh3_128(&out),
        literals,
        strings,
    })
}

/// What a byte range holds, for the lexemes the shape key transforms: hoisted
/// literals, words (lower-cased) and comments (dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A plain `'…'` string.
    String,
    /// A plain number.
    Number,
    /// An unquoted word.
    Word,
    /// A comment.
    Comment,
}

/// Claims on a text: byte ranges and what they hold, in text order.
pub(crate) type Claims = Vec<(Range<usize>, Claim)>;

/// Our lexer's claims on `text`, in text order: the ranges the shape key transforms.
pub(crate) fn claims(text: &str) -> Claims {
    let mut out = Vec::new();
    let mut after_punct = false;
    for lexeme in Lexer::new(text) {
        let is_punct = matches!(lexeme, Lexeme::Token(TokenKind::Punct, _));
        match lexeme {
            Lexeme::Token(TokenKind::String, r) => out.push((r, Claim::String)),
            Lexeme::Token(TokenKind::Number, r) => out.push((r, Claim::Number)),
            Lexeme::Token(TokenKind::Word, r) => out.push((r, Claim::Word)),
            // A comment after punctuation is kept verbatim in the key.
            Lexeme::Comment(r) if !after_punct => out.push((r, Claim::Comment)),
            _ => {}
        }
        after_punct = is_punct;
    }
    out
}

/// sqlparser's claims on `text` from its tokens, in text order.
pub(crate) fn sqlparser_claims<'t>(
    text: &str,
    tokens: impl Iterator<Item = &'t TokenWithSpan>,
) -> Claims {
    let locator = Locator::new(text);
    tokens
        .filter_map(|t| {
            let claim = match &t.token {
                Token::SingleQuotedString(_) => Claim::String,
                Token::Number(_, false) => Claim::Number,
                Token::Word(w) if w.quote_style.is_none() => Claim::Word,
                Token::Whitespace(
                    Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
                ) => Claim::Comment,
                _ => return None,
            };
            Some((
                locator.byte(t.span.start)?..locator.byte(t.span.end)?,
                claim,
            ))
        })
        .collect()
}

/// `true` when every claim of ours is also sqlparser's: same range, same class. Then
/// any text with the same shape key tokenizes, in sqlparser, into the same tokens
/// except for the hoisted literals' values (see the module docs).
pub(crate) fn agree(ours: &[(Range<usize>, Claim)], theirs: &[(Range<usize>, Claim)]) -> bool {
    ours.iter().all(|(range, claim)| {
        theirs
            .binary_search_by_key(&range.start, |(r, _)| r.start)
            .is_ok_and(|i| theirs[i] == (range.clone(), *claim))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_values_and_word_case_do_not_change_the_key() {
        let a = hoist("select * from Film where id = 1 and t = 'x' /* a */").expect("lexes");
        let b = hoist("SELECT * FROM film WHERE ID = 22 AND T = 'y''z' /* bb */").expect("lexes");
        assert_eq!(a.key, b.key);
        assert_eq!(b.literals, vec![30..32, 41..47]);
        assert_eq!(b.strings, vec![false, true]);
    }

    #[test]
    fn everything_else_changes_the_key() {
        let base = hoist("SELECT * FROM film WHERE id = 1").expect("lexes").key;
        for other in [
            "SELECT * FROM film WHERE id =  1",
            "SELECT * FROM film WHERE id = $1",
            "SELECT * FROM film WHERE id = '1'",
            "SELECT * FROM film WHERE id = 1e0",
            "SELECT * FROM \"film\" WHERE id = 1",
            "SELECT * FROM films WHERE id = 1",
            "SELECT * FROM film WHERE id <> 1",
        ] {
            assert_ne!(hoist(other).expect("lexes").key, base, "{other}");
        }
    }

    #[test]
    fn comments_after_punctuation_are_part_of_the_key() {
        let a = hoist("SELECT a <>-- x\n 1").expect("lexes");
        let b = hoist("SELECT a <>-- y\n 1").expect("lexes");
        assert_ne!(a.key, b.key);
        let c = hoist("SELECT a <> -- x\n 1").expect("lexes");
        let d = hoist("SELECT a <> -- y\n 1").expect("lexes");
        assert_eq!(c.key, d.key);
    }

    #[test]
    fn unterminated_text_is_not_hoisted() {
        assert_eq!(hoist("SELECT 'abc"), None);
    }
}
