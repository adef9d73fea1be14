//! Freshness: knowing which cached results a write can change.
//!
//! - [`Catalog`]: a snapshot of Postgres's catalogs with the precomputed write closure
//!   of every relation (views, partitions, inheritance, foreign-key cascades, triggers
//!   and rules), `search_path` resolution and function volatility.

mod catalog;
mod closure;
mod function_body;
mod load;

pub use catalog::{Catalog, RelationKind, Volatility, WriteClosure, parse_search_path};
