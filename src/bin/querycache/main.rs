//! `querycache`: the command-line tool.

use clap::{Parser, Subcommand};

mod bench;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => bench::run(args),
    }
}
