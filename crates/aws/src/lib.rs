//! The production shape of flowmerge (docs/contracts.md): S3 notifies the raw SQS queue, the mapper
//! turns events into claimed batches and merge jobs, the merger turns jobs into Parquet and commits
//! them in DynamoDB. Adapters (SQS, DynamoDB, S3 events) and the two service loops live here; the
//! batch execution itself is `flowmerge_core::run_batch`, shared with `flowmerge compact`.
//! The protocol and its crash points are described in `docs/aws-protocol.md`.
//!
//! Without the feature `merger` this crate links only `flowmerge-protocol`, not the engine
//! (polars): that is how the mapper is built (docs/architecture.md, "Crates").

pub mod bootstrap;
pub mod clients;
pub mod config;
pub mod error;
pub mod events;
pub mod ledger;
pub mod mapper;
#[cfg(feature = "merger")]
pub mod merger;
pub mod queue;
pub mod shutdown;
pub mod store;

pub use error::{AwsError, Result};
