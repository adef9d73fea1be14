//! [`CacheKey`]: the 128-bit identity of one cached result.
//!
//! A key is xxh3-128 over, in order (DESIGN §2.3):
//!
//! 1. the key-format version and the versions of the parts whose output feeds the key
//!    (this crate, sqlx — whose `Debug` output of bind arguments is hashed — and
//!    sqlparser — whose canonical text is fingerprinted), so a persistent tier never
//!    serves an entry written under other rules;
//! 2. the session context that changes a result: database, role and `search_path`
//!    (the same text under another role or search_path never hits another's entry);
//! 3. the statement's key fingerprint (xxh3-128 of its canonical text, from the
//!    normalizer), so formatting variants share a key;
//! 4. the bind-argument hash (types and encoded values);
//! 5. the result type (`std::any::type_name`), because one statement can be decoded
//!    into different Rust types;
//! 6. the fetch shape (all rows, or the first row only).

use std::fmt;
use xxhash_rust::xxh3::Xxh3;

/// Bumped whenever the key layout below changes.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// Versions of the dependencies whose output is hashed into keys. sqlx-core is pinned
/// with `=0.9.0` in Cargo.toml; sqlparser's canonical text may change between minor
/// releases (research §3.4).
const DEPENDENCY_VERSIONS: &str = concat!(
    "querycache-",
    env!("CARGO_PKG_VERSION"),
    ";sqlx-0.9.0;sqlparser-0.63"
);

/// The identity of one cached result (xxh3-128; see the module docs for its inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub u128);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Which rows of a result a cached fetch keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchShape {
    /// Every row, decoded in order (`fetch_all`).
    All,
    /// The first row only (`fetch_one` / `fetch_optional`: sqlx decodes only the first
    /// row, so a decode error in a later row must not surface).
    First,
}

/// The session context of the pool's connections, hashed once when the cache is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext {
    /// `current_database()`.
    pub database: String,
    /// `current_user`.
    pub role: String,
    /// The `search_path` setting, parsed into folded schema names (`$user` kept).
    pub search_path: Vec<String>,
    hash: u128,
}

impl KeyContext {
    /// Hash a session context together with the key-format and dependency versions.
    pub fn new(database: String, role: String, search_path: Vec<String>) -> Self {
        let mut h = Xxh3::new();
        h.update(&KEY_FORMAT_VERSION.to_le_bytes());
        write_str(&mut h, DEPENDENCY_VERSIONS);
        write_str(&mut h, &database);
        write_str(&mut h, &role);
        h.update(&(search_path.len() as u64).to_le_bytes());
        for schema in &search_path {
            write_str(&mut h, schema);
        }
        KeyContext {
            database,
            role,
            search_path,
            hash: h.digest128(),
        }
    }

    /// The key of one result: this context plus the statement fingerprint, the hash of
    /// the bind arguments ([`hash_arguments`]), the result type's name and the shape.
    pub fn key(
        &self,
        fingerprint: u128,
        arguments: u128,
        type_name: &str,
        shape: FetchShape,
    ) -> CacheKey {
        let mut h = Xxh3::new();
        h.update(&self.hash.to_le_bytes());
        h.update(&fingerprint.to_le_bytes());
        h.update(&arguments.to_le_bytes());
        write_str(&mut h, type_name);
        h.update(&[shape as u8]);
        CacheKey(h.digest128())
    }
}

/// Length-prefixed, so that `("ab", "c")` and `("a", "bc")` hash differently.
fn write_str(h: &mut Xxh3, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// Streams `Debug` output into xxh3 without allocating.
struct HashWriter<'a>(&'a mut Xxh3);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Hash bind arguments through their `Debug` output: sqlx's `PgArguments` (and the
/// SQLite and MySQL ones) derive `Debug` and print the parameter types and the encoded
/// buffer, so equal values of equal types hash equal and `7_i32`, `7_i64` and `NULL`
/// all differ (research §2.3, verified). `None` is sqlx's simple protocol (no
/// arguments at all), which differs from an empty argument list.
///
/// `Debug` output is not a stability promise; the sqlx version is part of every key.
pub fn hash_arguments<A: fmt::Debug>(arguments: Option<&A>) -> u128 {
    let mut h = Xxh3::new();
    match arguments {
        Some(args) => {
            h.update(b"A");
            fmt::write(&mut HashWriter(&mut h), format_args!("{args:?}"))
                .expect("HashWriter never fails");
        }
        None => h.update(b"S"),
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Arguments;
    use sqlx::postgres::PgArguments;

    fn context(db: &str, role: &str, path: &[&str]) -> KeyContext {
        KeyContext::new(
            db.into(),
            role.into(),
            path.iter().map(|s| s.to_string()).collect(),
        )
    }

    fn args(f: impl FnOnce(&mut PgArguments)) -> u128 {
        let mut a = PgArguments::default();
        f(&mut a);
        hash_arguments(Some(&a))
    }

    #[test]
    fn every_context_part_separates_keys() {
        let base = context("app", "alice", &["public"]);
        let k = |c: &KeyContext| c.key(1, 2, "i64", FetchShape::All);
        for other in [
            context("app2", "alice", &["public"]),
            context("app", "bob", &["public"]),
            context("app", "alice", &["tenant", "public"]),
            context("app", "alice", &["publi", "c"]),
        ] {
            assert_ne!(k(&base), k(&other), "{other:?}");
        }
        assert_eq!(k(&base), k(&context("app", "alice", &["public"])));
    }

    #[test]
    fn fingerprint_arguments_type_and_shape_separate_keys() {
        let c = context("app", "alice", &["public"]);
        let k = c.key(1, 2, "i64", FetchShape::All);
        assert_ne!(k, c.key(9, 2, "i64", FetchShape::All));
        assert_ne!(k, c.key(1, 9, "i64", FetchShape::All));
        assert_ne!(k, c.key(1, 2, "(i64,)", FetchShape::All));
        assert_ne!(k, c.key(1, 2, "i64", FetchShape::First));
    }

    #[test]
    fn argument_hash_tells_values_types_and_nulls_apart() {
        let seven_i32 = args(|a| a.add(7_i32).expect("encode"));
        assert_eq!(seven_i32, args(|a| a.add(7_i32).expect("encode")));
        assert_ne!(seven_i32, args(|a| a.add(8_i32).expect("encode")));
        assert_ne!(seven_i32, args(|a| a.add(7_i64).expect("encode")));
        assert_ne!(
            args(|a| a.add(None::<i32>).expect("encode")),
            args(|a| a.add(0_i32).expect("encode"))
        );
        assert_ne!(
            args(|a| a.add("ab").and_then(|()| a.add("c")).expect("encode")),
            args(|a| a.add("a").and_then(|()| a.add("bc")).expect("encode"))
        );
        assert_ne!(hash_arguments::<PgArguments>(None), args(|_| {}));
    }
}
