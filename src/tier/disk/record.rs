//! The record format: one put or remove in the log.
//!
//! ```text
//! offset  size  field
//!      0     1  kind            1 = value, 2 = tombstone (0 = end of the segment's records)
//!      1     1  flags           bit 0: value is lz4-compressed (lz4_flex block format)
//!      2     2  reserved        0
//!      4     4  generations_len bytes of the opaque generations blob
//!      8     4  stored_len      bytes of the value as stored
//!     12     4  raw_len         bytes of the value after decompression
//!     16    16  key             the cache key (u128)
//!     32     8  session         the store session that wrote it
//!     40     8  expires_at_ms   Unix time in ms; 0 = never
//!     48     8  checksum        xxh3-64 of bytes 0..48, the generations and the stored value
//!     56     …  generations, then the stored value
//! ```
//!
//! All integers are little-endian. A record may span pages (the segment's page payloads
//! form one byte stream) but never segments. The record checksum is checked on every
//! read, on top of the page checksums: a record whose pages each verify but that is
//! half old and half new (a crash between two page writes) is still rejected.

use super::StorageError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::Xxh3;

/// Bytes before the generations blob.
pub(crate) const HEADER_LEN: usize = 56;
const KIND_VALUE: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
const FLAG_LZ4: u8 = 1;

/// What a record says happened to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    Tombstone,
}

/// A record's fixed header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) compressed: bool,
    pub(crate) generations_len: usize,
    pub(crate) stored_len: usize,
    pub(crate) raw_len: usize,
    pub(crate) key: u128,
    pub(crate) session: u64,
    pub(crate) expires_at_ms: u64,
    checksum: u64,
}

/// Why a byte range is not a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotARecord {
    /// Kind byte 0: the segment's records end here.
    End,
    /// Anything else: unknown kind, impossible lengths, checksum mismatch.
    Invalid(&'static str),
}

impl Header {
    /// Total bytes of the record.
    pub(crate) fn len(&self) -> usize {
        HEADER_LEN + self.generations_len + self.stored_len
    }

    /// Decodes the fixed header at the start of `bytes` (at least [`HEADER_LEN`]).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, NotARecord> {
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let kind = match bytes[0] {
            0 => return Err(NotARecord::End),
            KIND_VALUE => Kind::Value,
            KIND_TOMBSTONE => Kind::Tombstone,
            _ => return Err(NotARecord::Invalid("unknown record kind")),
        };
        if bytes[1] & !FLAG_LZ4 != 0 || bytes[2..4] != [0, 0] {
            return Err(NotARecord::Invalid("unknown record flags"));
        }
        Ok(Self {
            kind,
            compressed: bytes[1] & FLAG_LZ4 != 0,
            generations_len: u32_at(4),
            stored_len: u32_at(8),
            raw_len: u32_at(12),
            key: u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes")),
            session: u64_at(32),
            expires_at_ms: u64_at(40),
            checksum: u64_at(48),
        })
    }

    /// Checks the checksum over a whole record (`bytes.len() == self.len()`).
    pub(crate) fn verify(&self, bytes: &[u8]) -> Result<(), NotARecord> {
        if checksum(bytes) != self.checksum {
            return Err(NotARecord::Invalid("record checksum mismatch"));
        }
        Ok(())
    }

    /// The expiry as a `SystemTime`.
    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        from_ms(self.expires_at_ms)
    }
}

fn checksum(record: &[u8]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&record[..48]);
    hasher.update(&record[HEADER_LEN..]);
    hasher.digest()
}

/// `expires_at` as Unix ms for the header (0 = never); a time at or before the epoch
/// becomes 1 ms, already expired.
pub(crate) fn to_ms(expires_at: Option<SystemTime>) -> u64 {
    expires_at.map_or(0, |t| {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    })
}

fn from_ms(ms: u64) -> Option<SystemTime> {
    (ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(ms))
}

/// `true` if a header expiry has passed at `now_ms`.
pub(crate) fn expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms != 0 && expires_at_ms <= now_ms
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    to_ms(Some(SystemTime::now()))
}

/// Encodes a value record; values of at least `compress_at` bytes are lz4-compressed
/// when that makes them smaller.
///
/// # Errors
/// [`StorageError::TooLarge`] if a length does not fit the header's 32-bit fields.
pub(crate) fn encode_value(
    key: u128,
    value: &[u8],
    generations: &[u8],
    expires_at_ms: u64,
    session: u64,
    compress_at: usize,
) -> Result<Vec<u8>, StorageError> {
    let compressed = (value.len() >= compress_at)
        .then(|| lz4_flex::block::compress(value))
        .filter(|c| c.len() < value.len());
    let stored = compressed.as_deref().unwrap_or(value);
    encode(
        KIND_VALUE,
        if compressed.is_some() { FLAG_LZ4 } else { 0 },
        key,
        generations,
        stored,
        value.len(),
        session,
        expires_at_ms,
    )
}

