//! What a PL/pgSQL or SQL function body writes, read from its source text (`prosrc`).
//!
//! A trigger's effect on other tables is the set of tables its function writes. Postgres
//! does not record that (`pg_depend` has no entries for PL/pgSQL bodies), so we scan the
//! body: a small lexer skips comments, string literals, quoted identifiers' quotes and
//! dollar-quoted strings, then a token scan finds every write statement anywhere in the
//! body (`INSERT INTO t`, `UPDATE [ONLY] t`, `DELETE FROM [ONLY] t`, `MERGE INTO t`,
//! `TRUNCATE [TABLE] [ONLY] t, … [CASCADE]`, `COPY t`, `REFRESH MATERIALIZED VIEW t`),
//! including those nested in CTEs or `IF` branches, and every `name(` that may call
//! another function. The scan over-approximates (it does not know which branch runs):
//! that only costs extra invalidations.
//!
//! Whatever cannot be known makes the effect `unknown`: `EXECUTE` (dynamic SQL), DDL
//! (`CREATE`, `ALTER`, `DROP`), and a write keyword whose target cannot be read. A
//! function that only assigns to `NEW`/`OLD` (e.g. `NEW.last_update := now()`) writes
//! nothing.

/// A relation name as written in the body, folded like Postgres folds identifiers:
/// unquoted → lower case, quoted → as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BodyName {
    /// Schema, when the body qualified the name.
    pub schema: Option<String>,
    /// Relation or function name.
    pub name: String,
}

/// The effects found in one body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BodyEffects {
    /// Relations written.
    pub writes: Vec<BodyName>,
    /// Relations truncated with `CASCADE` (their referencing tables are truncated too).
    pub truncate_cascade: Vec<BodyName>,
    /// Names followed by `(` or after `CALL`: candidate function calls, to be matched
    /// against user-defined functions (builtins and keywords such as `coalesce(` or
    /// `VALUES (` are filtered out by the caller).
    pub calls: Vec<BodyName>,
    /// `true` when the body may write relations it does not name (see module docs).
    pub unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier or keyword: unquoted words folded to lower case.
    Word { text: String, quoted: bool },
    /// Any other single character outside literals and comments (`.`, `(`, `,`, `;`, …).
    Symbol(char),
}

impl Token {
    /// The folded text when this is an unquoted word (a keyword candidate).
    fn keyword(&self) -> Option<&str> {
        match self {
            Token::Word {
                text,
                quoted: false,
            } => Some(text),
            _ => None,
        }
    }
}

/// Scans a PL/pgSQL or SQL function body (see the module docs).
pub(crate) fn scan(body: &str) -> BodyEffects {
    let tokens = lex(body);
    let mut effects = BodyEffects::default();
    let keyword = |i: usize| tokens.get(i).and_then(Token::keyword);
    let mut i = 0;
    while i < tokens.len() {
        let Some(word) = keyword(i) else {
            i += 1;
            continue;
        };
        let previous = i.checked_sub(1).and_then(keyword);
        // A word after `.` is part of a qualified name (`NEW.delete`), never a keyword.
        let after_dot = i > 0 && tokens[i - 1] == Token::Symbol('.');
        match word {
            _ if after_dot => {}
            "execute" | "create" | "alter" | "drop" => effects.unknown = true,
            "insert" | "merge" => {
                if keyword(i + 1) == Some("into") {
                    write_target(&tokens, i + 2, &mut effects);
                } else {
                    effects.unknown = true;
                }
            }
            "update" => {
                // `FOR [NO KEY] UPDATE` is a row lock; `DO UPDATE SET` (ON CONFLICT) and
                // MERGE's `THEN UPDATE SET` update the statement's own target.
                let row_lock = matches!(previous, Some("for" | "key"));
                if !row_lock && keyword(i + 1) != Some("set") {
                    write_target(&tokens, skip_only(&tokens, i + 1), &mut effects);
                }
            }
            "delete" => {
                if keyword(i + 1) == Some("from") {
                    write_target(&tokens, skip_only(&tokens, i + 2), &mut effects);
                } else if previous != Some("then") {
                    // MERGE's `THEN DELETE` deletes from the MERGE target; anything else
                    // (`ON DELETE` in DDL, `GRANT DELETE`) is not understood.
                    effects.unknown = true;
                }
            }
            "truncate" => {
                i = truncate(&tokens, i + 1, &mut effects);
                continue;
            }
            // `COPY t …` (conservatively a write whatever the direction);
            // `COPY (query) TO …` writes nothing.
            "copy" if tokens.get(i + 1) != Some(&Token::Symbol('(')) => {
                write_target(&tokens, i + 1, &mut effects);
            }
            "refresh" => {
                let mut at = i + 1;
                if keyword(at) == Some("materialized") && keyword(at + 1) == Some("view") {
                    at += 2;
                    if keyword(at) == Some("concurrently") {
                        at += 1;
                    }
                    write_target(&tokens, at, &mut effects);
                } else {
                    effects.unknown = true;
                }
            }
            "call" => match name_at(&tokens, i + 1) {
                Some((name, _)) => effects.calls.push(name),
                None => effects.unknown = true,
            },
            _ => {}
        }
        // Any (possibly qualified) name followed by `(` may be a function call; a word
        // after `.` is the tail of a name already seen.
        if !after_dot
            && let Some((name, next)) = name_at(&tokens, i)
            && tokens.get(next) == Some(&Token::Symbol('('))
        {
            effects.calls.push(name);
        }
        i += 1;
    }
    for list in [
        &mut effects.writes,
        &mut effects.truncate_cascade,
        &mut effects.calls,
    ] {
        list.sort();
        list.dedup();
    }
    effects
}

