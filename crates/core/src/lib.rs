//! flowmerge core: log formats, windows, batches, the merge plan and the output layout — the
//! logic shared by `flowmerge compact` and the AWS services. No cloud SDK here.

pub mod batch;
pub mod claim;
pub mod conformance;
pub mod error;
pub mod exec;
pub mod fault;
pub mod formats;
pub mod job;
pub mod layout;
pub mod memory;
pub mod merge;
pub mod ports;
pub mod rollup;
pub mod source;
pub mod store;
pub mod window;

pub use batch::{Batch, BatchId, BatchLimits, ObjectRef, SourceKind, plan_batches};
pub use error::{Error, ParseError, Result};
pub use exec::{BatchReport, ExecOptions, Executed, Quarantined, execute, list_objects, run_batch};
pub use job::{Manifest, MergeJob, is_raw_log_key};
pub use window::{Window, window_of};
