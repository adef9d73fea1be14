//! Cache tiers. L3, the persistent disk tier, lives in [`disk`].

pub mod disk;
