//! Disk-tier hit latency, p50 / p99 / p99.9, for 1 KiB, 16 KiB and 256 KiB results:
//!
//! - `pool-resident`: the record's pages are in the buffer pool;
//! - `pool-miss`: a 2 MiB pool over 32 MiB of records, so most pages are read from the
//!   file (which the OS page cache holds: the file was just written);
//! - baseline in the same run: `pread` of the same number of bytes from a file in the OS
//!   page cache, the floor of any disk-tier read through the kernel.
//!
//! Target: p50 ≤ 50 µs, p99 ≤ 150 µs for 4–16 KiB (anchors-performance.md T6). For
//! reference, measured earlier on this box (not this run): foyer's disk-tier get of a
//! 4 KiB value p50 29.6 µs / p99 55.5 µs buffered (M10).
//!
//! Values are text-like rows (lz4 shrinks them about 3×, as encoded result sets).
//! Run: `flock /work/wt/bench.lock cargo bench --bench disk_tier`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use hdrhistogram::Histogram;
use querycache::tier::disk::DiskStore;
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::Instant;

const SIZES: [usize; 3] = [1 << 10, 16 << 10, 256 << 10];
const DATASET: usize = 32 << 20;

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("disk-tier-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir on the target disk")
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `len` bytes that look like an encoded result set: rows of ids and words.
fn result_bytes(key: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "ACADEMY",
        "DINOSAUR",
        "ACE",
        "GOLDFINGER",
        "ADAPTATION",
        "HOLES",
        "AFFAIR",
        "PREJUDICE",
    ];
    let mut rng = Rng(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(
            format!(
                "{}|{} {}|{}.{:02};",
                r % 100_000,
                WORDS[(r >> 20) as usize % 8],
                WORDS[(r >> 24) as usize % 8],
                r % 10,
                r % 100
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn store(dir: &std::path::Path, pool_bytes: usize, size: usize) -> (DiskStore, u64) {
    let store = DiskStore::builder(256 << 20)
        .with_pool_bytes(pool_bytes)
        .open(dir)
        .expect("open store");
    let entries = (DATASET / size) as u64;
    for key in 0..entries {
        store
            .put(
                u128::from(key),
                &result_bytes(key, size),
                b"public.film:1",
                None,
            )
            .expect("put");
    }
    store.flush().expect("flush");
    (store, entries)
}

fn percentiles(name: &str, size: usize, mut sample: impl FnMut()) {
    let rounds = if size >= 256 << 10 { 2_000 } else { 20_000 };
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..rounds / 10 {
        sample(); // warm-up
    }
    for _ in 0..rounds {
        let start = Instant::now();
        sample();
        histogram
            .record(start.elapsed().as_nanos() as u64)
            .expect("record");
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<34} {:>8} {:>9.1} {:>9.1} {:>9.1}",
        format!("{} KiB", size >> 10),
        us(0.5),
        us(0.99),
        us(0.999)
    );
}

fn latency_table() {
    println!();
    println!(
        "disk-tier hit latency (µs), {} MiB of records per size",
        DATASET >> 20
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9}",
        "case", "value", "p50", "p99", "p99.9"
    );
    for size in SIZES {
        for (case, pool_bytes) in [
            ("disk tier get, pool-resident", 64 << 20),
            ("disk tier get, pool-miss (2 MiB pool)", 2 << 20),
        ] {
            let dir = scratch_dir();
            let (store, entries) = store(dir.path(), pool_bytes, size);
            let mut rng = Rng(7);
            percentiles(case, size, || {
                let key = u128::from(rng.next() % entries);
                let entry = store.get(key).expect("get").expect("hit");
                black_box(entry.value.len());
            });
            let stats = store.stats();
            assert_eq!(stats.misses, 0, "every get was a hit");
        }
        let dir = scratch_dir();
        let path = dir.path().join("baseline");
        std::fs::write(&path, vec![1u8; DATASET]).expect("baseline file");
        let file = File::open(&path).expect("open baseline");
        let mut buf = vec![0u8; size];
        let slots = (DATASET / size) as u64;
        let mut rng = Rng(7);
        percentiles("baseline: pread, OS page cache", size, || {
            let at = (rng.next() % slots) * size as u64;
            file.read_exact_at(&mut buf, at).expect("pread");
            black_box(buf[0]);
        });
    }
    println!();
}

fn disk_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("disk tier get, pool-resident");
    for size in SIZES {
        let dir = scratch_dir();
        let (store, entries) = store(dir.path(), 64 << 20, size);
        let mut rng = Rng(11);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{} KiB", size >> 10)),
            |b| {
                b.iter(|| {
                    let key = u128::from(rng.next() % entries);
                    black_box(store.get(key).expect("get").expect("hit").value.len())
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, disk_get);

fn main() {
    latency_table();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
