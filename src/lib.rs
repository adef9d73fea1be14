//! # querycache
//!
//! A query-result cache and buffer-pool engine for Rust services that talk to Postgres
//! through a `sqlx` pool.
//!
//! ## Architecture
//!
//! ```text
//! sql text + binds ──► statement memo ──► CacheKey ──► L1 memory ──► L3 disk ──► database
//! ```
//!
//! - [`bufpool`]: the page buffer pool (clock sweep, pins and latches, dirty-page
//!   write-back with batched `fdatasync`) that the disk tier stores its pages through.
//! - [`tier::disk`]: L3, a log-structured store of encoded results over the buffer pool,
//!   recovered at open by scanning page headers.
//! - [`sql`]: the parse-based normalizer (sqlparser): statement kind, read set, write
//!   set, cacheability verdict, canonical text, key and shape fingerprints (xxh3-128);
//!   [`sql::StatementMemo`] parses each distinct text once, and a new literal variant
//!   of a known shape not at all.
//! - [`freshness`]: the catalog dependency closure (which relations a write can change)
//!   and function volatility, loaded from Postgres's catalogs.
//! - [`datasets`]: sample datasets used by `querycache bench` and the test suite (Pagila).
//! - [`cache`]: [`QueryCache`] over a sqlx pool — a pass-through `Executor` whose
//!   writes invalidate, cached reads through [`CachedQuery`] (`fetch_all_cached`),
//!   transactions ([`CachedTransaction`]); [`tier`]: where results live (memory, and
//!   disk through [`tier::disk::DiskTier`]); [`freshness::generations`]: per-relation
//!   generations; [`inflight`]: single-flight;
//!   [`key`]: cache keys; [`codec`]: encoding for byte tiers; [`metrics`]: [`Stats`].
//!
//! Freshness: every table has a generation counter; a read snapshots its read set's
//! generations before it runs and stores them with the result; a write bumps its write
//! set (closed over views, partitions, cascades and triggers) after it succeeds.

pub mod bufpool;
pub mod cache;
pub mod codec;
pub mod datasets;
pub mod error;
pub mod freshness;
pub mod inflight;
pub mod key;
pub mod metrics;
pub mod sql;
pub mod tier;

pub use cache::{
    CacheTarget, CachedQuery, CachedTransaction, QueryCache, QueryCacheBuilder, TransactionReads,
};
pub use error::{Error, Result};
pub use metrics::{BypassReason, Stats};
