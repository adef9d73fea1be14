//! `querycache normalize`: print the normalizer's analysis of statement texts.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use querycache::sql::{
    Analysis, AnalyzeOptions, DEFAULT_MAX_LEN, KeyWriteKind, Pin, PinnedValue, RelationName,
    StatementMemo, fingerprint_hex, split_statements,
};

/// Arguments of `querycache normalize`.
#[derive(Debug, clap::Args)]
pub struct NormalizeArgs {
    /// Statement texts, one statement each. Without any (and without --file), read
    /// statements from stdin, split at top-level `;`.
    sql: Vec<String>,
    /// Read statements from this file, split at top-level `;`.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Print one JSON object per statement, one per line.
    #[arg(long)]
    json: bool,
    /// Longest statement parsed, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    max_len: usize,
}

/// One statement's analysis as the JSON line the CLI prints.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    canonical: &'a str,
    fingerprint: String,
    shape: String,
    kind: &'static str,
    reads: Vec<String>,
    writes: Vec<String>,
    cacheable: bool,
    reason: Option<String>,
    literals: &'a [String],
    key_read: Option<KeyJson>,
    key_write: Option<KeyJson>,
}

/// A key-access form as the CLI reports it. Without a database the CLI cannot tell
/// which columns form a primary key or unique index, so `columns` are the columns the
/// statement pins (a read's or an UPDATE/DELETE's WHERE conjuncts `col = value` /
/// `col IN (…)`; an INSERT's columns that every VALUES row gives a literal or bind);
/// the cache decides with the catalog whether they cover a key. `null` when the
/// statement has no key-access form or pins no column (table level).
#[derive(serde::Serialize)]
struct KeyJson {
    /// The relation as named.
    relation: String,
    /// The pinned columns, sorted.
    columns: Vec<String>,
    /// Per pinned column, its values: literal text, `$n` for binds, `::type` casts.
    /// (INSERT: one value per row.)
    values: std::collections::BTreeMap<String, Vec<String>>,
    /// UPDATE: the assigned columns (a key among them moves the row); INSERT … ON
    /// CONFLICT DO UPDATE: the updated columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    assigned: Option<Vec<String>>,
    /// INSERT: `do_nothing` or `do_update` when it has an ON CONFLICT clause.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_conflict: Option<&'static str>,
}

fn value_text(a: &Analysis, value: &PinnedValue) -> String {
    let (base, cast) = match value {
        PinnedValue::Literal {
            index,
            negated,
            cast,
        } => {
            let literal = a.literals.get(*index).map_or("?", String::as_str);
            let sign = if *negated { "-" } else { "" };
            (format!("{sign}{literal}"), cast)
        }
        PinnedValue::Bind { number, cast } => (format!("${number}"), cast),
    };
    match cast {
        Some(cast) => format!("{base}::{cast}"),
        None => base,
    }
}

fn pins_json(a: &Analysis, relation: &RelationName, pins: &[Pin]) -> Option<KeyJson> {
    if pins.is_empty() {
        return None;
    }
    Some(KeyJson {
        relation: relation.to_string(),
        columns: pins.iter().map(|p| p.column.to_string()).collect(),
        values: pins
            .iter()
            .map(|p| {
                let values = p.values.iter().map(|v| value_text(a, v)).collect();
                (p.column.to_string(), values)
            })
            .collect(),
        assigned: None,
        on_conflict: None,
    })
}

fn key_read_json(a: &Analysis) -> Option<KeyJson> {
    let read = a.key_read.as_ref()?;
    pins_json(a, &read.relation, &read.pins)
}

fn key_write_json(a: &Analysis) -> Option<KeyJson> {
    let write = a.key_write.as_ref()?;
    match &write.kind {
        KeyWriteKind::Update { assigned } => {
            let mut out = pins_json(a, &write.relation, &write.pins)?;
            out.assigned = Some(assigned.iter().map(ToString::to_string).collect());
            Some(out)
        }
        KeyWriteKind::Insert {
            columns,
            rows,
            on_conflict,
        } => {
            let pinned = write.pinned_columns();
            let mut values = std::collections::BTreeMap::new();
            for (i, column) in columns.iter().enumerate() {
                if !pinned.contains(&&**column) {
                    continue;
                }
                let given = rows
                    .iter()
                    .filter_map(|row| row.get(i)?.as_ref().map(|v| value_text(a, v)))
                    .collect();
                values.insert(column.to_string(), given);
            }
            if values.is_empty() {
                return None;
            }
            Some(KeyJson {
                relation: write.relation.to_string(),
                columns: values.keys().cloned().collect(),
                values,
                assigned: on_conflict
                    .as_ref()
                    .and_then(|c| c.updates.as_ref())
                    .map(|u| u.iter().map(ToString::to_string).collect()),
                on_conflict: on_conflict.as_ref().map(|c| match c.updates {
                    Some(_) => "do_update",
                    None => "do_nothing",
                }),
            })
        }
        _ => pins_json(a, &write.relation, &write.pins),
    }
}

