//! A reader for plain-format `pg_dump` scripts: splits a script into its entries and
//! each entry into SQL text and `COPY … FROM stdin` blocks, without a SQL lexer.
//!
//! `pg_dump` writes every object behind a comment header of a fixed form (source:
//! PostgreSQL `src/bin/pg_dump/pg_backup_archiver.c`, `_printTocEntry`):
//!
//! ```text
//! --
//! -- Name: film_list; Type: VIEW; Schema: public; Owner: postgres
//! --
//! ```
//!
//! (`-- Data for Name: …` for table data). Splitting at those headers keeps `$$` function
//! bodies, quoted strings and multi-statement entries (an object and its `ALTER … OWNER`)
//! intact, and one entry is exactly the unit that succeeds or fails together. The text
//! before the first header (the preamble: `SET` lines, one statement per line) is split
//! per line so that one unknown setting does not hide the others. `COPY … FROM stdin;`
//! is always written on one line and its data ends at a line holding only `\.`; header
//! lookalikes inside COPY data are data.

use crate::{Error, Result};

/// The header of a dump entry: `-- Name: <name>; Type: <kind>; Schema: <schema>; …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// Object name as printed (`film_list`, `film last_updated`, `VIEW film_list`).
    pub name: &'a str,
    /// Object type (`TABLE`, `VIEW`, `TABLE DATA`, `FK CONSTRAINT`, …).
    pub kind: &'a str,
    /// Schema, `-` for objects outside a schema.
    pub schema: &'a str,
}

impl Header<'_> {
    /// `VIEW public.film_list`, for reports and error context.
    pub fn describe(&self) -> String {
        if self.schema == "-" {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}.{}", self.kind, self.schema, self.name)
        }
    }
}

/// One executable part of an entry, in script order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// SQL text: one or more statements, sent as one simple query (one implicit
    /// transaction, so the entry's statements succeed or fail together).
    Sql(&'a str),
    /// A `COPY … FROM stdin;` statement and its text-format data (without the `\.`
    /// terminator line).
    Copy {
        /// The statement, e.g. `COPY public.actor (actor_id, …) FROM stdin;`.
        statement: &'a str,
        /// The target table as printed: `public.actor`.
        table: &'a str,
        /// Data lines, each ending in `\n`.
        data: &'a str,
    },
}

/// An entry of the script: the preamble (no header) or one dumped object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// `None` for the preamble.
    pub header: Option<Header<'a>>,
    /// Executable parts; comment-only text is dropped.
    pub parts: Vec<Part<'a>>,
}

/// Splits a plain-format `pg_dump` script into entries (see the module docs).
///
/// # Errors
/// [`Error::Corrupt`] when a `COPY … FROM stdin` block has no `\.` terminator.
pub(crate) fn entries(script: &str) -> Result<Vec<Entry<'_>>> {
    let mut entries = vec![Entry {
        header: None,
        parts: Vec::new(),
    }];
    let mut sql_start = 0;
    let mut copy: Option<(&str, &str, usize)> = None; // statement, table, data start
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let text = line.trim_end_matches(['\n', '\r']);
        if let Some((statement, table, data_start)) = copy {
            if text == "\\." {
                let current = entries.last_mut().expect("entries starts non-empty");
                current.parts.push(Part::Copy {
                    statement,
                    table,
                    data: &script[data_start..start],
                });
                copy = None;
                sql_start = offset;
            }
            continue;
        }
        if let Some(header) = parse_header(text) {
            let current = entries.last_mut().expect("entries starts non-empty");
            push_sql(current, &script[sql_start..start]);
            entries.push(Entry {
                header: Some(header),
                parts: Vec::new(),
            });
            sql_start = offset;
        } else if let Some(table) = copy_from_stdin(text) {
            let current = entries.last_mut().expect("entries starts non-empty");
            push_sql(current, &script[sql_start..start]);
            copy = Some((text, table, offset));
        }
    }
    if let Some((statement, ..)) = copy {
        return Err(Error::Corrupt(format!(
            "COPY data has no `\\.` terminator: {statement}"
        )));
    }
    let current = entries.last_mut().expect("entries starts non-empty");
    push_sql(current, &script[sql_start..]);
    // The preamble's statements are independent settings, one per line.
    let preamble = &mut entries[0];
    preamble.parts = preamble
        .parts
        .iter()
        .flat_map(|part| match part {
            Part::Sql(sql) => sql
                .lines()
                .filter(|line| has_sql(line))
                .map(Part::Sql)
                .collect::<Vec<_>>(),
            other => vec![*other],
        })
        .collect();
    Ok(entries)
}

