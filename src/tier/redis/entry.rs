//! The bytes of one L2 entry: the remote generations it was stamped with, then a
//! [`codec`](crate::codec) frame.
//!
//! ```text
//! offset 0   magic        "QR"
//!        2   version      u8 (ENTRY_VERSION)
//!        3   reserved     u8 (0)
//!        4   incarnation  u64  the generations hash's incarnation at stamp time
//!       12   count        u32  n, the number of generation values
//!       16   values       u64 × n: the epoch, then the read set's names in sorted order
//!   16+8n    checksum     u64  xxh3-64 of every byte before it and of the frame
//!   24+8n    frame        codec frame (own magic, type tag, checksum)
//! ```
//!
//! All integers little-endian. Anything that does not parse is a [`EntryError`], which
//! the cache counts and treats as a miss.

use xxhash_rust::xxh3::Xxh3;

const MAGIC: [u8; 2] = *b"QR";
/// Bumped whenever the layout changes.
pub const ENTRY_VERSION: u8 = 1;
const FIXED: usize = 16;

/// Why stored bytes are not an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// Too short, wrong magic or version.
    #[error("not a querycache L2 entry")]
    NotAnEntry,
    /// The checksum does not match.
    #[error("L2 entry checksum mismatch")]
    Checksum,
}

/// An entry taken apart; `frame` borrows from the stored bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Incarnation of the generations hash when the entry was stamped.
    pub incarnation: u64,
    /// The epoch, then one value per read-set name (sorted by name).
    pub values: Vec<u64>,
    /// The codec frame of the rows.
    pub frame: &'a [u8],
}

fn checksum(head: &[u8], frame: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(head);
    h.update(frame);
    h.digest()
}

/// Lay an entry out.
pub fn encode(incarnation: u64, values: &[u64], frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + 8 * values.len() + 8 + frame.len());
    out.extend_from_slice(&MAGIC);
    out.push(ENTRY_VERSION);
    out.push(0);
    out.extend_from_slice(&incarnation.to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = checksum(&out, frame);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(frame);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Take stored bytes apart, checking magic, version, lengths and checksum.
///
/// # Errors
/// [`EntryError`] for anything that is not an intact entry.
pub fn decode(bytes: &[u8]) -> Result<Parsed<'_>, EntryError> {
    if bytes.len() < FIXED || bytes[..2] != MAGIC || bytes[2] != ENTRY_VERSION {
        return Err(EntryError::NotAnEntry);
    }
    let incarnation = u64_at(bytes, 4).ok_or(EntryError::NotAnEntry)?;
    let count = u32::from_le_bytes(
        bytes[12..16]
            .try_into()
            .map_err(|_| EntryError::NotAnEntry)?,
    ) as usize;
    let head_len = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(FIXED))
        .filter(|n| n.saturating_add(8) <= bytes.len())
        .ok_or(EntryError::NotAnEntry)?;
    let values = (0..count)
        .map(|i| u64_at(bytes, FIXED + 8 * i).ok_or(EntryError::NotAnEntry))
        .collect::<Result<Vec<u64>, _>>()?;
    let stored = u64_at(bytes, head_len).ok_or(EntryError::NotAnEntry)?;
    let frame = &bytes[head_len + 8..];
    if checksum(&bytes[..head_len], frame) != stored {
        return Err(EntryError::Checksum);
    }
    Ok(Parsed {
        incarnation,
        values,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_an_error() {
        let bytes = encode(7, &[1, 2, 3], b"frame bytes");
        let parsed = decode(&bytes).expect("intact");
        assert_eq!(parsed.incarnation, 7);
        assert_eq!(parsed.values, vec![1, 2, 3]);
        assert_eq!(parsed.frame, b"frame bytes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }
}
