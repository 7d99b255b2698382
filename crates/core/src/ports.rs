//! Ports: what the pipeline needs from a ledger, implemented by `flowmerge-local` (SQLite) and
//! later by the AWS adapters (DynamoDB). Same expectations for every backend.

use async_trait::async_trait;

use crate::batch::{Batch, BatchId, ObjectRef};
use crate::exec::BatchReport;

pub type LedgerError = Box<dyn std::error::Error + Send + Sync>;

/// State of a batch in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchState {
    /// Objects claimed, output not yet committed.
    Claimed,
    /// Output written and recorded.
    Committed,
}

/// Durable record of which raw object went into which batch, and which batches are done.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The objects of `candidates` (by key and etag) that no batch has claimed yet.
    async fn unclaimed(&self, candidates: Vec<ObjectRef>) -> Result<Vec<ObjectRef>, LedgerError>;

    /// Claims the batch's objects for it, conditionally: an object already claimed by another
    /// batch stays with that batch. Returns the batch restricted to the objects it now owns
    /// (re-claiming the same batch is idempotent and returns all of them).
    async fn claim(&self, batch: &Batch) -> Result<Batch, LedgerError>;

    /// Batches claimed but not committed: work a crash left behind, to run again.
    async fn pending(&self) -> Result<Vec<Batch>, LedgerError>;

    /// Records the batch as committed, with its counts, output and quarantined objects.
    async fn commit(&self, report: &BatchReport) -> Result<(), LedgerError>;

    async fn state(&self, batch: &BatchId) -> Result<Option<BatchState>, LedgerError>;
}
