//! `querycache watch install|status|uninstall`: manage the external-write triggers
//! (`querycache::freshness::watch`) as a role that may create them, for applications
//! whose own role may not. The application then builds its cache with
//! `watch_tables(..)`, which finds nothing missing and only listens.

use querycache::freshness::watch::{self, WatchTables};
use sqlx::postgres::PgPoolOptions;
use std::process::ExitCode;

/// Arguments of `querycache watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(subcommand)]
    action: Action,
    /// Database to manage. Installing needs the tables' owner and a superuser (for the
    /// DDL event trigger).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Install what is missing (idempotent; replaces triggers of an older format).
    Install {
        /// Watch only these tables (`table` or `schema.table`) [default: every table].
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// Print the format installed and which tables are watched; exits 1 when the
    /// installation is missing or of an older format.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the triggers, the event trigger and the `querycache` schema.
    Uninstall,
}

/// The JSON `querycache watch status --json` prints.
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    format: Option<i64>,
    current_format: i64,
    current: bool,
    ddl_trigger: bool,
    watched: &'a [String],
    unwatched: &'a [String],
}

/// Run `querycache watch`.
pub fn run(args: WatchArgs) -> ExitCode {
    let Some(url) = args.database_url.clone() else {
        eprintln!("querycache watch: --database-url (or DATABASE_URL) is required");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("querycache watch: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(act(&url, args.action)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("querycache watch: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn act(url: &str, action: Action) -> querycache::Result<ExitCode> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    match action {
        Action::Install { tables } => {
            let tables = if tables.is_empty() {
                WatchTables::All
            } else {
                WatchTables::Only(tables)
            };
            let report = watch::install(&pool, &tables).await?;
            if report.upgraded {
                println!("installed format {}", watch::sql::FORMAT);
            }
            for table in &report.triggers_created {
                println!("watching {table}");
            }
            if !report.upgraded && report.triggers_created.is_empty() {
                println!("nothing to install");
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Status { json } => {
            let status = watch::status(&pool).await?;
            if json {
                let line = StatusJson {
                    format: status.format,
                    current_format: watch::sql::FORMAT,
                    current: status.current(),
                    ddl_trigger: status.ddl_trigger,
                    watched: &status.watched,
                    unwatched: &status.unwatched,
                };
                println!(
                    "{}",
                    serde_json::to_string(&line)
                        .map_err(|e| querycache::Error::Watch(e.to_string()))?
                );
            } else {
                let format = status
                    .format
                    .map_or("not installed".to_owned(), |f| format!("format {f}"));
                println!(
                    "{format} (current: {}), DDL trigger: {}",
                    watch::sql::FORMAT,
                    if status.ddl_trigger { "yes" } else { "no" }
                );
                println!(
                    "watched ({}): {}",
                    status.watched.len(),
                    status.watched.join(", ")
                );
                println!(
                    "unwatched ({}): {}",
                    status.unwatched.len(),
                    status.unwatched.join(", ")
                );
            }
            Ok(if status.current() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Action::Uninstall => {
            watch::uninstall(&pool).await?;
            println!("uninstalled");
            Ok(ExitCode::SUCCESS)
        }
    }
}
