//! `querycache bench` end to end: the built binary against real Postgres, small scale,
//! short runs. The freshness audit must report no stale read through the real cache, and
//! must catch them when the cache is built with invalidation disabled — otherwise a
//! zero would prove nothing.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// The fields `--json` promises, per workload object (issue 4).
const FIELDS: [&str; 19] = [
    "workload",
    "dataset",
    "clients",
    "duration_s",
    "uncached_ops_s",
    "cached_ops_s",
    "speedup",
    "uncached_p50_us",
    "uncached_p99_us",
    "cached_p50_us",
    "cached_p99_us",
    "hit_ratio",
    "l1_hit_ratio",
    "l2_hit_ratio",
    "miss_ratio",
    "processes",
    "stale_reads",
    "stale_fills_refused",
    "invalidations",
];

/// Exit status of `querycache bench` when the audit saw a stale read (documented).
const EXIT_STALE_READS: i32 = 3;

/// Runs the binary with `args` plus `--json json`; returns its status and the JSON rows.
fn bench(database_url: &str, json: &Path, args: &[&str]) -> (ExitStatus, Vec<Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_querycache"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(json)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run querycache bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    let text = std::fs::read_to_string(json).unwrap_or_else(|e| panic!("read {json:?}: {e}"));
    let rows: Vec<Value> = serde_json::from_str(&text).expect("--json writes a JSON list");
    (output.status, rows)
}

fn field<'a>(row: &'a Value, name: &str) -> &'a Value {
    row.get(name)
        .unwrap_or_else(|| panic!("field {name} missing in {row}"))
}

#[test]
fn the_audit_finds_stale_reads_only_when_invalidation_is_disabled() {
    let Some(url) = common::database_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let short = [
        "--dataset",
        "pgbench",
        "--scale",
        "1",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--clients",
        "4",
        "--workloads",
        "read-mostly,write-heavy",
    ];

    let (status, rows) = bench(&url, &dir.path().join("fresh.json"), &short);
    assert!(
        status.success(),
        "a run through the real cache passes: {status}"
    );
    let names: Vec<&Value> = rows.iter().map(|row| field(row, "workload")).collect();
    assert_eq!(names, ["read-mostly", "write-heavy"]);
    for row in &rows {
        let mut keys: Vec<&str> = row
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "exactly the documented fields");
        assert_eq!(
            field(row, "stale_reads"),
            0,
            "no stale read through the cache: {row}"
        );
        assert_eq!(field(row, "dataset"), "pgbench-s1");
        // write-heavy's reads are invalidated before they are hit, so adaptive
        // admission may stop filling them and its hit ratio may be 0.
        if field(row, "workload") == "read-mostly" {
            assert!(
                field(row, "hit_ratio").as_f64().expect("a number") > 0.0,
                "reads went through the cache: {row}"
            );
        }
        assert!(
            field(row, "invalidations").as_u64().expect("a count") > 0,
            "writes invalidated: {row}"
        );
        assert!(field(row, "uncached_ops_s").as_f64().expect("a number") > 0.0);
    }

    let mut unsafe_args = short.to_vec();
    unsafe_args.push("--unsafe-disable-invalidation");
    let (status, rows) = bench(&url, &dir.path().join("stale.json"), &unsafe_args);
    assert_eq!(
        status.code(),
        Some(EXIT_STALE_READS),
        "stale reads fail the run"
    );
    for row in &rows {
        assert!(
            field(row, "stale_reads").as_u64().expect("a count") > 0,
            "without invalidation the audit must see stale reads: {row}"
        );
    }
}

#[test]
fn every_pagila_workload_runs_through_the_cache_without_a_stale_read() {
    let Some(url) = common::database_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--dataset",
        "pagila",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--clients",
        "2",
    ];
    let (status, rows) = bench(&url, &dir.path().join("pagila.json"), &args);
    assert!(status.success(), "{status}");
    let names: Vec<&Value> = rows.iter().map(|row| field(row, "workload")).collect();
    assert_eq!(
        names,
        ["point-zipf", "read-mostly", "reporting", "write-heavy"]
    );
    for row in &rows {
        assert_eq!(field(row, "dataset"), "pagila");
        assert_eq!(field(row, "stale_reads"), 0, "{row}");
        assert!(
            field(row, "cached_ops_s").as_f64().expect("a number") > 0.0,
            "{row}"
        );
    }
    let reporting = &rows[2];
    assert!(
        field(reporting, "hit_ratio").as_f64().expect("a number") > 0.5,
        "read-only reports repeat, so most are hits: {reporting}"
    );
}

#[test]
fn two_processes_share_redis_and_the_audit_spans_them() {
    let Some(url) = common::database_url() else {
        return;
    };
    let Some(redis) = common::redis_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(pagila) = common::pagila_dir() else {
        return;
    };
    let pagila = pagila.display().to_string();
    let args = [
        "--dataset",
        "pagila",
        "--data-dir",
        &pagila,
        "--duration",
        "3",
        "--warmup",
        "1",
        "--clients",
        "4",
        "--workloads",
        "read-mostly",
        "--redis",
        &redis,
        "--processes",
        "2",
    ];
    let (status, rows) = bench(&url, &dir.path().join("procs.json"), &args);
    assert!(status.success(), "two processes, no stale read: {status}");
    let row = &rows[0];
    assert_eq!(field(row, "processes"), 2);
    assert_eq!(field(row, "stale_reads"), 0, "{row}");
    assert!(
        field(row, "hit_ratio").as_f64().expect("a number") > 0.0,
        "{row}"
    );

    // Without the cross-process check each process trusts its own memory: the shared
    // audit must see the other process's writes missing.
    let mut unsafe_args = args.to_vec();
    unsafe_args.push("--unsafe-skip-cross-process-check");
    let (status, rows) = bench(&url, &dir.path().join("procs-stale.json"), &unsafe_args);
    assert_eq!(status.code(), Some(EXIT_STALE_READS), "{rows:?}");
    assert!(field(&rows[0], "stale_reads").as_u64().expect("a count") > 0);
}