/// Encodes a tombstone: `key` was removed.
pub(crate) fn encode_tombstone(key: u128, session: u64) -> Vec<u8> {
    encode(KIND_TOMBSTONE, 0, key, &[], &[], 0, session, 0).expect("an empty tombstone always fits")
}

#[expect(clippy::too_many_arguments, reason = "one argument per header field")]
fn encode(
    kind: u8,
    flags: u8,
    key: u128,
    generations: &[u8],
    stored: &[u8],
    raw_len: usize,
    session: u64,
    expires_at_ms: u64,
) -> Result<Vec<u8>, StorageError> {
    let total = HEADER_LEN + generations.len() + stored.len();
    let field = |len: usize| {
        u32::try_from(len).map_err(|_| StorageError::TooLarge {
            bytes: total,
            max: u32::MAX as usize,
        })
    };
    let mut record = Vec::with_capacity(total);
    record.extend_from_slice(&[kind, flags, 0, 0]);
    record.extend_from_slice(&field(generations.len())?.to_le_bytes());
    record.extend_from_slice(&field(stored.len())?.to_le_bytes());
    record.extend_from_slice(&field(raw_len)?.to_le_bytes());
    record.extend_from_slice(&key.to_le_bytes());
    record.extend_from_slice(&session.to_le_bytes());
    record.extend_from_slice(&expires_at_ms.to_le_bytes());
    record.extend_from_slice(&[0; 8]);
    record.extend_from_slice(generations);
    record.extend_from_slice(stored);
    let sum = checksum(&record);
    record[48..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    Ok(record)
}

/// A verified value record's generations and value (decompressed).
///
/// # Errors
/// [`NotARecord::Invalid`] if the checksum fails or the value does not decompress to
/// its recorded length.
pub(crate) fn decode_value(
    header: &Header,
    record: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), NotARecord> {
    header.verify(record)?;
    let generations = record[HEADER_LEN..HEADER_LEN + header.generations_len].to_vec();
    let stored = &record[HEADER_LEN + header.generations_len..];
    let value = if header.compressed {
        lz4_flex::block::decompress(stored, header.raw_len)
            .ok()
            .filter(|v| v.len() == header.raw_len)
            .ok_or(NotARecord::Invalid(
                "lz4 payload does not decompress to its length",
            ))?
    } else {
        stored.to_vec()
    };
    Ok((generations, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(value: &[u8], compress_at: usize) -> (Header, Vec<u8>) {
        let record =
            encode_value(7 << 100 | 5, value, b"gens", 1234, 9, compress_at).expect("encode");
        let header = Header::decode(&record).expect("header");
        assert_eq!(header.len(), record.len());
        let (generations, decoded) = decode_value(&header, &record).expect("decode");
        assert_eq!(
            (generations.as_slice(), decoded.as_slice()),
            (&b"gens"[..], value)
        );
        (header, record)
    }

    #[test]
    fn values_roundtrip_and_large_compressible_ones_are_compressed() {
        let (header, _) = roundtrip(b"small value", 4096);
        assert!(!header.compressed);
        assert_eq!(
            (header.key, header.session, header.expires_at_ms),
            (7 << 100 | 5, 9, 1234)
        );
        let big = vec![b'x'; 100_000];
        let (header, record) = roundtrip(&big, 4096);
        assert!(
            header.compressed && record.len() < 2_000,
            "{} bytes",
            record.len()
        );
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(
            !roundtrip(&noise, 4096).0.compressed,
            "incompressible stays raw"
        );
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let record = encode_value(1, &vec![3; 5000], b"g", 0, 1, 4096).expect("encode");
        for at in 0..record.len() {
            let mut bad = record.clone();
            bad[at] ^= 0x40;
            let ok = Header::decode(&bad).ok().filter(|h| h.len() == bad.len());
            if let Some(header) = ok {
                assert!(
                    decode_value(&header, &bad).is_err(),
                    "flip at {at} accepted"
                );
            }
        }
    }

    #[test]
    fn tombstones_and_end_markers_decode() {
        let record = encode_tombstone(42, 3);
        let header = Header::decode(&record).expect("header");
        assert_eq!(
            (header.kind, header.key, header.len()),
            (Kind::Tombstone, 42, HEADER_LEN)
        );
        assert!(header.verify(&record).is_ok());
        assert_eq!(Header::decode(&[0; HEADER_LEN]), Err(NotARecord::End));
    }

    #[test]
    fn expiry_is_stored_in_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(to_ms(Some(t)), 1_700_000_000_123);
        assert_eq!(to_ms(None), 0);
        assert_eq!(to_ms(Some(UNIX_EPOCH)), 1, "at the epoch: already expired");
        assert!(expired(5, 5) && !expired(6, 5) && !expired(0, u64::MAX));
    }
}
