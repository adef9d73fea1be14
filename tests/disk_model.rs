//! Random operation sequences {put, get, remove, flush, evict, crash, reopen} against
//! a model, with `validate()` after every step (quick-cache's `validate` + redb's
//! `BTreeMap` model).
//!
//! The model keeps, per key, the set of states the store may be in: exactly one while
//! the process lives; after a crash, any state the key had since the last flush
//! (write-back may or may not have reached the file). A get must return one of them,
//! byte-exact, and then the key's state is known again. When the store reclaims a
//! segment (FIFO, it is full), absence becomes possible for every key.

mod disk_support;

use disk_support::verify;
use proptest::prelude::*;
use querycache::tier::disk::DiskStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Clone, Debug)]
enum Op {
    Put { key: u8, size: usize },
    Get { key: u8 },
    Remove { key: u8 },
    Flush,
    Evict,
    Crash,
    Reopen,
}

/// Value sizes: tiny, sub-page, one page, spanning three pages, compressible.
const SIZES: [(usize, bool); 5] = [
    (30, false),
    (500, false),
    (3000, false),
    (9000, false),
    (20_000, true),
];

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..12;
    prop_oneof![
        6 => (key.clone(), 0..SIZES.len()).prop_map(|(key, size)| Op::Put { key, size }),
        6 => key.clone().prop_map(|key| Op::Get { key }),
        2 => key.prop_map(|key| Op::Remove { key }),
        1 => Just(Op::Flush),
        1 => Just(Op::Evict),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

/// `None`: absent; `Some(v)`: the value of version `v`.
type State = Option<u32>;

struct Model {
    current: BTreeMap<u128, BTreeSet<State>>,
    since_flush: BTreeMap<u128, BTreeSet<State>>,
    next_version: u32,
}

impl Model {
    fn possible(map: &BTreeMap<u128, BTreeSet<State>>, key: u128) -> BTreeSet<State> {
        map.get(&key)
            .cloned()
            .unwrap_or_else(|| BTreeSet::from([None]))
    }

    fn set(&mut self, key: u128, state: State) {
        self.current.insert(key, BTreeSet::from([state]));
        let mut seen = Self::possible(&self.since_flush, key);
        seen.insert(state);
        self.since_flush.insert(key, seen);
    }

    /// A segment was reclaimed: any key may now be absent.
    fn allow_absence(&mut self) {
        for map in [&mut self.current, &mut self.since_flush] {
            for states in map.values_mut() {
                states.insert(None);
            }
        }
    }
}

fn open(dir: &Path, capacity: u64) -> DiskStore {
    DiskStore::builder(capacity)
        .with_page_size(4096)
        .with_segment_bytes(32 << 10)
        .with_pool_bytes(16 * 4096)
        .with_writeback_interval(None)
        .open(dir)
        .expect("open")
}

fn run(ops: Vec<Op>, capacity: u64, may_reclaim: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path(), capacity);
    let mut model = Model {
        current: BTreeMap::new(),
        since_flush: BTreeMap::new(),
        next_version: 1,
    };
    let mut reclaimed = 0;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put { key, size } => {
                let key = u128::from(key);
                let version = model.next_version;
                model.next_version += 1;
                let (len, compressible) = SIZES[size];
                disk_support::put(&store, key, version, len, compressible).expect("put");
                model.set(key, Some(version));
            }
            Op::Get { key } => {
                let key = u128::from(key);
                let got = store
                    .get(key)
                    .expect("get")
                    .map(|entry| verify(key, &entry));
                let allowed = Model::possible(&model.current, key);
                prop_assert!(
                    allowed.contains(&got),
                    "step {step}: key {key} is {got:?}, allowed {allowed:?}"
                );
                model.current.insert(key, BTreeSet::from([got]));
            }
            Op::Remove { key } => {
                let key = u128::from(key);
                store.remove(key).expect("remove");
                model.set(key, None);
            }
            Op::Flush => {
                store.flush().expect("flush");
                model.since_flush = model.current.clone();
            }
            Op::Evict => store.evict_pages().expect("evict"),
            Op::Crash => {
                drop(store);
                store = open(dir.path(), capacity);
                reclaimed = 0;
                model.current = model.since_flush.clone();
            }
            Op::Reopen => {
                store.close().expect("close");
                store = open(dir.path(), capacity);
                reclaimed = 0;
                model.since_flush = model.current.clone();
            }
        }
        let now = store.stats().reclaimed_segments;
        if now != reclaimed {
            prop_assert!(
                may_reclaim,
                "step {step}: a segment was reclaimed in a roomy store"
            );
            reclaimed = now;
            model.allow_absence();
        }
        if let Err(broken) = store.validate() {
            return Err(TestCaseError::fail(format!("step {step}: {broken}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Room for everything: no segment is ever reclaimed, so every get is exact
    /// (while the process lives) or one of the post-crash possibilities.
    #[test]
    fn roomy_store_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, 16 << 20, false)?;
    }

    /// Six segments of 32 KiB: the log wraps and reclaims segments all the time.
    #[test]
    fn wrapping_store_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, 4096 + 6 * (32 << 10), true)?;
    }
}
