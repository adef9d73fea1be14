//! The workloads: what one client operation is, per workload and dataset. Every
//! statement is a `&'static str` with binds, so an operation allocates no SQL text.

use super::audit::{self, Floors};
use super::dataset::{Dataset, DatasetKind};
use super::error::{Error, Result};
use super::target::{Target, TargetTx};
use querycache::datasets::pgbench;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use sqlx::{query, query_as};
use std::path::Path;

/// Zipf exponent of the key popularity (the s = 0.99; YCSB's default).
const ZIPF_S: f64 = 0.99;

/// One workload of the suite; the command-line names are the kebab-case variant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Primary-key selects on Zipf-distributed keys.
    PointZipf,
    /// 95 % primary-key reads, 5 % counter increments on the same keys (audited).
    ReadMostly,
    /// Views and multi-join aggregates (pagila only).
    Reporting,
    /// 50 % reads, 50 % counter increments on the same keys (audited).
    WriteHeavy,
    /// pgbench's TPC-B-like transaction (pgbench only).
    PgbenchTpcb,
}

impl Workload {
    /// Every workload, in the order the suite runs them.
    pub const ALL: [Self; 5] = [
        Self::PointZipf,
        Self::ReadMostly,
        Self::Reporting,
        Self::WriteHeavy,
        Self::PgbenchTpcb,
    ];

    /// The name printed in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::PointZipf => "point-zipf",
            Self::ReadMostly => "read-mostly",
            Self::Reporting => "reporting",
            Self::WriteHeavy => "write-heavy",
            Self::PgbenchTpcb => "pgbench-tpcb",
        }
    }

    /// Whether the workload is defined on `dataset`.
    pub fn runs_on(self, dataset: DatasetKind) -> bool {
        match self {
            Self::PointZipf | Self::ReadMostly | Self::WriteHeavy => true,
            Self::Reporting => dataset == DatasetKind::Pagila,
            Self::PgbenchTpcb => dataset == DatasetKind::Pgbench,
        }
    }

    /// Fraction of operations that write, for the audited read/write mixes.
    fn write_fraction(self) -> Option<f64> {
        match self {
            Self::ReadMostly => Some(0.05),
            Self::WriteHeavy => Some(0.5),
            _ => None,
        }
    }
}

mod pgbench_sql {
    pub const ACCOUNT: &str =
        "SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid = $1";
    pub const ACCOUNT_BUMP: &str =
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1 RETURNING abalance";
    // pgbench's built-in "TPC-B (sort of)" script, statement for statement.
    pub const TPCB_ACCOUNT: &str =
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
    pub const TPCB_BALANCE: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    pub const TPCB_TELLER: &str =
        "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2";
    pub const TPCB_BRANCH: &str =
        "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2";
    pub const TPCB_HISTORY: &str = "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
         VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)";
}

mod pagila_sql {
    pub const FILM: &str = "SELECT film_id, title, description, release_year::int4, \
         length::int4, rating::text FROM film WHERE film_id = $1";
    pub const CUSTOMER: &str = "SELECT customer_id, store_id::int4, first_name, last_name, email \
         FROM customer WHERE customer_id = $1";
    /// A customer's profile with its visit counter (the audited counter, `qc_audit`).
    pub const PROFILE: &str = "SELECT c.customer_id, c.first_name, c.last_name, c.email, a.v \
         FROM customer c JOIN qc_audit a ON a.k = c.customer_id WHERE c.customer_id = $1";
    pub const VISIT: &str = "UPDATE qc_audit SET v = v + 1 WHERE k = $1 RETURNING v";
    pub const FILMS_IN_CATEGORY: &str = "SELECT fid, title, price::float8, length::int4, \
         rating::text, actors FROM film_list WHERE category = $1 ORDER BY title";
    pub const SALES_BY_CATEGORY: &str =
        "SELECT category, total_sales::float8 FROM sales_by_film_category";
    pub const RENTAL_HISTORY: &str = "SELECT r.rental_id, lower(r.rental_period)::text, f.title, \
         p.amount::float8 FROM rental r \
         JOIN inventory i ON i.inventory_id = r.inventory_id \
         JOIN film f ON f.film_id = i.film_id \
         LEFT JOIN payment p ON p.rental_id = r.rental_id \
         WHERE r.customer_id = $1 ORDER BY lower(r.rental_period) DESC";
    pub const TOP_RENTERS: &str = "SELECT c.customer_id, c.first_name, c.last_name, \
         count(*) AS rentals FROM rental r JOIN customer c ON c.customer_id = r.customer_id \
         WHERE lower(r.rental_period) >= $1::timestamp \
         AND lower(r.rental_period) < $1::timestamp + interval '1 month' \
         GROUP BY c.customer_id, c.first_name, c.last_name \
         ORDER BY rentals DESC, c.customer_id LIMIT 10";
    /// Pagila's 16 film categories (table `category`), the `film_list` filter values.
    pub const CATEGORIES: [&str; 16] = [
        "Action",
        "Animation",
        "Children",
        "Classics",
        "Comedy",
        "Documentary",
        "Drama",
        "Family",
        "Foreign",
        "Games",
        "Horror",
        "Music",
        "New",
        "Sci-Fi",
        "Sports",
        "Travel",
    ];
    /// The months pagila has rentals in.
    pub const MONTHS: [&str; 5] = [
        "2005-05-01",
        "2005-06-01",
        "2005-07-01",
        "2005-08-01",
        "2006-02-01",
    ];
}

