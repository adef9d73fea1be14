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

use super::lexer::{Lexeme, Lexer, TokenKind};

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
