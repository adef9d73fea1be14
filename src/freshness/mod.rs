//! Freshness: knowing which cached results a write can change, and whether a cached
//! result is still current.
//!
//! - [`Catalog`]: a snapshot of Postgres's catalogs with the precomputed write closure
//!   of every relation (views, partitions, inheritance, foreign-key cascades, triggers
//!   and rules), `search_path` resolution and function volatility.
//! - [`generations`]: one counter per relation plus a global epoch. A read snapshots its
//!   read set's counters (a [`Stamp`](generations::Stamp)) before it runs; a write
//!   bumps its write set after it succeeds or at COMMIT; an entry is served only while
//!   its stamp is current.
//! - [`shared`]: the same counters shared by several processes through Redis, with the
//!   protocol that keeps [`Consistency::Strict`](shared::Consistency) hits never stale.
//! - [`row_keys`]: key values of key reads and writes, and the per-key-bucket
//!   generations that let a write to one row keep the rest of its table cached.
//! - [`watch`]: writes made outside the cache, heard through triggers and
//!   `LISTEN`/`NOTIFY`.

mod catalog;
mod closure;
mod function_body;
pub mod generations;
mod load;
pub mod row_keys;
pub mod shared;
mod unique_keys;
mod volatile_views;
pub mod watch;

pub use catalog::{Catalog, RelationKind, Volatility, WriteClosure, parse_search_path};
pub use unique_keys::{KeyColumn, UniqueKey};
pub use volatile_views::VolatileSource;
