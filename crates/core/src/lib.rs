//! flowmerge core: the engine — log formats, the merge plan, batch execution, spilling and
//! rollups — shared by `flowmerge compact` and the merger service. No cloud SDK here.
//!
//! The batch protocol (windows, batches, jobs, ports, claims, the output key scheme) lives in
//! `flowmerge-protocol`, which the mapper links without this crate; its modules are re-exported
//! here under their own names, so `flowmerge_core::window` is `flowmerge_protocol::window`.

// The one exception, libdeflate's gzip call, is allowed in `formats::inflate` alone.
#![deny(unsafe_code)]

pub mod conformance;
pub mod error;
pub mod exec;
pub mod formats;
pub mod memory;
pub mod merge;
pub mod rollup;
mod sort;
pub mod source;

pub use flowmerge_protocol::{batch, claim, fault, job, layout, ports, store, window};

pub use error::{Error, ParseError, Result};
pub use exec::{BatchReport, ExecOptions, Executed, Quarantined, execute, list_objects, run_batch};
pub use flowmerge_protocol::{
    Batch, BatchId, BatchLimits, Manifest, MergeJob, ObjectRef, SourceKind, Window, is_raw_log_key,
    plan_batches, window_of,
};
