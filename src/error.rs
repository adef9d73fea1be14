//! The crate's error type.
//!
//! Outcomes such as a cache miss or a bypass are values (see `Lookup`-style enums in the
//! tier modules), never errors: `Error` is for failures only. Errors that come from the
//! database are returned unchanged inside [`Error::Database`], so a caller sees exactly
//! what plain sqlx would have returned.

/// Everything that can fail in querycache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database (or sqlx) returned an error; it is passed through unchanged.
    #[error(transparent)]
    Database(#[from] sqlx::Error),

    /// File I/O failed in the disk tier or the buffer pool.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A page or record failed its checksum or format check.
    #[error("corrupt data: {0}")]
    Corrupt(String),

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The external-write watch could not be set up: the role may not create the
    /// triggers (the message says what to run instead), a table to watch does not
    /// exist, or the listener could not start.
    #[error("watch: {0}")]
    Watch(String),

    /// Loading a sample dataset (`datasets`) failed; `context` names the file and the
    /// dump entry (or the check) that failed.
    #[error("dataset {context}: {source}")]
    Dataset {
        /// File and entry, e.g. `pagila-schema.sql: VIEW public.film_list`.
        context: String,
        /// The underlying failure (database or file I/O).
        #[source]
        source: Box<Error>,
    },
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
