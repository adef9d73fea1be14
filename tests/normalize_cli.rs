//! `querycache normalize`, run as a built binary on real input.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn querycache(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_querycache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn querycache");
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("querycache runs")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn json_output_has_exactly_the_documented_fields() {
    let out = querycache(
        &[
            "normalize",
            "--json",
            "select F.title from Film F where F.film_id = 42 -- by id",
            "UPDATE film SET rental_rate = 0.99 WHERE film_id IN (SELECT film_id FROM inventory)",
        ],
        None,
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let read = lines[0].as_object().expect("an object");
    let mut fields: Vec<&str> = read.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "cacheable",
            "canonical",
            "fingerprint",
            "key_read",
            "key_write",
            "kind",
            "literals",
            "reads",
            "reason",
            "shape",
            "writes"
        ]
    );
    assert_eq!(
        read["canonical"],
        "SELECT f.title FROM film AS f WHERE f.film_id = 42"
    );
    assert_eq!(read["kind"], "read");
    assert_eq!(read["reads"], serde_json::json!(["film"]));
    assert_eq!(read["writes"], serde_json::json!([]));
    assert_eq!(read["cacheable"], true);
    assert_eq!(read["reason"], serde_json::Value::Null);
    assert_eq!(read["literals"], serde_json::json!(["42"]));
    for field in ["fingerprint", "shape"] {
        let hex = read[field].as_str().expect("a string");
        assert_eq!(hex.len(), 32, "{field}");
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{field}"
        );
    }
    let write = &lines[1];
    assert_eq!(write["kind"], "write");
    assert_eq!(write["writes"], serde_json::json!(["film"]));
    assert_eq!(write["reads"], serde_json::json!(["inventory"]));
    assert_eq!(write["cacheable"], false);
    assert_eq!(write["reason"], "not a read (write)");
    assert_eq!(
        read["key_read"],
        serde_json::json!({"relation": "film", "columns": ["film_id"], "values": {"film_id": ["42"]}})
    );
    assert_eq!(read["key_write"], serde_json::Value::Null);
    assert_eq!(
        write["key_write"],
        serde_json::Value::Null,
        "IN (SELECT …) pins nothing"
    );
}

#[test]
fn json_output_reports_the_pinned_columns_of_key_writes() {
    let out = querycache(
        &[
            "normalize",
            "--json",
            "UPDATE film SET film_id = $1 WHERE film_id = $2",
            "INSERT INTO actor (actor_id, first_name) VALUES (1, 'a'), ($1, DEFAULT) ON CONFLICT (actor_id) DO NOTHING",
            "DELETE FROM film WHERE title = 'x' OR film_id = 1",
        ],
        None,
    );
    let lines = json_lines(&out);
    assert_eq!(
        lines[0]["key_write"],
        serde_json::json!({"relation": "film", "columns": ["film_id"],
            "values": {"film_id": ["$2"]}, "assigned": ["film_id"]})
    );
    assert_eq!(
        lines[1]["key_write"],
        serde_json::json!({"relation": "actor", "columns": ["actor_id"],
            "values": {"actor_id": ["1", "$1"]}, "on_conflict": "do_nothing"})
    );
    assert_eq!(
        lines[2]["key_write"],
        serde_json::Value::Null,
        "OR pins nothing"
    );
}

#[test]
fn invalid_sql_reports_the_parser_message_and_exits_zero() {
    let out = querycache(&["normalize", "--json", "SELECT * FROM film WHERE"], None);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["cacheable"], false);
    let reason = lines[0]["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("parse error: Expected"), "{reason}");
    assert_eq!(lines[0]["canonical"], "");
}

#[test]
fn stdin_and_files_are_split_into_statements() {
    let script = "BEGIN;\nINSERT INTO actor (first_name) VALUES ('A;B');\n\
                  SELECT * FROM actor WHERE first_name = 'A;B';\nCOMMIT;\n";
    let lines = json_lines(&querycache(&["normalize", "--json"], Some(script)));
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["transaction", "write", "read", "transaction"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).expect("write script");
    let from_file = json_lines(&querycache(
        &[
            "normalize",
            "--json",
            "--file",
            path.to_str().expect("utf-8 path"),
        ],
        None,
    ));
    assert_eq!(from_file, lines);
}

#[test]
fn pagila_schema_normalizes_statement_by_statement() {
    let path = pagila_schema();
    let path = path.to_str().expect("a UTF-8 path");
    let lines = json_lines(&querycache(&["normalize", "--json", "--file", path], None));
    assert!(lines.len() > 200, "{} statements", lines.len());
    let view = lines
        .iter()
        .find(|l| l["writes"] == serde_json::json!(["legacy.rental"]) && l["kind"] == "ddl")
        .expect("CREATE VIEW legacy.rental");
    assert_eq!(view["reads"], serde_json::json!(["public.rental"]));
}

#[test]
fn readable_output_and_unreadable_input() {
    let out = querycache(&["normalize", "SELECT * FROM film FOR UPDATE"], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("canonical:   SELECT * FROM film FOR UPDATE"),
        "{text}"
    );
    assert!(text.contains("cacheable:   no: row lock"), "{text}");

    let missing = querycache(
        &["normalize", "--file", "/nonexistent/querycache.sql"],
        None,
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// `pagila-schema.sql`, found by `common::pagila_dir` (`QUERYCACHE_PAGILA_DIR`, else
/// `../shared/datasets/pagila` beside the checkout or two levels up).
fn pagila_schema() -> std::path::PathBuf {
    common::pagila_dir()
        .expect("pagila-schema.sql (set QUERYCACHE_PAGILA_DIR)")
        .join(querycache::datasets::pagila::SCHEMA_FILE)
}
