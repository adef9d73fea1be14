//! The memory tier beside its peers: hit ratio on a Zipf(0.9) trace with a scan mixed
//! in, and get latency at 1 and 2 threads.
//!
//! Peers: `quick_cache::sync::Cache` used directly (the library our tier wraps:
//! S3-FIFO-class), and `moka::sync::Cache` (W-TinyLFU). All three get the same byte
//! budget and the same weight per entry (1 KiB), and on a miss insert the key.
//!
//! ```sh
//! flock /work/wt/bench.lock cargo bench --bench memory_tier -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use querycache::freshness::generations::Generations;
use querycache::key::CacheKey;
use querycache::tier::Lookup;
use querycache::tier::memory::{Entry, ErasedEntry, MemoryTier};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct keys in the Zipf part of the trace.
const KEYS: u64 = 100_000;
/// Zipf exponent (DESIGN: the benchmark's read skew).
const SKEW: f64 = 0.9;
/// Accesses before, and after, the scan.
const ACCESSES: usize = 1_000_000;
/// One-time keys read by the scan in the middle of the trace.
const SCAN: u64 = 200_000;
/// Weight charged per entry, bytes.
const WEIGHT: u64 = 1024;
/// Budget: 10 % of the Zipf key space.
const CAPACITY: u64 = KEYS * WEIGHT / 10;

type Value = Arc<[String]>;

fn key(rank: u64) -> CacheKey {
    CacheKey(xxhash_rust::xxh3::xxh3_128(&rank.to_le_bytes()))
}

fn zipf_keys(n: usize, seed: u64) -> Vec<CacheKey> {
    let zipf = Zipf::new(KEYS as f64, SKEW).expect("valid Zipf parameters");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| key(zipf.sample(&mut rng) as u64)).collect()
}

/// The caches under test, behind one interface: get, and insert on a miss.
trait Candidate: Send + Sync {
    fn name(&self) -> &'static str;
    fn get(&self, key: &CacheKey) -> bool;
    fn insert(&self, key: CacheKey);
}

struct Ours {
    tier: MemoryTier,
    value: Value,
    stamp: querycache::freshness::generations::Stamp,
    expires_at: Instant,
    /// The read path reads the clock once per lookup and passes it in; the comparison
    /// here is of the tiers, so the clock read (≈ 25 ns on this VM) is left out.
    now: Instant,
}

impl Ours {
    fn new() -> Self {
        let g = Generations::new();
        Ours {
            tier: MemoryTier::new(CAPACITY, (CAPACITY / WEIGHT) as usize),
            value: vec!["x".repeat(900)].into(),
            stamp: g.stamp(&g.relation_set([])),
            expires_at: Instant::now() + Duration::from_secs(3600),
            now: Instant::now(),
        }
    }
}

impl Candidate for Ours {
    fn name(&self) -> &'static str {
        "querycache L1"
    }
    fn get(&self, key: &CacheKey) -> bool {
        matches!(self.tier.get(key, self.now), Lookup::Hit(_))
    }
    fn insert(&self, key: CacheKey) {
        let entry: Arc<ErasedEntry> = Arc::new(Entry {
            stamp: self.stamp,
            plan: 0,
            expires_at: self.expires_at,
            weight: WEIGHT,
            key_bucket: None,
            was_hit: Default::default(),
            value: Arc::clone(&self.value),
        });
        self.tier.insert(key, entry);
    }
}

#[derive(Clone)]
struct FixedWeight;

impl quick_cache::Weighter<CacheKey, Value> for FixedWeight {
    fn weight(&self, _key: &CacheKey, _value: &Value) -> u64 {
        WEIGHT
    }
}

struct QuickCache {
    cache: quick_cache::sync::Cache<CacheKey, Value, FixedWeight>,
    value: Value,
}

impl Candidate for QuickCache {
    fn name(&self) -> &'static str {
        "quick_cache 0.7 direct"
    }
    fn get(&self, key: &CacheKey) -> bool {
        self.cache.get(key).is_some()
    }
    fn insert(&self, key: CacheKey) {
        self.cache.insert(key, Arc::clone(&self.value));
    }
}

