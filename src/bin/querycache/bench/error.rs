//! The bench command's error type.

use std::path::PathBuf;

/// Everything that stops `querycache bench` (stale reads do not: they are a result).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query, a connection or a COPY failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    /// The library failed (a dataset load or building the cache).
    #[error(transparent)]
    Library(#[from] querycache::Error),

    /// Reading a dataset or writing `--json` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },

    /// Encoding the results as JSON failed.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The options do not make a runnable benchmark.
    #[error("{0}")]
    Usage(String),

    /// A client task panicked or was cancelled.
    #[error("client task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `Result` with the bench [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
