//! The lexer-level literal hoist: a text's *shape key* and its hoistable literals.
//!
//! The shape key is the xxh3-128 of the text with every plain `'…'` string, every
//! plain number (`42`, `1.50`) and every comment replaced by one marker byte (`0xFF`,
//! `0xFE`, `0xFD`; none can occur in UTF-8 text). Two texts share a shape key exactly
//! when they are byte-for-byte equal except for those literals' and comments'
//! contents. A comment right after punctuation is kept verbatim (sqlparser's
//! custom-operator scan can swallow `--` or `/*` there). Everything else — keywords
//! and their case, identifiers, whitespace, operators, parameters, `E''` strings,
//! dollar quotes, `1e5` — is part of the key, so a formatting variant is a shape of
//! its own (an application's call site sends one spelling).
//!
//! The encoding is unambiguous: the lexer's reading of a text depends only on the
//! bytes before each token and on the token itself, and the bytes between markers are
//! equal; so two texts with one key lex into the same tokens, except for the contents
//! of the replaced ones. The memo checks, once per shape, that sqlparser's tokenizer
//! reads the replaced spans the same way ([`agree`]) and which hoisted literal became
//! which literal of the AST.

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
}

/// Marker bytes: never part of UTF-8 text.
const STRING: u8 = 0xFF;
const NUMBER: u8 = 0xFE;
const COMMENT: u8 = 0xFD;

/// Hoist the literals of `text`. `None` when the text has an unterminated string,
/// identifier or comment (sqlparser rejects it; the memo then parses it fully).
pub(crate) fn hoist(text: &str) -> Option<Hoisted> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    let mut literals = Vec::new();
    let mut after_punct = false;
    let mut replace = |out: &mut Vec<u8>, range: Range<usize>, marker: u8| {
        out.extend_from_slice(&bytes[copied..range.start]);
        out.push(marker);
        copied = range.end;
    };
    for lexeme in Lexer::new(text) {
        let is_punct = matches!(lexeme, Lexeme::Token(TokenKind::Punct, _));
        match lexeme {
            Lexeme::Token(TokenKind::Unterminated, _) => return None,
            Lexeme::Token(TokenKind::String, r) => {
                replace(&mut out, r.clone(), STRING);
                literals.push(r);
            }
            Lexeme::Token(TokenKind::Number, r) => {
                replace(&mut out, r.clone(), NUMBER);
                literals.push(r);
            }
            Lexeme::Comment(r) if !after_punct => replace(&mut out, r, COMMENT),
            _ => {}
        }
        after_punct = is_punct;
    }
    out.extend_from_slice(&bytes[copied..]);
    Some(Hoisted {
        key: xxhash_rust::xxh3::xxh3_128(&out),
        literals,
    })
}

/// What a byte range holds, for the lexemes the shape key replaces: hoisted literals
/// and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A plain `'…'` string.
    String,
    /// A plain number.
    Number,
    /// A comment.
    Comment,
}

/// Claims on a text: byte ranges and what they hold, in text order.
pub(crate) type Claims = Vec<(Range<usize>, Claim)>;

/// Our lexer's claims on `text`, in text order: the ranges the shape key replaces.
pub(crate) fn claims(text: &str) -> Claims {
    let mut out = Vec::new();
    let mut after_punct = false;
    for lexeme in Lexer::new(text) {
        let is_punct = matches!(lexeme, Lexeme::Token(TokenKind::Punct, _));
        match lexeme {
            Lexeme::Token(TokenKind::String, r) => out.push((r, Claim::String)),
            Lexeme::Token(TokenKind::Number, r) => out.push((r, Claim::Number)),
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
    fn literal_values_and_comments_do_not_change_the_key() {
        let a = hoist("SELECT * FROM film WHERE id = 1 AND t = 'x' /* a */").expect("lexes");
        let b = hoist("SELECT * FROM film WHERE id = 22 AND t = 'y''z' /* bb */").expect("lexes");
        assert_eq!(a.key, b.key);
        assert_eq!(b.literals, vec![30..32, 41..47]);
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
            "select * from film where id = 1",
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
