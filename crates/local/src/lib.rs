//! Embedded adapters: the SQLite ledger behind `flowmerge compact`'s incremental runs and the
//! in-process job queue that feeds its merge workers.

pub mod ledger;
pub mod queue;

pub use ledger::SqliteLedger;
pub use queue::MemoryQueue;
