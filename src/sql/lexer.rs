//! A byte lexer for Postgres SQL text: the cheap pass in front of sqlparser.
//!
//! It finds token boundaries exactly where sqlparser 0.63's tokenizer does for
//! `PostgreSqlDialect` (`sqlparser/src/tokenizer.rs`, `next_token`): whitespace, `--`
//! and nested `/* */` comments, plain `'…'` strings (`''` doubling, no backslash
//! escapes), `E'…'` strings (backslash escapes), `B'…'`/`X'…'`/`N'…'`/`U&'…'`/`b"…"`
//! literals, `$$…$$` and `$tag$…$tag$` dollar quotes, `"quoted identifiers"`, `$n`
//! parameters, numbers, words and punctuation. It never fails: an unterminated
//! string, identifier or comment becomes one [`TokenKind::Unterminated`] token that
//! runs to the end of the text (sqlparser rejects such text).
//!
//! Users: [`split_statements`](super::split_statements), the memo's literal hoist
//! (`hoist.rs`), and the leading-keyword fallback for text sqlparser cannot parse.
//! Differential tests (`lexer_differential.rs`) keep it in agreement with sqlparser's
//! tokenizer, and the memo checks the agreement on every text it builds a template
//! from.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted identifier"`.
    QuotedIdent,
    /// A plain `'string'`: its text is exactly how sqlparser displays it.
    String,
    /// An unsigned integer or decimal (`42`, `1.50`) not followed by an identifier
    /// character, quote or period: its text is exactly how sqlparser displays it.
    Number,
    /// Any other literal: `E''`, `B''`, `X''`, `N''`, `U&''`, `b""`, dollar quotes,
    /// `1e5`, `.5`, `0x1F`, `1_000`, `1.`, `1L`.
    OtherLiteral,
    /// A `$n` parameter (or `$name`, `$`).
    Param,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `;`.
    Semicolon,
    /// Any other single character (operators, `,`, `.`, `::` is two of these).
    Punct,
    /// An unterminated string, identifier, dollar quote or comment: the rest of the text.
    Unterminated,
}

/// One lexeme: a token, or the whitespace / comment between tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lexeme {
    /// A token and its byte range in the text.
    Token(TokenKind, Range<usize>),
    /// A run of whitespace bytes.
    Space(Range<usize>),
    /// A `--` or `/* */` comment.
    Comment(Range<usize>),
}

