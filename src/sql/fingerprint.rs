//! Fingerprints: xxh3-128 of a text (`xxhash-rust`), printed as 32 hex digits.

/// xxh3-128 of `text`'s bytes.
pub(crate) fn fingerprint(text: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes())
}

/// A fingerprint as 32 lower-case hex digits (the CLI's and the cache's spelling).
pub fn fingerprint_hex(fingerprint: u128) -> String {
    format!("{fingerprint:032x}")
}
