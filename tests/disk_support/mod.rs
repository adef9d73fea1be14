//! Values for disk-tier tests that carry their own proof: the key, a version and the
//! length are embedded, and every other byte is derived from them, so any value the
//! store serves can be checked byte-exact without knowing what was written last.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use querycache::bufpool::{FaultHandle, FaultyFile};
use querycache::tier::disk::{DiskEntry, DiskStore, DiskStoreBuilder, StorageError};
use std::path::Path;

const PREFIX: usize = 16 + 4 + 1;

/// A value of `len` bytes (≥ 21) for `key` and `version`. With `compressible`, the
/// body is a repeated text pattern (lz4 shrinks it); otherwise pseudo-random bytes.
pub fn value(key: u128, version: u32, len: usize, compressible: bool) -> Vec<u8> {
    assert!(len >= PREFIX);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.push(u8::from(compressible));
    let mut x =
        (key as u64) ^ ((key >> 64) as u64) ^ u64::from(version).rotate_left(32) ^ len as u64;
    while out.len() < len {
        if compressible {
            out.extend_from_slice(b"film_id=42;title=ACADEMY DINOSAUR;");
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Generations blob for `key` and `version` (also self-describing).
pub fn generations(key: u128, version: u32) -> Vec<u8> {
    format!("{key:x}:{version}").into_bytes()
}

/// Checks that `entry` is exactly what `value`/`generations` produce for `key` and the
/// version embedded in it; returns that version.
///
/// # Panics
/// If a single byte differs: the store served something that was never put.
pub fn verify(key: u128, entry: &DiskEntry) -> u32 {
    let v = &entry.value;
    assert!(v.len() >= PREFIX, "key {key:x}: value of {} bytes", v.len());
    assert_eq!(
        u128::from_le_bytes(v[..16].try_into().expect("16 bytes")),
        key,
        "value of another key"
    );
    let version = u32::from_le_bytes(v[16..20].try_into().expect("4 bytes"));
    let expected = value(key, version, v.len(), v[20] == 1);
    assert!(
        *v == expected,
        "key {key:x} version {version}: bytes differ"
    );
    assert_eq!(
        entry.generations,
        generations(key, version),
        "key {key:x}: generations"
    );
    version
}

/// Puts the self-checking value of `len` bytes for `key` and `version`.
pub fn put(
    store: &DiskStore,
    key: u128,
    version: u32,
    len: usize,
    compressible: bool,
) -> Result<(), StorageError> {
    store.put(
        key,
        &value(key, version, len, compressible),
        &generations(key, version),
        None,
    )
}

/// Opens `builder` in `dir` over a [`FaultyFile`]; returns the store and the handle
/// that arms its faults.
pub fn open_faulty(builder: DiskStoreBuilder, dir: &Path) -> (DiskStore, FaultHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    let store = builder
        .with_page_file_wrapper(move |file| {
            let (faulty, faults) = FaultyFile::new(file);
            tx.send(faults).expect("send the fault handle");
            Box::new(faulty)
        })
        .open(dir)
        .expect("open over a faulty file");
    (store, rx.recv().expect("fault handle"))
}
