//! Errors of the core. Every error that concerns an object carries its key, and a parse error its
//! line, so a user can go straight to the bad input.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// The content of an object cannot be read as flow log records.
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object could not be fetched for a reason that is not the object's fault (throttling,
    /// a 5xx, a timeout, credentials): the batch fails and is retried, never committed without it.
    #[error("fetching {key}: {source}")]
    Fetch {
        key: String,
        source: object_store::Error,
    },
    #[error("merge: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// The ledger could not be read or written (the batch is retried).
    #[error("ledger: {0}")]
    Ledger(String),
    /// A value of the batch protocol (a window, a job, a manifest) that does not parse.
    #[error(transparent)]
    Protocol(#[from] flowmerge_protocol::Error),
    /// A rollup could not read one of its own inputs.
    #[error("rollup: {0}")]
    Rollup(String),
    /// Local disk for spilling could not be used.
    #[error("spill: {0}")]
    Spill(String),
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Why an object's content was rejected, with the object and the 1-based line when known.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{source_name}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ParseError {
    pub source_name: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl ParseError {
    pub fn at(source_name: &str, line: usize, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line: Some(line),
            reason: reason.into(),
        }
    }

    pub fn whole(source_name: &str, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line: None,
            reason: reason.into(),
        }
    }
}
