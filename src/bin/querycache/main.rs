//! `querycache`: the command-line tool.

use clap::{Parser, Subcommand};

mod bench;
mod normalize;
mod watch;

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
    /// Install, inspect or remove the triggers through which the cache sees writes made
    /// outside it (for roles that may create triggers, when the application's may not).
    Watch(watch::WatchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Normalize(args) => normalize::run(args),
        Command::Watch(args) => watch::run(args),
    }
}