/// Skips an `ONLY` keyword at `at`.
fn skip_only(tokens: &[Token], at: usize) -> usize {
    if tokens.get(at).and_then(Token::keyword) == Some("only") {
        at + 1
    } else {
        at
    }
}

fn write_target(tokens: &[Token], at: usize, effects: &mut BodyEffects) {
    match name_at(tokens, at) {
        Some((name, _)) => effects.writes.push(name),
        None => effects.unknown = true,
    }
}

/// `TRUNCATE [TABLE] [ONLY] name [*] [, …] [RESTART IDENTITY | CONTINUE IDENTITY]
/// [CASCADE | RESTRICT]`, starting after `TRUNCATE`. Returns the index of the first
/// token not consumed.
fn truncate(tokens: &[Token], mut at: usize, effects: &mut BodyEffects) -> usize {
    if tokens.get(at).and_then(Token::keyword) == Some("table") {
        at += 1;
    }
    let mut names = Vec::new();
    loop {
        at = skip_only(tokens, at);
        let Some((name, next)) = name_at(tokens, at) else {
            effects.unknown = true;
            return at + 1;
        };
        names.push(name);
        at = next;
        if tokens.get(at) == Some(&Token::Symbol('*')) {
            at += 1;
        }
        if tokens.get(at) == Some(&Token::Symbol(',')) {
            at += 1;
        } else {
            break;
        }
    }
    let mut cascade = false;
    while let Some(word) = tokens.get(at).and_then(Token::keyword) {
        match word {
            "restart" | "continue" | "identity" | "restrict" => {}
            "cascade" => cascade = true,
            _ => break,
        }
        at += 1;
    }
    if cascade {
        effects.truncate_cascade.extend(names.iter().cloned());
    }
    effects.writes.extend(names);
    at
}

/// A name of one to three dotted parts at `at` (`t`, `s.t`, `db.s.t`), and the index
/// after it. Keywords that cannot start a name (`(`, `select`, …) are not names.
fn name_at(tokens: &[Token], at: usize) -> Option<(BodyName, usize)> {
    let mut parts = Vec::new();
    let mut i = at;
    while let Some(Token::Word { text, .. }) = tokens.get(i) {
        parts.push(text.clone());
        i += 1;
        if tokens.get(i) == Some(&Token::Symbol('.')) {
            i += 1;
        } else {
            break;
        }
    }
    let name = parts.pop()?;
    let schema = parts.pop();
    Some((BodyName { schema, name }, i))
}

