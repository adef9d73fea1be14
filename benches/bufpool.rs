//! Buffer-pool figures, each beside its baseline in the same run:
//!
//! 1. `page hits`: pin → read one byte → unpin on uniformly random resident pages, 1 and
//!    2 threads; beside a `Mutex<HashMap<u64, Box<[u8]>>>` page cache and beside
//!    `pread` of the page through the OS page cache. Target: ≥ 10 M hits/s per core
//!    (anchors-performance.md T7).
//! 2. `scan resistance` (printed table): hit ratio of a hot set while a cyclic scan
//!    eight times the pool passes, ours vs a plain LRU of the same size.
//! 3. `write-back`: dirty pages written per second with `flush` (batched, sorted, one
//!    `fdatasync`), beside one `pwrite` + `fdatasync` per page; pages per fsync printed.
//!
//! Run: `flock /work/wt/bench.lock cargo bench --bench bufpool`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use parking_lot::Mutex;
use querycache::bufpool::{BufferPool, PoolConfig};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const PAGE: usize = 8192;
/// 16 Ki pages of 8 KiB: 128 MiB, far beyond the L3 share of a core.
const RESIDENT_PAGES: u64 = 16 << 10;

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bufpool-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir on the target disk")
}

/// A xorshift stream of page ids, different per thread.
struct Ids(u64);

impl Ids {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs `op` `iters` times on each of `threads` threads and returns the wall time.
fn threaded(threads: usize, iters: u64, op: impl Fn(&mut Ids) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (barrier, op) = (&barrier, &op);
            scope.spawn(move || {
                let mut ids = Ids(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                barrier.wait();
                for _ in 0..iters {
                    op(&mut ids);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn page_hits(c: &mut Criterion) {
    let dir = scratch_dir();
    let config = PoolConfig::new(RESIDENT_PAGES)
        .with_page_size(PAGE)
        .with_frames(RESIDENT_PAGES as usize)
        .with_writeback_interval(None);
    let pool = BufferPool::open(&dir.path().join("pages"), config).expect("pool");
    for page in 0..RESIDENT_PAGES {
        pool.fetch_new(page).expect("create")[0] = page as u8;
    }
    pool.flush().expect("flush");
    let map: Mutex<HashMap<u64, Box<[u8]>>> = Mutex::new(
        (0..RESIDENT_PAGES)
            .map(|page| (page, vec![page as u8; PAGE].into_boxed_slice()))
            .collect(),
    );
    let file = File::open(dir.path().join("pages")).expect("page file");
    let mut warm = vec![0; PAGE];
    for page in 0..RESIDENT_PAGES {
        file.read_exact_at(&mut warm, page * PAGE as u64)
            .expect("warm the OS page cache");
    }

    let mut group = c.benchmark_group(format!(
        "page hits, {RESIDENT_PAGES} resident {PAGE} B pages, uniform"
    ));
    for threads in [1, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("bufpool fetch", threads), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |ids| {
                    let page = pool.fetch(ids.next(RESIDENT_PAGES)).expect("hit");
                    black_box(page[0]);
                })
            });
        });
        group.bench_function(BenchmarkId::new("Mutex<HashMap> get", threads), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |ids| {
                    let map = map.lock();
                    black_box(map.get(&ids.next(RESIDENT_PAGES)).map(|p| p[0]));
                })
            });
        });
        group.bench_function(BenchmarkId::new("pread (OS page cache)", threads), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |ids| {
                    let mut buf = [0u8; PAGE];
                    let page = ids.next(RESIDENT_PAGES);
                    file.read_exact_at(&mut buf, page * PAGE as u64)
                        .expect("pread");
                    black_box(buf[0]);
                })
            });
        });
    }
    group.finish();
    let stats = pool.stats();
    assert_eq!(
        stats.misses, RESIDENT_PAGES,
        "every measured fetch was a hit"
    );
}

/// A plain LRU of page ids: the baseline for scan resistance.
struct Lru {
    capacity: usize,
    clock: u64,
    last_use: HashMap<u64, u64>,
    by_age: BTreeMap<u64, u64>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            clock: 0,
            last_use: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Touches `page`; returns whether it was resident.
    fn access(&mut self, page: u64) -> bool {
        self.clock += 1;
        let hit = match self.last_use.insert(page, self.clock) {
            Some(previous) => {
                self.by_age.remove(&previous);
                true
            }
            None => false,
        };
        self.by_age.insert(self.clock, page);
        if self.last_use.len() > self.capacity {
            let (_, oldest) = self.by_age.pop_first().expect("over capacity");
            self.last_use.remove(&oldest);
        }
        hit
    }
}

