//! Benchmark datasets loaded into a Postgres database: each module loads one dataset and
//! tells whether a database already holds a complete copy of it.

pub mod pgbench;
