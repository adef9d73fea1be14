//! `querycache`: the command-line tool.

use clap::{Parser, Subcommand};

mod bench;
mod normalize;

/// querycache: a query-result cache for sqlx and Postgres.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark a Postgres database with and without the cache; exits 3 on a stale read.
    Bench(bench::Args),
    /// Analyze SQL statements: kind, read and write sets, cacheability, canonical text
    /// and fingerprints.
    Normalize(normalize::NormalizeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Normalize(args) => normalize::run(args),
    }
}
