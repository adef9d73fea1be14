//! Split a text into statements at top-level `;`.

use super::lexer::{Lexeme, Lexer, TokenKind};

/// Split `text` at every `;` outside strings (`'…'`, `E'…'`, dollar quotes), quoted
/// identifiers, comments and parentheses, as psql does. Each piece is trimmed of
/// surrounding whitespace and excludes its `;`; pieces holding only whitespace and
/// comments are dropped. An unterminated string or comment runs to the end of the
/// text, so it stays in the last piece.
///
/// Not handled: `BEGIN ATOMIC … END` function bodies (PostgreSQL 14+), whose inner
/// `;` split the text as they would in psql without its `BEGIN` tracking.
///
/// ```
/// use querycache::sql::split_statements;
/// assert_eq!(
///     split_statements("SELECT ';'; -- a;b\nSELECT $$;$$ ;;"),
///     vec!["SELECT ';'", "-- a;b\nSELECT $$;$$"]
/// );
/// ```
pub fn split_statements(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut has_token = false;
    let mut push = |from: usize, to: usize, has_token: bool| {
        if has_token {
            pieces.push(text[from..to].trim_matches(|c: char| c.is_ascii_whitespace()));
        }
    };
    for lexeme in Lexer::new(text) {
        let Lexeme::Token(kind, range) = lexeme else {
            continue;
        };
        match kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            TokenKind::Semicolon if depth == 0 => {
                push(start, range.start, has_token);
                start = range.end;
                has_token = false;
                continue;
            }
            _ => {}
        }
        has_token = true;
    }
    push(start, text.len(), has_token);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_at_top_level_semicolons() {
        let text = "INSERT INTO t VALUES (';', E'\\';', \"a;b\");\n\
                    CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                    /* c; /* nested; */ */ SELECT (SELECT 1; ) ; -- trailing; comment";
        assert_eq!(
            split_statements(text),
            vec![
                "INSERT INTO t VALUES (';', E'\\';', \"a;b\")",
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "/* c; /* nested; */ */ SELECT (SELECT 1; )",
            ]
        );
    }

    #[test]
    fn empty_and_comment_only_pieces_are_dropped() {
        assert!(split_statements(" ; ;\n-- only a comment\n").is_empty());
        assert_eq!(
            split_statements("SELECT 'unterminated; x"),
            vec!["SELECT 'unterminated; x"]
        );
    }
}