/// Splits `body` into words and symbols, dropping whitespace, comments, numbers and
/// string literals (plain, `E'…'` with backslash escapes, and `$tag$…$tag$`).
fn lex(body: &str) -> Vec<Token> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i = skip_block_comment(&chars, i);
        } else if c == '\'' {
            i = skip_string(&chars, i + 1, false);
        } else if c == '"' {
            let (text, next) = quoted_identifier(&chars, i + 1);
            tokens.push(Token::Word { text, quoted: true });
            i = next;
        } else if c == '$' {
            match dollar_tag(&chars, i) {
                Some(tag) => i = skip_dollar_string(&chars, i + tag.len(), &tag),
                None => {
                    // A parameter (`$1`) or a stray `$`.
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if chars.get(i) == Some(&'\'') {
                // A prefixed literal: E'…' (escapes), B'…', X'…', N'…'.
                i = skip_string(&chars, i + 1, text == "e");
            } else {
                tokens.push(Token::Word {
                    text,
                    quoted: false,
                });
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            tokens.push(Token::Symbol(c));
            i += 1;
        }
    }
    tokens
}

/// Skips a `/* … */` comment (nested, as in Postgres) starting at `start`.
fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Skips a `'…'` literal whose body starts at `i`; `''` is a quote, and `\` escapes the
/// next character in an `E'…'` literal.
fn skip_string(chars: &[char], mut i: usize, backslash_escapes: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash_escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn quoted_identifier(chars: &[char], mut i: usize) -> (String, usize) {
    let mut text = String::new();
    while i < chars.len() {
        if chars[i] == '"' {
            if chars.get(i + 1) == Some(&'"') {
                text.push('"');
                i += 2;
            } else {
                return (text, i + 1);
            }
        } else {
            text.push(chars[i]);
            i += 1;
        }
    }
    (text, i)
}

/// The dollar-quote tag (`$$`, `$body$`) starting at `start`, if one starts there.
fn dollar_tag(chars: &[char], start: usize) -> Option<Vec<char>> {
    let mut i = start + 1;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        if i == start + 1 && chars[i].is_ascii_digit() {
            return None;
        }
        i += 1;
    }
    (chars.get(i) == Some(&'$')).then(|| chars[start..=i].to_vec())
}

fn skip_dollar_string(chars: &[char], mut i: usize, tag: &[char]) -> usize {
    while i < chars.len() {
        if chars[i..].starts_with(tag) {
            return i + tag.len();
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: Option<&str>, name: &str) -> BodyName {
        BodyName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn assigning_new_writes_nothing() {
        // Pagila's last_updated().
        let effects =
            scan("\nBEGIN\n    NEW.last_update := CURRENT_TIMESTAMP;\n    RETURN NEW;\nEND ");
        assert_eq!(effects, BodyEffects::default());
        // Column names that are unreserved keywords.
        let effects = scan("BEGIN NEW.delete := false; NEW.update := OLD.insert; RETURN NEW; END");
        assert_eq!(effects, BodyEffects::default());
    }

    #[test]
    fn finds_each_kind_of_write() {
        let effects = scan(
            "BEGIN
               INSERT INTO audit.log (op) VALUES (TG_OP);
               UPDATE ONLY Counters SET n = n + 1;
               DELETE FROM \"Queue\" WHERE id = OLD.id;
               MERGE INTO m USING src ON true WHEN MATCHED THEN DELETE;
               TRUNCATE TABLE t1, ONLY public.t2 * RESTART IDENTITY CASCADE;
               TRUNCATE t3;
               REFRESH MATERIALIZED VIEW CONCURRENTLY mv;
               RETURN NEW;
             END",
        );
        assert!(!effects.unknown);
        assert_eq!(
            effects.writes,
            vec![
                name(None, "Queue"),
                name(None, "counters"),
                name(None, "m"),
                name(None, "mv"),
                name(None, "t1"),
                name(None, "t3"),
                name(Some("audit"), "log"),
                name(Some("public"), "t2"),
            ]
        );
        assert_eq!(
            effects.truncate_cascade,
            vec![name(None, "t1"), name(Some("public"), "t2")]
        );
    }

    #[test]
    fn reads_locks_and_upserts_are_not_writes_to_other_tables() {
        let effects = scan(
            "DECLARE v int;
             BEGIN
               SELECT count(*) INTO v FROM rental WHERE x = 'INSERT INTO fake';
               PERFORM 1 FROM film FOR UPDATE;
               PERFORM 1 FROM film FOR NO KEY UPDATE OF film;
               INSERT INTO stats VALUES (1) ON CONFLICT (id) DO UPDATE SET n = stats.n + 1;
               -- DELETE FROM commented;
               /* UPDATE commented /* nested */ SET x = 1; */
               RAISE NOTICE E'it\\'s DELETE FROM escaped';
               v := $q$ UPDATE dollar SET x = 1 $q$;
               RETURN NEW;
             END",
        );
        assert!(!effects.unknown, "{effects:?}");
        assert_eq!(effects.writes, vec![name(None, "stats")]);
    }

    #[test]
    fn dynamic_sql_and_ddl_are_unknown() {
        assert!(
            scan("BEGIN EXECUTE 'INSERT INTO ' || TG_TABLE_NAME || ' VALUES (1)'; END").unknown
        );
        assert!(scan("BEGIN CREATE TEMP TABLE x (a int); END").unknown);
        assert!(scan("BEGIN DROP TABLE x; END").unknown);
        assert!(!scan("BEGIN RETURN NEW; END").unknown);
    }

    #[test]
    fn collects_candidate_calls() {
        let effects =
            scan("BEGIN PERFORM audit.note(NEW.id); CALL refresh_all(); v := coalesce(a, b); END");
        assert_eq!(
            effects.calls,
            vec![
                name(None, "coalesce"),
                name(None, "refresh_all"),
                name(Some("audit"), "note"),
            ]
        );
    }
}
