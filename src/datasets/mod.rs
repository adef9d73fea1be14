//! Sample datasets used by `querycache bench` and the test suite.
//!
//! - [`pagila`]: the Pagila DVD-rental database (views over several tables, a partitioned
//!   table, triggers, foreign keys, functions), loaded from its `pg_dump` scripts.
//!
//! The data files are not shipped with the crate; callers name the directory that holds
//! them.

mod dump;
pub mod pagila;