/// Iterator over the lexemes of a text. Byte ranges always fall on `char` boundaries.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer over `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    #[inline]
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// Advance over bytes in `set`.
    #[inline]
    fn skip(&mut self, set: &[bool; 256]) {
        let rest = &self.bytes[self.pos..];
        self.pos += rest
            .iter()
            .position(|&b| !set[b as usize])
            .unwrap_or(rest.len());
    }

    /// Skip to the end of the text; used for unterminated constructs.
    fn rest(&mut self, start: usize) -> Lexeme {
        self.pos = self.bytes.len();
        Lexeme::Token(TokenKind::Unterminated, start..self.pos)
    }

    /// Scan a quoted body after the opening quote at `self.pos - 1`: ends at a lone
    /// `quote`; a doubled quote continues; with `backslash`, `\` escapes the next byte.
    /// Returns false when the text ends first.
    fn quoted(&mut self, quote: u8, backslash: bool) -> bool {
        loop {
            let rest = &self.bytes[self.pos..];
            let Some(i) = rest
                .iter()
                .position(|&b| b == quote || (backslash && b == b'\\'))
            else {
                self.pos = self.bytes.len();
                return false;
            };
            self.pos += i + 1;
            if rest[i] == quote {
                if self.peek(0) != Some(quote) {
                    return true;
                }
                self.pos += 1;
            } else {
                // A backslash escapes the next character (which may be multi-byte).
                if self.pos >= self.bytes.len() {
                    return false;
                }
                self.pos += 1;
                while self.pos < self.bytes.len() && !self.text.is_char_boundary(self.pos) {
                    self.pos += 1;
                }
            }
        }
    }

    fn quoted_token(&mut self, start: usize, kind: TokenKind, quote: u8, bs: bool) -> Lexeme {
        if self.quoted(quote, bs) {
            Lexeme::Token(kind, start..self.pos)
        } else {
            self.rest(start)
        }
    }

    /// `--` comment: up to (not including) `\n` or `\r`.
    fn line_comment(&mut self, start: usize) -> Lexeme {
        let end = self.bytes[self.pos..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(self.bytes.len(), |i| self.pos + i);
        self.pos = end;
        Lexeme::Comment(start..end)
    }

    /// `/* */` comment with nesting, as sqlparser's `tokenize_multiline_comment`.
    fn block_comment(&mut self, start: usize) -> Lexeme {
        self.pos += 2;
        let mut depth = 1usize;
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            match (b, self.peek(0)) {
                (b'/', Some(b'*')) => {
                    self.pos += 1;
                    depth += 1;
                }
                (b'*', Some(b'/')) => {
                    self.pos += 1;
                    depth -= 1;
                    if depth == 0 {
                        return Lexeme::Comment(start..self.pos);
                    }
                }
                _ => {}
            }
        }
        self.rest(start)
    }

    /// Digits (`is_digit`) with single `_` separators between them, as sqlparser's
    /// `tokenize_number_part`. Returns the count of digits and whether a `_` was seen.
    fn digits(&mut self, is_digit: fn(&u8) -> bool) -> (usize, bool) {
        let mut n = 0;
        let mut underscore = false;
        while let Some(b) = self.peek(0) {
            if is_digit(&b) {
                n += 1;
            } else if b == b'_' && n > 0 && self.peek(1).is_some_and(|c| is_digit(&c)) {
                underscore = true;
            } else {
                break;
            }
            self.pos += 1;
        }
        (n, underscore)
    }

    /// A number starting at a digit or at `.` followed by a digit.
    fn number(&mut self, start: usize) -> Lexeme {
        let (int_digits, mut odd) = self.digits(u8::is_ascii_digit);
        if int_digits == 1 && self.bytes[start] == b'0' && self.peek(0) == Some(b'x') {
            self.pos += 1;
            self.digits(u8::is_ascii_hexdigit);
            return Lexeme::Token(TokenKind::OtherLiteral, start..self.pos);
        }
        let mut frac_digits = 0;
        let has_point = self.peek(0) == Some(b'.');
        if has_point {
            self.pos += 1;
            let (n, u) = self.digits(u8::is_ascii_digit);
            frac_digits = n;
            odd |= u;
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
            if self.peek(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.digits(u8::is_ascii_digit);
                odd = true;
            }
        }
        if self.peek(0) == Some(b'L') {
            self.pos += 1;
            odd = true;
        }
        let plain = int_digits > 0 && (!has_point || frac_digits > 0) && !odd;
        let followed_by_ident = self
            .peek(0)
            .is_some_and(|b| is_ident_part(b) || matches!(b, b'.' | b'\'' | b'"'));
        let kind = if plain && !followed_by_ident {
            TokenKind::Number
        } else {
            TokenKind::OtherLiteral
        };
        Lexeme::Token(kind, start..self.pos)
    }

    /// `$…`: a dollar-quoted string or a parameter, as sqlparser's
    /// `tokenize_dollar_preceded_value`.
    fn dollar(&mut self, start: usize) -> Lexeme {
        self.pos += 1;
        if self.peek(0) == Some(b'$') {
            self.pos += 1;
            return match self.text[self.pos..].find("$$") {
                Some(i) => {
                    self.pos += i + 2;
                    Lexeme::Token(TokenKind::OtherLiteral, start..self.pos)
                }
                None => self.rest(start),
            };
        }
        let tag_len: usize = self.text[self.pos..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        self.pos += tag_len;
        if self.peek(0) != Some(b'$') {
            return Lexeme::Token(TokenKind::Param, start..self.pos);
        }
        self.pos += 1;
        let delimiter = &self.text[start..self.pos];
        match self.text[self.pos..].find(delimiter) {
            Some(i) => {
                self.pos += i + delimiter.len();
                Lexeme::Token(TokenKind::OtherLiteral, start..self.pos)
            }
            None => self.rest(start),
        }
    }

    fn word(&mut self, start: usize) -> Lexeme {
        let first = self.bytes[start];
        let next = self.peek(1);
        // Prefixed literals are recognised only at the start of a word.
        let prefixed = match (first, next) {
            (b'e' | b'E', Some(b'\'')) => Some((b'\'', true)),
            (b'x' | b'X', Some(b'\'')) => Some((b'\'', true)),
            (b'b' | b'B' | b'n' | b'N', Some(b'\'')) => Some((b'\'', false)),
            (b'b' | b'B', Some(b'"')) => Some((b'"', false)),
            _ => None,
        };
        if let Some((quote, backslash)) = prefixed {
            self.pos += 2;
            return self.quoted_token(start, TokenKind::OtherLiteral, quote, backslash);
        }
        if matches!(first, b'u' | b'U') && next == Some(b'&') && self.peek(2) == Some(b'\'') {
            self.pos += 3;
            return self.quoted_token(start, TokenKind::OtherLiteral, b'\'', true);
        }
        self.pos += 1;
        self.skip(&IDENT_PART);
        Lexeme::Token(TokenKind::Word, start..self.pos)
    }
}

/// What a byte can start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    /// An identifier start: ASCII letter, `_`, or any byte of a non-ASCII character.
    Ident,
    Digit,
    Quote,
    DoubleQuote,
    Dollar,
    Dot,
    Minus,
    Slash,
    Other,
}

const CLASS: [Class; 256] = {
    let mut table = [Class::Other; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => Class::Space,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | 0x80..=0xff => Class::Ident,
            b'0'..=b'9' => Class::Digit,
            b'\'' => Class::Quote,
            b'"' => Class::DoubleQuote,
            b'$' => Class::Dollar,
            b'.' => Class::Dot,
            b'-' => Class::Minus,
            b'/' => Class::Slash,
            _ => Class::Other,
        };
        b += 1;
    }
    table
};

