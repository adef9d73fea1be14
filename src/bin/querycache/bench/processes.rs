//! `--processes N`: the cached side of a workload in N OS processes at once — this one
//! and N − 1 children of the same binary (`bench --worker-floors FILE …`), sharing one
//! Redis prefix, one database and one file of audit floors, so the freshness audit
//! covers reads in one process of writes that returned in another.

use super::Args;
use super::error::{Error, Result};
use super::runner::Measured;
use super::target::CacheCounters;
use super::workloads::Workload;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What a child reports: one JSON line on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    ops: u64,
    stale_reads: u64,
    cache: CacheCounters,
}

/// The child's report line for `measured`.
///
/// # Errors
/// When it cannot be serialized (never, for these types).
pub fn report(measured: &Measured) -> Result<String> {
    Ok(serde_json::to_string(&ChildReport {
        ops: measured.ops,
        stale_reads: measured.stale_reads,
        cache: measured.cache,
    })?)
}

/// A fresh floors file for one workload's run.
pub fn floors_path(workload: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "querycache-bench-floors-{}-{workload}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Start `args.processes − 1` children running the cached side of `workload`.
///
/// # Errors
/// [`Error::Usage`] when a child cannot be started.
pub fn spawn(args: &Args, workload: Workload, floors: &Path) -> Result<Vec<tokio::process::Child>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("finding this binary to start children: {e}")))?;
    (1..args.processes)
        .map(|i| {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("bench")
                .arg("--database-url")
                .arg(&args.database_url)
                .arg("--dataset")
                .arg(args.dataset.name())
                .arg("--scale")
                .arg(args.scale.to_string())
                .arg("--duration")
                .arg(args.duration.to_string())
                .arg("--warmup")
                .arg(args.warmup.to_string())
                .arg("--clients")
                .arg(args.clients.to_string())
                .arg("--cache-memory")
                .arg(args.cache_memory.to_string())
                .arg("--seed")
                .arg(args.seed.wrapping_add(u64::from(i) * 7919).to_string())
                .arg("--workloads")
                .arg(workload.name())
                .arg("--invalidation")
                .arg(match args.invalidation {
                    super::Invalidation::Row => "row",
                    super::Invalidation::Table => "table",
                })
                .arg("--worker-floors")
                .arg(floors);
            if args.no_admission {
                cmd.arg("--no-admission");
            }
            if args.unsafe_skip_cross_process_check {
                cmd.arg("--unsafe-skip-cross-process-check");
            }
            if let Some(dir) = &args.data_dir {
                cmd.arg("--data-dir").arg(dir);
            }
            if let Some(url) = &args.redis {
                cmd.arg("--redis").arg(url);
            }
            if let Some(ms) = args.bounded_ms {
                cmd.arg("--bounded-ms").arg(ms.to_string());
            }
            if let Some(prefix) = &args.redis_prefix {
                cmd.arg("--redis-prefix").arg(prefix);
            }
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| Error::Usage(format!("starting child process {i}: {e}")))
        })
        .collect()
}

/// Wait for the children and take their figures (ops, stale reads, counters).
///
/// # Errors
/// [`Error::Usage`] when a child failed or reported nothing readable (its stderr is
/// part of the message).
pub async fn collect(children: Vec<tokio::process::Child>) -> Result<Vec<Measured>> {
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| Error::Usage(format!("waiting for a child process: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<ChildReport>(line).ok());
        let (true, Some(report)) = (output.status.success(), report) else {
            return Err(Error::Usage(format!(
                "a child process failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        };
        out.push(Measured::counted(
            report.ops,
            report.stale_reads,
            report.cache,
        ));
    }
    Ok(out)
}
