//! Random operation sequences {write, read, flush, evict, crash, reopen} on the buffer
//! pool alone, against a model of each page's possible contents, with `validate()`
//! after every step. After a crash a page may hold any version written since the last
//! flush (dirty evictions and write-back may or may not have reached the file), or be
//! unreadable if it was never written back at all, but never anything else.

use proptest::prelude::*;
use querycache::bufpool::{BufferPool, PoolConfig, StorageError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const PAGES: u64 = 24;

#[derive(Clone, Debug)]
enum Op {
    Write { page: u64, fresh: bool },
    Read { page: u64 },
    Flush,
    Evict,
    Crash,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..PAGES, any::<bool>()).prop_map(|(page, fresh)| Op::Write { page, fresh }),
        6 => (0..PAGES).prop_map(|page| Op::Read { page }),
        1 => Just(Op::Flush),
        1 => Just(Op::Evict),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

fn open(path: &Path) -> BufferPool {
    let config = PoolConfig::new(PAGES)
        .with_page_size(4096)
        .with_frames(6)
        .with_writeback_batch(4)
        .with_writeback_interval(None);
    BufferPool::open(path, config).expect("open")
}

/// Page contents for `version`: the version in the lsn and in every payload byte pair.
fn write(pool: &BufferPool, page: u64, version: u16, fresh: bool) {
    let mut guard = if fresh {
        pool.fetch_new(page).expect("fetch_new")
    } else {
        match pool.fetch_mut(page) {
            Ok(guard) => guard,
            Err(StorageError::Corrupt { .. }) => pool.fetch_new(page).expect("fetch_new"),
            Err(err) => panic!("fetch_mut: {err}"),
        }
    };
    guard.set_lsn(u64::from(version));
    for pair in guard.chunks_exact_mut(2) {
        pair.copy_from_slice(&version.to_le_bytes());
    }
}

/// The version a page holds, `None` if it was never written back; panics on any byte
/// that is not part of one version.
fn read(pool: &BufferPool, page: u64) -> Option<u16> {
    let guard = match pool.fetch(page) {
        Ok(guard) => guard,
        Err(StorageError::Corrupt { .. }) => return None,
        Err(err) => panic!("fetch: {err}"),
    };
    let version = u16::from_le_bytes([guard[0], guard[1]]);
    assert_eq!(
        guard.lsn(),
        u64::from(version),
        "page {page}: header and payload disagree"
    );
    assert!(
        guard
            .chunks_exact(2)
            .all(|pair| pair == version.to_le_bytes()),
        "page {page}: mixed versions"
    );
    Some(version)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pool_matches_the_model(ops in proptest::collection::vec(op(), 1..100)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pages");
        let mut pool = open(&path);
        let mut current: BTreeMap<u64, BTreeSet<Option<u16>>> = BTreeMap::new();
        let mut since_flush = current.clone();
        let possible = |map: &BTreeMap<u64, BTreeSet<Option<u16>>>, page| {
            map.get(&page).cloned().unwrap_or_else(|| BTreeSet::from([None]))
        };
        let mut next = 1u16;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Write { page, fresh } => {
                    write(&pool, page, next, fresh);
                    current.insert(page, BTreeSet::from([Some(next)]));
                    let mut seen = possible(&since_flush, page);
                    seen.insert(Some(next));
                    since_flush.insert(page, seen);
                    next += 1;
                }
                Op::Read { page } => {
                    let got = read(&pool, page);
                    let allowed = possible(&current, page);
                    prop_assert!(allowed.contains(&got), "step {step}: page {page} holds {got:?}, allowed {allowed:?}");
                    current.insert(page, BTreeSet::from([got]));
                }
                Op::Flush => {
                    pool.flush().expect("flush");
                    since_flush = current.clone();
                }
                Op::Evict => {
                    pool.evict_all().expect("evict");
                }
                Op::Crash => {
                    drop(pool);
                    pool = open(&path);
                    current = since_flush.clone();
                }
                Op::Reopen => {
                    pool.close().expect("close");
                    pool = open(&path);
                    since_flush = current.clone();
                }
            }
            if let Err(broken) = pool.validate() {
                return Err(TestCaseError::fail(format!("step {step}: {broken}")));
            }
        }
    }
}