type Account = (i32, i32, i32, String);
type Film = (
    i32,
    String,
    Option<String>,
    Option<i32>,
    Option<i32>,
    Option<String>,
);
type Customer = (i32, i32, String, String, Option<String>);
type Profile = (i32, String, String, Option<String>, i64);
type FilmListing = (
    i32,
    String,
    f64,
    Option<i32>,
    Option<String>,
    Option<String>,
);
type Rental = (i32, String, String, Option<f64>);
type Renter = (i32, String, String, i64);

/// Zipf-distributed keys `1..=n`; key 1 is the most popular.
#[derive(Debug, Clone, Copy)]
struct ZipfKeys(Zipf<f64>);

impl ZipfKeys {
    fn new(n: u64) -> Result<Self> {
        Zipf::new(n as f64, ZIPF_S)
            .map(Self)
            .map_err(|e| Error::Usage(format!("key space of {n} keys: {e}")))
    }

    fn sample(&self, rng: &mut SmallRng) -> i32 {
        // Zipf samples are integral floats in [1, n]; n fits i32 for every dataset.
        self.0.sample(rng) as i32
    }
}

/// The key spaces of a dataset.
#[derive(Debug)]
enum Keys {
    Pgbench {
        accounts: ZipfKeys,
        branches: i32,
        tellers: i32,
        account_count: i32,
    },
    Pagila {
        films: ZipfKeys,
        customers: ZipfKeys,
    },
}

/// Everything one run of a workload shares across its clients: key distributions and
/// the audit floors.
#[derive(Debug)]
pub struct Plan {
    workload: Workload,
    keys: Keys,
    floors: Floors,
}

impl Plan {
    /// A plan for `workload` on `dataset`, with fresh audit floors (in memory, or in the
    /// file `shared_floors` that other processes of the run map too).
    ///
    /// # Errors
    /// [`Error::Usage`] when the workload does not run on the dataset or the floors
    /// file cannot be mapped.
    pub fn new(
        workload: Workload,
        dataset: &Dataset,
        shared_floors: Option<&Path>,
    ) -> Result<Self> {
        if !workload.runs_on(dataset.kind()) {
            return Err(Error::Usage(format!(
                "workload {} does not run on dataset {}",
                workload.name(),
                dataset.label()
            )));
        }
        let (keys, audited) = match *dataset {
            Dataset::Pgbench { scale } => {
                let accounts = u64::from(scale) * pgbench::ACCOUNTS_PER_SCALE;
                let count = |per: u64| {
                    i32::try_from(u64::from(scale) * per)
                        .map_err(|_| Error::Usage(format!("scale {scale} is too large")))
                };
                let keys = Keys::Pgbench {
                    accounts: ZipfKeys::new(accounts)?,
                    branches: count(pgbench::BRANCHES_PER_SCALE)?,
                    tellers: count(pgbench::TELLERS_PER_SCALE)?,
                    account_count: count(pgbench::ACCOUNTS_PER_SCALE)?,
                };
                (keys, accounts)
            }
            Dataset::Pagila { films, customers } => {
                let keys = Keys::Pagila {
                    films: ZipfKeys::new(films)?,
                    customers: ZipfKeys::new(customers)?,
                };
                (keys, customers)
            }
        };
        let audited = if workload.write_fraction().is_some() {
            audited
        } else {
            0
        };
        let floors = match shared_floors {
            None => Floors::new(audited),
            Some(path) => Floors::shared(audited, path).map_err(|e| {
                Error::Usage(format!("mapping the floors file {}: {e}", path.display()))
            })?,
        };
        Ok(Self {
            workload,
            keys,
            floors,
        })
    }
}

/// One client's state: its random stream.
#[derive(Debug)]
pub struct Client {
    rng: SmallRng,
}

