//! Row-level invalidation: the key values of key reads and key writes, normalized so
//! that two statements name the same key exactly when Postgres would find them equal,
//! and hashed into per-table *key buckets*, each with its own generation.
//!
//! # Counters
//!
//! For a table `T` whose row key is known ([`crate::freshness::Catalog::row_key`]),
//! three kinds of generation (named counters in the same registry as tables, so the
//! shared Redis tier mirrors them by name) carry its freshness:
//!
//! | counter | bumped by | checked by |
//! |---|---|---|
//! | `T` | every table-level write of `T` (and writes outside the cache) | every read of `T` |
//! | `T#k` ([`key_writes_name`]) | every key write of `T` | reads of `T` that are not key reads |
//! | `T#b{i}` ([`bucket_name`]) | key writes of a key in bucket `i` | key reads of a key in bucket `i` |
//!
//! A key read of key `k` therefore misses every write that cannot change its result
//! (key writes of keys in other buckets) and sees every write that can: a table-level
//! write bumps `T`, a key write of `k` bumps `T#b(bucket(k))`. Two keys sharing a
//! bucket only over-invalidate. A non-key read (a range, an aggregate, a read by
//! another unique key) sees every write through `T` and `T#k`. `T` stays the
//! conservative counter: whoever does not know about keys (the watch listener,
//! `invalidate_table`, transactions) bumps `T`, which every read of `T` checks.
//!
//! # Key values
//!
//! A key column's value is normalized by its type class ([`KeyType`]): the integer
//! types compare as `i64` (an `int4` bind, an `int8` bind, the literal `5` and the
//! literal `'5'` — an unknown-typed literal that Postgres reads with `int4in` — all
//! name one key); text and `varchar` compare as their bytes (only under a
//! deterministic collation, checked by the catalog). Anything else — `5.0`, a cast, a
//! float or numeric bind, `NULL`, an escape-string literal — is *not normalizable*:
//! the statement then falls back to table level, which is never less conservative.

/// Key buckets per table. A key write invalidates the key reads of 1/65 536 of the
/// table's keys (collisions only over-invalidate); counters are created on first use,
/// at most 65 536 × ~200 B ≈ 13 MiB per table whose keys are all touched. Measured with
/// a replay of the bench's `read-mostly` stream (Zipf s = 0.99 over 1 M keys, 5 %
/// writes, 180 k operations): hit ratio 42.5 % with 256 buckets, 58.6 % with 4096,
/// 61.8 % with 65 536 and 62.0 % with exact per-key generations (the rest are first
/// reads of a key); in a 20 s `querycache bench` run 4096 buckets fell to 67 % as the
/// long tail's buckets were bumped every ~2 s.
pub const BUCKETS: usize = 65_536;

/// The counter every key write of `table` bumps and every non-key read checks.
pub fn key_writes_name(table: &str) -> String {
    format!("{table}#k")
}

/// The counter of key bucket `bucket` of `table`.
pub fn bucket_name(table: &str, bucket: usize) -> String {
    format!("{table}#b{bucket}")
}

/// How a key column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `smallint`, `integer`, `bigint`: numeric equality, normalized to `i64`.
    Integer,
    /// `text`, `character varying`: byte equality (deterministic collation only).
    Text,
}

impl KeyType {
    /// The class of a column type as `format_type` prints it; `None` for types whose
    /// equality this module does not model (then the table has no row key).
    pub fn of(type_name: &str) -> Option<KeyType> {
        match type_name {
            "smallint" | "integer" | "bigint" => Some(KeyType::Integer),
            "text" => Some(KeyType::Text),
            t if t == "character varying" || t.starts_with("character varying(") => {
                Some(KeyType::Text)
            }
            _ => None,
        }
    }
}

/// One normalized key column value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValue {
    /// An integer key.
    Integer(i64),
    /// A text key's bytes.
    Text(Box<[u8]>),
}

/// A bind argument as sent to Postgres: its declared type and its binary encoding
/// (`None` for SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindValue {
    /// The sqlx type name of the argument (`Int4`, `Int8`, `Text`, …).
    pub type_name: String,
    /// The binary-format bytes, `None` for NULL.
    pub bytes: Option<Vec<u8>>,
}

/// The key value of a literal in a key column of type `ty`: `text` is the literal as
/// it appears in the canonical text (`5`, `'abc'`), `negated` a leading minus, `cast`
/// an explicit cast (never normalized). `None` when Postgres might compare it
/// otherwise than this module would.
pub fn literal_value(
    ty: KeyType,
    text: &str,
    negated: bool,
    cast: Option<&str>,
) -> Option<KeyValue> {
    if cast.is_some() {
        return None;
    }
    let quoted = text
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
        // A backslash means something else under standard_conforming_strings = off.
        .filter(|inner| !inner.contains('\\'))
        .map(|inner| inner.replace("''", "'"));
    match (ty, quoted) {
        (KeyType::Integer, None) => parse_integer(text, negated),
        // An unknown-typed string literal compared with an integer column is read by
        // int4in/int8in, which allow surrounding whitespace and a sign.
        (KeyType::Integer, Some(inner)) if !negated => parse_integer(inner.trim(), false),
        (KeyType::Text, Some(inner)) if !negated => Some(KeyValue::Text(inner.into_bytes().into())),
        _ => None,
    }
}

/// Plain decimal digits with an optional sign, as an `i64`.
fn parse_integer(text: &str, negated: bool) -> Option<KeyValue> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i128 = digits.parse().ok()?;
    let value = if negative != negated {
        -magnitude
    } else {
        magnitude
    };
    i64::try_from(value).ok().map(KeyValue::Integer)
}

