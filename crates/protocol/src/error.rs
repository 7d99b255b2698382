//! Errors of the protocol's own values: a window, a duration, a job or manifest that does not
//! parse. Everything else (the ledger, the queue) has its port's error type.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}