/// A table of the bytes matching a pattern.
macro_rules! byte_set {
    ($pattern:pat) => {{
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = matches!(b as u8, $pattern);
            b += 1;
        }
        table
    }};
}

/// Whitespace as sqlparser's Postgres tokenizer sees it: ASCII only, because every
/// non-ASCII character starts an identifier in `PostgreSqlDialect`.
const SPACE: [bool; 256] = byte_set!(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
/// Bytes that continue an identifier: ASCII letters and digits, `_`, `$`, non-ASCII.
const IDENT_PART: [bool; 256] =
    byte_set!(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'$' | 0x80..=0xff);

fn is_ident_part(b: u8) -> bool {
    IDENT_PART[b as usize]
}

impl Iterator for Lexer<'_> {
    type Item = Lexeme;

    #[inline]
    fn next(&mut self) -> Option<Lexeme> {
        let start = self.pos;
        let b = *self.bytes.get(start)?;
        let lexeme = match CLASS[b as usize] {
            Class::Space => {
                self.skip(&SPACE);
                Lexeme::Space(start..self.pos)
            }
            Class::Ident => self.word(start),
            Class::Digit => self.number(start),
            Class::Minus if self.peek(1) == Some(b'-') => self.line_comment(start),
            Class::Slash if self.peek(1) == Some(b'*') => self.block_comment(start),
            Class::Quote => {
                self.pos += 1;
                self.quoted_token(start, TokenKind::String, b'\'', false)
            }
            Class::DoubleQuote => {
                self.pos += 1;
                self.quoted_token(start, TokenKind::QuotedIdent, b'"', false)
            }
            Class::Dot if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => self.number(start),
            Class::Dollar => self.dollar(start),
            _ => {
                self.pos += 1;
                let kind = match b {
                    b'(' => TokenKind::LParen,
                    b')' => TokenKind::RParen,
                    b';' => TokenKind::Semicolon,
                    _ => TokenKind::Punct,
                };
                Lexeme::Token(kind, start..self.pos)
            }
        };
        Some(lexeme)
    }
}

/// Lower-cased first word of `text` after whitespace, comments and `(`, if any.
pub(crate) fn leading_keyword(text: &str) -> Option<String> {
    for lexeme in Lexer::new(text) {
        match lexeme {
            Lexeme::Space(_) | Lexeme::Comment(_) => {}
            Lexeme::Token(TokenKind::LParen, _) => {}
            Lexeme::Token(TokenKind::Word, range) => {
                return Some(text[range].to_ascii_lowercase());
            }
            Lexeme::Token(..) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(TokenKind, &str)> {
        Lexer::new(text)
            .filter_map(|l| match l {
                Lexeme::Token(kind, r) => Some((kind, &text[r])),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn strings_comments_and_quotes_hide_their_contents() {
        use TokenKind::*;
        let text = "SELECT 'a -- b', E'it\\'s', $$x;y$$, $t$ $$ $t$, \"we\"\"ird\" /* a /* b */ c */ -- d\n;";
        assert_eq!(
            tokens(text),
            vec![
                (Word, "SELECT"),
                (String, "'a -- b'"),
                (Punct, ","),
                (OtherLiteral, "E'it\\'s'"),
                (Punct, ","),
                (OtherLiteral, "$$x;y$$"),
                (Punct, ","),
                (OtherLiteral, "$t$ $$ $t$"),
                (Punct, ","),
                (QuotedIdent, "\"we\"\"ird\""),
                (Semicolon, ";"),
            ]
        );
    }

    #[test]
    fn numbers_are_hoistable_only_in_plain_form() {
        use TokenKind::*;
        assert_eq!(
            tokens("1 1.50 .5 1e5 1. 0x1F 1_000 1L 1abc $1 x1"),
            vec![
                (Number, "1"),
                (Number, "1.50"),
                (OtherLiteral, ".5"),
                (OtherLiteral, "1e5"),
                (OtherLiteral, "1."),
                (OtherLiteral, "0x1F"),
                (OtherLiteral, "1_000"),
                (OtherLiteral, "1L"),
                (OtherLiteral, "1"),
                (Word, "abc"),
                (Param, "$1"),
                (Word, "x1"),
            ]
        );
    }

    #[test]
    fn unterminated_constructs_run_to_the_end() {
        for text in [
            "SELECT 'abc",
            "SELECT \"abc",
            "SELECT $$abc",
            "SELECT /* a /* b */",
        ] {
            let last = tokens(text).pop().expect("a token");
            assert_eq!(last.0, TokenKind::Unterminated, "{text}");
        }
    }

    #[test]
    fn leading_keyword_skips_comments_and_parens() {
        assert_eq!(
            leading_keyword(" /* x */ ((Select 1))").as_deref(),
            Some("select")
        );
        assert_eq!(
            leading_keyword("-- c\nREFRESH MATERIALIZED VIEW v").as_deref(),
            Some("refresh")
        );
        assert_eq!(leading_keyword("'x'"), None);
    }
}
