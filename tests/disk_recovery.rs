//! Recovery at open: what was flushed comes back, what was not is absent, and a torn,
//! corrupted or stale page is skipped — the store serves the bytes that were put or
//! nothing, never something else.

mod disk_support;

use disk_support::{generations, open_faulty, value, verify};
use querycache::bufpool::{Fault, FaultHandle};
use querycache::tier::disk::{DiskStore, DiskStoreBuilder, PAGE_FILE};
use std::os::unix::fs::FileExt;
use std::path::Path;

const PAGE: usize = 4096;
const PAYLOAD: usize = PAGE - 32;
const SEGMENT_PAGES: usize = 16;
const VALUE_LEN: usize = 1000;

fn builder() -> DiskStoreBuilder {
    DiskStore::builder(1 << 20)
        .with_page_size(PAGE)
        .with_segment_bytes((SEGMENT_PAGES * PAGE) as u64)
        .with_pool_bytes(4 << 20)
        .with_writeback_interval(None)
}

fn put(store: &DiskStore, key: u128) {
    disk_support::put(store, key, 1, VALUE_LEN, false).expect("put");
}

/// Where each of `keys`' records lands when written in order into fresh segments,
/// from the documented formats: 56-byte record header, records packed into the page
/// payloads, a record that does not fit starts the next segment.
fn layout(keys: std::ops::Range<u128>) -> Vec<(u128, usize, usize, usize)> {
    let capacity = SEGMENT_PAGES * PAYLOAD;
    let (mut segment, mut offset) = (0, 0);
    keys.map(|key| {
        let len = 56 + generations(key, 1).len() + VALUE_LEN;
        if offset + len > capacity {
            segment += 1;
            offset = 0;
        }
        offset += len;
        (key, segment, offset - len, offset)
    })
    .collect()
}

fn file_offset(segment: usize, page_in_segment: usize) -> u64 {
    ((1 + segment * SEGMENT_PAGES + page_in_segment) * PAGE) as u64
}

fn corrupt(dir: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(PAGE_FILE))
        .expect("open page file");
    file.write_all_at(bytes, offset).expect("corrupt");
}

#[test]
fn a_crash_keeps_what_was_flushed_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder().open(dir.path()).expect("open");
    for key in 0..50 {
        put(&store, key);
    }
    store.flush().expect("flush");
    for key in 50..80 {
        put(&store, key);
    }
    store.remove(3).expect("remove after the flush");
    drop(store); // crash: no write-back ran since the flush

    let store = builder().open(dir.path()).expect("reopen");
    for key in 0..50 {
        let entry = store.get(key).expect("get").expect("flushed entry present");
        verify(key, &entry);
    }
    for key in 50..80 {
        assert_eq!(
            store.get(key).expect("get"),
            None,
            "key {key} was never written back"
        );
    }
    store.validate().expect("invariants");
}

#[test]
fn a_torn_page_cuts_its_segment_there_and_spares_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder().open(dir.path()).expect("open");
    let layout = layout(0..120);
    assert!(layout.iter().any(|&(_, segment, ..)| segment == 1));
    for &(key, ..) in &layout {
        put(&store, key);
    }
    store.close().expect("close");
    // Half of page 8 of segment 0 is overwritten with other bytes: a torn write.
    let torn_at = 8 * PAYLOAD;
    corrupt(dir.path(), file_offset(0, 8) + 1000, &[0x5A; 2000]);

    let store = builder().open(dir.path()).expect("reopen");
    for &(key, segment, start, end) in &layout {
        let got = store.get(key).expect("get");
        let intact = segment != 0 || end <= torn_at;
        match got {
            Some(entry) => {
                assert!(
                    intact,
                    "key {key} (segment 0, bytes {start}..{end}) served past the torn page"
                );
                verify(key, &entry);
            }
            None => assert!(!intact, "key {key} lost though its pages are intact"),
        }
    }
    store.validate().expect("invariants");
}

#[test]
fn random_corruption_never_yields_wrong_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = builder().open(dir.path()).expect("open");
    for key in 0..200 {
        put(&store, key);
    }
    store.close().expect("close");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % (1 << 20)) & !7;
        corrupt(dir.path(), offset, &x.to_le_bytes());
        let store = builder().open(dir.path()).expect("reopen");
        let mut served = 0;
        for key in 0..200 {
            if let Some(entry) = store.get(key).expect("get") {
                verify(key, &entry);
                served += 1;
            }
        }
        assert!(served > 0 || round > 0, "nothing left to check");
        store.validate().expect("invariants");
    }
}

/// A store of exactly three segments in `dir`, optionally over a fault-injecting file.
fn three_segments(dir: &Path, faulty: bool) -> (DiskStore, Option<FaultHandle>) {
    let builder = DiskStore::builder((PAGE + 3 * SEGMENT_PAGES * PAGE) as u64)
        .with_page_size(PAGE)
        .with_segment_bytes((SEGMENT_PAGES * PAGE) as u64)
        .with_writeback_interval(None);
    if !faulty {
        return (builder.open(dir).expect("open"), None);
    }
    let (store, faults) = open_faulty(builder, dir);
    (store, Some(faults))
}

#[test]
fn pages_left_from_a_reclaimed_segments_earlier_epoch_are_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four segments' worth of records into three segments: the log wraps once and the
    // first segment's records are reclaimed.
    let layout = layout(0..200);
    assert_eq!(layout.last().expect("non-empty").1, 3);
    let (store, _) = three_segments(dir.path(), false);
    for &(key, ..) in &layout {
        put(&store, key);
    }
    store.close().expect("close");

    // The next session needs a fresh segment and reclaims the oldest (the second one
    // written). A record spanning its first two pages is written back torn: the first
    // page (new epoch) lands, the second still holds the old epoch's intact page.
    let (store, faults) = three_segments(dir.path(), true);
    let big = 100_000u128;
    store
        .put(big, &value(big, 1, 6000, false), &generations(big, 1), None)
        .expect("put spanning two pages");
    faults.expect("faulty file").arm(Fault::TornWrite, 0);
    assert!(store.flush().is_err());
    drop(store);

    let (store, _) = three_segments(dir.path(), false);
    assert_eq!(
        store.get(big).expect("get"),
        None,
        "half a record is not a record"
    );
    for &(key, segment, ..) in &layout {
        match store.get(key).expect("get") {
            Some(entry) => {
                assert!(
                    segment >= 2,
                    "key {key} of reclaimed segment {segment} served"
                );
                verify(key, &entry);
            }
            None => assert!(segment < 2, "key {key} of live segment {segment} lost"),
        }
    }
    store.validate().expect("invariants");
}