struct Moka {
    cache: moka::sync::Cache<CacheKey, Value>,
    value: Value,
}

impl Candidate for Moka {
    fn name(&self) -> &'static str {
        "moka 0.12 (W-TinyLFU)"
    }
    fn get(&self, key: &CacheKey) -> bool {
        self.cache.get(key).is_some()
    }
    fn insert(&self, key: CacheKey) {
        self.cache.insert(key, Arc::clone(&self.value));
    }
}

fn candidates() -> Vec<Box<dyn Candidate>> {
    let value: Value = vec!["x".repeat(900)].into();
    vec![
        Box::new(Ours::new()),
        Box::new(QuickCache {
            cache: quick_cache::sync::Cache::with_weighter(
                (CAPACITY / WEIGHT) as usize,
                CAPACITY,
                FixedWeight,
            ),
            value: Arc::clone(&value),
        }),
        Box::new(Moka {
            cache: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .weigher(|_k, _v| WEIGHT as u32)
                .build(),
            value,
        }),
    ]
}

/// Replay the trace: Zipf, then the scan, then Zipf again. Returns the hit ratios of
/// the first Zipf part, the scan-free whole, and the Zipf part after the scan.
fn hit_ratios(cache: &dyn Candidate, before: &[CacheKey], after: &[CacheKey]) -> [f64; 3] {
    let replay = |keys: &mut dyn Iterator<Item = CacheKey>| {
        let (mut hits, mut n) = (0u64, 0u64);
        for k in keys {
            n += 1;
            if cache.get(&k) {
                hits += 1;
            } else {
                cache.insert(k);
            }
        }
        hits as f64 / n as f64
    };
    let first = replay(&mut before.iter().copied());
    replay(&mut (KEYS + 1..=KEYS + SCAN).map(key));
    let second = replay(&mut after.iter().copied());
    [first, (first + second) / 2.0, second]
}

fn print_hit_ratios() {
    let before = zipf_keys(ACCESSES, 1);
    let after = zipf_keys(ACCESSES, 2);
    println!();
    println!(
        "hit ratio: Zipf(s={SKEW}) over {KEYS} keys, {ACCESSES} accesses, a scan of {SCAN} \
         one-time keys, {ACCESSES} more accesses; budget {} KiB = 10% of the keys at {WEIGHT} B each",
        CAPACITY / 1024
    );
    println!(
        "{:<26} {:>12} {:>12} {:>12}",
        "cache", "before scan", "after scan", "zipf mean"
    );
    for cache in candidates() {
        let [first, mean, second] = hit_ratios(cache.as_ref(), &before, &after);
        println!(
            "{:<26} {:>11.2}% {:>11.2}% {:>11.2}%",
            cache.name(),
            first * 100.0,
            second * 100.0,
            mean * 100.0
        );
    }
    println!();
}

fn get_latency(c: &mut Criterion) {
    print_hit_ratios();
    // Warm each cache with the hot keys it will be asked for, then time hits.
    let keys = zipf_keys(1 << 16, 3);
    let mut group = c.benchmark_group(format!("get zipf n={KEYS} s={SKEW}"));
    for cache in candidates() {
        let cache: Arc<dyn Candidate> = Arc::from(cache);
        for k in &keys {
            if !cache.get(k) {
                cache.insert(*k);
            }
        }
        for threads in [1usize, 2] {
            let id = BenchmarkId::new(cache.name(), format!("{threads} thread(s)"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (cache, keys) = (&cache, &keys);
                            s.spawn(move || {
                                let mut i = t * 7919;
                                for _ in 0..iters {
                                    i = (i + 1) & (keys.len() - 1);
                                    black_box(cache.get(&keys[i]));
                                }
                            });
                        }
                    });
                    start.elapsed()
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = get_latency
}
criterion_main!(benches);
