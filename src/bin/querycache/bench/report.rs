//! The results: one [`Row`] per workload, printed as a table on stdout and written as
//! JSON with `--json`.

use super::error::{Error, Result};
use super::runner::Measured;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One workload's uncached and cached figures; the JSON object has exactly these fields.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Workload name (`point-zipf`, …).
    pub workload: &'static str,
    /// Dataset label (`pgbench-s10`, `pagila`).
    pub dataset: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Measured seconds per mode.
    pub duration_s: f64,
    /// Plain sqlx throughput, operations per second.
    pub uncached_ops_s: f64,
    /// Throughput through the cache, operations per second.
    pub cached_ops_s: f64,
    /// `cached_ops_s / uncached_ops_s`.
    pub speedup: f64,
    /// Plain sqlx median latency, µs.
    pub uncached_p50_us: f64,
    /// Plain sqlx 99th-percentile latency, µs.
    pub uncached_p99_us: f64,
    /// Median latency through the cache, µs.
    pub cached_p50_us: f64,
    /// 99th-percentile latency through the cache, µs.
    pub cached_p99_us: f64,
    /// Cache hits over cache lookups in the measured window (0 to 1).
    pub hit_ratio: f64,
    /// Stale reads seen by the freshness audit, both modes (must be 0).
    pub stale_reads: u64,
    /// Fills the cache refused because a write raced them, measured window.
    pub stale_fills_refused: u64,
    /// Invalidations (generation bumps) the cache made, measured window.
    pub invalidations: u64,
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

impl Row {
    /// The row for `workload` from its two runs.
    pub fn new(
        workload: &'static str,
        dataset: String,
        clients: usize,
        uncached: &Measured,
        cached: &Measured,
    ) -> Self {
        let speedup = if uncached.ops == 0 {
            0.0
        } else {
            cached.ops_per_s() / uncached.ops_per_s()
        };
        Self {
            workload,
            dataset,
            clients,
            duration_s: cached.seconds,
            uncached_ops_s: round(uncached.ops_per_s(), 1),
            cached_ops_s: round(cached.ops_per_s(), 1),
            speedup: round(speedup, 2),
            uncached_p50_us: round(uncached.latency_us(0.5), 2),
            uncached_p99_us: round(uncached.latency_us(0.99), 2),
            cached_p50_us: round(cached.latency_us(0.5), 2),
            cached_p99_us: round(cached.latency_us(0.99), 2),
            hit_ratio: round(cached.cache.hit_ratio(), 4),
            stale_reads: uncached.stale_reads + cached.stale_reads,
            stale_fills_refused: cached.cache.stale_fills_refused,
            invalidations: cached.cache.invalidations,
        }
    }
}

/// µs with three significant figures at most (the histograms keep three).
fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

const HEADER: [&str; 11] = [
    "workload",
    "uncached ops/s",
    "cached ops/s",
    "speedup",
    "uncached p50/p99 µs",
    "cached p50/p99 µs",
    "hit ratio",
    "stale reads",
    "stale fills refused",
    "invalidations",
    "dataset",
];

/// The rows as a text table, header first, columns padded to their widest cell.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.to_string(),
                format!("{:.0}", r.uncached_ops_s),
                format!("{:.0}", r.cached_ops_s),
                format!("{:.1}×", r.speedup),
                format!(
                    "{} / {}",
                    micros(r.uncached_p50_us),
                    micros(r.uncached_p99_us)
                ),
                format!("{} / {}", micros(r.cached_p50_us), micros(r.cached_p99_us)),
                format!("{:.1} %", r.hit_ratio * 100.0),
                r.stale_reads.to_string(),
                r.stale_fills_refused.to_string(),
                r.invalidations.to_string(),
                r.dataset.clone(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            // Names align left, figures right.
            if i == 0 || i == HEADER.len() - 1 {
                write!(line, "{cell}{pad}  ")
            } else {
                write!(line, "{pad}{cell}  ")
            }
            .expect("writing to a String cannot fail");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Writes `rows` to `path` as a JSON list of objects.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn write_json(rows: &[Row], path: &Path) -> Result<()> {
    let mut text = serde_json::to_string_pretty(rows)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}