fn scan_resistance() {
    const FRAMES: usize = 1024;
    const HOT: u64 = 512;
    const SCAN: u64 = 8 * FRAMES as u64;
    const ACCESSES: u64 = 200_000;
    let dir = scratch_dir();
    let config = || {
        PoolConfig::new(HOT + SCAN)
            .with_page_size(4096)
            .with_frames(FRAMES)
            .with_writeback_interval(None)
    };
    let path = dir.path().join("pages");
    let pool = BufferPool::open(&path, config()).expect("pool");
    for page in 0..HOT + SCAN {
        drop(pool.fetch_new(page).expect("create"));
    }
    pool.close().expect("close");

    println!();
    println!(
        "scan resistance: hot set {HOT} pages (uniform), cyclic scan over {SCAN} pages, {FRAMES} frames"
    );
    println!(
        "{:>12} {:>16} {:>16}",
        "scan share", "bufpool hot hit", "LRU hot hit"
    );
    for scan_percent in [25u64, 50, 75, 90] {
        let pool = BufferPool::open(&path, config()).expect("pool");
        let mut lru = Lru::new(FRAMES);
        let mut ids = Ids(42);
        let (mut scan_at, mut hot, mut lru_hits, mut scans) = (0, 0u64, 0u64, 0u64);
        let misses_before = pool.stats().misses;
        for _ in 0..ACCESSES {
            let page = if ids.next(100) < scan_percent {
                scan_at = (scan_at + 1) % SCAN;
                scans += 1;
                HOT + scan_at
            } else {
                hot += 1;
                ids.next(HOT)
            };
            drop(pool.fetch(page).expect("fetch"));
            if lru.access(page) && page < HOT {
                lru_hits += 1;
            }
        }
        // Every scan access misses in both (the scan cycles through 8× the frames), so
        // the pool's hot misses are its misses minus the scan accesses.
        let hot_misses = (pool.stats().misses - misses_before).saturating_sub(scans);
        println!(
            "{:>11}% {:>15.1}% {:>15.1}%",
            scan_percent,
            100.0 * (hot - hot_misses) as f64 / hot as f64,
            100.0 * lru_hits as f64 / hot as f64,
        );
    }
    println!();
}

fn write_back(c: &mut Criterion) {
    const PAGES: u64 = 1024;
    let dir = scratch_dir();
    let config = PoolConfig::new(PAGES)
        .with_page_size(PAGE)
        .with_frames(PAGES as usize)
        .with_writeback_interval(None);
    let pool = BufferPool::open(&dir.path().join("pages"), config).expect("pool");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join("baseline"))
        .expect("baseline file");
    let mut group = c.benchmark_group("write-back of dirty 8 KiB pages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PAGES));
    group.bench_function(format!("bufpool: {PAGES} dirty pages + flush"), |b| {
        b.iter(|| {
            for page in 0..PAGES {
                pool.fetch_new(page).expect("dirty")[0] = page as u8;
            }
            pool.flush().expect("flush");
        });
    });
    const BASELINE: u64 = 32;
    group.throughput(Throughput::Elements(BASELINE));
    group.bench_function(
        format!("baseline: pwrite + fdatasync per page, {BASELINE} pages"),
        |b| {
            let page = vec![7u8; PAGE];
            b.iter(|| {
                for n in 0..BASELINE {
                    file.write_all_at(&page, n * PAGE as u64).expect("pwrite");
                    file.sync_data().expect("fdatasync");
                }
            });
        },
    );
    group.finish();
    let stats = pool.stats();
    println!(
        "\nwrite-back: {} pages in {} flush batches = {:.0} pages per fdatasync ({} pwrite calls)\n",
        stats.flushed_pages,
        stats.flush_batches,
        stats.flushed_pages as f64 / stats.flush_batches.max(1) as f64,
        stats.writes,
    );
}

fn print_box() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!(
        "host: {} cores, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

criterion_group!(benches, page_hits, write_back);

fn main() {
    print_box();
    scan_resistance();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