fn push_sql<'a>(entry: &mut Entry<'a>, sql: &'a str) {
    if has_sql(sql) {
        entry.parts.push(Part::Sql(sql));
    }
}

/// `true` when `text` holds something other than blank lines and `--` comments.
fn has_sql(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("--")
    })
}

fn parse_header(line: &str) -> Option<Header<'_>> {
    let rest = line
        .strip_prefix("-- Name: ")
        .or_else(|| line.strip_prefix("-- Data for Name: "))?;
    let (name, rest) = rest.split_once("; Type: ")?;
    let (kind, rest) = rest.split_once("; Schema: ")?;
    let schema = rest.split_once(';').map_or(rest, |(schema, _)| schema);
    Some(Header { name, kind, schema })
}

/// The table of a `COPY <table> (<columns>) FROM stdin;` line.
fn copy_from_stdin(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("COPY ")?;
    line.strip_suffix(" FROM stdin;")?;
    rest.split([' ', '(']).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\nSET a = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\
--\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: postgres\n--\n\n\
CREATE FUNCTION public.f() RETURNS int\n    AS $$ SELECT 1; SELECT 2; $$;\n\nALTER FUNCTION public.f() OWNER TO postgres;\n\n\
--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres\n--\n\n\
ALTER TABLE public.t DISABLE TRIGGER ALL;\n\nCOPY public.t (a, b) FROM stdin;\n1\tx\n-- Name: a; Type: b; Schema: c\n\\.\n\n\nALTER TABLE public.t ENABLE TRIGGER ALL;\n\n\
--\n-- PostgreSQL database dump complete\n--\n";

    #[test]
    fn splits_preamble_per_line_objects_per_header_and_copy_blocks() {
        let entries = entries(SCRIPT).expect("well-formed script");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].header, None);
        assert_eq!(
            entries[0].parts,
            vec![
                Part::Sql("SET a = 0;"),
                Part::Sql("SELECT pg_catalog.set_config('search_path', '', false);")
            ]
        );

        let function = &entries[1];
        assert_eq!(
            function.header.map(|h| h.describe()),
            Some("FUNCTION public.f()".to_owned())
        );
        let [Part::Sql(sql)] = function.parts.as_slice() else {
            panic!("one SQL part expected: {:?}", function.parts);
        };
        assert!(sql.contains("$$ SELECT 1; SELECT 2; $$;"));
        assert!(sql.contains("OWNER TO postgres;"));

        let data = &entries[2];
        assert_eq!(data.header.map(|h| h.kind), Some("TABLE DATA"));
        assert_eq!(data.parts.len(), 3, "{:?}", data.parts);
        assert!(matches!(data.parts[0], Part::Sql(s) if s.contains("DISABLE TRIGGER")));
        assert_eq!(
            data.parts[1],
            Part::Copy {
                statement: "COPY public.t (a, b) FROM stdin;",
                table: "public.t",
                data: "1\tx\n-- Name: a; Type: b; Schema: c\n",
            }
        );
        assert!(matches!(data.parts[2], Part::Sql(s) if s.contains("ENABLE TRIGGER")));
    }

    #[test]
    fn unterminated_copy_is_corrupt() {
        let err = entries("COPY public.t (a) FROM stdin;\n1\n").expect_err("no terminator");
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
    }
}
