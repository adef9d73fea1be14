//! Encoding of cached results for the byte tiers (Redis, disk) and for weighing.
//!
//! Body: MessagePack (`rmp-serde`), which is self-describing, so JSON columns
//! (`serde_json::Value`), `#[serde(flatten)]` and untagged enums round-trip; postcard
//! and bincode cannot (research §2.6). Bodies above a threshold are compressed with
//! lz4 (`lz4_flex`, size-prepended block format).
//!
//! Frame (little-endian), 20 bytes of header then the body:
//!
//! ```text
//! offset 0  magic     "QC"
//!        2  version   u8  (FORMAT_VERSION)
//!        3  flags     u8  (bit 0: body is lz4-compressed)
//!        4  type tag  u64 (xxh3-64 of std::any::type_name of the value)
//!       12  checksum  u64 (xxh3-64 of the body as stored)
//!       20  body
//! ```
//!
//! Decoding checks all of it; any failure is a [`DecodeError`], which the cache treats
//! as a miss (DESIGN §5), never as a query error.

use serde::Serialize;
use serde::de::DeserializeOwned;
use xxhash_rust::xxh3::xxh3_64;

/// Bumped whenever the frame or the body encoding changes.
pub const FORMAT_VERSION: u8 = 1;

const MAGIC: [u8; 2] = *b"QC";
const HEADER_LEN: usize = 20;
const FLAG_LZ4: u8 = 1;

/// Default compression threshold in bytes: bodies at least this long are lz4-compressed.
/// Below about 1 KiB the 4-byte length prefix and the call cost outweigh the saving.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;

/// The type tag of `T`: xxh3-64 of its type name.
pub fn type_tag<T: ?Sized>() -> u64 {
    xxh3_64(std::any::type_name::<T>().as_bytes())
}

/// Why bytes could not be turned back into a value. The cache counts it and treats
/// the entry as a miss.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the header, or the magic is wrong.
    #[error("not a querycache frame")]
    NotAFrame,
    /// Written by another format version.
    #[error("format version {0}, expected {FORMAT_VERSION}")]
    Version(u8),
    /// Written for another Rust type.
    #[error("type tag mismatch")]
    TypeTag,
    /// The body's checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// lz4 decompression failed.
    #[error("lz4: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    /// MessagePack decoding failed.
    #[error("messagepack: {0}")]
    Body(#[from] rmp_serde::decode::Error),
}

/// Encode the rows of one result, tagged with `type_tag::<T>()`, compressing bodies of
/// at least `compress_threshold` bytes.
///
/// # Errors
/// When `T`'s `Serialize` impl fails (MessagePack itself accepts every serde shape).
pub fn encode<T: Serialize>(
    rows: &[T],
    compress_threshold: usize,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let body = rmp_serde::to_vec(rows)?;
    let (flags, body) = if body.len() >= compress_threshold {
        (FLAG_LZ4, lz4_flex::compress_prepend_size(&body))
    } else {
        (0, body)
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(flags);
    out.extend_from_slice(&type_tag::<T>().to_le_bytes());
    out.extend_from_slice(&xxh3_64(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode the rows of a frame written by [`encode`] for the same `T`.
///
/// # Errors
/// Any check of the frame fails, or the body does not decode as rows of `T`: see
/// [`DecodeError`].
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<Vec<T>, DecodeError> {
    let header = frame.get(..HEADER_LEN).ok_or(DecodeError::NotAFrame)?;
    if header[..2] != MAGIC {
        return Err(DecodeError::NotAFrame);
    }
    if header[2] != FORMAT_VERSION {
        return Err(DecodeError::Version(header[2]));
    }
    let u64_at =
        |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8-byte slice"));
    if u64_at(4) != type_tag::<T>() {
        return Err(DecodeError::TypeTag);
    }
    let body = &frame[HEADER_LEN..];
    if u64_at(12) != xxh3_64(body) {
        return Err(DecodeError::Checksum);
    }
    if header[3] & FLAG_LZ4 != 0 {
        let plain = lz4_flex::decompress_size_prepended(body)?;
        Ok(rmp_serde::from_slice(&plain)?)
    } else {
        Ok(rmp_serde::from_slice(body)?)
    }
}

/// The MessagePack body length of `value` in bytes, computed without allocating the
/// body. The memory tier uses it as the estimate of a result's heap payload.
///
/// # Errors
/// When `T`'s `Serialize` impl fails.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, rmp_serde::encode::Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    rmp_serde::encode::write(&mut count, value)?;
    Ok(count.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        id: i64,
        name: String,
        doc: serde_json::Value,
        tags: Option<Vec<String>>,
    }

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                id: i as i64,
                name: format!("row {i}"),
                doc: serde_json::json!({"k": i, "nested": [1, "two", null]}),
                tags: (i % 2 == 0).then(|| vec!["a".into(), "b".into()]),
            })
            .collect()
    }

    #[test]
    fn round_trips_json_values_small_and_compressed() {
        for n in [0, 1, 200] {
            let value = rows(n);
            let frame = encode(&value, DEFAULT_COMPRESS_THRESHOLD).expect("encode");
            assert_eq!(
                frame[3] & FLAG_LZ4 != 0,
                n == 200,
                "lz4 only above threshold"
            );
            assert_eq!(decode::<Row>(&frame).expect("decode"), value);
        }
    }

    #[test]
    fn compression_shrinks_repetitive_bodies() {
        let value = rows(200);
        let plain = encode(&value, usize::MAX).expect("encode");
        let packed = encode(&value, DEFAULT_COMPRESS_THRESHOLD).expect("encode");
        assert!(
            packed.len() < plain.len() / 2,
            "{} vs {}",
            packed.len(),
            plain.len()
        );
    }

    #[test]
    fn every_corruption_is_a_decode_error() {
        let frame = encode(&rows(3), DEFAULT_COMPRESS_THRESHOLD).expect("encode");
        assert!(matches!(
            decode::<Row>(&frame[..10]),
            Err(DecodeError::NotAFrame)
        ));
        for at in [0, 2, 4, 12, HEADER_LEN, frame.len() - 1] {
            let mut bad = frame.clone();
            bad[at] ^= 0x40;
            assert!(decode::<Row>(&bad).is_err(), "flip at {at}");
        }
        assert!(matches!(
            decode::<(i64,)>(&frame),
            Err(DecodeError::TypeTag)
        ));
    }

    #[test]
    fn encoded_len_equals_the_body_length() {
        let value = rows(5);
        let frame = encode(&value, usize::MAX).expect("encode");
        assert_eq!(encoded_len(&value).expect("len"), frame.len() - HEADER_LEN);
    }
}
