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
    /// Hits served from memory (L1, or the disk tier) over lookups (0 to 1).
    pub l1_hit_ratio: f64,
    /// Hits served from Redis (L2) over lookups (0 to 1; 0 without `--redis`).
    pub l2_hit_ratio: f64,
    /// Lookups that went to the database (0 to 1).
    pub miss_ratio: f64,
    /// Processes whose cached clients ran at once (`--processes`; their throughput
    /// and counters are summed, latencies are the first process's).
    pub processes: usize,
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
            l1_hit_ratio: round(cached.cache.hit_ratio() - cached.cache.redis_hit_ratio(), 4),
            l2_hit_ratio: round(cached.cache.redis_hit_ratio(), 4),
            miss_ratio: round(
                if cached.cache.hits + cached.cache.misses == 0 {
                    0.0
                } else {
                    1.0 - cached.cache.hit_ratio()
                },
                4,
            ),
            processes: 1,
            stale_reads: uncached.stale_reads + cached.stale_reads,
            stale_fills_refused: cached.cache.stale_fills_refused,
            invalidations: cached.cache.invalidations,
        }
    }
}

/// A whole number with its thousands grouped by spaces: `1 234 567`.
fn grouped(value: f64) -> String {
    let digits = format!("{value:.0}");
    let (sign, digits) = digits.split_at(usize::from(digits.starts_with('-')));
    let mut out = String::from(sign);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
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

const HEADER: [&str; 12] = [
    "workload",
    "uncached ops/s",
    "cached ops/s",
    "speedup",
    "uncached p50/p99 µs",
    "cached p50/p99 µs",
    "hit ratio",
    "L1 / L2 / miss %",
    "stale reads",
    "stale fills refused",
    "invalidations",
    "dataset",
];

/// The rows as a text table, header first, columns padded to their widest cell.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.to_string(),
                grouped(r.uncached_ops_s),
                grouped(r.cached_ops_s),
                format!("{:.1}×", r.speedup),
                format!(
                    "{} / {}",
                    micros(r.uncached_p50_us),
                    micros(r.uncached_p99_us)
                ),
                format!("{} / {}", micros(r.cached_p50_us), micros(r.cached_p99_us)),
                format!("{:.1} %", r.hit_ratio * 100.0),
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    r.l1_hit_ratio * 100.0,
                    r.l2_hit_ratio * 100.0,
                    r.miss_ratio * 100.0
                ),
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

/// Writes `rows` (the [`Row`]s, then any other workload's object) to `path` as a JSON
/// list of objects.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn write_json(rows: &[serde_json::Value], path: &Path) -> Result<()> {
    let mut text = serde_json::to_string_pretty(rows)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::target::CacheCounters;
    use hdrhistogram::Histogram;

    fn measured(
        ops: u64,
        latencies_ns: &[u64],
        stale_reads: u64,
        cache: CacheCounters,
    ) -> Measured {
        let mut latency_ns = Histogram::new(3).expect("valid precision");
        for &ns in latencies_ns {
            latency_ns.record(ns).expect("in range");
        }
        Measured {
            ops,
            seconds: 2.0,
            latency_ns,
            stale_reads,
            cache,
        }
    }

    #[test]
    fn a_row_compares_the_modes_and_counts_stale_reads_of_both() {
        let uncached = measured(1_000, &[100_000, 200_000], 1, CacheCounters::default());
        let counters = CacheCounters {
            hits: 90,
            redis_hits: 0,
            misses: 10,
            stale_fills_refused: 2,
            invalidations: 7,
        };
        let cached = measured(40_000, &[1_000, 3_000], 0, counters);
        let row = Row::new("point-zipf", "pgbench-s1".into(), 8, &uncached, &cached);
        assert_eq!(row.uncached_ops_s, 500.0);
        assert_eq!(row.cached_ops_s, 20_000.0);
        assert_eq!(row.speedup, 40.0);
        // The histograms keep three significant figures.
        assert!(
            (row.uncached_p50_us - 100.0).abs() <= 0.1,
            "{}",
            row.uncached_p50_us
        );
        assert!(
            (row.cached_p99_us - 3.0).abs() <= 0.01,
            "{}",
            row.cached_p99_us
        );
        assert_eq!(row.hit_ratio, 0.9);
        assert_eq!(row.stale_reads, 1, "a stale read in either mode counts");
        assert_eq!((row.stale_fills_refused, row.invalidations), (2, 7));
        let table = table(&[row]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("workload"), "{table}");
        assert!(lines[1].starts_with("point-zipf"), "{table}");
        assert!(
            lines[1].contains("20 000") && lines[1].contains("40.0×"),
            "{table}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1000.0), "1 000");
        assert_eq!(grouped(1_234_567.0), "1 234 567");
        assert_eq!(grouped(-45_000.0), "-45 000");
    }
}
