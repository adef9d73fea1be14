//! `querycache`: the command-line tool.

use clap::{Parser, Subcommand};

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
    /// Analyze SQL statements: kind, read and write sets, cacheability, canonical text
    /// and fingerprints.
    Normalize(normalize::NormalizeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Normalize(args) => normalize::run(args),
    }
}
