//! Errors of the AWS adapters. SDK errors are flattened to text with the operation that failed
//! (the SDK's own `Display` is terse; its `Debug` holds the service's message).

use thiserror::Error;

pub type Result<T, E = AwsError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum AwsError {
    /// A variable of the configuration is missing or invalid.
    #[error("configuration: {var}: {reason}")]
    Config { var: &'static str, reason: String },
    /// An AWS API call failed.
    #[error("{operation}: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    /// A value of the batch protocol (a job, a manifest, a window) that does not parse.
    #[error(transparent)]
    Protocol(#[from] flowmerge_protocol::Error),
    /// The engine failed (the merger only).
    #[cfg(feature = "merger")]
    #[error(transparent)]
    Core(#[from] flowmerge_core::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Invalid(String),
    /// An error from a port (job queue, ledger) behind its trait object.
    #[error("{0}")]
    Port(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl AwsError {
    /// An API error, with the service's message when the SDK has one.
    pub fn api<E>(operation: &'static str, err: E) -> Self
    where
        E: std::error::Error + 'static,
    {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            // SDK errors repeat their source's text in their own: say each part once.
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        Self::Api { operation, message }
    }
}
