//! The disk tier returns exactly what was put (small, page-spanning, compressed),
//! honours remove and expiry, survives close and reopen, and reclaims the oldest
//! segment when full.

mod disk_support;

use disk_support::{generations, value, verify};
use querycache::tier::disk::{DiskStore, StorageError};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn small_store(dir: &Path) -> DiskStore {
    DiskStore::builder(4 << 20)
        .with_page_size(4096)
        .with_segment_bytes(256 << 10)
        .with_pool_bytes(256 << 10)
        .open(dir)
        .expect("open")
}

fn put(store: &DiskStore, key: u128, version: u32, len: usize, compressible: bool) {
    disk_support::put(store, key, version, len, compressible).expect("put");
}

#[test]
fn values_of_every_size_come_back_byte_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DiskStore::open(dir.path(), 64 << 20).expect("open");
    let sizes = [21, 1000, 1 << 10, 8 << 10, 16 << 10, 100_000, 256 << 10];
    for (i, &len) in sizes.iter().enumerate() {
        put(&store, i as u128, 1, len, false);
        put(&store, (i + 100) as u128, 1, len, true);
    }
    for (i, &len) in sizes.iter().enumerate() {
        for key in [i as u128, (i + 100) as u128] {
            let entry = store.get(key).expect("get").expect("present");
            assert_eq!((verify(key, &entry), entry.value.len()), (1, len));
            assert_eq!(entry.session, store.session());
        }
    }
    let stats = store.stats();
    let raw: usize = sizes.iter().sum::<usize>() * 2;
    assert!(
        (stats.bytes_written as usize) < raw * 3 / 4,
        "compressible values shrank: {stats:?}"
    );
    assert_eq!(store.get(999).expect("get"), None);
    store.validate().expect("invariants");
}

#[test]
fn put_replaces_and_remove_removes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    put(&store, 7, 1, 3000, false);
    put(&store, 7, 2, 5000, false);
    assert_eq!(verify(7, &store.get(7).expect("get").expect("present")), 2);
    assert!(store.remove(7).expect("remove"));
    assert!(!store.remove(7).expect("second remove"));
    assert_eq!(store.get(7).expect("get"), None);
    store.validate().expect("invariants");
}

#[test]
fn expired_entries_are_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let past = SystemTime::now() - Duration::from_secs(1);
    let future = SystemTime::now() + Duration::from_secs(3600);
    store
        .put(1, &value(1, 1, 100, false), &generations(1, 1), Some(past))
        .expect("put");
    store
        .put(
            2,
            &value(2, 1, 100, false),
            &generations(2, 1),
            Some(future),
        )
        .expect("put");
    assert_eq!(store.get(1).expect("get"), None);
    let entry = store.get(2).expect("get").expect("present");
    let expires = entry.expires_at.expect("expiry kept");
    assert!(
        expires <= future
            && future.duration_since(expires).expect("not later") < Duration::from_millis(1)
    );
    assert_eq!(store.stats().expired, 1);
    store.close().expect("close");

    let store = small_store(dir.path());
    assert_eq!(
        store.get(1).expect("get"),
        None,
        "not resurrected by recovery"
    );
    assert_eq!(verify(2, &store.get(2).expect("get").expect("present")), 1);
}

#[test]
fn reopen_recovers_every_flushed_entry_in_a_new_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let first_session = store.session();
    for key in 0..200u128 {
        put(
            &store,
            key,
            1,
            500 + (key as usize * 37) % 9000,
            key % 3 == 0,
        );
    }
    for key in (0..200u128).step_by(4) {
        put(&store, key, 2, 700, false);
    }
    for key in (1..200u128).step_by(10) {
        store.remove(key).expect("remove");
    }
    store.close().expect("close");

    let store = small_store(dir.path());
    assert_eq!(store.session(), first_session + 1);
    for key in 0..200u128 {
        let got = store.get(key).expect("get");
        if key % 10 == 1 {
            assert_eq!(got, None, "key {key} was removed");
            continue;
        }
        let entry = got.expect("present");
        assert_eq!(verify(key, &entry), if key % 4 == 0 { 2 } else { 1 });
        assert_eq!(entry.session, first_session);
    }
    assert_eq!(store.stats().recovered_entries, 180);
    store.validate().expect("invariants");
}

#[test]
fn a_full_store_reclaims_its_oldest_segment_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let per_segment = (256 << 10) / 10_000;
    let total = 15 * per_segment * 2;
    for key in 0..total as u128 {
        put(&store, key, 1, 10_000 - 56 - 16, false);
    }
    let stats = store.stats();
    assert!(stats.reclaimed_segments > 0, "{stats:?}");
    let present: Vec<bool> = (0..total as u128)
        .map(|key| {
            store
                .get(key)
                .expect("get")
                .inspect(|e| {
                    verify(key, e);
                })
                .is_some()
        })
        .collect();
    let first_present = present
        .iter()
        .position(|&p| p)
        .expect("some entries remain");
    assert!(first_present > 0, "the oldest entries were reclaimed");
    assert!(
        present[first_present..].iter().all(|&p| p),
        "only a prefix (the oldest) is gone"
    );
    assert_eq!(stats.entries, (total - first_present) as u64);
    store.validate().expect("invariants");
}

#[test]
fn records_larger_than_a_segment_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    let too_big = value(1, 1, store.max_record_bytes(), false);
    assert!(matches!(
        store.put(1, &too_big, b"", None),
        Err(StorageError::TooLarge { .. })
    ));
    assert_eq!(store.get(1).expect("get"), None);
}

#[test]
fn a_directory_is_open_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    assert!(matches!(
        DiskStore::builder(4 << 20)
            .with_page_size(4096)
            .with_segment_bytes(256 << 10)
            .open(dir.path()),
        Err(StorageError::Config(_))
    ));
    drop(store);
    drop(small_store(dir.path()));
}

#[test]
fn a_foreign_file_is_refused_and_a_different_geometry_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("querycache.pages"), b"somebody else's data").expect("write");
    assert!(matches!(
        DiskStore::open(dir.path(), 4 << 20),
        Err(StorageError::Config(_))
    ));
    assert_eq!(
        std::fs::read(dir.path().join("querycache.pages")).expect("read"),
        b"somebody else's data",
        "left untouched"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    put(&store, 5, 1, 1000, false);
    store.close().expect("close");
    let store = DiskStore::builder(4 << 20)
        .with_page_size(8192)
        .open(dir.path())
        .expect("reopen");
    assert_eq!(store.get(5).expect("get"), None);
    assert_eq!(store.session(), 1, "a new store");
}

#[test]
fn concurrent_puts_and_gets_only_ever_see_whole_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = small_store(dir.path());
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let store = &store;
            scope.spawn(move || {
                let mut x = u64::from(t) + 1;
                for round in 0..600u32 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = u128::from(x % 64);
                    if x % 3 == 0 {
                        let len = 100 + (x as usize % 20_000);
                        put(store, key, round, len, x % 5 == 0);
                    } else if let Some(entry) = store.get(key).expect("get") {
                        verify(key, &entry);
                    }
                }
            });
        }
    });
    store.validate().expect("invariants");
}
