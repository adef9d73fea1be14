//! Runs one workload in one mode: `clients` tokio tasks loop over operations for the
//! warm-up and then the measured window; each task records per-operation latency into
//! its own histogram (no shared state on the hot path) and the histograms are merged at
//! the end.

use super::error::{Error, Result};
use super::progress::Stage;
use super::target::{CacheCounters, Target};
use super::workloads::{Client, Plan};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Highest latency the histograms track: 60 s, in ns (longer operations saturate).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// How long and how wide a run is.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Operations before the measured window (not counted, except stale reads).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Seed of the clients' random streams (client `i` uses `seed ^ f(i)`).
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    /// Operations started inside the measured window.
    pub ops: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Per-operation latency, ns.
    pub latency_ns: Histogram<u64>,
    /// Audited reads that returned a value below a write that had already returned
    /// (warm-up included: a stale read is never excused).
    pub stale_reads: u64,
    /// Cache counters accumulated over the measured window.
    pub cache: CacheCounters,
}

impl Measured {
    /// Figures known only as counts (another process's run): no latencies.
    pub fn counted(ops: u64, stale_reads: u64, cache: CacheCounters) -> Self {
        Measured {
            ops,
            seconds: 0.0,
            latency_ns: histogram(),
            stale_reads,
            cache,
        }
    }

    /// Add another process's run of the same window: its operations, stale reads and
    /// counters (latencies stay this run's).
    pub fn add(&mut self, other: &Measured) {
        self.ops += other.ops;
        self.stale_reads += other.stale_reads;
        self.cache = self.cache.plus(other.cache);
    }

    /// Throughput, operations per second.
    pub fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Adds a later window of the same workload and mode (the bench interleaves modes
    /// in several windows): operations, seconds, latencies, stale reads and counters
    /// add up.
    ///
    /// # Errors
    /// When the latency histograms cannot be merged.
    pub fn absorb(&mut self, other: Measured) -> Result<()> {
        self.ops += other.ops;
        self.seconds += other.seconds;
        self.stale_reads += other.stale_reads;
        self.cache = self.cache.plus(other.cache);
        self.latency_ns
            .add(&other.latency_ns)
            .map_err(|e| Error::Usage(format!("merging latency histograms: {e}")))
    }

    /// An empty window: nothing measured yet.
    pub fn empty() -> Self {
        Measured {
            ops: 0,
            seconds: 0.0,
            latency_ns: histogram(),
            stale_reads: 0,
            cache: CacheCounters::default(),
        }
    }

    /// Latency at `quantile` (0.5 = median), µs.
    pub fn latency_us(&self, quantile: f64) -> f64 {
        self.latency_ns.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// One client's counts.
struct Tally {
    ops: u64,
    stale_reads: u64,
    latency_ns: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Runs `plan` against `target` for `timing`, showing elapsed seconds on `stage`.
///
/// # Errors
/// The first error a client hits (the other clients are cancelled).
pub async fn run<T: Target>(
    target: &T,
    plan: Arc<Plan>,
    timing: Timing,
    stage: &Stage,
) -> Result<Measured> {
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.measure;
    let mut clients = JoinSet::new();
    for id in 0..timing.clients {
        let client = Client::new(timing.seed, id as u64);
        clients.spawn(client_loop(
            client,
            target.clone(),
            Arc::clone(&plan),
            measure_from,
            end,
        ));
    }
    let mut before = (timing.warmup.is_zero()).then(|| target.counters());
    let mut tallies = Vec::with_capacity(timing.clients);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = clients.join_next() => match joined {
                Some(tally) => tallies.push(tally??),
                None => break,
            },
            () = tokio::time::sleep_until(measure_from.into()), if before.is_none() => {
                before = Some(target.counters());
            }
            _ = tick.tick() => stage.set_position(start.elapsed().as_secs()),
        }
    }
    let cache = target.counters().since(before.unwrap_or_default());
    let mut measured = Measured {
        ops: 0,
        seconds: timing.measure.as_secs_f64(),
        latency_ns: histogram(),
        stale_reads: 0,
        cache,
    };
    for tally in tallies {
        measured.ops += tally.ops;
        measured.stale_reads += tally.stale_reads;
        measured
            .latency_ns
            .add(&tally.latency_ns)
            .map_err(|e| Error::Usage(format!("merging latency histograms: {e}")))?;
    }
    Ok(measured)
}

async fn client_loop<T: Target>(
    mut client: Client,
    target: T,
    plan: Arc<Plan>,
    measure_from: Instant,
    end: Instant,
) -> Result<Tally> {
    let mut tally = Tally {
        ops: 0,
        stale_reads: 0,
        latency_ns: histogram(),
    };
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok(tally);
        }
        let stale = client.op(&plan, &target).await?;
        if started >= measure_from {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            tally.latency_ns.saturating_record(ns.max(1));
            tally.ops += 1;
        }
        tally.stale_reads += u64::from(stale);
        // A cache hit completes without ever returning Pending; give other clients (and
        // the timer) their turn once tokio's cooperative budget is spent.
        tokio::task::consume_budget().await;
    }
}