/// The key value of a bind argument in a key column of type `ty`; `None` for NULL,
/// for an explicit cast, and for types whose comparison with the column is not
/// modelled (a float compared with an integer column, say).
pub fn bind_value(ty: KeyType, bind: &BindValue, cast: Option<&str>) -> Option<KeyValue> {
    if cast.is_some() {
        return None;
    }
    let bytes = bind.bytes.as_deref()?;
    match (ty, bind.type_name.as_str()) {
        (KeyType::Integer, "Int2") => Some(KeyValue::Integer(i64::from(i16::from_be_bytes(
            bytes.try_into().ok()?,
        )))),
        (KeyType::Integer, "Int4") => Some(KeyValue::Integer(i64::from(i32::from_be_bytes(
            bytes.try_into().ok()?,
        )))),
        (KeyType::Integer, "Int8") => Some(KeyValue::Integer(i64::from_be_bytes(
            bytes.try_into().ok()?,
        ))),
        (KeyType::Text, "Text" | "Varchar") => Some(KeyValue::Text(bytes.into())),
        _ => None,
    }
}

/// The bucket of a key: xxh3-64 over its column values in key order (a type tag, then
/// the `i64` or the length and bytes of the text).
pub fn bucket(values: &[KeyValue]) -> usize {
    let mut bytes = Vec::with_capacity(16 * values.len());
    for value in values {
        match value {
            KeyValue::Integer(v) => {
                bytes.push(b'i');
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            KeyValue::Text(text) => {
                bytes.push(b's');
                bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
                bytes.extend_from_slice(text);
            }
        }
    }
    (xxhash_rust::xxh3::xxh3_64(&bytes) % BUCKETS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Option<KeyValue> {
        Some(KeyValue::Integer(v))
    }

    fn bind(type_name: &str, bytes: &[u8]) -> BindValue {
        BindValue {
            type_name: type_name.into(),
            bytes: Some(bytes.to_vec()),
        }
    }

    #[test]
    fn integer_spellings_postgres_finds_equal_normalize_to_one_value() {
        let i = KeyType::Integer;
        assert_eq!(literal_value(i, "5", false, None), int(5));
        assert_eq!(literal_value(i, "'5'", false, None), int(5));
        assert_eq!(literal_value(i, "' +5 '", false, None), int(5));
        assert_eq!(literal_value(i, "5", true, None), int(-5));
        assert_eq!(literal_value(i, "'-5'", false, None), int(-5));
        assert_eq!(
            bind_value(i, &bind("Int2", &5i16.to_be_bytes()), None),
            int(5)
        );
        assert_eq!(
            bind_value(i, &bind("Int4", &5i32.to_be_bytes()), None),
            int(5)
        );
        assert_eq!(
            bind_value(i, &bind("Int8", &5i64.to_be_bytes()), None),
            int(5)
        );
        assert_eq!(
            literal_value(i, "9223372036854775808", true, None),
            int(i64::MIN),
            "the most negative bigint"
        );
    }

    #[test]
    fn values_postgres_might_compare_otherwise_are_not_normalized() {
        let i = KeyType::Integer;
        for (text, negated, cast) in [
            ("5.0", false, None),
            ("5e0", false, None),
            ("'5.0'", false, None),
            ("'0x10'", false, None),
            ("5", false, Some("int8")),
            ("99999999999999999999", false, None),
            ("'5'", true, None),
            ("'\\x'", false, None),
        ] {
            assert_eq!(literal_value(i, text, negated, cast), None, "{text}");
        }
        assert_eq!(literal_value(KeyType::Text, "5", false, None), None);
        assert_eq!(
            literal_value(KeyType::Text, "'a'", false, Some("text")),
            None
        );
        assert_eq!(
            bind_value(i, &bind("Float8", &5f64.to_be_bytes()), None),
            None
        );
        assert_eq!(bind_value(i, &bind("Text", b"5"), None), None);
        assert_eq!(
            bind_value(KeyType::Text, &bind("Int4", &[0, 0, 0, 5]), None),
            None
        );
        let null = BindValue {
            type_name: "Int4".into(),
            bytes: None,
        };
        assert_eq!(bind_value(i, &null, None), None, "NULL is never a key");
        assert_eq!(bind_value(i, &bind("Int4", &[0, 5]), None), None, "short");
    }

    #[test]
    fn text_keys_compare_by_bytes_with_quotes_unescaped() {
        let t = KeyType::Text;
        let lit = literal_value(t, "'it''s'", false, None);
        assert_eq!(lit, Some(KeyValue::Text(b"it's".to_vec().into())));
        assert_eq!(bind_value(t, &bind("Text", b"it's"), None), lit);
        assert_eq!(bind_value(t, &bind("Varchar", b"it's"), None), lit);
        assert_ne!(
            literal_value(t, "'A'", false, None),
            literal_value(t, "'a'", false, None)
        );
    }

    #[test]
    fn buckets_are_a_function_of_the_values_and_spread() {
        let a = [KeyValue::Integer(1), KeyValue::Text(b"x".to_vec().into())];
        assert_eq!(bucket(&a), bucket(&a.clone()));
        let used: std::collections::HashSet<usize> = (0..4 * BUCKETS as i64)
            .map(|k| bucket(&[KeyValue::Integer(k)]))
            .collect();
        assert!(
            used.len() > BUCKETS * 9 / 10,
            "{} of {BUCKETS} buckets",
            used.len()
        );
        assert_eq!(KeyType::of("character varying(45)"), Some(KeyType::Text));
        assert_eq!(
            KeyType::of("character(4)"),
            None,
            "bpchar pads: not modelled"
        );
        assert_eq!(KeyType::of("numeric"), None);
    }
}
