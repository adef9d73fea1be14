//! The bind arguments of a Postgres statement, one by one, for row-level invalidation
//! (`freshness::row_keys`).
//!
//! sqlx keeps `PgArguments`' types and encoded buffer private; its `Debug` output (the
//! same text the cache key hashes, `key::hash_arguments`) prints both:
//! `PgArguments { types: [PgTypeInfo(Int4), …], buffer: PgArgumentBuffer { buffer:
//! [0, 0, 0, 4, 0, 0, 0, 5, …], count: 1, patches: [], … } }`. The buffer is the Bind
//! message's parameter section: per argument an `i32` length (−1 for NULL) and that
//! many bytes. sqlx-postgres is pinned (`=0.9.0`), and the parse is strict: the type
//! count, the argument count and the lengths must account for every byte, and no
//! argument may wait for a late-bound type (`patches`, `hole_types`). Anything else
//! returns `None`, and the statement is invalidated at table level.

use crate::freshness::row_keys::BindValue;
use std::fmt::Write;

/// The arguments of `arguments`' `Debug` text, in order; `None` if the text is not in
/// the expected form.
pub(crate) fn parse(debug: &str) -> Option<Vec<BindValue>> {
    let types_text = between(debug, "types: [", "]")?;
    let types: Vec<&str> = if types_text.is_empty() {
        Vec::new()
    } else {
        types_text
            .split(", ")
            .map(|t| t.strip_prefix("PgTypeInfo(")?.strip_suffix(')'))
            .collect::<Option<_>>()?
    };
    let buffer_text = between(debug, "buffer: PgArgumentBuffer { buffer: [", "]")?;
    let bytes: Vec<u8> = if buffer_text.is_empty() {
        Vec::new()
    } else {
        buffer_text
            .split(", ")
            .map(|b| b.parse().ok())
            .collect::<Option<_>>()?
    };
    let count: usize = between(debug, "count: ", ",")?.parse().ok()?;
    for late in ["patches: []", "hole_offsets: []", "hole_types: []"] {
        if !debug.contains(late) {
            return None;
        }
    }
    if count != types.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut rest = bytes.as_slice();
    for type_name in types {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        rest = tail;
        let value = if len < 0 {
            None
        } else {
            let len = usize::try_from(len).ok()?;
            if rest.len() < len {
                return None;
            }
            let (value, tail) = rest.split_at(len);
            rest = tail;
            Some(value.to_vec())
        };
        out.push(BindValue {
            type_name: type_name.to_owned(),
            bytes: value,
        });
    }
    rest.is_empty().then_some(out)
}

/// The text between the first `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The bind values of Postgres `arguments` (`None` without arguments or in an
/// unexpected form).
pub(crate) fn postgres(arguments: Option<&sqlx::postgres::PgArguments>) -> Option<Vec<BindValue>> {
    let mut debug = String::with_capacity(256);
    write!(debug, "{:?}", arguments?).ok()?;
    parse(&debug)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Arguments;
    use sqlx::postgres::PgArguments;

    fn args(f: impl FnOnce(&mut PgArguments)) -> Option<Vec<BindValue>> {
        let mut a = PgArguments::default();
        f(&mut a);
        postgres(Some(&a))
    }

    #[test]
    fn every_argument_comes_back_with_its_type_and_encoding() {
        let values = args(|a| {
            a.add(5i32).expect("encodes");
            a.add(-7i64).expect("encodes");
            a.add("abc").expect("encodes");
            a.add(None::<i32>).expect("encodes");
            a.add(3i16).expect("encodes");
            a.add(String::new()).expect("encodes");
        })
        .expect("parsed");
        let got: Vec<(&str, Option<Vec<u8>>)> = values
            .iter()
            .map(|v| (v.type_name.as_str(), v.bytes.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Int4", Some(5i32.to_be_bytes().to_vec())),
                ("Int8", Some((-7i64).to_be_bytes().to_vec())),
                ("Text", Some(b"abc".to_vec())),
                ("Int4", None),
                ("Int2", Some(3i16.to_be_bytes().to_vec())),
                ("Text", Some(Vec::new())),
            ]
        );
        assert_eq!(args(|_| {}), Some(Vec::new()));
        assert_eq!(postgres(None), None);
    }

    #[test]
    fn text_not_in_the_expected_form_is_refused() {
        let ok = "PgArguments { types: [PgTypeInfo(Int4)], buffer: PgArgumentBuffer { \
                  buffer: [0, 0, 0, 4, 0, 0, 0, 5], count: 1, patches: [], hole_offsets: [], \
                  hole_types: [] } }";
        assert!(parse(ok).is_some());
        for bad in [
            ok.replace("0, 0, 0, 5]", "0, 0, 5]"),
            ok.replace("0, 0, 0, 5]", "0, 0, 0, 5, 1]"),
            ok.replace("count: 1", "count: 2"),
            ok.replace("patches: []", "patches: [Patch]"),
            ok.replace("PgTypeInfo(Int4)", "Int4"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }
}
