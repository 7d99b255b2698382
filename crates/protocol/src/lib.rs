//! flowmerge's batch protocol: what the mapper and the merger agree on — sources, windows,
//! batches and their ids, merge jobs and manifests, the ledger and queue ports, the claim, the
//! output key scheme and the fault-injection steps. No engine here: the mapper links this crate
//! and not polars (`flowmerge-core`, which re-exports every module of this one, is the engine).

pub mod batch;
pub mod claim;
pub mod classify;
pub mod error;
pub mod fault;
pub mod job;
pub mod layout;
pub mod ports;
pub mod report;
pub mod store;
pub mod window;

pub use batch::{Batch, BatchId, BatchLimits, ObjectRef, SourceKind, plan_batches};
pub use classify::{Class, classify_key};
pub use error::{Error, Result};
pub use job::{Manifest, MergeJob, is_raw_log_key};
pub use report::{BatchReport, Quarantined};
pub use window::{Window, window_of};