fn sorted_names(list: &[querycache::sql::RelationName]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(ToString::to_string).collect();
    names.sort();
    names
}

fn json_line(a: &Analysis) -> String {
    let line = JsonLine {
        canonical: &a.canonical,
        fingerprint: fingerprint_hex(a.fingerprint),
        shape: fingerprint_hex(a.shape),
        kind: a.kind.as_str(),
        reads: sorted_names(&a.reads),
        writes: sorted_names(&a.writes),
        cacheable: a.is_cacheable(),
        reason: a.reason().map(ToString::to_string),
        literals: &a.literals,
        key_read: key_read_json(a),
        key_write: key_write_json(a),
    };
    serde_json::to_string(&line).expect("a struct of strings and bools serializes")
}

fn readable(sql: &str, a: &Analysis) -> String {
    let list = |names: Vec<String>| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut out = String::new();
    out.push_str(&format!("sql:         {}\n", sql.trim()));
    out.push_str(&format!("canonical:   {}\n", a.canonical));
    out.push_str(&format!("kind:        {}\n", a.kind.as_str()));
    out.push_str(&format!("reads:       {}\n", list(sorted_names(&a.reads))));
    let unknown = if a.writes_unknown { " (+ unknown)" } else { "" };
    out.push_str(&format!(
        "writes:      {}{unknown}\n",
        list(sorted_names(&a.writes))
    ));
    if !a.functions.is_empty() {
        out.push_str(&format!("functions:   {}\n", a.functions.join(", ")));
    }
    match a.reason() {
        None => out.push_str("cacheable:   yes\n"),
        Some(reason) => out.push_str(&format!("cacheable:   no: {reason}\n")),
    }
    out.push_str(&format!(
        "fingerprint: {}\n",
        fingerprint_hex(a.fingerprint)
    ));
    out.push_str(&format!("shape:       {}\n", fingerprint_hex(a.shape)));
    if !a.literals.is_empty() {
        out.push_str(&format!("literals:    {}\n", a.literals.join(", ")));
    }
    for (label, key) in [
        ("key read", key_read_json(a)),
        ("key write", key_write_json(a)),
    ] {
        if let Some(key) = key {
            let pins: Vec<String> = key
                .values
                .iter()
                .map(|(column, values)| format!("{column} = {}", values.join(" | ")))
                .collect();
            out.push_str(&format!(
                "{label}:{:w$}{} ({})\n",
                "",
                key.relation,
                pins.join(", "),
                w = 13 - label.len() - 1
            ));
        }
    }
    out
}

/// Run `querycache normalize`. Exit code 0 unless the input could not be read.
pub fn run(args: NormalizeArgs) -> ExitCode {
    let text = match (&args.file, args.sql.is_empty()) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("querycache normalize: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, true) => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("querycache normalize: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
            Some(text)
        }
        (None, false) => None,
    };
    let statements: Vec<&str> = match &text {
        Some(text) => split_statements(text),
        None => args.sql.iter().map(String::as_str).collect(),
    };
    let options = AnalyzeOptions {
        max_len: args.max_len,
        ..AnalyzeOptions::default()
    };
    let memo = StatementMemo::new(statements.len(), options);
    let mut stdout = std::io::stdout().lock();
    for (i, sql) in statements.iter().enumerate() {
        let analysis = memo.analyze(sql);
        let out = if args.json {
            json_line(&analysis) + "\n"
        } else {
            let gap = if i > 0 { "\n" } else { "" };
            format!("{gap}{}", readable(sql, &analysis))
        };
        if stdout.write_all(out.as_bytes()).is_err() {
            // A closed pipe (`| head`): stop quietly.
            break;
        }
    }
    ExitCode::SUCCESS
}