impl Client {
    /// Client number `id`; `seed` makes runs reproducible.
    pub fn new(seed: u64, id: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// Runs one operation of `plan` against `target`; returns whether it was an audited
    /// read that came back stale.
    ///
    /// # Errors
    /// Whatever the target returns: a failed statement ends the run.
    pub async fn op<T: Target>(&mut self, plan: &Plan, target: &T) -> Result<bool> {
        let rng = &mut self.rng;
        match (&plan.keys, plan.workload) {
            (Keys::Pgbench { accounts, .. }, Workload::PointZipf) => {
                let aid = accounts.sample(rng);
                let _: Account = target
                    .read_one(query_as(pgbench_sql::ACCOUNT).bind(aid))
                    .await?;
                Ok(false)
            }
            (Keys::Pagila { films, customers }, Workload::PointZipf) => {
                if rng.random_bool(0.5) {
                    let id = films.sample(rng);
                    let _: Film = target.read_one(query_as(pagila_sql::FILM).bind(id)).await?;
                } else {
                    let id = customers.sample(rng);
                    let _: Customer = target
                        .read_one(query_as(pagila_sql::CUSTOMER).bind(id))
                        .await?;
                }
                Ok(false)
            }
            (keys, Workload::ReadMostly | Workload::WriteHeavy) => {
                let write = rng.random_bool(plan.workload.write_fraction().unwrap_or(0.0));
                audited_op(keys, &plan.floors, write, rng, target).await
            }
            (Keys::Pagila { customers, .. }, Workload::Reporting) => {
                reporting_op(customers, rng, target).await?;
                Ok(false)
            }
            (
                Keys::Pgbench {
                    account_count,
                    branches,
                    tellers,
                    ..
                },
                Workload::PgbenchTpcb,
            ) => {
                tpcb_op(*account_count, *branches, *tellers, rng, target).await?;
                Ok(false)
            }
            (_, workload) => Err(Error::Usage(format!(
                "workload {} is not defined on this dataset",
                workload.name()
            ))),
        }
    }
}

/// A read or a counter increment of one Zipf key, checked by the freshness audit.
async fn audited_op<T: Target>(
    keys: &Keys,
    floors: &Floors,
    write: bool,
    rng: &mut SmallRng,
    target: &T,
) -> Result<bool> {
    match keys {
        Keys::Pgbench { accounts, .. } => {
            let aid = accounts.sample(rng);
            if write {
                let (balance,): (i32,) = target
                    .write_one(query_as(pgbench_sql::ACCOUNT_BUMP).bind(aid))
                    .await?;
                floors.after_write(aid, i64::from(balance));
                Ok(false)
            } else {
                let floor = floors.before_read(aid);
                let (_, _, balance, _): Account = target
                    .read_one(query_as(pgbench_sql::ACCOUNT).bind(aid))
                    .await?;
                Ok(audit::is_stale(floor, i64::from(balance)))
            }
        }
        Keys::Pagila { customers, .. } => {
            let id = customers.sample(rng);
            if write {
                let (visits,): (i64,) = target
                    .write_one(query_as(pagila_sql::VISIT).bind(id))
                    .await?;
                floors.after_write(id, visits);
                Ok(false)
            } else {
                let floor = floors.before_read(id);
                let (.., visits): Profile = target
                    .read_one(query_as(pagila_sql::PROFILE).bind(id))
                    .await?;
                Ok(audit::is_stale(floor, visits))
            }
        }
    }
}

/// One of the four reporting queries, chosen uniformly.
async fn reporting_op<T: Target>(
    customers: &ZipfKeys,
    rng: &mut SmallRng,
    target: &T,
) -> Result<()> {
    match rng.random_range(0..4) {
        0 => {
            let category =
                pagila_sql::CATEGORIES[rng.random_range(0..pagila_sql::CATEGORIES.len())];
            let _: Vec<FilmListing> = target
                .read_all(query_as(pagila_sql::FILMS_IN_CATEGORY).bind(category))
                .await?;
        }
        1 => {
            let _: Vec<(String, f64)> = target
                .read_all(query_as(pagila_sql::SALES_BY_CATEGORY))
                .await?;
        }
        2 => {
            let id = customers.sample(rng);
            let _: Vec<Rental> = target
                .read_all(query_as(pagila_sql::RENTAL_HISTORY).bind(id))
                .await?;
        }
        _ => {
            let month = pagila_sql::MONTHS[rng.random_range(0..pagila_sql::MONTHS.len())];
            let _: Vec<Renter> = target
                .read_all(query_as(pagila_sql::TOP_RENTERS).bind(month))
                .await?;
        }
    }
    Ok(())
}

/// pgbench's TPC-B-like transaction with pgbench's uniform key choice.
async fn tpcb_op<T: Target>(
    accounts: i32,
    branches: i32,
    tellers: i32,
    rng: &mut SmallRng,
    target: &T,
) -> Result<()> {
    let aid = rng.random_range(1..=accounts);
    let bid = rng.random_range(1..=branches);
    let tid = rng.random_range(1..=tellers);
    let delta = rng.random_range(-5000..=5000_i32);
    let mut tx = target.begin().await?;
    tx.execute(query(pgbench_sql::TPCB_ACCOUNT).bind(delta).bind(aid))
        .await?;
    let _: (i32,) = tx
        .fetch_one(query_as(pgbench_sql::TPCB_BALANCE).bind(aid))
        .await?;
    tx.execute(query(pgbench_sql::TPCB_TELLER).bind(delta).bind(tid))
        .await?;
    tx.execute(query(pgbench_sql::TPCB_BRANCH).bind(delta).bind(bid))
        .await?;
    tx.execute(
        query(pgbench_sql::TPCB_HISTORY)
            .bind(tid)
            .bind(bid)
            .bind(aid)
            .bind(delta),
    )
    .await?;
    tx.commit().await
}
