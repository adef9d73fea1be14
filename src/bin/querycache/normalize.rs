//! `querycache normalize`: print the normalizer's analysis of statement texts.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use querycache::sql::{
    Analysis, AnalyzeOptions, DEFAULT_MAX_LEN, StatementMemo, fingerprint_hex, split_statements,
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
