//! The disk tier's half of freshness across restarts: persistent per-table versions kept
//! by Postgres, the stamps an entry records for the next process, and the check that
//! process runs at open (the rule is stated in the [module docs](super)).
//!
//! The triggers and version rows are those of [`crate::freshness::watch`] (one set for
//! both uses), re-exported here. A table is *watched* once [`watch_table_sql`] (or
//! [`crate::freshness::watch::install`]) has installed its trigger, which also creates
//! its version row. A table without a row is not watched: a write to it would
//! change nothing here, so entries that read it are never kept across a restart.

use sqlx::PgPool;
use std::collections::HashMap;

pub use crate::freshness::watch::sql::{DDL_VERSION, INSTALL_ID, INSTALL_SQL, watch_table_sql};

/// Rows every entry is stamped with, whatever it read.
const GLOBAL: [&str; 2] = [INSTALL_ID, DDL_VERSION];

/// The persistent versions of every watched table, as read at one moment (at startup,
/// with the invalidation listener already connected so that no write slips between).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableVersions(HashMap<String, i64>);

/// What an entry records about one relation of its read set for later sessions.
pub type Stamp = (String, Option<i64>);

impl TableVersions {
    /// Reads `querycache.table_version`.
    ///
    /// # Errors
    /// The database error, unchanged (e.g. the table does not exist: nothing is
    /// installed, and no entry may be kept across a restart).
    pub async fn load(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT table_name, version FROM querycache.table_version")
                .fetch_all(pool)
                .await?;
        Ok(Self(rows.into_iter().collect()))
    }

    /// Versions from `(table, version)` pairs (the installation id under [`INSTALL_ID`]).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, i64)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// The version of `table`, `None` if it is not watched.
    pub fn get(&self, table: &str) -> Option<i64> {
        self.0.get(table).copied()
    }

    /// The version that stands for a read-set counter: a table's own, and for a
    /// row-level counter of a table (`T#k`, `T#b{i}`, `freshness::row_keys`) the
    /// table's, since every write to the table's rows moves it.
    fn version_of(&self, name: &str) -> Option<i64> {
        self.get(name).or_else(|| {
            let (table, _) = name.rsplit_once('#')?;
            self.get(table)
        })
    }

    /// The stamps a fill records, from the in-process generations of its read set taken
    /// before its query ran (`(relation, generation)`, with the global epoch under
    /// `"*"`), where every counter started at 0 when this process started. A relation
    /// is stamped with its startup version only while its generation and the epoch are
    /// still 0 (the process has seen no write to it); otherwise, or if it is not
    /// watched, with `None`. The installation id and the DDL version are stamped too.
    pub fn stamps(&self, generations: &[(String, u64)]) -> Vec<Stamp> {
        let untouched = generations.iter().all(|(name, g)| name != "*" || *g == 0);
        let mut stamps: Vec<Stamp> = generations
            .iter()
            .filter(|(name, _)| name != "*")
            .map(|(name, g)| {
                let version = (untouched && *g == 0)
                    .then(|| self.version_of(name))
                    .flatten();
                (name.clone(), version)
            })
            .collect();
        stamps.extend(GLOBAL.map(|name| (name.to_owned(), self.get(name))));
        stamps
    }

    /// Whether an entry with `stamps` (from an earlier session) is fresh now: every
    /// stamp is known and equals the current version, and the installation id and DDL
    /// version are among them.
    pub fn still_fresh(&self, stamps: &[Stamp]) -> bool {
        GLOBAL
            .iter()
            .all(|global| stamps.iter().any(|(name, _)| name == global))
            && stamps
                .iter()
                .all(|(name, v)| v.is_some() && *v == self.version_of(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> TableVersions {
        TableVersions::from_pairs([
            (INSTALL_ID.to_owned(), 77),
            (DDL_VERSION.to_owned(), 3),
            ("public.film".to_owned(), 5),
            ("public.actor".to_owned(), 0),
        ])
    }

    fn gens(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(n, g)| ((*n).to_owned(), *g)).collect()
    }

    #[test]
    fn untouched_watched_tables_are_stamped_with_their_startup_version() {
        let stamps = versions().stamps(&gens(&[("public.film", 0), ("public.actor", 0), ("*", 0)]));
        assert_eq!(
            stamps,
            vec![
                ("public.film".to_owned(), Some(5)),
                ("public.actor".to_owned(), Some(0)),
                (INSTALL_ID.to_owned(), Some(77)),
                (DDL_VERSION.to_owned(), Some(3)),
            ]
        );
        assert!(versions().still_fresh(&stamps));
    }

    #[test]
    fn a_write_seen_or_an_unwatched_table_makes_the_stamp_unknown() {
        let v = versions();
        let written = v.stamps(&gens(&[("public.film", 1), ("public.actor", 0), ("*", 0)]));
        assert_eq!(written[0], ("public.film".to_owned(), None));
        assert!(!v.still_fresh(&written));
        let epoch = v.stamps(&gens(&[("public.film", 0), ("*", 1)]));
        assert_eq!(
            epoch[0],
            ("public.film".to_owned(), None),
            "an unanalysable write"
        );
        let unwatched = v.stamps(&gens(&[("public.staff", 0), ("*", 0)]));
        assert!(!v.still_fresh(&unwatched));
    }

    #[test]
    fn a_version_change_a_reinstall_or_ddl_makes_old_stamps_stale() {
        let stamps = versions().stamps(&gens(&[("public.film", 0), ("*", 0)]));
        let with = |changes: &[(&str, i64)]| {
            let mut v = versions();
            for (name, version) in changes {
                v.0.insert((*name).to_owned(), *version);
            }
            v
        };
        assert!(with(&[]).still_fresh(&stamps));
        assert!(!with(&[("public.film", 6)]).still_fresh(&stamps), "a write");
        assert!(
            !with(&[(INSTALL_ID, 78)]).still_fresh(&stamps),
            "a reinstall"
        );
        assert!(!with(&[(DDL_VERSION, 4)]).still_fresh(&stamps), "DDL");
        assert!(
            with(&[("public.actor", 9)]).still_fresh(&stamps),
            "an unrelated write"
        );
        let without_globals = [("public.film".to_owned(), Some(5))];
        assert!(!versions().still_fresh(&without_globals));
    }
}
