//! Freshness: what makes a cached result current.
//!
//! - [`generations`]: one counter per relation plus a global epoch. A read snapshots its
//!   read set's counters (a [`Stamp`](generations::Stamp)) before it runs; a write
//!   bumps its write set after it succeeds or at COMMIT; an entry is served only while
//!   its stamp is current.

pub mod generations;
